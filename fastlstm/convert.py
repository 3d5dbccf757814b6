"""Weights from and to other frameworks: PyTorch, Keras and ONNX.

The public entry points are the layers' own: ``LSTM.from_torch``, ``to_torch_state_dict``,
``to_torch``, ``LSTM.from_keras``, ``to_onnx`` and ``LSTM.from_onnx`` (``GRU``, ``RNN`` and the
cells' likewise); they call the functions here with their class or themselves. What this module
does: map names, shapes and gate orders, and refuse what fastlstm does not compute. What it does
not do: run anything (onnxruntime is never imported; ``onnx`` only by the ONNX functions).

fastlstm's layout (see :mod:`fastlstm.layers`): W (I, G), U (H, G), b (G,) or, for the GRU, (2, G)
with the input-side and recurrent-side biases; G = gates * H, gate blocks along the last axis in the
order i, f, g, o (LSTM), r, z, n (GRU). A sequence layer's parameters are named ``W_l{k}{_reverse}``
..., a cell's ``W``, ``U``, ``b``; torch names the same slots ``weight_ih_l{k}{_reverse}`` ... and
``weight_ih`` ...: the part after the letter (``_l0_reverse``, or nothing) is the same in both.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._validate import FLOAT_DTYPES


class Kind(NamedTuple):
    """What the converters need to know of a cell kind besides its number of gates."""

    onnx_op: str  # the ONNX operator
    keras_gates: tuple  # for each of Keras' gate blocks in its order, the index of ours
    onnx_gates: tuple  # for each of ONNX's gate blocks in its order, the index of ours
    onnx_activations: tuple  # ONNX's default activations, per direction


# fastlstm's gates: LSTM i, f, g, o; GRU r, z, n. Keras: LSTM i, f, c, o; GRU z, r, h.
# ONNX: LSTM i, o, f, c; GRU z, r, h.
KINDS = {
    "lstm": Kind("LSTM", (0, 1, 2, 3), (0, 3, 1, 2), ("sigmoid", "tanh", "tanh")),
    "gru": Kind("GRU", (1, 0, 2), (1, 0, 2), ("sigmoid", "tanh")),
    "rnn": Kind("RNN", (0,), (0,), ("tanh",)),
}


def reorder_gates(a, order):
    """`a` with its gate blocks along the last axis taken in `order` (block j of the result is
    block order[j] of `a`); ``reorder_gates(a, np.argsort(order))`` undoes it."""
    blocks = np.split(np.asarray(a), len(order), axis=-1)
    return np.concatenate([blocks[j] for j in order], axis=-1)


# ---- helpers shared by every converter -------------------------------------------------------------


def _to_numpy(value):
    """A torch tensor (without importing torch) or anything array-like, as a NumPy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _weights_dtype(array, config):
    """The layer dtype of weights converted from another framework: config's, else the weights'."""
    if "dtype" in config:
        return config.pop("dtype")
    return array.dtype if array.dtype in FLOAT_DTYPES else np.dtype(np.float32)


def _merge_config(inferred, config, source):
    """Constructor arguments: the sizes `inferred` from the weights, which `config` may repeat but
    not contradict, and the rest of `config` (batch_first, dtype, backend, ...)."""
    for key, value in inferred.items():
        if key in config and config[key] != value:
            raise ValueError(f"{key}: {source} has {key}={value!r}, but {config[key]!r} was given")
    return {**config, **inferred}


def _slots(layer):
    """The suffixes that end the names of a layer's parameters, one per (layer, direction): ``_l0``,
    ``_l0_reverse``, ... for a sequence layer, ``""`` for a cell."""
    if not layer._stacked:
        return [""]
    return [f"_l{k}{s}" for k in range(layer.num_layers) for s in layer._suffixes()]


def _bias_from_pair(layer, input_side, recurrent_side):
    """Our b from an input-side and a recurrent-side bias (torch's and ONNX's): their sum, or both
    as rows for the GRU, whose reset gate multiplies the recurrent one."""
    pair = np.asarray(input_side, layer.dtype), np.asarray(recurrent_side, layer.dtype)
    return np.stack(pair) if layer._bias_rows else pair[0] + pair[1]


def _bias_to_pair(layer, b):
    """(input-side, recurrent-side) biases from our b: all of it on the input side, or the GRU's
    two rows."""
    return (b[0].copy(), b[1].copy()) if layer._bias_rows else (b.copy(), np.zeros_like(b))


# ---- PyTorch ---------------------------------------------------------------------------------------


def _check_torch_module(module):
    """A torch module's options that change what it computes must be those fastlstm computes."""
    if getattr(module, "proj_size", 0):
        raise ValueError("module_or_state_dict: LSTM with proj_size is not supported")
    nonlinearity = getattr(module, "nonlinearity", "tanh")
    if nonlinearity != "tanh":
        raise ValueError(f"module_or_state_dict: nonlinearity {nonlinearity!r}; "
                         "fastlstm computes tanh")


def from_torch(cls, module_or_state_dict, config):
    """A `cls` layer or cell with the weights of a torch module or of its ``state_dict()``.

    Sizes (and a sequence layer's num_layers and bidirectional) come from the weights' names and
    shapes; a sequence layer's batch_first from the module (if given); dtype from the weights
    (float32 unless they are float64). ``config`` may set the other constructor arguments.
    """
    source = module_or_state_dict
    if hasattr(source, "state_dict"):
        _check_torch_module(source)
        if cls._stacked and hasattr(source, "batch_first"):
            config.setdefault("batch_first", bool(source.batch_first))
        source = source.state_dict()
    sd = {k: _to_numpy(v) for k, v in dict(source).items()}
    if any(k.startswith("weight_hr") for k in sd):
        raise ValueError(
            "module_or_state_dict: LSTM with proj_size (weight_hr_l*) is not supported")
    first = "_l0" if cls._stacked else ""
    weight_ih, weight_hh = f"weight_ih{first}", f"weight_hh{first}"
    if weight_ih not in sd or weight_hh not in sd:
        raise ValueError(
            f"module_or_state_dict: expected torch weights named {weight_ih}, {weight_hh}, ...; "
            f"got keys {sorted(sd)}"
        )
    G, I = sd[weight_ih].shape
    H = sd[weight_hh].shape[1]
    if G != cls._gates * H:
        raise ValueError(
            f"module_or_state_dict: {weight_ih} has {G} rows, a torch {cls._torch_class} "
            f"has {cls._gates}*H = {cls._gates * H} (H = {weight_hh}.shape[1])"
        )
    inferred = dict(input_size=int(I), hidden_size=int(H))
    if cls._stacked:
        num_layers = 0
        while f"weight_ih_l{num_layers}" in sd:
            num_layers += 1
        inferred.update(num_layers=num_layers, bidirectional="weight_ih_l0_reverse" in sd)
    dtype = _weights_dtype(sd[weight_ih], config)
    layer = cls(**_merge_config(inferred, config, "the torch module"), dtype=dtype)
    for slot in _slots(layer):
        def get(name):
            key = f"{name}{slot}"
            if key not in sd:
                raise ValueError(f"module_or_state_dict: {key} is missing")
            return sd[key]
        layer._set_param(f"W{slot}", get("weight_ih").T)
        layer._set_param(f"U{slot}", get("weight_hh").T)
        if f"bias_ih{slot}" in sd:
            layer._set_param(f"b{slot}", _bias_from_pair(layer, get("bias_ih"), get("bias_hh")))
        else:
            layer.params[f"b{slot}"][...] = 0
    return layer


def to_torch_state_dict(layer):
    """A layer's or cell's parameters as NumPy arrays named and shaped as its torch twin's
    state_dict: the whole bias in bias_ih and zeros in bias_hh (torch only uses their sum), but the
    GRU's two biases each in its own."""
    sd = {}
    for slot in _slots(layer):
        sd[f"weight_ih{slot}"] = np.ascontiguousarray(layer.params[f"W{slot}"].T)
        sd[f"weight_hh{slot}"] = np.ascontiguousarray(layer.params[f"U{slot}"].T)
        sd[f"bias_ih{slot}"], sd[f"bias_hh{slot}"] = _bias_to_pair(layer, layer.params[f"b{slot}"])
    return sd


def to_torch(layer):
    """The torch module of a sequence layer's class, configuration and weights (imports torch)."""
    import torch

    module = getattr(torch.nn, layer._torch_class)(
        layer.input_size, layer.hidden_size, num_layers=layer.num_layers,
        bidirectional=layer.bidirectional, batch_first=layer.batch_first,
        dtype=getattr(torch, layer.dtype.name),
    )
    sd = to_torch_state_dict(layer)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    return module


# ---- Keras -----------------------------------------------------------------------------------------


def from_keras(cls, layer_or_weights, config):
    """A one-layer `cls` sequence layer with the weights of a Keras layer (see ``LSTM.from_keras``)."""
    source = layer_or_weights
    if hasattr(source, "get_weights"):
        _check_keras_config(source, cls._gates > 1, bool(cls._bias_rows))
        source = source.get_weights()
    arrays = [np.asarray(a) for a in source]
    if len(arrays) not in (3, 6):
        raise ValueError(
            "layer_or_weights: expected [kernel (I, G), recurrent_kernel (H, G), bias (G,)] "
            f"or the 6 arrays of a Bidirectional layer, got {len(arrays)} arrays"
        )
    kernel, recurrent = arrays[0], arrays[1]
    if kernel.ndim != 2 or recurrent.ndim != 2:
        raise ValueError("layer_or_weights: kernel and recurrent_kernel must be 2-d")
    I, H = kernel.shape[0], recurrent.shape[0]
    G = cls._gates * H
    for i, (name, shape) in enumerate([("kernel", (I, G)), ("recurrent_kernel", (H, G)),
                                       ("bias", (*cls._bias_rows, G))] * (len(arrays) // 3)):
        if arrays[i].shape != shape:
            raise ValueError(f"layer_or_weights: {name} expected shape {shape}, "
                             f"got {arrays[i].shape}")
    config.setdefault("batch_first", True)
    inferred = dict(input_size=int(I), hidden_size=int(H), num_layers=1,
                    bidirectional=len(arrays) == 6)
    dtype = _weights_dtype(kernel, config)
    layer = cls(**_merge_config(inferred, config, "the Keras layer"), dtype=dtype)
    ours = np.argsort(KINDS[cls._kind].keras_gates)
    for s, start in zip(layer._suffixes(), (0, 3)):
        for p, a in zip("WUb", arrays[start : start + 3]):
            layer._set_param(f"{p}_l0{s}", reorder_gates(a, ours))
    return layer


def _check_keras_config(layer, gated, reset_after):
    """A Keras layer's activations (and a GRU's reset_after) must be those fastlstm computes."""
    if not hasattr(layer, "get_config"):
        return
    config = layer.get_config()
    if "layer" in config:  # Bidirectional: the wrapped layer's config, possibly serialized
        if config.get("merge_mode", "concat") != "concat":
            raise ValueError(f"layer_or_weights: merge_mode {config['merge_mode']!r}: only 'concat'")
        inner = config["layer"]
        config = inner.get("config", inner)
    activations = {"activation": "tanh"}
    if gated:
        activations["recurrent_activation"] = "sigmoid"
    for key, expected in activations.items():
        value = config.get(key, expected)
        if value != expected:
            raise ValueError(f"layer_or_weights: {key} is {value!r}; fastlstm computes {expected!r}")
    if config.get("go_backwards", False):
        raise ValueError("layer_or_weights: go_backwards=True is not supported")
    if reset_after and not config.get("reset_after", True):
        raise ValueError("layer_or_weights: a GRU with reset_after=False is not supported "
                         "(fastlstm computes PyTorch's GRU, Keras' reset_after=True)")
