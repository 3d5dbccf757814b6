"""NumPy's OpenBLAS on fastlstm's OpenMP threads (fastlstm/_blas.py, csrc/blas_threads.c): the
same bits as on OpenBLAS's own threads, from several Python threads at once, on a team short of
threads, and left alone on request."""
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from conftest import CHILD_CWD

import fastlstm
from fastlstm import _blas, _core

SHARED = bool(_blas._state["libraries"])
needs_shared = pytest.mark.skipif(
    not SHARED, reason=f"NumPy's BLAS does not run on fastlstm's threads here: {_blas.describe()}")
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

# Products that OpenBLAS splits between its threads (level 3 and level 2, real and complex, and
# LAPACK on top of them); saved to argv[1], with the count of calls whose jobs fastlstm ran.
PRODUCTS = textwrap.dedent("""
    import sys, numpy as np, fastlstm
    from fastlstm import _core
    rng = np.random.default_rng(0)
    def normal(*shape, dtype=np.float64):
        return rng.standard_normal(shape).astype(dtype)
    spd = normal(300, 300); spd = spd @ spd.T + 300 * np.eye(300)
    results = {
        "sgemm": normal(700, 500, dtype=np.float32) @ normal(500, 600, dtype=np.float32),
        "dgemm": normal(500, 700) @ normal(700, 400),
        "cgemm": (normal(300, 400) + 1j * normal(300, 400)).astype(np.complex64)
                 @ (normal(400, 300) + 1j * normal(400, 300)).astype(np.complex64),
        "dgemv": normal(4000, 4000) @ normal(4000),
        "solve": np.linalg.solve(spd, normal(300, 80)),
        "inv": np.linalg.inv(spd),
        "cholesky": np.linalg.cholesky(spd),
    }
    np.savez(sys.argv[1], **results)
    print("calls", _core.openblas_calls())
    print("blas_threads", fastlstm._config.config()["blas_threads"])
""")


def run_products(tmp_path, name, **env):
    """Run PRODUCTS in a child with `env` added; return its results and its count of calls."""
    path = tmp_path / f"{name}.npz"
    done = subprocess.run([sys.executable, "-c", PRODUCTS, str(path)], cwd=CHILD_CWD,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    with np.load(path) as results:
        return {key: results[key] for key in results.files}, int(lines["calls"]), lines


@needs_shared
def test_products_are_the_bits_of_openblas_own_threads(tmp_path):
    """Shared threads change who runs OpenBLAS's pieces, not how it splits the work."""
    own, own_calls, own_lines = run_products(tmp_path, "own", FASTLSTM_BLAS_THREADS="own")
    shared, shared_calls, shared_lines = run_products(tmp_path, "shared")
    assert own_calls == 0 and "FASTLSTM_BLAS_THREADS=own" in own_lines["blas_threads"]
    assert shared_lines["blas_threads"].startswith("fastlstm's OpenMP threads")
    if CORES >= 2:  # on one core OpenBLAS never splits a call
        assert shared_calls >= len(shared) - 1
    for key in own:
        assert np.array_equal(shared[key], own[key]), key


@needs_shared
def test_team_short_of_threads(tmp_path):
    """With OMP_THREAD_LIMIT=1 the team has one thread: the other jobs of a call, which wait for
    one another, run on threads started for them, and every result is still OpenBLAS's."""
    own, _, _ = run_products(tmp_path, "own", FASTLSTM_BLAS_THREADS="own")
    limited, calls, _ = run_products(tmp_path, "limited", OMP_THREAD_LIMIT="1")
    if CORES >= 2:
        assert calls > 0
    for key in own:
        assert np.array_equal(limited[key], own[key]), key


@needs_shared
def test_products_from_several_python_threads():
    """Four Python threads multiply at once (their calls take turns on the OpenBLAS buffers that
    the jobs share); each product equals the one computed alone."""
    rng = np.random.default_rng(1)
    pairs = [(rng.standard_normal((300 + 20 * k, 400)), rng.standard_normal((400, 350)))
             for k in range(4)]
    vectors = [(rng.standard_normal((3000, 3000)), rng.standard_normal(3000)) for _ in range(2)]
    jobs = pairs + vectors
    expected = [a @ b for a, b in jobs]
    calls_before = _core.openblas_calls()
    start = threading.Barrier(len(jobs))
    failures = []

    def worker(k):
        start.wait()
        for _ in range(10):
            a, b = jobs[k]
            if not np.array_equal(a @ b, expected[k]):
                failures.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    if CORES >= 2:
        assert _core.openblas_calls() - calls_before >= 10 * len(pairs)


def test_config_says_who_runs_openblas_threads():
    text = fastlstm._config.config()["blas_threads"]
    if SHARED:
        assert text.startswith("fastlstm's OpenMP threads (") and "openblas" in text.lower()
    else:
        assert text.startswith("OpenBLAS's own")

