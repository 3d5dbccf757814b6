"""fastlstm, its NumPy reference, torch and onnxruntime under pytest-benchmark, grouped by shape,
kind and pass; then the step loops of the cell (fastlstm, reference and torch.nn.LSTMCell), the
layers, the streams (one time step at a time) and a NumPy training loop.

    pytest bench/ [--benchmark-min-rounds=3] [--bench-dtype=float64]

The contenders and their setup are those of ``python -m fastlstm bench`` (:mod:`fastlstm.bench`);
onnxruntime runs the forward only, in float32. Each benchmark also checks that its result matches
the reference's.
"""
import pytest

from fastlstm import bench


def _shape_id(shape):
    return "T{}-B{}-I{}-H{}".format(*shape)


# (table, kind, shape): the LSTM's whole-sequence passes, the GRU's and the RNN's on one shape, then
# the step loops of the LSTM cell
CASES = ([(bench.CONTENDERS, "lstm", shape) for shape in bench.QUICK]
         + [(bench.CONTENDERS, kind, bench.QUICK[1]) for kind in ("gru", "rnn")]
         + [(bench.CELL_CONTENDERS, "lstm", shape) for shape in bench.CELLS])


def _case_id(case):
    table, kind, shape = case
    return ("" if table is bench.CONTENDERS else "cell-loop-") + f"{kind}-" + _shape_id(shape)


def skip_unless_runs(contender, pass_, dtype):
    """Skip the benchmark of a contender that is not installed or lacks the pass or dtype."""
    if contender == "torch":
        pytest.importorskip("torch")
    if contender == bench.FROZEN and pass_ != "forward":
        pytest.skip("the frozen forward has no backward")
    if contender == "onnxruntime":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
        if pass_ != "forward" or dtype != "float32":
            pytest.skip("onnxruntime: the forward in float32 only")


@pytest.mark.parametrize("pass_", bench.PASSES)
@pytest.mark.parametrize("contender", list(bench.CONTENDERS))
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_sequence(benchmark, cases, dtype, threads, case, contender, pass_):
    """A whole-sequence pass, or a user's loop of T cell calls (whose results are those of the
    whole-sequence reference)."""
    table, kind, shape = case
    if contender not in table:
        pytest.skip(f"{contender} has no step loop")
    skip_unless_runs(contender, pass_, dtype)
    problem, expected = cases(shape, kind)
    call = dict(zip(bench.PASSES, table[contender](problem, threads)))[pass_]
    T, B, I, H = shape
    label = ("" if table is bench.CONTENDERS else "cell loop ") + f"{kind} "
    benchmark.group = f"{label}T={T} B={B} I={I} H={H} {pass_}"
    flops = bench.flops_forward(shape, kind) * (1 if pass_ == "forward" else 3)
    benchmark.extra_info["gflop"] = flops / 1e9
    bench.time_call(call)  # settle: outlast the threads that the previous benchmark left spinning
    result = benchmark(call)
    bench.check_close(result, expected[pass_], dtype, f"{label}{contender} {pass_}")


@pytest.mark.parametrize("pass_", bench.PASSES)
@pytest.mark.parametrize("contender", list(bench.LAYER_CONTENDERS))
@pytest.mark.parametrize("spec", bench.LAYERS, ids=bench.layer_label)
def test_layer(benchmark, dtype, threads, spec, contender, pass_):
    """A whole layer (stacked, bidirectional LSTM; GRU) on fastlstm, on the reference's functions,
    as the torch module and on onnxruntime; each checked against the reference layer."""
    skip_unless_runs(contender, pass_, dtype)
    problem = bench.make_layer_problem(spec, dtype)
    expected = dict(zip(bench.PASSES, bench.setup_reference_layer(problem, threads)))[pass_]()
    call = dict(zip(bench.PASSES, bench.LAYER_CONTENDERS[contender](problem, threads)))[pass_]
    benchmark.group = f"layer {bench.layer_label(spec)} {pass_}"
    bench.time_call(call)
    result = benchmark(call)
    bench.check_close(result, expected, dtype, f"layer {contender} {pass_}")


@pytest.mark.parametrize("contender", ["fastlstm", "fastlstm + matmul", "reference"])
@pytest.mark.parametrize("spec", bench.LOOPS, ids=lambda s: "T{}-B{}-I{}-H{}-O{}".format(*s))
def test_training_loop(benchmark, dtype, threads, spec, contender):
    """A step of a plain NumPy training loop (forward, read-out, loss gradient, backward, SGD) with
    NumPy's BLAS at its defaults, each step timed as a user's script meets it; the
    read-out's products by NumPy's @ or, for "fastlstm + matmul", by fastlstm.matmul. Each step's
    loss is checked against the reference loop's at the same step."""
    import numpy as np

    import fastlstm

    module = fastlstm.reference if contender == "reference" else fastlstm
    product = fastlstm.matmul if contender.endswith("matmul") else np.matmul
    step = bench.make_training_step(module, spec, dtype, product=product)
    twin = bench.make_training_step(fastlstm.reference, spec, dtype)
    benchmark.group = "training loop T={} B={} I={} H={} O={}".format(*spec)
    losses = []
    benchmark.pedantic(lambda: losses.append(step()), rounds=5, iterations=1)
    expected = [twin() for _ in losses]
    np.testing.assert_allclose(losses, expected, **bench.TOLERANCES[dtype])


@pytest.mark.parametrize("contender", list(bench.STREAM_CONTENDERS))
@pytest.mark.parametrize("spec", bench.STREAMS, ids=lambda s: "L{}-B{}-I{}-H{}".format(*s))
def test_stream(benchmark, dtype, threads, spec, contender):
    """bench.STEPS time steps of a stack of LSTM layers, one at a time: layer.stream, the cells of
    fastlstm and of the reference per layer and step, torch.nn.LSTMCell likewise; each checked
    against the reference's cells."""
    if contender == "torch":
        pytest.importorskip("torch")
    layer, xs = bench.make_stream_problem(spec, dtype)
    expected = bench.STREAM_CONTENDERS["reference"](layer, xs, threads)(True)
    run = bench.STREAM_CONTENDERS[contender](layer, xs, threads)
    benchmark.group = "stream L={} B={} I={} H={}, {} steps".format(*spec, bench.STEPS)
    bench.time_call(lambda: run(False))
    result = benchmark(run, True)
    bench.check_close({"hs": result}, {"hs": expected}, dtype, f"stream {contender}")
