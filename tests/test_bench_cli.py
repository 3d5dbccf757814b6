"""``python -m fastlstm bench`` and ``python -m fastlstm config`` end to end, on tiny shapes."""
import json
import subprocess
import sys

import pytest

from conftest import CHILD_CWD
from fastlstm.__main__ import main


def fastlstm_cli(*args):
    """Run ``python -m fastlstm ARGS`` in a fresh interpreter; return the completed process."""
    return subprocess.run([sys.executable, "-m", "fastlstm", *args], capture_output=True,
                          text=True, timeout=120, cwd=CHILD_CWD)


@pytest.mark.parametrize("dtype, shapes", [
    ("float32", [(3, 2, 4, 5), (1, 1, 3, 2)]),
    ("float64", [(3, 2, 4, 5)]),
], ids=["float32", "float64"])
def test_bench_prints_the_table_and_writes_json(tmp_path, dtype, shapes):
    out = tmp_path / "bench.json"
    done = fastlstm_cli("bench", "--shapes", ";".join(",".join(map(str, s)) for s in shapes),
                        "--cells", "4,2,3,5", "--layers", "lstm:2:2:3,2,4,5;gru:1:1:3,2,4,5",
                        "--loops", "4,2,3,5,2", "--streams", "2,3,4,5", "--repeat", "2",
                        "--dtype", dtype, "--json", str(out), "--no-torch", "--no-onnxruntime")
    assert done.returncode == 0, done.stderr
    assert "GEMM peak" in done.stdout and "shape (T,B,I,H)" in done.stdout
    for k, (T, B, I, H) in enumerate(shapes, 1):
        assert f"\n{T},{B},{I},{H} " in done.stdout
        assert f"[{k}/{len(shapes)}] T={T} B={B} I={I} H={H}" in done.stderr
    report = json.loads(out.read_text())
    assert report["machine"]["dtype"] == dtype
    assert report["gemm_peak_gflops"] > 0
    assert [(r["T"], r["B"], r["I"], r["H"]) for r in report["results"]] == shapes
    assert "speed-ups whose rounds fall on both sides of 1.00x" in done.stdout
    for record in report["results"]:
        # the reference's speed-ups, of the minima and in each of the 2 rounds
        rounds = record["speedup_per_round"]["reference"]
        assert sorted(rounds) == ["forward", "forward_backward"]
        for pass_, ratios in rounds.items():
            assert len(ratios) == 2
            # the ratio of the minima lies within the rounds' ratios, which have its orientation
            speedup = record["speedup"]["reference"][pass_]
            assert min(ratios) * (1 - 1e-12) <= speedup <= max(ratios) * (1 + 1e-12)
        times = [ms for passes in record["ms"].values() for ms in passes.values()]
        # fastlstm's and the reference's two passes, and the frozen forward
        assert sorted(record["ms"]) == ["fastlstm", "fastlstm frozen", "reference"]
        assert len(times) == 5
        assert all(ms > 0 for ms in times)
    # the step loops of the drop-in cell, in microseconds per step
    assert "step loop (T,B,I,H)" in done.stdout and "\n4,2,3,5 " in done.stdout
    (cell,) = report["cell_results"]
    assert (cell["T"], cell["B"], cell["I"], cell["H"]) == (4, 2, 3, 5)
    for name in ("fastlstm", "reference"):
        for pass_, us in cell["us_per_step"][name].items():
            assert us == pytest.approx(1e3 * cell["ms"][name][pass_] / 4)
    # the layers: a 2-layer bidirectional LSTM and a GRU
    assert "\nLSTM x2 bi 3,2,4,5 " in done.stdout and "\nGRU x1 uni 3,2,4,5 " in done.stdout
    lstm, gru = report["layer_results"]
    assert (lstm["layer"], lstm["num_layers"], lstm["bidirectional"]) == ("LSTM", 2, True)
    assert (gru["layer"], gru["num_layers"], gru["bidirectional"]) == ("GRU", 1, False)
    # forward FLOPs: 2*T*B*(I_k+H)*G per layer and direction
    assert lstm["flops"]["forward"] == 2 * (2 * 3 * 2 * (4 + 5) * 20 + 2 * 3 * 2 * (10 + 5) * 20)
    assert gru["flops"]["forward"] == 2 * 3 * 2 * (4 + 5) * 15
    assert all(ms > 0 for r in (lstm, gru) for passes in r["ms"].values() for ms in passes.values())
    # the streaming table: a 2-layer stack of B = 3 stepped by the stream and by the cells
    assert "stream (L,B,I,H)" in done.stdout and "\n2,3,4,5 " in done.stdout
    (stream,) = report["stream_results"]
    assert (stream["num_layers"], stream["B"], stream["I"], stream["H"]) == (2, 3, 4, 5)
    assert set(stream["us_per_step"]) == {"fastlstm stream", "fastlstm cells", "reference"}
    assert all(us > 0 for us in stream["us_per_step"].values())
    assert stream["speedup"]["reference"] == pytest.approx(
        stream["us_per_step"]["reference"] / stream["us_per_step"]["fastlstm stream"])
    # the NumPy training loop: every step of both backends timed, ratios per round
    assert "loop (T,B,I,H,O)" in done.stdout and "\n4,2,3,5,2 " in done.stdout
    (loop,) = report["loop_results"]
    assert (loop["T"], loop["B"], loop["I"], loop["H"], loop["O"]) == (4, 2, 3, 5, 2)
    assert {"fastlstm", "fastlstm, BLAS's own threads", "fastlstm, fixed threads",
            "reference"} <= set(loop["step_ms"])
    steps = 2 * loop["steps_per_round"]
    assert all(len(ms) == steps and min(ms) > 0 for ms in loop["step_ms"].values())
    assert len(loop["ratio_per_round"]["reference / fastlstm"]) == 2
    assert len(loop["ratio_per_round"]["reference / fastlstm + matmul"]) == 2
    assert len(loop["ratio_per_round"]["fastlstm, fixed threads / fastlstm"]) == 2
    assert len(loop["ratio_per_round"]["fastlstm, BLAS's own threads / fastlstm"]) == 2


def test_report_lists_the_speed_ups_within_the_noise():
    """Under a table, the speed-ups whose rounds fall on both sides of 1.00x, and only those."""
    from fastlstm.bench.report import _within_noise

    record = {"T": 5, "B": 2, "I": 3, "H": 4, "speedup_per_round": {
        "torch": {"forward": [0.9, 1.1, 1.0], "forward_backward": [1.2, 1.3, 1.1]},
        "onnxruntime": {"forward": [0.8, 0.95, 0.9], "frozen": [0.97, 1.02, 1.0]}}}
    note = " ".join(_within_noise([record], lambda r: "5,2,3,4").split())
    assert note.endswith("lowest-highest): 5,2,3,4 torch fwd 0.90-1.10x; "
                         "5,2,3,4 onnxruntime frozen 0.97-1.02x")
    record["speedup_per_round"]["torch"]["forward"] = [1.01, 1.1]
    record["speedup_per_round"]["onnxruntime"]["frozen"] = [0.9, 0.99]
    assert _within_noise([record], lambda r: "").endswith("lowest-highest): none")
    del record["speedup_per_round"]  # a report from before the rounds were kept: no note
    assert _within_noise([record], lambda r: "") == ""


def test_bench_times_every_kind(tmp_path):
    """--kinds adds a table per kind, with its FLOPs."""
    out = tmp_path / "bench.json"
    done = fastlstm_cli("bench", "--shapes", "3,2,4,5", "--kinds", "lstm,gru,rnn", "--cells", "none",
                        "--layers", "none", "--loops", "none", "--streams", "none", "--repeat", "1",
                        "--threads", "1", "--json", str(out), "--no-torch", "--no-onnxruntime")
    assert done.returncode == 0, done.stderr
    assert "\nGRU: gru_forward" in done.stdout and "\nRNN: rnn_forward" in done.stdout
    report = json.loads(out.read_text())
    assert [r["kind"] for r in report["results"]] == ["lstm", "gru", "rnn"]
    # forward FLOPs 2*T*B*(I+H)*G*H with G = 4, 3, 1
    assert [r["flops"]["forward"] for r in report["results"]] == [
        2 * 3 * 2 * (4 + 5) * G * 5 for G in (4, 3, 1)]


def test_bench_times_onnxruntime(tmp_path):
    """onnxruntime, when installed, times the forward of each kind and layer, as stated above the
    table."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    out = tmp_path / "bench.json"
    done = fastlstm_cli("bench", "--shapes", "3,2,4,5", "--kinds", "lstm,gru,rnn", "--cells", "none",
                        "--layers", "lstm:2:2:3,2,4,5", "--loops", "none", "--streams", "none",
                        "--repeat", "1", "--threads", "1", "--json", str(out), "--no-torch")
    assert done.returncode == 0, done.stderr
    assert (f"onnxruntime {ort.__version__}: forward only, model from layer.to_onnx, "
            "intra_op_num_threads = the threads, inter_op_num_threads 1, sequential execution, "
            "intra-op spinning off") in done.stdout
    assert "speed-up vs onnxruntime" in done.stdout
    report = json.loads(out.read_text())
    assert report["contenders"] == ["fastlstm", "fastlstm frozen", "reference", "onnxruntime"]
    assert [r["kind"] for r in report["results"]] == ["lstm", "gru", "rnn"]
    for record in report["results"] + report["layer_results"]:
        assert sorted(record["ms"]["onnxruntime"]) == ["forward"]
        assert sorted(record["ms"]["fastlstm"]) == ["forward", "forward_backward"]
        assert record["speedup"]["onnxruntime"]["forward"] > 0
        # and against the frozen forward, which is timed as the forward alone
        assert sorted(record["ms"]["fastlstm frozen"]) == ["forward"]
        assert record["speedup"]["onnxruntime"]["frozen"] == pytest.approx(
            record["ms"]["onnxruntime"]["forward"] / record["ms"]["fastlstm frozen"]["forward"])


def test_bench_leaves_onnxruntime_out_in_float64(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    done = fastlstm_cli("bench", "--shapes", "3,2,4,5", "--cells", "none", "--layers", "none",
                        "--loops", "none", "--streams", "none", "--repeat", "1", "--dtype", "float64",
                        "--no-torch")
    assert done.returncode == 0, done.stderr
    assert "not used (its recurrent kernels are float32 only)" in done.stdout


@pytest.mark.parametrize("kinds", ["lstm,cnn", "", ","])
def test_bench_names_the_bad_kinds(capsys, kinds):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--kinds", kinds])
    assert exit_.value.code != 0
    assert "argument --kinds: expected kinds among lstm,gru,rnn" in capsys.readouterr().err


def test_bench_rejects_bad_shapes():
    done = fastlstm_cli("bench", "--shapes", "3,2,4")
    assert done.returncode != 0 and done.stdout == ""
    assert "--shapes" in done.stderr and "T,B,I,H" in done.stderr and "'3,2,4'" in done.stderr


@pytest.mark.parametrize("shapes", ["3,2,a,5", "3,2,0,5", ";", "1,1,1,1;2,2"])
def test_bench_names_the_bad_shapes(capsys, shapes):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--shapes", shapes])
    assert exit_.value.code != 0
    assert "argument --shapes: expected 'T,B,I,H;" in capsys.readouterr().err


@pytest.mark.parametrize("layers", ["lstm:2:3:3,2,4,5", "cnn:1:1:3,2,4,5", "lstm:2:2", "x"])
def test_bench_names_the_bad_layers(capsys, layers):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--layers", layers])
    assert exit_.value.code != 0
    assert "argument --layers: expected 'KIND:L:D:T,B,I,H;...'" in capsys.readouterr().err


def test_config_prints_openmp():
    done = fastlstm_cli("config")
    assert done.returncode == 0, done.stderr
    assert "openmp" in done.stdout
