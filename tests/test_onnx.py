"""ONNX in and out: fastlstm -> ONNX -> onnxruntime, torch -> ONNX (torch.onnx.export) -> fastlstm,
and what from_onnx refuses. Real onnx, onnxruntime and torch; each test skips without its package.
"""
import doctest
import io
import warnings

import numpy as np
import pytest

import fastlstm
from fastlstm import convert

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

KINDS = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "rnn": fastlstm.RNN}
# float32 round trips must agree to this
ROUND_TRIP = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def ort():
    return pytest.importorskip("onnxruntime")


def run_onnxruntime(ort, model, feed):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def as_list(state):
    """A layer's state as a list of arrays: [h] or [h, c]."""
    return list(state) if isinstance(state, tuple) else [state]


def test_doctests():
    failures, tried = doctest.testmod(convert, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert failures == 0 and tried > 0


@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "state"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time-major", "batch-first"])
@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (2, False), (1, True),
                                                       (2, True)], ids=["1uni", "2uni", "1bi", "2bi"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_fastlstm_to_onnxruntime(ort, rng, tmp_path, kind, num_layers, bidirectional, batch_first,
                                 with_lengths, with_state):
    T, B, I, H = 6, 4, 3, 5
    layer = KINDS[kind](I, H, num_layers=num_layers, bidirectional=bidirectional,
                        batch_first=batch_first, seed=int(rng.integers(1000)))
    path = tmp_path / "layer.onnx"
    layer.to_onnx(path, state=with_state, lengths=with_lengths)
    model = onnx.load(path)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(np.float32)
    feed, kwargs = {"x": x}, {}
    if with_lengths:
        lengths = np.array([6, 2, 1, 4], np.int32)
        feed["lengths"] = kwargs["lengths"] = lengths
    if with_state:
        D = 2 if bidirectional else 1
        state = [rng.standard_normal((num_layers * D, B, H)).astype(np.float32)
                 for _ in layer._state_names]
        feed.update(zip([f"{s}_0" for s in "hc"], state))
        kwargs["state"] = tuple(state) if kind == "lstm" else state[0]
    out, state_n = layer.forward(x, **kwargs)
    got = run_onnxruntime(ort, model, feed)
    expected = [out] + as_list(state_n)
    assert len(got) == len(expected)
    for name, g, e in zip(["out", "h_n", "c_n"], got, expected):
        np.testing.assert_allclose(g, e, **ROUND_TRIP, err_msg=name)


@pytest.mark.parametrize("batch_first", [False, True], ids=["time-major", "batch-first"])
@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (2, True)], ids=["1uni", "2bi"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_to_onnx_then_from_onnx_gives_the_same_layer(kind, num_layers, bidirectional, batch_first):
    layer = KINDS[kind](3, 5, num_layers=num_layers, bidirectional=bidirectional,
                        batch_first=batch_first, seed=1)
    back = KINDS[kind].from_onnx(layer.to_onnx(None, state=True, lengths=True))
    assert back._config() == {**layer._config(), **({"unit_forget_bias": False} if kind == "lstm"
                                                    else {})}
    assert sorted(back.params) == sorted(layer.params)
    for name, p in layer.params.items():
        np.testing.assert_array_equal(back.params[name], p, err_msg=name)


def torch_export(torch, module, args, input_names):
    """The model torch.onnx.export writes for `module`, with T and B free."""
    free = {name: {0: "d0", 1: "d1"} for name in input_names[:1]}
    free.update({name: {1: "B"} for name in input_names[1:]})
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buffer, dynamo=False, input_names=input_names,
                          dynamic_axes=free, opset_version=17)
    return onnx.load_from_string(buffer.getvalue())


@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "state"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time-major", "batch-first"])
@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (2, False), (2, True)],
                         ids=["1uni", "2uni", "2bi"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_torch_to_onnx_to_fastlstm(ort, rng, kind, num_layers, bidirectional, batch_first,
                                   with_state):
    torch = pytest.importorskip("torch")
    torch.manual_seed(int(rng.integers(1000)))
    T, B, I, H = 7, 3, 4, 6
    D = 2 if bidirectional else 1
    module = getattr(torch.nn, kind.upper())(I, H, num_layers=num_layers,
                                             bidirectional=bidirectional, batch_first=batch_first)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(np.float32)
    names = ["x"]
    states = []
    if with_state:
        names += ["h_0", "c_0"][: 2 if kind == "lstm" else 1]
        states = [rng.standard_normal((num_layers * D, B, H)).astype(np.float32) for _ in names[1:]]
    torch_state = tuple(map(torch.from_numpy, states))
    args = (torch.from_numpy(x),) + ((torch_state if kind == "lstm" else torch_state[0],)
                                     if states else ())
    model = torch_export(torch, module, args, names)

    layer = KINDS[kind].from_onnx(model)
    assert (layer.num_layers, layer.bidirectional, layer.batch_first) == (
        num_layers, bidirectional, batch_first)
    state = None
    if states:
        state = tuple(states) if kind == "lstm" else states[0]
    out, state_n = layer.forward(x, state)
    with torch.no_grad():
        expected_out, expected_state = module(*args)
    np.testing.assert_allclose(out, expected_out.numpy(), **ROUND_TRIP)
    for got, expected in zip(as_list(state_n), as_list(expected_state)):
        np.testing.assert_allclose(got, expected.numpy(), **ROUND_TRIP)
    # and onnxruntime on torch's model agrees with the layer
    got = run_onnxruntime(ort, model, dict(zip(names, [x] + states)))
    np.testing.assert_allclose(got[0], out, **ROUND_TRIP)


def test_from_onnx_reads_a_path_and_a_torch_model_of_fixed_sizes(tmp_path):
    """Sizes fixed in the model (B = 1), and weights also listed as inputs, as older exporters did."""
    torch = pytest.importorskip("torch")
    module = torch.nn.LSTM(4, 6, batch_first=True)
    path = tmp_path / "fixed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 5, 4),), str(path), dynamo=False,
                          keep_initializers_as_inputs=True)
    assert len(onnx.load(path).graph.input) > 1
    layer = fastlstm.LSTM.from_onnx(str(path))
    assert layer.batch_first
    x = np.random.default_rng(0).standard_normal((2, 9, 4)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(layer(x)[0], expected, **ROUND_TRIP)


@pytest.mark.parametrize("kind", list(KINDS))
def test_from_onnx_reads_the_batch_major_layout(rng, kind):
    """ONNX's layout=1: X (B, T, I), Y (B, T, D, H). onnxruntime runs no such node, so onnx's own
    reference evaluator checks the model, made from to_onnx's by dropping its transposes."""
    from onnx.reference import ReferenceEvaluator

    layer = KINDS[kind](3, 4, bidirectional=True, batch_first=True, seed=2)
    model = layer.to_onnx(None)
    nodes = [n for n in model.graph.node if n.op_type != "Transpose"]
    for node in nodes:
        if node.op_type == kind.upper():
            node.input[0] = "x"
            node.attribute.append(helper.make_attribute("layout", 1))
        if node.op_type == "Reshape":  # Y (B, T, D, H) -> out (B, T, D*H)
            node.input[0], node.output[0] = "Y_l0", "out"
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)

    back = KINDS[kind].from_onnx(model)
    assert back.batch_first and back.bidirectional
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    expected = ReferenceEvaluator(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(back(x)[0], expected, **ROUND_TRIP)


# ---- what from_onnx refuses: graphs built with onnx.helper ------------------------------------------

I, H = 3, 2


def recurrent_model(op="LSTM", D=1, attributes=None, extra_inputs=(), after=(), before=(),
                    constants=(), transpose=True):
    """A model of one recurrent node with random weights: x -> `before` -> node -> Y -> `after`.

    `extra_inputs` are the node's inputs after B (sequence_lens, initial_h, ...), `constants` more
    initializers. Without `after`, the output is Y squeezed or rearranged to (T, B, D*H).
    """
    rng = np.random.default_rng(0)
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op] * H
    attributes = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward",
                  **({"linear_before_reset": 1} if op == "GRU" else {}), **(attributes or {})}
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
               for name, shape in (("W", (D, G, I)), ("R", (D, G, H)), ("B", (D, 2 * G)))]
    nodes = list(before)
    X = nodes[-1].output[0] if nodes else "x"
    nodes.append(helper.make_node(op, [X, "W", "R", "B", *extra_inputs], ["Y"], name="rec",
                                  **attributes))
    shape = numpy_helper.from_array(np.array([0, 0, -1], np.int64), "shape")
    if after:
        nodes += list(after)
    else:
        perm = [0, 2, 1, 3] if transpose else [0, 1, 2, 3]
        nodes += [helper.make_node("Transpose", ["Y"], ["YT"], perm=perm),
                  helper.make_node("Reshape", ["YT", "shape"], ["out"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", I])],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        weights + [shape] + list(constants))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_test_model_itself_loads():
    """The refusals below each change one thing of this model, which loads."""
    layer = fastlstm.LSTM.from_onnx(recurrent_model(D=2))
    assert (layer.input_size, layer.hidden_size, layer.bidirectional) == (I, H, True)
    assert fastlstm.GRU.from_onnx(recurrent_model("GRU")).hidden_size == H


def zeros(name, shape):
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


REFUSALS = {
    "peepholes": (dict(extra_inputs=["", "", "", "P"], constants=[zeros("P", (1, 3 * H))]),
                  "peepholes"),
    "clip": (dict(attributes={"clip": 5.0}), "clip"),
    "activations": (dict(attributes={"activations": ["Relu", "Tanh", "Tanh"]}),
                    r"activations \['Relu', 'Tanh', 'Tanh'\]"),
    "activation_alpha": (dict(attributes={"activations": ["Sigmoid", "Tanh", "Tanh"],
                                          "activation_alpha": [1.0]}), "activation_alpha"),
    "input_forget": (dict(attributes={"input_forget": 1}), "input_forget"),
    "reverse": (dict(attributes={"direction": "reverse"}), "direction 'reverse'"),
    "unknown attribute": (dict(attributes={"my_option": 1}), r"attributes \['my_option'\]"),
    "constant lengths": (dict(extra_inputs=["lens"], constants=[
        numpy_helper.from_array(np.array([1, 1], np.int32), "lens")]), "sequence_lens"),
    "constant state": (dict(extra_inputs=["", "h0"], constants=[
        numpy_helper.from_array(np.ones((1, 2, H), np.float32), "h0")]), "initial state"),
    "a head after": (dict(after=[helper.make_node("Squeeze", ["Y", "axis1"], ["YS"]),
                                 helper.make_node("MatMul", ["YS", "head"], ["logits"])],
                          constants=[numpy_helper.from_array(np.array([1], np.int64), "axis1"),
                                     zeros("head", (H, 2))]),
                     "first output 'logits' is made by MatMul"),
    "an op before": (dict(before=[helper.make_node("Relu", ["x"], ["x_relu"])]),
                     "input is made by Relu"),
    "directions interleaved": (dict(D=2, transpose=False), "not the last node's Y"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_from_onnx_refuses_what_fastlstm_does_not_compute(case):
    arguments, message = REFUSALS[case]
    with pytest.raises(ValueError, match=message):
        fastlstm.LSTM.from_onnx(recurrent_model(**arguments))


def test_from_onnx_refuses_a_gru_without_linear_before_reset():
    with pytest.raises(ValueError, match="linear_before_reset=0; fastlstm computes PyTorch's GRU"):
        fastlstm.GRU.from_onnx(recurrent_model("GRU", attributes={"linear_before_reset": 0}))


def test_from_onnx_refuses_another_kind_and_no_recurrent_node():
    with pytest.raises(ValueError, match="the model has GRU nodes; fastlstm.LSTM.from_onnx reads"):
        fastlstm.LSTM.from_onnx(recurrent_model("GRU"))
    identity = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]))
    with pytest.raises(ValueError, match="no LSTM, GRU or RNN node"):
        fastlstm.RNN.from_onnx(identity)


def test_from_onnx_refuses_a_second_chain():
    """Two LSTMs side by side (one of them unused by the first output) are not one layer."""
    model = recurrent_model()
    model.graph.node.append(helper.make_node("LSTM", ["x", "W", "R", "B"], ["Y2"], hidden_size=H))
    with pytest.raises(ValueError, match="the model has 2 LSTM nodes, but its first output comes "
                                         "from a chain of 1"):
        fastlstm.LSTM.from_onnx(model)


def test_from_onnx_refuses_sizes_the_config_contradicts():
    with pytest.raises(ValueError, match="hidden_size: the ONNX model has hidden_size=2, but 3"):
        fastlstm.LSTM.from_onnx(recurrent_model(), hidden_size=3)


def test_to_onnx_names_a_bad_opset():
    with pytest.raises(ValueError, match=r"opset: expected an integer in \[14, \d+\].*got 9"):
        fastlstm.LSTM(3, 4).to_onnx(None, opset=9)
