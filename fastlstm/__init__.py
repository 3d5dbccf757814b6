"""fastlstm: LSTM, GRU and vanilla RNN forward and backward passes (BPTT) in C with OpenMP.

A drop-in for a NumPy LSTM cell: the functions here have the same names, signatures and results as
those of :mod:`fastlstm.reference` (pure NumPy), so switching is one import line::

    from fastlstm import reference as lstm   # NumPy
    import fastlstm as lstm                   # C

Gate order i, f, g, o along the last axis of W (I, 4H), U (H, 4H) and b (4H,); for the GRU (PyTorch's
nn.GRU) r, z, n along W (I, 3H), U (H, 3H) and b (2, 3H), the input-side and recurrent-side biases.

Layers with parameters, gradients and state, shaped like torch.nn's: :class:`LSTM`, :class:`RNN`,
:class:`GRU`, :class:`LSTMCell`, :class:`GRUCell`, :class:`RNNCell` (``fastlstm.layers``). What
training needs around them (losses with their gradients, a linear read-out, gradient clipping, SGD
and Adam): :mod:`fastlstm.train`.
"""
from . import reference
from ._config import get_num_threads, num_threads, set_num_threads, show_config
from ._functions import (
    gru_backward,
    gru_cell_backward,
    gru_cell_forward,
    gru_forward,
    lstm_backward,
    lstm_cell_backward,
    lstm_cell_forward,
    lstm_forward,
    rnn_backward,
    rnn_cell_backward,
    rnn_cell_forward,
    rnn_forward,
)
from .layers import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from . import train

__version__ = "0.1.0"

__all__ = reference.__all__ + [
    "LSTM",
    "GRU",
    "RNN",
    "LSTMCell",
    "GRUCell",
    "RNNCell",
    "reference",
    "train",
    "get_num_threads",
    "set_num_threads",
    "num_threads",
    "show_config",
]
