"""fastlstm.compat against plain NumPy implementations of each convention's own equations.

The references below are written here from the conventions' equations, one Python step at a time
as those sources do, and are themselves checked by finite differences (float64). The compat modules
must then give every output and gradient to 1e-10 in float64 and 1e-5 in float32.
"""
import doctest
import re

import numpy as np
import pytest

from conftest import central_difference, source_file
from fastlstm.compat import cs231n, deeplearning_ai, karpathy

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-5)}
SHAPES = [  # N, T, D, H
    (1, 1, 1, 1), (2, 3, 4, 3), (3, 5, 7, 17), (1, 4, 17, 5), (4, 2, 3, 3),
]


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def assert_same(actual, expected, dtype, names):
    assert len(actual) == len(expected) == len(names)
    for a, e, name in zip(actual, expected, names):
        assert a.dtype == dtype, f"{name}: dtype {a.dtype}, expected {np.dtype(dtype)}"
        assert a.shape == e.shape, f"{name}: shape {a.shape}, expected {e.shape}"
        np.testing.assert_allclose(a, e, **TOL[dtype], err_msg=name)


def check_by_finite_differences(rng, loss, arrays, grads, samples=4):
    """grads[k] must be d loss() / d arrays[k] at `samples` random elements of each array."""
    for name, array in arrays.items():
        for _ in range(samples):
            index = tuple(rng.integers(0, n) for n in array.shape)
            numeric = central_difference(loss, array, index)
            np.testing.assert_allclose(grads[name][index], numeric, rtol=1e-5, atol=1e-7,
                                       err_msg=f"d{name}{list(index)}")


# ---- CS231n's equations: batch-major, gate blocks i, f, o, g, one step at a time ---------------
# In the inputs' dtype throughout, so that bench/compat.py times a float32 NumPy loop.

def ref_rnn_step_forward(x, prev_h, Wx, Wh, b):
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def ref_rnn_step_backward(dnext_h, cache):
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h ** 2)
    return da @ Wx.T, da @ Wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)


def ifog_step(a, prev_c):
    """The LSTM step from its pre-activations a (B, 4H), gate blocks i, f, o, g (CS231n's and the
    gist's order): (h, c, (i, f, o, g))."""
    H = a.shape[1] // 4
    i, f, o, g = (sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]),
                  np.tanh(a[:, 3 * H:]))
    c = f * prev_c + i * g
    return o * np.tanh(c), c, (i, f, o, g)


def ifog_step_backward(dh, dc_next, gates, prev_c, c):
    """Backward of ifog_step: (da (B, 4H) in the order i, f, o, g, dprev_c)."""
    i, f, o, g = gates
    tanh_c = np.tanh(c)
    dc = dc_next + dh * o * (1 - tanh_c ** 2)
    da = np.concatenate([dc * g * i * (1 - i), dc * prev_c * f * (1 - f),
                         dh * tanh_c * o * (1 - o), dc * i * (1 - g ** 2)], axis=1)
    return da, dc * f


def ref_lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    next_h, next_c, gates = ifog_step(x @ Wx + prev_h @ Wh + b, prev_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, gates, next_c)


def ref_lstm_step_backward(dnext_h, dnext_c, cache):
    x, prev_h, prev_c, Wx, Wh, gates, next_c = cache
    da, dprev_c = ifog_step_backward(dnext_h, dnext_c, gates, prev_c, next_c)
    return da @ Wx.T, da @ Wh.T, dprev_c, x.T @ da, prev_h.T @ da, da.sum(axis=0)


def ref_cs231n_forward(kind, x, h0, Wx, Wh, b):
    """CS231n's rnn_forward or lstm_forward ("rnn", "lstm"): its step in a loop, zero c0."""
    N, T, _ = x.shape
    step = ref_lstm_step_forward if kind == "lstm" else ref_rnn_step_forward
    states = [h0, np.zeros_like(h0)] if kind == "lstm" else [h0]
    h, caches = np.zeros((N, T, Wh.shape[0]), x.dtype), []
    for t in range(T):
        *states, cache = step(x[:, t], *states, Wx, Wh, b)
        h[:, t] = states[0]
        caches.append(cache)
    return h, caches


def ref_cs231n_backward(kind, dh, caches):
    """CS231n's rnn_backward or lstm_backward: (dx, dh0, dWx, dWh, db)."""
    N, T, H = dh.shape
    step = ref_lstm_step_backward if kind == "lstm" else ref_rnn_step_backward
    dx = np.zeros((N, T, caches[0][0].shape[1]), dh.dtype)
    dstates = [np.zeros((N, H), dh.dtype)] * (2 if kind == "lstm" else 1)
    dweights = [0, 0, 0]
    for t in reversed(range(T)):
        dx[:, t], *dstates, dWx, dWh, db = step(dh[:, t] + dstates[0], *dstates[1:], caches[t])
        dweights = [total + d for total, d in zip(dweights, (dWx, dWh, db))]
    return (dx, dstates[0], *dweights)


def cs231n_problem(rng, N, T, D, H, gates, dtype=np.float64):
    def normal(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    k = 1 / np.sqrt(H)
    return dict(x=normal(N, T, D), h0=normal(N, H), c0=normal(N, H),
                Wx=normal(D, gates * H, scale=k),
                Wh=normal(H, gates * H, scale=k), b=normal(gates * H, scale=k),
                dh=normal(N, T, H), dc=normal(N, H))


# ---- the references, by finite differences -------------------------------------------------------

@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_cs231n_reference_steps_by_finite_differences(rng, kind):
    p = cs231n_problem(rng, 3, 1, 4, 5, gates=4 if kind == "lstm" else 1)
    x, h, c, Wx, Wh, b, dh, dc = (p[n] for n in ("x", "h0", "c0", "Wx", "Wh", "b", "dh", "dc"))
    x = x[:, 0].copy()
    dh = dh[:, 0].copy()
    arrays = dict(x=x, prev_h=h, Wx=Wx, Wh=Wh, b=b)
    if kind == "rnn":
        def loss():
            return np.sum(ref_rnn_step_forward(x, h, Wx, Wh, b)[0] * dh)
        grads = ref_rnn_step_backward(dh, ref_rnn_step_forward(x, h, Wx, Wh, b)[1])
        names = ["x", "prev_h", "Wx", "Wh", "b"]
    else:
        arrays["prev_c"] = c

        def loss():
            next_h, next_c, _ = ref_lstm_step_forward(x, h, c, Wx, Wh, b)
            return np.sum(next_h * dh) + np.sum(next_c * dc)
        grads = ref_lstm_step_backward(dh, dc, ref_lstm_step_forward(x, h, c, Wx, Wh, b)[2])
        names = ["x", "prev_h", "prev_c", "Wx", "Wh", "b"]
    check_by_finite_differences(rng, loss, arrays, dict(zip(names, grads)))


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_cs231n_reference_sequences_by_finite_differences(rng, kind):
    p = cs231n_problem(rng, 2, 4, 3, 5, gates=4 if kind == "lstm" else 1)
    args = [p[n] for n in ("x", "h0", "Wx", "Wh", "b")]

    def loss():
        return np.sum(ref_cs231n_forward(kind, *args)[0] * p["dh"])
    grads = ref_cs231n_backward(kind, p["dh"], ref_cs231n_forward(kind, *args)[1])
    names = ["x", "h0", "Wx", "Wh", "b"]
    check_by_finite_differences(rng, loss, dict(zip(names, args)), dict(zip(names, grads)))


# ---- fastlstm.compat.cs231n against the reference ------------------------------------------------

def as_float64(arrays):
    return [a.astype(np.float64) for a in arrays]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("N, T, D, H", SHAPES)
@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_cs231n(rng, kind, N, T, D, H, dtype):
    lstm = kind == "lstm"
    p = cs231n_problem(rng, N, T, D, H, gates=4 if lstm else 1, dtype=dtype)
    weights = [p["Wx"], p["Wh"], p["b"]]
    h, cache = getattr(cs231n, f"{kind}_forward")(p["x"], p["h0"], *weights)
    grads = getattr(cs231n, f"{kind}_backward")(p["dh"], cache)
    h_ref, caches = ref_cs231n_forward(kind, *as_float64([p["x"], p["h0"], *weights]))
    grads_ref = ref_cs231n_backward(kind, p["dh"].astype(np.float64), caches)
    assert_same((h,) + grads, (h_ref,) + grads_ref, dtype, ["h", "dx", "dh0", "dWx", "dWh", "db"])

    # one step, x a row-strided view x[:, t] as CS231n's loops pass it
    states, douts = [p["h0"], p["c0"]][:1 + lstm], [p["dh"][:, 0], p["dc"]][:1 + lstm]
    *outs, cache = getattr(cs231n, f"{kind}_step_forward")(p["x"][:, 0], *states, *weights)
    grads = getattr(cs231n, f"{kind}_step_backward")(*douts, cache)
    forward, backward = ((ref_lstm_step_forward, ref_lstm_step_backward) if lstm
                         else (ref_rnn_step_forward, ref_rnn_step_backward))
    *outs_ref, cache_ref = forward(*as_float64([p["x"][:, 0], *states, *weights]))
    names = ["next_h", "next_c"][:1 + lstm] + ["dx", "dprev_h"] + ["dprev_c"] * lstm
    assert_same(tuple(outs) + grads, tuple(outs_ref) + backward(*as_float64(douts), cache_ref),
                dtype, names + ["dWx", "dWh", "db"])


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_cs231n_steps_chained_equal_the_sequence(rng, kind):
    """The module's own caches, passed step by step as CS231n's loops pass them, give the whole-
    sequence results."""
    N, T, D, H = 3, 4, 5, 6
    p = cs231n_problem(rng, N, T, D, H, gates=4 if kind == "lstm" else 1)
    h_seq, cache = getattr(cs231n, f"{kind}_forward")(p["x"], p["h0"], p["Wx"], p["Wh"], p["b"])
    seq_grads = getattr(cs231n, f"{kind}_backward")(p["dh"], cache)

    prev_h, prev_c, caches, hs = p["h0"], np.zeros((N, H)), [], []
    for t in range(T):
        if kind == "lstm":
            prev_h, prev_c, step_cache = cs231n.lstm_step_forward(
                p["x"][:, t], prev_h, prev_c, p["Wx"], p["Wh"], p["b"])
        else:
            prev_h, step_cache = cs231n.rnn_step_forward(p["x"][:, t], prev_h, p["Wx"], p["Wh"],
                                                         p["b"])
        hs.append(prev_h)
        caches.append(step_cache)
    np.testing.assert_allclose(np.stack(hs, axis=1), h_seq, **TOL[np.float64])

    dx, dprev_h, dprev_c = np.zeros((N, T, D)), np.zeros((N, H)), np.zeros((N, H))
    dW = [0, 0, 0]
    for t in reversed(range(T)):
        if kind == "lstm":
            dx[:, t], dprev_h, dprev_c, *dW_t = cs231n.lstm_step_backward(
                p["dh"][:, t] + dprev_h, dprev_c, caches[t])
        else:
            dx[:, t], dprev_h, *dW_t = cs231n.rnn_step_backward(p["dh"][:, t] + dprev_h, caches[t])
        dW = [a + b for a, b in zip(dW, dW_t)]
    for name, a, e in zip(["dx", "dh0", "dWx", "dWh", "db"], [dx, dprev_h, *dW], seq_grads):
        np.testing.assert_allclose(a, e, **TOL[np.float64], err_msg=name)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_cs231n_weights_changed_in_place_are_seen(rng, kind):
    """An optimizer's in-place update between calls changes the next call's results."""
    p = cs231n_problem(rng, 2, 3, 4, 5, gates=4 if kind == "lstm" else 1)
    forward, backward = getattr(cs231n, f"{kind}_forward"), getattr(cs231n, f"{kind}_backward")
    Wx, Wh, b = p["Wx"], p["Wh"], p["b"]
    for _ in range(3):
        h, cache = forward(p["x"], p["h0"], Wx, Wh, b)
        h_ref = ref_cs231n_forward(kind, p["x"], p["h0"], Wx, Wh, b)[0]
        np.testing.assert_allclose(h, h_ref, **TOL[np.float64])
        _, _, dWx, dWh, db = backward(p["dh"], cache)
        for param, grad in ((Wx, dWx), (Wh, dWh), (b, db)):
            param -= 0.1 * grad
        # a step function after the update sees it as well
        step = cs231n.lstm_step_forward if kind == "lstm" else cs231n.rnn_step_forward
        ref_step = ref_lstm_step_forward if kind == "lstm" else ref_rnn_step_forward
        states = (p["h0"], p["c0"]) if kind == "lstm" else (p["h0"],)
        np.testing.assert_allclose(step(p["x"][:, 0], *states, Wx, Wh, b)[0],
                                   ref_step(p["x"][:, 0], *states, Wx, Wh, b)[0], **TOL[np.float64])


def test_cs231n_inputs_are_not_modified_and_layouts_do_not_matter(rng):
    p = cs231n_problem(rng, 3, 4, 5, 6, gates=4)
    saved = {k: v.copy() for k, v in p.items()}
    x_strided = np.asfortranarray(p["x"])
    Wx_t = np.ascontiguousarray(p["Wx"].T).T  # a transposed view
    h, cache = cs231n.lstm_forward(x_strided, p["h0"], Wx_t, p["Wh"], p["b"])
    grads = cs231n.lstm_backward(p["dh"], cache)
    h_ref, caches = ref_cs231n_forward("lstm", p["x"], p["h0"], p["Wx"], p["Wh"], p["b"])
    assert_same((h,) + grads, (h_ref,) + ref_cs231n_backward("lstm", p["dh"], caches), np.float64,
                ["h", "dx", "dh0", "dWx", "dWh", "db"])
    for k, v in p.items():
        np.testing.assert_array_equal(v, saved[k], err_msg=k)


def test_cs231n_errors_name_the_argument(rng):
    p = cs231n_problem(rng, 2, 3, 4, 5, gates=4)
    expected = r"Wx: expected shape \(D, 4H\) = \(4, 20\), got \(4, 15\)"
    with pytest.raises(ValueError, match=expected):
        cs231n.lstm_forward(p["x"], p["h0"], p["Wx"][:, :15], p["Wh"], p["b"])
    with pytest.raises(ValueError, match=r"h0: expected shape \(N, H\) = \(2, 5\), got \(3, 5\)"):
        cs231n.lstm_forward(p["x"], np.zeros((3, 5)), p["Wx"], p["Wh"], p["b"])
    with pytest.raises(ValueError, match=r"x: expected shape \(N, T, D\), got \(2, 4\)"):
        cs231n.lstm_forward(p["x"][:, 0], p["h0"], p["Wx"], p["Wh"], p["b"])
    with pytest.raises(ValueError, match=r"prev_c: expected shape \(N, H\) = \(2, 5\)"):
        cs231n.lstm_step_forward(p["x"][:, 0], p["h0"], p["h0"][:, :2], p["Wx"], p["Wh"], p["b"])
    _, cache = cs231n.lstm_forward(p["x"], p["h0"], p["Wx"], p["Wh"], p["b"])
    with pytest.raises(ValueError, match=r"dh: expected shape \(N, T, H\) = \(2, 3, 5\)"):
        cs231n.lstm_backward(p["dh"][:, :2], cache)
    with pytest.raises(TypeError, match="cache: expected the cache that "
                                        "fastlstm.compat.cs231n.rnn_forward returned"):
        cs231n.rnn_backward(p["dh"], cache)


# ---- the captioning model's other layers ---------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cs231n_word_embedding(rng, dtype):
    V, D, N, T = 7, 4, 3, 5
    W = rng.standard_normal((V, D)).astype(dtype)
    x = rng.integers(0, V, (N, T))
    x[0, :2] = 3  # a repeated word: its gradient rows add up
    out, cache = cs231n.word_embedding_forward(x, W)
    dout = rng.standard_normal((N, T, D)).astype(dtype)
    dW = cs231n.word_embedding_backward(dout, cache)
    expected = np.zeros((V, D))
    for n in range(N):
        for t in range(T):
            expected[x[n, t]] += dout[n, t]
    assert_same([out, dW], [W[x].astype(np.float64), expected], dtype, ["out", "dW"])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cs231n_temporal_affine(rng, dtype):
    N, T, D, M = 3, 4, 5, 6
    x, w, b, dout = (rng.standard_normal(s).astype(dtype) for s in [(N, T, D), (D, M), (M,),
                                                                   (N, T, M)])
    out, cache = cs231n.temporal_affine_forward(x, w, b)
    dx, dw, db = cs231n.temporal_affine_backward(dout, cache)
    x64, w64, b64, d64 = (a.astype(np.float64) for a in (x, w, b, dout))
    expected = [np.einsum("ntd,dm->ntm", x64, w64) + b64, np.einsum("ntm,dm->ntd", d64, w64),
                np.einsum("ntd,ntm->dm", x64, d64), d64.sum(axis=(0, 1))]
    assert_same([out, dx, dw, db], expected, dtype, ["out", "dx", "dw", "db"])
    if dtype == np.float64:
        arrays = dict(x=x, w=w, b=b)
        check_by_finite_differences(
            rng, lambda: np.sum(cs231n.temporal_affine_forward(x, w, b)[0] * dout), arrays,
            dict(x=dx, w=dw, b=db))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cs231n_temporal_softmax_loss(rng, dtype):
    N, T, V = 4, 5, 6
    x = rng.standard_normal((N, T, V)).astype(dtype)
    y = rng.integers(0, V, (N, T))
    mask = rng.random((N, T)) > 0.3
    loss, dx = cs231n.temporal_softmax_loss(x, y, mask)
    assert dx.dtype == dtype
    x64 = x.astype(np.float64)
    expected = 0.0
    for n in range(N):
        for t in range(T):
            if mask[n, t]:
                p = np.exp(x64[n, t]) / np.exp(x64[n, t]).sum()
                expected -= np.log(p[y[n, t]]) / N
    np.testing.assert_allclose(loss, expected, **TOL[dtype])
    if dtype == np.float64:
        check_by_finite_differences(
            rng, lambda: cs231n.temporal_softmax_loss(x, y, mask)[0], dict(x=x), dict(x=dx),
            samples=8)
        assert np.all(dx[~mask] == 0)


def test_cs231n_temporal_softmax_loss_is_stable():
    x = np.array([[[1000.0, 0.0, -1000.0]]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        loss, dx = cs231n.temporal_softmax_loss(x, np.array([[2]]), np.array([[True]]))
    np.testing.assert_allclose(loss, 2000.0)
    np.testing.assert_allclose(dx, [[[1.0, 0.0, -1.0]]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cs231n_sigmoid_is_stable(dtype):
    x = np.array([-1000, -30, -1, 0, 1, 30, 1000], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        s = cs231n.sigmoid(x)
    assert s.dtype == dtype
    np.testing.assert_allclose(s[1:-1], 1 / (1 + np.exp(-x[1:-1].astype(np.float64))), rtol=1e-6)
    assert s[0] == 0 and s[-1] == 1


@pytest.mark.parametrize("module", [cs231n, deeplearning_ai, karpathy])
def test_compat_docstring_examples_run(module):
    failures, tried = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 0 and failures == 0



# ---- Karpathy's gist: time-major, one WLSTM (bias row, x rows, h rows), gates i, f, o, g -------

def ref_gist_forward(X, WLSTM, c0=None, h0=None):
    n, b, D = X.shape
    d = WLSTM.shape[1] // 4
    prev_c = np.zeros((b, d)) if c0 is None else c0
    prev_h = np.zeros((b, d)) if h0 is None else h0
    Hout, steps = np.zeros((n, b, d)), []
    for t in range(n):
        Hin = np.concatenate([np.ones((b, 1)), X[t], prev_h], axis=1)
        Hout[t], c, gates = ifog_step(Hin @ WLSTM, prev_c)
        steps.append((Hin, gates, prev_c, c))
        prev_h, prev_c = Hout[t], c
    return Hout, prev_c, prev_h, (WLSTM, D, steps)


def ref_gist_backward(dHout_in, cache, dcn=None, dhn=None):
    WLSTM, D, steps = cache
    n, b, d = dHout_in.shape
    dX, dWLSTM = np.zeros((n, b, D)), np.zeros_like(WLSTM)
    dh = np.zeros((b, d)) if dhn is None else dhn
    dc = np.zeros((b, d)) if dcn is None else dcn
    for t in reversed(range(n)):
        Hin, gates, prev_c, c = steps[t]
        dIFOG, dc = ifog_step_backward(dHout_in[t] + dh, dc, gates, prev_c, c)
        dWLSTM += Hin.T @ dIFOG
        dHin = dIFOG @ WLSTM.T
        dX[t], dh = dHin[:, 1:1 + D], dHin[:, 1 + D:]
    return dX, dWLSTM, dc, dh


def gist_problem(rng, n, b, D, d, dtype=np.float64):
    def normal(*shape):
        return rng.standard_normal(shape).astype(dtype)

    WLSTM = (normal(1 + D + d, 4 * d) / np.sqrt(D + d)).astype(dtype)
    return dict(X=normal(n, b, D), WLSTM=WLSTM, c0=normal(b, d), h0=normal(b, d),
                dHout=normal(n, b, d), dcn=normal(b, d), dhn=normal(b, d))


def test_gist_reference_by_finite_differences(rng):
    p = gist_problem(rng, 4, 2, 3, 5)
    args = [p["X"], p["WLSTM"], p["c0"], p["h0"]]

    def loss():
        Hout, cn, hn, _ = ref_gist_forward(*args)
        return np.sum(Hout * p["dHout"]) + np.sum(cn * p["dcn"]) + np.sum(hn * p["dhn"])
    grads = ref_gist_backward(p["dHout"], ref_gist_forward(*args)[3], p["dcn"], p["dhn"])
    names = ["X", "WLSTM", "c0", "h0"]
    check_by_finite_differences(rng, loss, dict(zip(names, args)), dict(zip(names, grads)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("states", [True, False])
@pytest.mark.parametrize("N, T, D, H", SHAPES)
def test_gist(rng, N, T, D, H, states, dtype):
    p = gist_problem(rng, T, N, D, H, dtype)
    c0, h0, dcn, dhn = (p[k] if states else None for k in ("c0", "h0", "dcn", "dhn"))
    Hout, cn, hn, cache = karpathy.LSTM.forward(p["X"], p["WLSTM"], c0, h0)
    grads = karpathy.LSTM.backward(p["dHout"], cache, dcn, dhn)
    as64 = [None if a is None else a.astype(np.float64)
            for a in (p["X"], p["WLSTM"], c0, h0, p["dHout"], dcn, dhn)]
    *outs_ref, cache_ref = ref_gist_forward(*as64[:4])
    grads_ref = ref_gist_backward(as64[4], cache_ref, *as64[5:])
    assert_same((Hout, cn, hn) + grads, tuple(outs_ref) + grads_ref, dtype,
                ["Hout", "cn", "hn", "dX", "dWLSTM", "dc0", "dh0"])


def test_gist_weights_changed_in_place_are_seen(rng):
    p = gist_problem(rng, 3, 2, 4, 5)
    WLSTM = p["WLSTM"]
    for _ in range(3):
        Hout, _, _, cache = karpathy.LSTM.forward(p["X"], WLSTM)
        np.testing.assert_allclose(Hout, ref_gist_forward(p["X"], WLSTM)[0], **TOL[np.float64])
        WLSTM -= 0.1 * karpathy.LSTM.backward(p["dHout"], cache)[1]


def test_gist_inputs_are_not_modified(rng):
    p = gist_problem(rng, 3, 2, 4, 5)
    saved = {k: v.copy() for k, v in p.items()}
    _, _, _, cache = karpathy.LSTM.forward(p["X"], p["WLSTM"], p["c0"], p["h0"])
    karpathy.LSTM.backward(p["dHout"], cache, p["dcn"], p["dhn"])
    for k, v in p.items():
        np.testing.assert_array_equal(v, saved[k], err_msg=k)


def test_gist_init():
    np.random.seed(17)
    WLSTM = karpathy.LSTM.init(30, 20)
    assert WLSTM.shape == (51, 80) and WLSTM.dtype == np.float64
    np.testing.assert_array_equal(WLSTM[0], np.r_[np.zeros(20), np.full(20, 3.0), np.zeros(40)])
    assert abs(WLSTM[1:].std() * np.sqrt(50) - 1) < 0.05
    np.testing.assert_array_equal(karpathy.LSTM.init(3, 2, fancy_forget_bias_init=0)[0], 0)


def test_gist_errors_name_the_argument(rng):
    p = gist_problem(rng, 3, 2, 4, 5)
    with pytest.raises(ValueError, match=r"WLSTM: expected shape \(1 \+ input_size \+ d, 4d\) "
                                         r"with input_size = 4, got \(9, 20\)"):
        karpathy.LSTM.forward(p["X"], p["WLSTM"][1:])
    with pytest.raises(ValueError, match=r"h0: expected shape \(b, d\) = \(2, 5\), got \(5,\)"):
        karpathy.LSTM.forward(p["X"], p["WLSTM"], None, p["h0"][0])
    _, _, _, cache = karpathy.LSTM.forward(p["X"], p["WLSTM"])
    with pytest.raises(ValueError, match=r"dcn: expected shape \(b, d\) = \(2, 5\)"):
        karpathy.LSTM.backward(p["dHout"], cache, dcn=p["dcn"][:1])
    with pytest.raises(TypeError, match="cache: expected the cache that "
                                        "fastlstm.compat.karpathy.LSTM.forward returned"):
        karpathy.LSTM.backward(p["dHout"], cs231n.rnn_forward(
            np.zeros((2, 3, 4)), np.zeros((2, 5)), np.zeros((4, 5)), np.zeros((5, 5)),
            np.zeros(5))[1])


# ---- deeplearning.ai's notebook: features first, a parameters dict, per-gate weights on [a; x] ---

def dlai_softmax(z):
    e = np.exp(z - z.max(axis=0))
    return e / e.sum(axis=0)


def ref_dlai_rnn_cell_forward(xt, a_prev, p):
    a_next = np.tanh(p["Wax"] @ xt + p["Waa"] @ a_prev + p["ba"])
    return a_next, dlai_softmax(p["Wya"] @ a_next + p["by"]), (a_next, a_prev, xt, p)


def ref_dlai_rnn_cell_backward(da_next, cache):
    a_next, a_prev, xt, p = cache
    dz = da_next * (1 - a_next ** 2)
    return {"dxt": p["Wax"].T @ dz, "da_prev": p["Waa"].T @ dz, "dWax": dz @ xt.T,
            "dWaa": dz @ a_prev.T, "dba": dz.sum(axis=1, keepdims=True)}


def ref_dlai_lstm_cell_forward(xt, a_prev, c_prev, p):
    concat = np.concatenate([a_prev, xt])
    ft, it, ot = (sigmoid(p[f"W{g}"] @ concat + p[f"b{g}"]) for g in "fio")
    cct = np.tanh(p["Wc"] @ concat + p["bc"])
    c_next = ft * c_prev + it * cct
    a_next = ot * np.tanh(c_next)
    cache = (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, p)
    return a_next, c_next, dlai_softmax(p["Wy"] @ a_next + p["by"]), cache


def ref_dlai_lstm_cell_backward(da_next, dc_next, cache):
    a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, p = cache
    n_a = a_next.shape[0]
    tanh_c = np.tanh(c_next)
    dc = dc_next + da_next * ot * (1 - tanh_c ** 2)
    dz = {"o": da_next * tanh_c * ot * (1 - ot), "c": dc * it * (1 - cct ** 2),
          "i": dc * cct * it * (1 - it), "f": dc * c_prev * ft * (1 - ft)}
    concat = np.concatenate([a_prev, xt])
    dconcat = sum(p[f"W{g}"].T @ dz[g] for g in "fico")
    gradients = {"dxt": dconcat[n_a:], "da_prev": dconcat[:n_a], "dc_prev": dc * ft}
    for g in "fico":
        gradients[f"dW{g}"] = dz[g] @ concat.T
        gradients[f"db{g}"] = dz[g].sum(axis=1, keepdims=True)
    return gradients


def ref_dlai_forward(kind, x, a0, p):
    """(a, y, c or None, caches) by the notebook's loop over its cell."""
    n_x, m, T_x = x.shape
    a, c, ys, caches = [], [], [], []
    a_prev, c_prev = a0, np.zeros_like(a0)
    for t in range(T_x):
        if kind == "lstm":
            a_prev, c_prev, yt, cache = ref_dlai_lstm_cell_forward(x[:, :, t], a_prev, c_prev, p)
        else:
            a_prev, yt, cache = ref_dlai_rnn_cell_forward(x[:, :, t], a_prev, p)
        a.append(a_prev), c.append(c_prev), ys.append(yt), caches.append(cache)
    stack = (lambda arrays: np.stack(arrays, axis=-1))
    return stack(a), stack(ys), stack(c) if kind == "lstm" else None, caches


def ref_dlai_backward(kind, da, caches):
    n_a, m, T_x = da.shape
    da_prev, dc_prev, dx, total = np.zeros((n_a, m)), np.zeros((n_a, m)), [], {}
    for t in reversed(range(T_x)):
        if kind == "lstm":
            g = ref_dlai_lstm_cell_backward(da[:, :, t] + da_prev, dc_prev, caches[t])
            dc_prev = g.pop("dc_prev")
        else:
            g = ref_dlai_rnn_cell_backward(da[:, :, t] + da_prev, caches[t])
        dx.insert(0, g.pop("dxt"))
        da_prev = g.pop("da_prev")
        total = {k: total.get(k, 0) + v for k, v in g.items()}
    return {"dx": np.stack(dx, axis=-1), "da0": da_prev, **total}


def dlai_problem(rng, kind, n_x, n_a, n_y, m, T_x, dtype=np.float64):
    def normal(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    k = 1 / np.sqrt(n_a + n_x)
    if kind == "lstm":
        p = {f"W{g}": normal(n_a, n_a + n_x, scale=k) for g in "fico"}
        p.update({f"b{g}": normal(n_a, 1, scale=k) for g in "fico"})
        p.update(Wy=normal(n_y, n_a), by=normal(n_y, 1))
    else:
        p = dict(Wax=normal(n_a, n_x, scale=k), Waa=normal(n_a, n_a, scale=k),
                 ba=normal(n_a, 1, scale=k), Wya=normal(n_y, n_a), by=normal(n_y, 1))
    return p, dict(x=normal(n_x, m, T_x), a0=normal(n_a, m), c0=normal(n_a, m),
                   da=normal(n_a, m, T_x), dc=normal(n_a, m))


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_dlai_reference_by_finite_differences(rng, kind):
    p, s = dlai_problem(rng, kind, 3, 4, 2, 2, 3)
    cell = (ref_dlai_lstm_cell_forward, ref_dlai_lstm_cell_backward) if kind == "lstm" else (
        ref_dlai_rnn_cell_forward, ref_dlai_rnn_cell_backward)
    xt, states = s["x"][:, :, 0].copy(), [s["a0"], s["c0"]] if kind == "lstm" else [s["a0"]]
    douts = [s["da"][:, :, 0], s["dc"]] if kind == "lstm" else [s["da"][:, :, 0]]

    def cell_loss():
        return sum(np.sum(out * d) for out, d in zip(cell[0](xt, *states, p), douts))
    grads = cell[1](*douts, cell[0](xt, *states, p)[-1])
    arrays = {"xt": xt, "a_prev": states[0], **({"c_prev": states[1]} if kind == "lstm" else {}),
              **{k: v for k, v in p.items() if "y" not in k}}
    check_by_finite_differences(rng, cell_loss, arrays, {k: grads["d" + k] for k in arrays})

    def sequence_loss():
        return np.sum(ref_dlai_forward(kind, s["x"], s["a0"], p)[0] * s["da"])
    grads = ref_dlai_backward(kind, s["da"], ref_dlai_forward(kind, s["x"], s["a0"], p)[3])
    arrays = {"x": s["x"], "a0": s["a0"], **{k: v for k, v in p.items() if "y" not in k}}
    check_by_finite_differences(rng, sequence_loss, arrays, {k: grads["d" + k] for k in arrays})


def assert_same_dicts(actual, expected, dtype):
    assert sorted(actual) == sorted(expected)
    names = sorted(expected)
    assert_same([actual[k] for k in names], [expected[k] for k in names], dtype, names)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["rnn", "lstm"])
@pytest.mark.parametrize("m, T_x, n_x, n_a", SHAPES)
def test_dlai(rng, kind, m, T_x, n_x, n_a, dtype):
    dlai = deeplearning_ai
    p, s = dlai_problem(rng, kind, n_x, n_a, 3, m, T_x, dtype)
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    s64 = {k: v.astype(np.float64) for k, v in s.items()}
    *outs, caches = getattr(dlai, f"{kind}_forward")(s["x"], s["a0"], p)
    grads = getattr(dlai, f"{kind}_backward")(s["da"], caches)
    a, y, c, caches_ref = ref_dlai_forward(kind, s64["x"], s64["a0"], p64)
    outs_ref = [a, y, c] if kind == "lstm" else [a, y]
    assert_same(outs, outs_ref, dtype, ["a", "y", "c"][:len(outs)])
    assert_same_dicts(grads, ref_dlai_backward(kind, s64["da"], caches_ref), dtype)

    xt = s["x"][:, :, 0]
    states = [s["a0"], s["c0"]] if kind == "lstm" else [s["a0"]]
    douts = [s["da"][:, :, 0], s["dc"]] if kind == "lstm" else [s["da"][:, :, 0]]
    *outs, cache = getattr(dlai, f"{kind}_cell_forward")(xt, *states, p)
    grads = getattr(dlai, f"{kind}_cell_backward")(*douts, cache)
    ref_forward = ref_dlai_lstm_cell_forward if kind == "lstm" else ref_dlai_rnn_cell_forward
    ref_backward = ref_dlai_lstm_cell_backward if kind == "lstm" else ref_dlai_rnn_cell_backward
    *outs_ref, cache_ref = ref_forward(xt.astype(np.float64), *[a.astype(np.float64)
                                                               for a in states], p64)
    assert_same(outs, outs_ref, dtype, ["a_next", "c_next", "yt_pred"][-len(outs):])
    assert_same_dicts(grads, ref_backward(*[d.astype(np.float64) for d in douts], cache_ref),
                      dtype)


def test_dlai_parameters_changed_in_place_are_seen(rng):
    dlai = deeplearning_ai
    p, s = dlai_problem(rng, "lstm", 3, 4, 2, 5, 6)
    for _ in range(3):
        a, _, _, caches = dlai.lstm_forward(s["x"], s["a0"], p)
        np.testing.assert_allclose(a, ref_dlai_forward("lstm", s["x"], s["a0"], p)[0],
                                   **TOL[np.float64])
        grads = dlai.lstm_backward(s["da"], caches)
        for g in "fico":
            p[f"W{g}"] -= 0.1 * grads[f"dW{g}"]
            p[f"b{g}"] -= 0.1 * grads[f"db{g}"]


def test_dlai_errors_name_the_argument(rng):
    dlai = deeplearning_ai
    p, s = dlai_problem(rng, "lstm", 3, 4, 2, 5, 6)
    with pytest.raises(ValueError, match=r"parameters\['Wc'\]: expected shape \(n_a, n_a \+ n_x\) "
                                         r"= \(4, 7\), got \(4, 6\)"):
        dlai.lstm_forward(s["x"], s["a0"], {**p, "Wc": p["Wc"][:, 1:]})
    with pytest.raises(KeyError, match="parameters: expected the key 'bo'"):
        dlai.lstm_forward(s["x"], s["a0"], {k: v for k, v in p.items() if k != "bo"})
    with pytest.raises(ValueError, match=r"c_prev: expected shape \(n_a, m\) = \(4, 5\)"):
        dlai.lstm_cell_forward(s["x"][:, :, 0], s["a0"], s["c0"][:, :2], p)
    _, _, _, caches = dlai.lstm_forward(s["x"], s["a0"], p)
    with pytest.raises(ValueError, match=r"da: expected shape \(n_a, m, T_x\) = \(4, 5, 6\)"):
        dlai.lstm_backward(s["da"][:, :, :2], caches)
    with pytest.raises(TypeError, match="cache: expected the cache that "
                                        "fastlstm.compat.deeplearning_ai.rnn_forward returned"):
        dlai.rnn_backward(s["da"], caches)


def test_readme_compat_example_trains_in_float32():
    """The README's CS231n-style captioning step runs with the one changed import and learns."""
    text = source_file("README.md").read_text()
    example = r"```python\n(import numpy as np\nfrom fastlstm\.compat\.cs231n import \*.*?)```"
    match = re.search(example, text, re.S)
    assert match, "the README's fastlstm.compat example"
    namespace = {}
    exec(match.group(1).replace("print(", "result = ("), namespace)
    _, loss, _, dtype = namespace["result"]
    assert loss < 0.5 * np.log(30) and dtype == np.float32
