"""Time fastlstm.compat against the per-step NumPy loops it replaces, LSTM forward + backward.

The NumPy side is the tests' reference implementation of each convention's equations
(tests/test_compat.py), which loops over the steps as CS231n's rnn_layers.py, the deeplearning.ai
notebook and Karpathy's gist do. Both run in this one process, in turn (NumPy, then fastlstm, 1
warm-up each, then `--repeats` rounds), timed with time.perf_counter; the table gives each one's
median. The results are compared first (float32 tolerance), so a fast wrong answer cannot win.

Both sides run after `import fastlstm`, so NumPy's products run on fastlstm's threads (see the
README's "Threads beside NumPy"). With FASTLSTM_BLAS_THREADS=own OpenBLAS keeps worker threads of
its own, which spin for about 0.1 s after each product, so a fastlstm pass timed right after the
NumPy loop shares the cores with them. `--pause 0.3` sleeps that long before each timed call; the
default 0 times them back to back.

    python bench/compat.py              # CS231n, N=50, T=17, D=512 and 256, H=512, float32
    python bench/compat.py --pause 0.3
    python bench/compat.py --others     # also the notebook's and the gist's own example sizes
"""
import argparse
import os
import pathlib
import statistics
import sys
import time

import numpy as np

import fastlstm
from fastlstm.compat import cs231n, deeplearning_ai, karpathy

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
from test_compat import (ref_cs231n_backward, ref_cs231n_forward, ref_dlai_backward,  # noqa: E402
                         ref_dlai_forward, ref_gist_backward, ref_gist_forward)


def load_average():
    """The machine's 1, 5 and 15 minute load averages: other work on the cores skews the times."""
    return ", ".join(f"{load:.2f}" for load in os.getloadavg())


def cs231n_case(rng, N, T, D, H, dtype):
    """CS231n's lstm_forward + lstm_backward: (numpy, compat), each a call giving its results."""
    k = 1 / np.sqrt(H)
    # scaled before the cast: a float32 array times NumPy's float64 scalar k is float64 (NEP 50)
    x, h0, Wx, Wh, b, dh = [(rng.standard_normal(s) * scale).astype(dtype) for s, scale in
                            [((N, T, D), 1), ((N, H), 1), ((D, 4 * H), k), ((H, 4 * H), k),
                             ((4 * H,), k), ((N, T, H), 1)]]

    def numpy_pass():
        h, caches = ref_cs231n_forward("lstm", x, h0, Wx, Wh, b)
        return (h,) + ref_cs231n_backward("lstm", dh, caches)

    def compat_pass():
        h, cache = cs231n.lstm_forward(x, h0, Wx, Wh, b)
        return (h,) + cs231n.lstm_backward(dh, cache)
    return numpy_pass, compat_pass


def dlai_case(rng, n_x, n_a, n_y, m, T_x, dtype):
    """The notebook's lstm_forward + lstm_backward."""
    def normal(*shape):
        return rng.standard_normal(shape).astype(dtype)
    p = {f"W{g}": normal(n_a, n_a + n_x) for g in "fico"}
    p.update({f"b{g}": normal(n_a, 1) for g in "fico"}, Wy=normal(n_y, n_a), by=normal(n_y, 1))
    x, a0, da = normal(n_x, m, T_x), normal(n_a, m), normal(n_a, m, T_x)

    def numpy_pass():
        a, _, _, caches = ref_dlai_forward("lstm", x, a0, p)
        return (a,) + tuple(ref_dlai_backward("lstm", da, caches)[k] for k in ("dx", "dWf"))

    def compat_pass():
        a, _, _, caches = deeplearning_ai.lstm_forward(x, a0, p)
        return (a,) + tuple(deeplearning_ai.lstm_backward(da, caches)[k] for k in ("dx", "dWf"))
    return numpy_pass, compat_pass


def gist_case(rng, n, b, input_size, d, dtype):
    """The gist's LSTM.forward + LSTM.backward."""
    X = rng.standard_normal((n, b, input_size)).astype(dtype)
    WLSTM = rng.standard_normal((1 + input_size + d, 4 * d)) / np.sqrt(input_size + d)
    WLSTM = WLSTM.astype(dtype)
    dHout = rng.standard_normal((n, b, d)).astype(dtype)

    def numpy_pass():
        Hout, _, _, cache = ref_gist_forward(X, WLSTM)
        return (Hout,) + ref_gist_backward(dHout, cache)[:2]

    def compat_pass():
        Hout, _, _, cache = karpathy.LSTM.forward(X, WLSTM)
        return (Hout,) + karpathy.LSTM.backward(dHout, cache)[:2]
    return numpy_pass, compat_pass


def time_pair(numpy_pass, compat_pass, repeats, pause, calls):
    """Median seconds per call of each, `calls` calls a sample, after checking they agree."""
    for a, e in zip(compat_pass(), numpy_pass()):
        np.testing.assert_allclose(a, e, rtol=1e-3, atol=1e-3)
    times = {numpy_pass: [], compat_pass: []}
    for _ in range(repeats):
        for function in times:
            time.sleep(pause)
            start = time.perf_counter()
            for _ in range(calls):
                function()
            times[function].append((time.perf_counter() - start) / calls)
    return statistics.median(times[numpy_pass]), statistics.median(times[compat_pass])


def print_row(label, slow, fast):
    unit, scale = ("ms", 1e3) if fast > 1e-3 else ("us", 1e6)
    print(f"| {label} | {slow * scale:.1f} {unit} | {fast * scale:.1f} {unit} | "
          f"{slow / fast:.2f}x |")


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
    parser.add_argument("--others", action="store_true",
                        help="also deeplearning.ai's and the gist's example sizes (1000 calls a "
                             "sample)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    print(f"load average at the start: {load_average()}")
    print(f"fastlstm {fastlstm.__version__}, {fastlstm.get_num_threads()} threads, "
          f"{args.dtype}, median of {args.repeats} after 1 warm-up, in turn, "
          f"{args.pause} s apart\n")
    print("| forward + backward | per-step NumPy loop | fastlstm.compat | speed-up |")
    print("|---|---|---|---|")
    for D in args.D:
        shape = (args.N, args.T, D, args.H)
        pair = cs231n_case(rng, *shape, args.dtype)
        print_row("cs231n N, T, D, H = " + ", ".join(map(str, shape)),
                  *time_pair(*pair, args.repeats, args.pause, calls=1))
    if args.others:
        for label, case, shape in [
                ("deeplearning_ai n_x, n_a, n_y, m, T_x = ", dlai_case, (3, 5, 2, 10, 7)),
                ("karpathy n, b, input_size, d = ", gist_case, (5, 3, 10, 4))]:
            pair = case(rng, *shape, args.dtype)
            print_row(label + ", ".join(map(str, shape)),
                      *time_pair(*pair, args.repeats, args.pause, calls=1000))
    print(f"\nload average at the end: {load_average()}")


if __name__ == "__main__":
    main()
