"""The contenders: each one's setup makes the callables that the benchmark times.

A setup takes a problem (:mod:`fastlstm.bench.problems`) and a thread count and returns the
(forward, forward_backward) callables; each returns a dict of its outputs (``hs``, and for the
backward ``dxs``, ``dW``, ``dU``, ``db``), checked against the reference's before any timing. A
contender that has no backward (onnxruntime) returns None in its place.
"""
import numpy as np

import fastlstm
from fastlstm import reference

from .problems import LAYER_CLASSES, PASS_LABELS, PASSES

# fastlstm's frozen forward (layer.freeze()): forward only, the weights packed once beforehand. It
# is what compares with onnxruntime's session, which packs its constant weights when it is made.
FROZEN = "fastlstm frozen"

TOLERANCES = {"float32": {"rtol": 1e-3, "atol": 1e-4}, "float64": {"rtol": 1e-9, "atol": 1e-9}}
# how onnxruntime runs: the thread count is the other contenders'; its workers must not spin after
# a run (they would take cores from whatever runs next, and it from the others)
ONNXRUNTIME_SETTINGS = ("forward only, model from layer.to_onnx, intra_op_num_threads = the "
                        "threads, inter_op_num_threads 1, sequential execution, intra-op spinning "
                        "off")


def _module_passes(module, p):
    """The forward and forward-backward callables of a module with the reference's API, on the
    functions of the problem's kind (``lstm_forward``, ``gru_forward``, ...).

    Each returns a dict of its outputs: ``hs``, and for the backward also ``dxs``, ``dW``, ``dU``,
    ``db``.
    """
    forward_function = getattr(module, f"{p.kind}_forward")
    backward_function = getattr(module, f"{p.kind}_backward")
    no_states = [None] * (2 if p.kind == "lstm" else 1)  # (h0, c0) or h0: zeros

    def forward():
        return {"hs": forward_function(p.xs, *no_states, p.W, p.U, p.b)[0]}

    def forward_backward():
        hs, *_, cache = forward_function(p.xs, *no_states, p.W, p.U, p.b)
        dxs, *_, dW, dU, db = backward_function(p.dhs, *no_states, cache)
        return {"hs": hs, "dxs": dxs, "dW": dW, "dU": dU, "db": db}

    return forward, forward_backward


def _on_threads(call, threads):
    def threaded():
        with fastlstm.num_threads(threads):
            return call()

    return threaded


def setup_fastlstm(p, threads):
    """fastlstm's (forward, forward_backward) on `threads` threads."""
    return tuple(_on_threads(call, threads) for call in _module_passes(fastlstm, p))


def _frozen_forward(layer, x, threads):
    """(forward, None): the layer's ``freeze()`` on x, its weights packed before the timing, as
    an inference engine's are when its session is made."""
    frozen = layer.freeze()
    forward = _on_threads(lambda: {"hs": frozen(x)[0]}, threads)
    forward()  # packs the weights for x's batch size
    return forward, None


def setup_fastlstm_frozen(p, threads):
    """fastlstm's frozen forward (``layer.freeze()``) of the problem's one-layer layer."""
    return _frozen_forward(problem_layer(p), p.xs, threads)


def setup_reference(p, threads):
    """The NumPy reference's (forward, forward_backward); its BLAS threads are the caller's to set.

    See :func:`blas_threads`.
    """
    return _module_passes(reference, p)


def problem_layer(p):
    """A one-layer fastlstm layer of the problem's kind holding its weights (for the converters
    to the other frameworks)."""
    I, H = p.W.shape[0], p.U.shape[0]
    layer = getattr(fastlstm, LAYER_CLASSES[p.kind])(I, H, dtype=p.xs.dtype)
    for name, value in (("W_l0", p.W), ("U_l0", p.U), ("b_l0", p.b)):
        layer.params[name][...] = value
    return layer


def setup_torch(p, threads):
    """The torch module of the problem's kind (nn.LSTM, nn.GRU, nn.RNN) on `threads` threads, with
    the problem's weights (``to_torch``: weight_ih_l0 = W.T, weight_hh_l0 = U.T, bias_ih_l0 = b,
    bias_hh_l0 = 0; the GRU's two biases each in its own); its backward by autograd."""
    import torch

    torch.set_num_threads(threads)
    module = problem_layer(p).to_torch()
    xs = torch.from_numpy(p.xs)
    xs_leaf = xs.clone().requires_grad_()
    dout = torch.from_numpy(p.dhs)

    def forward():
        with torch.no_grad():
            return {"hs": module(xs)[0].numpy()}

    def forward_backward():
        xs_leaf.grad = None
        module.zero_grad(set_to_none=True)
        out, _ = module(xs_leaf)
        out.backward(dout)
        bias_ih, bias_hh = module.bias_ih_l0.grad.numpy(), module.bias_hh_l0.grad.numpy()
        return {"hs": out.detach().numpy(), "dxs": xs_leaf.grad.numpy(),
                "dW": module.weight_ih_l0.grad.numpy().T, "dU": module.weight_hh_l0.grad.numpy().T,
                "db": np.stack([bias_ih, bias_hh]) if p.kind == "gru" else bias_ih}

    return forward, forward_backward


def onnxruntime_version():
    """onnxruntime's version if it and onnx (for to_onnx) import, else None."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def _onnxruntime_forward(layer, x, threads):
    """(forward, None): onnxruntime's session of ``layer.to_onnx`` run on x, as
    :data:`ONNXRUNTIME_SETTINGS` says."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(layer.to_onnx(None).SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])

    def forward():
        return {"hs": session.run(["out"], {"x": x})[0]}

    return forward, None


def setup_onnxruntime(p, threads):
    """onnxruntime's LSTM (GRU, RNN) node with the problem's weights: forward only (float32)."""
    return _onnxruntime_forward(problem_layer(p), p.xs, threads)


# name -> setup(problem, threads) returning the (forward, forward_backward) callables
CONTENDERS = {"fastlstm": setup_fastlstm, FROZEN: setup_fastlstm_frozen,
              "reference": setup_reference, "torch": setup_torch,
              "onnxruntime": setup_onnxruntime}


def _module_cell_loops(module, p):
    """The forward and forward-backward of a user's step loop over a module's cell functions.

    Each returns the same outputs as the whole-sequence passes of :func:`_module_passes`.
    """
    T, B, H = p.dhs.shape

    def run_forward(keep):
        h, c = np.zeros((B, H), p.xs.dtype), np.zeros((B, H), p.xs.dtype)
        hs, caches = [], []
        for t in range(T):
            h, c, cache = module.lstm_cell_forward(p.xs[t], h, c, p.W, p.U, p.b)
            hs.append(h)
            if keep:
                caches.append(cache)
        return hs, caches

    def forward():
        return {"hs": np.stack(run_forward(False)[0])}

    def forward_backward():
        hs, caches = run_forward(True)
        dxs = np.empty_like(p.xs)
        dW, dU, db = np.zeros_like(p.W), np.zeros_like(p.U), np.zeros_like(p.b)
        dh, dc = np.zeros((B, H), p.xs.dtype), None
        for t in reversed(range(T)):
            dxs[t], dh, dc, dW_t, dU_t, db_t = module.lstm_cell_backward(p.dhs[t] + dh, dc,
                                                                          caches[t])
            dW += dW_t
            dU += dU_t
            db += db_t
        return {"hs": np.stack(hs), "dxs": dxs, "dW": dW, "dU": dU, "db": db}

    return forward, forward_backward


def setup_fastlstm_cell(p, threads):
    """fastlstm's cell in a step loop, (forward, forward_backward) on `threads` threads."""
    return tuple(_on_threads(call, threads) for call in _module_cell_loops(fastlstm, p))


def setup_reference_cell(p, threads):
    """The NumPy reference's cell in a step loop."""
    return _module_cell_loops(reference, p)


def setup_torch_cell(p, threads):
    """torch.nn.LSTMCell in a step loop, loaded as in :func:`setup_torch`; its backward is
    autograd's through all T steps, with the gradient dhs[t] of every step's h."""
    import torch

    torch.set_num_threads(threads)
    (T, B, _), H = p.xs.shape, p.U.shape[0]
    cell = torch.nn.LSTMCell(p.W.shape[0], H, dtype=getattr(torch, p.xs.dtype.name))
    weights = {"weight_ih": p.W.T, "weight_hh": p.U.T, "bias_ih": p.b, "bias_hh": np.zeros_like(p.b)}
    with torch.no_grad():
        for name, value in weights.items():
            getattr(cell, name).copy_(torch.from_numpy(np.ascontiguousarray(value)))
    xs, dhs = torch.from_numpy(p.xs), list(torch.from_numpy(p.dhs))

    def run_forward(xs):
        h = c = torch.zeros(B, H, dtype=xs.dtype)
        hs = []
        for t in range(T):
            h, c = cell(xs[t], (h, c))
            hs.append(h)
        return hs

    def forward():
        with torch.no_grad():
            return {"hs": torch.stack(run_forward(xs)).numpy()}

    def forward_backward():
        xs_leaf = xs.clone().requires_grad_()
        cell.zero_grad(set_to_none=True)
        hs = run_forward(xs_leaf)
        torch.autograd.backward(hs, dhs)
        return {"hs": torch.stack(hs).detach().numpy(), "dxs": xs_leaf.grad.numpy(),
                "dW": cell.weight_ih.grad.numpy().T, "dU": cell.weight_hh.grad.numpy().T,
                "db": cell.bias_ih.grad.numpy()}

    return forward, forward_backward


# the same for the step loops of the cell table
CELL_CONTENDERS = {"fastlstm": setup_fastlstm_cell, "reference": setup_reference_cell,
                   "torch": setup_torch_cell}


def _layer_passes(layer, x, dout):
    """forward and forward_backward of a layer, as a training step runs them."""

    def forward():
        return {"hs": layer(x)[0]}

    def forward_backward():
        out, _ = layer(x)
        dx = layer.backward(dout)
        layer.zero_grad()
        return {"hs": out, "dxs": dx}

    return forward, forward_backward


def setup_fastlstm_layer(problem, threads):
    layer, x, dout = problem
    return tuple(_on_threads(call, threads) for call in _layer_passes(layer, x, dout))


def setup_reference_layer(problem, threads):
    """The same layer, its parameters copied, on the reference's functions."""
    layer, x, dout = problem
    twin = type(layer)(**layer._config(), backend=reference)
    for name, p in layer.params.items():
        twin.params[name][...] = p
    return _layer_passes(twin, x, dout)


def setup_torch_layer(problem, threads):
    """The equivalent torch module (``layer.to_torch()``), its backward by autograd."""
    import torch

    torch.set_num_threads(threads)
    layer, x, dout = problem
    module = layer.to_torch()
    xs, dout_t = torch.from_numpy(x), torch.from_numpy(dout)

    def forward():
        with torch.no_grad():
            return {"hs": module(xs)[0].numpy()}

    def forward_backward():
        xs_leaf = xs.clone().requires_grad_()
        module.zero_grad(set_to_none=True)
        out = module(xs_leaf)[0]
        out.backward(dout_t)
        return {"hs": out.detach().numpy(), "dxs": xs_leaf.grad.numpy()}

    return forward, forward_backward


def setup_fastlstm_frozen_layer(problem, threads):
    """The layer's frozen forward (``layer.freeze()``)."""
    layer, x, _ = problem
    return _frozen_forward(layer, x, threads)


def setup_onnxruntime_layer(problem, threads):
    """The layer's ``to_onnx`` model on onnxruntime: forward only (float32)."""
    layer, x, _ = problem
    return _onnxruntime_forward(layer, x, threads)


# the same for the layer table
LAYER_CONTENDERS = {"fastlstm": setup_fastlstm_layer, FROZEN: setup_fastlstm_frozen_layer,
                    "reference": setup_reference_layer,
                    "torch": setup_torch_layer, "onnxruntime": setup_onnxruntime_layer}


def torch_version():
    """torch's version if torch imports, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def check_close(actual, expected, dtype, label):
    """Raise AssertionError unless each output in `expected` matches `actual` within TOLERANCES."""
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key], value, **TOLERANCES[np.dtype(dtype).name],
                                   err_msg=f"{label}: {key} differs from the reference's")


def verify(calls, dtype):
    """Check every contender's outputs against the reference's.

    `calls` maps (contender name, pass) to the callable; the reference must be among them.
    """
    for pass_ in PASSES:
        expected = calls["reference", pass_]()
        for (name, other_pass), call in calls.items():
            if other_pass == pass_ and name != "reference":
                check_close(call(), expected, dtype, f"{name} {PASS_LABELS[pass_]}")
