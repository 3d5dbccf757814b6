"""Inference with weights that no longer change: a layer's forward, its weights packed once.

The per-step kernels read U in a packed layout, panels shaped for their register tiles. A forward
packs it at every call, because a training step changes the weights between calls, and W too
unless the rows are few enough to read it in place. That costs a pass or two over the weights, at
small batches and large H a large share of a short sequence's forward (T = 25, B = 1-4: an eighth
to a fifth at H = 512, a third at H = 1024). An inference engine such as onnxruntime packs its
constant weights once, when the session is made. A :class:`Frozen`, made by ``layer.freeze()``,
does the same for a fastlstm layer.
"""
from __future__ import annotations

import collections
import copy
import threading
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
from numpy.typing import ArrayLike

from . import _config, _core, _functions

if TYPE_CHECKING:
    from .layers import _Sequence

__all__ = ["Frozen"]

# The batch sizes (with the SIMD level) whose packed weights a Frozen keeps: the B of a call
# chooses the tile of the per-step product, and so the packing.
_KEPT_PACKINGS = 4


class Frozen:
    """A layer's forward for inference, its weights copied when it is made and packed once per
    batch size. Made by ``layer.freeze()``.

    - ``frozen(x, state=None, lengths=None)`` (or ``frozen.forward``) takes and returns what
      ``layer.forward`` does, with the same bits, but keeps no cache: there is no backward.
    - The weights are copies of the layer's when ``freeze`` was called: training the layer, or
      ``load``, does not change them. Freeze again to use new weights.
    - They are packed at the first call with each batch size B (B chooses the register tile of the
      per-step product, which the packing follows), and kept for the last four batch sizes used.
      A packing takes about as long as one forward's own; the calls after it skip it.
    - It keeps the arrays a forward works in (the gates and the cell states of every step, not
      the outputs) from one call to the next, one set per Python thread, so that a call makes no
      new ones of those; they take as much memory as the layer's largest call.
    - The thread count is the current one at each call (``fastlstm.set_num_threads``); every
      thread count gives the same bits.
    - With another backend than the C kernels (such as ``fastlstm.reference``), the frozen forward
      runs that backend's forward on the copied weights: nothing is packed.

    Examples
    --------
    >>> import numpy as np
    >>> import fastlstm
    >>> gru = fastlstm.GRU(3, 4, bidirectional=True, batch_first=True, seed=0)
    >>> frozen = gru.freeze()
    >>> x = np.ones((2, 5, 3), np.float32)                         # (B, T, I)
    >>> out, h_n = frozen(x)
    >>> out.shape, h_n.shape
    ((2, 5, 8), (2, 2, 4))
    >>> bool(np.array_equal(out, gru(x)[0]))
    True
    """

    def __init__(self, layer: _Sequence) -> None:
        from .layers import _aligned_empty  # the layers import this module

        # A copy of the layer that shares nothing it could change: its own parameter arrays
        # (64-byte aligned, as the layer's own), and no gradients or cache.
        self._layer = copy.copy(layer)
        self._layer.params = {}
        for name, value in layer.params.items():
            self._layer.params[name] = _aligned_empty(value.shape, value.dtype)
            self._layer.params[name][...] = value
        self._layer.grads = {}
        self._layer._saved = None
        self._empty_caches()

    def _empty_caches(self) -> None:
        """No packed weights and no scratch arrays yet: a copy or a pickle starts so too."""
        self._packs: collections.OrderedDict[tuple[int, int], dict[int, np.ndarray]] = (
            collections.OrderedDict())
        self._lock = threading.Lock()
        self._scratch = threading.local()  # each Python thread's scratch arrays (_scratch_array)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._layer!r})"

    def __getstate__(self) -> dict[str, Any]:
        """The frozen layer without its caches (``copy.deepcopy`` and ``pickle`` go through here):
        a lock cannot be pickled, and the packed weights, as large as the weights, are packed
        again at the first call."""
        return {"_layer": self._layer}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._empty_caches()

    def __call__(self, x: ArrayLike, state: Any = None, lengths: Optional[ArrayLike] = None
                 ) -> tuple[np.ndarray, Any]:
        return self.forward(x, state, lengths)

    def forward(self, x: ArrayLike, state: Any = None, lengths: Optional[ArrayLike] = None
                ) -> tuple[np.ndarray, Any]:
        """The frozen layer's forward: arguments and results as the layer's ``forward``.

        Parameters
        ----------
        x : array_like, shape (T, B, I), or (B, T, I) if batch_first
        state : None, or (h_0, c_0) for the LSTM, h_0 for the GRU and the RNN; each
            (num_layers*D, B, H)
        lengths : array_like of int, shape (B,), optional

        Returns
        -------
        out : ndarray, shape (T, B, D*H), or (B, T, D*H) if batch_first
        state : (h_n, c_n) for the LSTM, h_n for the GRU and the RNN; each (num_layers*D, B, H)
        """
        layer = self._layer
        out, state, _ = layer._forward_stack(x, state, lengths,
                                             layer._forward_of(self._packed_forward))
        return out, state

    def _packed_forward(self, j, xs, *args, lengths=None):
        """The C forward of layer k's direction d (j = k*D + d) with its weights packed for B."""
        *states, W, U, b = args
        packed = self._packed(j, xs.shape[1], W, U)
        return _functions._sequence_forward(self._layer._kind, xs, states, W, U, b, lengths,
                                            packed, self._scratch_array)

    def _scratch_array(self, name, shape, dtype):
        """An array for the forward's saved array `name` (the gates, the cell states), taken from
        this Python thread's last call: nothing reads them once a call is over, since the frozen
        forward keeps no cache. Kept rather than made anew at every call: NumPy hands arrays over
        32 MB back to the system when freed, and the next call's page faults cost 7-8% of a
        forward at T = 100, B = 128, H = 256 (profiled). hs_ext is new at every call: its hs is
        one direction's output, still read after the next direction's call."""
        if name == "hs_ext":
            return np.empty(shape, dtype)
        arrays = self._scratch.__dict__
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        memory = arrays.get(name)
        if memory is None or memory.nbytes < nbytes:
            memory = arrays[name] = np.empty(nbytes, np.uint8)
        return memory[:nbytes].view(dtype).reshape(shape)

    def _packed(self, j, B, W, U):
        """W and U of (layer, direction) j packed for B rows, packed now if they are not yet.

        The cache's bookkeeping holds a lock, so that Python threads may share a Frozen; the
        packing itself does not (two threads may pack the same weights alike at once)."""
        threads, simd = _config.kernel_args()
        key = (B, simd)
        with self._lock:
            packs = self._packs.pop(key, {})
            self._packs[key] = packs  # the most recently used last
            while len(self._packs) > _KEPT_PACKINGS:
                self._packs.popitem(last=False)
            packed = packs.get(j)
        if packed is None:
            packed = packs[j] = _core.pack(self._layer._kind.code, W, U, B, threads, simd)
        return packed

