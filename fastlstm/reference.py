"""Pure NumPy LSTM, GRU and RNN: the readable reference that fastlstm's C kernels are tested against.

The functions here have the same names, signatures and results as those of ``fastlstm``, so that
``from fastlstm import reference as lstm`` and ``import fastlstm as lstm`` are interchangeable.

Shapes: T time steps, B batch rows, I input features, H hidden units. Gate blocks along the last
axis of ``W`` (I, 4H), ``U`` (H, 4H) and ``b`` (4H,) are in the order [i | f | g | o]::

    z   = x_t @ W + h_{t-1} @ U + b
    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);   g = tanh(z_g)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

The GRU is PyTorch's ``nn.GRU``, gate blocks [r | z | n] along the last axis of ``W`` (I, 3H) and
``U`` (H, 3H), and two biases ``b`` (2, 3H): b[0] on the input side, b[1] on the recurrent side::

    r   = sigmoid(x_t @ W_r + b[0]_r + h_{t-1} @ U_r + b[1]_r)
    z   = sigmoid(x_t @ W_z + b[0]_z + h_{t-1} @ U_z + b[1]_z)
    n   = tanh(x_t @ W_n + b[0]_n + r * (h_{t-1} @ U_n + b[1]_n))
    h_t = (1 - z) * n + z * h_{t-1}

The vanilla RNN is ``h_t = tanh(x_t @ W + h_{t-1} @ U + b)`` with W (I, H), U (H, H), b (H,).

The sequence forwards take ``lengths`` (B,), each row's own length in [0, T], for a batch of
sequences of different lengths padded to T steps (torch's packed sequences, forward direction).
At the steps t >= lengths[b] past its end a row keeps its state (``h_t = h_{t-1}``, ``c_t =
c_{t-1}``): ``hs[t, b]`` holds that carried state, so ``h_T``, ``c_T`` are each row's state after
its own last step; and no gradient is made there: the backward ignores ``dhs[t, b]``, gives
``dxs[t, b] = 0``, adds nothing to dW, dU, db, and carries dh_T (and dc_T) back unchanged to the
row's last step. The inputs ``xs[t, b]`` past the end never reach an output; keep them finite (zero
padding), as the weight gradients multiply them by zero.

Each ``*_backward`` takes the gradient of a loss with respect to the forward's outputs and returns
the gradients with respect to its inputs; ``None`` stands for a zero gradient. A ``cache`` is opaque:
pass it back to the matching backward of this module. It refers to the forward's inputs and outputs,
so modify neither before the backward.
"""
import numpy as np

from . import _kinds, _validate

__all__ = [
    "lstm_cell_forward",
    "lstm_cell_backward",
    "lstm_forward",
    "lstm_backward",
    "rnn_cell_forward",
    "rnn_cell_backward",
    "rnn_forward",
    "rnn_backward",
    "gru_cell_forward",
    "gru_cell_backward",
    "gru_forward",
    "gru_backward",
    "matmul",
]


def sigmoid(x):
    """1 / (1 + exp(-x)), elementwise; exp overflowing to inf gives the correct limit 0."""
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


# ---- the LSTM gates, shared by the cell and the sequence ------------------------------------------


def _lstm_gates(z, c_prev):
    """Activations (i, f, g, o), the new cell state c and tanh(c) from the pre-activation z (B, 4H)."""
    H = c_prev.shape[1]
    i = sigmoid(z[:, :H])
    f = sigmoid(z[:, H : 2 * H])
    g = np.tanh(z[:, 2 * H : 3 * H])
    o = sigmoid(z[:, 3 * H :])
    c = f * c_prev + i * g
    return i, f, g, o, c, np.tanh(c)


def _lstm_gates_backward(dh, dc, i, f, g, o, c_prev, tanh_c):
    """dz (B, 4H) and dc_prev (B, H) from the gradients dh, dc of one step's outputs."""
    dc = dc + dh * o * (1 - tanh_c**2)
    dz = np.concatenate(
        [
            dc * g * i * (1 - i),
            dc * c_prev * f * (1 - f),
            dc * i * (1 - g**2),
            dh * tanh_c * o * (1 - o),
        ],
        axis=1,
    )
    return dz, dc * f


def _zeros_if_none(a, shape, dtype):
    return np.zeros(shape, dtype) if a is None else a


def _ended(lengths, t):
    """(B,) whether each row's sequence ended before step t; None without lengths (none did)."""
    return None if lengths is None else t >= lengths


def _carry(ended, t, *states_ext):
    """Rows whose sequence has ended keep their state through step t: s[t+1] = s[t] there."""
    if ended is not None:
        for s in states_ext:
            s[t + 1, ended] = s[t, ended]


class _Saved:
    """What a forward pass keeps for its backward pass: named arrays."""

    __slots__ = ()

    def __init__(self, **saved):
        for name, value in saved.items():
            setattr(self, name, value)


class _LSTMCellCache(_Saved):
    __slots__ = ("x", "h_prev", "c_prev", "W", "U", "i", "f", "g", "o", "tanh_c")


class _LSTMCache(_Saved):
    __slots__ = ("xs", "hs_ext", "cs_ext", "W", "U", "acts", "lengths")


# ---- LSTM cell ------------------------------------------------------------------------------------


def lstm_cell_forward(x, h_prev, c_prev, W, U, b):
    """One LSTM step.

    Parameters
    ----------
    x : array_like, shape (B, I)
    h_prev, c_prev : array_like or None, shape (B, H)
        Previous hidden and cell state; None means zeros.
    W : array_like, shape (I, 4H);  U : array_like, shape (H, 4H);  b : array_like, shape (4H,)
        Gate blocks [i | f | g | o] along the last axis.

    Returns
    -------
    h, c : ndarray, shape (B, H)
        New hidden and cell state.
    cache : object
        For :func:`lstm_cell_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlstm import reference as lstm
    >>> B, I, H = 2, 3, 4
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((B, I))
    >>> W, U, b = rng.standard_normal((I, 4 * H)), rng.standard_normal((H, 4 * H)), np.zeros(4 * H)
    >>> h, c, cache = lstm.lstm_cell_forward(x, None, None, W, U, b)
    >>> h.shape, c.shape
    ((2, 4), (2, 4))
    """
    x, (h_prev, c_prev), W, U, b = _validate.recurrent_args(
        _kinds.LSTM, ("x", x), [("h_prev", h_prev), ("c_prev", c_prev)], W, U, b, sequence=False
    )
    B, H = x.shape[0], U.shape[0]
    h_prev = _zeros_if_none(h_prev, (B, H), x.dtype)
    c_prev = _zeros_if_none(c_prev, (B, H), x.dtype)
    i, f, g, o, c, tanh_c = _lstm_gates(x @ W + h_prev @ U + b, c_prev)
    cache = _LSTMCellCache(
        x=x, h_prev=h_prev, c_prev=c_prev, W=W, U=U, i=i, f=f, g=g, o=o, tanh_c=tanh_c
    )
    return o * tanh_c, c, cache


def lstm_cell_backward(dh, dc, cache):
    """Gradients of one LSTM step.

    Parameters
    ----------
    dh, dc : array_like or None, shape (B, H)
        Gradients of the loss with respect to the step's h and c; None means zero.
    cache : object
        From :func:`lstm_cell_forward`.

    Returns
    -------
    dx : ndarray, shape (B, I)
    dh_prev, dc_prev : ndarray, shape (B, H)
    dW : ndarray, shape (I, 4H);  dU : ndarray, shape (H, 4H);  db : ndarray, shape (4H,)
    """
    _validate.check_cache(cache, _LSTMCellCache, "fastlstm.reference.lstm_cell_forward")
    k = cache
    shape, dtype = k.h_prev.shape, k.x.dtype
    dh = _zeros_if_none(_validate.gradient("dh", dh, shape, "(B, H)", dtype), shape, dtype)
    dc = _zeros_if_none(_validate.gradient("dc", dc, shape, "(B, H)", dtype), shape, dtype)
    dz, dc_prev = _lstm_gates_backward(dh, dc, k.i, k.f, k.g, k.o, k.c_prev, k.tanh_c)
    return dz @ k.W.T, dz @ k.U.T, dc_prev, k.x.T @ dz, k.h_prev.T @ dz, dz.sum(axis=0)


# ---- LSTM sequence --------------------------------------------------------------------------------


def lstm_forward(xs, h0, c0, W, U, b, lengths=None):
    """An LSTM over a whole sequence.

    Parameters
    ----------
    xs : array_like, shape (T, B, I)
        Time-major inputs.
    h0, c0 : array_like or None, shape (B, H)
        Initial hidden and cell state; None means zeros.
    W : array_like, shape (I, 4H);  U : array_like, shape (H, 4H);  b : array_like, shape (4H,)
        Gate blocks [i | f | g | o] along the last axis.
    lengths : array_like of int, shape (B,), optional
        Each row's sequence length, in [0, T]; None means T for every row. Past its end a row
        keeps its state and gets no gradient (see the module's documentation).

    Returns
    -------
    hs : ndarray, shape (T, B, H)
        Hidden state after every step (past a row's end: its carried final state).
    h_T, c_T : ndarray, shape (B, H)
        Final hidden and cell state, each row's after its own last step (h0 and c0 when T = 0).
    cache : object
        For :func:`lstm_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlstm import reference as lstm
    >>> T, B, I, H = 5, 2, 3, 4
    >>> rng = np.random.default_rng(0)
    >>> xs = rng.standard_normal((T, B, I))
    >>> W, U, b = rng.standard_normal((I, 4 * H)), rng.standard_normal((H, 4 * H)), np.zeros(4 * H)
    >>> hs, h_T, c_T, cache = lstm.lstm_forward(xs, None, None, W, U, b)
    >>> hs.shape, bool(np.array_equal(hs[-1], h_T))
    ((5, 2, 4), True)
    """
    xs, (h0, c0), W, U, b = _validate.recurrent_args(
        _kinds.LSTM, ("xs", xs), [("h0", h0), ("c0", c0)], W, U, b, sequence=True
    )
    T, B, _ = xs.shape
    H = U.shape[0]
    lengths = _validate.sequence_lengths(lengths, T, B)
    hs_ext = np.empty((T + 1, B, H), xs.dtype)  # hs_ext[0] = h0, hs_ext[t+1] = h_t
    cs_ext = np.empty((T + 1, B, H), xs.dtype)
    acts = np.empty((T, B, 4 * H), xs.dtype)  # i, f, g, o of every step
    hs_ext[0] = _zeros_if_none(h0, (B, H), xs.dtype)
    cs_ext[0] = _zeros_if_none(c0, (B, H), xs.dtype)
    zx = xs @ W + b  # the input projection of every step at once
    for t in range(T):
        i, f, g, o, c, tanh_c = _lstm_gates(zx[t] + hs_ext[t] @ U, cs_ext[t])
        acts[t] = np.concatenate([i, f, g, o], axis=1)
        cs_ext[t + 1] = c
        hs_ext[t + 1] = o * tanh_c
        _carry(_ended(lengths, t), t, hs_ext, cs_ext)
    cache = _LSTMCache(xs=xs, hs_ext=hs_ext, cs_ext=cs_ext, W=W, U=U, acts=acts, lengths=lengths)
    return hs_ext[1:], hs_ext[T].copy(), cs_ext[T].copy(), cache


def lstm_backward(dhs, dh_T, dc_T, cache):
    """Backpropagation through time for :func:`lstm_forward`.

    Parameters
    ----------
    dhs : array_like or None, shape (T, B, H)
        Gradient with respect to ``hs``.
    dh_T, dc_T : array_like or None, shape (B, H)
        Gradients with respect to ``h_T`` and ``c_T``. None means zero for any of the three.
    cache : object
        From :func:`lstm_forward`, whose ``lengths`` the backward honours: ``dhs`` past a row's
        end is ignored there.

    Returns
    -------
    dxs : ndarray, shape (T, B, I)
    dh0, dc0 : ndarray, shape (B, H)
    dW : ndarray, shape (I, 4H);  dU : ndarray, shape (H, 4H);  db : ndarray, shape (4H,)
    """
    dhs, dh, dc = _validate.sequence_gradients(
        cache, _LSTMCache, "fastlstm.reference.lstm_forward", dhs, dh_T=dh_T, dc_T=dc_T
    )
    k = cache
    T, B, I = k.xs.shape
    H, dtype = k.U.shape[0], k.xs.dtype
    dh, dc = _zeros_if_none(dh, (B, H), dtype), _zeros_if_none(dc, (B, H), dtype)
    dz_all = np.empty((T, B, 4 * H), dtype)
    for t in reversed(range(T)):
        dh_t = dh if dhs is None else dh + dhs[t]
        i, f, g, o = np.split(k.acts[t], 4, axis=1)
        dz_all[t], dc_prev = _lstm_gates_backward(
            dh_t, dc, i, f, g, o, k.cs_ext[t], np.tanh(k.cs_ext[t + 1])
        )
        ended = _ended(k.lengths, t)
        if ended is not None:  # no gradient past a row's end; dh and dc pass through unchanged
            dz_all[t, ended] = 0
            dc_prev[ended] = dc[ended]
        dh_prev = dz_all[t] @ k.U.T
        if ended is not None:
            dh_prev[ended] = dh[ended]
        dh, dc = dh_prev, dc_prev
    dz = dz_all.reshape(T * B, 4 * H)
    h_prev = k.hs_ext[:T].reshape(T * B, H)
    dW = k.xs.reshape(T * B, I).T @ dz
    dU = h_prev.T @ dz
    return (dz @ k.W.T).reshape(T, B, I), dh.copy(), dc.copy(), dW, dU, dz.sum(axis=0)


# ---- RNN ------------------------------------------------------------------------------------------


class _RNNCellCache(_Saved):
    __slots__ = ("x", "h_prev", "W", "U", "h")


class _RNNCache(_Saved):
    __slots__ = ("xs", "hs_ext", "W", "U", "lengths")


def rnn_cell_forward(x, h_prev, W, U, b):
    """One vanilla RNN step, ``h = tanh(x @ W + h_prev @ U + b)``.

    Parameters
    ----------
    x : array_like, shape (B, I)
    h_prev : array_like or None, shape (B, H)
        Previous hidden state; None means zeros.
    W : array_like, shape (I, H);  U : array_like, shape (H, H);  b : array_like, shape (H,)

    Returns
    -------
    h : ndarray, shape (B, H)
    cache : object
        For :func:`rnn_cell_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlstm import reference as rnn
    >>> h, cache = rnn.rnn_cell_forward(np.ones((1, 2)), None, np.ones((2, 3)), np.eye(3), np.zeros(3))
    >>> np.round(h, 4)
    array([[0.964, 0.964, 0.964]])
    """
    x, (h_prev,), W, U, b = _validate.recurrent_args(
        _kinds.RNN, ("x", x), [("h_prev", h_prev)], W, U, b, sequence=False
    )
    h_prev = _zeros_if_none(h_prev, (x.shape[0], U.shape[0]), x.dtype)
    h = np.tanh(x @ W + h_prev @ U + b)
    return h, _RNNCellCache(x=x, h_prev=h_prev, W=W, U=U, h=h)


def rnn_cell_backward(dh, cache):
    """Gradients of one RNN step.

    Parameters
    ----------
    dh : array_like or None, shape (B, H)
        Gradient with respect to the step's h; None means zero.
    cache : object
        From :func:`rnn_cell_forward`.

    Returns
    -------
    dx : ndarray, shape (B, I);  dh_prev : ndarray, shape (B, H)
    dW : ndarray, shape (I, H);  dU : ndarray, shape (H, H);  db : ndarray, shape (H,)
    """
    _validate.check_cache(cache, _RNNCellCache, "fastlstm.reference.rnn_cell_forward")
    k = cache
    shape, dtype = k.h.shape, k.x.dtype
    dh = _zeros_if_none(_validate.gradient("dh", dh, shape, "(B, H)", dtype), shape, dtype)
    dz = dh * (1 - k.h**2)
    return dz @ k.W.T, dz @ k.U.T, k.x.T @ dz, k.h_prev.T @ dz, dz.sum(axis=0)


def rnn_forward(xs, h0, W, U, b, lengths=None):
    """A vanilla tanh RNN over a whole sequence.

    Parameters
    ----------
    xs : array_like, shape (T, B, I)
    h0 : array_like or None, shape (B, H)
        Initial hidden state; None means zeros.
    W : array_like, shape (I, H);  U : array_like, shape (H, H);  b : array_like, shape (H,)
    lengths : array_like of int, shape (B,), optional
        Each row's sequence length, in [0, T]; None means T for every row. Past its end a row
        keeps its state and gets no gradient (see the module's documentation).

    Returns
    -------
    hs : ndarray, shape (T, B, H)
        Hidden state after every step (past a row's end: its carried final state).
    h_T : ndarray, shape (B, H)
        Final hidden state, each row's after its own last step (h0 when T = 0).
    cache : object
        For :func:`rnn_backward`.
    """
    xs, (h0,), W, U, b = _validate.recurrent_args(
        _kinds.RNN, ("xs", xs), [("h0", h0)], W, U, b, sequence=True
    )
    T, B, _ = xs.shape
    H = U.shape[0]
    lengths = _validate.sequence_lengths(lengths, T, B)
    hs_ext = np.empty((T + 1, B, H), xs.dtype)
    hs_ext[0] = _zeros_if_none(h0, (B, H), xs.dtype)
    zx = xs @ W + b
    for t in range(T):
        hs_ext[t + 1] = np.tanh(zx[t] + hs_ext[t] @ U)
        _carry(_ended(lengths, t), t, hs_ext)
    cache = _RNNCache(xs=xs, hs_ext=hs_ext, W=W, U=U, lengths=lengths)
    return hs_ext[1:], hs_ext[T].copy(), cache


def rnn_backward(dhs, dh_T, cache):
    """Backpropagation through time for :func:`rnn_forward`.

    Parameters
    ----------
    dhs : array_like or None, shape (T, B, H)
    dh_T : array_like or None, shape (B, H)
        Gradients with respect to ``hs`` and ``h_T``; None means zero.
    cache : object
        From :func:`rnn_forward`, whose ``lengths`` the backward honours.

    Returns
    -------
    dxs : ndarray, shape (T, B, I);  dh0 : ndarray, shape (B, H)
    dW : ndarray, shape (I, H);  dU : ndarray, shape (H, H);  db : ndarray, shape (H,)
    """
    dhs, dh = _validate.sequence_gradients(
        cache, _RNNCache, "fastlstm.reference.rnn_forward", dhs, dh_T=dh_T
    )
    k = cache
    T, B, I = k.xs.shape
    H, dtype = k.U.shape[0], k.xs.dtype
    dh = _zeros_if_none(dh, (B, H), dtype)
    dz_all = np.empty((T, B, H), dtype)
    for t in reversed(range(T)):
        dh_t = dh if dhs is None else dh + dhs[t]
        dz_all[t] = dh_t * (1 - k.hs_ext[t + 1] ** 2)
        ended = _ended(k.lengths, t)
        if ended is not None:  # no gradient past a row's end; dh passes through unchanged
            dz_all[t, ended] = 0
        dh_prev = dz_all[t] @ k.U.T
        if ended is not None:
            dh_prev[ended] = dh[ended]
        dh = dh_prev
    dz = dz_all.reshape(T * B, H)
    dW = k.xs.reshape(T * B, I).T @ dz
    dU = k.hs_ext[:T].reshape(T * B, H).T @ dz
    return (dz @ k.W.T).reshape(T, B, I), dh.copy(), dW, dU, dz.sum(axis=0)


# ---- GRU ------------------------------------------------------------------------------------------


def _gru_gates(zx, zh, h_prev):
    """r, z, n, hn and the new state h from the input-side pre-activation zx = x @ W + b[0] and the
    recurrent-side one zh = h_prev @ U + b[1], both (B, 3H); hn is zh's n block, which r scales."""
    H = h_prev.shape[1]
    r = sigmoid(zx[:, :H] + zh[:, :H])
    z = sigmoid(zx[:, H : 2 * H] + zh[:, H : 2 * H])
    hn = zh[:, 2 * H :]
    n = np.tanh(zx[:, 2 * H :] + r * hn)
    return r, z, n, hn, (1 - z) * n + z * h_prev


def _gru_gates_backward(dh, r, z, n, hn, h_prev):
    """From the gradient dh of one step's output: dzx, dzh (B, 3H), the gradients of the input-side
    and the recurrent-side pre-activations, and dh * z, the part of dh_prev that skips U."""
    da_n = dh * (1 - z) * (1 - n**2)
    da_r = da_n * hn * r * (1 - r)
    da_z = dh * (h_prev - n) * z * (1 - z)
    dzx = np.concatenate([da_r, da_z, da_n], axis=1)
    dzh = np.concatenate([da_r, da_z, da_n * r], axis=1)
    return dzx, dzh, dh * z


class _GRUCellCache(_Saved):
    __slots__ = ("x", "h_prev", "W", "U", "r", "z", "n", "hn")


class _GRUCache(_Saved):
    __slots__ = ("xs", "hs_ext", "W", "U", "acts", "hn", "lengths")


def gru_cell_forward(x, h_prev, W, U, b):
    """One GRU step (PyTorch's ``nn.GRU``, gate order r, z, n).

    Parameters
    ----------
    x : array_like, shape (B, I)
    h_prev : array_like or None, shape (B, H)
        Previous hidden state; None means zeros.
    W : array_like, shape (I, 3H);  U : array_like, shape (H, 3H)
        Gate blocks [r | z | n] along the last axis.
    b : array_like, shape (2, 3H)
        b[0] the input-side bias, b[1] the recurrent-side bias (torch's ``bias_ih``, ``bias_hh``).

    Returns
    -------
    h : ndarray, shape (B, H)
    cache : object
        For :func:`gru_cell_backward`.

    Examples
    --------
    Zero weights give r = z = 1/2 and n = tanh(0) = 0, so h = h_prev / 2:

    >>> import numpy as np
    >>> from fastlstm import reference as gru
    >>> B, I, H = 1, 2, 3
    >>> W, U, b = np.zeros((I, 3 * H)), np.zeros((H, 3 * H)), np.zeros((2, 3 * H))
    >>> h, cache = gru.gru_cell_forward(np.ones((B, I)), np.ones((B, H)), W, U, b)
    >>> h
    array([[0.5, 0.5, 0.5]])
    """
    x, (h_prev,), W, U, b = _validate.recurrent_args(
        _kinds.GRU, ("x", x), [("h_prev", h_prev)], W, U, b, sequence=False
    )
    h_prev = _zeros_if_none(h_prev, (x.shape[0], U.shape[0]), x.dtype)
    r, z, n, hn, h = _gru_gates(x @ W + b[0], h_prev @ U + b[1], h_prev)
    return h, _GRUCellCache(x=x, h_prev=h_prev, W=W, U=U, r=r, z=z, n=n, hn=hn)


def gru_cell_backward(dh, cache):
    """Gradients of one GRU step.

    Parameters
    ----------
    dh : array_like or None, shape (B, H)
        Gradient with respect to the step's h; None means zero.
    cache : object
        From :func:`gru_cell_forward`.

    Returns
    -------
    dx : ndarray, shape (B, I);  dh_prev : ndarray, shape (B, H)
    dW : ndarray, shape (I, 3H);  dU : ndarray, shape (H, 3H);  db : ndarray, shape (2, 3H)
    """
    _validate.check_cache(cache, _GRUCellCache, "fastlstm.reference.gru_cell_forward")
    k = cache
    shape, dtype = k.h_prev.shape, k.x.dtype
    dh = _zeros_if_none(_validate.gradient("dh", dh, shape, "(B, H)", dtype), shape, dtype)
    dzx, dzh, dh_direct = _gru_gates_backward(dh, k.r, k.z, k.n, k.hn, k.h_prev)
    db = np.stack([dzx.sum(axis=0), dzh.sum(axis=0)])
    return dzx @ k.W.T, dh_direct + dzh @ k.U.T, k.x.T @ dzx, k.h_prev.T @ dzh, db


def gru_forward(xs, h0, W, U, b, lengths=None):
    """A GRU over a whole sequence (PyTorch's ``nn.GRU``, gate order r, z, n).

    Parameters
    ----------
    xs : array_like, shape (T, B, I)
        Time-major inputs.
    h0 : array_like or None, shape (B, H)
        Initial hidden state; None means zeros.
    W : array_like, shape (I, 3H);  U : array_like, shape (H, 3H)
        Gate blocks [r | z | n] along the last axis: torch's ``weight_ih_l0.T``, ``weight_hh_l0.T``.
    b : array_like, shape (2, 3H)
        b[0] the input-side bias, b[1] the recurrent-side bias: torch's ``bias_ih_l0``,
        ``bias_hh_l0`` stacked (Keras' GRU bias with ``reset_after=True``, once its gate blocks are
        reordered from z, r, h).
    lengths : array_like of int, shape (B,), optional
        Each row's sequence length, in [0, T]; None means T for every row. Past its end a row
        keeps its state and gets no gradient (see the module's documentation).

    Returns
    -------
    hs : ndarray, shape (T, B, H)
        Hidden state after every step (past a row's end: its carried final state).
    h_T : ndarray, shape (B, H)
        Final hidden state, each row's after its own last step (h0 when T = 0).
    cache : object
        For :func:`gru_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlstm import reference as gru
    >>> T, B, I, H = 5, 2, 3, 4
    >>> rng = np.random.default_rng(0)
    >>> xs = rng.standard_normal((T, B, I))
    >>> W, U = rng.standard_normal((I, 3 * H)), rng.standard_normal((H, 3 * H))
    >>> b = np.zeros((2, 3 * H))
    >>> hs, h_T, cache = gru.gru_forward(xs, None, W, U, b)
    >>> hs.shape, bool(np.array_equal(hs[-1], h_T))
    ((5, 2, 4), True)
    """
    xs, (h0,), W, U, b = _validate.recurrent_args(
        _kinds.GRU, ("xs", xs), [("h0", h0)], W, U, b, sequence=True
    )
    T, B, _ = xs.shape
    H = U.shape[0]
    lengths = _validate.sequence_lengths(lengths, T, B)
    hs_ext = np.empty((T + 1, B, H), xs.dtype)  # hs_ext[0] = h0, hs_ext[t+1] = h_t
    acts = np.empty((T, B, 3 * H), xs.dtype)  # r, z, n of every step
    hn = np.empty((T, B, H), xs.dtype)  # h_{t-1} @ U_n + b[1]_n of every step
    hs_ext[0] = _zeros_if_none(h0, (B, H), xs.dtype)
    zx = xs @ W + b[0]  # the input side of every step at once
    for t in range(T):
        r, z, n, hn_t, h = _gru_gates(zx[t], hs_ext[t] @ U + b[1], hs_ext[t])
        acts[t] = np.concatenate([r, z, n], axis=1)
        hn[t] = hn_t
        hs_ext[t + 1] = h
        _carry(_ended(lengths, t), t, hs_ext)
    cache = _GRUCache(xs=xs, hs_ext=hs_ext, W=W, U=U, acts=acts, hn=hn, lengths=lengths)
    return hs_ext[1:], hs_ext[T].copy(), cache


def gru_backward(dhs, dh_T, cache):
    """Backpropagation through time for :func:`gru_forward`.

    Parameters
    ----------
    dhs : array_like or None, shape (T, B, H)
    dh_T : array_like or None, shape (B, H)
        Gradients with respect to ``hs`` and ``h_T``; None means zero.
    cache : object
        From :func:`gru_forward`, whose ``lengths`` the backward honours.

    Returns
    -------
    dxs : ndarray, shape (T, B, I);  dh0 : ndarray, shape (B, H)
    dW : ndarray, shape (I, 3H);  dU : ndarray, shape (H, 3H);  db : ndarray, shape (2, 3H)
    """
    dhs, dh = _validate.sequence_gradients(
        cache, _GRUCache, "fastlstm.reference.gru_forward", dhs, dh_T=dh_T
    )
    k = cache
    T, B, I = k.xs.shape
    H, dtype = k.U.shape[0], k.xs.dtype
    dh = _zeros_if_none(dh, (B, H), dtype)
    dzx_all = np.empty((T, B, 3 * H), dtype)
    dzh_all = np.empty((T, B, 3 * H), dtype)
    for t in reversed(range(T)):
        dh_t = dh if dhs is None else dh + dhs[t]
        r, z, n = np.split(k.acts[t], 3, axis=1)
        dzx_all[t], dzh_all[t], dh_direct = _gru_gates_backward(
            dh_t, r, z, n, k.hn[t], k.hs_ext[t]
        )
        ended = _ended(k.lengths, t)
        if ended is not None:  # no gradient past a row's end; dh passes through unchanged
            dzx_all[t, ended] = 0
            dzh_all[t, ended] = 0
        dh_prev = dh_direct + dzh_all[t] @ k.U.T
        if ended is not None:
            dh_prev[ended] = dh[ended]
        dh = dh_prev
    dzx = dzx_all.reshape(T * B, 3 * H)
    dzh = dzh_all.reshape(T * B, 3 * H)
    dW = k.xs.reshape(T * B, I).T @ dzx
    dU = k.hs_ext[:T].reshape(T * B, H).T @ dzh
    db = np.stack([dzx.sum(axis=0), dzh.sum(axis=0)])
    return (dzx @ k.W.T).reshape(T, B, I), dh.copy(), dW, dU, db


# ---- the matrix product of a training loop --------------------------------------------------------


def matmul(a, b):
    """The matrix product ``a @ b`` of a (..., K) and b (K, N), in their promoted float dtype.

    For the other products of a training loop around the recurrent functions: a read-out
    ``hs @ V``, its gradients ``hs^T @ error`` and ``error @ V^T``. fastlstm computes it with its
    own matrix kernels and threads (any layout; transposed views are read as they are), so that,
    unlike NumPy's ``@``, it never wakes the threads of NumPy's BLAS, which spin for a while after
    each product and take the cores that fastlstm's passes need. The reference computes ``a @ b``.

    Parameters
    ----------
    a : array_like, (..., K)
    b : array_like, (K, N)

    Returns
    -------
    numpy.ndarray, (..., N)
        A new C-contiguous array, float32 or float64 as the arguments promote.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlstm import reference as lstm
    >>> hs = np.ones((5, 4, 3)); V = np.full((3, 2), 0.5)        # (T, B, H) and (H, O)
    >>> lstm.matmul(hs, V).shape, float(lstm.matmul(hs, V)[0, 0, 0])
    ((5, 4, 2), 1.5)
    >>> lstm.matmul(hs.reshape(-1, 3).T, np.ones((20, 2))).shape    # hs^T @ error: (H, O)
    (3, 2)
    """
    a, b = _validate.matmul_args(a, b)
    return np.ascontiguousarray(a @ b)
