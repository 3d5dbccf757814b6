"""Does importing fastlstm change NumPy's own speed? NumPy's products, and the NumPy reference's
training loop, with OpenBLAS on its own threads (as without fastlstm) and on fastlstm's (as after
``import fastlstm``, see the README's "Threads beside NumPy").

Both in this one process, interleaved: each round times each case once with OpenBLAS on its own
threads and once on fastlstm's, in turn (which goes first alternates from round to round), each
after 0.3 s of sleep (the threads that the other left spinning stop) and 0.2 s of its own untimed
calls; a round's time is the median of 9 calls.
The table gives each case's time on OpenBLAS's own threads (the median round) and the ratio shared
/ own per round: its median and its range. float32, NumPy's BLAS at its default thread count.

    python bench/blas_threads.py            # 7 rounds
    python bench/blas_threads.py --rounds 15
"""
import argparse
import statistics
import time

import numpy as np

import fastlstm
from fastlstm import _blas, reference
from fastlstm.bench.loop import make_training_step

SLEEP_SECONDS = 0.3
SETTLE_SECONDS = 0.2
CALLS = 9


def product(m, k, n, rng):
    """A NumPy float32 product of an (m, k) and a (k, n) matrix."""
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    return lambda: a @ b


def cases():
    rng = np.random.default_rng(0)
    shapes = [(128, 128, 128), (256, 256, 256), (1600, 256, 64), (1000, 1000, 1000),
              (2000, 2000, 2000)]
    return {**{f"matmul {m}x{k} @ {k}x{n}": product(m, k, n, rng) for m, k, n in shapes},
            **{f"reference loop {spec}": make_training_step(reference, spec)
               for spec in [(50, 32, 64, 256, 64), (25, 64, 256, 512, 64)]}}


def median_call_seconds(call):
    time.sleep(SLEEP_SECONDS)
    end = time.perf_counter() + SETTLE_SECONDS
    while time.perf_counter() < end:
        call()
    times = []
    for _ in range(CALLS):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if not _blas._state["libraries"]:
        raise SystemExit(f"nothing to compare: NumPy's BLAS is {_blas.describe()}")
    print(f"fastlstm {fastlstm.__version__}, numpy {np.__version__}; OpenBLAS: {_blas.describe()}")
    print(f"{'case':36} {'own threads ms':>14} {'shared / own':>13} {'range':>13}")
    for name, call in cases().items():
        own, ratios = [], []
        with np.errstate(all="ignore"):  # the reference loop's weights may run away: only timed
            for k in range(args.rounds):
                if k % 2:
                    shared = median_call_seconds(call)
                with _blas.own_threads():
                    own.append(median_call_seconds(call))
                if not k % 2:
                    shared = median_call_seconds(call)
                ratios.append(shared / own[-1])
        print(f"{name:36} {1e3 * statistics.median(own):14.3f} "
              f"{statistics.median(ratios):12.2f}x {min(ratios):6.2f}-{max(ratios):.2f}x",
              flush=True)


if __name__ == "__main__":
    main()
