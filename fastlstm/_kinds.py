"""The recurrent kinds fastlstm computes, as data that the functions, the argument checks, the
layers and the benchmark share: adding a kind starts here and in ``csrc/`` (``enum fl_kind``).

Each kind's ``code`` is its ``enum fl_kind`` in ``csrc/fastlstm.h`` (the tests check that the two
agree), so that this module needs no compiled extension and serves the NumPy reference as well.
"""
from typing import NamedTuple


class Kind(NamedTuple):
    name: str          # "lstm": the functions' prefix
    code: int          # enum fl_kind
    gates: int         # G, the gate blocks per hidden unit, along the last axis of W, U and b
    bias_rows: int     # rows of b: the GRU keeps its input-side and recurrent-side biases apart
    cell_state: bool   # whether it carries a cell state c beside h (the LSTM)
    saved: tuple       # what its sequence forward saves for the backward, besides xs, W and U


LSTM = Kind("lstm", 0, 4, 1, True, ("hs_ext", "cs_ext", "gates"))
GRU = Kind("gru", 1, 3, 2, False, ("hs_ext", "gates", "hn"))
RNN = Kind("rnn", 2, 1, 1, False, ("hs_ext",))

KINDS = {kind.name: kind for kind in (LSTM, GRU, RNN)}


def bias_shape(kind: Kind, H: int) -> tuple:
    """The shape of a kind's bias b for H hidden units: (G*H,), or (2, 3H) for the GRU."""
    N = kind.gates * H
    return (N,) if kind.bias_rows == 1 else (kind.bias_rows, N)
