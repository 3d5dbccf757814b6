"""Timing: one call after a settling spell, contenders in turns, the machine's GEMM peak, and
NumPy's BLAS threads."""
import contextlib
import time

import numpy as np

from fastlstm import _blas

GEMM_SIZE = 2048
GEMM_REPEAT = 3
DEFAULT_REPEAT = 5
# OpenBLAS's threads spin for about 0.15 s after a call, taking cores from whatever runs next
SETTLE_SECONDS = 0.2



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


def time_rounds(calls, repeat, settle=SETTLE_SECONDS):
    """Times in ms of each callable in `calls`, one per round over `repeat` rounds, each round
    timing each callable in turn.

    Each timed call follows `settle` seconds of untimed calls of the same callable; see
    :func:`time_call`. Round k's times were taken side by side, so their ratios are the
    comparisons least disturbed by a machine whose speed drifts.
    """
    ms = {key: [] for key in calls}
    for _ in range(repeat):
        for key, call in calls.items():
            ms[key].append(1e3 * time_call(call, settle))
    return ms


def time_interleaved(calls, repeat, settle=SETTLE_SECONDS):
    """Minimum time in ms of each callable in `calls` over the rounds of :func:`time_rounds`."""
    return {key: min(values) for key, values in time_rounds(calls, repeat, settle).items()}


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
    """NumPy's BLAS as without fastlstm: on threads of its own (not fastlstm's, see
    fastlstm/_blas.py), `n` of them if threadpoolctl is importable; yield what was done.

    Without threadpoolctl, the BLAS runs on as many threads as it chose itself.
    """
    with _blas.own_threads():
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            yield ("its own threads, as many as it chose, usually all cores (threadpoolctl not "
                   "installed)")
            return
        with threadpool_limits(limits=n, user_api="blas"):
            yield f"its own {n} threads, limited with threadpoolctl"
