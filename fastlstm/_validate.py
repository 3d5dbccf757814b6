"""Argument checking shared by ``fastlstm`` and ``fastlstm.reference``.

Both modules call these functions first, so they accept the same inputs, compute in the same dtype
and raise the same errors: ``ValueError`` naming the argument, the expected shape and the given one;
``TypeError`` for dtypes that are not real numbers.
"""
import numpy as np

from ._kinds import Kind, bias_shape

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def compute_dtype(arrays):
    """The dtype a computation on ``arrays`` runs in: NumPy's promotion of them, with integers and
    booleans promoted to float64 and float16 to float32 (as NumPy's own ufuncs compute them)."""
    dtype = np.result_type(*arrays)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype == np.float16:
        return np.dtype(np.float32)
    if dtype in FLOAT_DTYPES:
        return dtype
    raise TypeError(
        f"fastlstm computes in float32 or float64, but the arguments promote to {dtype}: "
        "pass real floating-point (or integer) arrays"
    )


def _as_array(name, value):
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected an array, got {type(value).__name__}") from exc


def _check_shape(name, array, symbols, sizes, note=""):
    """Raise ValueError unless array.shape == sizes; `symbols` spells the shape, e.g. "(B, H)"."""
    if array.shape != tuple(sizes):
        raise ValueError(
            f"{name}: expected shape {symbols} = {tuple(sizes)}{note}, got {array.shape}"
        )


def _check_ndim(name, array, symbols):
    ndim = symbols.count(",") + 1
    if array.ndim != ndim:
        raise ValueError(
            f"{name}: expected a {ndim}-d array of shape {symbols}, got shape {array.shape}"
        )


def positive_int(name, value):
    """`value` as an int, which must be >= 1 (a size); bools are not sizes."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def float_dtype(dtype):
    """np.dtype(`dtype`), which must be float32 or float64 (a layer's parameters)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    return dt


def shaped_array(name, value, symbols, sizes, dtype):
    """`value` as a C-contiguous array of `dtype`; its shape must be `sizes` (None: any size).

    `symbols` names each axis, e.g. ("T", "B", "I"). Real inputs (integer or float) are cast to the
    layer's dtype; anything else is a TypeError naming the argument.
    """
    array = _as_array(name, value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real (float32 or float64) array, "
                        f"got dtype {array.dtype}")
    if array.ndim != len(sizes) or any(s is not None and s != n for s, n in zip(sizes, array.shape)):
        spelled = ", ".join(symbols) + ("," if len(symbols) == 1 else "")
        known = ", ".join(sym if s is None else str(s) for sym, s in zip(symbols, sizes))
        known += "," if len(sizes) == 1 else ""
        raise ValueError(f"{name}: expected shape ({spelled}) = ({known}), got {array.shape}")
    return np.ascontiguousarray(array, dtype)


def real_array(name, value):
    """`value` as a float32 or float64 array (a view where no conversion is needed): other real
    dtypes become float64; anything else is a TypeError naming the argument."""
    array = _as_array(name, value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real array, got dtype {array.dtype}")
    if array.dtype not in FLOAT_DTYPES:
        array = array.astype(np.float64)
    return array


def matmul_args(a, b):
    """a (..., K) and b (K, N) as arrays of their compute dtype (views where no conversion is
    needed), or ValueError / TypeError naming the argument."""
    a, b = _as_array("a", a), _as_array("b", b)
    dtype = compute_dtype([a, b])
    if a.ndim < 1:
        raise ValueError(f"a: expected an array of shape (..., K), got shape {a.shape}")
    _check_ndim("b", b, "(K, N)")
    _check_shape("b", b, "(K, N)", (a.shape[-1], b.shape[1]), " (K from a's last axis)")
    return a.astype(dtype, copy=False), b.astype(dtype, copy=False)


def recurrent_args(kind: Kind, inputs, states, W, U, b, sequence):
    """Check and convert the arguments of a forward pass.

    Parameters
    ----------
    kind : Kind
        The recurrent kind (fastlstm._kinds), which gives the gate blocks and the bias rows.
    inputs : tuple (name, array)
        ``("xs", xs)`` of shape (T, B, I) when `sequence`, else ``("x", x)`` of shape (B, I).
    states : list of (name, array or None)
        Initial states, each (B, H); None means zeros.
    W, U, b : array_like
        Weights of shapes (I, G*H), (H, G*H), (G*H,); b is (2, G*H) for the GRU, whose b[0] is
        the input-side bias and b[1] the recurrent-side one.

    Returns
    -------
    x, states, W, U, b : C-contiguous arrays of one float dtype (states stay None where given None)
    """
    name, x = inputs
    x = _as_array(name, x)
    W, U, b = (_as_array(n, a) for n, a in (("W", W), ("U", U), ("b", b)))
    states = [(n, None if s is None else _as_array(n, s)) for n, s in states]

    gates = kind.gates
    g = f"{gates}H" if gates > 1 else "H"  # the gate columns, as the messages spell them
    _check_ndim(name, x, "(T, B, I)" if sequence else "(B, I)")
    _check_ndim("U", U, f"(H, {g})")
    *_, B, I = x.shape
    H = U.shape[0]
    _check_shape("U", U, f"(H, {g})", (H, gates * H), note=" (H = U.shape[0])")
    _check_shape("W", W, f"(I, {g})", (I, gates * H))
    _check_shape("b", b, f"({kind.bias_rows}, {g})" if kind.bias_rows > 1 else f"({g},)",
                 bias_shape(kind, H))
    for n, s in states:
        if s is not None:
            _check_shape(n, s, "(B, H)", (B, H))

    dtype = compute_dtype([x, W, U, b] + [s for _, s in states if s is not None])

    def convert(a):
        return None if a is None else np.ascontiguousarray(a, dtype=dtype)

    return convert(x), [convert(s) for _, s in states], convert(W), convert(U), convert(b)


def sequence_lengths(value, T, B):
    """Each batch row's sequence length: None (every row is T long), or B integers in [0, T], as a
    C-contiguous np.intp array."""
    if value is None:
        return None
    array = _as_array("lengths", value)
    _check_shape("lengths", array, "(B,)", (B,))
    if array.size and array.dtype.kind not in "iu":  # an empty list is float64: let it pass
        raise TypeError(f"lengths: expected integers, got dtype {array.dtype}")
    bad = np.flatnonzero((array < 0) | (array > T))
    if bad.size:
        raise ValueError(
            f"lengths: expected values in [0, T] = [0, {T}], got {array[bad[0]]} in row {bad[0]}"
        )
    return np.ascontiguousarray(array, np.intp)


def gradient(name, value, shape, symbols, dtype):
    """An incoming gradient: None, or an array of exactly `shape`, as a C-contiguous array of the
    forward pass's `dtype`."""
    if value is None:
        return None
    array = _as_array(name, value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real floating-point array, got dtype {array.dtype}")
    _check_shape(name, array, symbols, shape)
    return np.ascontiguousarray(array, dtype=dtype)


def check_cache(cache, cache_type, function):
    """The cache must be the one `function` returned."""
    if not isinstance(cache, cache_type):
        raise TypeError(
            f"cache: expected the cache returned by {function}, got {type(cache).__name__}"
        )


def sequence_gradients(cache, cache_type, function, dhs, **final):
    """Check a whole-sequence backward's cache (the one `function` returned) and its incoming
    gradients: `dhs` of shape (T, B, H) and the final-state gradients `final` (name=value), each
    (B, H). Returns them in that order, as gradient() does (None stays None)."""
    check_cache(cache, cache_type, function)
    (T, B, _), H, dtype = cache.xs.shape, cache.U.shape[0], cache.xs.dtype
    return [gradient("dhs", dhs, (T, B, H), "(T, B, H)", dtype)] + [
        gradient(name, value, (B, H), "(B, H)", dtype) for name, value in final.items()
    ]
