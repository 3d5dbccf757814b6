"""fastlstm, its NumPy reference and torch.nn.LSTM under pytest-benchmark, grouped by shape, pass.

    pytest bench/ [--benchmark-min-rounds=3] [--bench-dtype=float64]

The contenders and their setup are those of ``python -m fastlstm bench`` (:mod:`fastlstm.bench`).
Each benchmark also checks that its result matches the reference's.
"""
import pytest

from fastlstm import bench


def _shape_id(shape):
    return "T{}-B{}-I{}-H{}".format(*shape)


@pytest.mark.parametrize("pass_", bench.PASSES)
@pytest.mark.parametrize("contender", list(bench.CONTENDERS))
@pytest.mark.parametrize("shape", bench.QUICK, ids=_shape_id)
def test_lstm(benchmark, cases, dtype, threads, shape, contender, pass_):
    if contender == "torch":
        pytest.importorskip("torch")
    problem, expected = cases(shape)
    call = dict(zip(bench.PASSES, bench.CONTENDERS[contender](problem, threads)))[pass_]
    T, B, I, H = shape
    benchmark.group = f"T={T} B={B} I={I} H={H} {pass_}"
    flops = bench.flops_forward(shape) * (1 if pass_ == "forward" else 3)
    benchmark.extra_info["gflop"] = flops / 1e9
    bench.time_call(call)  # settle: outlast the threads that the previous benchmark left spinning
    result = benchmark(call)
    bench.check_close(result, expected[pass_], dtype, f"{contender} {pass_}")
