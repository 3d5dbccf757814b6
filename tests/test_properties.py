"""Property tests (hypothesis): random shapes with 0 and 1 in every dimension, both dtypes, thread
counts, memory layouts and value scales. The C kernels equal the reference, stepping the cell equals
the sequence, and every thread count gives the same bits."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from conftest import TOLERANCE

import fastlstm
from fastlstm import reference as ref

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

dims = st.integers(min_value=0, max_value=7)
shapes = st.tuples(dims, dims, dims, dims)  # T, B, I, H
dtypes = st.sampled_from([np.float32, np.float64])
scales = st.sampled_from([1e-3, 1.0, 4.0])
layouts = st.sampled_from(["C", "F", "strided", "reversed"])


def in_layout(array, layout):
    """The same values as `array`, laid out in memory as `layout` says."""
    if layout == "F":
        return np.asfortranarray(array)
    if layout == "strided":
        wide = np.repeat(array, 2, axis=-1) if array.ndim else array
        return wide[..., ::2]
    if layout == "reversed" and array.ndim:
        return np.ascontiguousarray(array[::-1])[::-1]
    return array


def problem(seed, shape, dtype, scale, gates=4):
    T, B, I, H = shape
    rng = np.random.default_rng(seed)

    def draw(*dims, s=1.0):
        return (s * rng.standard_normal(dims)).astype(dtype)

    w = scale / np.sqrt(max(H, 1))
    return dict(
        xs=draw(T, B, I), h0=draw(B, H), c0=draw(B, H), W=draw(I, gates * H, s=w),
        U=draw(H, gates * H, s=w), b=draw(gates * H, s=w), dhs=draw(T, B, H),
        dh_T=draw(B, H), dc_T=draw(B, H),
    )


def assert_close_scaled(actual, expected):
    """Reference tolerance, with the absolute part scaled by the values' magnitude."""
    tol = TOLERANCE[np.dtype(expected.dtype)]
    magnitude = max(1.0, float(np.max(np.abs(expected), initial=0)))
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"] * magnitude)


@SETTINGS
@given(shape=shapes, dtype=dtypes, scale=scales, layout=layouts, threads=st.integers(1, 3),
       seed=st.integers(0, 2**32 - 1))
def test_lstm_equals_reference(shape, dtype, scale, layout, threads, seed):
    p = problem(seed, shape, dtype, scale)
    args = [in_layout(p[k], layout) for k in ("xs", "h0", "c0", "W", "U", "b")]
    want_out = ref.lstm_forward(*args)
    want = [*want_out[:3], *ref.lstm_backward(p["dhs"], p["dh_T"], p["dc_T"], want_out[3])]
    with fastlstm.num_threads(threads):
        got_out = fastlstm.lstm_forward(*args)
        got = [*got_out[:3], *fastlstm.lstm_backward(p["dhs"], p["dh_T"], p["dc_T"], got_out[3])]
    for a, e in zip(got, want):
        assert a.shape == e.shape and a.dtype == e.dtype
        assert_close_scaled(a, e)


@SETTINGS
@given(shape=shapes, dtype=dtypes, scale=scales, layout=layouts, threads=st.integers(1, 3),
       seed=st.integers(0, 2**32 - 1))
def test_rnn_equals_reference(shape, dtype, scale, layout, threads, seed):
    p = problem(seed, shape, dtype, scale, gates=1)
    args = [in_layout(p[k], layout) for k in ("xs", "h0", "W", "U", "b")]
    want_out = ref.rnn_forward(*args)
    want = [*want_out[:2], *ref.rnn_backward(p["dhs"], p["dh_T"], want_out[2])]
    with fastlstm.num_threads(threads):
        got_out = fastlstm.rnn_forward(*args)
        got = [*got_out[:2], *fastlstm.rnn_backward(p["dhs"], p["dh_T"], got_out[2])]
    for a, e in zip(got, want):
        assert a.shape == e.shape and a.dtype == e.dtype
        assert_close_scaled(a, e)


@SETTINGS
@given(shape=shapes, dtype=dtypes, seed=st.integers(0, 2**32 - 1))
def test_stepping_the_cell_equals_the_sequence(shape, dtype, seed):
    p = problem(seed, shape, dtype, 1.0)
    hs, h_T, c_T, cache = fastlstm.lstm_forward(p["xs"], p["h0"], p["c0"], p["W"], p["U"], p["b"])
    dxs, dh0, dc0, dW, dU, db = fastlstm.lstm_backward(p["dhs"], p["dh_T"], p["dc_T"], cache)
    h, c, caches = p["h0"], p["c0"], []
    for t in range(shape[0]):
        h, c, step = fastlstm.lstm_cell_forward(p["xs"][t], h, c, p["W"], p["U"], p["b"])
        assert_close_scaled(h, hs[t])
        caches.append(step)
    assert_close_scaled(h, h_T)
    assert_close_scaled(c, c_T)
    dh, dc, grads = p["dh_T"], p["dc_T"], [np.zeros_like(g) for g in (dW, dU, db)]
    for t in reversed(range(shape[0])):
        dx, dh, dc, *step_grads = fastlstm.lstm_cell_backward(dh + p["dhs"][t], dc, caches[t])
        assert_close_scaled(dx, dxs[t])
        grads = [g + s for g, s in zip(grads, step_grads)]
    assert_close_scaled(dh, dh0)
    assert_close_scaled(dc, dc0)
    for g, want in zip(grads, (dW, dU, db)):
        assert_close_scaled(g, want)


@SETTINGS
@given(shape=st.tuples(st.integers(0, 12), st.integers(0, 40), st.integers(0, 70),
                       st.integers(0, 140)),
       dtype=dtypes, threads=st.integers(2, 5), seed=st.integers(0, 2**32 - 1))
def test_thread_counts_give_the_same_bits(shape, dtype, threads, seed):
    p = problem(seed, shape, dtype, 1.0)

    def run(n):
        with fastlstm.num_threads(n):
            out = fastlstm.lstm_forward(p["xs"], p["h0"], p["c0"], p["W"], p["U"], p["b"])
            return [*out[:3], *fastlstm.lstm_backward(p["dhs"], p["dh_T"], p["dc_T"], out[3])]

    for a, b in zip(run(1), run(threads)):
        np.testing.assert_array_equal(a, b)


@SETTINGS
@given(shape=shapes, dtype=dtypes, scale=scales, layout=layouts, threads=st.integers(1, 3),
       seed=st.integers(0, 2**32 - 1))
def test_gru_equals_reference(shape, dtype, scale, layout, threads, seed):
    p = problem(seed, shape, dtype, scale, gates=3)
    p["b"] = np.stack([p["b"], p["b"][::-1]])  # (2, 3H): input-side and recurrent-side biases
    args = [in_layout(p[k], layout) for k in ("xs", "h0", "W", "U", "b")]
    want_out = ref.gru_forward(*args)
    want = [*want_out[:2], *ref.gru_backward(p["dhs"], p["dh_T"], want_out[2])]
    with fastlstm.num_threads(threads):
        got_out = fastlstm.gru_forward(*args)
        got = [*got_out[:2], *fastlstm.gru_backward(p["dhs"], p["dh_T"], got_out[2])]
    for a, e in zip(got, want):
        assert a.shape == e.shape and a.dtype == e.dtype
        assert_close_scaled(a, e)
