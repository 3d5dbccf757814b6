"""The LSTM, GRU and RNN functions of fastlstm, computed by the C kernels.

Same names, signatures, documentation and results as ``fastlstm.reference``: each function checks
its arguments exactly as the reference does, allocates the outputs, and makes one C call for the
whole sequence with the GIL released. The cells (``*_cell_*``), called once per step from the user's
own loop, first offer their arguments to the C wall as they are: when they already are arrays of one
float dtype, C-contiguous and of fitting shapes (a loop's usual case), that one call does everything;
otherwise they are checked and converted as the reference does, and offered again.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from . import _config, _core, _validate, reference

__all__ = reference.__all__

# Argument and result types of the public functions: inputs are anything np.asarray takes (None
# where the documentation allows it); results are new float32 or float64 arrays.
Array = np.ndarray
Function = TypeVar("Function", bound=Callable[..., Any])


def _mirror(reference_function: Callable[..., Any]) -> Callable[[Function], Function]:
    """Give a function the reference's docstring, its example importing fastlstm itself."""

    def decorate(function: Function) -> Function:
        function.__doc__ = reference_function.__doc__.replace(
            "from fastlstm import reference as", "import fastlstm as"
        )
        return function

    return decorate


class _LSTMCache:
    """What lstm_forward keeps for lstm_backward (arrays in the forward's dtype, and the lengths,
    np.intp or None)."""

    __slots__ = ("xs", "hs_ext", "cs_ext", "gates", "W", "U", "lengths")

    def __init__(self, xs, hs_ext, cs_ext, gates, W, U, lengths):
        self.xs, self.hs_ext, self.cs_ext, self.gates, self.W, self.U = (
            xs, hs_ext, cs_ext, gates, W, U)
        self.lengths = lengths


class _RNNCache:
    """What rnn_forward keeps for rnn_backward."""

    __slots__ = ("xs", "hs_ext", "W", "U", "lengths")

    def __init__(self, xs, hs_ext, W, U, lengths):
        self.xs, self.hs_ext, self.W, self.U, self.lengths = xs, hs_ext, W, U, lengths


class _GRUCache:
    """What gru_forward keeps for gru_backward: gates (T, B, 3H) holds every step's r, z, n, and
    hn (T, B, H) every step's h_{t-1} @ U_n + b[1]_n, the recurrent part of n."""

    __slots__ = ("xs", "hs_ext", "gates", "hn", "W", "U", "lengths")

    def __init__(self, xs, hs_ext, gates, hn, W, U, lengths):
        self.xs, self.hs_ext, self.gates, self.hn, self.W, self.U = xs, hs_ext, gates, hn, W, U
        self.lengths = lengths


# The cells' caches are tuples, made once per step: a tuple subclass costs a third of a class with
# named slots (measured, ~0.2 us against ~0.5 us), and its fields are the wall's arguments in order.

class _LSTMCellCache(tuple):
    """What lstm_cell_forward keeps for lstm_cell_backward: (x, h_prev, c_prev, c, gates, W, U)."""

    __slots__ = ()


class _RNNCellCache(tuple):
    """What rnn_cell_forward keeps for rnn_cell_backward: (x, h_prev, h, W, U)."""

    __slots__ = ()


def _zeros_if_none(state, like, H):
    return np.zeros((like.shape[0], H), like.dtype) if state is None else state


class _GRUCellCache(tuple):
    """What gru_cell_forward keeps for gru_cell_backward: (x, h_prev, gates, hn, W, U)."""

    __slots__ = ()


# ---- LSTM -----------------------------------------------------------------------------------------


def _lstm_forward(xs, h0, c0, W, U, b, lengths):
    T, B, _ = xs.shape
    H = U.shape[0]
    hs_ext = np.empty((T + 1, B, H), xs.dtype)
    cs_ext = np.empty((T + 1, B, H), xs.dtype)
    gates = np.empty((T, B, 4 * H), xs.dtype)
    _core.lstm_forward(hs_ext, cs_ext, gates, h0, c0, xs, W, U, b, lengths,
                       *_config.kernel_args())
    cache = _LSTMCache(xs, hs_ext, cs_ext, gates, W, U, lengths)
    return hs_ext[1:], hs_ext[T].copy(), cs_ext[T].copy(), cache


def _lstm_backward(dhs, dh_T, dc_T, k):
    (T, B, I), H, dtype = k.xs.shape, k.U.shape[0], k.xs.dtype
    dxs = np.empty((T, B, I), dtype)
    dh0, dc0 = np.empty((B, H), dtype), np.empty((B, H), dtype)
    dW, dU, db = np.empty((I, 4 * H), dtype), np.empty((H, 4 * H), dtype), np.empty(4 * H, dtype)
    _core.lstm_backward(dxs, dh0, dc0, dW, dU, db, k.hs_ext, k.cs_ext, k.gates, dhs, dh_T, dc_T,
                        k.xs, k.W, k.U, k.lengths, *_config.kernel_args())
    return dxs, dh0, dc0, dW, dU, db


@_mirror(reference.lstm_forward)
def lstm_forward(xs: ArrayLike, h0: Optional[ArrayLike], c0: Optional[ArrayLike], W: ArrayLike,
                 U: ArrayLike, b: ArrayLike, lengths: Optional[ArrayLike] = None
                 ) -> tuple[Array, Array, Array, _LSTMCache]:
    xs, (h0, c0), W, U, b = _validate.recurrent_args(
        ("xs", xs), [("h0", h0), ("c0", c0)], W, U, b, gates=4, sequence=True
    )
    lengths = _validate.sequence_lengths(lengths, *xs.shape[:2])
    return _lstm_forward(xs, h0, c0, W, U, b, lengths)


@_mirror(reference.lstm_backward)
def lstm_backward(dhs: Optional[ArrayLike], dh_T: Optional[ArrayLike], dc_T: Optional[ArrayLike],
                  cache: _LSTMCache) -> tuple[Array, Array, Array, Array, Array, Array]:
    dhs, dh_T, dc_T = _validate.sequence_gradients(
        cache, _LSTMCache, "fastlstm.lstm_forward", dhs, dh_T=dh_T, dc_T=dc_T
    )
    return _lstm_backward(dhs, dh_T, dc_T, cache)


@_mirror(reference.lstm_cell_forward)
def lstm_cell_forward(x: ArrayLike, h_prev: Optional[ArrayLike], c_prev: Optional[ArrayLike],
                      W: ArrayLike, U: ArrayLike, b: ArrayLike
                      ) -> tuple[Array, Array, _LSTMCellCache]:
    threads, simd = _config.kernel_args()
    out = _core.lstm_cell_forward(x, h_prev, c_prev, W, U, b, threads, simd)
    if out is None:
        x, (h_prev, c_prev), W, U, b = _validate.recurrent_args(
            ("x", x), [("h_prev", h_prev), ("c_prev", c_prev)], W, U, b, gates=4, sequence=False
        )
        h_prev, c_prev = (_zeros_if_none(s, x, U.shape[0]) for s in (h_prev, c_prev))
        out = _core.lstm_cell_forward(x, h_prev, c_prev, W, U, b, threads, simd)
    h, c, c_kept, gates = out
    return h, c, _LSTMCellCache((x, h_prev, c_prev, c_kept, gates, W, U))


@_mirror(reference.lstm_cell_backward)
def lstm_cell_backward(dh: Optional[ArrayLike], dc: Optional[ArrayLike], cache: _LSTMCellCache
                       ) -> tuple[Array, Array, Array, Array, Array, Array]:
    _validate.check_cache(cache, _LSTMCellCache, "fastlstm.lstm_cell_forward")
    threads, simd = _config.kernel_args()
    out = _core.lstm_cell_backward(dh, dc, *cache, threads, simd)
    if out is None:
        x, *_, U = cache
        shape = (x.shape[0], U.shape[0])
        dh = _validate.gradient("dh", dh, shape, "(B, H)", x.dtype)
        dc = _validate.gradient("dc", dc, shape, "(B, H)", x.dtype)
        out = _core.lstm_cell_backward(dh, dc, *cache, threads, simd)
    return out


# ---- RNN ------------------------------------------------------------------------------------------


def _rnn_forward(xs, h0, W, U, b, lengths):
    T, B, _ = xs.shape
    hs_ext = np.empty((T + 1, B, U.shape[0]), xs.dtype)
    _core.rnn_forward(hs_ext, h0, xs, W, U, b, lengths, *_config.kernel_args())
    return hs_ext[1:], hs_ext[T].copy(), _RNNCache(xs, hs_ext, W, U, lengths)


def _rnn_backward(dhs, dh_T, k):
    (T, B, I), H, dtype = k.xs.shape, k.U.shape[0], k.xs.dtype
    dxs, dh0 = np.empty((T, B, I), dtype), np.empty((B, H), dtype)
    dW, dU, db = np.empty((I, H), dtype), np.empty((H, H), dtype), np.empty(H, dtype)
    _core.rnn_backward(dxs, dh0, dW, dU, db, k.hs_ext, dhs, dh_T, k.xs, k.W, k.U, k.lengths,
                       *_config.kernel_args())
    return dxs, dh0, dW, dU, db


@_mirror(reference.rnn_forward)
def rnn_forward(xs: ArrayLike, h0: Optional[ArrayLike], W: ArrayLike, U: ArrayLike, b: ArrayLike,
                lengths: Optional[ArrayLike] = None) -> tuple[Array, Array, _RNNCache]:
    xs, (h0,), W, U, b = _validate.recurrent_args(
        ("xs", xs), [("h0", h0)], W, U, b, gates=1, sequence=True
    )
    lengths = _validate.sequence_lengths(lengths, *xs.shape[:2])
    return _rnn_forward(xs, h0, W, U, b, lengths)


@_mirror(reference.rnn_backward)
def rnn_backward(dhs: Optional[ArrayLike], dh_T: Optional[ArrayLike], cache: _RNNCache
                 ) -> tuple[Array, Array, Array, Array, Array]:
    dhs, dh_T = _validate.sequence_gradients(
        cache, _RNNCache, "fastlstm.rnn_forward", dhs, dh_T=dh_T
    )
    return _rnn_backward(dhs, dh_T, cache)


@_mirror(reference.rnn_cell_forward)
def rnn_cell_forward(x: ArrayLike, h_prev: Optional[ArrayLike], W: ArrayLike, U: ArrayLike,
                     b: ArrayLike) -> tuple[Array, _RNNCellCache]:
    threads, simd = _config.kernel_args()
    h = _core.rnn_cell_forward(x, h_prev, W, U, b, threads, simd)
    if h is None:
        x, (h_prev,), W, U, b = _validate.recurrent_args(
            ("x", x), [("h_prev", h_prev)], W, U, b, gates=1, sequence=False
        )
        h_prev = _zeros_if_none(h_prev, x, U.shape[0])
        h = _core.rnn_cell_forward(x, h_prev, W, U, b, threads, simd)
    # The cache shares h with the caller, as the reference's does.
    return h, _RNNCellCache((x, h_prev, h, W, U))


@_mirror(reference.rnn_cell_backward)
def rnn_cell_backward(dh: Optional[ArrayLike], cache: _RNNCellCache
                      ) -> tuple[Array, Array, Array, Array, Array]:
    _validate.check_cache(cache, _RNNCellCache, "fastlstm.rnn_cell_forward")
    threads, simd = _config.kernel_args()
    out = _core.rnn_cell_backward(dh, *cache, threads, simd)
    if out is None:
        x, *_, U = cache
        dh = _validate.gradient("dh", dh, (x.shape[0], U.shape[0]), "(B, H)", x.dtype)
        out = _core.rnn_cell_backward(dh, *cache, threads, simd)
    return out


# ---- GRU ------------------------------------------------------------------------------------------


def _gru_forward(xs, h0, W, U, b, lengths):
    T, B, _ = xs.shape
    H = U.shape[0]
    hs_ext = np.empty((T + 1, B, H), xs.dtype)
    gates = np.empty((T, B, 3 * H), xs.dtype)
    hn = np.empty((T, B, H), xs.dtype)
    _core.gru_forward(hs_ext, gates, hn, h0, xs, W, U, b, lengths, *_config.kernel_args())
    return hs_ext[1:], hs_ext[T].copy(), _GRUCache(xs, hs_ext, gates, hn, W, U, lengths)


def _gru_backward(dhs, dh_T, k):
    (T, B, I), H, dtype = k.xs.shape, k.U.shape[0], k.xs.dtype
    dxs, dh0 = np.empty((T, B, I), dtype), np.empty((B, H), dtype)
    dW, dU = np.empty((I, 3 * H), dtype), np.empty((H, 3 * H), dtype)
    db = np.empty((2, 3 * H), dtype)
    _core.gru_backward(dxs, dh0, dW, dU, db, k.hs_ext, k.gates, k.hn, dhs, dh_T, k.xs, k.W, k.U,
                       k.lengths, *_config.kernel_args())
    return dxs, dh0, dW, dU, db


@_mirror(reference.gru_forward)
def gru_forward(xs: ArrayLike, h0: Optional[ArrayLike], W: ArrayLike, U: ArrayLike, b: ArrayLike,
                lengths: Optional[ArrayLike] = None) -> tuple[Array, Array, _GRUCache]:
    xs, (h0,), W, U, b = _validate.recurrent_args(
        ("xs", xs), [("h0", h0)], W, U, b, gates=3, sequence=True, split_bias=True
    )
    lengths = _validate.sequence_lengths(lengths, *xs.shape[:2])
    return _gru_forward(xs, h0, W, U, b, lengths)


@_mirror(reference.gru_backward)
def gru_backward(dhs: Optional[ArrayLike], dh_T: Optional[ArrayLike], cache: _GRUCache
                 ) -> tuple[Array, Array, Array, Array, Array]:
    dhs, dh_T = _validate.sequence_gradients(
        cache, _GRUCache, "fastlstm.gru_forward", dhs, dh_T=dh_T
    )
    return _gru_backward(dhs, dh_T, cache)


@_mirror(reference.gru_cell_forward)
def gru_cell_forward(x: ArrayLike, h_prev: Optional[ArrayLike], W: ArrayLike, U: ArrayLike,
                     b: ArrayLike) -> tuple[Array, _GRUCellCache]:
    threads, simd = _config.kernel_args()
    out = _core.gru_cell_forward(x, h_prev, W, U, b, threads, simd)
    if out is None:
        x, (h_prev,), W, U, b = _validate.recurrent_args(
            ("x", x), [("h_prev", h_prev)], W, U, b, gates=3, sequence=False, split_bias=True
        )
        h_prev = _zeros_if_none(h_prev, x, U.shape[0])
        out = _core.gru_cell_forward(x, h_prev, W, U, b, threads, simd)
    h, gates, hn = out
    return h, _GRUCellCache((x, h_prev, gates, hn, W, U))


@_mirror(reference.gru_cell_backward)
def gru_cell_backward(dh: Optional[ArrayLike], cache: _GRUCellCache
                      ) -> tuple[Array, Array, Array, Array, Array]:
    _validate.check_cache(cache, _GRUCellCache, "fastlstm.gru_cell_forward")
    threads, simd = _config.kernel_args()
    out = _core.gru_cell_backward(dh, *cache, threads, simd)
    if out is None:
        x, *_, U = cache
        shape = (x.shape[0], U.shape[0])
        dh = _validate.gradient("dh", dh, shape, "(B, H)", x.dtype)
        out = _core.gru_cell_backward(np.zeros(shape, x.dtype) if dh is None else dh, *cache,
                                      threads, simd)
    return out


def _gemm_operand(matrix):
    """(storage, transposed): a C-contiguous array whose transpose (when `transposed`) or itself is
    the 2-d `matrix`, copying only when neither is."""
    if matrix.flags.c_contiguous:
        return matrix, False
    if matrix.T.flags.c_contiguous:
        return matrix.T, True
    return np.ascontiguousarray(matrix), False


@_mirror(reference.matmul)
def matmul(a: ArrayLike, b: ArrayLike) -> Array:
    a, b = _validate.matmul_args(a, b)
    K, N = b.shape
    rows = a.reshape(-1, K) if a.ndim != 2 else a
    A, trans_a = _gemm_operand(rows)
    B, trans_b = _gemm_operand(b)
    out = np.empty((rows.shape[0], N), a.dtype)
    _core.matmul(out, A, B, trans_a, trans_b, *_config.kernel_args())
    return out.reshape(a.shape[:-1] + (N,))
