"""Python threads, processes and memory: concurrent calls never share workspaces, the GIL is
released in the kernels, repeated calls do not grow memory, impossible sizes raise, and
multiprocessing works."""
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import numpy as np
import pytest
from conftest import CHILD_CWD, KINDS, make_problem, make_sequence_problem, run_sequence

import fastlstm
from fastlstm import _functions

ARGS = ("xs", "h0", "c0", "W", "U", "b")


def lstm_round(p, threads=2):
    with fastlstm.num_threads(threads):
        hs, h_T, c_T, cache = fastlstm.lstm_forward(*[p[k] for k in ARGS])
        return [hs, h_T, c_T, *fastlstm.lstm_backward(p["dhs"], p["dh_T"], p["dc_T"], cache)]


def test_many_python_threads_at_once(rng):
    """Eight Python threads run forward and backward on different problems of different shapes at
    the same time; every result equals the one computed alone (bitwise: results do not depend on
    threads, so any sharing of workspaces would show)."""
    problems = [make_problem(rng, 6 + k, 1 + k % 4, 9 + 3 * k, 17 + 5 * k, dtype=np.float32 if k % 2 else np.float64)
                for k in range(8)]
    expected = [lstm_round(p, threads=1) for p in problems]
    failures = []
    start = threading.Barrier(len(problems))

    def worker(k):
        start.wait()
        for _ in range(15):
            for got, want in zip(lstm_round(problems[k]), expected[k]):
                if not np.array_equal(got, want):
                    failures.append(k)
                    return

    workers = [threading.Thread(target=worker, args=(k,)) for k in range(len(problems))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not failures


@pytest.mark.parametrize("kind", KINDS)
def test_held_up_threads_give_the_same_bits(rng, kind):
    """Teams of more threads than cores, beside a Python thread that keeps NumPy's BLAS busy (its
    workers spin between products): the threads of a pass are descheduled at random points, and
    the others take over their work items. Every result equals the one-thread result, bitwise, with
    and without lengths."""
    p = make_sequence_problem(rng, kind, 7, 37, 45, 150, dtype=np.float32)
    lengths = rng.integers(0, 8, 37)
    expected = {}
    with fastlstm.num_threads(1):
        for lens in (None, lengths):
            expected[lens is None] = run_sequence(fastlstm, kind, p, lens)
    stop = threading.Event()
    a = rng.standard_normal((300, 300))

    def busy():
        while not stop.is_set():
            a @ a

    background = threading.Thread(target=busy)
    background.start()
    try:
        for n in (2, 3, 5, 8):
            with fastlstm.num_threads(n):
                for lens in (None, lengths):
                    hs, finals, grads = run_sequence(fastlstm, kind, p, lens)
                    want_hs, want_finals, want_grads = expected[lens is None]
                    for got, want in zip((hs, *finals, *grads), (want_hs, *want_finals, *want_grads)):
                        np.testing.assert_array_equal(got, want)
    finally:
        stop.set()
        background.join()


def test_kernels_release_the_gil(rng):
    """While one Python thread is inside a long C call, another keeps running Python code."""
    p = make_problem(rng, 200, 64, 256, 256, dtype=np.float32)
    ticks, done = [], threading.Event()

    def call():
        with fastlstm.num_threads(1):
            for _ in range(3):
                fastlstm.lstm_forward(*[p[k] for k in ARGS])
        done.set()

    worker = threading.Thread(target=call)
    begin = time.perf_counter()
    worker.start()
    while not done.is_set():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    worker.join()
    elapsed = time.perf_counter() - begin
    # with the GIL held for the whole call, the loop would tick about once per call (3 times)
    assert elapsed > 0.02 and len(ticks) > 10, (elapsed, len(ticks))


def test_no_memory_growth_over_many_calls(rng):
    p = make_problem(rng, 5, 3, 8, 16, dtype=np.float32)
    q = make_problem(rng, 5, 3, 8, 16, gates=1)

    def burst(n):
        for _ in range(n):
            lstm_round(p)
            _, _, cache = fastlstm.rnn_forward(q["xs"], q["h0"], q["W"], q["U"], q["b"])
            fastlstm.rnn_backward(q["dhs"], q["dh_T"], cache)

    burst(200)  # warm up caches of NumPy and Python
    tracemalloc.start()
    rss_before = _rss_bytes()
    burst(3000)
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    growth = _rss_bytes() - rss_before
    assert traced < 1 << 20, traced
    assert growth < 16 << 20, growth


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


_kept_workspace = _functions._kept_workspace


def _poisoned_workspace(nbytes):
    """This thread's kept workspace, every byte 0xFF (NaN in both precisions), as if the last call
    had left NaN all over it."""
    work = _kept_workspace(nbytes)
    work.fill(0xFF)
    return work


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kept_workspace_left_dirty_gives_the_same_bits(rng, monkeypatch, kind, dtype):
    """A Python thread keeps its workspace from one call to the next, whatever the last call left
    in it. Forward and backward (with lengths: rows that end early), and matmul, on a workspace
    full of NaN give the bits they give on a new one of zeros, for batch sizes of every register
    tile (1, 2, 3, 5, 8, 13) and odd sizes."""
    for B in (1, 2, 3, 5, 8, 13):
        p = make_sequence_problem(rng, kind, 6, B, 11, 37, dtype=dtype)
        lengths = np.arange(B) % 7
        a = rng.standard_normal((B * 7, 45)).astype(dtype)
        b = rng.standard_normal((45, 23)).astype(dtype)
        results = []
        for workspace in (lambda n: np.zeros(n, np.uint8), _poisoned_workspace):
            monkeypatch.setattr(_functions, "_kept_workspace", workspace)
            hs, finals, grads = run_sequence(fastlstm, kind, p, lengths)
            results.append([hs, *finals, *grads, fastlstm.matmul(a, b)])
        for got, want in zip(results[1], results[0]):
            assert np.array_equal(got, want), (kind, B)


def test_workspace_is_kept_per_thread_up_to_a_bound(rng, monkeypatch):
    """A second call of the same shape runs on the workspace the first left, another Python thread
    on one of its own; one larger than the bound is not kept."""
    p = make_problem(rng, 5, 3, 8, 16, dtype=np.float32)
    lstm_round(p)
    kept = _functions._workspaces.array
    lstm_round(p)
    assert _functions._workspaces.array is kept
    other = []
    worker = threading.Thread(target=lambda: (lstm_round(p), other.append(_functions._workspaces.array)))
    worker.start()
    worker.join()
    assert other[0] is not kept and not np.shares_memory(other[0], kept)
    monkeypatch.setattr(_functions, "_KEPT_WORKSPACE_BYTES", kept.nbytes)
    lstm_round(make_problem(rng, 50, 30, 80, 160, dtype=np.float32))
    assert _functions._workspaces.array is kept


@pytest.mark.parametrize("what", ["xs", "U"])
def test_impossible_sizes_raise(what):
    """Broadcast views whose contiguous copy would need terabytes raise MemoryError, no crash."""
    T, B, I, H = 4, 2, 3, 5
    args = dict(xs=np.zeros((T, B, I), np.float32), h0=None, c0=None,
                W=np.zeros((I, 4 * H), np.float32), U=np.zeros((H, 4 * H), np.float32),
                b=np.zeros(4 * H, np.float32))
    if what == "xs":
        args["xs"] = np.broadcast_to(np.float32(0), (10**6, 10**6, I))
    else:
        big = 10**6
        args.update(U=np.broadcast_to(np.float32(0), (big, 4 * big)),
                    W=np.zeros((I, 4 * big), np.float32), b=np.zeros(4 * big, np.float32))
    with pytest.raises(MemoryError):
        fastlstm.lstm_forward(*args.values())


def _child_result(_):
    rng = np.random.default_rng(1)
    p = make_problem(rng, 5, 3, 4, 6)
    return lstm_round(p)[0].sum()


def test_multiprocessing_spawn(rng):
    lstm_round(make_problem(rng, 5, 3, 4, 6))  # the parent has used OpenMP already
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(_child_result, range(2))
    assert results[0] == results[1] == _child_result(0)


@pytest.mark.skipif(fastlstm._core.openmp_version() > 0
                    and not fastlstm._core.fork_releases_threads(),
                    reason="this OpenMP runtime cannot release its threads before fork (the "
                           "README's rule applies: one thread in a forked child)")
@pytest.mark.parametrize("blas_threads", ["shared", "own"])
def test_fork_after_use(blas_threads):
    """A process whose OpenMP team ran (a pass of two threads, and NumPy products on fastlstm's
    threads or OpenBLAS's) forks; the child runs a pass on one and on two threads and a NumPy
    product, with the parent's bits, and so does the parent after it. Before fork fastlstm
    releases the forking thread's OpenMP threads: without that, libgomp's next team in the child
    waits for ever for threads that did not come along."""
    code = textwrap.dedent("""
        import os, numpy as np, fastlstm
        rng = np.random.default_rng(0)
        x = rng.standard_normal((20, 16, 64)); W = rng.standard_normal((64, 512))
        U = rng.standard_normal((128, 512)); b = np.zeros(512); a = rng.standard_normal((600, 600))
        def run(threads):
            with fastlstm.num_threads(threads):
                return fastlstm.lstm_forward(x, None, None, W, U, b)[0]
        expected, product = run(2), a @ a
        pid = os.fork()
        if pid == 0:
            same = [np.array_equal(run(1), expected), np.array_equal(run(2), expected),
                    np.array_equal(a @ a, product)]
            os._exit(0 if all(same) else 1)
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status))
        print("parent", np.array_equal(run(2), expected) and np.array_equal(a @ a, product))
    """)
    env = {**os.environ, "FASTLSTM_BLAS_THREADS": blas_threads}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=CHILD_CWD, env=env)
    assert done.returncode == 0, done.stderr
    assert "child exit 0" in done.stdout and "parent True" in done.stdout


def test_huge_sequence_of_empty_steps_returns_at_once():
    """With B = 0 every array is empty whatever T is: no time loop may run T times."""
    code = textwrap.dedent("""
        import numpy as np, fastlstm
        xs = np.zeros((10**12, 0, 3))
        hs, h, c, cache = fastlstm.lstm_forward(xs, None, None, np.ones((3, 8)), np.ones((2, 8)), np.ones(8))
        dxs, dh0, dc0, dW, dU, db = fastlstm.lstm_backward(None, None, None, cache)
        assert hs.shape == (10**12, 0, 2) and not dW.any() and not db.any()
        hs, h, cache = fastlstm.rnn_forward(xs, None, np.ones((3, 2)), np.ones((2, 2)), np.ones(2))
        fastlstm.rnn_backward(None, None, cache)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=CHILD_CWD)
    assert done.stdout.strip() == "ok", done.stderr
