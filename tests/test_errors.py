"""Bad input gets a clear error, the same from fastlstm and from the reference: ValueError naming the
argument with the expected and the given shape, TypeError for dtypes."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastlstm
from conftest import CHILD_CWD
from fastlstm import reference as ref

MODULES = pytest.mark.parametrize("m", [fastlstm, ref], ids=["fastlstm", "reference"])
T, B, I, H = 3, 2, 4, 5


def good():
    rng = np.random.default_rng(0)
    return dict(
        xs=rng.standard_normal((T, B, I)), h0=np.zeros((B, H)), c0=np.zeros((B, H)),
        W=rng.standard_normal((I, 4 * H)), U=rng.standard_normal((H, 4 * H)), b=np.zeros(4 * H),
    )


def lstm_call(m, **changes):
    args = good()
    args.update(changes)
    return m.lstm_forward(args["xs"], args["h0"], args["c0"], args["W"], args["U"], args["b"])


# (name of the bad argument, its bad value, a regular expression the message must match)
LSTM_SHAPE_ERRORS = [
    ("xs", np.zeros((B, I)), r"xs: expected a 3-d array of shape \(T, B, I\), got shape \(2, 4\)"),
    ("xs", np.zeros((1, T, B, I)), r"xs: expected a 3-d array"),
    ("h0", np.zeros((B + 1, H)), r"h0: expected shape \(B, H\) = \(2, 5\), got \(3, 5\)"),
    ("c0", np.zeros((B, H - 1)), r"c0: expected shape \(B, H\) = \(2, 5\), got \(2, 4\)"),
    ("c0", np.zeros(B * H), r"c0: expected shape \(B, H\) = \(2, 5\), got \(10,\)"),
    ("W", np.zeros((I + 1, 4 * H)), r"W: expected shape \(I, 4H\) = \(4, 20\), got \(5, 20\)"),
    ("W", np.zeros((I, H)), r"W: expected shape \(I, 4H\) = \(4, 20\), got \(4, 5\)"),
    ("U", np.zeros((H, H)), r"U: expected shape \(H, 4H\) = \(5, 20\) \(H = U.shape\[0\]\), got"),
    ("U", np.zeros(4 * H), r"U: expected a 2-d array of shape \(H, 4H\), got shape \(20,\)"),
    ("b", np.zeros(4 * H + 1), r"b: expected shape \(4H,\) = \(20,\), got \(21,\)"),
    ("b", np.zeros((1, 4 * H)), r"b: expected shape \(4H,\) = \(20,\), got \(1, 20\)"),
]


@MODULES
@pytest.mark.parametrize("name, value, message", LSTM_SHAPE_ERRORS)
def test_lstm_shape_errors(m, name, value, message):
    with pytest.raises(ValueError, match=message):
        lstm_call(m, **{name: value})


@MODULES
@pytest.mark.parametrize(
    "value",
    [np.zeros((T, B, I), complex), np.array([[["a"] * I] * B] * T), np.zeros((T, B, I), object)],
    ids=["complex", "str", "object"],
)
def test_lstm_dtype_errors(m, value):
    with pytest.raises(TypeError, match="float32 or float64"):
        lstm_call(m, xs=value)


@MODULES
def test_not_an_array(m):
    with pytest.raises(TypeError, match="xs: expected an array"):
        lstm_call(m, xs=[[1.0, 2.0], [3.0]])


@MODULES
def test_backward_gradient_errors(m):
    *_, cache = lstm_call(m)
    with pytest.raises(ValueError, match=r"dhs: expected shape \(T, B, H\) = \(3, 2, 5\), got \(3, 2, 4\)"):
        m.lstm_backward(np.zeros((T, B, H - 1)), None, None, cache)
    with pytest.raises(ValueError, match=r"dh_T: expected shape \(B, H\) = \(2, 5\), got \(5, 2\)"):
        m.lstm_backward(None, np.zeros((H, B)), None, cache)
    with pytest.raises(ValueError, match=r"dc_T: expected shape \(B, H\)"):
        m.lstm_backward(None, None, np.zeros(H), cache)
    with pytest.raises(TypeError, match="dc_T: expected a real floating-point array"):
        m.lstm_backward(None, None, np.zeros((B, H), complex), cache)


@MODULES
def test_wrong_cache(m):
    with pytest.raises(TypeError, match="cache: expected the cache returned by"):
        m.lstm_backward(None, None, None, cache=("not", "a", "cache"))
    _, _, cell_cache = m.lstm_cell_forward(np.zeros((B, I)), None, None, *list(good().values())[3:])
    with pytest.raises(TypeError, match="cache: expected the cache returned by .*lstm_forward"):
        m.lstm_backward(None, None, None, cell_cache)
    *_, rnn_cache = m.rnn_forward(np.zeros((T, B, I)), None, np.zeros((I, H)), np.zeros((H, H)), np.zeros(H))
    with pytest.raises(TypeError, match="cache: expected the cache returned by .*lstm_forward"):
        m.lstm_backward(None, None, None, rnn_cache)


def test_caches_do_not_cross_modules():
    *_, ref_cache = lstm_call(ref)
    with pytest.raises(TypeError, match="fastlstm.lstm_forward"):
        fastlstm.lstm_backward(None, None, None, ref_cache)
    *_, c_cache = lstm_call(fastlstm)
    with pytest.raises(TypeError, match="fastlstm.reference.lstm_forward"):
        ref.lstm_backward(None, None, None, c_cache)


@MODULES
def test_cell_errors(m):
    W, U, b = np.zeros((I, 4 * H)), np.zeros((H, 4 * H)), np.zeros(4 * H)
    with pytest.raises(ValueError, match=r"x: expected a 2-d array of shape \(B, I\), got shape \(3, 2, 4\)"):
        m.lstm_cell_forward(np.zeros((T, B, I)), None, None, W, U, b)
    with pytest.raises(ValueError, match=r"h_prev: expected shape \(B, H\) = \(2, 5\)"):
        m.lstm_cell_forward(np.zeros((B, I)), np.zeros((B, 1)), None, W, U, b)
    _, _, cache = m.lstm_cell_forward(np.zeros((B, I)), None, None, W, U, b)
    with pytest.raises(ValueError, match=r"dh: expected shape \(B, H\) = \(2, 5\)"):
        m.lstm_cell_backward(np.zeros((B, H + 1)), None, cache)


@MODULES
def test_rnn_errors(m):
    xs = np.zeros((T, B, I))
    with pytest.raises(ValueError, match=r"U: expected shape \(H, H\) = \(5, 5\) \(H = U.shape\[0\]\), got \(5, 20\)"):
        m.rnn_forward(xs, None, np.zeros((I, H)), np.zeros((H, 4 * H)), np.zeros(H))
    with pytest.raises(ValueError, match=r"W: expected shape \(I, H\) = \(4, 5\), got \(4, 20\)"):
        m.rnn_forward(xs, None, np.zeros((I, 4 * H)), np.zeros((H, H)), np.zeros(H))
    with pytest.raises(ValueError, match=r"h0: expected shape \(B, H\) = \(2, 5\)"):
        m.rnn_forward(xs, np.zeros((B, H, 1)), np.zeros((I, H)), np.zeros((H, H)), np.zeros(H))


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_thread_count_errors(bad):
    with pytest.raises(ValueError, match="num_threads: expected an int >= 1"):
        fastlstm.set_num_threads(bad)
    with pytest.raises(ValueError, match="num_threads: expected an int >= 1"):
        with fastlstm.num_threads(bad):
            pass


SIMD_FROM_ENVIRONMENT = """
import numpy as np, fastlstm
try:
    fastlstm.lstm_cell_forward(np.zeros((1, 2)), None, None, np.zeros((2, 4)), np.zeros((1, 4)),
                               np.zeros(4))
except ValueError as error:
    print(error)
else:
    print("ok", fastlstm._config.simd_level())
"""


@pytest.mark.parametrize("name, expected", [
    ("avx9000", "FASTLSTM_SIMD: expected one of ['portable', 'avx2', 'avx512'], got 'avx9000'"),
    ("portable", "ok 0"),  # a known level works
])
def test_simd_level_from_environment(name, expected):
    # read once per process, when the kernels are first used: so in a fresh process
    env = dict(os.environ, FASTLSTM_SIMD=name)
    out = subprocess.run([sys.executable, "-c", SIMD_FROM_ENVIRONMENT], env=env,
                         capture_output=True, text=True, cwd=CHILD_CWD)
    assert out.stdout.strip() == expected, out.stderr


def gru_call(m, **changes):
    rng = np.random.default_rng(0)
    args = dict(
        xs=rng.standard_normal((T, B, I)), h0=np.zeros((B, H)), W=rng.standard_normal((I, 3 * H)),
        U=rng.standard_normal((H, 3 * H)), b=np.zeros((2, 3 * H)),
    )
    args.update(changes)
    return m.gru_forward(args["xs"], args["h0"], args["W"], args["U"], args["b"])


GRU_SHAPE_ERRORS = [
    ("xs", np.zeros((B, I)), r"xs: expected a 3-d array of shape \(T, B, I\), got shape \(2, 4\)"),
    ("h0", np.zeros((B + 1, H)), r"h0: expected shape \(B, H\) = \(2, 5\), got \(3, 5\)"),
    ("W", np.zeros((I, 4 * H)), r"W: expected shape \(I, 3H\) = \(4, 15\), got \(4, 20\)"),
    ("W", np.zeros((I + 1, 3 * H)), r"W: expected shape \(I, 3H\) = \(4, 15\), got \(5, 15\)"),
    ("U", np.zeros((H, 4 * H)), r"U: expected shape \(H, 3H\) = \(5, 15\) \(H = U.shape\[0\]\), got"),
    ("U", np.zeros(3 * H), r"U: expected a 2-d array of shape \(H, 3H\), got shape \(15,\)"),
    ("b", np.zeros(3 * H), r"b: expected shape \(2, 3H\) = \(2, 15\), got \(15,\)"),
    ("b", np.zeros((1, 3 * H)), r"b: expected shape \(2, 3H\) = \(2, 15\), got \(1, 15\)"),
    ("b", np.zeros((2, 4 * H)), r"b: expected shape \(2, 3H\) = \(2, 15\), got \(2, 20\)"),
]


@MODULES
@pytest.mark.parametrize("name, value, message", GRU_SHAPE_ERRORS)
def test_gru_shape_errors(m, name, value, message):
    with pytest.raises(ValueError, match=message):
        gru_call(m, **{name: value})


@MODULES
def test_gru_dtype_error(m):
    with pytest.raises(TypeError, match="float32 or float64"):
        gru_call(m, b=np.zeros((2, 3 * H), complex))


@MODULES
def test_gru_backward_and_cell_errors(m):
    *_, cache = gru_call(m)
    with pytest.raises(ValueError, match=r"dhs: expected shape \(T, B, H\) = \(3, 2, 5\), got \(3, 2, 4\)"):
        m.gru_backward(np.zeros((T, B, H - 1)), None, cache)
    with pytest.raises(ValueError, match=r"dh_T: expected shape \(B, H\) = \(2, 5\), got \(5, 2\)"):
        m.gru_backward(None, np.zeros((H, B)), cache)
    W, U, b = np.zeros((I, 3 * H)), np.zeros((H, 3 * H)), np.zeros((2, 3 * H))
    with pytest.raises(ValueError, match=r"h_prev: expected shape \(B, H\) = \(2, 5\)"):
        m.gru_cell_forward(np.zeros((B, I)), np.zeros((B, 1)), W, U, b)
    _, cell_cache = m.gru_cell_forward(np.zeros((B, I)), None, W, U, b)
    with pytest.raises(ValueError, match=r"dh: expected shape \(B, H\) = \(2, 5\)"):
        m.gru_cell_backward(np.zeros((B, H + 1)), cell_cache)
    with pytest.raises(TypeError, match="cache: expected the cache returned by .*gru_forward"):
        m.gru_backward(None, None, cell_cache)
    with pytest.raises(TypeError, match="cache: expected the cache returned by .*gru_cell_forward"):
        m.gru_cell_backward(None, cache)
    *_, lstm_cache = lstm_call(m)
    with pytest.raises(TypeError, match="cache: expected the cache returned by .*gru_forward"):
        m.gru_backward(None, None, lstm_cache)


# ---- variable-length batches ---------------------------------------------------------------------

LENGTHS_ERRORS = [
    ([T] * (B + 1), ValueError, r"lengths: expected shape \(B,\) = \(2,\), got \(3,\)"),
    ([[T, T]], ValueError, r"lengths: expected shape \(B,\) = \(2,\), got \(1, 2\)"),
    (T, ValueError, r"lengths: expected shape \(B,\) = \(2,\), got \(\)"),
    ([T, -1], ValueError, r"lengths: expected values in \[0, T\] = \[0, 3\], got -1 in row 1"),
    ([T + 1, 0], ValueError, r"lengths: expected values in \[0, T\] = \[0, 3\], got 4 in row 0"),
    ([3.0, 1.0], TypeError, r"lengths: expected integers, got dtype float64"),
    ([True, False], TypeError, r"lengths: expected integers, got dtype bool"),
    (["3", "1"], TypeError, r"lengths: expected integers, got dtype <U1"),
]


def sequence_call(m, kind, lengths):
    args = good()
    if kind == "rnn":
        args.update(W=args["W"][:, :H], U=args["U"][:, :H], b=args["b"][:H])
    if kind == "gru":
        args.update(W=args["W"][:, : 3 * H], U=args["U"][:, : 3 * H], b=np.zeros((2, 3 * H)))
    states = [args["h0"], args["c0"]] if kind == "lstm" else [args["h0"]]
    forward = getattr(m, f"{kind}_forward")
    return forward(args["xs"], *states, args["W"], args["U"], args["b"], lengths=lengths)


@pytest.mark.parametrize("kind", ["lstm", "rnn", "gru"])
@pytest.mark.parametrize("lengths, error, message", LENGTHS_ERRORS)
def test_lengths_errors(kind, lengths, error, message):
    """The same error, word for word, from fastlstm and from the reference."""
    messages = []
    for m in (fastlstm, ref):
        with pytest.raises(error, match=message) as info:
            sequence_call(m, kind, lengths)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


@MODULES
def test_lengths_accepted(m):
    """Any integer dtype and array-like; an empty list for an empty batch."""
    for lengths in ([T, 0], (1, 2), np.array([2, 3], np.uint8), np.array([0, 3], np.int32)):
        sequence_call(m, "lstm", lengths)
    m.rnn_forward(np.zeros((T, 0, I)), None, np.zeros((I, H)), np.zeros((H, H)), np.zeros(H),
                  lengths=[])


def test_c_checks_lengths_itself():
    """Lengths outside [0, T] that bypass the Python checks get an error status from C."""
    from fastlstm import _core

    hs_ext, xs = np.empty((T + 1, B, H)), np.zeros((T, B, I))
    W, U, b = np.zeros((I, H)), np.zeros((H, H)), np.zeros(H)
    with pytest.raises(ValueError, match=r"length outside \[0, T\]"):
        _core.forward(_core.fl_kind.FL_RNN, hs_ext, None, None, None, None, None, xs, W, U, b,
                      np.array([T, T + 1], np.intp), 1, 0)


@pytest.mark.parametrize("given", [None, np.zeros(1 << 16, np.float32), np.zeros(3, np.uint8),
                                   np.zeros((1 << 16, 2), np.uint8)[:, 0]],
                         ids=["None", "float32", "too small", "strided"])
def test_wall_checks_the_workspace_it_is_given(given):
    """The workspace a caller's function gives the wall must be a C-contiguous uint8 array of the
    size asked for; anything else is a ValueError naming it, never a write out of bounds."""
    from fastlstm import _core

    def workspace_of(nbytes):
        return given if given is None or given.size < nbytes else given[:nbytes]

    C, A = np.zeros((3, 5)), np.ones((3, 4))
    with pytest.raises(ValueError, match="workspace: expected"):
        _core.matmul(C, A, np.ones((4, 5)), False, False, 1, 0, workspace_of)


@pytest.mark.parametrize("W, U, error, message", [
    (np.zeros((I, 4 * H), np.float32), np.zeros((H, 4 * H)),
     ValueError, r"W: expected a C-contiguous float64 array of shape \(4, 20\), got float32"),
    (np.zeros((I, 8 * H))[:, ::2], np.zeros((H, 4 * H)),
     ValueError, r"W: expected a C-contiguous float64 array of shape \(4, 20\), got float64"),
    (np.zeros((I, 4 * H), np.int32), np.zeros((H, 4 * H), np.int32),
     TypeError, "the kernels take float32 or float64, got int32"),
], ids=["dtype", "strided", "int32"])
def test_wall_names_the_dtype_it_expected(W, U, error, message):
    """The wall's own checks, for callers that bypass the Python ones, name the dtype expected
    and given (from NumPy's type number, which np.dtype no longer takes)."""
    from fastlstm import _core

    with pytest.raises(error, match=message):
        _core.pack(_core.fl_kind.FL_LSTM, W, U, B, 1, 0)
