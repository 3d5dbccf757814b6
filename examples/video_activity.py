"""Video classification with the CNN-LSTM pattern: what is the shape in the clip doing?

Synthetic grey-scale clips (16 frames of 24x24 pixels, with noise) show a square or a disk that
moves left, right, up or down, or grows, or shrinks: six classes. A small convolutional feature
extractor, fixed and written in NumPy (3x3 filters: a blur and four edge directions; ReLU; 2x2
max-pooling; average-pooling to a 4x4 grid), turns every frame into 80 features. An LSTM reads the
clip's feature sequence and a linear layer classifies its last hidden state (many-to-one, softmax
cross-entropy). One frame cannot tell the classes apart; the sequence can.

    python examples/video_activity.py [--steps N] [--quick] [--backend reference] [--plot FILE]

Prints the training loss, the accuracy on held-out clips against chance (1/6), their confusion
matrix, and fastlstm's speed-up over the NumPy reference.
"""
import time

import numpy as np

import _common
import fastlstm
from fastlstm.train import Adam, Linear, clip_grad_norm, collect, softmax_cross_entropy


CLASSES = ["left", "right", "up", "down", "growing", "shrinking"]
T, S = 16, 24  # frames per clip, frame side in pixels
SIZES = dict(train=2000, test=600, hidden=64, batch=32, lr=5e-3)
QUICK_SIZES = dict(train=600, test=300, hidden=32, batch=32, lr=1e-2)


# ---- the data: synthetic clips -------------------------------------------------------------------


def make_clips(n, rng, noise=0.35):
    """n clips (n, T, S, S) of a moving, growing or shrinking shape, and their labels (n,)."""
    labels = rng.integers(0, len(CLASSES), n)
    clips = np.empty((n, T, S, S), np.float32)
    y, x = np.mgrid[0:S, 0:S].astype(float)
    t = np.arange(T)[:, np.newaxis, np.newaxis]  # (T, 1, 1)
    for k, label in enumerate(labels):
        name = CLASSES[label]
        if name in ("growing", "shrinking"):
            r0, r1 = rng.uniform(1.5, 2.5), rng.uniform(5.5, 7.0)
            if name == "shrinking":
                r0, r1 = r1, r0
            radius = r0 + (r1 - r0) * t / (T - 1)
            cx, cy = (np.full_like(t, c, dtype=float) for c in rng.uniform(8, S - 8, 2))
        else:
            r = rng.uniform(2.5, 4.0)
            radius = np.full_like(t, r, dtype=float)
            travel = rng.uniform(0.6, 0.9) * (T - 1)  # pixels over the clip
            path = rng.uniform(r + 1, S - r - 1 - travel) + travel * t / (T - 1)
            if name in ("left", "up"):
                path = S - 1 - path
            fixed = np.full_like(path, rng.uniform(r + 1, S - r - 1))
            cx, cy = (path, fixed) if name in ("left", "right") else (fixed, path)
        if rng.random() < 0.5:
            shape = (x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2             # a disk
        else:
            shape = np.maximum(abs(x - cx), abs(y - cy)) <= radius * 0.9     # a square
        clips[k] = rng.uniform(0.6, 1.0) * shape + noise * rng.standard_normal((T, S, S))
    return clips, labels


# ---- the CNN: a fixed convolutional feature extractor --------------------------------------------

FILTERS = np.array([
    [[1, 2, 1], [2, 4, 2], [1, 2, 1]],        # blur: where the shape is
    [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],     # edges, dark to bright going right
    [[1, 0, -1], [2, 0, -2], [1, 0, -1]],     # ... going left
    [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],     # ... going down
    [[1, 2, 1], [0, 0, 0], [-1, -2, -1]],     # ... going up
], np.float32) / 8


def cnn_features(frames):
    """(..., S, S) frames -> (..., 4 * 4 * F) features: conv 3x3 (same padding), ReLU, max-pool
    2x2, then average-pool to a 4x4 grid. F = len(FILTERS)."""
    padded = np.pad(frames, [(0, 0)] * (frames.ndim - 2) + [(1, 1), (1, 1)])
    # im2col: every pixel's 3x3 neighbourhood as a row of 9, so the convolution is one product.
    patches = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(-2, -1))
    maps = patches.reshape(*patches.shape[:-2], 9) @ FILTERS.reshape(len(FILTERS), 9).T
    maps = np.maximum(maps, 0)                                                # (..., S, S, F)
    h, g = S // 2, S // 8
    pooled = maps.reshape(*maps.shape[:-3], h, 2, h, 2, -1).max(axis=(-4, -2))  # (..., 12, 12, F)
    grid = pooled.reshape(*pooled.shape[:-3], 4, g, 4, g, -1).mean(axis=(-4, -2))  # (..., 4, 4, F)
    return grid.reshape(*grid.shape[:-3], -1)


def features(clips, chunk=200):
    """(n, T, S, S) clips -> (T, n, 16 F) feature sequences, time-major; `chunk` clips at a time."""
    out = np.concatenate([cnn_features(clips[i : i + chunk]) for i in range(0, len(clips), chunk)])
    return np.ascontiguousarray(out.transpose(1, 0, 2))


# ---- the LSTM: many-to-one classification --------------------------------------------------------


class Classifier:
    """Features (T, B, F) -> fastlstm.LSTM -> last hidden state -> Linear -> class scores (B, 6)."""

    def __init__(self, n_features, hidden, backend, dtype, seed, lr, clip=5.0):
        self.lstm = fastlstm.LSTM(n_features, hidden, dtype=dtype, seed=seed, backend=backend)
        self.head = Linear(hidden, len(CLASSES), dtype=dtype, seed=seed + 1, backend=backend)
        self.params, self.grads = collect(lstm=self.lstm, head=self.head)
        self.optimizer = Adam(self.params, lr=lr)
        self.clip = clip

    def logits(self, xs):
        _, (h_n, _) = self.lstm(xs)
        return self.head(h_n[0])                                            # (B, classes)

    def train_step(self, xs, labels):
        loss, dlogits = softmax_cross_entropy(self.logits(xs), labels)
        self.lstm.zero_grad()
        self.head.zero_grad()
        dh = self.head.backward(dlogits)
        self.lstm.backward(None, dstate=(dh[np.newaxis], None))  # the loss sees only h_T
        clip_grad_norm(self.grads, self.clip)
        self.optimizer.step(self.grads)
        return loss

    def predict(self, xs):
        return np.argmax(self.logits(xs), axis=1)


def confusion_matrix(labels, predicted):
    """(classes, classes) counts: row = true class, column = predicted class."""
    counts = np.zeros((len(CLASSES), len(CLASSES)), int)
    np.add.at(counts, (labels, predicted), 1)
    return counts


def main(argv=None):
    args = _common.parse(_common.parser(__doc__, steps=600, quick_steps=150, speedup_steps=30),
                         argv)
    sizes = QUICK_SIZES if args.quick else SIZES
    backend = _common.BACKENDS[args.backend]
    rng = np.random.default_rng(args.seed)

    start = time.perf_counter()
    train_clips, train_labels = make_clips(sizes["train"], rng)
    test_clips, test_labels = make_clips(sizes["test"], rng)
    train_x, test_x = features(train_clips), features(test_clips)
    mean, std = train_x.mean(axis=(0, 1)), train_x.std(axis=(0, 1)) + 1e-6
    train_x = ((train_x - mean) / std).astype(args.dtype)
    test_x = ((test_x - mean) / std).astype(args.dtype)
    F = train_x.shape[2]
    print(f"{len(train_labels)} training and {len(test_labels)} held-out clips of {T} frames "
          f"{S}x{S}, classes {', '.join(CLASSES)}; CNN features: {F} per frame "
          f"({time.perf_counter() - start:.1f} s)")
    print(f"LSTM({F}, {sizes['hidden']}) -> last hidden state -> Linear({sizes['hidden']}, "
          f"{len(CLASSES)}), {args.dtype}, backend {args.backend}\n")

    losses, B = [], sizes["batch"]
    batches = np.random.default_rng(args.seed + 1)
    with _common.threads(args.threads):
        model = Classifier(F, sizes["hidden"], backend, args.dtype, args.seed, sizes["lr"])
        start = time.perf_counter()
        report = max(1, args.steps // 10)
        for step in range(1, args.steps + 1):
            pick = batches.integers(0, len(train_labels), B)
            losses.append(model.train_step(train_x[:, pick], train_labels[pick]))
            if step % report == 0 or step == 1:
                print(f"step {step:5d}: training loss {np.mean(losses[-report:]):.3f}  "
                      f"({time.perf_counter() - start:.1f} s)")
        predicted = model.predict(test_x)
    accuracy = float(np.mean(predicted == test_labels))
    print(f"\nheld-out accuracy {accuracy:.1%} (chance {1 / len(CLASSES):.1%}) after {args.steps} "
          f"steps ({time.perf_counter() - start:.1f} s)")
    counts = confusion_matrix(test_labels, predicted)
    width = max(map(len, CLASSES)) + 1
    print("confusion matrix (rows: true class, columns: predicted class):")
    print(" " * width + "".join(f"{name:>{width}}" for name in CLASSES))
    for name, row in zip(CLASSES, counts):
        print(f"{name:>{width}}" + "".join(f"{n:>{width}}" for n in row))
    print()

    if args.speedup_steps:
        def make_step(module):
            m = Classifier(F, sizes["hidden"], module, args.dtype, args.seed, sizes["lr"])
            picks = np.random.default_rng(args.seed + 1)

            def step(i):
                pick = picks.integers(0, len(train_labels), B)
                return m.train_step(train_x[:, pick], train_labels[pick])

            return step

        _common.compare_backends(make_step, args.speedup_steps, args.threads)
    if args.plot:
        _common.plot_losses(args.plot, {"training loss": (np.arange(1, len(losses) + 1), losses)},
                            "video activity classifier", "cross-entropy (nats)",
                            lines=[("chance", np.log(len(CLASSES)))])
    return dict(losses=losses, accuracy=accuracy, confusion=counts)


if __name__ == "__main__":
    main()
