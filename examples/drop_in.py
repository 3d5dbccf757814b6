"""The drop-in claim on a small training run: an LSTM learns to predict the next value of noisy sine
waves, once with the NumPy reference and once with fastlstm, from the same seed.

    python examples/drop_in.py [--steps N]

Both runs print their loss every few steps; the losses agree to float tolerance and the script
prints how much faster the fastlstm run was.
"""
import argparse
import time

import numpy as np

import fastlstm
from fastlstm import reference


def train(lstm, steps, seed=0, T=50, B=32, H=64, lr=0.5):
    """Train with plain SGD on mean squared error; return the loss of every step."""
    rng = np.random.default_rng(seed)
    W, U = rng.uniform(-0.2, 0.2, (1, 4 * H)), rng.uniform(-0.2, 0.2, (H, 4 * H))
    b, V = np.zeros(4 * H), rng.uniform(-0.2, 0.2, (H, 1))
    losses = []
    for step in range(steps):
        phase = rng.uniform(0, 2 * np.pi, (1, B, 1))
        t = np.arange(T + 1)[:, None, None]
        signal = np.sin(0.3 * t + phase) + 0.05 * rng.standard_normal((T + 1, B, 1))
        xs, targets = signal[:-1], signal[1:]
        hs, _, _, cache = lstm.lstm_forward(xs, None, None, W, U, b)
        error = lstm.matmul(hs, V) - targets
        losses.append(float(np.mean(error**2)))
        _, _, _, dW, dU, db = lstm.lstm_backward(lstm.matmul(error, V.T), None, None, cache)
        dV = lstm.matmul(hs.reshape(-1, H).T, error.reshape(-1, 1))
        for param, grad in ((W, dW), (U, dU), (b, db), (V, dV)):
            param -= lr * grad / (T * B)
    return losses


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    results = {}
    for name, module in (("reference", reference), ("fastlstm", fastlstm)):
        start = time.perf_counter()
        losses = train(module, args.steps)
        seconds = time.perf_counter() - start
        results[name] = losses, seconds
        shown = ", ".join(f"{loss:.4f}" for loss in losses[:: max(1, args.steps // 5)])
        print(f"{name:>9}: {seconds:6.2f} s, losses {shown} ... {losses[-1]:.4f}")
    (ref_losses, ref_s), (fast_losses, fast_s) = results["reference"], results["fastlstm"]
    gap = np.max(np.abs(np.array(ref_losses) - np.array(fast_losses)))
    print(f"largest loss difference {gap:.2e}; fastlstm {ref_s / fast_s:.1f}x faster")


if __name__ == "__main__":
    main()
