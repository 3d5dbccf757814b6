"""Recurrent layers with parameters, gradients and state: LSTM, GRU, RNN and their cells.

Shapes follow ``torch.nn.LSTM``: T time steps, B batch rows, I input features (``input_size``),
H hidden units (``hidden_size``), L stacked layers (``num_layers``), D directions (2 if
``bidirectional``, else 1), G = 4H for the LSTM, 3H for the GRU and H for the RNN. Parameters are
in fastlstm's layout, gate blocks along the last axis ([i | f | g | o] for the LSTM, [r | z | n]
for the GRU)::

    W_l{k}{_reverse}   (I_k, G)     I_0 = I, I_k = D*H for k > 0
    U_l{k}{_reverse}   (H, G)
    b_l{k}{_reverse}   (G,), or (2, G) for the GRU: its input-side and recurrent-side biases

What this module does: keep parameters, gradients and the state between calls, stack layers, run
the reverse direction on a time-reversed copy of its input. What it does not do: compute anything
per time step, or convert weights (the converters from and to PyTorch, Keras and ONNX are in
:mod:`fastlstm.convert`; the methods here call them). Each (layer, direction) is one whole-sequence
call of the backend's ``lstm_forward`` / ``lstm_backward`` (``gru_*``, ``rnn_*``); the backend is
``fastlstm`` (the C kernels) unless another module with the same functions, such as
``fastlstm.reference``, is given.

Gradients accumulate, as ``.grad`` does in PyTorch: every ``backward`` adds into ``.grads`` and
``zero_grad()`` resets them. That is what lets a cell be stepped T times and back-propagated T times,
and what lets the chunks of truncated backpropagation through time add up.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import sys
from types import ModuleType
from typing import Any, Optional, TypeVar, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _functions, convert
from ._kinds import GRU as GRU_KIND, LSTM as LSTM_KIND, RNN as RNN_KIND, Kind, bias_shape
from ._validate import float_dtype, positive_int, sequence_lengths, shaped_array
from .frozen import Frozen
from .stream import Stream, stream_of

__all__ = ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"]

# A layer's state and its gradient: (h, c) for the LSTM, h for the GRU and the RNN (None: zeros).
State = Any
Layer = TypeVar("Layer", bound="_Module")


# ---- argument checks -----------------------------------------------------------------------------


def _default_backend():
    """The fastlstm package itself: the C kernels."""
    return importlib.import_module(__package__)


class _ModuleName(str):
    """The name of a backend module, standing in for it in a copy or a pickle."""


class _Backed:
    """Copies and pickles of an object with a ``backend`` (the layers, the cells, ``Linear``).

    A module can be neither pickled nor deep-copied, so a backend module imported under its own
    name travels as that name and is imported again: ``copy.deepcopy(model)`` keeps a model's best
    weights, ``pickle`` sends it to another process. Any other backend travels as itself.
    """

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        backend = state["backend"]
        if isinstance(backend, ModuleType) and sys.modules.get(backend.__name__) is backend:
            state["backend"] = _ModuleName(backend.__name__)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if isinstance(self.backend, _ModuleName):
            self.backend = importlib.import_module(self.backend)


def _accepts_lengths(function):
    """Whether `function` takes a ``lengths`` keyword (the variable-length kernels)."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return "lengths" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def _aligned_empty(shape, dtype):
    """A new C-contiguous array whose data starts on a 64-byte boundary (NumPy's own start 16 bytes
    past one, as a rule): the kernels read the weights in place, one row per vector load, and a
    load that straddles two cache lines costs two (a stream's step at B = 1 ran ~30% slower)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    memory = np.empty(nbytes + 64, np.uint8)
    start = -memory.ctypes.data % 64
    return memory[start : start + nbytes].view(dtype).reshape(shape)


# ---- what every layer and cell shares: parameters, gradients, save and load ----------------------


class _Module(_Backed):
    """Parameters and gradients in two dicts with the same keys; save/load to .npz; copies and
    pickles."""

    _kind: Kind  # fastlstm._kinds: the backend functions are {kind.name}_forward, ...
    _state_names = None  # ("h_0", "c_0") or ("h_0",): one array each, or a tuple when several
    _stacked = False  # True for sequence layers (num_layers, directions), False for cells
    _torch_class = None  # the torch.nn class with the same weights: "LSTM", ..., "GRUCell"

    def _init_params(self, shapes, seed, unit_forget_bias):
        """params uniform in +-1/sqrt(H) like torch; the forget-gate bias 1 if unit_forget_bias."""
        rng = np.random.default_rng(seed)
        k = 1 / np.sqrt(self.hidden_size)
        self.params = {}
        for name, shape in shapes:
            self.params[name] = _aligned_empty(shape, self.dtype)
            self.params[name][...] = rng.uniform(-k, k, shape)
        if unit_forget_bias:
            H = self.hidden_size
            for name, p in self.params.items():
                if name.split("_")[0] == "b":
                    p[..., H : 2 * H] = 1
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self.dstate = None

    def _set_param(self, name, value):
        target = self.params[name]
        value = np.asarray(value)
        if value.shape != target.shape:
            raise ValueError(f"{name}: expected shape {target.shape}, got {value.shape}")
        target[...] = value

    def _pack_state(self, arrays):
        """Several states as a tuple (LSTM: (h, c)), one as itself (RNN: h)."""
        return tuple(arrays) if len(self._state_names) > 1 else arrays[0]

    def _unpack_state(self, name, state, symbols, sizes):
        """A list with one checked array (or None) per state from a state argument like torch's."""
        n = len(self._state_names)
        if state is None:
            return [None] * n
        if n > 1:
            if not isinstance(state, (tuple, list)) or len(state) != n:
                raise ValueError(
                    f"{name}: expected a tuple ({', '.join(self._state_names)}) or None, "
                    f"got {type(state).__name__}"
                )
            items = [(f"{name}[{i}] ({s})", v)
                     for i, (s, v) in enumerate(zip(self._state_names, state))]
        else:
            items = [(name, state)]
        return [None if v is None else shaped_array(label, v, symbols, sizes, self.dtype)
                for label, v in items]

    def _function(self, name):
        return getattr(self.backend, f"{self._kind.name}_{name}")

    @classmethod
    def from_torch(cls: type[Layer], module_or_state_dict: Any, **config: Any) -> Layer:
        """A layer (or cell) with the weights of its torch twin or of that module's ``state_dict()``.

        The twin is ``torch.nn.LSTM`` for :class:`LSTM`, ``torch.nn.GRUCell`` for
        :class:`GRUCell`, and so on. Sizes (and a sequence layer's num_layers and bidirectional)
        come from the weights' names and shapes; batch_first from the module (if given); dtype from
        the weights (float32 unless they are float64). ``config`` may set batch_first, dtype,
        backend. W = weight_ih.T, U = weight_hh.T, b = bias_ih + bias_hh (zeros for a module built
        with bias=False), or for the GRU b = [bias_ih, bias_hh].
        """
        return convert.from_torch(cls, module_or_state_dict, config)

    def to_torch_state_dict(self) -> dict[str, np.ndarray]:
        """The parameters as NumPy arrays named and shaped as the torch twin's state_dict.

        The whole bias goes into bias_ih and zeros into bias_hh (torch only uses their sum), but for
        the GRU b[0] and b[1]. Load it with
        ``module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``.
        """
        return convert.to_torch_state_dict(self)

    def zero_grad(self) -> None:
        """Set every gradient to zero (in place: the arrays in ``grads`` stay the same objects)."""
        for g in self.grads.values():
            g.fill(0)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # -- save and load --

    def _config(self):
        raise NotImplementedError

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the configuration and the parameters to the .npz file `path`.

        NumPy adds the suffix ``.npz`` if `path` has none. Gradients, state and backend are not saved.
        """
        header = json.dumps({"class": type(self).__name__, "config": self._config()})
        np.savez(path, __fastlstm__=np.array(header), **self.params)

    @classmethod
    def load(cls: type[Layer], path: Union[str, os.PathLike],
             backend: Optional[ModuleType] = None) -> Layer:
        """A layer of this class with the configuration and parameters saved in `path`."""
        with np.load(path, allow_pickle=False) as data:
            if "__fastlstm__" not in data.files:
                raise ValueError(f"path: {path} was not written by fastlstm's save()")
            header = json.loads(str(data["__fastlstm__"]))
            if header["class"] != cls.__name__:
                raise ValueError(
                    f"path: {path} holds a fastlstm.{header['class']}, not a fastlstm.{cls.__name__}"
                )
            layer = cls(**header["config"], backend=backend)
            names = sorted(n for n in data.files if n != "__fastlstm__")
            if names != sorted(layer.params):
                raise ValueError(f"path: parameters {names} do not match {sorted(layer.params)}")
            for name in names:
                layer._set_param(name, data[name])
        return layer


# ---- stacked, optionally bidirectional sequence layers -------------------------------------------


class _Sequence(_Module):
    _stacked = True

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, batch_first: bool = False,
                 dtype: DTypeLike = "float32", seed: Optional[int] = None,
                 backend: Optional[ModuleType] = None, _unit_forget_bias: bool = False) -> None:
        self.input_size = positive_int("input_size", input_size)
        self.hidden_size = positive_int("hidden_size", hidden_size)
        self.num_layers = positive_int("num_layers", num_layers)
        self.bidirectional = bool(bidirectional)
        self.batch_first = bool(batch_first)
        self.dtype = float_dtype(dtype)
        self.backend = _default_backend() if backend is None else backend
        self._saved = None
        self._backward_done = False  # whether a backward freed the last forward's cache
        self._spares: dict[tuple[int, str], np.ndarray] = {}  # see _release
        self._init_params(self._param_shapes(), seed, _unit_forget_bias)

    def __getstate__(self) -> dict[str, Any]:
        """As _Backed's, without the spare arrays (a copy starts with none)."""
        state = super().__getstate__()
        state.pop("_spares", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._spares = {}

    def __copy__(self: Layer) -> Layer:
        """A copy that shares the parameters and their gradients, as a shallow copy does, but not
        the last forward's cache: the layer that holds a cache reuses its arrays once it releases
        it (_release), so a twin's backward for it would read the next forward's. The copy's
        backward needs a forward of its own."""
        twin = type(self).__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin._saved, twin._backward_done, twin._spares = None, False, {}
        return twin

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffixes(self):
        return ("", "_reverse") if self.bidirectional else ("",)

    def _param_shapes(self):
        H, D = self.hidden_size, self.num_directions
        G = self._kind.gates * H
        for k in range(self.num_layers):
            I_k = self.input_size if k == 0 else D * H
            for s in self._suffixes():
                yield f"W_l{k}{s}", (I_k, G)
                yield f"U_l{k}{s}", (H, G)
                yield f"b_l{k}{s}", bias_shape(self._kind, H)

    def _config(self):
        return dict(input_size=self.input_size, hidden_size=self.hidden_size,
                    num_layers=self.num_layers, bidirectional=self.bidirectional,
                    batch_first=self.batch_first, dtype=self.dtype.name)

    def __repr__(self):
        c = self._config()
        args = ", ".join(f"{k}={v!r}" for k, v in list(c.items())[2:])
        return f"{type(self).__name__}({c['input_size']}, {c['hidden_size']}, {args})"

    # -- the forward and backward passes --

    def _layout(self, name, last):
        """Symbols and sizes of a (T, B, last) sequence argument in this layer's layout."""
        if self.batch_first:
            return name, ("B", "T", last[0]), (None, None, last[1])
        return name, ("T", "B", last[0]), (None, None, last[1])

    def _time_major(self, name, value, last, T=None, B=None):
        name, symbols, sizes = self._layout(name, last)
        if T is not None:
            sizes = (B, T, sizes[2]) if self.batch_first else (T, B, sizes[2])
        array = shaped_array(name, value, symbols, sizes, self.dtype)
        return np.ascontiguousarray(array.transpose(1, 0, 2)) if self.batch_first else array

    def _lengths(self, lengths, T, B):
        """Checked lengths (B,) as np.intp, or None; NotImplementedError if the backend's forward
        takes none (its backward finds them in the forward's cache)."""
        lengths = sequence_lengths(lengths, T, B)
        if lengths is not None and not _accepts_lengths(self._function("forward")):
            raise NotImplementedError(
                f"lengths: the backend's {self._kind.name}_forward takes no lengths keyword"
            )
        return lengths

    @staticmethod
    def _reverse_time(a, index):
        """a (T, B, n) with each sequence reversed in time within its own length; its own inverse.

        `index` is None (every sequence is T long: a flipped copy) or (T, B) with
        index[t, b] = lengths[b]-1-t for t < lengths[b], else t (padding stays where it is).
        """
        if index is None:
            return np.ascontiguousarray(a[::-1])
        return np.take_along_axis(a, index[:, :, np.newaxis], axis=0)

    def forward(self, x: ArrayLike, state: State = None, lengths: Optional[ArrayLike] = None
                ) -> tuple[np.ndarray, State]:
        """Run the stacked layers over a whole sequence.

        Parameters
        ----------
        x : array_like, shape (T, B, I), or (B, T, I) if batch_first
            Cast to the layer's dtype.
        state : None, or (h_0, c_0) for the LSTM, h_0 for the RNN; each (num_layers*D, B, H)
            Initial state; None means zeros (also for either of h_0, c_0). Row k*D + d is layer k's
            direction d (0 forward, 1 reverse), as in torch.
        lengths : array_like of int, shape (B,), optional
            Each sequence's length (variable-length batch), in [0, T]. Needs a backend whose
            ``*_forward`` takes a ``lengths`` keyword (fastlstm and fastlstm.reference do), else
            NotImplementedError.

        Returns
        -------
        out : ndarray, shape (T, B, D*H), or (B, T, D*H) if batch_first
            The last layer's hidden states, [forward | reverse] along the last axis; zero past each
            sequence's length.
        state : (h_n, c_n) for the LSTM, h_n for the RNN; each (num_layers*D, B, H)
            The final state: pass it to the next call to continue the sequences (unidirectional).
        """
        replaced = self._saved
        out, state, self._saved = self._forward_stack(x, state, lengths,
                                                      self._forward_of(self._forward_on_spares))
        self._backward_done = False
        self._release(replaced)  # its arrays serve the forward after the next backward or forward
        return out, state

    def _forward_of(self, c_forward):
        """The forward_of of _forward_stack: j -> c_forward(j, ...) on the C kernels, else the
        backend's ``{kind}_forward`` for every j."""
        if self.backend is _default_backend():
            return lambda j: functools.partial(c_forward, j)
        forward = self._function("forward")
        return lambda j: forward

    def _forward_on_spares(self, j, xs, *args, lengths=None):
        """The C forward of layer k's direction d (j = k*D + d), the arrays it saves for the
        backward taken from the spares of the caches the layer released (_release)."""
        *states, W, U, b = args
        return _functions._sequence_forward(self._kind, xs, states, W, U, b, lengths, None,
                                            functools.partial(self._spare_array, j))

    def _spare_array(self, j, name, shape, dtype):
        """An array for the saved array `name` of direction j: the spare one if large enough, and
        not more than twice as large (a spare left by one larger forward, such as a whole
        validation batch, is dropped rather than kept for the layer's life)."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        spare = self._spares.pop((j, name), None)
        if spare is None or not nbytes <= spare.nbytes <= 2 * nbytes:
            return np.empty(shape, dtype)
        return spare.reshape(-1).view(np.uint8)[:nbytes].view(dtype).reshape(shape)

    def _release(self, saved):
        """Drops `saved`, a forward's cache (see _forward_stack) that no longer serves a backward,
        keeping the arrays the C forward saved in it (the states, the gates) as spares for a next
        forward of the same direction: the layers copy the hidden states they return, so nothing
        else reads them. New arrays of megabytes at every training step went back to the system
        when the backward freed them and were faulted in again at the next forward: a training
        loop of the LSTM layer at T,B,I,H = 100,8,256,256 took 2970 page faults a step, none with
        the spares; whole process, 5 pairs, 0.92x the time (0.91x for the benchmark's
        bidirectional two-layer layer)."""
        if saved is None or self.backend is not _default_backend():
            return  # none, or another backend's
        for j, cache in enumerate(saved["caches"]):
            if not isinstance(cache, _functions._SequenceCache):
                continue  # made before the backend was changed
            for name in self._kind.saved:
                array = getattr(cache, name)
                self._spares[(j, name)] = array if array.base is None else array.base

    def _forward_stack(self, x, state, lengths, forward_of):
        """(out, state, saved) of :meth:`forward`: saved is what its backward needs; forward_of(j)
        is the function (the backend's ``{kind}_forward`` or its like) that runs layer k's
        direction d, j = k*D + d."""
        xs = self._time_major("x", x, ("I", self.input_size))
        T, B = xs.shape[:2]
        H, D, S = self.hidden_size, self.num_directions, len(self._state_names)
        states = self._unpack_state("state", state, ("L*D", "B", "H"), (self.num_layers * D, B, H))
        lengths = self._lengths(lengths, T, B)
        extra = {} if lengths is None else {"lengths": lengths}
        index = mask = None
        if lengths is not None:
            t = np.arange(T)[:, np.newaxis]
            index = np.where(t < lengths, lengths - 1 - t, t)
            mask = (t < lengths)[:, :, np.newaxis]

        finals = [np.empty((self.num_layers * D, B, H), self.dtype) for _ in range(S)]
        caches = []
        layer_input = xs
        for k in range(self.num_layers):
            outs = []
            for d, s in enumerate(self._suffixes()):
                j = k * D + d
                W, U, b = (self.params[f"{p}_l{k}{s}"] for p in "WUb")
                seq = self._reverse_time(layer_input, index) if d else layer_input
                hs, *final, cache = forward_of(j)(
                    seq, *[None if a is None else a[j] for a in states], W, U, b, **extra
                )
                outs.append(self._reverse_time(hs, index) if d else hs)
                for a, f in zip(finals, final):
                    a[j] = f
                caches.append(cache)
            # A new array: hs shares memory with its cache, which must stay unmodified.
            layer_input = np.concatenate(outs, axis=2) if D == 2 else outs[0].copy()
            if mask is not None:
                layer_input *= mask
        out = layer_input
        if self.batch_first:
            out = np.ascontiguousarray(out.transpose(1, 0, 2))
        saved = dict(caches=caches, T=T, B=B, index=index, mask=mask)
        return out, self._pack_state(finals), saved

    def freeze(self) -> Frozen:
        """This layer's forward for inference, with its weights as they are now, packed once.

        A forward packs U (and W, unless its rows are few) for its kernels at every call, a large
        share of a short sequence's forward at small batches and large H. The frozen forward
        copies the weights now and packs them at its first call with each batch size, as an
        inference engine packs its constant weights when a session is made.

        Returns
        -------
        Frozen
            ``frozen(x, state=None, lengths=None)`` returns what ``forward`` returns, the same
            bits, and keeps no cache for a backward. Later changes to ``params`` are not seen:
            freeze again. See :class:`fastlstm.frozen.Frozen`.

        Examples
        --------
        >>> import numpy as np
        >>> import fastlstm
        >>> lstm = fastlstm.LSTM(3, 4, num_layers=2, seed=0)
        >>> x = np.random.default_rng(0).standard_normal((5, 2, 3))      # (T, B, I)
        >>> frozen = lstm.freeze()
        >>> out, (h_n, c_n) = frozen(x)
        >>> bool(np.array_equal(out, lstm(x)[0]))
        True
        """
        return Frozen(self)

    def stream(self, batch_size: int = 1) -> Stream:
        """A stream that steps this layer one time step at a time, its state kept inside.

        Parameters
        ----------
        batch_size : int
            B, the rows stepped together.

        Returns
        -------
        Stream
            ``stream.step(x_t)`` takes x_t (B, I) and returns the top layer's h_t (B, H), in a
            buffer it reuses; ``stream.state`` and ``stream.reset(state)`` take and give the state
            as ``forward`` does. Stepping T times gives ``forward``'s outputs. Unidirectional
            layers only (ValueError otherwise). See :class:`fastlstm.stream.Stream`.

        Examples
        --------
        >>> import numpy as np
        >>> import fastlstm
        >>> gru = fastlstm.GRU(3, 4, seed=0)
        >>> stream = gru.stream(batch_size=2)
        >>> stream.step(np.ones((2, 3))).shape
        (2, 4)
        """
        return stream_of(self, batch_size)

    def backward(self, dout: ArrayLike, dstate: State = None, retain_cache: bool = False
                 ) -> np.ndarray:
        """Backpropagation through time for the last :meth:`forward`.

        Parameters
        ----------
        dout : array_like or None, shape of ``out``
            Gradient with respect to ``out``; None means zero.
        dstate : None, or (dh_n, dc_n) for the LSTM, dh_n for the RNN; each (num_layers*D, B, H)
            Gradient with respect to the final state; None means zero.
        retain_cache : bool
            Keep what the forward saved, so that backward can run again for the same forward (its
            gradients then add up in ``grads``, as torch's ``retain_graph=True``). By default the
            cache is released (the layer's next forward saves into its arrays), and a second
            backward raises ``RuntimeError`` instead of silently adding the gradients twice.

        Returns
        -------
        dx : ndarray, shape of ``x``
            Gradient with respect to ``x``.

        Adds the parameters' gradients into ``grads`` (see :meth:`zero_grad`) and sets ``dstate``
        to the gradient with respect to the forward's initial ``state``, in its structure (for
        truncated BPTT: pass it as ``dstate`` to the backward of the previous chunk).
        """
        if self._saved is None:
            raise RuntimeError(
                "backward: already called for the last forward, which saved its cache for one "
                "backward; pass retain_cache=True to keep it" if self._backward_done else
                "backward: call forward first")
        saved = self._saved
        if not retain_cache:
            self._saved, self._backward_done = None, True
        T, B, H, D = saved["T"], saved["B"], self.hidden_size, self.num_directions
        S = len(self._state_names)
        d_out = None
        if dout is not None:
            d_out = self._time_major("dout", dout, ("D*H", D * H), T, B)
            if saved["mask"] is not None:  # out is zero past each end whatever dout says there
                d_out = d_out * saved["mask"]
        dfinals = self._unpack_state("dstate", dstate, ("L*D", "B", "H"), (self.num_layers * D, B, H))
        dinitial = [np.empty((self.num_layers * D, B, H), self.dtype) for _ in range(S)]
        backward = self._function("backward")
        index = saved["index"]
        for k in reversed(range(self.num_layers)):
            d_in = None
            for d, s in enumerate(self._suffixes()):
                j = k * D + d
                dhs = None
                if d_out is not None:
                    dhs = np.ascontiguousarray(d_out[:, :, d * H : (d + 1) * H])
                    if d:
                        dhs = self._reverse_time(dhs, index)
                dxs, *rest = backward(
                    dhs, *[None if a is None else a[j] for a in dfinals], saved["caches"][j]
                )
                dinit, dparams = rest[:S], rest[S:]
                if d:
                    dxs = self._reverse_time(dxs, index)
                d_in = dxs if d_in is None else d_in + dxs
                for a, g in zip(dinitial, dinit):
                    a[j] = g
                for p, g in zip("WUb", dparams):
                    self.grads[f"{p}_l{k}{s}"] += g
            d_out = d_in
        if not retain_cache:
            self._release(saved)
        self.dstate = self._pack_state(dinitial)
        return np.ascontiguousarray(d_out.transpose(1, 0, 2)) if self.batch_first else d_out

    # -- PyTorch, Keras and ONNX (fastlstm.convert) --

    def to_torch(self) -> Any:
        """A ``torch.nn.{LSTM,GRU,RNN}`` with this layer's configuration and weights (imports torch)."""
        return convert.to_torch(self)

    @classmethod
    def from_keras(cls: type[Layer], layer_or_weights: Any, **config: Any) -> Layer:
        """A one-layer layer with the weights of a Keras ``LSTM`` / ``GRU`` / ``SimpleRNN`` layer.

        Parameters
        ----------
        layer_or_weights : object with ``get_weights()``, or a list of arrays
            ``[kernel (I, G), recurrent_kernel (H, G), bias]`` with bias (G,), or (2, G) for a GRU
            (Keras' ``reset_after=True``, its default), or the six arrays of a ``Bidirectional``
            wrapper (forward layer's, then backward layer's; merge_mode "concat"). Keras' LSTM gate
            order i, f, c, o is fastlstm's; its GRU's z, r, h is reordered to r, z, n.
        **config
            batch_first (default True: Keras' data is batch-major), dtype (default the kernel's),
            backend.

        If the object has ``get_config()``, its activations must be tanh (and sigmoid for the
        LSTM's recurrent activation) and it must not run backwards.
        """
        return convert.from_keras(cls, layer_or_weights, config)

    def to_onnx(self, path: Union[str, os.PathLike, None], opset: int = 17, *,
                state: bool = False, lengths: bool = False) -> Any:
        """Write this layer as an ONNX inference model; needs the ``onnx`` package.

        One ONNX node per layer (both directions in it), gates reordered to ONNX's (LSTM i, o, f,
        c; GRU z, r, h with ``linear_before_reset=1``), biases split into Wb and Rb. onnxruntime
        gives the same outputs as :meth:`forward`. Runs nothing and imports no onnxruntime.

        Parameters
        ----------
        path : str, os.PathLike or None
            Where to write the model (``.onnx``); None writes nothing.
        opset : int
            The ONNX opset, from 14 to the onnx package's newest.
        state : bool
            Give the model initial-state inputs ``h_0`` (and ``c_0``), (L*D, B, H), as
            ``forward``'s ``state``; without them the initial states are zeros.
        lengths : bool
            Give the model an int32 input ``lengths`` (B,), as ``forward``'s ``lengths``
            (ONNX's ``sequence_lens``).

        Returns
        -------
        onnx.ModelProto
            Inputs ``x`` in the layer's layout ((T, B, I), or (B, T, I) if batch_first; a Transpose
            makes it time-major, since onnxruntime runs no batch-major recurrent node), then
            ``lengths``, ``h_0``, ``c_0`` as asked; outputs ``out``, ``h_n`` (and ``c_n``), as
            ``forward`` returns them. T and B are free.

        An example is in :func:`fastlstm.convert.to_onnx`.
        """
        return convert.to_onnx(self, path, opset, state, lengths)

    @classmethod
    def from_onnx(cls: type[Layer], path_or_model: Any, **config: Any) -> Layer:
        """A layer read from the chain of LSTM (GRU, RNN) nodes of an ONNX model; needs ``onnx``.

        Reads what :meth:`to_onnx` and ``torch.onnx.export`` of a ``torch.nn.LSTM`` write: one node
        per layer, with only Identity, Transpose, Reshape, Squeeze and Unsqueeze between the
        model's input, the nodes and its first output (checked by running them on a probe).
        num_layers, bidirectional, the sizes, batch_first and the dtype come from the model;
        ``config`` may set the dtype and backend, and repeat the rest.

        Raises ValueError, never loads approximately, when the model holds what fastlstm does not
        compute: peepholes (P), ``clip``, activations other than the defaults or with parameters,
        ``input_forget``, a GRU with ``linear_before_reset=0``, direction ``reverse``, nodes that
        differ in size or direction, constant sequence lengths or non-zero constant initial
        states, or any other operator on the path from the input to the first output (a read-out
        head, say). An example is in :func:`fastlstm.convert.from_onnx`.
        """
        return convert.from_onnx(cls, path_or_model, config)


class LSTM(_Sequence):
    """A stacked, optionally bidirectional LSTM over whole sequences, shaped like ``torch.nn.LSTM``.

    Per layer and direction, with gate blocks [i | f | g | o] along the last axis::

        z   = x_t @ W + h_{t-1} @ U + b
        i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);   g = tanh(z_g)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)

    Layer k+1's input is layer k's output, [forward | reverse] along the last axis. The reverse
    direction runs on the time-reversed sequence and its output is reversed back.

    Parameters
    ----------
    input_size, hidden_size : int
        I and H.
    num_layers : int
        L stacked layers.
    bidirectional : bool
        D = 2 directions if True.
    batch_first : bool
        ``x`` and ``out`` are (B, T, .) instead of (T, B, .). States are (L*D, B, H) either way.
    dtype : "float32" or "float64"
        Of the parameters, of every output and gradient; inputs are cast to it.
    seed : int, numpy.random.Generator or None
        For ``np.random.default_rng``: parameters uniform in +-1/sqrt(H) like torch's (whose
        bias_ih + bias_hh, though, spans +-2/sqrt(H)).
    unit_forget_bias : bool
        Set the forget-gate bias to 1 (Keras' option), which helps learn long dependencies.
    backend : module, optional
        Provides ``lstm_forward`` and ``lstm_backward``: ``fastlstm`` (default, the C kernels) or
        ``fastlstm.reference`` (NumPy).

    Attributes
    ----------
    params, grads : dict of ndarray
        Same keys: ``W_l{k}`` (I_k, 4H), ``U_l{k}`` (H, 4H), ``b_l{k}`` (4H,), and with a
        ``_reverse`` suffix for the reverse direction. ``grads`` accumulate (see ``zero_grad``).
    dstate : (ndarray, ndarray)
        After ``backward``: gradient with respect to the forward's initial (h_0, c_0).

    Shapes
    ------
    x : (T, B, I) or (B, T, I);  out : (T, B, D*H) or (B, T, D*H)
    h_0, c_0, h_n, c_n : (L*D, B, H), row k*D + d for layer k, direction d

    Examples
    --------
    >>> import numpy as np
    >>> import fastlstm
    >>> lstm = fastlstm.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0)
    >>> x = np.random.default_rng(0).standard_normal((5, 2, 3))      # (T, B, I)
    >>> out, (h_n, c_n) = lstm(x)
    >>> out.shape, h_n.shape, c_n.shape
    ((5, 2, 8), (4, 2, 4), (4, 2, 4))
    >>> dx = lstm.backward(np.ones_like(out))
    >>> dx.shape, lstm.grads["W_l1_reverse"].shape
    ((5, 2, 3), (8, 16))
    >>> ref = fastlstm.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0,
    ...                     backend=fastlstm.reference)
    >>> bool(np.allclose(ref(x)[0], out, atol=1e-5))
    True
    """

    _kind, _state_names, _torch_class = LSTM_KIND, ("h_0", "c_0"), "LSTM"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, batch_first: bool = False,
                 dtype: DTypeLike = "float32", seed: Optional[int] = None,
                 unit_forget_bias: bool = False, backend: Optional[ModuleType] = None) -> None:
        self.unit_forget_bias = bool(unit_forget_bias)
        super().__init__(input_size, hidden_size, num_layers, bidirectional, batch_first, dtype,
                         seed, backend, _unit_forget_bias=self.unit_forget_bias)

    def _config(self):
        return {**super()._config(), "unit_forget_bias": self.unit_forget_bias}

class RNN(_Sequence):
    """A stacked, optionally bidirectional tanh RNN, shaped like ``torch.nn.RNN``.

    Per layer and direction ``h_t = tanh(x_t @ W + h_{t-1} @ U + b)`` with W (I_k, H), U (H, H),
    b (H,). Everything else, parameters included, is as in :class:`LSTM` with one state: ``state``
    is h_0, the forward returns ``out, h_n`` and ``dstate`` is dh_0.

    Shapes
    ------
    x : (T, B, I) or (B, T, I);  out : (T, B, D*H) or (B, T, D*H);  h_0, h_n : (L*D, B, H)

    Examples
    --------
    >>> import numpy as np
    >>> import fastlstm
    >>> rnn = fastlstm.RNN(3, 4, batch_first=True, seed=0)
    >>> out, h_n = rnn(np.ones((2, 5, 3)))                           # (B, T, I)
    >>> out.shape, h_n.shape, bool(np.array_equal(out[:, -1], h_n[0]))
    ((2, 5, 4), (1, 2, 4), True)
    """

    _kind, _state_names, _torch_class = RNN_KIND, ("h_0",), "RNN"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, batch_first: bool = False,
                 dtype: DTypeLike = "float32", seed: Optional[int] = None,
                 backend: Optional[ModuleType] = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, bidirectional, batch_first, dtype,
                         seed, backend)

class GRU(_Sequence):
    """A stacked, optionally bidirectional GRU over whole sequences, shaped like ``torch.nn.GRU``.

    Per layer and direction, with gate blocks [r | z | n] along the last axis and b (2, 3H) holding
    the input-side bias b[0] and the recurrent-side bias b[1] (torch's bias_ih and bias_hh)::

        r   = sigmoid(x_t @ W_r + b[0]_r + h_{t-1} @ U_r + b[1]_r)
        z   = sigmoid(x_t @ W_z + b[0]_z + h_{t-1} @ U_z + b[1]_z)
        n   = tanh(x_t @ W_n + b[0]_n + r * (h_{t-1} @ U_n + b[1]_n))
        h_t = (1 - z) * n + z * h_{t-1}

    Everything else is as in :class:`LSTM` with one state: ``state`` is h_0, the forward returns
    ``out, h_n`` and ``dstate`` is dh_0. Keras' GRU (``reset_after=True``) loads with
    :meth:`from_keras`, its gates reordered.

    Shapes
    ------
    x : (T, B, I) or (B, T, I);  out : (T, B, D*H) or (B, T, D*H);  h_0, h_n : (L*D, B, H)
    W_l{k} : (I_k, 3H);  U_l{k} : (H, 3H);  b_l{k} : (2, 3H)

    Examples
    --------
    >>> import numpy as np
    >>> import fastlstm
    >>> gru = fastlstm.GRU(3, 4, num_layers=2, bidirectional=True, seed=0)
    >>> out, h_n = gru(np.ones((5, 2, 3)))                           # (T, B, I)
    >>> dx = gru.backward(np.ones_like(out))
    >>> out.shape, h_n.shape, dx.shape, gru.grads["b_l1_reverse"].shape
    ((5, 2, 8), (4, 2, 4), (5, 2, 3), (2, 12))
    """

    _kind, _state_names, _torch_class = GRU_KIND, ("h_0",), "GRU"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, batch_first: bool = False,
                 dtype: DTypeLike = "float32", seed: Optional[int] = None,
                 backend: Optional[ModuleType] = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, bidirectional, batch_first, dtype,
                         seed, backend)

# ---- one step at a time --------------------------------------------------------------------------


class _Cell(_Module):
    def __init__(self, input_size: int, hidden_size: int, dtype: DTypeLike = "float32",
                 seed: Optional[int] = None, backend: Optional[ModuleType] = None,
                 _unit_forget_bias: bool = False) -> None:
        self.input_size = positive_int("input_size", input_size)
        self.hidden_size = positive_int("hidden_size", hidden_size)
        self.dtype = float_dtype(dtype)
        self.backend = _default_backend() if backend is None else backend
        self._caches = []
        G = self._kind.gates * self.hidden_size
        shapes = [("W", (self.input_size, G)), ("U", (self.hidden_size, G)),
                  ("b", bias_shape(self._kind, self.hidden_size))]
        self._init_params(shapes, seed, _unit_forget_bias)

    def _config(self):
        return dict(input_size=self.input_size, hidden_size=self.hidden_size,
                    dtype=self.dtype.name)

    def __repr__(self):
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}, "
                f"dtype={self.dtype.name!r})")

    def forward(self, x: ArrayLike, state: State = None) -> State:
        """One step; x (B, I), state as in torch's cell (None: zeros). Keeps the step's cache."""
        x = shaped_array("x", x, ("B", "I"), (None, self.input_size), self.dtype)
        B, H = x.shape[0], self.hidden_size
        states = self._unpack_state("state", state, ("B", "H"), (B, H))
        *new, cache = self._function("cell_forward")(
            x, *states, self.params["W"], self.params["U"], self.params["b"])
        self._caches.append(cache)
        return self._pack_state(new)

    def _backward(self, dnew):
        if not self._caches:
            raise RuntimeError("backward: no forward step left to back-propagate")
        cache = self._caches.pop()
        dx, *rest = self._function("cell_backward")(*dnew, cache)
        S = len(self._state_names)
        for p, g in zip("WUb", rest[S:]):
            self.grads[p] += g
        self.dstate = self._pack_state(rest[:S])
        return dx

    def clear_steps(self) -> None:
        """Forget the caches of forward steps that will not be back-propagated (e.g. inference)."""
        self._caches.clear()

class LSTMCell(_Cell):
    """One LSTM step with parameters, like ``torch.nn.LSTMCell``: ``h, c = cell(x, (h, c))``.

    Parameters ``W`` (I, 4H), ``U`` (H, 4H), ``b`` (4H,), gate blocks [i | f | g | o], initialised
    as in :class:`LSTM`. Each ``forward`` keeps its step's cache on a stack and each ``backward``
    takes the most recent one, so T forward steps followed by T backward steps in reverse order are
    backpropagation through time; gradients add up in ``grads`` (``zero_grad`` resets them), and
    ``dstate`` holds (dh_prev, dc_prev) of the step just back-propagated, to add to the gradient of
    the previous step's output. ``clear_steps()`` drops caches not to be back-propagated.

    Shapes
    ------
    x : (B, I);  h, c : (B, H)

    Examples
    --------
    >>> import numpy as np
    >>> import fastlstm
    >>> cell = fastlstm.LSTMCell(3, 4, seed=0)
    >>> h, c = cell(np.ones((2, 3)))
    >>> h, c = cell(np.ones((2, 3)), (h, c))
    >>> dx = cell.backward(np.ones((2, 4)))                 # the second step
    >>> dx = cell.backward(np.ones((2, 4)) + cell.dstate[0], cell.dstate[1])   # the first
    >>> dx.shape, cell.grads["U"].shape
    ((2, 3), (4, 16))
    """

    _kind, _state_names, _torch_class = LSTM_KIND, ("h", "c"), "LSTMCell"

    def __init__(self, input_size: int, hidden_size: int, dtype: DTypeLike = "float32",
                 seed: Optional[int] = None, unit_forget_bias: bool = False,
                 backend: Optional[ModuleType] = None) -> None:
        self.unit_forget_bias = bool(unit_forget_bias)
        super().__init__(input_size, hidden_size, dtype, seed, backend,
                         _unit_forget_bias=self.unit_forget_bias)

    def _config(self):
        return {**super()._config(), "unit_forget_bias": self.unit_forget_bias}

    def backward(self, dh: ArrayLike, dc: Optional[ArrayLike] = None) -> np.ndarray:
        """Gradients of the most recent forward step not yet back-propagated; returns dx (B, I).

        dh, dc (B, H) or None are the gradients with respect to the step's h and c.
        """
        return self._backward((dh, dc))


class _HiddenStateCell(_Cell):
    """A cell whose only state is h (RNN, GRU)."""

    def backward(self, dh: ArrayLike) -> np.ndarray:
        """Gradients of the most recent forward step not yet back-propagated; returns dx (B, I)."""
        return self._backward((dh,))


class RNNCell(_HiddenStateCell):
    """One tanh RNN step with parameters, like ``torch.nn.RNNCell``: ``h = cell(x, h)``.

    ``h = tanh(x @ W + h_prev @ U + b)`` with W (I, H), U (H, H), b (H,); otherwise as
    :class:`LSTMCell`, with ``dstate`` = dh_prev.

    Shapes
    ------
    x : (B, I);  h : (B, H)

    Examples
    --------
    >>> import numpy as np
    >>> import fastlstm
    >>> cell = fastlstm.RNNCell(3, 4, dtype="float64", seed=0)
    >>> h = cell(np.ones((2, 3)))
    >>> dx = cell.backward(np.ones((2, 4)))
    >>> h.shape, dx.shape, cell.dstate.shape
    ((2, 4), (2, 3), (2, 4))
    """

    _kind, _state_names, _torch_class = RNN_KIND, ("h",), "RNNCell"


class GRUCell(_HiddenStateCell):
    """One GRU step with parameters, like ``torch.nn.GRUCell``: ``h = cell(x, h)``.

    W (I, 3H), U (H, 3H), b (2, 3H) as in :class:`GRU`; otherwise as :class:`LSTMCell`, with
    ``dstate`` = dh_prev.

    Shapes
    ------
    x : (B, I);  h : (B, H)

    Examples
    --------
    >>> import numpy as np
    >>> import fastlstm
    >>> cell = fastlstm.GRUCell(3, 4, seed=0)
    >>> h = cell(np.ones((2, 3)))
    >>> dx = cell.backward(np.ones((2, 4)))
    >>> h.shape, dx.shape, cell.grads["b"].shape
    ((2, 4), (2, 3), (2, 12))
    """

    _kind, _state_names, _torch_class = GRU_KIND, ("h",), "GRUCell"
