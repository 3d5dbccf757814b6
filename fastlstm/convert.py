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

from typing import NamedTuple

import numpy as np

from ._kinds import bias_shape
from ._validate import FLOAT_DTYPES


class Foreign(NamedTuple):
    """How other formats lay out a cell kind (fastlstm._kinds): what the converters need to know of
    it besides its gates and bias rows."""

    onnx_op: str  # the ONNX operator
    keras_gates: tuple  # for each of Keras' gate blocks in its order, the index of ours
    onnx_gates: tuple  # for each of ONNX's gate blocks in its order, the index of ours
    onnx_activations: tuple  # ONNX's default activations, per direction


# fastlstm's gates: LSTM i, f, g, o; GRU r, z, n. Keras: LSTM i, f, c, o; GRU z, r, h.
# ONNX: LSTM i, o, f, c; GRU z, r, h.
FOREIGN = {
    "lstm": Foreign("LSTM", (0, 1, 2, 3), (0, 3, 1, 2), ("sigmoid", "tanh", "tanh")),
    "gru": Foreign("GRU", (1, 0, 2), (1, 0, 2), ("sigmoid", "tanh")),
    "rnn": Foreign("RNN", (0,), (0,), ("tanh",)),
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
    return np.stack(pair) if layer._kind.bias_rows > 1 else pair[0] + pair[1]


def _bias_to_pair(layer, b):
    """(input-side, recurrent-side) biases from our b: all of it on the input side, or the GRU's
    two rows."""
    return (b[0].copy(), b[1].copy()) if layer._kind.bias_rows > 1 else (b.copy(), np.zeros_like(b))


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
    if G != cls._kind.gates * H:
        raise ValueError(
            f"module_or_state_dict: {weight_ih} has {G} rows, a torch {cls._torch_class} "
            f"has {cls._kind.gates}*H = {cls._kind.gates * H} (H = {weight_hh}.shape[1])"
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
        _check_keras_config(source, cls._kind.gates > 1, cls._kind.bias_rows > 1)
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
    G = cls._kind.gates * H
    for i, (name, shape) in enumerate([("kernel", (I, G)), ("recurrent_kernel", (H, G)),
                                       ("bias", bias_shape(cls._kind, H))] * (len(arrays) // 3)):
        if arrays[i].shape != shape:
            raise ValueError(f"layer_or_weights: {name} expected shape {shape}, "
                             f"got {arrays[i].shape}")
    config.setdefault("batch_first", True)
    inferred = dict(input_size=int(I), hidden_size=int(H), num_layers=1,
                    bidirectional=len(arrays) == 6)
    dtype = _weights_dtype(kernel, config)
    layer = cls(**_merge_config(inferred, config, "the Keras layer"), dtype=dtype)
    ours = np.argsort(FOREIGN[cls._kind.name].keras_gates)
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


# ---- ONNX ------------------------------------------------------------------------------------------
#
# An ONNX LSTM / GRU / RNN node holds one layer, both directions: W (D, G, I_k), R (D, G, H) and
# B (D, 2G) = [Wb | Rb], gate blocks along G in ONNX's order (Foreign.onnx_gates); in the default
# layout 0 its input X is (T, B, I_k), its outputs Y (T, D, B, H) and Y_h, Y_c (D, B, H), and its
# optional inputs sequence_lens (B,) int32 and initial_h, initial_c (D, B, H). A stacked layer is a
# chain of nodes with Y rearranged to (T, B, D*H) between them (what torch.onnx.export writes:
# Transpose, then Reshape or Squeeze).

ONNX_MIN_OPSET = 14  # the recurrent operators' last revision (layout); Reshape's allowzero
# Operators that only rearrange a tensor's elements: what may stand between the model's input, the
# recurrent nodes and the model's first output. from_onnx runs them (in NumPy) on a probe to check
# that they hand each node exactly what fastlstm's layer would.
REARRANGING_OPS = ("Identity", "Transpose", "Reshape", "Squeeze", "Unsqueeze")
# Operators through which an initial state may be cut out of a bigger one (torch.onnx.export:
# Slice of its h_0, or of a ConstantOfShape of zeros when no state is given).
STATE_OPS = REARRANGING_OPS + ("Slice", "Split", "Gather", "Expand", "Cast")
# attributes that change what a node computes in ways fastlstm does not: what each does
REFUSED_ATTRIBUTES = {"clip": "clips its cell input", "activation_alpha": "has activation parameters",
                      "activation_beta": "has activation parameters"}
ONNX_ATTRIBUTES = {  # the attributes from_onnx reads; others are refused
    "lstm": {"hidden_size", "direction", "layout", "activations", "input_forget", "clip",
             "activation_alpha", "activation_beta"},
    "gru": {"hidden_size", "direction", "layout", "activations", "linear_before_reset", "clip",
            "activation_alpha", "activation_beta"},
    "rnn": {"hidden_size", "direction", "layout", "activations", "clip", "activation_alpha",
            "activation_beta"},
}


def _import_onnx():
    try:
        import onnx
    except ImportError as error:
        raise ImportError("ONNX conversion needs the onnx package: pip install 'fastlstm[onnx]'",
                          name="onnx") from error
    return onnx


def to_onnx(layer, path=None, opset=17, state=False, lengths=False):
    """Write a sequence layer as an ONNX inference model (see ``LSTM.to_onnx``); return it.

    Examples
    --------
    >>> import numpy as np
    >>> import fastlstm
    >>> gru = fastlstm.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True, seed=0)
    >>> model = gru.to_onnx(None, lengths=True)              # or gru.to_onnx("gru.onnx")
    >>> [n.op_type for n in model.graph.node if n.op_type == "GRU"]
    ['GRU', 'GRU']
    >>> [i.name for i in model.graph.input], [o.name for o in model.graph.output]
    (['x', 'lengths'], ['out', 'h_n'])

    onnxruntime, if installed, runs it: ``onnxruntime.InferenceSession(model.SerializeToString())
    .run(None, {"x": x, "lengths": lengths})`` gives ``gru(x, lengths=lengths)``.
    """
    onnx = _import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    latest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not ONNX_MIN_OPSET <= opset <= latest:
        raise ValueError(f"opset: expected an integer in [{ONNX_MIN_OPSET}, {latest}] (the onnx "
                         f"package's newest), got {opset!r}")
    foreign = FOREIGN[layer._kind.name]
    L, D, H, I = layer.num_layers, layer.num_directions, layer.hidden_size, layer.input_size
    element = helper.np_dtype_to_tensor_dtype(layer.dtype)
    state_names = ["h", "c"][: len(layer._state_names)]
    time_major = ["B", "T"] if layer.batch_first else ["T", "B"]
    inputs = [helper.make_tensor_value_info("x", element, [*time_major, I])]
    if lengths:
        inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT32, ["B"]))
    if state:
        inputs += [helper.make_tensor_value_info(f"{s}_0", element, [L * D, "B", H])
                   for s in state_names]
    outputs = [helper.make_tensor_value_info("out", element, [*time_major, D * H])]
    outputs += [helper.make_tensor_value_info(f"{s}_n", element, [L * D, "B", H])
                for s in state_names]
    constants = [numpy_helper.from_array(np.array([0, 0, -1], np.int64), "shape_T_B_DH")]
    nodes = []
    X = "x"
    if layer.batch_first:  # onnxruntime runs no recurrent node in layout 1 (batch-major)
        nodes.append(helper.make_node("Transpose", ["x"], ["x_time_major"], perm=[1, 0, 2]))
        X = "x_time_major"
    if state and L > 1:  # layer k's initial states: rows k*D .. k*D+D-1
        constants.append(numpy_helper.from_array(np.full(L, D, np.int64), "state_rows"))
        for s in state_names:
            nodes.append(helper.make_node("Split", [f"{s}_0", "state_rows"],
                                          [f"{s}_0_l{k}" for k in range(L)], axis=0))
    finals = {s: [] for s in state_names}
    for k in range(L):
        W, R, Bias = [], [], []
        for slot in _slots(layer)[k * D : (k + 1) * D]:
            W.append(reorder_gates(layer.params[f"W{slot}"], foreign.onnx_gates).T)
            R.append(reorder_gates(layer.params[f"U{slot}"], foreign.onnx_gates).T)
            Bias.append(np.concatenate([reorder_gates(b, foreign.onnx_gates) for b in
                                        _bias_to_pair(layer, layer.params[f"b{slot}"])]))
        for name, arrays in (("W", W), ("R", R), ("B", Bias)):
            constants.append(numpy_helper.from_array(np.ascontiguousarray(arrays), f"{name}_l{k}"))
        initial = [(f"{s}_0_l{k}" if L > 1 else f"{s}_0") if state else "" for s in state_names]
        node_inputs = [X, f"W_l{k}", f"R_l{k}", f"B_l{k}", "lengths" if lengths else "", *initial]
        attributes = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
        if layer._kind.name == "gru":
            attributes["linear_before_reset"] = 1  # torch's and fastlstm's GRU
        ys = [f"Y_l{k}"] + [f"{s}_n_l{k}" for s in state_names]
        nodes.append(helper.make_node(foreign.onnx_op, node_inputs, ys, name=f"{foreign.onnx_op}_l{k}",
                                      **attributes))
        for s in state_names:
            finals[s].append(f"{s}_n_l{k}")
        # Y (T, D, B, H) -> (T, B, D, H) -> (T, B, D*H): the next layer's input, [fwd | reverse]
        nodes.append(helper.make_node("Transpose", [f"Y_l{k}"], [f"Y_l{k}_TBDH"], perm=[0, 2, 1, 3]))
        X = f"out_l{k}" if k < L - 1 or layer.batch_first else "out"
        nodes.append(helper.make_node("Reshape", [f"Y_l{k}_TBDH", "shape_T_B_DH"], [X]))
    if layer.batch_first:
        nodes.append(helper.make_node("Transpose", [X], ["out"], perm=[1, 0, 2]))
    for s, names in finals.items():
        nodes.append(helper.make_node("Concat", names, [f"{s}_n"], axis=0))
    graph = helper.make_graph(nodes, f"fastlstm.{type(layer).__name__}", inputs, outputs,
                              constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="fastlstm")
    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        onnx.save(model, path)
    return model


class _OnnxGraph:
    """A model's graph as from_onnx reads it: who makes each tensor, and the constant ones."""

    def __init__(self, model):
        from onnx import helper, numpy_helper

        self.graph = model.graph
        self.helper, self.numpy_helper = helper, numpy_helper
        self.inputs = {i.name: i for i in model.graph.input}
        self.producer = {name: node for node in model.graph.node for name in node.output}
        self.initializers = {t.name: t for t in model.graph.initializer}

    def attributes(self, node):
        return {a.name: self.helper.get_attribute_value(a) for a in node.attribute}

    def constant(self, name, what):
        """The value of tensor `name` as an array, if the model holds it as a constant (an
        initializer, also one listed among the inputs as older exporters do, whose value is what
        runs unless a caller overrides it; or a Constant node); else a ValueError naming `what`."""
        if name in self.initializers:
            return self.numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            (key, value), = self.attributes(node).items()
            if key == "value":
                return self.numpy_helper.to_array(value)
            if key in ("value_int", "value_ints", "value_float", "value_floats"):
                return np.array(value)
        raise ValueError(f"path_or_model: {what} ({name!r}) is computed at run time; fastlstm "
                         "reads only constant weights and shapes")

    def trace(self, name, ops):
        """The operators of `ops` that make tensor `name` from an earlier one, their first input
        each: returns that earlier tensor's name and the operators in the order they run."""
        chain = []
        node = self.producer.get(name)
        while node is not None and node.op_type in ops:
            chain.append(node)
            name = node.input[0]
            node = self.producer.get(name)
        return name, chain[::-1]

    def rearrange(self, array, nodes):
        """`array` through the rearranging operators `nodes`, in NumPy."""
        for node in nodes:
            attributes = self.attributes(node)
            axes = attributes.get("axes")
            if node.op_type in ("Squeeze", "Unsqueeze") and len(node.input) > 1 and node.input[1]:
                axes = self.constant(node.input[1], f"the axes of {node.op_type} {node.name!r}")
            if node.op_type == "Transpose":
                array = np.transpose(array, attributes.get("perm"))
            elif node.op_type == "Reshape":
                shape = self.constant(node.input[1], f"the shape of Reshape {node.name!r}")
                if not attributes.get("allowzero", 0):  # 0 copies the input's size
                    shape = [array.shape[i] if n == 0 else n for i, n in enumerate(shape)]
                array = np.reshape(array, shape)
            elif node.op_type == "Squeeze":
                array = np.squeeze(array, None if axes is None else tuple(np.ravel(axes)))
            elif node.op_type == "Unsqueeze":
                array = np.expand_dims(array, tuple(int(a) % (array.ndim + len(np.ravel(axes)))
                                                    for a in np.ravel(axes)))
        return array


def _time_major(array, layout):
    """A node's (T, B, ...) or, in layout 1, (B, T, ...) tensor as (T, B, ...)."""
    return np.swapaxes(array, 0, 1) if layout else array


def _y_probe(T, B, D, H, layout):
    """The probe for a node's output Y, and what the next node's X must then be (time-major):
    the labels 0, 1, ... of (T, B, D*H) placed where ONNX puts them in Y (T, D, B, H)."""
    expected = np.arange(T * B * D * H).reshape(T, B, D * H)
    y = expected.reshape(T, B, D, H).transpose(0, 2, 1, 3)
    return (y.transpose(2, 0, 1, 3) if layout else y), expected


def _check_node(graph, node, foreign, name):
    """A recurrent node's attributes and optional inputs must be what fastlstm computes; returns
    (hidden_size, D, layout)."""
    attributes = graph.attributes(node)
    where = f"path_or_model: {node.op_type} node {node.name!r}"
    unknown = set(attributes) - ONNX_ATTRIBUTES[name]
    if unknown:
        raise ValueError(f"{where} has attributes {sorted(unknown)}, which fastlstm does not read")
    for refused, why in REFUSED_ATTRIBUTES.items():
        if refused in attributes:
            raise ValueError(f"{where} {why} ({refused}); fastlstm does not")
    if attributes.get("input_forget", 0):
        raise ValueError(f"{where} couples the input and forget gates (input_forget=1); "
                         "fastlstm does not")
    if name == "gru" and attributes.get("linear_before_reset", 0) != 1:
        raise ValueError(f"{where} has linear_before_reset="
                         f"{attributes.get('linear_before_reset', 0)}; fastlstm computes "
                         "PyTorch's GRU, linear_before_reset=1")
    direction = attributes.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in ("forward", "bidirectional"):
        raise ValueError(f"{where} has direction {direction!r}; fastlstm reads 'forward' or "
                         "'bidirectional'")
    D = 2 if direction == "bidirectional" else 1
    activations = [a.decode() if isinstance(a, bytes) else a
                   for a in attributes.get("activations", foreign.onnx_activations * D)]
    if [a.lower() for a in activations] != [a.lower() for a in foreign.onnx_activations * D]:
        raise ValueError(f"{where} has activations {activations}; fastlstm computes "
                         f"{list(foreign.onnx_activations * D)}")
    if name == "lstm" and len(node.input) > 7 and node.input[7]:
        raise ValueError(f"{where} has peepholes (input P); fastlstm's LSTM has none")
    if "hidden_size" not in attributes:
        raise ValueError(f"{where} has no hidden_size")
    return int(attributes["hidden_size"]), D, int(attributes.get("layout", 0))


def _check_runtime_inputs(graph, node):
    """sequence_lens must come from the model's inputs, and the initial states from its inputs
    or from zeros: a constant of them would be part of the model that the layer does not hold."""
    where = f"path_or_model: {node.op_type} node {node.name!r}"
    for index, name in enumerate(node.input[4:7], 4):
        if not name:
            continue
        origin, _ = graph.trace(name, STATE_OPS)
        if origin in graph.inputs and origin not in graph.initializers:
            continue
        what = "sequence_lens" if index == 4 else "its initial state"
        if index > 4:
            producer = graph.producer.get(origin)
            if producer is not None and producer.op_type == "ConstantOfShape":
                value = graph.attributes(producer).get("value")
                if value is None or not graph.numpy_helper.to_array(value).any():
                    continue
            elif not graph.constant(origin, what).any():
                continue
        raise ValueError(f"{where}: {what} ({name!r}) is fixed inside the model; fastlstm takes "
                         "it at run time (lengths, state), so it would be lost")


def from_onnx(cls, path_or_model, config):
    """A `cls` sequence layer read from the chain of recurrent nodes of an ONNX model (see
    ``LSTM.from_onnx``).

    Examples
    --------
    >>> import numpy as np
    >>> import fastlstm
    >>> lstm = fastlstm.LSTM(3, 4, num_layers=2, seed=0)
    >>> back = fastlstm.LSTM.from_onnx(lstm.to_onnx(None))   # or from_onnx("lstm.onnx")
    >>> back
    LSTM(3, 4, num_layers=2, bidirectional=False, batch_first=False, dtype='float32', unit_forget_bias=False)
    >>> x = np.ones((5, 2, 3), np.float32)
    >>> bool(np.allclose(back(x)[0], lstm(x)[0], atol=1e-6))
    True
    """
    onnx = _import_onnx()
    model = path_or_model if isinstance(path_or_model, onnx.ModelProto) else onnx.load(path_or_model)
    graph = _OnnxGraph(model)
    foreign = FOREIGN[cls._kind.name]
    chain, glues, x_name = _find_chain(graph, foreign, cls.__name__)
    checked = [_check_node(graph, node, foreign, cls._kind.name) for node in chain]
    H, D = checked[0][:2]
    if any(c[:2] != (H, D) for c in checked):
        raise ValueError("path_or_model: the nodes differ in hidden_size or direction: "
                         f"{[c[:2] for c in checked]}; fastlstm's layers share them")
    weights = [_node_weights(graph, node, cls._kind.gates * H, H, D) for node in chain]
    I = int(weights[0][0].shape[2])
    layouts = _probe_layouts(graph, chain, glues, x_name, [c[2] for c in checked], I, H, D)

    inferred = dict(input_size=I, hidden_size=H, num_layers=len(chain), bidirectional=D == 2)
    if len(layouts) == 1:  # else T = B = 1 in the model, and either layout reads it
        inferred["batch_first"] = layouts[0]
    dtype = _weights_dtype(weights[0][0], config)
    layer = cls(**_merge_config(inferred, config, "the ONNX model"), dtype=dtype)
    ours = np.argsort(foreign.onnx_gates)
    G = cls._kind.gates * H
    for k, (W, R, Bias) in enumerate(weights):
        for d, slot in enumerate(_slots(layer)[k * D : (k + 1) * D]):
            layer._set_param(f"W{slot}", reorder_gates(W[d].T, ours))
            layer._set_param(f"U{slot}", reorder_gates(R[d].T, ours))
            layer._set_param(f"b{slot}", _bias_from_pair(layer, reorder_gates(Bias[d, :G], ours),
                                                         reorder_gates(Bias[d, G:], ours)))
    return layer


def _find_chain(graph, foreign, class_name):
    """The model's `foreign.onnx_op` nodes from its input to its first output: (the nodes in order,
    the rearranging operators before each and after the last, the name of the model input)."""
    found = [n for n in graph.graph.node if n.op_type in ("LSTM", "GRU", "RNN")]
    if not found:
        raise ValueError("path_or_model: the model has no LSTM, GRU or RNN node")
    others = sorted({n.op_type for n in found} - {foreign.onnx_op})
    if others:
        raise ValueError(f"path_or_model: the model has {', '.join(others)} nodes; "
                         f"fastlstm.{class_name}.from_onnx reads {foreign.onnx_op} nodes only")
    output = graph.graph.output[0].name
    name, after = graph.trace(output, REARRANGING_OPS)
    chain, glues = [], [after]
    while name in graph.producer and graph.producer[name].op_type == foreign.onnx_op:
        node = graph.producer[name]
        if name != node.output[0]:
            raise ValueError(f"path_or_model: the model's first output comes from output {name!r} "
                             f"of {node.op_type} node {node.name!r}, not from its Y")
        chain.insert(0, node)
        name, before = graph.trace(node.input[0], REARRANGING_OPS)
        glues.insert(0, before)
    if not chain:
        maker = graph.producer.get(name)
        raise ValueError(f"path_or_model: the model's first output {output!r} is made by "
                         f"{maker.op_type if maker else 'no node'}, not by a chain of "
                         f"{foreign.onnx_op} nodes and {', '.join(REARRANGING_OPS)}")
    if name not in graph.inputs:
        maker = graph.producer.get(name)
        made_by = maker.op_type if maker else f"no node (it is the constant {name!r})"
        raise ValueError(f"path_or_model: the first {foreign.onnx_op} node's input is made by "
                         f"{made_by}, which fastlstm does not compute")
    if len(chain) != len(found):
        raise ValueError(f"path_or_model: the model has {len(found)} {foreign.onnx_op} nodes, but its "
                         f"first output comes from a chain of {len(chain)}; fastlstm reads one chain")
    return chain, glues, name


def _node_weights(graph, node, G, H, D):
    """A node's constant W (D, G, I_k), R (D, G, H) and B (D, 2G) (zeros if it has none), after
    the check of its run-time inputs."""
    _check_runtime_inputs(graph, node)
    W = graph.constant(node.input[1], f"W of {node.name!r}")
    R = graph.constant(node.input[2], f"R of {node.name!r}")
    B = (graph.constant(node.input[3], f"B of {node.name!r}")
         if len(node.input) > 3 and node.input[3] else np.zeros((D, 2 * G), W.dtype))
    for label, array, shape in (("W", W, (D, G, W.shape[-1])), ("R", R, (D, G, H)),
                                ("B", B, (D, 2 * G))):
        if array.shape != shape:
            raise ValueError(f"path_or_model: {label} of node {node.name!r} has shape "
                             f"{array.shape}, expected {shape}")
    return W, R, B


def _probe_layouts(graph, chain, glues, x_name, layouts, I, H, D):
    """Run the rearranging operators on labelled probes: the model's input, then each node's Y.
    Each node must get exactly the (T, B, I_k) that fastlstm's stacking gives it, and the first
    output must be the last Y as (T, B, D*H) in the input's layout. Returns the possible values of
    batch_first: [False], [True], or both when the model fixes T = B = 1."""
    # Sizes the model fixes are kept (a Reshape may spell them out); free ones get distinct values,
    # but for the features of an input of unknown shape, taken as (T, B, I) or (B, T, I).
    input_type = graph.inputs[x_name].type.tensor_type
    sizes = ([d.dim_value or None for d in input_type.shape.dim] if input_type.HasField("shape")
             else [None, None, I])
    spare = iter(n for n in range(2, 100) if n not in sizes)
    dims = [n or next(spare) for n in sizes]
    x = np.arange(np.prod(dims, dtype=np.int64)).reshape(dims)
    first = _time_major(graph.rearrange(x, glues[0]), layouts[0])
    if first.ndim != 3 or first.shape[2] != I:
        raise ValueError(f"path_or_model: the first node's input has shape {first.shape}, "
                         f"expected (T, B, {I})")
    batch_first = [flag for flag, layout in ((False, x), (True, np.swapaxes(x, 0, 1)))
                   if np.array_equal(layout, first)]
    if not batch_first:
        raise ValueError("path_or_model: the operators before the first node do more than make the "
                         "input time-major; fastlstm reads (T, B, I) or (B, T, I)")
    T, B = first.shape[:2]
    for k, node in enumerate(chain):
        y, expected = _y_probe(T, B, D, H, layouts[k])
        result = graph.rearrange(y, glues[k + 1])
        if k + 1 < len(chain):
            result = _time_major(result, layouts[k + 1])
            if not np.array_equal(result, expected):
                raise ValueError(f"path_or_model: between nodes {node.name!r} and "
                                 f"{chain[k + 1].name!r}, Y is not rearranged to (T, B, D*H) "
                                 "as fastlstm stacks layers")
    batch_first = [flag for flag in batch_first if np.array_equal(
        np.swapaxes(expected, 0, 1) if flag else expected, result)]
    if not batch_first:
        raise ValueError("path_or_model: the model's first output is not the last node's Y as "
                         "(T, B, D*H), or (B, T, D*H) if its input is batch-major")
    return batch_first
