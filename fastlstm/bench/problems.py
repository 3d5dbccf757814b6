"""What the benchmark times: the grids of shapes, the seeded problems and their FLOPs.

Shapes: T time steps, B batch rows, I input features, H hidden units; G gates per unit (4 for the
LSTM, 3 for the GRU, 1 for the RNN). FLOPs count the matrix products: forward =
2*T*B*(I+H)*G*H, forward and backward = 3x that.
"""
from typing import NamedTuple

import numpy as np

import fastlstm
from fastlstm import _kinds

QUICK = [(100, 1, 64, 128), (100, 8, 256, 256), (50, 16, 512, 512), (25, 64, 256, 256)]


def _deepbench(batches):
    """DeepBench's LSTM shapes (T, B, I = H, H) for the given batch sizes."""
    return [(T, B, H, H) for T, H in [(25, 512), (25, 1024), (150, 256)] for B in batches]


# sizes that are no multiple of any vector width or register tile (I = 513; H = 257, 300, 700),
# from one row at a time to a training batch
ODD = [(100, 1, 513, 300), (25, 2, 513, 700), (50, 8, 513, 300), (20, 50, 513, 257),
       (25, 32, 513, 700)]

FULL = list(
    dict.fromkeys(
        QUICK
        + [(100, 1, 256, 256), (50, 4, 128, 512), (25, 16, 512, 512), (50, 32, 1024, 1024)]
        + [(100, 16, 2048, 2048), (100, 128, 256, 256)]
        + _deepbench([16, 32, 64])  # training
        + _deepbench([1, 2, 4])  # inference
        + ODD
    )
)

# the step loops of the cell table
CELLS = [(100, 1, 64, 128)]

# the layer table: (kind, num_layers, directions, (T, B, I, H))
LAYERS = [("lstm", 2, 2, (50, 16, 256, 256)), ("gru", 1, 1, (50, 16, 256, 256))]
# the cell kinds (fastlstm._kinds): their layer classes and gates per unit G
KINDS = tuple(_kinds.KINDS)
LAYER_CLASSES = {name: name.upper() for name in KINDS}
LAYER_GATES = {name: kind.gates for name, kind in _kinds.KINDS.items()}

PASSES = ("forward", "forward_backward")
PASS_LABELS = {"forward": "fwd", "forward_backward": "fwd+bwd"}


# ---- the problems ---------------------------------------------------------------------------------


class Problem(NamedTuple):
    """Seeded inputs of one kind's whole-sequence functions: xs (T, B, I), W (I, G*H),
    U (H, G*H), b (G*H,) or, for the GRU, (2, G*H), and the gradient dhs (T, B, H)."""

    xs: np.ndarray
    W: np.ndarray
    U: np.ndarray
    b: np.ndarray
    dhs: np.ndarray
    kind: str = "lstm"


def make_problem(shape, dtype="float32", seed=0, kind="lstm"):
    """Seeded random inputs of `shape` (T, B, I, H) for `kind`'s functions; weights scaled by
    1/sqrt(H), as in training."""
    T, B, I, H = shape
    G = LAYER_GATES[kind] * H
    rng = np.random.default_rng(seed)

    def normal(dims, scale=1.0):
        return (scale * rng.standard_normal(dims)).astype(dtype)

    scale = 1 / np.sqrt(H)
    return Problem(
        xs=normal((T, B, I)),
        W=normal((I, G), scale),
        U=normal((H, G), scale),
        b=normal(_kinds.bias_shape(_kinds.KINDS[kind], H), scale),
        dhs=normal((T, B, H)),
        kind=kind,
    )


def make_layer_problem(spec, dtype="float32", seed=0):
    """A seeded layer of `spec` (kind, num_layers, directions, (T, B, I, H)) on fastlstm, its
    input x (T, B, I) and an output gradient dout (T, B, D*H)."""
    kind, L, D, (T, B, I, H) = spec
    layer = getattr(fastlstm, LAYER_CLASSES[kind])(I, H, num_layers=L, bidirectional=D == 2,
                                                    dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    dout = rng.standard_normal((T, B, D * H)).astype(dtype)
    return layer, x, dout


def layer_flops_forward(spec):
    """FLOPs of a layer's forward products: 2*T*B*(I_k+H)*G for every layer k and direction."""
    kind, L, D, (T, B, I, H) = spec
    G = LAYER_GATES[kind] * H
    return sum(D * 2 * T * B * ((I if k == 0 else D * H) + H) * G for k in range(L))


def flops_forward(shape, kind="lstm"):
    """FLOPs of `kind`'s forward matrix products: 2*T*B*(I+H)*G*H."""
    T, B, I, H = shape
    return 2 * T * B * (I + H) * LAYER_GATES[kind] * H
