"""What training a recurrent network from NumPy needs around the recurrent layers.

Losses return the loss and its gradient together; the read-out layer and the optimizers work on
dicts of arrays, like the layers' ``params`` and ``grads``, and update them in place::

    softmax(logits)                              -> probabilities (..., K)
    softmax_cross_entropy(logits, targets)       -> loss, dlogits        classification
    mse(pred, target)                            -> loss, dpred          regression
    Linear(in_features, out_features)            y = x @ W + b           read-out, with params/grads
    collect(lstm=lstm, head=head)                -> params, grads        one pair of dicts for all
    clip_grad_norm(grads, max_norm)              -> norm                 rescales grads in place
    SGD(params, lr, momentum).step(grads)
    Adam(params, lr, betas, eps).step(grads)
    optimizer.state_dict(), optimizer.load_state_dict(state)             what a checkpoint keeps
    save_checkpoint(path, params, optimizer, step), load_checkpoint(path, params, optimizer) -> step

Losses are means over every position (all axes but the classes' for the cross-entropy, every
element for the squared error), so their gradients are already divided by that count. Everything
computes in the dtype of its float inputs (float32 or float64).

A training step, many-to-many, with a layer from :mod:`fastlstm.layers`::

    out, _ = lstm(xs)                                  # (T, B, H)
    loss, dlogits = softmax_cross_entropy(head(out), targets)
    lstm.backward(head.backward(dlogits))              # adds into lstm.grads and head.grads
    clip_grad_norm(grads, 5.0)
    optimizer.step(grads)
    lstm.zero_grad(); head.zero_grad()

This module does not differentiate anything automatically: each piece has its own backward.
"""
from __future__ import annotations

import json
import os
from types import ModuleType
from typing import Any, Iterable, Optional, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _validate
from .layers import _Backed, _default_backend

__all__ = ["softmax", "softmax_cross_entropy", "mse", "Linear", "collect", "clip_grad_norm",
           "SGD", "Adam", "save_checkpoint", "load_checkpoint"]


# ---- losses --------------------------------------------------------------------------------------


def softmax(logits: ArrayLike, axis: int = -1) -> np.ndarray:
    """exp(logits) normalised to sum to 1 along `axis`, computed without overflow.

    Parameters
    ----------
    logits : array_like of float
    axis : int
        The axis of the classes.

    Returns
    -------
    ndarray, shape and float dtype of `logits`

    Examples
    --------
    >>> import numpy as np
    >>> from fastlstm.train import softmax
    >>> softmax(np.array([0.0, np.log(3.0)]))
    array([0.25, 0.75])
    >>> softmax(np.array([[1000.0, 1000.0]]))        # no overflow
    array([[0.5, 0.5]])
    """
    z = _validate.real_array("logits", logits)
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def softmax_cross_entropy(logits: ArrayLike, targets: ArrayLike) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against integer class targets, and its gradient.

    loss = mean over positions n of -log softmax(logits[n])[targets[n]], in nats;
    dlogits = (softmax(logits) - onehot(targets)) / N, with N the number of positions.

    Parameters
    ----------
    logits : array_like of float, shape (..., K)
        Unnormalised scores of K classes at every position, e.g. (T, B, K) for a sequence.
    targets : array_like of int, shape (...)
        The right class at every position, in [0, K).

    Returns
    -------
    loss : float
    dlogits : ndarray, shape (..., K), the float dtype of `logits`
        Gradient of `loss` with respect to `logits`.

    Shapes
    ------
    logits : (..., K);  targets : (...);  dlogits : (..., K)

    Examples
    --------
    >>> import numpy as np
    >>> from fastlstm.train import softmax_cross_entropy
    >>> logits = np.zeros((2, 4))                     # two positions, four equally likely classes
    >>> loss, dlogits = softmax_cross_entropy(logits, np.array([1, 3]))
    >>> bool(np.isclose(loss, np.log(4)))
    True
    >>> dlogits
    array([[ 0.125, -0.375,  0.125,  0.125],
           [ 0.125,  0.125,  0.125, -0.375]])
    """
    z = _validate.real_array("logits", logits)
    t = np.asarray(targets)
    if z.ndim < 1:
        raise ValueError(f"logits: expected shape (..., K), got {z.shape}")
    if t.dtype.kind not in "iu":
        raise TypeError(f"targets: expected integer class indices, got dtype {t.dtype}")
    if t.shape != z.shape[:-1]:
        raise ValueError(f"targets: expected shape {z.shape[:-1]} (logits' shape without K), "
                         f"got {t.shape}")
    K, N = z.shape[-1], t.size
    if N == 0 or K == 0:
        raise ValueError(f"logits: expected at least one position and one class, got {z.shape}")
    if t.min() < 0 or t.max() >= K:
        raise ValueError(f"targets: expected classes in [0, K) = [0, {K}), "
                         f"got values from {t.min()} to {t.max()}")
    z2, t1 = z.reshape(N, K), t.reshape(N)
    shifted = z2 - np.max(z2, axis=1, keepdims=True)
    log_norm = np.log(np.sum(np.exp(shifted), axis=1))
    rows = np.arange(N)
    loss = float(np.mean(log_norm - shifted[rows, t1]))
    dlogits = np.exp(shifted - log_norm[:, np.newaxis])     # softmax
    dlogits[rows, t1] -= 1
    dlogits /= N
    return loss, dlogits.reshape(z.shape)


def mse(pred: ArrayLike, target: ArrayLike) -> tuple[float, np.ndarray]:
    """Mean squared error and its gradient.

    loss = mean((pred - target)**2);  dpred = 2 (pred - target) / N, with N the number of elements.

    Parameters
    ----------
    pred : array_like of float
    target : array_like, same shape as `pred`
        No broadcasting: a shape mismatch is an error, not a silently averaged grid.

    Returns
    -------
    loss : float
    dpred : ndarray, shape and float dtype of `pred`

    Examples
    --------
    >>> import numpy as np
    >>> from fastlstm.train import mse
    >>> loss, dpred = mse(np.array([1.0, 2.0]), np.array([0.0, 4.0]))
    >>> loss, dpred
    (2.5, array([ 1., -2.]))
    """
    p = _validate.real_array("pred", pred)
    t = np.asarray(target)
    if t.shape != p.shape:
        raise ValueError(f"target: expected the shape of pred {p.shape}, got {t.shape}")
    if p.size == 0:
        raise ValueError("pred: expected at least one element, got shape " + str(p.shape))
    error = p - t.astype(p.dtype, copy=False)
    return float(np.mean(error * error)), (2 / p.size) * error


# ---- a read-out layer ----------------------------------------------------------------------------


def _last_axis(name, value, symbol, size, dtype):
    """`value` as an array of `dtype` whose last axis has `size` elements (any leading axes)."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real array, got dtype {array.dtype}")
    if array.ndim < 1 or array.shape[-1] != size:
        raise ValueError(
            f"{name}: expected shape (..., {symbol}) = (..., {size}), got {array.shape}")
    return np.asarray(array, dtype)


class Linear(_Backed):
    """An affine layer ``y = x @ W + b`` over the last axis, with parameters and gradients.

    The read-out of a recurrent layer: per time step and batch row, from the H hidden units to K
    scores or values. ``params`` and ``grads`` are dicts with the same keys, ``W`` (I, O) and ``b``
    (O,), initialised uniform in +-1/sqrt(I) like ``torch.nn.Linear``. As in the recurrent layers,
    ``backward`` adds into ``grads`` until ``zero_grad()``. Its products are the backend's
    ``matmul``: fastlstm's by default, whose kernels and threads are those of the recurrent passes,
    so that a training step of fastlstm's pieces never wakes the threads of NumPy's BLAS (see
    ``fastlstm.matmul``).

    Parameters
    ----------
    in_features, out_features : int
        I and O.
    dtype : "float32" or "float64"
    seed : int, numpy.random.Generator or None
        For ``np.random.default_rng``.
    backend : module or None
        ``fastlstm`` (None) or ``fastlstm.reference`` (NumPy's ``@``), as for the recurrent layers.

    Shapes
    ------
    x : (..., I);  y : (..., O), e.g. (T, B, H) -> (T, B, K)

    Examples
    --------
    >>> import numpy as np
    >>> from fastlstm.train import Linear
    >>> head = Linear(3, 2, dtype="float64", seed=0)
    >>> y = head(np.ones((5, 4, 3)))                           # (T, B, I) -> (T, B, O)
    >>> dx = head.backward(np.ones_like(y))
    >>> y.shape, dx.shape, head.grads["W"].shape, float(head.grads["b"][0])
    ((5, 4, 2), (5, 4, 3), (3, 2), 20.0)
    """

    def __init__(self, in_features: int, out_features: int, dtype: DTypeLike = "float32",
                 seed: Optional[int] = None, backend: Optional[ModuleType] = None) -> None:
        self.in_features = _validate.positive_int("in_features", in_features)
        self.out_features = _validate.positive_int("out_features", out_features)
        self.dtype = _validate.float_dtype(dtype)
        k = 1 / np.sqrt(self.in_features)
        rng = np.random.default_rng(seed)
        self.params = {
            "W": rng.uniform(-k, k, (self.in_features, self.out_features)).astype(self.dtype),
            "b": rng.uniform(-k, k, self.out_features).astype(self.dtype),
        }
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self.backend = _default_backend() if backend is None else backend
        self._x = None

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features}, dtype={self.dtype.name!r})"

    def __call__(self, x: ArrayLike) -> np.ndarray:
        return self.forward(x)

    def forward(self, x: ArrayLike) -> np.ndarray:
        """y (..., O) = x (..., I) @ W + b; keeps x for the backward."""
        self._x = _last_axis("x", x, "I", self.in_features, self.dtype)
        y = self.backend.matmul(self._x, self.params["W"])
        y += self.params["b"]
        return y

    def backward(self, dy: ArrayLike) -> np.ndarray:
        """Adds dW = x^T dy and db = sum(dy) into ``grads``; returns dx (..., I) = dy @ W^T."""
        if self._x is None:
            raise RuntimeError("backward: call forward first")
        x = self._x
        dy = _last_axis("dy", dy, "O", self.out_features, self.dtype)
        if dy.shape[:-1] != x.shape[:-1]:
            raise ValueError(f"dy: expected shape {x.shape[:-1] + (self.out_features,)} "
                             f"(x's leading axes), got {dy.shape}")
        x2, dy2 = x.reshape(-1, self.in_features), dy.reshape(-1, self.out_features)
        self.grads["W"] += self.backend.matmul(x2.T, dy2)
        self.grads["b"] += dy2.sum(axis=0)
        return self.backend.matmul(dy, self.params["W"].T)

    def zero_grad(self) -> None:
        """Set every gradient to zero, in place."""
        for g in self.grads.values():
            g.fill(0)


def collect(**modules: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One ``params`` dict and one ``grads`` dict over several modules, for an optimizer.

    Keys are ``"{name}.{key}"``; the values are the modules' own arrays, not copies, so updating
    ``params`` in place updates the modules, and their ``backward`` fills ``grads``.

    Parameters
    ----------
    **modules
        Anything with ``params`` and ``grads`` dicts: ``fastlstm.LSTM``, ``RNN``, the cells,
        :class:`Linear`.

    Returns
    -------
    params, grads : dict of ndarray

    Examples
    --------
    >>> import fastlstm
    >>> from fastlstm.train import Linear, collect
    >>> lstm, head = fastlstm.LSTM(3, 8, seed=0), Linear(8, 2, seed=1)
    >>> params, grads = collect(lstm=lstm, head=head)
    >>> sorted(params)
    ['head.W', 'head.b', 'lstm.U_l0', 'lstm.W_l0', 'lstm.b_l0']
    >>> params["head.W"] is head.params["W"] and grads["lstm.U_l0"] is lstm.grads["U_l0"]
    True
    """
    params, grads = {}, {}
    for name, module in modules.items():
        if sorted(module.params) != sorted(module.grads):
            raise ValueError(f"{name}: params and grads have different keys")
        for key in module.params:
            params[f"{name}.{key}"] = module.params[key]
            grads[f"{name}.{key}"] = module.grads[key]
    return params, grads


# ---- gradient clipping and optimizers ------------------------------------------------------------


def clip_grad_norm(grads: Union[dict[str, np.ndarray], Iterable[np.ndarray]],
                   max_norm: float) -> float:
    """Rescale the gradients in place so that their global norm is at most `max_norm`.

    The global norm is sqrt(sum over every array of sum(g**2)), computed in float64. If it exceeds
    `max_norm`, every array is multiplied by max_norm / norm, which keeps the update's direction
    (Pascanu et al., 2013); otherwise nothing changes. A NaN or infinite norm changes nothing
    either: the caller sees it in the returned value.

    Parameters
    ----------
    grads : dict of ndarray, or an iterable of ndarray
        Modified in place.
    max_norm : float
        Positive.

    Returns
    -------
    norm : float
        The global norm before clipping (worth logging: spikes show exploding gradients).

    Examples
    --------
    >>> import numpy as np
    >>> from fastlstm.train import clip_grad_norm
    >>> grads = {"W": np.array([3.0, 0.0]), "b": np.array([4.0])}
    >>> clip_grad_norm(grads, 1.0)
    5.0
    >>> grads["W"], grads["b"]
    (array([0.6, 0. ]), array([0.8]))
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm: expected a positive number, got {max_norm!r}")
    arrays = list(grads.values()) if isinstance(grads, dict) else list(grads)
    norm = float(np.sqrt(sum(np.sum(np.square(g, dtype=np.float64)) for g in arrays)))
    if norm > max_norm:  # False for NaN
        for g in arrays:
            g *= max_norm / norm
    return norm


class _Optimizer:
    """Holds a dict of parameters; ``step(grads)`` updates each in place from its key's grad."""

    # The names of the attributes that hold per-parameter state, as dicts keyed like params
    # (Adam's "m" and "v"); those in _lazy_buffers stay empty until the first step.
    _buffers: tuple[str, ...] = ()
    _lazy_buffers: tuple[str, ...] = ()

    def __init__(self, params: dict[str, np.ndarray], lr: float) -> None:
        if not isinstance(params, dict):
            raise TypeError(f"params: expected a dict of arrays, got {type(params).__name__}")
        for name, p in params.items():
            if not isinstance(p, np.ndarray) or p.dtype not in (np.float32, np.float64):
                raise TypeError(f"params[{name!r}]: expected a float32 or float64 ndarray")
            if not p.flags.writeable:
                raise ValueError(f"params[{name!r}]: is read-only; the optimizer updates in place")
        if not lr > 0:
            raise ValueError(f"lr: expected a positive number, got {lr!r}")
        self.params, self.lr = params, lr
        self.steps = 0

    def _checked(self, grads):
        if not isinstance(grads, dict) or sorted(grads) != sorted(self.params):
            keys = sorted(grads) if isinstance(grads, dict) else type(grads).__name__
            raise ValueError(
                f"grads: expected the keys of params {sorted(self.params)}, got {keys}")
        for name, p in self.params.items():
            if np.shape(grads[name]) != p.shape:
                raise ValueError(f"grads[{name!r}]: expected shape {p.shape}, "
                                 f"got {np.shape(grads[name])}")
        return {name: np.asarray(grads[name], p.dtype) for name, p in self.params.items()}

    def step(self, grads: dict[str, np.ndarray]) -> None:
        """Update every parameter in place from ``grads`` (a dict with the same keys and shapes)."""
        grads = self._checked(grads)
        self.steps += 1
        for name, p in self.params.items():
            self._update(name, p, grads[name])

    def state_dict(self) -> dict[str, np.ndarray]:
        """The optimizer's state, copied into a flat dict of arrays: what a checkpoint keeps.

        ``"steps"`` (a 0-d int64 array, the number of steps taken) and ``"{buffer}/{name}"`` for
        each per-parameter buffer: ``"m/..."`` and ``"v/..."`` (Adam), ``"velocity/..."`` (SGD
        with momentum, once it has stepped). The hyperparameters (lr, betas, ...) are not state:
        they are the optimizer's construction arguments.

        Examples
        --------
        >>> import numpy as np
        >>> from fastlstm.train import Adam
        >>> opt = Adam({"w": np.zeros(3)}, lr=0.1)
        >>> opt.step({"w": np.ones(3)})
        >>> sorted(opt.state_dict()), int(opt.state_dict()["steps"])
        (['m/w', 'steps', 'v/w'], 1)
        >>> again = Adam({"w": np.zeros(3)}, lr=0.1)
        >>> again.load_state_dict(opt.state_dict()); again.steps
        1
        """
        state = {"steps": np.array(self.steps, dtype=np.int64)}
        for buffer in self._buffers:
            for name, array in getattr(self, buffer).items():
                state[f"{buffer}/{name}"] = array.copy()
        return state

    def load_state_dict(self, state: dict[str, ArrayLike]) -> None:
        """Restore the state that :meth:`state_dict` returned (copied, in the params' dtypes).

        Raises ValueError, before changing anything, on a key that is not this optimizer's, a
        shape that is not its parameter's, or a buffer that covers only some parameters.
        """
        if not isinstance(state, dict) or "steps" not in state:
            raise ValueError(f"state: expected a dict with 'steps', as state_dict() returns, "
                             f"got {sorted(state) if isinstance(state, dict) else type(state)}")
        steps = np.asarray(state["steps"])
        if steps.shape != () or steps.dtype.kind not in "iu" or steps < 0:
            raise ValueError(f"state['steps']: expected an integer >= 0, got {steps!r}")
        loaded = {buffer: {} for buffer in self._buffers}
        for key, value in state.items():
            if key == "steps":
                continue
            buffer, _, name = key.partition("/")
            if buffer not in loaded or name not in self.params:
                expected = ", ".join(f"'{b}/<parameter>'" for b in self._buffers)
                raise ValueError(f"state: unexpected key {key!r} for {type(self).__name__}; "
                                 f"expected 'steps'{', ' + expected if expected else ''}")
            p, array = self.params[name], np.asarray(value)
            if array.shape != p.shape:
                raise ValueError(f"state[{key!r}]: expected shape {p.shape}, got {array.shape}")
            loaded[buffer][name] = array.astype(p.dtype, copy=True)
        for buffer, arrays in loaded.items():
            lazy_and_empty = buffer in self._lazy_buffers and not arrays
            if sorted(arrays) != sorted(self.params) and not lazy_and_empty:
                raise ValueError(f"state: {buffer!r} misses parameters "
                                 f"{sorted(set(self.params) - set(arrays))}")
        for buffer, arrays in loaded.items():
            setattr(self, buffer, arrays)
        self.steps = int(steps)


class SGD(_Optimizer):
    """Stochastic gradient descent, with optional (heavy-ball) momentum, as ``torch.optim.SGD``::

        v = momentum * v + g          (v = g at the first step; v = g throughout if momentum = 0)
        p = p - lr * v

    Parameters
    ----------
    params : dict of ndarray
        Updated in place by :meth:`step` (e.g. ``layer.params``, or from :func:`collect`).
    lr : float
        Learning rate.
    momentum : float
        In [0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> from fastlstm.train import SGD
    >>> params = {"w": np.array([1.0, 2.0])}
    >>> opt = SGD(params, lr=0.1, momentum=0.9)
    >>> opt.step({"w": np.array([1.0, -1.0])}); params["w"]
    array([0.9, 2.1])
    >>> opt.step({"w": np.array([1.0, -1.0])}); params["w"]          # v = 0.9 * v + g = 1.9
    array([0.71, 2.29])
    """

    _buffers = _lazy_buffers = ("velocity",)  # created by the first step

    def __init__(self, params: dict[str, np.ndarray], lr: float, momentum: float = 0.0) -> None:
        super().__init__(params, lr)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum: expected a number in [0, 1), got {momentum!r}")
        self.momentum = momentum
        self.velocity = {}

    def _update(self, name, p, g):
        if self.momentum:
            v = self.velocity.get(name)
            if v is None:
                v = self.velocity[name] = g.copy()
            else:
                v *= self.momentum
                v += g
            g = v
        p -= self.lr * g


class Adam(_Optimizer):
    """Adam (Kingma and Ba, 2015), as ``torch.optim.Adam``: per parameter, at step t,

        m = beta1 * m + (1 - beta1) * g              first-moment estimate
        v = beta2 * v + (1 - beta2) * g**2           second-moment estimate
        p = p - lr * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps)

    Parameters
    ----------
    params : dict of ndarray
        Updated in place by :meth:`step`.
    lr : float
        Learning rate: roughly the largest change of a parameter per step.
    betas : (float, float)
        beta1, beta2 in [0, 1).
    eps : float
        Keeps the division finite.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlstm.train import Adam
    >>> params = {"w": np.array([1.0, 1.0])}
    >>> opt = Adam(params, lr=0.1)
    >>> opt.step({"w": np.array([0.5, -2.0])})       # the first step moves each by lr * sign(g)
    >>> np.round(params["w"], 6)
    array([0.9, 1.1])
    """

    _buffers = ("m", "v")

    def __init__(self, params: dict[str, np.ndarray], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(params, lr)
        beta1, beta2 = betas
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"betas: expected two numbers in [0, 1), got {betas!r}")
        if not eps >= 0:
            raise ValueError(f"eps: expected a number >= 0, got {eps!r}")
        self.betas, self.eps = (beta1, beta2), eps
        self.m = {name: np.zeros_like(p) for name, p in params.items()}
        self.v = {name: np.zeros_like(p) for name, p in params.items()}

    def _update(self, name, p, g):
        (beta1, beta2), t = self.betas, self.steps
        m, v = self.m[name], self.v[name]
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * g * g
        denominator = np.sqrt(v / (1 - beta2**t))
        denominator += self.eps
        p -= (self.lr / (1 - beta1**t)) * m / denominator


# ---- checkpoints ---------------------------------------------------------------------------------

_CHECKPOINT_HEADER = "__fastlstm_checkpoint__"


def save_checkpoint(path: Union[str, os.PathLike], params: dict[str, np.ndarray],
                    optimizer: Optional[_Optimizer] = None, step: int = 0) -> None:
    """Write the parameters, the optimizer's state and the step count to the .npz file `path`.

    The file is written beside `path` and then renamed over it, so that a run killed while saving
    leaves the previous checkpoint whole. `path` is used as given (no ``.npz`` is appended).

    Parameters
    ----------
    path : str or os.PathLike
    params : dict of ndarray
        E.g. from :func:`collect`; saved under their keys.
    optimizer : SGD, Adam or None
        Its :meth:`~SGD.state_dict` is saved, with its class name, which loading checks.
    step : int
        The training step reached (where a resumed run starts counting).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from fastlstm.train import SGD, load_checkpoint, save_checkpoint
    >>> params = {"w": np.array([1.0, 2.0])}
    >>> opt = SGD(params, lr=0.1, momentum=0.9)
    >>> opt.step({"w": np.array([1.0, -1.0])})
    >>> path = os.path.join(tempfile.mkdtemp(), "run.npz")
    >>> save_checkpoint(path, params, opt, step=1)
    >>> fresh = {"w": np.zeros(2)}
    >>> load_checkpoint(path, fresh, SGD(fresh, lr=0.1, momentum=0.9)), fresh["w"]
    (1, array([0.9, 2.1]))
    """
    if not isinstance(step, (int, np.integer)) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step: expected an integer >= 0, got {step!r}")
    arrays = {f"params/{name}": np.asarray(p) for name, p in params.items()}
    header = {"step": int(step), "optimizer": None}
    if optimizer is not None:
        header["optimizer"] = type(optimizer).__name__
        arrays.update({f"optimizer/{key}": value for key, value in optimizer.state_dict().items()})
    partial = f"{os.fspath(path)}.partial"
    with open(partial, "wb") as file:  # a file object: np.savez appends no suffix
        np.savez(file, **{_CHECKPOINT_HEADER: np.array(json.dumps(header))}, **arrays)
    os.replace(partial, path)


def load_checkpoint(path: Union[str, os.PathLike], params: dict[str, np.ndarray],
                    optimizer: Optional[_Optimizer] = None) -> int:
    """Restore what :func:`save_checkpoint` wrote into `params` (in place) and `optimizer`.

    Parameters
    ----------
    path : str or os.PathLike
    params : dict of ndarray
        Must have the saved keys and shapes; their values are overwritten in place, so the layers
        they belong to (see :func:`collect`) take the saved values.
    optimizer : SGD, Adam or None
        Of the saved optimizer's class; takes the saved state. None: the state is not read.

    Returns
    -------
    step : int
        The step count that was saved.

    Nothing is changed unless the whole checkpoint matches (ValueError otherwise). See
    :func:`save_checkpoint` for an example.
    """
    with np.load(path, allow_pickle=False) as data:
        if _CHECKPOINT_HEADER not in data.files:
            raise ValueError(f"path: {path} was not written by fastlstm.train.save_checkpoint")
        header = json.loads(str(data[_CHECKPOINT_HEADER]))
        saved = {key.partition("/")[2]: data[key] for key in data.files if key.startswith("params/")}
        state = {key.partition("/")[2]: data[key] for key in data.files
                 if key.startswith("optimizer/")}
    if sorted(saved) != sorted(params):
        raise ValueError(f"params: expected the saved keys {sorted(saved)}, got {sorted(params)}")
    for name, p in params.items():
        if saved[name].shape != np.shape(p):
            raise ValueError(f"params[{name!r}]: expected the saved shape {saved[name].shape}, "
                             f"got {np.shape(p)}")
    if optimizer is not None:
        if header["optimizer"] != type(optimizer).__name__:
            raise ValueError(f"optimizer: {path} holds the state of {header['optimizer']}, "
                             f"not of {type(optimizer).__name__}")
        optimizer.load_state_dict(state)
    for name, p in params.items():
        p[...] = saved[name]
    return header["step"]
