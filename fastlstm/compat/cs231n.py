"""Stanford CS231n's ``rnn_layers.py``, computed by fastlstm's C kernels.

Change one import::

    from cs231n.rnn_layers import *           # before: NumPy, one Python step at a time
    from fastlstm.compat.cs231n import *      # after: fastlstm, one C call per sequence

Shapes (CS231n's letters): N batch, T steps, D input features, H hidden units, V vocabulary or
classes, M output features. Sequences are batch-major, ``x (N, T, D)`` and ``h (N, T, H)``. The
LSTM's four gate blocks lie along the last axis of ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)`` in
CS231n's order **i, f, o, g**::

    a      = x_t @ Wx + h_{t-1} @ Wh + b
    i, f, o = sigmoid(a[:, 0H:1H]), sigmoid(a[:, 1H:2H]), sigmoid(a[:, 2H:3H])
    g      = tanh(a[:, 3H:4H])
    c_t    = f * c_{t-1} + i * g;    h_t = o * tanh(c_t)

and the vanilla RNN is ``h_t = tanh(x_t @ Wx + h_{t-1} @ Wh + b)``. ``lstm_forward`` starts from a
zero cell state, as CS231n's does. float32 and float64 are kept as given (mixed inputs promote as
NumPy does). Caches are opaque: pass them only to this module's matching backward.

The gate blocks are reordered into fastlstm's i, f, g, o on every call (one copy of the weights; see
``fastlstm.compat._common`` for why that beats caching), so weights updated in place between calls
are always seen.
"""
import numpy as np

from .. import _functions as fl
from ._common import (Cache, checked, recurrent_weights, sequence_shape, sigmoid, swap_go,
                      unwrap)

__all__ = [
    "rnn_step_forward", "rnn_step_backward", "rnn_forward", "rnn_backward",
    "lstm_step_forward", "lstm_step_backward", "lstm_forward", "lstm_backward",
    "word_embedding_forward", "word_embedding_backward",
    "temporal_affine_forward", "temporal_affine_backward", "temporal_softmax_loss", "sigmoid",
]

_HERE = "fastlstm.compat.cs231n."


def _batch_major(array):
    """(T, N, ...) -> a C-contiguous (N, T, ...) copy, sharing no memory with fastlstm's cache."""
    return np.ascontiguousarray(np.swapaxes(array, 0, 1))


def _step_args(x, states, Wx, Wh, b, gates):
    x = checked("x", x, "(N, D)", (None, None))
    Wx, Wh, b, H = recurrent_weights(Wx, Wh, b, x.shape[1], gates)
    states = [checked(name, s, "(N, H)", (x.shape[0], H)) for name, s in states]
    return x, states, Wx, Wh, b


def _sequence_args(x, h0, Wx, Wh, b, gates):
    x = checked("x", x, "(N, T, D)", (None, None, None))
    Wx, Wh, b, H = recurrent_weights(Wx, Wh, b, x.shape[2], gates)
    h0 = checked("h0", h0, "(N, H)", (x.shape[0], H))
    return np.swapaxes(x, 0, 1), h0, Wx, Wh, b


def _sequence_gradient(dh, inner):
    """dh (N, T, H), checked against the forward's shapes, as a time-major (T, N, H) view."""
    T, N, H = sequence_shape(inner)
    return np.swapaxes(checked("dh", dh, "(N, T, H)", (N, T, H)), 0, 1)


# ---- vanilla RNN ---------------------------------------------------------------------------------

def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """One vanilla RNN step, ``next_h = tanh(x @ Wx + prev_h @ Wh + b)``.

    Parameters
    ----------
    x : array_like, shape (N, D)
    prev_h : array_like, shape (N, H)
    Wx : array_like, shape (D, H);  Wh : array_like, shape (H, H);  b : array_like, shape (H,)

    Returns
    -------
    next_h : ndarray, shape (N, H)
    cache : opaque, for rnn_step_backward
    """
    x, (prev_h,), Wx, Wh, b = _step_args(x, [("prev_h", prev_h)], Wx, Wh, b, gates=1)
    next_h, inner = fl.rnn_cell_forward(x, prev_h, Wx, Wh, b)
    return next_h, Cache(_HERE + "rnn_step_forward", inner)


def rnn_step_backward(dnext_h, cache):
    """Backward of rnn_step_forward.

    Parameters
    ----------
    dnext_h : array_like, shape (N, H)
    cache : what rnn_step_forward returned

    Returns
    -------
    dx (N, D), dprev_h (N, H), dWx (D, H), dWh (H, H), db (H,) : ndarray
    """
    inner, _ = unwrap(cache, _HERE + "rnn_step_forward")
    return fl.rnn_cell_backward(dnext_h, inner)


def rnn_forward(x, h0, Wx, Wh, b):
    """A vanilla RNN over a whole batch-major sequence, in one C call.

    Parameters
    ----------
    x : array_like, shape (N, T, D)
    h0 : array_like, shape (N, H)
    Wx : array_like, shape (D, H);  Wh : array_like, shape (H, H);  b : array_like, shape (H,)

    Returns
    -------
    h : ndarray, shape (N, T, H)
        The hidden state after every step.
    cache : opaque, for rnn_backward
    """
    xs, h0, Wx, Wh, b = _sequence_args(x, h0, Wx, Wh, b, gates=1)
    hs, _, inner = fl.rnn_forward(xs, h0, Wx, Wh, b)
    return _batch_major(hs), Cache(_HERE + "rnn_forward", inner)


def rnn_backward(dh, cache):
    """Backward of rnn_forward.

    Parameters
    ----------
    dh : array_like, shape (N, T, H)
        Upstream gradient of every step's hidden state.
    cache : what rnn_forward returned

    Returns
    -------
    dx (N, T, D), dh0 (N, H), dWx (D, H), dWh (H, H), db (H,) : ndarray
    """
    inner, _ = unwrap(cache, _HERE + "rnn_forward")
    dxs, dh0, dWx, dWh, db = fl.rnn_backward(_sequence_gradient(dh, inner), None, inner)
    return _batch_major(dxs), dh0, dWx, dWh, db


# ---- LSTM (gate blocks i, f, o, g) ---------------------------------------------------------------

def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """One LSTM step (equations in the module docstring; gate blocks i, f, o, g).

    Parameters
    ----------
    x : array_like, shape (N, D)
    prev_h, prev_c : array_like, shape (N, H)
    Wx : array_like, shape (D, 4H);  Wh : array_like, shape (H, 4H);  b : array_like, shape (4H,)

    Returns
    -------
    next_h, next_c : ndarray, shape (N, H)
    cache : opaque, for lstm_step_backward
    """
    x, (prev_h, prev_c), Wx, Wh, b = _step_args(
        x, [("prev_h", prev_h), ("prev_c", prev_c)], Wx, Wh, b, gates=4)
    next_h, next_c, inner = fl.lstm_cell_forward(x, prev_h, prev_c,
                                                 swap_go(Wx), swap_go(Wh), swap_go(b))
    return next_h, next_c, Cache(_HERE + "lstm_step_forward", inner)


def lstm_step_backward(dnext_h, dnext_c, cache):
    """Backward of lstm_step_forward.

    Parameters
    ----------
    dnext_h, dnext_c : array_like, shape (N, H)
    cache : what lstm_step_forward returned

    Returns
    -------
    dx (N, D), dprev_h (N, H), dprev_c (N, H), dWx (D, 4H), dWh (H, 4H), db (4H,) : ndarray
        Weight gradients in the gate order i, f, o, g.
    """
    inner, _ = unwrap(cache, _HERE + "lstm_step_forward")
    dx, dprev_h, dprev_c, dW, dU, db = fl.lstm_cell_backward(dnext_h, dnext_c, inner)
    return dx, dprev_h, dprev_c, swap_go(dW), swap_go(dU), swap_go(db)


def lstm_forward(x, h0, Wx, Wh, b):
    """An LSTM over a whole batch-major sequence from a zero cell state, in one C call.

    Parameters
    ----------
    x : array_like, shape (N, T, D)
    h0 : array_like, shape (N, H)
    Wx : array_like, shape (D, 4H);  Wh : array_like, shape (H, 4H);  b : array_like, shape (4H,)
        Gate blocks i, f, o, g along the last axis.

    Returns
    -------
    h : ndarray, shape (N, T, H)
        The hidden state after every step.
    cache : opaque, for lstm_backward

    Examples
    --------
    >>> import numpy as np
    >>> from fastlstm.compat.cs231n import lstm_forward, lstm_backward
    >>> N, T, D, H = 2, 3, 4, 5
    >>> rng = np.random.default_rng(0)
    >>> x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H))
    >>> Wx, Wh = rng.standard_normal((D, 4 * H)), rng.standard_normal((H, 4 * H))
    >>> b = np.zeros(4 * H)
    >>> h, cache = lstm_forward(x, h0, Wx, Wh, b)
    >>> dx, dh0, dWx, dWh, db = lstm_backward(np.ones_like(h), cache)
    >>> h.shape, dx.shape, dWx.shape
    ((2, 3, 5), (2, 3, 4), (4, 20))
    """
    xs, h0, Wx, Wh, b = _sequence_args(x, h0, Wx, Wh, b, gates=4)
    hs, _, _, inner = fl.lstm_forward(xs, h0, None, swap_go(Wx), swap_go(Wh), swap_go(b))
    return _batch_major(hs), Cache(_HERE + "lstm_forward", inner)


def lstm_backward(dh, cache):
    """Backward of lstm_forward.

    Parameters
    ----------
    dh : array_like, shape (N, T, H)
        Upstream gradient of every step's hidden state.
    cache : what lstm_forward returned

    Returns
    -------
    dx (N, T, D), dh0 (N, H), dWx (D, 4H), dWh (H, 4H), db (4H,) : ndarray
        Weight gradients in the gate order i, f, o, g.
    """
    inner, _ = unwrap(cache, _HERE + "lstm_forward")
    dxs, dh0, _, dW, dU, db = fl.lstm_backward(_sequence_gradient(dh, inner), None, None, inner)
    return _batch_major(dxs), dh0, swap_go(dW), swap_go(dU), swap_go(db)


# ---- the other layers of a captioning model ------------------------------------------------------

def word_embedding_forward(x, W):
    """Look up word vectors: ``out[n, t] = W[x[n, t]]``.

    Parameters
    ----------
    x : array_like of int, shape (N, T)
        Word indices in [0, V).
    W : array_like, shape (V, D)

    Returns
    -------
    out : ndarray, shape (N, T, D)
    cache : opaque, for word_embedding_backward
    """
    x = np.asarray(x)
    W = checked("W", W, "(V, D)", (None, None))
    if x.dtype.kind not in "iu":
        raise TypeError(f"x: expected integer word indices, got dtype {x.dtype}")
    return W[x], Cache(_HERE + "word_embedding_forward", x, (W.shape, W.dtype))


def word_embedding_backward(dout, cache):
    """Backward of word_embedding_forward: rows of repeated words add up (``np.add.at``).

    Parameters
    ----------
    dout : array_like, shape (N, T, D)
    cache : what word_embedding_forward returned

    Returns
    -------
    dW : ndarray, shape (V, D), W's dtype
    """
    x, (shape, dtype) = unwrap(cache, _HERE + "word_embedding_forward")
    dout = checked("dout", dout, "(N, T, D)", x.shape + shape[1:])
    dW = np.zeros(shape, dtype)
    np.add.at(dW, x, dout)
    return dW


def temporal_affine_forward(x, w, b):
    """An affine layer at every step: ``out = x @ w + b``.

    Parameters
    ----------
    x : array_like, shape (N, T, D)
    w : array_like, shape (D, M);  b : array_like, shape (M,)

    Returns
    -------
    out : ndarray, shape (N, T, M)
    cache : opaque, for temporal_affine_backward
    """
    x = checked("x", x, "(N, T, D)", (None, None, None))
    w = checked("w", w, "(D, M)", (x.shape[2], None))
    b = checked("b", b, "(M,)", (w.shape[1],))
    return fl.matmul(x, w) + b, Cache(_HERE + "temporal_affine_forward", (x, w))


def temporal_affine_backward(dout, cache):
    """Backward of temporal_affine_forward.

    Parameters
    ----------
    dout : array_like, shape (N, T, M)
    cache : what temporal_affine_forward returned

    Returns
    -------
    dx (N, T, D), dw (D, M), db (M,) : ndarray
    """
    (x, w), _ = unwrap(cache, _HERE + "temporal_affine_forward")
    N, T, D = x.shape
    dout = checked("dout", dout, "(N, T, M)", (N, T, w.shape[1]))
    dx = fl.matmul(dout, w.T)
    dw = fl.matmul(x.reshape(N * T, D).T, dout.reshape(N * T, -1))
    return dx, dw, dout.sum(axis=(0, 1))


def temporal_softmax_loss(x, y, mask, verbose=False):
    """Softmax cross-entropy at every step, counting only the masked-in steps, divided by N (not by
    the number of steps), as CS231n's captioning model does.

    Parameters
    ----------
    x : array_like, shape (N, T, V)
        Scores.
    y : array_like of int, shape (N, T)
        Target indices in [0, V).
    mask : array_like of bool, shape (N, T)
        Which steps count.
    verbose : bool
        Print the shape of the flattened gradient, as CS231n's does.

    Returns
    -------
    loss : float
    dx : ndarray, shape (N, T, V), x's dtype
    """
    x = checked("x", x, "(N, T, V)", (None, None, None))
    N, T, V = x.shape
    y = checked("y", y, "(N, T)", (N, T)).reshape(N * T)
    mask = checked("mask", mask, "(N, T)", (N, T)).reshape(N * T)
    shifted = x.reshape(N * T, V) - x.reshape(N * T, V).max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(N * T)
    loss = -np.sum(mask * (shifted[rows, y] - log_norm[:, 0])) / N
    dx_flat = np.exp(shifted - log_norm)
    dx_flat[rows, y] -= 1
    dx_flat *= mask[:, np.newaxis] / N
    if verbose:
        print("dx_flat: ", dx_flat.shape)
    return loss, dx_flat.reshape(N, T, V).astype(x.dtype, copy=False)
