"""What the compat modules share: argument checks in their users' own names, the gate-block swap
between the i, f, o, g order of CS231n and Karpathy's gist and fastlstm's i, f, g, o, and an opaque
cache that knows which function made it.

Why the weights are reordered on every call rather than cached: optimizers update weights in place,
so a cache keyed on the array object would need a check that reads every element to stay correct,
which costs as much as the reordering itself. The reordering is one copy of (D + H + 1) * 4H
numbers, a small fraction of a pass that multiplies T * N rows by them, and it is always right.
"""
import numpy as np

from .._validate import _as_array


def swap_go(array):
    """A new C-contiguous copy of `array` (..., 4H) with its last two H-blocks swapped: gate blocks
    i, f, o, g become i, f, g, o and back (the swap is its own inverse)."""
    H = array.shape[-1] // 4
    return np.concatenate([array[..., :2 * H], array[..., 3 * H:], array[..., 2 * H:3 * H]],
                          axis=-1)


def checked(name, value, symbols, sizes):
    """`value` as an array whose shape matches `sizes` (None: any size).

    Raises ValueError naming `name`, the expected shape (`symbols`, e.g. "(N, T, D)", with the sizes
    already known) and the given one.
    """
    array = _as_array(name, value)
    if array.ndim != len(sizes) or any(s is not None and s != n
                                       for s, n in zip(sizes, array.shape)):
        known = tuple("?" if s is None else s for s in sizes)
        expected = symbols if all(s is None for s in sizes) else f"{symbols} = {known}"
        raise ValueError(f"{name}: expected shape {expected}, got {array.shape}")
    return array


def recurrent_weights(Wx, Wh, b, D, gates, names=("Wx", "Wh", "b")):
    """Check Wx (D, gates*H), Wh (H, gates*H), b (gates*H,) in the caller's names; return them as
    arrays and H."""
    G = "H" if gates == 1 else f"{gates}H"
    Wh = checked(names[1], Wh, f"(H, {G})", (None, None))
    H = Wh.shape[0]
    Wh = checked(names[1], Wh, f"(H, {G})", (H, gates * H))
    Wx = checked(names[0], Wx, f"(D, {G})", (D, gates * H))
    b = checked(names[2], b, f"({G},)", (gates * H,))
    return Wx, Wh, b, H


class Cache:
    """Opaque: what a compat forward keeps for its backward, and the name of that forward."""

    __slots__ = ("origin", "inner", "extra")

    def __init__(self, origin, inner, extra=None):
        self.origin, self.inner, self.extra = origin, inner, extra


def unwrap(cache, origin):
    """`cache`'s contents, after checking that `origin` (a forward's full name) made it."""
    if not isinstance(cache, Cache) or cache.origin != origin:
        given = cache.origin if isinstance(cache, Cache) else type(cache).__name__
        raise TypeError(f"cache: expected the cache that {origin} returned, got {given}")
    return cache.inner, cache.extra


def sigmoid(x):
    """Numerically stable logistic sigmoid, 1 / (1 + exp(-x)), elementwise; no overflow warning for
    large |x|. Keeps x's float dtype."""
    x = np.asarray(x)
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


def sequence_shape(inner):
    """(T, B, H) of the sequence whose fastlstm cache is `inner` (hs_ext holds h0 and T steps)."""
    T1, B, H = inner.hs_ext.shape
    return T1 - 1, B, H
