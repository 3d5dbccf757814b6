"""Threads, SIMD selection, build information and the documentation's examples."""
import doctest
import subprocess
import sys
import threading

import pytest

import fastlstm
from conftest import CHILD_CWD
from fastlstm import _config, _functions, reference


def test_num_threads_context_restores():
    before = fastlstm.get_num_threads()
    with fastlstm.num_threads(3):
        assert fastlstm.get_num_threads() == 3
        with fastlstm.num_threads(1):
            assert fastlstm.get_num_threads() == 1
        assert fastlstm.get_num_threads() == 3
    assert fastlstm.get_num_threads() == before


def test_num_threads_context_is_per_python_thread():
    seen = {}

    def other():
        seen["other"] = fastlstm.get_num_threads()

    with fastlstm.num_threads(5):
        worker = threading.Thread(target=other)
        worker.start()
        worker.join()
    assert seen["other"] == fastlstm.get_num_threads() != 5


def test_set_num_threads():
    try:
        fastlstm.set_num_threads(2)
        assert fastlstm.get_num_threads() == 2
    finally:
        _config._state["threads"] = None


def test_default_follows_omp_num_threads():
    code = "import fastlstm; print(fastlstm.get_num_threads())"
    env = {"OMP_NUM_THREADS": "3", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=CHILD_CWD)
    assert out.stdout.strip() == "3", out.stderr


def test_show_config(capsys):
    fastlstm.show_config()
    text = capsys.readouterr().out
    for key in ("openmp", "simd", "compiler", "cflags", "num_threads", "dynamic_threads"):
        assert key in text
    config = _config.config()
    assert config["simd"] in config["simd_available"]
    assert "-march=native" not in config["cflags"] or "FASTLSTM_NATIVE" in config["openmp_note"]


def test_build_info_matches_the_build():
    """The flags and the OpenMP note come from the extension itself, so they describe this build
    (a rebuild with other switches cannot leave an older record behind)."""
    config = _config.config()
    assert config["openmp"] == ("-fopenmp" in config["cflags"].split())
    expected_note = "OpenMP found" if config["openmp"] else "serial build"
    assert config["openmp_note"].startswith(expected_note), config["openmp_note"]
    assert "-O3" in config["cflags"].split()


def test_use_simd_rejects_unknown_level():
    with pytest.raises(ValueError, match="simd: expected one of"):
        with _config.use_simd("sse9"):
            pass


def test_public_api_mirrors_reference():
    for name in reference.__all__:
        assert callable(getattr(fastlstm, name)), name
        assert getattr(fastlstm, name).__doc__, name
    assert set(_functions.__all__) == set(reference.__all__)


@pytest.mark.parametrize("module", [reference, _functions, _config], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    failures, tried = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert failures == 0


def test_docstring_examples_exist():
    assert doctest.testmod(reference).attempted > 0
    assert doctest.testmod(_functions).attempted > 0


def test_kinds_table_matches_the_c_layer():
    """fastlstm._kinds, which the Python side reads, agrees with csrc/fastlstm.h's enum fl_kind,
    fl_gates and fl_bias_rows."""
    from fastlstm import _core, _kinds

    for kind in _kinds.KINDS.values():
        assert kind.code == int(getattr(_core.fl_kind, "FL_" + kind.name.upper()))
        assert (_core.gates(kind.code), _core.bias_rows(kind.code)) == (kind.gates, kind.bias_rows)
    assert _core.gates(len(_kinds.KINDS)) == 0


# ---- fewer threads while the cores are shared -----------------------------------------------

class Clock:
    """The clock of _config's whiles of fewer threads, moved by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    """This Python thread's sharing state cleared, adjusting on, on 4 threads, with a clock moved
    by hand; all restored afterwards."""
    monkeypatch.setitem(_config._environment, "dynamic", True)
    for name in ("stalled_share", "shared_of", "shared_threads", "shared_until", "shared_tries",
                 "noted_until"):
        monkeypatch.setattr(_config._local, name, getattr(_config._Overrides, name))
    clock = Clock()
    monkeypatch.setattr(_config, "_now", clock)
    with fastlstm.num_threads(4):
        yield clock


def stalled(threads, share, seconds):
    """A pass of `seconds` on `threads` threads that stalled `share` of their time."""
    _config.note_stalls(threads, int(share * threads * seconds * 1e9), seconds)


def test_stalls_halve_the_thread_count_for_a_while(clock):
    assert _config.kernel_args()[0] == 4
    stalled(4, 0.0, 0.01)
    stalled(4, 0.02, 0.01)               # 2%: the running share stays low
    assert _config.kernel_args()[0] == 4
    stalled(4, 0.3, 0.01)                # 30%: a quarter of it is not yet enough
    assert _config.kernel_args()[0] == 4
    stalled(4, 0.3, 0.01)
    assert _config.kernel_args()[0] == 2
    stalled(2, 0.5, 0.01)                # still stalled on 2: halved again
    assert _config.kernel_args()[0] == 1
    stalled(1, 1.0, 0.01)                # one thread cannot stall
    with fastlstm.num_threads(3):        # another count: not cut
        assert _config.kernel_args()[0] == 3
    clock.now += 0.019                   # the first while was a pass long, the second two
    assert _config.kernel_args()[0] == 1
    clock.now += 0.002
    assert _config.kernel_args()[0] == 4


def test_tries_that_stall_double_the_while(clock):
    def cut_for():
        """How long the count is halved from now, after the passes just noted."""
        assert _config.kernel_args()[0] == 2
        seconds = _config._local.shared_until - clock.now
        clock.now = _config._local.shared_until
        assert _config.kernel_args()[0] == 4
        return round(seconds, 6)

    stalled(4, 0.5, 0.002)
    whiles = [cut_for()]
    for _ in range(7):                   # the loop stays shared: every try stalls
        stalled(4, 0.3, 0.002)
        whiles.append(cut_for())
    # from the first while's 5 ms, twice as long each time, up to a tenth of a second
    assert whiles == [0.005, 0.01, 0.02, 0.04, 0.08, 0.1, 0.1, 0.1]
    stalled(4, 0.0, 0.002)               # a try that did not stall: all threads
    assert _config.kernel_args()[0] == 4
    clock.now += 0.5                     # within a calm second: the whiles go on growing
    stalled(4, 0.5, 0.002)
    assert cut_for() == 0.1
    clock.now += 1.01                    # after one: the first while again
    stalled(4, 0.5, 0.002)
    assert cut_for() == 0.005


def test_a_try_that_stalls_little_keeps_all_threads(clock):
    stalled(4, 0.5, 0.01)
    assert _config.kernel_args()[0] == 2
    clock.now += 0.011
    stalled(4, 0.05, 0.01)               # under the threshold's share
    assert _config.kernel_args()[0] == 4


def test_long_passes_keep_the_count_for_ten_of_them(clock):
    for _ in range(16):                  # passes of 2 s that always stall
        stalled(4, 0.5, 2.0)
        clock.now = _config._local.shared_until
    stalled(4, 0.5, 2.0)
    assert _config._local.shared_until - clock.now == pytest.approx(20.0)


def test_a_try_after_passes_on_fewer_threads_still_renews_the_cut(clock):
    stalled(4, 0.5, 0.01)
    assert _config.kernel_args()[0] == 2
    for _ in range(5):                   # the passes on 2 threads do not stall
        stalled(2, 0.0, 0.01)
    clock.now += 0.011
    assert _config.kernel_args()[0] == 4
    stalled(4, 0.1, 0.01)                # the try stalls past the threshold's share: cut again
    assert _config.kernel_args()[0] == 2


def test_fixed_threads_ignores_a_cut(clock):
    stalled(4, 0.5, 0.01)
    assert _config.kernel_args()[0] == 2
    with _config.fixed_threads():
        assert _config.kernel_args()[0] == 4
    assert _config.kernel_args()[0] == 2


def test_cells_count_the_calls_they_did_not_report(clock):
    _config.note_cell_stalls(4, int(0.2 * 4 * 0.001e9), 0.001)  # 20%: a quarter is not enough
    assert _config.kernel_args()[0] == 4
    clock.now += 0.5                     # 500 calls of 1 ms since, none stalled: forgotten
    _config.note_cell_stalls(4, int(0.2 * 4 * 0.001e9), 0.001)
    assert _config.kernel_args()[0] == 4
    _config.note_cell_stalls(4, int(0.2 * 4 * 0.001e9), 0.001)  # back to back: cut
    assert _config.kernel_args()[0] == 2


def test_forget_sharing(clock):
    stalled(4, 0.5, 0.01)
    assert _config.kernel_args()[0] == 2
    _config.forget_sharing()
    assert _config.kernel_args()[0] == 4
    stalled(4, 0.3, 0.01)                # the running share starts again from 0
    assert _config.kernel_args()[0] == 4


def test_fastlstm_dynamic_threads_0_keeps_the_count(clock, monkeypatch):
    monkeypatch.setitem(_config._environment, "dynamic", False)
    for _ in range(5):
        stalled(4, 0.5, 0.01)
    assert _config.kernel_args()[0] == 4


@pytest.mark.parametrize("value, dynamic", [("", True), ("1", True), ("0", False),
                                            ("false", False), ("OFF", False), ("no", False)])
def test_fastlstm_dynamic_threads_is_read(monkeypatch, value, dynamic):
    monkeypatch.setenv("FASTLSTM_DYNAMIC_THREADS", value)
    assert _config._read_dynamic() is dynamic


# Two cores for this process, one of them taken by another process that never yields it (as NumPy's
# BLAS threads spin after a product): a two-thread pass stalls whenever its thread there is
# descheduled. The C passes must report it, and the calls after it use one thread. The cell is large
# enough for a team (B = 50, I = H = 512); it counts its stalls at its barriers.
SHARED_CORES = """
import os, subprocess, sys, numpy as np, fastlstm
from fastlstm import _core
a, b = sorted(os.sched_getaffinity(0))[:2]
os.sched_setaffinity(0, {a, b})
# the busy process stops by itself too, should this one die first
busy = subprocess.Popen([sys.executable, "-c",
                         f"import os, time\\nos.sched_setaffinity(0, {{{a}}})\\n"
                         f"end = time.time() + 60\\nwhile time.time() < end: pass"])
try:
    cell = sys.argv[1] == "cell"
    name, where = ("cell_forward", 7) if cell else ("forward", 12)
    calls, function = [], getattr(_core, name)
    def counting(*args):
        calls.append(args[where])      # the thread count
        return function(*args)
    setattr(_core, name, counting)
    rng = np.random.default_rng(0)
    T, B, I, H = (1, 50, 512, 512) if cell else (200, 16, 64, 128)
    xs = rng.standard_normal((T, B, I)).astype(np.float32)
    W = (0.1 * rng.standard_normal((I, 4 * H))).astype(np.float32)
    U = (0.1 * rng.standard_normal((H, 4 * H))).astype(np.float32)
    bias = np.zeros(4 * H, np.float32)
    h0 = np.zeros((B, H), np.float32)
    with fastlstm.num_threads(2):
        outs = [fastlstm.lstm_cell_forward(xs[0], h0, h0, W, U, bias)[0] if cell else
                fastlstm.lstm_forward(xs, None, None, W, U, bias)[0] for _ in range(40)]
finally:
    busy.kill()
print(calls[0], min(calls), all(np.array_equal(o, outs[0]) for o in outs))
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity")
                    or len(__import__("os").sched_getaffinity(0)) < 2,
                    reason="needs 2 cores, Linux")
@pytest.mark.skipif(not fastlstm._core.openmp_version(), reason="a serial build has one thread")
@pytest.mark.parametrize("what", ["sequence", "cell"])
def test_a_core_taken_by_another_process_gets_one_thread(what):
    out = subprocess.run([sys.executable, "-c", SHARED_CORES, what], capture_output=True,
                         text=True, cwd=CHILD_CWD, timeout=120)
    assert out.stdout.split() == ["2", "1", "True"], out.stdout + out.stderr


def test_fixed_threads_keeps_the_count_inside_only(clock):
    with _config.fixed_threads():
        assert not _config.config()["dynamic_threads"]
        for _ in range(5):
            stalled(4, 0.5, 0.01)
        assert _config.kernel_args()[0] == 4
    assert _config.config()["dynamic_threads"]
    stalled(4, 0.5, 0.01)
    assert _config.kernel_args()[0] == 2
