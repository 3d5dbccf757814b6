"""Forecasting sensor-like series: an LSTM predicts the next value of noisy multi-frequency signals.

Each series has 3 channels ("sensors"), each a mix of the same 3 sine waves with its own weights
and phases, plus noise; every series draws its own periods (5 to 30 steps). An LSTM with a linear
read-out predicts every channel's next value at every step (many-to-many regression, mean squared
error), on fresh series at every training step. On held-out series it is compared with the
last-value baseline (tomorrow will be like today) and with the noise floor, the error of a perfect
forecaster, since the noise cannot be predicted.

    python examples/forecast.py [--steps N] [--quick] [--backend reference] [--plot FILE]
    mpiexec -n 2 python examples/forecast.py ...     the same training, each batch's series split
                                                     among the processes (fastlstm[mpi])

Prints the training loss, the held-out error of the model, of the baseline and the noise floor,
and fastlstm's speed-up over the NumPy reference (on one process).
"""
import time

import numpy as np

import _common
import fastlstm
from fastlstm.train import Adam, Linear, collect, mse


CHANNELS, WAVES, NOISE = 3, 3, 0.1
WARMUP = 20  # held-out errors count from this step on: the model first has to see a few periods
SIZES = dict(hidden=64, T=100, batch=32, lr=5e-3, test=256)
QUICK_SIZES = dict(hidden=32, T=60, batch=32, lr=1e-2, test=128)


def make_series(n, T, rng):
    """n series of T+1 steps, time-major (T+1, n, CHANNELS): sine mixtures plus Gaussian noise."""
    t = np.arange(T + 1)[:, np.newaxis, np.newaxis, np.newaxis]           # (T+1, 1, 1, 1)
    periods = rng.uniform(5, 30, (1, n, 1, WAVES))
    phases = rng.uniform(0, 2 * np.pi, (1, n, CHANNELS, WAVES))
    weights = rng.uniform(-1, 1, (1, n, CHANNELS, WAVES)) / np.sqrt(WAVES)
    clean = np.sum(weights * np.sin(2 * np.pi * t / periods + phases), axis=-1)
    return clean + NOISE * rng.standard_normal(clean.shape)


class Forecaster:
    """Series (T, B, C) -> fastlstm.LSTM -> Linear -> the next value of every channel (T, B, C)."""

    def __init__(self, hidden, backend, dtype, seed, lr, parallel, clip=1.0):
        self.lstm = fastlstm.LSTM(CHANNELS, hidden, dtype=dtype, seed=seed, backend=backend)
        self.head = Linear(hidden, CHANNELS, dtype=dtype, seed=seed + 1, backend=backend)
        self.params, self.grads = collect(lstm=self.lstm, head=self.head)
        # Adam on the clipped gradient: of this process's series, or under mpiexec the mean over
        # the ranks, weighted by each rank's number of series.
        self.optimizer = parallel.optimizer(Adam(self.params, lr=lr), max_norm=clip)

    def predict(self, xs):
        out, _ = self.lstm(xs)
        return self.head(out)

    def train_step(self, series):
        """One step on series (T+1, B, C): inputs series[:-1], targets series[1:]."""
        loss, dpred = mse(self.predict(series[:-1]), series[1:])
        self.lstm.zero_grad()
        self.head.zero_grad()
        self.lstm.backward(self.head.backward(dpred))
        self.optimizer.step(self.grads, weight=series.shape[1])
        return loss


def main(argv=None):
    args = _common.parse(_common.parser(__doc__, steps=800, quick_steps=200, speedup_steps=10),
                         argv)
    sizes = QUICK_SIZES if args.quick else SIZES
    T, B = sizes["T"], sizes["batch"]
    backend = _common.BACKENDS[args.backend]
    parallel = _common.Parallel()
    say, mine = parallel.print, parallel.rows(B)  # every rank draws the whole batch, uses `mine`
    rng = np.random.default_rng(args.seed)
    held_out = make_series(sizes["test"], 2 * T, np.random.default_rng(args.seed + 1000))
    held_out = held_out.astype(args.dtype)
    say(f"series of {CHANNELS} channels, each a mix of {WAVES} sine waves (periods 5 to 30 "
        f"steps) plus noise of standard deviation {NOISE}")
    say(f"LSTM({CHANNELS}, {sizes['hidden']}) + Linear({sizes['hidden']}, {CHANNELS}), "
        f"{args.dtype}, backend {args.backend}; {B} fresh series of {T} steps per training step")
    if parallel.size > 1:
        say(f"data-parallel on {parallel.size} MPI processes: {mine.stop - mine.start} series "
            f"on rank 0")
    say()

    losses = []
    with _common.threads(args.threads):
        model = Forecaster(sizes["hidden"], backend, args.dtype, args.seed, sizes["lr"], parallel)
        start = time.perf_counter()
        report = max(1, args.steps // 10)
        for step in range(1, args.steps + 1):
            series = make_series(B, T, rng).astype(args.dtype)[:, mine]
            losses.append(parallel.mean(model.train_step(series), weight=series.shape[1]))
            if step % report == 0 or step == 1:
                say(f"step {step:5d}: training loss (mean squared error) "
                    f"{np.mean(losses[-report:]):.4f}  ({time.perf_counter() - start:.1f} s)")
        pred = model.predict(held_out[:-1])  # on every rank (a small batch): no rank waits
    model_mse = float(np.mean((pred[WARMUP:] - held_out[WARMUP + 1 :]) ** 2))
    baseline_mse = float(np.mean((held_out[WARMUP:-1] - held_out[WARMUP + 1 :]) ** 2))
    say(f"\nheld-out: {sizes['test']} series of {2 * T} steps, errors from step {WARMUP} on, "
        f"after {args.steps} training steps ({time.perf_counter() - start:.1f} s)")
    say(f"  LSTM                   mean squared error {model_mse:.4f}")
    say(f"  last-value baseline    mean squared error {baseline_mse:.4f}  "
        f"(the LSTM's error is {model_mse / baseline_mse:.0%} of it)")
    say(f"  noise floor            mean squared error {NOISE ** 2:.4f}  "
        f"(noise variance: no forecaster does better)\n")

    if args.speedup_steps and parallel.size > 1:
        say("(the speed-up over the reference is measured on one process only)")
    elif args.speedup_steps:
        def make_step(module):
            m = Forecaster(sizes["hidden"], module, args.dtype, args.seed, sizes["lr"], parallel)
            data = np.random.default_rng(args.seed)
            return lambda i: m.train_step(make_series(B, T, data).astype(args.dtype))

        _common.compare_backends(make_step, args.speedup_steps, args.threads)
    if args.plot and parallel.is_root:
        _common.plot_losses(args.plot, {"training loss": (np.arange(1, len(losses) + 1), losses)},
                            "next-value forecast of noisy sine mixtures", "mean squared error",
                            lines=[("last-value baseline (held out)", baseline_mse),
                                   ("noise floor", NOISE ** 2)])
    return dict(losses=losses, mse=model_mse, baseline_mse=baseline_mse, noise_floor=NOISE ** 2)


if __name__ == "__main__":
    main()
