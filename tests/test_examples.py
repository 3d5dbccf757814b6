"""The examples learn what they claim, in --quick mode, and train the same with fastlstm.reference.

Each example's main(argv) returns its results; the runs here pass --threads 1 because this suite
shares its machine (CI, other jobs), where a second OpenMP thread waiting at each time step's
barrier for a busy core slows the small quick runs down many times (results do not depend on the
thread count).
"""
import importlib.util
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import mpiexec, needs_mpi, source_file

EXAMPLES = source_file("examples")
COMMON = ["--quick", "--threads", "1"]


def load(name):
    """The example examples/{name}.py as a module (its main not run)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))  # for the examples' `import _common`
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_runs():
    """Every example's --quick run, once per test module, with the speed-up measurement on."""
    cache = {}

    def run(name, *extra):
        if name not in cache:
            cache[name] = load(name).main(COMMON + list(extra))
        return cache[name]

    return run


# ---- the learning outcomes -----------------------------------------------------------------------


def test_hello_predicts_every_next_character(quick_runs):
    results = quick_runs("hello")
    for name in ("RNN", "LSTM"):
        assert results[name]["accuracy"] == 1.0, name
        assert results[name]["losses"][-1] < 0.1, name


def test_char_lm_loss_falls_below_the_unigram_entropy(quick_runs):
    results = quick_runs("char_lm")
    unigram = results["unigram_entropy"]
    assert 3.0 < unigram < 3.2  # The Devil's Dictionary: 3.09 nats per character
    assert results["held_out_loss"] < unigram - 0.4
    assert np.mean(results["losses"][-10:]) < unigram - 0.4


def test_video_activity_is_well_above_chance(quick_runs):
    results = quick_runs("video_activity")
    assert results["accuracy"] > 0.7  # chance: 1/6
    counts = results["confusion"]
    assert counts.shape == (6, 6) and counts.sum() == 300
    assert np.all(np.diag(counts) > counts.sum(axis=1) / 2)  # every class mostly right


def test_forecast_beats_the_last_value_baseline(quick_runs):
    results = quick_runs("forecast")
    assert results["mse"] < 0.85 * results["baseline_mse"]
    assert results["mse"] > results["noise_floor"]  # a sanity check of the data: noise is noise


# ---- the drop-in claim on these workloads --------------------------------------------------------


@pytest.mark.parametrize("name, steps", [("hello", 300), ("char_lm", 12), ("video_activity", 20),
                                         ("forecast", 20)])
def test_reference_backend_gives_the_same_losses(name, steps):
    module = load(name)
    argv = COMMON + ["--dtype", "float64", "--steps", str(steps), "--speedup-steps", "0"]
    fast = module.main(argv + ["--backend", "fastlstm"])
    reference = module.main(argv + ["--backend", "reference"])
    if name == "hello":
        for model in ("RNN", "LSTM"):
            np.testing.assert_allclose(fast[model]["losses"], reference[model]["losses"],
                                       rtol=1e-9)
    else:
        assert len(fast["losses"]) == steps
        np.testing.assert_allclose(fast["losses"], reference["losses"], rtol=1e-9)


def test_speedup_is_measured_and_printed(capsys):
    load("forecast").main(COMMON + ["--steps", "2", "--speedup-steps", "2"])
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("speed-up"))
    assert "fastlstm.reference" in line and "speed-up" in line
    agreement = float(line.split("losses agree to ")[1].split()[0])
    assert agreement < 1e-4  # float32


# ---- the scripts as a person runs them -----------------------------------------------------------


def test_hello_runs_from_the_command_line():
    done = subprocess.run([sys.executable, str(EXAMPLES / "hello.py"), *COMMON,
                           "--speedup-steps", "20"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "before training" in done.stdout and "after" in done.stdout
    assert done.stdout.count("right") > done.stdout.count("wrong")
    assert "speed-up" in done.stdout


def test_plot_is_saved(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "loss.png"
    load("forecast").main(COMMON + ["--steps", "3", "--speedup-steps", "0", "--plot", str(path)])
    assert path.stat().st_size > 1000


def test_help_describes_every_example():
    for name in ("hello", "char_lm", "video_activity", "forecast"):
        done = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--help"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "--quick" in done.stdout and "--backend" in done.stdout


# ---- data-parallel under mpiexec -----------------------------------------------------------------


def printed_losses(output):
    """The training and held-out losses an example printed, in order."""
    return re.findall(r"(?:training|held-out) loss(?: \(mean squared error\))? (\d+\.\d+)", output)


@needs_mpi
@pytest.mark.parametrize("name", ["char_lm", "forecast"])
def test_example_learns_the_same_on_2_ranks(name):
    """The same script under mpiexec -n 2 (each batch split between the ranks) prints the same
    losses as on one process, rank 0 alone printing; float64, so the prints agree exactly."""
    argv = [EXAMPLES / f"{name}.py", *COMMON, "--dtype", "float64", "--steps", "12",
            "--speedup-steps", "0"]
    alone = subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True,
                           timeout=120)
    assert alone.returncode == 0, alone.stderr
    on_two = mpiexec(2, *argv)
    assert "data-parallel on 2 MPI processes" in on_two
    assert on_two.count("step     1:") == 1  # one rank prints
    assert len(printed_losses(alone.stdout)) > 5
    assert printed_losses(on_two) == printed_losses(alone.stdout)


def test_examples_do_not_start_mpi_outside_a_launcher(quick_runs):
    quick_runs("forecast")
    assert "mpi4py.MPI" not in sys.modules
