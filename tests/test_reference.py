"""The NumPy reference checked on its own: central finite differences in float64, stepping the
cell T times equals the sequence functions, and a variable-length batch equals each sequence run
alone."""
import numpy as np
import pytest
from conftest import (KINDS, SEQUENCE_STATES, make_gru_problem, make_problem, numeric_gradient,
                      make_sequence_problem, past_end, run_sequence)

from fastlstm import reference as ref


def check_gradients(loss, analytic, arrays):
    for name, array in arrays.items():
        numeric = numeric_gradient(loss, array)
        np.testing.assert_allclose(analytic[name], numeric, rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("T", [0, 1, 4])
def test_lstm_sequence_gradients(rng, T):
    p = make_problem(rng, T, 2, 3, 4)

    def loss():
        hs, h_T, c_T, _ = ref.lstm_forward(p["xs"], p["h0"], p["c0"], p["W"], p["U"], p["b"])
        return np.sum(hs * p["dhs"]) + np.sum(h_T * p["dh_T"]) + np.sum(c_T * p["dc_T"])

    *_, cache = ref.lstm_forward(p["xs"], p["h0"], p["c0"], p["W"], p["U"], p["b"])
    names = ["xs", "h0", "c0", "W", "U", "b"]
    grads = ref.lstm_backward(p["dhs"], p["dh_T"], p["dc_T"], cache)
    check_gradients(loss, dict(zip(names, grads)), {n: p[n] for n in names})


def test_lstm_cell_gradients(rng):
    p = make_problem(rng, 1, 3, 2, 5)
    x = p["xs"][0]

    def loss():
        h, c, _ = ref.lstm_cell_forward(x, p["h0"], p["c0"], p["W"], p["U"], p["b"])
        return np.sum(h * p["dh_T"]) + np.sum(c * p["dc_T"])

    *_, cache = ref.lstm_cell_forward(x, p["h0"], p["c0"], p["W"], p["U"], p["b"])
    grads = ref.lstm_cell_backward(p["dh_T"], p["dc_T"], cache)
    names = ["x", "h0", "c0", "W", "U", "b"]
    arrays = dict(x=x, h0=p["h0"], c0=p["c0"], W=p["W"], U=p["U"], b=p["b"])
    check_gradients(loss, dict(zip(names, grads)), arrays)


@pytest.mark.parametrize("T", [0, 1, 5])
def test_rnn_sequence_gradients(rng, T):
    p = make_problem(rng, T, 2, 3, 4, gates=1)

    def loss():
        hs, h_T, _ = ref.rnn_forward(p["xs"], p["h0"], p["W"], p["U"], p["b"])
        return np.sum(hs * p["dhs"]) + np.sum(h_T * p["dh_T"])

    *_, cache = ref.rnn_forward(p["xs"], p["h0"], p["W"], p["U"], p["b"])
    names = ["xs", "h0", "W", "U", "b"]
    grads = ref.rnn_backward(p["dhs"], p["dh_T"], cache)
    check_gradients(loss, dict(zip(names, grads)), {n: p[n] for n in names})


def test_rnn_cell_gradients(rng):
    p = make_problem(rng, 1, 3, 2, 4, gates=1)
    x = p["xs"][0]

    def loss():
        h, _ = ref.rnn_cell_forward(x, p["h0"], p["W"], p["U"], p["b"])
        return np.sum(h * p["dh_T"])

    _, cache = ref.rnn_cell_forward(x, p["h0"], p["W"], p["U"], p["b"])
    grads = ref.rnn_cell_backward(p["dh_T"], cache)
    names = ["x", "h0", "W", "U", "b"]
    arrays = dict(x=x, h0=p["h0"], W=p["W"], U=p["U"], b=p["b"])
    check_gradients(loss, dict(zip(names, grads)), arrays)


def test_lstm_cell_stepped_equals_sequence(rng):
    T, B, I, H = 6, 3, 4, 5
    p = make_problem(rng, T, B, I, H)
    hs, h_T, c_T, cache = ref.lstm_forward(p["xs"], p["h0"], p["c0"], p["W"], p["U"], p["b"])
    seq_grads = ref.lstm_backward(p["dhs"], p["dh_T"], p["dc_T"], cache)

    h, c, caches = p["h0"], p["c0"], []
    for t in range(T):
        h, c, step_cache = ref.lstm_cell_forward(p["xs"][t], h, c, p["W"], p["U"], p["b"])
        np.testing.assert_allclose(h, hs[t], rtol=1e-14, atol=1e-15)
        caches.append(step_cache)
    np.testing.assert_allclose(h, h_T, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(c, c_T, rtol=1e-14, atol=1e-15)

    dh, dc = p["dh_T"], p["dc_T"]
    dxs, dW, dU, db = [], 0, 0, 0
    for t in reversed(range(T)):
        dx, dh, dc, dW_t, dU_t, db_t = ref.lstm_cell_backward(dh + p["dhs"][t], dc, caches[t])
        dxs.insert(0, dx)
        dW, dU, db = dW + dW_t, dU + dU_t, db + db_t
    stepped = [np.stack(dxs), dh, dc, dW, dU, db]
    for name, a, e in zip(["dxs", "dh0", "dc0", "dW", "dU", "db"], stepped, seq_grads):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-13, err_msg=name)


def test_rnn_cell_stepped_equals_sequence(rng):
    T, B, I, H = 5, 2, 3, 4
    p = make_problem(rng, T, B, I, H, gates=1)
    hs, h_T, cache = ref.rnn_forward(p["xs"], p["h0"], p["W"], p["U"], p["b"])
    seq_grads = ref.rnn_backward(p["dhs"], p["dh_T"], cache)

    h, caches = p["h0"], []
    for t in range(T):
        h, step_cache = ref.rnn_cell_forward(p["xs"][t], h, p["W"], p["U"], p["b"])
        np.testing.assert_allclose(h, hs[t], rtol=1e-14, atol=1e-15)
        caches.append(step_cache)

    dh, dxs, dW, dU, db = p["dh_T"], [], 0, 0, 0
    for t in reversed(range(T)):
        dx, dh, dW_t, dU_t, db_t = ref.rnn_cell_backward(dh + p["dhs"][t], caches[t])
        dxs.insert(0, dx)
        dW, dU, db = dW + dW_t, dU + dU_t, db + db_t
    stepped = [np.stack(dxs), dh, dW, dU, db]
    for name, a, e in zip(["dxs", "dh0", "dW", "dU", "db"], stepped, seq_grads):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-13, err_msg=name)


def test_lstm_known_values():
    """A hand-checkable step: zero weights give i = f = o = 1/2, g = 0."""
    B, I, H = 1, 2, 3
    W, U, b = np.zeros((I, 4 * H)), np.zeros((H, 4 * H)), np.zeros(4 * H)
    c_prev = np.full((B, H), 2.0)
    h, c, _ = ref.lstm_cell_forward(np.ones((B, I)), None, c_prev, W, U, b)
    np.testing.assert_allclose(c, 0.5 * c_prev)
    np.testing.assert_allclose(h, 0.5 * np.tanh(1.0))


@pytest.mark.parametrize("T", [0, 1, 4])
def test_gru_sequence_gradients(rng, T):
    p = make_gru_problem(rng, T, 2, 3, 4)

    def loss():
        hs, h_T, _ = ref.gru_forward(p["xs"], p["h0"], p["W"], p["U"], p["b"])
        return np.sum(hs * p["dhs"]) + np.sum(h_T * p["dh_T"])

    *_, cache = ref.gru_forward(p["xs"], p["h0"], p["W"], p["U"], p["b"])
    names = ["xs", "h0", "W", "U", "b"]
    grads = ref.gru_backward(p["dhs"], p["dh_T"], cache)
    check_gradients(loss, dict(zip(names, grads)), {n: p[n] for n in names})


def test_gru_cell_gradients(rng):
    p = make_gru_problem(rng, 1, 3, 2, 5)
    x = p["xs"][0]

    def loss():
        h, _ = ref.gru_cell_forward(x, p["h0"], p["W"], p["U"], p["b"])
        return np.sum(h * p["dh_T"])

    _, cache = ref.gru_cell_forward(x, p["h0"], p["W"], p["U"], p["b"])
    grads = ref.gru_cell_backward(p["dh_T"], cache)
    names = ["x", "h0", "W", "U", "b"]
    arrays = dict(x=x, h0=p["h0"], W=p["W"], U=p["U"], b=p["b"])
    check_gradients(loss, dict(zip(names, grads)), arrays)


def test_gru_cell_stepped_equals_sequence(rng):
    T, B, I, H = 5, 3, 4, 2
    p = make_gru_problem(rng, T, B, I, H)
    hs, h_T, cache = ref.gru_forward(p["xs"], p["h0"], p["W"], p["U"], p["b"])
    seq_grads = ref.gru_backward(p["dhs"], p["dh_T"], cache)

    h, caches = p["h0"], []
    for t in range(T):
        h, step_cache = ref.gru_cell_forward(p["xs"][t], h, p["W"], p["U"], p["b"])
        np.testing.assert_allclose(h, hs[t], rtol=1e-14, atol=1e-15)
        caches.append(step_cache)
    np.testing.assert_allclose(h, h_T, rtol=1e-14, atol=1e-15)

    dh, dxs, dW, dU, db = p["dh_T"], [], 0, 0, 0
    for t in reversed(range(T)):
        dx, dh, dW_t, dU_t, db_t = ref.gru_cell_backward(dh + p["dhs"][t], caches[t])
        dxs.insert(0, dx)
        dW, dU, db = dW + dW_t, dU + dU_t, db + db_t
    stepped = [np.stack(dxs), dh, dW, dU, db]
    for name, a, e in zip(["dxs", "dh0", "dW", "dU", "db"], stepped, seq_grads):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-13, err_msg=name)


def test_gru_known_values():
    """A hand-checkable step: zero weights give r = z = 1/2 and n = tanh(b[0]_n + b[1]_n / 2)."""
    B, I, H = 1, 2, 3
    W, U = np.zeros((I, 3 * H)), np.zeros((H, 3 * H))
    b = np.zeros((2, 3 * H))
    b[0, 2 * H :], b[1, 2 * H :] = 0.25, 1.0  # the reset gate halves the recurrent bias only
    h_prev = np.full((B, H), 2.0)
    h, _ = ref.gru_cell_forward(np.ones((B, I)), h_prev, W, U, b)
    np.testing.assert_allclose(h, 0.5 * np.tanh(0.25 + 0.5) + 0.5 * h_prev)


# ---- variable-length batches ---------------------------------------------------------------------


@pytest.mark.parametrize("lengths", [[5, 5, 5], [0, 0], [5, 0, 2, 1, 4], [3, 1, 2]],
                         ids=["all-T", "all-0", "mixed", "all-short"])
@pytest.mark.parametrize("kind", KINDS)
def test_lengths_equal_each_sequence_alone(rng, kind, lengths):
    """Each row of a variable-length batch is that sequence run alone for its own length: hs up
    to its end and the carried final state after it, the final state, dxs (zero past the end),
    the initial states' gradients; the weight gradients are the sum of the rows'."""
    T, I, H = 5, 3, 4
    B, S = len(lengths), len(SEQUENCE_STATES[kind])
    p = make_sequence_problem(rng, kind, T, B, I, H)
    hs, finals, (dxs, *grads) = run_sequence(ref, kind, p, lengths)
    tight = dict(rtol=1e-12, atol=1e-13)
    summed = [0, 0, 0]
    for b, n in enumerate(lengths):
        rows = {k: p[k][b : b + 1] for k in ("h0", "c0", "dh_T", "dc_T") if k in p}
        alone = dict(p, xs=p["xs"][:n, b : b + 1], dhs=p["dhs"][:n, b : b + 1], **rows)
        hs_b, finals_b, (dxs_b, *grads_b) = run_sequence(ref, kind, alone)
        np.testing.assert_allclose(hs[:n, b], hs_b[:, 0], **tight)
        np.testing.assert_array_equal(hs[n:, b], np.broadcast_to(finals[0][b], (T - n, H)))
        for f, f_b in zip(finals, finals_b):
            np.testing.assert_allclose(f[b], f_b[0], **tight)
        np.testing.assert_allclose(dxs[:n, b], dxs_b[:, 0], **tight)
        assert not dxs[n:, b].any()
        for g, g_b in zip(grads[:S], grads_b[:S]):
            np.testing.assert_allclose(g[b], g_b[0], **tight)
        summed = [a + g_b for a, g_b in zip(summed, grads_b[S:])]
    for name, g, e in zip(["dW", "dU", "db"], grads[S:], summed):
        np.testing.assert_allclose(g, e, **tight, err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_sequence_gradients_with_lengths(rng, kind):
    """Finite differences of a loss on hs up to each row's end and on the final states; the
    backward gets dhs everywhere and must ignore it past the ends."""
    T, B, I, H = 4, 3, 2, 3
    lengths = [4, 0, 2]
    p = make_sequence_problem(rng, kind, T, B, I, H)
    states = SEQUENCE_STATES[kind]
    live = ~past_end(lengths, T)[:, :, np.newaxis]

    def loss():
        forward = getattr(ref, f"{kind}_forward")
        hs, *finals, _ = forward(p["xs"], *[p[s] for s in states], p["W"], p["U"], p["b"],
                                 lengths=lengths)
        return np.sum(hs * p["dhs"] * live) + sum(
            np.sum(f * p[f"d{s[0]}_T"]) for f, s in zip(finals, states)
        )

    _, _, grads = run_sequence(ref, kind, p, lengths)
    names = ["xs", *states, "W", "U", "b"]
    check_gradients(loss, dict(zip(names, grads)), {n: p[n] for n in names})
