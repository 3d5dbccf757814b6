"""Accuracy of the C kernels' own sigmoid and tanh (they do not call libm), measured through the
public functions: an RNN with W = 1, U = 0 gives h = tanh(x); an LSTM step with g saturated at 1 and
c0 = 0 gives c = sigmoid(x)."""
import numpy as np
import pytest

import fastlstm

# Sigmoid's floor: below this, exp(-x) overflows even in 1 / (1 + exp(-x)) with exact rounding.
SIGMOID_LOW = {np.float32: -88.72, np.float64: -709.78}
MAX_ULP = 4


def arguments(dtype, low):
    tiny = np.geomspace(1e-12, 30, 5000)
    return np.concatenate([np.linspace(low, 40, 200001), tiny, -tiny, [0.0, -0.0]]).astype(dtype)


def ulp_error(got, exact, dtype):
    spacing = np.spacing(np.abs(exact).astype(dtype)).astype(np.float64)
    return np.abs(got.astype(np.float64) - exact) / spacing


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_accuracy(dtype, simd):
    x = arguments(dtype, -40)
    hs, _, _ = fastlstm.rnn_forward(x.reshape(1, -1, 1), None, np.ones((1, 1), dtype),
                                    np.zeros((1, 1), dtype), np.zeros(1, dtype))
    assert ulp_error(hs.ravel(), np.tanh(x.astype(np.float64)), dtype).max() <= MAX_ULP


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_accuracy(dtype, simd):
    x = arguments(dtype, SIGMOID_LOW[dtype])
    W = np.array([[1, 0, 0, 0]], dtype)
    b = np.array([0, 0, 100, 0], dtype)
    _, _, c, _ = fastlstm.lstm_forward(x.reshape(1, -1, 1), None, None, W, np.zeros((1, 4), dtype), b)
    exact = 1 / (1 + np.exp(-x.astype(np.float64)))
    assert ulp_error(c.ravel(), exact, dtype).max() <= MAX_ULP


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_does_not_overflow_early(dtype):
    """Just below the overflow threshold of exp, sigmoid(-x) is a tiny positive number, not 0."""
    x = np.array([-(np.log(np.finfo(dtype).max) - 0.5)], dtype)
    W = np.array([[1, 0, 0, 0]], dtype)
    b = np.array([0, 0, 100, 0], dtype)
    _, _, c, _ = fastlstm.lstm_forward(x.reshape(1, 1, 1), None, None, W, np.zeros((1, 4), dtype), b)
    assert 0 < c[0, 0] < 1e-37
