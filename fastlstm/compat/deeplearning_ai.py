"""deeplearning.ai's "Building a Recurrent Neural Network Step by Step" functions, computed by
fastlstm's C kernels.

Change one import::

    from rnn_step_by_step import *                 # before: the notebook's NumPy functions
    from fastlstm.compat.deeplearning_ai import *  # after: fastlstm, one C call per sequence

Shapes (the notebook's letters): n_x input features, n_a hidden units, n_y outputs, m examples,
T_x steps. Arrays are features-first: ``xt (n_x, m)``, ``a_prev, c_prev (n_a, m)``, sequences
``x (n_x, m, T_x)``, ``a, c (n_a, m, T_x)``, ``y (n_y, m, T_x)``. Parameters come in a dict. The
LSTM's gate weights ``Wf, Wi, Wc, Wo (n_a, n_a + n_x)`` act on ``concat = [a_prev; xt]`` and its
biases ``bf, bi, bc, bo`` are ``(n_a, 1)``::

    ft = sigmoid(Wf @ concat + bf);  it = sigmoid(Wi @ concat + bi)
    cct = tanh(Wc @ concat + bc);    ot = sigmoid(Wo @ concat + bo)
    c_next = ft * c_prev + it * cct; a_next = ot * tanh(c_next)
    yt_pred = softmax(Wy @ a_next + by)            # over axis 0, Wy (n_y, n_a), by (n_y, 1)

The RNN's are ``a_next = tanh(Wax @ xt + Waa @ a_prev + ba)`` and ``yt_pred = softmax(Wya @ a_next +
by)``. The backward functions return dicts of gradients, as the notebook's do, and, as there, take
the gradient of the hidden states alone (``da``): the predictions' gradient is the caller's to add.
float32 and float64 are kept as given. Weights are regathered into fastlstm's layout on every call,
so parameters updated in place are always seen. Caches are opaque: pass them only to this module's
matching backward.
"""
import numpy as np

from .. import _functions as fl
from ._common import Cache, checked, sequence_shape, unwrap

__all__ = [
    "rnn_cell_forward", "rnn_cell_backward", "rnn_forward", "rnn_backward",
    "lstm_cell_forward", "lstm_cell_backward", "lstm_forward", "lstm_backward", "softmax",
]

_HERE = "fastlstm.compat.deeplearning_ai."
_LSTM_GATES = ("i", "f", "c", "o")  # fastlstm's gate order i, f, g, o in the notebook's names


def softmax(x):
    """Softmax over axis 0 (the notebook's ``softmax``), shifted by each column's maximum."""
    e = np.exp(x - np.max(x, axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def _parameter(parameters, key, symbols, sizes):
    if key not in parameters:
        raise KeyError(f"parameters: expected the key {key!r}, got keys {sorted(parameters)}")
    return checked(f"parameters[{key!r}]", parameters[key], symbols, sizes)


def _predictions(hs, parameters, Wy, by):
    """softmax(Wy @ a + by) for rows hs (..., m, n_a), as (n_y, m, ...)."""
    n_a = hs.shape[-1]
    Wy = _parameter(parameters, Wy, "(n_y, n_a)", (None, n_a))
    by = _parameter(parameters, by, "(n_y, 1)", (Wy.shape[0], 1))
    scores = fl.matmul(hs, np.ascontiguousarray(Wy.T)) + by[:, 0]
    return softmax(scores.T)


def _rows(array):
    """A C-contiguous copy of `array` with its axes reversed: the notebook's features-first (n, m)
    or (n, m, T) as fastlstm's rows (m, n) or (T, m, n), and back."""
    return np.ascontiguousarray(array.T)


# ---- weights between the notebook's layout and fastlstm's ----------------------------------------

def _rnn_weights(parameters, n_x, n_a):
    Wax = _parameter(parameters, "Wax", "(n_a, n_x)", (n_a, n_x))
    Waa = _parameter(parameters, "Waa", "(n_a, n_a)", (n_a, n_a))
    ba = _parameter(parameters, "ba", "(n_a, 1)", (n_a, 1))
    return Wax.T, Waa.T, ba[:, 0]


def _rnn_gradients(dW, dU, db):
    return {"dWax": dW.T, "dWaa": dU.T, "dba": db[:, np.newaxis]}


def _lstm_weights(parameters, n_x, n_a):
    """W (n_x, 4n_a), U (n_a, 4n_a), b (4n_a,) in fastlstm's gate order from Wi, Wf, Wc, Wo
    (n_a, n_a + n_x), acting on [a_prev; xt], and bi, bf, bc, bo (n_a, 1)."""
    stacked = np.concatenate([_parameter(parameters, f"W{g}", "(n_a, n_a + n_x)", (n_a, n_a + n_x))
                              for g in _LSTM_GATES])  # (4n_a, n_a + n_x)
    b = np.concatenate([_parameter(parameters, f"b{g}", "(n_a, 1)", (n_a, 1))[:, 0]
                        for g in _LSTM_GATES])
    return stacked[:, n_a:].T, stacked[:, :n_a].T, b


def _lstm_gradients(dW, dU, db):
    """The notebook's dWf, dbf, ... from fastlstm's dW (n_x, 4n_a), dU (n_a, 4n_a), db (4n_a,)."""
    n_a = dU.shape[0]
    stacked = np.concatenate([dU, dW]).T  # (4n_a, n_a + n_x): row blocks i, f, c, o
    gradients = {}
    for k, g in enumerate(_LSTM_GATES):
        gradients[f"dW{g}"] = np.ascontiguousarray(stacked[k * n_a:(k + 1) * n_a])
        gradients[f"db{g}"] = db[k * n_a:(k + 1) * n_a, np.newaxis].copy()
    return gradients


def _states(x, x_symbols, states):
    """x checked, and each (name, state) checked as (n_a, m) with n_a from the first."""
    x = checked(x[0], x[1], x_symbols, (None,) * (x_symbols.count(",") + 1))
    first = checked(states[0][0], states[0][1], "(n_a, m)", (None, x.shape[1]))
    rest = [checked(name, s, "(n_a, m)", first.shape) for name, s in states[1:]]
    return x, [first] + rest


# ---- RNN -----------------------------------------------------------------------------------------

def rnn_cell_forward(xt, a_prev, parameters):
    """One RNN step.

    Parameters
    ----------
    xt : array_like, shape (n_x, m)
    a_prev : array_like, shape (n_a, m)
    parameters : dict
        Wax (n_a, n_x), Waa (n_a, n_a), ba (n_a, 1), Wya (n_y, n_a), by (n_y, 1).

    Returns
    -------
    a_next : ndarray, shape (n_a, m)
    yt_pred : ndarray, shape (n_y, m)
    cache : opaque, for rnn_cell_backward
    """
    xt, (a_prev,) = _states(("xt", xt), "(n_x, m)", [("a_prev", a_prev)])
    W, U, b = _rnn_weights(parameters, xt.shape[0], a_prev.shape[0])
    h, inner = fl.rnn_cell_forward(_rows(xt), _rows(a_prev), W, U, b)
    return h.T, _predictions(h, parameters, "Wya", "by"), Cache(_HERE + "rnn_cell_forward", inner)


def rnn_cell_backward(da_next, cache):
    """Backward of rnn_cell_forward (the hidden state's path; yt_pred's is the caller's).

    Parameters
    ----------
    da_next : array_like, shape (n_a, m)
    cache : what rnn_cell_forward returned

    Returns
    -------
    gradients : dict
        dxt (n_x, m), da_prev (n_a, m), dWax (n_a, n_x), dWaa (n_a, n_a), dba (n_a, 1).
    """
    inner, _ = unwrap(cache, _HERE + "rnn_cell_forward")
    dx, dh_prev, dW, dU, db = fl.rnn_cell_backward(_rows(np.asarray(da_next)), inner)
    return {"dxt": dx.T, "da_prev": dh_prev.T, **_rnn_gradients(dW, dU, db)}


def rnn_forward(x, a0, parameters):
    """The RNN over a whole sequence, in one C call.

    Parameters
    ----------
    x : array_like, shape (n_x, m, T_x)
    a0 : array_like, shape (n_a, m)
    parameters : dict
        As rnn_cell_forward's.

    Returns
    -------
    a : ndarray, shape (n_a, m, T_x)
    y_pred : ndarray, shape (n_y, m, T_x)
    caches : opaque, for rnn_backward
    """
    x, (a0,) = _states(("x", x), "(n_x, m, T_x)", [("a0", a0)])
    W, U, b = _rnn_weights(parameters, x.shape[0], a0.shape[0])
    hs, _, inner = fl.rnn_forward(x.T, a0.T, W, U, b)
    return (_rows(hs), _predictions(hs, parameters, "Wya", "by"),
            Cache(_HERE + "rnn_forward", inner))


def rnn_backward(da, caches):
    """Backward of rnn_forward.

    Parameters
    ----------
    da : array_like, shape (n_a, m, T_x)
        Upstream gradient of every step's hidden state.
    caches : what rnn_forward returned

    Returns
    -------
    gradients : dict
        dx (n_x, m, T_x), da0 (n_a, m), dWax (n_a, n_x), dWaa (n_a, n_a), dba (n_a, 1).
    """
    inner, _ = unwrap(caches, _HERE + "rnn_forward")
    T, m, n_a = sequence_shape(inner)
    da = checked("da", da, "(n_a, m, T_x)", (n_a, m, T))
    dxs, dh0, dW, dU, db = fl.rnn_backward(da.T, None, inner)
    return {"dx": _rows(dxs), "da0": dh0.T, **_rnn_gradients(dW, dU, db)}


# ---- LSTM ----------------------------------------------------------------------------------------

def lstm_cell_forward(xt, a_prev, c_prev, parameters):
    """One LSTM step (equations in the module docstring).

    Parameters
    ----------
    xt : array_like, shape (n_x, m)
    a_prev, c_prev : array_like, shape (n_a, m)
    parameters : dict
        Wf, Wi, Wc, Wo (n_a, n_a + n_x); bf, bi, bc, bo (n_a, 1); Wy (n_y, n_a); by (n_y, 1).

    Returns
    -------
    a_next, c_next : ndarray, shape (n_a, m)
    yt_pred : ndarray, shape (n_y, m)
    cache : opaque, for lstm_cell_backward
    """
    xt, (a_prev, c_prev) = _states(("xt", xt), "(n_x, m)", [("a_prev", a_prev),
                                                              ("c_prev", c_prev)])
    W, U, b = _lstm_weights(parameters, xt.shape[0], a_prev.shape[0])
    h, c, inner = fl.lstm_cell_forward(_rows(xt), _rows(a_prev), _rows(c_prev), W, U, b)
    return (h.T, c.T, _predictions(h, parameters, "Wy", "by"),
            Cache(_HERE + "lstm_cell_forward", inner))


def lstm_cell_backward(da_next, dc_next, cache):
    """Backward of lstm_cell_forward (the states' paths; yt_pred's is the caller's).

    Parameters
    ----------
    da_next, dc_next : array_like, shape (n_a, m)
    cache : what lstm_cell_forward returned

    Returns
    -------
    gradients : dict
        dxt (n_x, m), da_prev (n_a, m), dc_prev (n_a, m), dWf, dWi, dWc, dWo (n_a, n_a + n_x),
        dbf, dbi, dbc, dbo (n_a, 1).
    """
    inner, _ = unwrap(cache, _HERE + "lstm_cell_forward")
    dx, dh_prev, dc_prev, dW, dU, db = fl.lstm_cell_backward(
        _rows(np.asarray(da_next)), _rows(np.asarray(dc_next)), inner)
    return {"dxt": dx.T, "da_prev": dh_prev.T, "dc_prev": dc_prev.T,
            **_lstm_gradients(dW, dU, db)}


def lstm_forward(x, a0, parameters):
    """The LSTM over a whole sequence from a zero cell state, in one C call.

    Parameters
    ----------
    x : array_like, shape (n_x, m, T_x)
    a0 : array_like, shape (n_a, m)
    parameters : dict
        As lstm_cell_forward's.

    Returns
    -------
    a : ndarray, shape (n_a, m, T_x)
    y : ndarray, shape (n_y, m, T_x)
    c : ndarray, shape (n_a, m, T_x)
        The cell state after every step.
    caches : opaque, for lstm_backward

    Examples
    --------
    >>> import numpy as np
    >>> from fastlstm.compat.deeplearning_ai import lstm_forward, lstm_backward
    >>> n_x, n_a, n_y, m, T_x = 3, 5, 2, 10, 7
    >>> rng = np.random.default_rng(1)
    >>> parameters = {f"W{g}": rng.standard_normal((n_a, n_a + n_x)) for g in "fico"}
    >>> parameters.update({f"b{g}": rng.standard_normal((n_a, 1)) for g in "fico"})
    >>> parameters.update(Wy=rng.standard_normal((n_y, n_a)), by=rng.standard_normal((n_y, 1)))
    >>> x, a0 = rng.standard_normal((n_x, m, T_x)), rng.standard_normal((n_a, m))
    >>> a, y, c, caches = lstm_forward(x, a0, parameters)
    >>> gradients = lstm_backward(np.ones_like(a), caches)
    >>> a.shape, y.shape, gradients["dx"].shape, gradients["dWf"].shape
    ((5, 10, 7), (2, 10, 7), (3, 10, 7), (5, 8))
    """
    x, (a0,) = _states(("x", x), "(n_x, m, T_x)", [("a0", a0)])
    W, U, b = _lstm_weights(parameters, x.shape[0], a0.shape[0])
    hs, _, _, inner = fl.lstm_forward(x.T, a0.T, None, W, U, b)
    return (_rows(hs), _predictions(hs, parameters, "Wy", "by"), _rows(inner.cs_ext[1:]),
            Cache(_HERE + "lstm_forward", inner))


def lstm_backward(da, caches):
    """Backward of lstm_forward.

    Parameters
    ----------
    da : array_like, shape (n_a, m, T_x)
        Upstream gradient of every step's hidden state.
    caches : what lstm_forward returned

    Returns
    -------
    gradients : dict
        dx (n_x, m, T_x), da0 (n_a, m), dWf, dWi, dWc, dWo (n_a, n_a + n_x), dbf, dbi, dbc, dbo
        (n_a, 1).
    """
    inner, _ = unwrap(caches, _HERE + "lstm_forward")
    T, m, n_a = sequence_shape(inner)
    da = checked("da", da, "(n_a, m, T_x)", (n_a, m, T))
    dxs, dh0, _, dW, dU, db = fl.lstm_backward(da.T, None, None, inner)
    return {"dx": _rows(dxs), "da0": dh0.T, **_lstm_gradients(dW, dU, db)}
