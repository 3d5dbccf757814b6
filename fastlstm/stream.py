"""Streaming inference: a layer stepped one time step at a time, its state kept inside.

A streaming model (speech frames, sensor readings, "type a character, predict the next"), or a
decoder that feeds its output back, has one input at a time and pays for every step. ``forward``
over a whole sequence cannot serve it, and calling the cells from Python costs new arrays and a
call per layer at every step. A :class:`Stream`, made by ``layer.stream(batch_size)``, owns the
state and every buffer of a step, and steps the whole stack of layers in one C call.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _core
from ._config import get_num_threads, simd_level
from ._validate import positive_int, shaped_array

__all__ = ["Stream"]


class Stream(_core.Stepper):
    """One time step at a time through a unidirectional LSTM, GRU or RNN layer (all its stacked
    layers), the state kept inside. Made by ``layer.stream(batch_size)``.

    Stepping T times gives what ``layer.forward`` gives on the whole sequence (to float rounding:
    the sums are grouped differently), starting from the same state.

    - ``step`` returns the top layer's h_t in a buffer the stream reuses: the next step overwrites
      it. Copy it to keep it.
    - The layer's parameter arrays are read in place at every step, so training updates and
      ``load`` are seen at the next step. A new array bound into ``layer.params`` is not: make a
      new stream.
    - The thread count and SIMD level are the ones set when the stream is made
      (``fastlstm.set_num_threads``). Steps large enough for more than one thread (in a build
      with OpenMP) run on a pool of threads that the process's streams share, not on an OpenMP
      team: its threads wait between steps for the next one, spinning for some 100 us and then
      asleep, where starting and ending a team would cost a fifth of a small step. A step that
      finds the pool busy with another Python thread's step runs on its own thread alone.
    - With the C backend, a step is one C call for every layer, and allocates nothing when x is
      already a C-contiguous array of the layer's dtype and shape (B, I). Another backend (such as
      ``fastlstm.reference``) is stepped with its cell functions, layer by layer.

    Attributes
    ----------
    batch_size : int
        B, the rows stepped together.
    state : (h, c) for the LSTM, h for the GRU and the RNN; each (num_layers, B, H)
        A copy of the current state, in the form ``layer.forward(x, state)`` takes and returns.

    Examples
    --------
    >>> import numpy as np
    >>> import fastlstm
    >>> lstm = fastlstm.LSTM(3, 4, num_layers=2, seed=0)
    >>> x = np.random.default_rng(0).standard_normal((5, 1, 3)).astype(np.float32)   # (T, B, I)
    >>> stream = lstm.stream(batch_size=1)
    >>> hs = np.stack([stream.step(x_t).copy() for x_t in x])          # (T, B, H)
    >>> out, state = lstm(x)
    >>> bool(np.allclose(hs, out, atol=1e-6)), bool(np.allclose(stream.state[1], state[1], atol=1e-6))
    (True, True)
    >>> stream.reset()                                   # zeros again; or reset(state)
    """

    def __init__(self, layer: Any, batch_size: int = 1) -> None:
        if layer.bidirectional:
            raise ValueError(
                f"stream: a bidirectional {type(layer).__name__} cannot be stepped one time step "
                f"at a time (its reverse direction reads the sequence from its end); use forward"
            )
        self.batch_size = positive_int("batch_size", batch_size)
        self._layer = layer
        self._kind = layer._kind
        L, B, H = layer.num_layers, self.batch_size, layer.hidden_size
        self._weights = [tuple(layer.params[f"{p}_l{k}"] for p in "WUb") for k in range(L)]
        self._h = np.zeros((L, B, H), layer.dtype)
        self._c = np.zeros((L, B, H), layer.dtype) if self._kind.cell_state else None
        if type(self) is Stream:
            # the count as set: a stream's steps run on its pool, not on the passes' teams that
            # _config halves while their cores are taken
            num_threads, simd = get_num_threads(), simd_level()
            self._num_threads = num_threads
            # a serial build runs on one thread, streams included (its documented contract)
            pooled = _core.openmp_version() > 0
            self.bind(self._kind.code, self._weights, self._h, self._c, num_threads, simd, pooled)

    def __reduce_ex__(self, protocol):
        raise TypeError(
            f"{type(self).__name__}: a stream cannot be copied or pickled (it steps its layer's "
            f"own arrays); make a new one with layer.stream(batch_size), then reset(state) with "
            f"this one's state"
        )

    def _pool(self) -> _core.Pool:
        """The pool that steps run on (called by ``step`` until it has one, and when it stops)."""
        return pool_of(self._num_threads)

    def _convert(self, x):
        """x checked and converted to a C-contiguous (B, I) array of the layer's dtype."""
        return shaped_array("x", x, ("B", "I"), (self.batch_size, self._layer.input_size),
                            self._layer.dtype)

    @property
    def state(self) -> Any:
        if self._c is None:
            return self._h.copy()
        return self._h.copy(), self._c.copy()

    def reset(self, state: Any = None) -> None:
        """Start again from `state`: (h, c) for the LSTM, h otherwise, each (num_layers, B, H), as
        ``layer.forward`` takes it (None, or None for either of h and c, means zeros). The stream
        keeps its own buffers: `state` is copied."""
        L, B, H = self._h.shape
        arrays = self._layer._unpack_state("state", state, ("L", "B", "H"), (L, B, H))
        for target, value in zip((self._h, self._c), arrays):
            if target is not None:
                target[...] = 0 if value is None else value


class _CellStream(Stream):
    """A stream of a layer whose backend is not the C kernels (``fastlstm.reference``, say): each
    step calls the backend's cell function once per layer."""

    def __init__(self, layer: Any, batch_size: int = 1) -> None:
        super().__init__(layer, batch_size)
        self._cell_forward = getattr(layer.backend, f"{self._kind.name}_cell_forward")

    def step(self, x: ArrayLike) -> np.ndarray:
        layer_input = self._convert(x)
        for k, (W, U, b) in enumerate(self._weights):
            if self._c is None:
                self._h[k], _ = self._cell_forward(layer_input, self._h[k], W, U, b)
            else:
                self._h[k], self._c[k], _ = self._cell_forward(layer_input, self._h[k],
                                                               self._c[k], W, U, b)
            layer_input = self._h[k]
        return self._h[-1]


# ---- the pools that streams step on: one per thread count, shared by the process's Python threads
# A step that finds its pool running another thread's step runs on its own thread alone (the C
# side, fl_pool_run): the pool's threads have the cores already. With a pool for each stepping
# Python thread, two to four threads stepping streams of B = 1, I = 256, H = 512 at once kept two
# to four pools' threads on the two cores, and the process took 1.5x the time (whole process,
# 8-10 pairs). A pool's threads are daemon threads inside _core.Pool.serve, which releases the GIL.

_POOL_START_SECONDS = 10.0
_pools: dict[int, "_PoolThreads"] = {}
_pools_lock = threading.Lock()


class _PoolThreads:
    """A pool and the threads that serve it; stopped when dropped."""

    def __init__(self, threads: int) -> None:
        self.pool = _core.Pool(threads)
        for k in range(1, threads):
            threading.Thread(target=self.pool.serve, args=(k,), name=f"fastlstm-pool-{k}",
                             daemon=True).start()
        # Until its threads serve it, steps pass the pool by and start OpenMP teams, which a
        # forked child of this process may not survive: wait for them (the GIL released, which
        # they need to get there), for up to _POOL_START_SECONDS.
        deadline = time.monotonic() + _POOL_START_SECONDS
        while self.pool.serving < threads - 1 and time.monotonic() < deadline:
            time.sleep(0.0001)

    def __del__(self) -> None:
        pool = getattr(self, "pool", None)  # None if making it failed
        if pool is not None:
            pool.stop()


def pool_of(threads: int) -> _core.Pool:
    """The process's pool of `threads` threads, started on first use (and anew if it was
    stopped)."""
    with _pools_lock:
        pool_threads = _pools.get(threads)
        if pool_threads is None or pool_threads.pool.stopped:
            pool_threads = _pools[threads] = _PoolThreads(threads)
        return pool_threads.pool


def _forget_pools() -> None:
    """In a child after fork: the pools' threads did not come along. Streams find new pools."""
    global _pools, _pools_lock
    for pool_threads in _pools.values():
        pool_threads.pool.stop()  # in another process: only marked stopped
    # the lock may have been held by a thread of the parent, which is not here to release it
    _pools, _pools_lock = {}, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def stream_of(layer: Any, batch_size: int) -> Stream:
    """The stream of `layer`: stepped by the C kernels when they are its backend."""
    import fastlstm

    cls = Stream if layer.backend is fastlstm else _CellStream
    return cls(layer, batch_size)
