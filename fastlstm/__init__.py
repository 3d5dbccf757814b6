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


def _check_built():
    """Import the C extension, or raise an ImportError that says why it is missing and what to do.

    The usual case: Python started in a clone of the repository after a non-editable install, so the
    source tree's fastlstm/ (which has no compiled _core) shadows the installed package.
    """
    import importlib.machinery
    import pathlib

    try:
        from . import _core  # noqa: F401
    except ImportError as error:
        package = pathlib.Path(__file__).resolve().parent
        if any((package / f"_core{suffix}").exists()
               for suffix in importlib.machinery.EXTENSION_SUFFIXES):
            raise  # built, but it does not load: the original error says why
        if (package.parent / "setup.py").exists():
            message = (f"fastlstm's C extension is not built: you are importing fastlstm from the "
                       f"source tree at {package}, which has none. Either build it in place with "
                       f"`pip install -e .` in {package.parent}, or, to use an installed "
                       f"fastlstm, run Python from another directory.")
        else:
            message = (f"fastlstm's C extension (fastlstm._core) is missing from {package}: "
                       f"reinstall fastlstm with `pip install --force-reinstall fastlstm`.")
        raise ImportError(message, name="fastlstm._core") from error


_check_built()
del _check_built

from . import reference  # noqa: E402 (after the check, whose message beats a circular import's)
from ._version import __version__
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
    matmul,
    rnn_backward,
    rnn_cell_backward,
    rnn_cell_forward,
    rnn_forward,
)
from .layers import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .frozen import Frozen
from .stream import Stream
from . import _blas, train

_blas.share_threads()  # NumPy's OpenBLAS on fastlstm's threads; fork handlers (fastlstm/_blas.py)

__all__ = reference.__all__ + [
    "LSTM",
    "GRU",
    "RNN",
    "LSTMCell",
    "GRUCell",
    "RNNCell",
    "Stream",
    "Frozen",
    "reference",
    "train",
    "get_num_threads",
    "set_num_threads",
    "num_threads",
    "show_config",
]
