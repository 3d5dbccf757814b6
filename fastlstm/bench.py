"""Benchmark fastlstm against its NumPy reference and torch.nn.LSTM: ``python -m fastlstm bench``.

For every shape (T, B, I, H) of a grid, on the same seeded data and in the same process, this times
the forward pass (``lstm_forward``) and the forward and backward pass (``lstm_forward``, then
``lstm_backward`` of a given ``dhs``) of each contender: fastlstm, ``fastlstm.reference`` and, if it
is importable, ``torch.nn.LSTM`` loaded with the same weights. The contenders take turns for
`repeat` rounds, and the minimum time of each is kept. Each timed call follows 0.2 s of untimed
calls of the same contender: they warm the caches and outlast the threads that the previous
contender leaves spinning (OpenBLAS's spin for about 0.15 s after a call, and on a small machine
they would take a core from the timed call). Before a shape is timed, every contender's outputs are
checked against the reference's, since a benchmark of wrong results is worthless.

FLOPs count the matrix products: forward = 2*T*B*(I+H)*4H, forward and backward = 3x that. They are
set against the machine's GEMM peak, measured in the same run (before and after the shapes) as
NumPy's matmul of two 2048 x 2048 matrices.

A third table times whole layers (``fastlstm.LSTM`` stacked and bidirectional, ``fastlstm.GRU``)
against the same layer on the reference's functions and the equivalent torch module.

A fourth table times a NumPy training loop around fastlstm and around the reference: the step a
user writes (forward, a NumPy read-out, the loss gradient, backward, an SGD update) with NumPy's BLAS
at its defaults. Each contender's timed steps follow 0.2 s of its own steps (not of the others'), so
they meet what a script looping over them meets: the BLAS's workers, which spin after each product
of the read-out. There the median and the spread of the step times are reported, and the ratios of
the contenders' median step times round by round.

A second table times a user's own step loop (the drop-in cell): T calls of ``lstm_cell_forward``,
then for the backward T calls of ``lstm_cell_backward`` that carry dh and dc back and sum dW, dU, db,
against the same loop over the reference's cell and over ``torch.nn.LSTMCell`` (its backward by
autograd through the T steps). There the cost is per call, so it is reported in microseconds per
step.

Shapes: T time steps, B batch rows, I input features, H hidden units.
"""
import argparse
import contextlib
import importlib.metadata
import itertools
import json
import os
import platform
import sys
import time
from typing import NamedTuple

import numpy as np

import fastlstm
from fastlstm import _bench_distributed, _config, reference

QUICK = [(100, 1, 64, 128), (100, 8, 256, 256), (50, 16, 512, 512), (25, 64, 256, 256)]


def _deepbench(batches):
    """DeepBench's LSTM shapes (T, B, I = H, H) for the given batch sizes."""
    return [(T, B, H, H) for T, H in [(25, 512), (25, 1024), (150, 256)] for B in batches]


FULL = list(
    dict.fromkeys(
        QUICK
        + [(100, 1, 256, 256), (50, 4, 128, 512), (25, 16, 512, 512), (50, 32, 1024, 1024)]
        + [(100, 16, 2048, 2048), (100, 128, 256, 256)]
        + _deepbench([16, 32, 64])  # training
        + _deepbench([1, 2, 4])  # inference
    )
)

# the step loops of the cell table
CELLS = [(100, 1, 64, 128)]

# the layer table: (kind, num_layers, directions, (T, B, I, H))
LAYERS = [("lstm", 2, 2, (50, 16, 256, 256)), ("gru", 1, 1, (50, 16, 256, 256))]
LAYER_CLASSES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
LAYER_GATES = {"lstm": 4, "gru": 3, "rnn": 1}

PASSES = ("forward", "forward_backward")
PASS_LABELS = {"forward": "fwd", "forward_backward": "fwd+bwd"}
TOLERANCES = {"float32": {"rtol": 1e-3, "atol": 1e-4}, "float64": {"rtol": 1e-9, "atol": 1e-9}}
GEMM_SIZE = 2048
GEMM_REPEAT = 3
DEFAULT_REPEAT = 5
# OpenBLAS's threads spin for about 0.15 s after a call, taking cores from whatever runs next
SETTLE_SECONDS = 0.2


# ---- the problem and the contenders ---------------------------------------------------------------


class Problem(NamedTuple):
    """Seeded inputs: xs (T, B, I), W (I, 4H), U (H, 4H), b (4H,) and the gradient dhs (T, B, H)."""

    xs: np.ndarray
    W: np.ndarray
    U: np.ndarray
    b: np.ndarray
    dhs: np.ndarray


def make_problem(shape, dtype="float32", seed=0):
    """Seeded random inputs of `shape` (T, B, I, H); weights scaled by 1/sqrt(H), as in training."""
    T, B, I, H = shape
    rng = np.random.default_rng(seed)

    def normal(dims, scale=1.0):
        return (scale * rng.standard_normal(dims)).astype(dtype)

    scale = 1 / np.sqrt(H)
    return Problem(
        xs=normal((T, B, I)),
        W=normal((I, 4 * H), scale),
        U=normal((H, 4 * H), scale),
        b=normal(4 * H, scale),
        dhs=normal((T, B, H)),
    )


def _module_passes(module, p):
    """The forward and forward-backward callables of a module with the reference's API.

    Each returns a dict of its outputs: ``hs``, and for the backward also ``dxs``, ``dW``, ``dU``,
    ``db``.
    """

    def forward():
        return {"hs": module.lstm_forward(p.xs, None, None, p.W, p.U, p.b)[0]}

    def forward_backward():
        hs, _, _, cache = module.lstm_forward(p.xs, None, None, p.W, p.U, p.b)
        dxs, _, _, dW, dU, db = module.lstm_backward(p.dhs, None, None, cache)
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


def setup_reference(p, threads):
    """The NumPy reference's (forward, forward_backward); its BLAS threads are the caller's to set.

    See :func:`blas_threads`.
    """
    return _module_passes(reference, p)


def _torch_module(kind, suffix, p, threads):
    """A torch `kind` (nn.LSTM or nn.LSTMCell) holding the problem's weights, torch on `threads`
    threads; `suffix` ends its parameters' names ("_l0" for nn.LSTM)."""
    import torch

    torch.set_num_threads(threads)
    module = kind(p.W.shape[0], p.U.shape[0], dtype=getattr(torch, p.xs.dtype.name))
    weights = {"weight_ih": p.W.T, "weight_hh": p.U.T, "bias_ih": p.b, "bias_hh": np.zeros_like(p.b)}
    with torch.no_grad():
        for name, value in weights.items():
            getattr(module, name + suffix).copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return module


def setup_torch(p, threads):
    """torch.nn.LSTM's (forward, forward_backward) on `threads` threads, with the problem's weights.

    torch packs the same gate order i, f, g, o along the rows of its weights: weight_ih_l0 = W.T,
    weight_hh_l0 = U.T, bias_ih_l0 = b, bias_hh_l0 = 0.
    """
    import torch

    lstm = _torch_module(torch.nn.LSTM, "_l0", p, threads)
    xs = torch.from_numpy(p.xs)
    xs_leaf = xs.clone().requires_grad_()
    dout = torch.from_numpy(p.dhs)

    def forward():
        with torch.no_grad():
            return {"hs": lstm(xs)[0].numpy()}

    def forward_backward():
        xs_leaf.grad = None
        lstm.zero_grad(set_to_none=True)
        out, _ = lstm(xs_leaf)
        out.backward(dout)
        return {"hs": out.detach().numpy(), "dxs": xs_leaf.grad.numpy(),
                "dW": lstm.weight_ih_l0.grad.numpy().T, "dU": lstm.weight_hh_l0.grad.numpy().T,
                "db": lstm.bias_ih_l0.grad.numpy()}

    return forward, forward_backward


# name -> setup(problem, threads) returning the (forward, forward_backward) callables
CONTENDERS = {"fastlstm": setup_fastlstm, "reference": setup_reference, "torch": setup_torch}


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

    (T, B, _), H = p.xs.shape, p.U.shape[0]
    cell = _torch_module(torch.nn.LSTMCell, "", p, threads)
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


def make_layer_problem(spec, dtype="float32", seed=0):
    """A seeded layer of `spec` (kind, num_layers, directions, (T, B, I, H)) on fastlstm, its
    input x (T, B, I) and an output gradient dout (T, B, D*H)."""
    kind, L, D, (T, B, I, H) = spec
    layer = getattr(fastlstm, LAYER_CLASSES[kind])(I, H, num_layers=L, bidirectional=D == 2,
                                                    dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    dout = rng.standard_normal((T, B, D * H)).astype(dtype)
    return layer, x, dout


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


# the same for the layer table
LAYER_CONTENDERS = {"fastlstm": setup_fastlstm_layer, "reference": setup_reference_layer,
                    "torch": setup_torch_layer}


def layer_flops_forward(spec):
    """FLOPs of a layer's forward products: 2*T*B*(I_k+H)*G for every layer k and direction."""
    kind, L, D, (T, B, I, H) = spec
    G = LAYER_GATES[kind] * H
    return sum(D * 2 * T * B * ((I if k == 0 else D * H) + H) * G for k in range(L))


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


# ---- timing ---------------------------------------------------------------------------------------


def time_call(call, settle=SETTLE_SECONDS):
    """Seconds that one call of `call` takes, timed after calling it untimed for `settle` seconds.

    The untimed calls warm the caches and let the threads of whatever ran before go to sleep, so
    that the timed call sees the steady state of a loop of `call` alone.
    """
    end = time.perf_counter() + settle
    while time.perf_counter() < end:
        call()
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def time_interleaved(calls, repeat, settle=SETTLE_SECONDS):
    """Minimum time in ms of each callable in `calls` over `repeat` rounds, each round timing each.

    Each timed call follows `settle` seconds of untimed calls of the same callable; see
    :func:`time_call`.
    """
    seconds = {key: [] for key in calls}
    for _ in range(repeat):
        for key, call in calls.items():
            seconds[key].append(time_call(call, settle))
    return {key: 1e3 * min(values) for key, values in seconds.items()}


def gemm_peak(dtype, size=GEMM_SIZE, repeat=GEMM_REPEAT):
    """GFLOP/s of NumPy's matmul of two `size` x `size` matrices: 2 size^3 / the best time."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size)).astype(dtype) for _ in range(2))
    out = np.empty_like(a)
    np.matmul(a, b, out=out)  # warm-up
    ms = time_interleaved({"gemm": lambda: np.matmul(a, b, out=out)}, repeat, settle=0)["gemm"]
    return 2 * size**3 / ms / 1e6


@contextlib.contextmanager
def blas_threads(n):
    """Limit NumPy's BLAS to `n` threads if threadpoolctl is importable; yield what was done.

    Without threadpoolctl, the BLAS runs on as many threads as it chose itself.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield "its own thread count, usually all cores (threadpoolctl not installed)"
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield f"{n} threads, limited with threadpoolctl"


# ---- a NumPy training loop: the kernels as a user's script meets them --------------------------------

# the training-loop table: (T, B, I, H, O), an LSTM under a linear read-out of O outputs
LOOPS = [(50, 8, 64, 128, 64), (50, 32, 64, 256, 64), (25, 64, 256, 512, 64)]
LOOP_STEPS = 4  # timed training steps of each contender per round
# the ratios of the training-loop table: speed-ups over the reference, then fastlstm's time against
# its time with NumPy's BLAS on one thread (when threadpoolctl is there to set that)
LOOP_RATIOS = [("reference", "fastlstm"), ("reference", "fastlstm + matmul"),
               ("fastlstm", "fastlstm, 1 BLAS thread"),
               ("fastlstm + matmul", "fastlstm, 1 BLAS thread")]


def make_training_step(module, spec, dtype="float32", seed=0, product=np.matmul):
    """One step of a plain NumPy training loop around `module`'s LSTM (fastlstm or the reference).

    The step a user writes: ``lstm_forward``, a read-out ``hs @ V``, the mean squared error's
    gradient, ``lstm_backward``, the read-out's gradient and an SGD update of every parameter in
    place. The read-out's three products are `product`: NumPy's ``@`` by default, or
    ``fastlstm.matmul``. Returns ``step() -> loss``; the same seed gives each module the same
    problem.
    """
    T, B, I, H, O = spec
    rng = np.random.default_rng(seed)

    def normal(dims, scale=1.0):
        return (scale * rng.standard_normal(dims)).astype(dtype)

    xs, targets = normal((T, B, I)), normal((T, B, O))
    W, U, b = normal((I, 4 * H), H**-0.5), normal((H, 4 * H), H**-0.5), np.zeros(4 * H, dtype)
    V = normal((H, O), H**-0.5)
    lr = 1e-3

    def step():
        hs, _, _, cache = module.lstm_forward(xs, None, None, W, U, b)
        error = product(hs, V) - targets                                 # (T, B, O)
        dxs, _, _, dW, dU, db = module.lstm_backward(product(error, V.T), None, None, cache)
        dV = product(hs.reshape(-1, H).T, error.reshape(-1, O))
        for param, grad in ((W, dW), (U, dU), (b, db), (V, dV)):
            param -= lr * grad
        return float(np.mean(error**2))

    return step


def _one_blas_thread():
    """A context manager factory limiting NumPy's BLAS to one thread (threadpoolctl), or None."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return lambda: threadpool_limits(limits=1, user_api="blas")


def bench_training_loop(spec, threads, dtype, repeat, steps=LOOP_STEPS, settle=SETTLE_SECONDS):
    """Time a NumPy training loop (:func:`make_training_step`) around fastlstm and the reference.

    NumPy's BLAS keeps its default thread count. Each round times `steps` training steps of each
    contender in turn, each after `settle` seconds of its own untimed steps: long enough that the
    threads the previous contender left spinning have stopped, so that each contender meets what
    its own loop leaves spinning, as a script looping over it does. A third contender computes the read-out of fastlstm's loop
    with ``fastlstm.matmul`` instead of NumPy's ``@``; with threadpoolctl, a fourth is the plain
    loop with the BLAS on one thread. Returns the record: every step time of each contender in ms,
    and per round the ratios of the contenders' median step times.
    """
    plain = contextlib.nullcontext
    contenders = {
        "fastlstm": (make_training_step(fastlstm, spec, dtype), plain),
        "reference": (make_training_step(reference, spec, dtype), plain),
        "fastlstm + matmul": (make_training_step(fastlstm, spec, dtype, product=fastlstm.matmul),
                              plain),
    }
    limit = _one_blas_thread()
    if limit is not None:
        contenders["fastlstm, 1 BLAS thread"] = (make_training_step(fastlstm, spec, dtype), limit)
    ms = {name: [] for name in contenders}
    with fastlstm.num_threads(threads):
        for _ in range(repeat):
            for name, (step, context) in contenders.items():
                with context():
                    end = time.perf_counter() + settle
                    while time.perf_counter() < end:
                        step()
                    for _ in range(steps):
                        start = time.perf_counter()
                        step()
                        ms[name].append(1e3 * (time.perf_counter() - start))
    rounds = {name: np.median(np.reshape(times, (repeat, steps)), axis=1)
              for name, times in ms.items()}
    T, B, I, H, O = spec
    return {"T": T, "B": B, "I": I, "H": H, "O": O, "steps_per_round": steps, "step_ms": ms,
            "ratio_per_round": {f"{top} / {bottom}": list(rounds[top] / rounds[bottom])
                                for top, bottom in LOOP_RATIOS
                                if top in rounds and bottom in rounds}}


def flops_forward(shape):
    """FLOPs of the forward pass's matrix products: 2*T*B*(I+H)*4H."""
    T, B, I, H = shape
    return 2 * T * B * (I + H) * 4 * H


# ---- the run --------------------------------------------------------------------------------------


def _log(message):
    print(message, file=sys.stderr, flush=True)


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _package_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(threads, dtype, torch_note):
    """The CPU, the library versions and fastlstm's build, as a dict."""
    config = _config.config()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "dtype": dtype,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch_note,
        "threadpoolctl": _package_version("threadpoolctl") or "not installed",
        "fastlstm": fastlstm.__version__,
        "simd": config["simd"],
        "openmp": config["openmp"],
        "openmp_version": config["openmp_version"],
    }


def bench_shape(shape, names, threads, dtype, repeat, contenders=CONTENDERS):
    """Check, then time, the contenders `names` on one shape; return the shape's record.

    `contenders` maps each name to its setup: :data:`CONTENDERS` (whole sequences) or
    :data:`CELL_CONTENDERS` (step loops).
    """
    return _bench(make_problem(shape, dtype), shape, flops_forward(shape), names, threads, dtype,
                  repeat, contenders)


def bench_layer(spec, names, threads, dtype, repeat):
    """Check, then time, the layer `spec` (see :data:`LAYERS`) on the contenders `names`."""
    kind, L, D, shape = spec
    record = _bench(make_layer_problem(spec, dtype), shape, layer_flops_forward(spec), names,
                    threads, dtype, repeat, LAYER_CONTENDERS)
    return {"layer": LAYER_CLASSES[kind], "num_layers": L, "bidirectional": D == 2, **record}


def _bench(problem, shape, forward_flops, names, threads, dtype, repeat, contenders):
    calls = {}
    for name in names:
        calls.update(zip([(name, p) for p in PASSES], contenders[name](problem, threads)))
    verify(calls, dtype)
    ms = time_interleaved(calls, repeat)
    T, B, I, H = shape
    flops = {"forward": forward_flops, "forward_backward": 3 * forward_flops}
    gflops = {p: flops[p] / ms["fastlstm", p] / 1e6 for p in PASSES}
    return {
        "T": T, "B": B, "I": I, "H": H,
        "flops": flops,
        "ms": {name: {p: ms[name, p] for p in PASSES} for name in names},
        "speedup": {name: {p: ms[name, p] / ms["fastlstm", p] for p in PASSES}
                    for name in names if name != "fastlstm"},
        "gflops": gflops,
    }


def run(shapes, threads, dtype="float32", repeat=DEFAULT_REPEAT, use_torch=True, cells=CELLS,
        layers=LAYERS, loops=LOOPS):
    """Benchmark every shape of `shapes`, then the step loops of `cells`, the `layers` and the
    training `loops`, logging progress to stderr.

    Returns
    -------
    dict
        ``machine`` (:func:`machine_info`), ``settings``, ``contenders``, ``gemm_peak_gflops``,
        ``results``: one record per shape with the times in ms of every contender and pass, and
        ``cell_results``: the same for the step loops, with ``us_per_step``, ``layer_results``
        for the layers and ``loop_results`` for the training loops
        (:func:`bench_training_loop`).
    """
    version = torch_version() if use_torch else None
    torch_note = version or ("not installed" if use_torch else "not used (--no-torch)")
    names = ["fastlstm", "reference"] + (["torch"] if version else [])
    with blas_threads(threads) as blas_note:
        _log(f"measuring the GEMM peak ({GEMM_SIZE}x{GEMM_SIZE} {dtype}) ...")
        peak = gemm_peak(dtype)
        records = []
        for k, shape in enumerate(shapes, 1):
            _log(f"[{k}/{len(shapes)}] T={shape[0]} B={shape[1]} I={shape[2]} H={shape[3]} ...")
            records.append(bench_shape(shape, names, threads, dtype, repeat))
        cell_records = []
        for k, shape in enumerate(cells, 1):
            _log(f"[cell {k}/{len(cells)}] T={shape[0]} B={shape[1]} I={shape[2]} H={shape[3]}, "
                 "a step loop ...")
            record = bench_shape(shape, names, threads, dtype, repeat, CELL_CONTENDERS)
            record["us_per_step"] = {name: {p: 1e3 * ms / shape[0] for p, ms in passes.items()}
                                     for name, passes in record["ms"].items()}
            cell_records.append(record)
        layer_records = []
        for k, spec in enumerate(layers, 1):
            _log(f"[layer {k}/{len(layers)}] {_layer_label(spec)} ...")
            layer_records.append(bench_layer(spec, names, threads, dtype, repeat))
        _log("measuring the GEMM peak again ...")
        peak = max(peak, gemm_peak(dtype))  # the better of two, against a passing load
    loop_records = []  # outside the BLAS limit: the loops run as a user's script does
    for k, spec in enumerate(loops, 1):
        _log(f"[loop {k}/{len(loops)}] T={spec[0]} B={spec[1]} I={spec[2]} H={spec[3]} "
             f"O={spec[4]}, a NumPy training loop ...")
        loop_records.append(bench_training_loop(spec, threads, dtype, repeat))
    for record in records + layer_records:
        record["percent_of_peak"] = {p: 100 * record["gflops"][p] / peak for p in PASSES}
    return {
        "machine": machine_info(threads, dtype, torch_note),
        "settings": {"repeat": repeat, "statistic": "min", "blas_threads": blas_note,
                     "settle_seconds": SETTLE_SECONDS, "gemm_size": GEMM_SIZE,
                     "gemm_repeat": GEMM_REPEAT},
        "contenders": names,
        "gemm_peak_gflops": peak,
        "results": records,
        "cell_results": cell_records,
        "layer_results": layer_records,
        "loop_results": loop_records,
    }


# ---- the report -----------------------------------------------------------------------------------


def _shape_label(record):
    return f"{record['T']},{record['B']},{record['I']},{record['H']}"


def _layer_label(spec_or_record):
    """"LSTM x2 bi T,B,I,H" from a layer spec or a layer record."""
    if isinstance(spec_or_record, dict):
        r = spec_or_record
        name, L, bi, shape = r["layer"], r["num_layers"], r["bidirectional"], _shape_label(r)
    else:
        kind, L, D, dims = spec_or_record
        name, bi, shape = LAYER_CLASSES[kind], D == 2, ",".join(map(str, dims))
    return f"{name} x{L} {'bi' if bi else 'uni'} {shape}"


def _format_table(columns, rows, gap=2):
    """A text table of `rows` of cells under two header lines.

    `columns` are (group, name) pairs: a group's title spans its run of columns. The first column is
    left-aligned, the others right-aligned.
    """
    widths = [max(len(name), *(len(row[j]) for row in rows)) for j, (_, name) in enumerate(columns)]
    spans = [(group, [j for j, _ in members])
             for group, members in itertools.groupby(enumerate(columns), lambda c: c[1][0])]
    for group, members in spans:
        room = sum(widths[j] for j in members) + gap * (len(members) - 1)
        for k, j in enumerate(members):  # share what the title lacks among the group's columns
            widths[j] += max(0, len(group) - room + k) // len(members)

    def line(cells):
        aligned = [cell.ljust(w) if j == 0 else cell.rjust(w)
                   for j, (cell, w) in enumerate(zip(cells, widths))]
        return (" " * gap).join(aligned).rstrip()

    group_line = (" " * gap).join(
        group.ljust(sum(widths[j] for j in members) + gap * (len(members) - 1))
        for group, members in spans)
    return "\n".join([group_line.rstrip(), line([name for _, name in columns])]
                     + [line(row) for row in rows])


def _ms(name):
    return lambda r, p: f"{r['ms'][name][p]:.3f}" if name in r["ms"] else "-"


def _speedup(name):
    return lambda r, p: f"{r['speedup'][name][p]:.2f}x" if name in r["speedup"] else "-"


def _gflops(r, p):
    return f"{r['gflops'][p]:.1f} ({r['percent_of_peak'][p]:.0f}%)"


# the table's column groups: title -> format(record, pass) of the cell of each pass
TABLE_GROUPS = {
    "fastlstm ms": _ms("fastlstm"),
    "reference ms": _ms("reference"),
    "speed-up vs ref": _speedup("reference"),
    "torch ms": _ms("torch"),
    "speed-up vs torch": _speedup("torch"),
    "fastlstm GFLOP/s (% of peak)": _gflops,
}


def _us(name):
    return lambda r, p: f"{r['us_per_step'][name][p]:.1f}" if name in r["ms"] else "-"


# the cell table's column groups
CELL_TABLE_GROUPS = {
    "fastlstm us/step": _us("fastlstm"),
    "reference us/step": _us("reference"),
    "speed-up vs ref": _speedup("reference"),
    "torch LSTMCell us/step": _us("torch"),
    "speed-up vs torch": _speedup("torch"),
}


def format_report(report):
    """The machine and GEMM peak header lines, one table row per shape, then the cell table."""
    m, s = report["machine"], report["settings"]
    openmp = f"on (version {m['openmp_version']})" if m["openmp"] else "off (serial build)"
    header = [
        f"machine: {m['cpu']}, {m['cores']} cores; python {m['python']}, numpy {m['numpy']}, "
        f"torch {m['torch']}",
        f"fastlstm {m['fastlstm']}: SIMD {m['simd']}, OpenMP {openmp}; {m['threads']} threads; "
        f"dtype {m['dtype']}",
        f"GEMM peak: {report['gemm_peak_gflops']:.1f} GFLOP/s (NumPy matmul {s['gemm_size']}x"
        f"{s['gemm_size']} {m['dtype']}, best of {s['gemm_repeat']} before and "
        f"{s['gemm_repeat']} after the shapes)",
        f"NumPy's BLAS (GEMM peak and reference) runs on {s['blas_threads']}",
        f"times in ms: minimum of {s['repeat']} interleaved rounds, each timed call after "
        f"{s['settle_seconds']} s of untimed ones; "
        f"speed-up = contender's time / fastlstm's time",
        "",
    ]
    columns = [("", "shape (T,B,I,H)")] + [(title, PASS_LABELS[p]) for title in TABLE_GROUPS
                                           for p in PASSES]
    rows = [[_shape_label(r)] + [cell(r, p) for cell in TABLE_GROUPS.values() for p in PASSES]
            for r in report["results"]]
    text = "\n".join(header) + (_format_table(columns, rows) if rows else "(no shapes)")
    if report["cell_results"]:
        columns = [("", "step loop (T,B,I,H)")] + [(title, PASS_LABELS[p])
                                                  for title in CELL_TABLE_GROUPS for p in PASSES]
        rows = [[_shape_label(r)] + [cell(r, p) for cell in CELL_TABLE_GROUPS.values()
                                     for p in PASSES] for r in report["cell_results"]]
        text += ("\n\nThe drop-in cell: a Python loop of T cell calls (backward: T calls carrying "
                 "dh, dc and summing dW, dU, db; torch: LSTMCell and autograd)\n"
                 + _format_table(columns, rows))
    if report["layer_results"]:
        columns = [("", "layer (T,B,I,H)")] + [(title, PASS_LABELS[p]) for title in TABLE_GROUPS
                                               for p in PASSES]
        rows = [[_layer_label(r)] + [cell(r, p) for cell in TABLE_GROUPS.values() for p in PASSES]
                for r in report["layer_results"]]
        text += ("\n\nLayers: fastlstm.LSTM / GRU (x layers, uni- or bidirectional), the same layer "
                 "on the reference's functions, and the torch module from layer.to_torch()\n"
                 + _format_table(columns, rows))
    if report["loop_results"]:
        text += "\n\n" + format_loop_table(report["loop_results"], report["settings"]["repeat"])
    return text


def _spread(values, digits=1, unit=""):
    """"median [min-max]" of `values`."""
    low, middle, high = np.min(values), np.median(values), np.max(values)
    return f"{middle:.{digits}f}{unit} [{low:.{digits}f}-{high:.{digits}f}]"


def format_loop_table(records, repeat):
    """The training-loop table: each contender's ms per step and the ratios, with their spread."""
    names = list(records[0]["step_ms"])
    ratios = list(records[0]["ratio_per_round"])
    columns = ([("", "loop (T,B,I,H,O)")] + [("ms per step", name) for name in names]
               + [("ratio per round", name) for name in ratios])
    rows = [[f"{r['T']},{r['B']},{r['I']},{r['H']},{r['O']}"]
            + [_spread(r["step_ms"][name]) for name in names]
            + [_spread(r["ratio_per_round"][name], 2, "x") for name in ratios] for r in records]
    steps = records[0]["steps_per_round"]
    note = ("" if "fastlstm, 1 BLAS thread" in names else
            "; install threadpoolctl for the column with NumPy's BLAS on one thread")
    return ("A NumPy training loop: lstm_forward, a read-out hs @ V, the mean squared error's "
            "gradient, lstm_backward, SGD (fastlstm + matmul: the read-out's products by "
            "fastlstm.matmul).\n"
            f"NumPy's BLAS at its defaults; {repeat} rounds of {steps} steps of each contender in "
            f"turn, each after {SETTLE_SECONDS} s of its own untimed steps; median [min-max]{note}\n"
            + _format_table(columns, rows))


def plot(report, path):
    """Write a PNG of fastlstm's speed-up over each other contender per shape.

    Returns
    -------
    bool
        False, and nothing written, if matplotlib is not importable.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return False
    records = report["results"]
    series = [(name, p) for name in report["contenders"] if name != "fastlstm" for p in PASSES]
    x, width = np.arange(len(records)), 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(records) + 2), 4.5))
    for k, (name, p) in enumerate(series):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, [r["speedup"][name][p] for r in records],
               width, label=f"vs {name}, {PASS_LABELS[p]}")
    ax.axhline(1, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.set_xticks(x)
    ax.set_xticklabels([_shape_label(r) for r in records], rotation=45, ha="right")
    ax.set_xlabel("shape T,B,I,H")
    ax.set_ylabel("speed-up of fastlstm")
    m = report["machine"]
    ax.set_title(f"fastlstm speed-up, {m['dtype']}, {m['threads']} threads ({m['cpu']})",
                 fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# ---- the command line -----------------------------------------------------------------------------


def parse_shapes(text, dims="T,B,I,H"):
    """Parse "T,B,I,H;T,B,I,H" (or "none") into a list of distinct tuples of positive ints, one
    per shape, with the dimensions `dims`."""
    if text.strip() == "none":
        return []
    size = len(dims.split(","))
    try:
        shapes = [tuple(map(int, item.split(","))) for item in text.split(";") if item.strip()]
    except ValueError:
        shapes = []
    if not shapes or any(len(shape) != size or min(shape) < 1 for shape in shapes):
        raise argparse.ArgumentTypeError(
            f"expected '{dims};{dims};...' with {size} positive integers per shape, or 'none', "
            f"got {text!r}")
    return list(dict.fromkeys(shapes))


def parse_loops(text):
    """Parse "T,B,I,H,O;..." (or "none") into a list of training-loop specs (see :data:`LOOPS`)."""
    return parse_shapes(text, "T,B,I,H,O")


def parse_layers(text):
    """Parse "KIND:L:D:T,B,I,H;..." (or "none") into a list of layer specs (see :data:`LAYERS`)."""
    if text.strip() == "none":
        return []
    specs = []
    try:
        for item in filter(str.strip, text.split(";")):
            kind, L, D, dims = item.strip().split(":")
            specs.append((kind, int(L), int(D), tuple(parse_shapes(dims)[0])))
    except (ValueError, argparse.ArgumentTypeError):
        specs = []
    if not specs or any(k not in LAYER_CLASSES or L < 1 or D not in (1, 2) for k, L, D, _ in specs):
        raise argparse.ArgumentTypeError(
            f"expected 'KIND:L:D:T,B,I,H;...' (KIND lstm, gru or rnn; D 1 or 2) or 'none', "
            f"got {text!r}")
    return specs


def _positive_int(text):
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def add_arguments(parser):
    """Add the options of ``python -m fastlstm bench`` to an argparse parser."""
    parser.add_argument("--quick", action="store_true", help="the small grid of shapes")
    parser.add_argument("--shapes", type=parse_shapes, metavar="T,B,I,H;...",
                        help="a custom grid of shapes (overrides --quick)")
    parser.add_argument("--threads", type=_positive_int, default=fastlstm.get_num_threads(),
                        metavar="N", help="threads of fastlstm and torch (default: %(default)s)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--cells", type=parse_shapes, default=CELLS, metavar="T,B,I,H;...",
                        help="the step loops of the cell table (default: %s)"
                        % ";".join(",".join(map(str, c)) for c in CELLS))
    parser.add_argument("--layers", type=parse_layers, default=LAYERS, metavar="KIND:L:D:T,B,I,H;...",
                        help="the layer table, e.g. lstm:2:2:50,16,256,256 (kind lstm, gru or rnn; "
                        "L layers; D = 1 or 2 directions); 'none' for no layers (default: %s)"
                        % ";".join(f"{k}:{L}:{D}:{','.join(map(str, d))}" for k, L, D, d in LAYERS))
    parser.add_argument("--loops", type=parse_loops, default=LOOPS, metavar="T,B,I,H,O;...",
                        help="the training-loop table: an LSTM under a read-out of O outputs; "
                        "'none' for no loops (default: %s)"
                        % ";".join(",".join(map(str, spec)) for spec in LOOPS))
    parser.add_argument("--repeat", type=_positive_int, default=DEFAULT_REPEAT, metavar="N",
                        help="timed rounds; the minimum is kept (default: %(default)s)")
    parser.add_argument("--no-torch", action="store_true", help="leave torch.nn.LSTM out")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--plot", metavar="FILE",
                        help="also write a PNG of the speed-ups (needs matplotlib)")
    _bench_distributed.add_arguments(parser)


def cli(args):
    """Run the benchmark that the parsed `args` describe, print the table and write the files."""
    if args.distributed:
        return _bench_distributed.cli(args)
    shapes = args.shapes if args.shapes is not None else (QUICK if args.quick else FULL)
    report = run(shapes, args.threads, args.dtype, args.repeat, use_torch=not args.no_torch,
                 cells=args.cells, layers=args.layers, loops=args.loops)
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        _log(f"wrote {args.json}")
    if args.plot:
        if plot(report, args.plot):
            _log(f"wrote {args.plot}")
        else:
            _log(f"note: --plot needs matplotlib (pip install matplotlib); {args.plot} not written")
