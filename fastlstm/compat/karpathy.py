"""Andrej Karpathy's batched LSTM gist ("An efficient, batched LSTM", ``lstm.py``), computed by
fastlstm's C kernels.

Change one import::

    from lstm import LSTM                      # before: the gist, NumPy one step at a time
    from fastlstm.compat.karpathy import LSTM  # after: fastlstm, one C call per sequence

Shapes (the gist's letters): n steps, b batch rows, input_size features, d = hidden_size. ``X`` is
time-major, ``(n, b, input_size)``. All weights are one matrix ``WLSTM (1 + input_size + d, 4d)``:
row 0 the biases, then the input_size rows acting on x_t, then the d rows acting on h_{t-1}, so that
with ``Hin = [1, x_t, h_{t-1}]``::

    IFOG   = Hin @ WLSTM                           # gate blocks i, f, o, g
    i, f, o = sigmoid(IFOG[:, :d]), sigmoid(IFOG[:, d:2d]), sigmoid(IFOG[:, 2d:3d])
    g      = tanh(IFOG[:, 3d:])
    C[t]   = i * g + f * C[t-1];    Hout[t] = o * tanh(C[t])

float32 and float64 are kept as given. The gate blocks are reordered into fastlstm's i, f, g, o on
every call (one copy of WLSTM; see ``fastlstm.compat._common``), so a WLSTM updated in place between
calls is always seen. The cache is opaque: pass it only to :meth:`LSTM.backward`.
"""
import numpy as np

from .. import _functions as fl
from ._common import Cache, checked, sequence_shape, swap_go, unwrap

__all__ = ["LSTM"]

_ORIGIN = "fastlstm.compat.karpathy.LSTM.forward"


class LSTM:
    """The gist's LSTM: static methods only, the weights live in the caller's WLSTM."""

    @staticmethod
    def init(input_size, hidden_size, fancy_forget_bias_init=3):
        """A new WLSTM as the gist makes it.

        Weights are drawn from ``np.random.randn`` (NumPy's global generator, as in the gist) and
        divided by sqrt(input_size + hidden_size); the biases are zero, except the forget gate's,
        which are `fancy_forget_bias_init` (a positive value makes the cell remember by default).

        Parameters
        ----------
        input_size, hidden_size : int
        fancy_forget_bias_init : float

        Returns
        -------
        WLSTM : ndarray, float64, shape (1 + input_size + hidden_size, 4 * hidden_size)
            Row 0 the biases, then the input rows, then the hidden rows; gate blocks i, f, o, g.
        """
        WLSTM = (np.random.randn(input_size + hidden_size + 1, 4 * hidden_size)
                 / np.sqrt(input_size + hidden_size))
        WLSTM[0, :] = 0
        if fancy_forget_bias_init != 0:
            WLSTM[0, hidden_size:2 * hidden_size] = fancy_forget_bias_init
        return WLSTM

    @staticmethod
    def forward(X, WLSTM, c0=None, h0=None):
        """The LSTM over a whole time-major batch, in one C call.

        Parameters
        ----------
        X : array_like, shape (n, b, input_size)
        WLSTM : array_like, shape (1 + input_size + d, 4d)
        c0, h0 : array_like or None, shape (b, d)
            Initial cell and hidden state; None means zeros.

        Returns
        -------
        Hout : ndarray, shape (n, b, d)
            The hidden state after every step (it shares memory with the cache, as the gist's does:
            leave it unmodified until the backward has run).
        c_n, h_n : ndarray, shape (b, d)
            The last step's cell and hidden state (the gist's ``C[t]``, ``Hout[t]``).
        cache : opaque, for LSTM.backward

        Examples
        --------
        >>> import numpy as np
        >>> from fastlstm.compat.karpathy import LSTM
        >>> np.random.seed(0)
        >>> WLSTM = LSTM.init(10, 4)
        >>> X = np.random.randn(5, 3, 10)
        >>> Hout, cn, hn, cache = LSTM.forward(X, WLSTM)
        >>> dX, dWLSTM, dc0, dh0 = LSTM.backward(np.ones_like(Hout), cache)
        >>> Hout.shape, dX.shape, dWLSTM.shape, dh0.shape
        ((5, 3, 4), (5, 3, 10), (15, 16), (3, 4))
        """
        X = checked("X", X, "(n, b, input_size)", (None, None, None))
        n, b, D = X.shape
        WLSTM = checked("WLSTM", WLSTM, "(1 + input_size + d, 4d)", (None, None))
        d = WLSTM.shape[1] // 4
        if WLSTM.shape[1] % 4 or WLSTM.shape[0] != 1 + D + d:
            raise ValueError(f"WLSTM: expected shape (1 + input_size + d, 4d) with "
                             f"input_size = {D}, got {WLSTM.shape}")
        c0, h0 = (None if s is None else checked(name, s, "(b, d)", (b, d))
                  for name, s in (("c0", c0), ("h0", h0)))
        W = swap_go(WLSTM)  # one copy; rows are then views: biases, input rows, hidden rows
        Hout, h_n, c_n, inner = fl.lstm_forward(X, h0, c0, W[1:1 + D], W[1 + D:], W[0])
        return Hout, c_n, h_n, Cache(_ORIGIN, inner)

    @staticmethod
    def backward(dHout_in, cache, dcn=None, dhn=None):
        """Backward of LSTM.forward.

        Parameters
        ----------
        dHout_in : array_like, shape (n, b, d)
            Upstream gradient of every step's hidden state (not modified).
        cache : what LSTM.forward returned
        dcn, dhn : array_like or None, shape (b, d)
            Upstream gradient of the last cell and hidden state; None means zeros.

        Returns
        -------
        dX : ndarray, shape (n, b, input_size)
        dWLSTM : ndarray, shape (1 + input_size + d, 4d)
            In WLSTM's layout: row 0 the biases', gate blocks i, f, o, g.
        dc0, dh0 : ndarray, shape (b, d)
        """
        inner, _ = unwrap(cache, _ORIGIN)
        n, b, d = sequence_shape(inner)
        dHout = checked("dHout", dHout_in, "(n, b, d)", (n, b, d))
        dcn, dhn = (None if g is None else checked(name, g, "(b, d)", (b, d))
                    for name, g in (("dcn", dcn), ("dhn", dhn)))
        dX, dh0, dc0, dW, dU, db = fl.lstm_backward(dHout, dhn, dcn, inner)
        dWLSTM = swap_go(np.concatenate([db[np.newaxis], dW, dU]))
        return dX, dWLSTM, dc0, dh0
