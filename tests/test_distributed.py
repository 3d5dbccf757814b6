"""fastlstm.distributed on a real MPI: runs of tests/mpi_worker.py under mpiexec at 1, 2 and 3
ranks, over TCP on the loopback interface as between machines (no shared-memory transport).

What they show: after the start and after every step all ranks hold bitwise equal parameters;
training on shares of unequal size (weighted mean) equals one process on the whole batch (float64,
1e-10 relative); the reproducible mode gives the same bits in every run, and ChunkedGradients the
same bits at 1, 2 and 3 ranks; a checkpoint taken at 2 ranks resumes at 3 and continues bit for
bit; a sub-communicator works as COMM_WORLD does; errors name the argument, on every rank; the
README's training script runs and resumes; `bench --distributed` reports every rank count. The
ranks run with one OpenMP thread each.

They skip when mpi4py or mpiexec is missing (`pip install "fastlstm[mpi]"`). This process never
imports mpi4py.MPI (which would start MPI in pytest itself): only the children do.
"""
import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import mpi_worker
from conftest import CHILD_CWD, mpiexec, needs_mpi, source_file

WORKER = pathlib.Path(mpi_worker.__file__).resolve()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each distinct run once per module: runs(n, scenario, *options) -> [snapshots of rank r]."""
    cache = {}

    def run(n, scenario, *options, again=False):
        key = (n, scenario, *options, again)
        if key not in cache:
            out = tmp_path_factory.mktemp(scenario)
            mpiexec(n, "-m", "mpi4py", WORKER, scenario, out, *options)
            cache[key] = [mpi_worker.read_snapshots(out, rank) for rank in range(n)]
        return cache[key]

    return run


def assert_ranks_bitwise_equal(per_rank):
    for rank, snapshots in enumerate(per_rank[1:], 1):
        assert len(snapshots) == len(per_rank[0])
        for i, (mine, first) in enumerate(zip(snapshots, per_rank[0])):
            for key in first:
                np.testing.assert_array_equal(mine[key], first[key],
                                              err_msg=f"rank {rank}, snapshot {i}, {key}")


def assert_same_bits(snapshots, expected):
    assert len(snapshots) == len(expected)
    for i, (mine, theirs) in enumerate(zip(snapshots, expected)):
        for key in theirs:
            np.testing.assert_array_equal(mine[key], theirs[key], err_msg=f"snapshot {i}, {key}")


def assert_close_to_one_process(snapshots, optimizer, first_step=0):
    alone = mpi_worker.train_alone(optimizer)[first_step:]
    assert len(snapshots) == len(alone)
    for i, (mine, theirs) in enumerate(zip(snapshots, alone)):
        for key in theirs:
            np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-10, atol=1e-12,
                                       err_msg=f"snapshot {i}, {key}")
    assert not np.array_equal(alone[0]["lstm.W_l0"], alone[-1]["lstm.W_l0"])  # it did train


def test_import_without_mpi4py_names_the_extra():
    code = ("import sys; sys.modules['mpi4py'] = None\n"  # as if mpi4py were not installed
            "try:\n    import fastlstm.distributed\n"
            "except ImportError as error:\n    print(error)\nelse:\n    print('imported')")
    done = subprocess.run([sys.executable, "-c", code], cwd=CHILD_CWD, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "fastlstm[mpi]" in done.stdout and "mpi4py" in done.stdout


@needs_mpi
@pytest.mark.parametrize("n, optimizer", [(2, "adam"), (3, "sgd")])
def test_shards_of_unequal_size_train_as_one_process(runs, n, optimizer):
    """B = 7 rows on 2 ranks (4 + 3) or 3 (3 + 2 + 2), weighted by share; every rank starts from
    its own seed, so the equality at snapshot 0 is the broadcast's."""
    per_rank = runs(n, "train", "--optimizer", optimizer)
    assert_ranks_bitwise_equal(per_rank)
    assert_close_to_one_process(per_rank[0], optimizer)


@needs_mpi
def test_sub_communicators_train_apart(runs):
    """3 ranks split into {0, 2} and {1}: each group trains on its own communicator as one
    process would."""
    per_rank = runs(3, "train", "--split")
    assert_ranks_bitwise_equal([per_rank[0], per_rank[2]])
    for snapshots in per_rank:
        assert_close_to_one_process(snapshots, "adam")


@needs_mpi
def test_reproducible_mode_gives_the_same_bits_in_every_run(runs):
    first = runs(3, "train", "--reproducible")
    second = runs(3, "train", "--reproducible", again=True)
    assert_ranks_bitwise_equal(first)
    assert_ranks_bitwise_equal(second)
    assert_same_bits(second[0], first[0])
    assert_close_to_one_process(first[0], "adam")


@needs_mpi
def test_chunked_gradients_give_the_same_bits_on_any_number_of_ranks(runs):
    one = runs(1, "chunks")
    for n in (2, 3):
        per_rank = runs(n, "chunks")
        assert_ranks_bitwise_equal(per_rank)
        assert_same_bits(per_rank[0], one[0])
    assert_close_to_one_process(one[0], "adam")


@needs_mpi
def test_a_checkpoint_from_2_ranks_resumes_on_3_bit_for_bit(runs, tmp_path):
    """2 ranks save after step 2; 3 ranks resume there: the same bits as 1 rank throughout."""
    checkpoint = tmp_path / "after_2.npz"
    runs(2, "chunks", "--save-at", 2, checkpoint)
    resumed = runs(3, "chunks", "--resume", checkpoint)
    assert len(resumed[0]) == 1 + mpi_worker.STEPS - 2  # the loaded state, then steps 3 and 4
    assert_ranks_bitwise_equal(resumed)
    assert_same_bits(resumed[0], runs(1, "chunks")[0][2:])


@needs_mpi
def test_errors_name_the_argument_on_every_rank(tmp_path):
    mpiexec(2, "-m", "mpi4py", WORKER, "errors", tmp_path)
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    expected = {
        "layouts differ": r"ValueError: params: rank 1 has \('W', \(2, 4\), '<f8'\) where rank 0 "
                          r"has \('W', \(2, 3\), '<f8'\).*same keys, shapes and dtypes",
        "root": r"ValueError: root: expected a rank in \[0, comm.size\) = \[0, 2\), got 2",
        "op": r"ValueError: op: expected 'mean' or 'sum', got 'max'",
        "negative weight": r"ValueError: weight: expected a finite number >= 0, got -1",
        "weight type": r"TypeError: weight: expected a number .* got str",
        "zero total weight": r"ValueError: weight: expected a positive total over the ranks",
        "comm": r"TypeError: comm: expected an mpi4py intracommunicator .* got 'world'",
        "int array": r"TypeError: grads\['W'\]: expected a float32 or float64 ndarray, got int64",
        "read-only": r"ValueError: grads\['W'\]: is read-only",
        "not a dict": r"TypeError: grads: expected a dict of arrays, got list",
        "optimizer": r"TypeError: optimizer: expected a fastlstm.train optimizer .* got object",
        "max_norm": r"ValueError: max_norm: expected a positive number or None, got 0",
        "shard n": r"ValueError: n: expected an integer >= 0, got -1",
        "chunk index": r"ValueError: index: expected an integer in \[0, n_chunks\) = \[0, 2\), "
                       r"got 2",
        "add a chunk of another rank": r"ValueError: index: expected one of this rank's chunks",
        "reduce before adding": r"ValueError: reduce: chunks \[\d, \d\] of this rank were not "
                                r"added",
    }
    for rank in range(2):
        for case, pattern in expected.items():
            assert case in seen[rank], (rank, case)
            assert re.search(pattern, seen[rank][case]), \
                (rank, case, seen[rank][case])
    assert seen[0]["load a missing file"].startswith("FileNotFoundError")
    assert re.match(r"RuntimeError: load_checkpoint\('.*missing.npz'\) failed on rank 0: "
                    r"FileNotFoundError", seen[1]["load a missing file"])


@needs_mpi
def test_distributed_benchmark_reports_every_rank_count(tmp_path):
    """bench --distributed on 2 ranks: a step timed on 1 and on 2 ranks per shape (after its own
    checks of the combined gradient and of the ranks' equality), and the allreduce's sizes."""
    out = tmp_path / "bench.json"
    printed = mpiexec(2, "-m", "fastlstm", "bench", "--distributed", "--shapes", "4,5,3,6;2,3,2,2",
                      "--steps", "2", "--dtype", "float64", "--json", out)
    report = json.loads(out.read_text())
    assert [(r["shape"], r["ranks"]) for r in report["results"]] == [
        ([4, 5, 3, 6], 1), ([4, 5, 3, 6], 2), ([2, 3, 2, 2], 1), ([2, 3, 2, 2], 2)]
    assert [r["rows_per_rank"] for r in report["results"]] == [[5], [3, 2], [3], [2, 1]]
    for r in report["results"]:
        T, B, I, H = r["shape"]
        assert r["parameters"] == 4 * H * (I + H + 1) + H * I + I  # LSTM(I, H) + Linear(H, I)
        assert 0 < r["allreduce_share"] < 1 and r["step_ms"] > 0
    sizes = [m["bytes"] for m in report["allreduce"]["messages"]]
    assert sizes[0] == 4 and sizes[-1] == 16 << 20
    assert printed.count("data-parallel training step") == 1  # rank 0 alone prints
    assert printed.count("\n4,5,3,6 ") == 2 and "latency" in printed


@needs_mpi
def test_readme_training_script_runs_and_resumes(tmp_path):
    """The README's train.py with a checkpoint every 2 steps: 2 steps on 2 ranks, then resumed
    from that checkpoint on 3 ranks up to step 4."""
    readme = source_file("README.md").read_text()
    script = re.search(r"```python\n(# train.py: the same script.*?)```", readme, re.S).group(1)
    checkpoint = tmp_path / "run.npz"
    for old, new in [("step % 100 == 99", "step % 2 == 1"), ('"run.npz"', repr(str(checkpoint)))]:
        assert old in script, old
        script = script.replace(old, new)
    assert "range(first, 300)" in script
    for last in (2, 4):
        (tmp_path / f"train{last}.py").write_text(script.replace("300", str(last)))
    first = mpiexec(2, "-m", "mpi4py", tmp_path / "train2.py")
    assert re.findall(r"step (\d+): loss", first) == ["2"]
    resumed = mpiexec(3, "-m", "mpi4py", tmp_path / "train4.py", checkpoint)
    assert re.findall(r"step (\d+): loss", resumed) == ["4"]  # steps 3 and 4 only
