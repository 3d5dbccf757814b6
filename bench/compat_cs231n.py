"""Time CS231n's LSTM forward + backward: fastlstm.compat.cs231n against the per-step NumPy loop.

The NumPy side is the tests' reference implementation of CS231n's equations (tests/test_compat.py),
which loops over the steps as CS231n's rnn_layers.py does. Both run in this one process, in turn
(NumPy, then fastlstm, 1 warm-up each, then `--repeats` rounds), timed with time.perf_counter; the
table gives each one's median. The results are compared first (float32 tolerance), so a fast wrong
answer cannot win.

After each of its products NumPy's OpenBLAS keeps its worker threads spinning for about 0.1 s (see
the README's "Threads beside NumPy"), so a fastlstm pass timed right after the NumPy loop shares the
cores with them. `--pause 0.3` sleeps that long before each timed call, so that each contender
starts on quiet cores; the default 0 times them back to back.

    python bench/compat_cs231n.py                   # N=50, T=17, D=512 and 256, H=512, float32
    python bench/compat_cs231n.py --pause 0.3
"""
import argparse
import os
import pathlib
import statistics
import sys
import time

import numpy as np

import fastlstm
from fastlstm.compat import cs231n

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
from test_compat import ref_cs231n_backward, ref_cs231n_forward  # noqa: E402


def load_average():
    """The machine's 1, 5 and 15 minute load averages: other work on the cores skews the times."""
    return ", ".join(f"{load:.2f}" for load in os.getloadavg())


def numpy_pass(x, h0, Wx, Wh, b, dh):
    h, caches = ref_cs231n_forward("lstm", x, h0, Wx, Wh, b)
    return (h,) + ref_cs231n_backward("lstm", dh, caches)


def compat_pass(x, h0, Wx, Wh, b, dh):
    h, cache = cs231n.lstm_forward(x, h0, Wx, Wh, b)
    return (h,) + cs231n.lstm_backward(dh, cache)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--N", type=int, default=50)
    parser.add_argument("--T", type=int, default=17)
    parser.add_argument("--D", type=int, nargs="+", default=[512, 256])
    parser.add_argument("--H", type=int, default=512)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds to sleep before each timed call (default 0)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    print(f"load average at the start: {load_average()}")
    print(f"fastlstm {fastlstm.__version__}, {fastlstm.get_num_threads()} threads, "
          f"{args.dtype}, median of {args.repeats} after 1 warm-up, in turn, "
          f"{args.pause} s apart\n")
    print("| N, T, D, H | per-step NumPy loop | fastlstm.compat.cs231n | speed-up |")
    print("|---|---|---|---|")
    for D in args.D:
        N, T, H = args.N, args.T, args.H
        k = 1 / np.sqrt(H)
        problem = [rng.standard_normal(s).astype(args.dtype) * scale for s, scale in
                   [((N, T, D), 1), ((N, H), 1), ((D, 4 * H), k), ((H, 4 * H), k), ((4 * H,), k),
                    ((N, T, H), 1)]]
        for name, a, e in zip(["h", "dx", "dh0", "dWx", "dWh", "db"], compat_pass(*problem),
                              numpy_pass(*problem)):
            np.testing.assert_allclose(a, e, rtol=1e-3, atol=1e-3, err_msg=name)
        times = {numpy_pass: [], compat_pass: []}
        for _ in range(args.repeats):
            for function in times:
                time.sleep(args.pause)
                start = time.perf_counter()
                function(*problem)
                times[function].append(time.perf_counter() - start)
        slow, fast = (statistics.median(times[f]) for f in (numpy_pass, compat_pass))
        print(f"| {N}, {T}, {D}, {H} | {slow * 1e3:.1f} ms | {fast * 1e3:.1f} ms | "
              f"{slow / fast:.2f}x |")
    print(f"\nload average at the end: {load_average()}")


if __name__ == "__main__":
    main()
