"""The LSTM, GRU and RNN functions of fastlstm, computed by the C kernels.

Same names, signatures, documentation and results as ``fastlstm.reference``: each function checks
its arguments exactly as the reference does, allocates the outputs, and makes one C call for the
whole sequence with the GIL released. The cells (``*_cell_*``), called once per step from the user's
own loop, first offer their arguments to the C wall as they are: when they already are arrays of one
float dtype, C-contiguous and of fitting shapes (a loop's usual case), that one call does everything;
otherwise they are checked and converted as the reference does, and offered again.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from . import _config, _core, _validate, reference
from ._kinds import GRU, LSTM, RNN, Kind, bias_shape

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


class _SequenceCache:
    """What a sequence forward keeps for its backward: xs, the arrays its kind saves (hs_ext
    (T+1, B, H); the LSTM's cs_ext (T+1, B, H); gates (T, B, G*H), the activations; the GRU's hn
    (T, B, H), the recurrent part of n; None where the kind has none), W, U and the lengths
    (np.intp, or None). One subclass per kind, so that a backward takes only its own forward's."""

    __slots__ = ("xs", "hs_ext", "cs_ext", "gates", "hn", "W", "U", "lengths")
    kind: Kind

    def __init__(self, xs, hs_ext, cs_ext, gates, hn, W, U, lengths):
        self.xs, self.hs_ext, self.cs_ext, self.gates, self.hn = xs, hs_ext, cs_ext, gates, hn
        self.W, self.U, self.lengths = W, U, lengths


class _LSTMCache(_SequenceCache):
    __slots__ = ()
    kind = LSTM


class _GRUCache(_SequenceCache):
    __slots__ = ()
    kind = GRU


class _RNNCache(_SequenceCache):
    __slots__ = ()
    kind = RNN


# The cells' caches are tuples, made once per step: a tuple subclass costs a third of a class with
# named slots (measured, ~0.2 us against ~0.5 us). Their fields are the wall's arguments in order:
# (x, h_prev, c_prev, h, c, gates, hn, W, U), None where the kind has none.

class _LSTMCellCache(tuple):
    __slots__ = ()


class _GRUCellCache(tuple):
    __slots__ = ()


class _RNNCellCache(tuple):
    __slots__ = ()


# Each kind's cache types, sequence then cell, and the names of the forwards that make them.
_CACHES = {LSTM: (_LSTMCache, _LSTMCellCache), GRU: (_GRUCache, _GRUCellCache),
           RNN: (_RNNCache, _RNNCellCache)}
_FORWARDS = {kind: (f"fastlstm.{kind.name}_forward", f"fastlstm.{kind.name}_cell_forward")
             for kind in _CACHES}


def _zeros_if_none(state, like, H):
    return np.zeros((like.shape[0], H), like.dtype) if state is None else state


# ---- one body per pass, for every kind --------------------------------------------------------------

# The largest workspace of the sequence passes that a Python thread keeps for its next call.
_KEPT_WORKSPACE_BYTES = 64 << 20
_workspaces = threading.local()


def _kept_workspace(nbytes):
    """The workspace of a kernel call, nbytes: this Python thread's, kept from call to call (grown
    when a call needs more), up to _KEPT_WORKSPACE_BYTES; a new array above.

    A new workspace at every call (packed weights, the backward's gate gradients: megabytes at
    B = 8-16, H = 256-512) was handed back to the system when freed, and its pages were faulted in
    again, zeroed, at the next call. A training loop of the LSTM layer, whole process, 5 pairs,
    took 0.87x the time with the workspace kept at T,B,I,H = 100,8,256,256 and 0.86x at
    25,16,512,512 (0.86x for the benchmark's bidirectional two-layer one, 50,16,256,256)."""
    if nbytes > _KEPT_WORKSPACE_BYTES:
        return np.empty(nbytes, np.uint8)
    kept = getattr(_workspaces, "array", None)
    if kept is None or kept.nbytes < nbytes:
        kept = _workspaces.array = np.empty(nbytes, np.uint8)
    return kept[:nbytes]


# A forward's saved arrays (the states, the gates) of _RECYCLED_BYTES come from buffers that the
# Python thread keeps, once nothing refers to them any more: the cache of a training loop's previous
# step, say. New arrays of tens of megabytes went back to the system when the loop dropped them, and
# their pages were faulted in again, zeroed, at the next forward: at T,B,I,H = 100,128,256,256 the
# forward took 1.04x the time it takes with them kept (in-process A/B, 7 rounds; 1.00x at
# 50,32,1024,1024, whose arrays the allocator kept). A training loop holds the previous step's cache
# while it calls the next forward, so two forwards' arrays are kept: a thread's last
# _RECYCLED_BUFFERS buffers, and all threads' together up to _RECYCLED_TOTAL_BYTES. A buffer serves
# an array only if it is at most _RECYCLED_SLACK times the array's size, so that a result kept pins
# little more than its own memory. Larger arrays are new: their zeroing costs a forward less, and a
# thread should not hold them once its caller has let them go.
_RECYCLED_BYTES = (4 << 20, 64 << 20)
_RECYCLED_BUFFERS = 6
_RECYCLED_TOTAL_BYTES = 256 << 20
_RECYCLED_SLACK = 1.25
_recycled = threading.local()
_recycled_bytes = 0  # in every thread's buffers
# Guards the count, which threads change at once. Reentrant: a collection inside a change may drop
# an ended thread's buffers, whose __del__ changes it too.
_recycled_lock = threading.RLock()


class _Buffers(list):
    """A thread's buffers, the most recent last; what they hold leaves the count with them."""

    def __del__(self) -> None:
        global _recycled_bytes
        try:
            with _recycled_lock:
                _recycled_bytes -= sum(buffer.nbytes for buffer in self)
        except (TypeError, AttributeError):  # at the interpreter's exit, the module cleared
            pass


def _recycled_array(name, shape, dtype):
    """An array for a forward's saved array `name`: a new one, or for one of _RECYCLED_BYTES a
    buffer of this Python thread's that nothing refers to any more (no array of a result or a
    cache is a view of it) and at most _RECYCLED_SLACK times as large."""
    global _recycled_bytes
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if not _RECYCLED_BYTES[0] <= nbytes <= _RECYCLED_BYTES[1]:
        return np.empty(shape, dtype)
    buffers = _recycled.__dict__.setdefault("buffers", _Buffers())
    for k in range(len(buffers)):
        fits = nbytes <= buffers[k].nbytes <= _RECYCLED_SLACK * nbytes
        if fits and _core.only_listed(buffers, k):
            buffer = buffers.pop(k)
            break
    else:
        buffer = np.empty(nbytes, np.uint8)
        with _recycled_lock:
            _recycled_bytes += nbytes
    buffers.append(buffer)
    with _recycled_lock:
        while buffers and (len(buffers) > _RECYCLED_BUFFERS or
                           _recycled_bytes > _RECYCLED_TOTAL_BYTES):
            _recycled_bytes -= buffers.pop(0).nbytes
    return buffer[:nbytes].view(dtype).reshape(shape)


def _forward(kind, xs, h0, c0, W, U, b, lengths, packed=None, scratch=None):
    """(hs, h_T, [c_T,] cache) of a sequence forward on checked arguments; `packed`, W and U packed
    for it by _core.pack, or None (packed by the call). `scratch(name, shape, dtype)`, if given,
    gives the arrays the kind saves (kind.saved; hs is a view of hs_ext), so that a caller may
    reuse them from call to call; without it, they are _recycled_array's."""
    T, B, _ = xs.shape
    H, dtype = U.shape[0], xs.dtype
    saved = {}
    for name in kind.saved:
        shape = ((T + 1, B, H) if name.endswith("_ext") else
                 (T, B, kind.gates * H) if name == "gates" else (T, B, H))
        saved[name] = (_recycled_array if scratch is None else scratch)(name, shape, dtype)
    hs_ext, cs_ext = saved["hs_ext"], saved.get("cs_ext")
    threads, simd = _config.kernel_args()
    start = time.perf_counter()
    stalled_ns = _core.forward(kind.code, hs_ext, cs_ext, saved.get("gates"), saved.get("hn"), h0,
                               c0, xs, W, U, b, lengths, threads, simd, packed, _kept_workspace)
    _config.note_stalls(threads, stalled_ns, time.perf_counter() - start)
    cache = _CACHES[kind][0](xs, hs_ext, cs_ext, saved.get("gates"), saved.get("hn"), W, U,
                             lengths)
    finals = (hs_ext[T].copy(), cs_ext[T].copy()) if kind.cell_state else (hs_ext[T].copy(),)
    return (hs_ext[1:],) + finals + (cache,)


def _backward(dhs, dh_T, dc_T, k):
    """(dxs, dh0, [dc0,] dW, dU, db) of a sequence backward on checked gradients."""
    kind, (T, B, I), H, dtype = k.kind, k.xs.shape, k.U.shape[0], k.xs.dtype
    N = kind.gates * H
    dxs, dh0 = np.empty((T, B, I), dtype), np.empty((B, H), dtype)
    dc0 = np.empty((B, H), dtype) if kind.cell_state else None
    dW, dU, db = np.empty((I, N), dtype), np.empty((H, N), dtype), np.empty(bias_shape(kind, H),
                                                                            dtype)
    threads, simd = _config.kernel_args()
    start = time.perf_counter()
    stalled_ns = _core.backward(kind.code, dxs, dh0, dc0, dW, dU, db, k.hs_ext, k.cs_ext, k.gates,
                                k.hn, dhs, dh_T, dc_T, k.xs, k.W, k.U, k.lengths, threads, simd,
                                _kept_workspace)
    _config.note_stalls(threads, stalled_ns, time.perf_counter() - start)
    return (dxs, dh0, dc0, dW, dU, db) if kind.cell_state else (dxs, dh0, dW, dU, db)


def _sequence_forward(kind, xs, states, W, U, b, lengths, packed=None, scratch=None):
    names = ("h0", "c0") if kind.cell_state else ("h0",)
    xs, states, W, U, b = _validate.recurrent_args(
        kind, ("xs", xs), list(zip(names, states)), W, U, b, sequence=True)
    lengths = _validate.sequence_lengths(lengths, *xs.shape[:2])
    return _forward(kind, xs, *states, *([None] * (2 - len(states))), W, U, b, lengths, packed,
                    scratch)


def _sequence_backward(kind, dhs, finals, cache):
    names = ("dh_T", "dc_T") if kind.cell_state else ("dh_T",)
    dhs, *finals = _validate.sequence_gradients(cache, _CACHES[kind][0], _FORWARDS[kind][0], dhs,
                                                **dict(zip(names, finals)))
    return _backward(dhs, *finals, *([None] * (2 - len(finals))), cache)


def _cell_forward(kind, x, h_prev, c_prev, W, U, b):
    """(h, [c,] cache) of a cell forward: the arguments as they are when they fit, else checked
    and converted, then offered again."""
    threads, simd = _config.kernel_args()
    out = _core.cell_forward(kind.code, x, h_prev, c_prev, W, U, b, threads, simd)
    if out is None:
        names = ("h_prev", "c_prev") if kind.cell_state else ("h_prev",)
        states = (h_prev, c_prev) if kind.cell_state else (h_prev,)
        x, states, W, U, b = _validate.recurrent_args(
            kind, ("x", x), list(zip(names, states)), W, U, b, sequence=False)
        h_prev = _zeros_if_none(states[0], x, U.shape[0])
        c_prev = _zeros_if_none(states[1], x, U.shape[0]) if kind.cell_state else None
        out = _core.cell_forward(kind.code, x, h_prev, c_prev, W, U, b, threads, simd)
    cache_type = _CACHES[kind][1]
    if kind is LSTM:
        h, c, c_kept, gates = out
        return h, c, cache_type((x, h_prev, c_prev, None, c_kept, gates, None, W, U))
    if kind is GRU:
        h, gates, hn = out
        return h, cache_type((x, h_prev, None, None, None, gates, hn, W, U))
    # The RNN's cache shares h with the caller, as the reference's does.
    return out, cache_type((x, h_prev, None, out, None, None, None, W, U))


def _cell_backward(kind, dh, dc, cache):
    _validate.check_cache(cache, _CACHES[kind][1], _FORWARDS[kind][1])
    threads, simd = _config.kernel_args()
    out = _core.cell_backward(kind.code, dh, dc, *cache, threads, simd)
    if out is None:
        x, *_, U = cache
        shape = (x.shape[0], U.shape[0])
        dh = _validate.gradient("dh", dh, shape, "(B, H)", x.dtype)
        dc = _validate.gradient("dc", dc, shape, "(B, H)", x.dtype)
        if kind is GRU and dh is None:  # the GRU's cell takes its dh whole
            dh = np.zeros(shape, x.dtype)
        out = _core.cell_backward(kind.code, dh, dc, *cache, threads, simd)
    return out


# ---- the public functions: the reference's names and signatures --------------------------------------


@_mirror(reference.lstm_forward)
def lstm_forward(xs: ArrayLike, h0: Optional[ArrayLike], c0: Optional[ArrayLike], W: ArrayLike,
                 U: ArrayLike, b: ArrayLike, lengths: Optional[ArrayLike] = None
                 ) -> tuple[Array, Array, Array, _LSTMCache]:
    return _sequence_forward(LSTM, xs, (h0, c0), W, U, b, lengths)


@_mirror(reference.lstm_backward)
def lstm_backward(dhs: Optional[ArrayLike], dh_T: Optional[ArrayLike], dc_T: Optional[ArrayLike],
                  cache: _LSTMCache) -> tuple[Array, Array, Array, Array, Array, Array]:
    return _sequence_backward(LSTM, dhs, (dh_T, dc_T), cache)


@_mirror(reference.lstm_cell_forward)
def lstm_cell_forward(x: ArrayLike, h_prev: Optional[ArrayLike], c_prev: Optional[ArrayLike],
                      W: ArrayLike, U: ArrayLike, b: ArrayLike
                      ) -> tuple[Array, Array, _LSTMCellCache]:
    return _cell_forward(LSTM, x, h_prev, c_prev, W, U, b)


@_mirror(reference.lstm_cell_backward)
def lstm_cell_backward(dh: Optional[ArrayLike], dc: Optional[ArrayLike], cache: _LSTMCellCache
                       ) -> tuple[Array, Array, Array, Array, Array, Array]:
    return _cell_backward(LSTM, dh, dc, cache)


@_mirror(reference.rnn_forward)
def rnn_forward(xs: ArrayLike, h0: Optional[ArrayLike], W: ArrayLike, U: ArrayLike, b: ArrayLike,
                lengths: Optional[ArrayLike] = None) -> tuple[Array, Array, _RNNCache]:
    return _sequence_forward(RNN, xs, (h0,), W, U, b, lengths)


@_mirror(reference.rnn_backward)
def rnn_backward(dhs: Optional[ArrayLike], dh_T: Optional[ArrayLike], cache: _RNNCache
                 ) -> tuple[Array, Array, Array, Array, Array]:
    return _sequence_backward(RNN, dhs, (dh_T,), cache)


@_mirror(reference.rnn_cell_forward)
def rnn_cell_forward(x: ArrayLike, h_prev: Optional[ArrayLike], W: ArrayLike, U: ArrayLike,
                     b: ArrayLike) -> tuple[Array, _RNNCellCache]:
    return _cell_forward(RNN, x, h_prev, None, W, U, b)


@_mirror(reference.rnn_cell_backward)
def rnn_cell_backward(dh: Optional[ArrayLike], cache: _RNNCellCache
                      ) -> tuple[Array, Array, Array, Array, Array]:
    return _cell_backward(RNN, dh, None, cache)


@_mirror(reference.gru_forward)
def gru_forward(xs: ArrayLike, h0: Optional[ArrayLike], W: ArrayLike, U: ArrayLike, b: ArrayLike,
                lengths: Optional[ArrayLike] = None) -> tuple[Array, Array, _GRUCache]:
    return _sequence_forward(GRU, xs, (h0,), W, U, b, lengths)


@_mirror(reference.gru_backward)
def gru_backward(dhs: Optional[ArrayLike], dh_T: Optional[ArrayLike], cache: _GRUCache
                 ) -> tuple[Array, Array, Array, Array, Array]:
    return _sequence_backward(GRU, dhs, (dh_T,), cache)


@_mirror(reference.gru_cell_forward)
def gru_cell_forward(x: ArrayLike, h_prev: Optional[ArrayLike], W: ArrayLike, U: ArrayLike,
                     b: ArrayLike) -> tuple[Array, _GRUCellCache]:
    return _cell_forward(GRU, x, h_prev, None, W, U, b)


@_mirror(reference.gru_cell_backward)
def gru_cell_backward(dh: Optional[ArrayLike], cache: _GRUCellCache
                      ) -> tuple[Array, Array, Array, Array, Array]:
    return _cell_backward(GRU, dh, None, cache)


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
    _core.matmul(out, A, B, trans_a, trans_b, *_config.kernel_args(), _kept_workspace)
    return out.reshape(a.shape[:-1] + (N,))
