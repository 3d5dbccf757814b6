"""The C kernels against the NumPy reference: every output and gradient, float32 and float64, awkward
shapes, every SIMD kernel, variable-length batches, and bitwise-identical results for any thread
count."""
import numpy as np
import pytest
from conftest import (KINDS, SEQUENCE_STATES, assert_all_close, assert_close, make_gru_problem,
                      make_problem, make_sequence_problem, past_end, run_sequence)

import fastlstm
from fastlstm import reference as ref

LSTM_GRADS = ["dxs", "dh0", "dc0", "dW", "dU", "db"]
RNN_GRADS = ["dxs", "dh0", "dW", "dU", "db"]

# (T, B, I, H): T = 0 and 1, B = 1, I != H, H = 1, 3, 17 and others not a multiple of any SIMD width
SHAPES = [
    (0, 2, 3, 4),
    (1, 1, 1, 1),
    (1, 3, 5, 3),
    (2, 1, 7, 17),
    (5, 4, 3, 17),
    (7, 13, 33, 1),
    (3, 2, 1, 65),
    (4, 25, 19, 40),
    (3, 1, 300, 129),  # one row, 3 unit groups of 64: 2 of 80, the wider row tile's
    (3, 1, 20, 160),  # whole groups of 80
    (2, 1, 9, 515),  # one row of a wide U: the backward's dot products read U in place
    (2, 12, 250, 270),  # rows enough for the steps to compute x_t @ W, but weights over 2 MiB
    (3, 9, 0, 20),  # no inputs where the steps would compute x_t @ W
]
DTYPES = [np.float32, np.float64]


def lstm_both(p, h0=True, c0=True):
    """(fastlstm, reference) results of forward then backward."""
    results = []
    for module in (fastlstm, ref):
        hs, h_T, c_T, cache = module.lstm_forward(
            p["xs"], p["h0"] if h0 else None, p["c0"] if c0 else None, p["W"], p["U"], p["b"]
        )
        grads = module.lstm_backward(p["dhs"], p["dh_T"], p["dc_T"], cache)
        results.append(((hs, h_T, c_T), grads))
    return results


def rnn_both(p):
    results = []
    for module in (fastlstm, ref):
        hs, h_T, cache = module.rnn_forward(p["xs"], p["h0"], p["W"], p["U"], p["b"])
        results.append(((hs, h_T), module.rnn_backward(p["dhs"], p["dh_T"], cache)))
    return results


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T%d-B%d-I%d-H%d" % s)
def test_lstm_matches_reference(rng, shape, dtype, simd):
    p = make_problem(rng, *shape, dtype=dtype)
    (out, grads), (ref_out, ref_grads) = lstm_both(p)
    assert_all_close(out, ref_out, ["hs", "h_T", "c_T"])
    assert_all_close(grads, ref_grads, LSTM_GRADS)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T%d-B%d-I%d-H%d" % s)
def test_rnn_matches_reference(rng, shape, dtype, simd):
    p = make_problem(rng, *shape, dtype=dtype, gates=1)
    (out, grads), (ref_out, ref_grads) = rnn_both(p)
    assert_all_close(out, ref_out, ["hs", "h_T"])
    assert_all_close(grads, ref_grads, RNN_GRADS)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lstm_acceptance_shape(rng, dtype):
    """The issue's acceptance bar at T=100, B=8, I=H=256: max error <= 1e-10 (float64) and
    <= 1e-4 relative (float32) on every output and gradient."""
    p = make_problem(rng, 100, 8, 256, 256, dtype=dtype)
    (out, grads), (ref_out, ref_grads) = lstm_both(p)
    for name, a, e in zip(["hs", "h_T", "c_T"] + LSTM_GRADS, out + grads, ref_out + ref_grads):
        err = np.max(np.abs(a.astype(np.float64) - e))
        if dtype == np.float64:
            assert err <= 1e-10, (name, err)
        else:
            assert err <= 1e-4 * max(np.max(np.abs(e)), 1.0), (name, err)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lstm_long_sequence_large_batch(rng, dtype):
    """Enough rows and columns to cross the GEMM's cache blocks (mc, kc, nc) and edge tiles."""
    p = make_problem(rng, 9, 70, 301, 130, dtype=dtype)
    (out, grads), (ref_out, ref_grads) = lstm_both(p)
    assert_all_close(out, ref_out, ["hs", "h_T", "c_T"])
    assert_all_close(grads, ref_grads, LSTM_GRADS)


@pytest.mark.parametrize("h0, c0", [(False, False), (True, False), (False, True)])
def test_lstm_optional_initial_state(rng, h0, c0):
    p = make_problem(rng, 4, 3, 5, 6)
    (out, grads), (ref_out, ref_grads) = lstm_both(p, h0=h0, c0=c0)
    assert_all_close(out, ref_out, ["hs", "h_T", "c_T"])
    assert_all_close(grads, ref_grads, LSTM_GRADS)


@pytest.mark.parametrize("missing", ["dhs", "dh_T", "dc_T"])
def test_lstm_optional_gradients(rng, missing):
    p = make_problem(rng, 4, 3, 5, 6)
    p[missing] = None
    (_, grads), (_, ref_grads) = lstm_both(p)
    assert_all_close(grads, ref_grads, LSTM_GRADS)


def test_lstm_no_gradient_at_all(rng):
    p = make_problem(rng, 3, 2, 4, 5)
    *_, cache = fastlstm.lstm_forward(p["xs"], p["h0"], p["c0"], p["W"], p["U"], p["b"])
    for grad in fastlstm.lstm_backward(None, None, None, cache):
        assert not np.any(grad)


def test_zero_steps_returns_initial_state(rng):
    p = make_problem(rng, 0, 3, 4, 5)
    hs, h_T, c_T, cache = fastlstm.lstm_forward(p["xs"], p["h0"], p["c0"], p["W"], p["U"], p["b"])
    assert hs.shape == (0, 3, 5)
    np.testing.assert_array_equal(h_T, p["h0"])
    np.testing.assert_array_equal(c_T, p["c0"])
    assert h_T is not p["h0"] and not np.shares_memory(h_T, p["h0"])
    dxs, dh0, dc0, dW, dU, db = fastlstm.lstm_backward(p["dhs"], p["dh_T"], p["dc_T"], cache)
    assert dxs.shape == (0, 3, 4)
    np.testing.assert_array_equal(dh0, p["dh_T"])
    np.testing.assert_array_equal(dc0, p["dc_T"])
    for grad in (dW, dU, db):
        assert not np.any(grad)


# (B, I, H) of a single step: the cells read the weights in place, in 4-row tiles with leftover rows
# one at a time, whole column tiles with leftover columns in a plain loop, so B = 5 and 4H just
# over a tile's width matter here; also empty batches and inputs.
CELL_SHAPES = [(1, 1, 1), (3, 5, 3), (1, 7, 17), (4, 3, 17), (5, 64, 128), (13, 33, 1),
               (2, 1, 65), (25, 19, 40), (1, 300, 129), (9, 16, 33), (0, 3, 4), (2, 0, 5)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CELL_SHAPES, ids=lambda s: "B%d-I%d-H%d" % s)
def test_lstm_cell_matches_reference(rng, shape, dtype, simd):
    p = make_problem(rng, 1, *shape, dtype=dtype)
    x = p["xs"][0]
    results = []
    for module in (fastlstm, ref):
        h, c, cache = module.lstm_cell_forward(x, p["h0"], p["c0"], p["W"], p["U"], p["b"])
        results.append(((h, c), module.lstm_cell_backward(p["dh_T"], p["dc_T"], cache)))
    (out, grads), (ref_out, ref_grads) = results
    assert_all_close(out, ref_out, ["h", "c"])
    assert_all_close(grads, ref_grads, ["dx", "dh_prev", "dc_prev", "dW", "dU", "db"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CELL_SHAPES, ids=lambda s: "B%d-I%d-H%d" % s)
def test_rnn_cell_matches_reference(rng, shape, dtype, simd):
    p = make_problem(rng, 1, *shape, dtype=dtype, gates=1)
    x = p["xs"][0]
    results = []
    for module in (fastlstm, ref):
        h, cache = module.rnn_cell_forward(x, p["h0"], p["W"], p["U"], p["b"])
        results.append(((h,), module.rnn_cell_backward(p["dh_T"], cache)))
    (out, grads), (ref_out, ref_grads) = results
    assert_all_close(out, ref_out, ["h"])
    assert_all_close(grads, ref_grads, ["dx", "dh_prev", "dW", "dU", "db"])


def online_training(module, p, steps, kind):
    """A user's loop: one cell step forward and back, then an SGD update of W, U, b in place (so
    every call sees weights changed since the last); returns everything it computed."""
    W, U, b = p["W"].copy(), p["U"].copy(), p["b"].copy()
    h, c = p["h0"], p["c0"]
    trace = []
    for t in range(steps):
        x = p["xs"][t]
        if kind == "lstm":
            h, c, cache = module.lstm_cell_forward(x, h, c, W, U, b)
            W[0] += 0.25  # changed between the forward and its backward: the backward sees it too
            dx, dh, dc, dW, dU, db = module.lstm_cell_backward(p["dhs"][t], p["dc_T"], cache)
            trace += [h, c, dx, dh, dc, dW, dU, db]
        else:
            h, cache = getattr(module, f"{kind}_cell_forward")(x, h, W, U, b)
            W[0] += 0.25
            dx, dh, dW, dU, db = getattr(module, f"{kind}_cell_backward")(p["dhs"][t], cache)
            trace += [h, dx, dh, dW, dU, db]
        W -= 0.1 * dW
        U -= 0.1 * dU
        b -= 0.1 * db
    return trace


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cell_sees_weights_changed_in_place(rng, kind, dtype):
    if kind == "gru":
        p = make_gru_problem(rng, 6, 3, 5, 7, dtype=dtype)
        p["c0"] = None
    else:
        p = make_problem(rng, 6, 3, 5, 7, dtype=dtype, gates=4 if kind == "lstm" else 1)
    trace = online_training(fastlstm, p, 6, kind)
    expected = online_training(ref, p, 6, kind)
    for t, (a, e) in enumerate(zip(trace, expected)):
        assert_close(a, e)


def test_cell_cache_keeps_its_own_state(rng):
    # resetting the returned c in place (say, at an episode's end) must not change the backward
    p = make_problem(rng, 1, 2, 3, 4)
    x = p["xs"][0]
    grads = []
    for module in (fastlstm, ref):
        h, c, cache = module.lstm_cell_forward(x, p["h0"], p["c0"], p["W"], p["U"], p["b"])
        c[:] = 0
        grads.append(module.lstm_cell_backward(p["dh_T"], p["dc_T"], cache))
    assert_all_close(grads[0], grads[1], ["dx", "dh_prev", "dc_prev", "dW", "dU", "db"])


def test_cell_without_state_or_gradient(rng):
    p = make_problem(rng, 1, 2, 3, 4)
    x = p["xs"][0]
    for module in (fastlstm, ref):
        h, c, cache = module.lstm_cell_forward(x, None, None, p["W"], p["U"], p["b"])
        grads = module.lstm_cell_backward(p["dh_T"], None, cache)
        assert_close(h, ref.lstm_cell_forward(x, None, None, p["W"], p["U"], p["b"])[0])
        assert grads[0].shape == x.shape


# Steps of at least 2*B*(I+H)*4H = 512K flops, so that the kernels really start several threads
# (team_size in csrc/fastlstm.c runs smaller steps on the calling thread alone). Where there are
# rows for every thread and U is small, the steps split the rows between the threads (steps.inc,
# step_split), differently for each thread count; with U larger than 4 MiB (H = 520), the units,
# whose odd number of groups for the AVX-512 tiles (9 of 64 in float32, 17 of 32 in float64) makes
# them split the rows too, in two; with one row, 4 groups of the wider AVX-512 row tile at H = 300.
@pytest.mark.parametrize("shape", [(6, 9, 64, 90), (3, 40, 33, 130), (20, 1, 190, 210),
                                   (3, 1, 30, 520), (4, 24, 40, 300), (5, 1, 190, 300),
                                   (3, 9, 30, 520)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_identical_for_any_thread_count(rng, shape, dtype):
    p = make_problem(rng, *shape, dtype=dtype)
    T, B, I, H = shape
    p1 = make_problem(rng, T, B, I, 3 * H, dtype=dtype, gates=1)  # an RNN step has 1/4 the flops
    runs = []
    for n in (1, 2, 3):
        with fastlstm.num_threads(n):
            hs, h_T, c_T, cache = fastlstm.lstm_forward(
                p["xs"], p["h0"], p["c0"], p["W"], p["U"], p["b"]
            )
            grads = fastlstm.lstm_backward(p["dhs"], p["dh_T"], p["dc_T"], cache)
            rhs, rh_T, rcache = fastlstm.rnn_forward(p1["xs"], p1["h0"], p1["W"], p1["U"], p1["b"])
            rgrads = fastlstm.rnn_backward(p1["dhs"], p1["dh_T"], rcache)
            h, c, ccache = fastlstm.lstm_cell_forward(p["xs"][0], p["h0"], p["c0"], p["W"], p["U"],
                                                      p["b"])
            cgrads = fastlstm.lstm_cell_backward(p["dh_T"], p["dc_T"], ccache)
            rh, rccache = fastlstm.rnn_cell_forward(p1["xs"][0], p1["h0"], p1["W"], p1["U"], p1["b"])
            rcgrads = fastlstm.rnn_cell_backward(p1["dh_T"], rccache)
        runs.append([hs, h_T, c_T, *grads, rhs, rh_T, *rgrads, h, c, *cgrads, rh, *rcgrads])
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)



def at_offset(array, offset):
    """A C-contiguous copy of `array` whose data starts `offset` bytes past a 64-byte boundary."""
    buffer = np.empty(array.nbytes + 128, np.uint8)
    start = (-buffer.ctypes.data) % 64 + offset
    placed = buffer[start:start + array.nbytes].view(array.dtype).reshape(array.shape)
    placed[...] = array
    return placed


@pytest.mark.parametrize("offset", range(0, 64, 4))
def test_cell_weights_at_any_alignment(rng, offset):
    # the cell aligns its column tiles to U's rows: every offset gives other leading columns
    p = make_problem(rng, 1, 3, 20, 16, dtype=np.float32)
    x, W, U = p["xs"][0], at_offset(p["W"], offset), at_offset(p["U"], (offset * 3) % 64)
    assert W.ctypes.data % 64 == offset
    h, c, cache = fastlstm.lstm_cell_forward(x, p["h0"], p["c0"], W, U, p["b"])
    grads = fastlstm.lstm_cell_backward(p["dh_T"], p["dc_T"], cache)
    ref_h, ref_c, ref_cache = ref.lstm_cell_forward(x, p["h0"], p["c0"], p["W"], p["U"], p["b"])
    assert_all_close((h, c), (ref_h, ref_c), ["h", "c"])
    assert_all_close(grads, ref.lstm_cell_backward(p["dh_T"], p["dc_T"], ref_cache),
                     ["dx", "dh_prev", "dc_prev", "dW", "dU", "db"])


# ---- GRU ------------------------------------------------------------------------------------------

GRU_GRADS = ["dxs", "dh0", "dW", "dU", "db"]
# (T, B, I, H): T = 0, 1, 5; B = 1, 3; H = 1, 3, 17; I != H
GRU_SHAPES = [
    (0, 3, 2, 3),
    (1, 1, 1, 1),
    (1, 3, 5, 3),
    (5, 1, 7, 17),
    (5, 3, 4, 17),
    (5, 3, 17, 1),
    (3, 2, 1, 65),
    (4, 25, 19, 40),
    (3, 1, 5, 150),  # one row, 3 unit groups of 64: 2 of 80, the wider row tile's
    (2, 1, 9, 515),
]


def gru_both(p, h0=True):
    """(fastlstm, reference) results of forward then backward."""
    results = []
    for module in (fastlstm, ref):
        hs, h_T, cache = module.gru_forward(
            p["xs"], p["h0"] if h0 else None, p["W"], p["U"], p["b"]
        )
        results.append(((hs, h_T), module.gru_backward(p["dhs"], p["dh_T"], cache)))
    return results


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GRU_SHAPES, ids=lambda s: "T%d-B%d-I%d-H%d" % s)
def test_gru_matches_reference(rng, shape, dtype, simd):
    p = make_gru_problem(rng, *shape, dtype=dtype)
    (out, grads), (ref_out, ref_grads) = gru_both(p)
    assert_all_close(out, ref_out, ["hs", "h_T"])
    assert_all_close(grads, ref_grads, GRU_GRADS)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gru_large_batch(rng, dtype):
    """Enough rows and columns to cross the GEMM's cache blocks (mc, kc, nc) and edge tiles."""
    p = make_gru_problem(rng, 9, 70, 301, 130, dtype=dtype)
    (out, grads), (ref_out, ref_grads) = gru_both(p)
    assert_all_close(out, ref_out, ["hs", "h_T"])
    assert_all_close(grads, ref_grads, GRU_GRADS)


@pytest.mark.parametrize("missing", ["h0", "dhs", "dh_T"])
def test_gru_optional_arguments(rng, missing):
    p = make_gru_problem(rng, 4, 3, 5, 6)
    if missing != "h0":
        p[missing] = None
    (out, grads), (ref_out, ref_grads) = gru_both(p, h0=missing != "h0")
    assert_all_close(out, ref_out, ["hs", "h_T"])
    assert_all_close(grads, ref_grads, GRU_GRADS)


def test_gru_no_gradient_at_all(rng):
    p = make_gru_problem(rng, 3, 2, 4, 5)
    *_, cache = fastlstm.gru_forward(p["xs"], p["h0"], p["W"], p["U"], p["b"])
    for grad in fastlstm.gru_backward(None, None, cache):
        assert not np.any(grad)


def test_gru_zero_steps_returns_initial_state(rng):
    p = make_gru_problem(rng, 0, 3, 4, 5)
    hs, h_T, cache = fastlstm.gru_forward(p["xs"], p["h0"], p["W"], p["U"], p["b"])
    assert hs.shape == (0, 3, 5)
    np.testing.assert_array_equal(h_T, p["h0"])
    assert not np.shares_memory(h_T, p["h0"])
    dxs, dh0, dW, dU, db = fastlstm.gru_backward(p["dhs"], p["dh_T"], cache)
    assert dxs.shape == (0, 3, 4) and db.shape == (2, 15)
    np.testing.assert_array_equal(dh0, p["dh_T"])
    for grad in (dW, dU, db):
        assert not np.any(grad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CELL_SHAPES, ids=lambda s: "B%d-I%d-H%d" % s)
def test_gru_cell_matches_reference(rng, shape, dtype, simd):
    p = make_gru_problem(rng, 1, *shape, dtype=dtype)
    x = p["xs"][0]
    results = []
    for module in (fastlstm, ref):
        h, cache = module.gru_cell_forward(x, p["h0"], p["W"], p["U"], p["b"])
        results.append(((h,), module.gru_cell_backward(p["dh_T"], cache)))
    (out, grads), (ref_out, ref_grads) = results
    assert_all_close(out, ref_out, ["h"])
    assert_all_close(grads, ref_grads, ["dx", "dh_prev", "dW", "dU", "db"])


# Steps of at least 2*B*(I+H)*3H = 512K flops, so that the kernels really start several threads.
@pytest.mark.parametrize("shape", [(6, 9, 64, 90), (3, 40, 33, 130), (20, 1, 220, 230)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gru_bitwise_identical_for_any_thread_count(rng, shape, dtype):
    p = make_gru_problem(rng, *shape, dtype=dtype)
    runs = []
    for n in (1, 2, 3):
        with fastlstm.num_threads(n):
            hs, h_T, cache = fastlstm.gru_forward(p["xs"], p["h0"], p["W"], p["U"], p["b"])
            h, cell_cache = fastlstm.gru_cell_forward(p["xs"][0], p["h0"], p["W"], p["U"], p["b"])
            runs.append([hs, h_T, *fastlstm.gru_backward(p["dhs"], p["dh_T"], cache), h,
                         *fastlstm.gru_cell_backward(p["dh_T"], cell_cache)])
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


def test_gru_equals_torch(rng):
    """fastlstm's GRU is torch.nn.GRU with W = weight_ih_l0.T, U = weight_hh_l0.T and
    b = [bias_ih_l0, bias_hh_l0]: outputs and every gradient, in float64."""
    torch = pytest.importorskip("torch")
    T, B, I, H = 6, 3, 5, 7
    p = make_gru_problem(rng, T, B, I, H)
    gru = torch.nn.GRU(I, H, dtype=torch.float64)
    with torch.no_grad():
        gru.weight_ih_l0.copy_(torch.from_numpy(p["W"].T.copy()))
        gru.weight_hh_l0.copy_(torch.from_numpy(p["U"].T.copy()))
        gru.bias_ih_l0.copy_(torch.from_numpy(p["b"][0]))
        gru.bias_hh_l0.copy_(torch.from_numpy(p["b"][1]))
    xs = torch.from_numpy(p["xs"]).requires_grad_()
    h0 = torch.from_numpy(p["h0"][np.newaxis]).requires_grad_()
    out, h_n = gru(xs, h0)
    loss = (out * torch.from_numpy(p["dhs"])).sum() + (h_n[0] * torch.from_numpy(p["dh_T"])).sum()
    loss.backward()
    expected = [
        out.detach().numpy(), h_n[0].detach().numpy(), xs.grad.numpy(), h0.grad[0].numpy(),
        gru.weight_ih_l0.grad.numpy().T, gru.weight_hh_l0.grad.numpy().T,
        np.stack([gru.bias_ih_l0.grad.numpy(), gru.bias_hh_l0.grad.numpy()]),
    ]

    hs, h_T, cache = fastlstm.gru_forward(p["xs"], p["h0"], p["W"], p["U"], p["b"])
    got = [hs, h_T, *fastlstm.gru_backward(p["dhs"], p["dh_T"], cache)]
    for name, a, e in zip(["hs", "h_T"] + GRU_GRADS, got, expected):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-12, err_msg=name)


# ---- variable-length batches ---------------------------------------------------------------------

LENGTHS_SHAPES = [
    (0, 2, 3, 4),
    (1, 1, 1, 1),
    (1, 3, 5, 3),
    (2, 1, 7, 17),
    (5, 4, 3, 17),
    (7, 13, 33, 1),
    (3, 2, 1, 65),
    (4, 25, 19, 40),
    (4, 1, 5, 150),  # one row in groups of 80 (the wider row tile)
]


def some_lengths(rng, B, longest):
    """B lengths in [0, longest], `longest` the first and 0 the last (when B > 1)."""
    lengths = rng.integers(0, longest + 1, B)
    lengths[0] = longest
    if B > 1:
        lengths[-1] = 0
    return lengths


def names(kind):
    S = len(SEQUENCE_STATES[kind])
    return ["hs", "h_T", "c_T"][: 1 + S], ["dxs", "dh0", "dc0"][: 1 + S] + ["dW", "dU", "db"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LENGTHS_SHAPES, ids=lambda s: "T%d-B%d-I%d-H%d" % s)
@pytest.mark.parametrize("longest", ["T", "T-2"])
@pytest.mark.parametrize("kind", KINDS)
def test_lengths_match_reference(rng, kind, longest, shape, dtype, simd):
    """Mixed lengths, 0 among them; the longest T, or T-2 so that whole steps have no row left."""
    T, B, I, H = shape
    p = make_sequence_problem(rng, kind, T, B, I, H, dtype)
    lengths = some_lengths(rng, B, T if longest == "T" else max(T - 2, 0))
    hs, finals, grads = run_sequence(fastlstm, kind, p, lengths)
    ref_hs, ref_finals, ref_grads = run_sequence(ref, kind, p, lengths)
    out_names, grad_names = names(kind)
    assert_all_close((hs, *finals), (ref_hs, *ref_finals), out_names)
    assert_all_close(grads, ref_grads, grad_names)
    # past each end: the carried final state, exactly, and no gradient at all
    ended = past_end(lengths, T)
    np.testing.assert_array_equal(hs[ended], np.broadcast_to(finals[0], hs.shape)[ended])
    assert not grads[0][ended].any()


@pytest.mark.parametrize("module", [fastlstm, ref], ids=["fastlstm", "reference"])
@pytest.mark.parametrize("kind", KINDS)
def test_full_lengths_are_the_plain_pass(rng, kind, module):
    p = make_sequence_problem(rng, kind, 5, 4, 3, 17)
    (hs, finals, grads), (full_hs, full_finals, full_grads) = (
        run_sequence(module, kind, p), run_sequence(module, kind, p, [5] * 4))
    for a, b in zip([hs, *finals, *grads], [full_hs, *full_finals, *full_grads]):
        np.testing.assert_array_equal(a, b)


# Steps of at least 512K flops (see above); the RNN's H three times larger for its single gate.
@pytest.mark.parametrize("lengths", [[6, 0, 3, 5, 1, 6, 2, 4, 6], [5, 0, 3, 5, 1, 4, 2, 4, 5]],
                         ids=["longest-T", "longest-T-1"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_lengths_bitwise_identical_for_any_thread_count(rng, kind, dtype, lengths):
    T, B, I, H = 6, 9, 64, 270 if kind == "rnn" else 90
    p = make_sequence_problem(rng, kind, T, B, I, H, dtype)
    runs = []
    for n in (1, 2, 3):
        with fastlstm.num_threads(n):
            hs, finals, grads = run_sequence(fastlstm, kind, p, lengths)
        runs.append([hs, *finals, *grads])
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("module", [fastlstm, ref], ids=["fastlstm", "reference"])
@pytest.mark.parametrize("kind", KINDS)
def test_lengths_equal_torch_packed_sequences(rng, kind, module):
    """torch.nn.{LSTM,RNN,GRU} on pack_padded_sequence(enforce_sorted=False), float64: the padded
    outputs (ours zeroed past each end), the final states and every gradient."""
    torch = pytest.importorskip("torch")
    T, B, I, H = 6, 4, 5, 7
    lengths = [6, 1, 3, 4]  # torch packs no empty sequence
    p = make_sequence_problem(rng, kind, T, B, I, H)
    states = SEQUENCE_STATES[kind]
    net = {"lstm": torch.nn.LSTM, "rnn": torch.nn.RNN, "gru": torch.nn.GRU}[kind](
        I, H, dtype=torch.float64)
    b_ih, b_hh = p["b"] if kind == "gru" else (p["b"], np.zeros_like(p["b"]))
    with torch.no_grad():
        for name, value in [("weight_ih_l0", p["W"].T), ("weight_hh_l0", p["U"].T),
                            ("bias_ih_l0", b_ih), ("bias_hh_l0", b_hh)]:
            getattr(net, name).copy_(torch.from_numpy(np.ascontiguousarray(value)))
    xs = torch.from_numpy(p["xs"]).requires_grad_()
    initial = [torch.from_numpy(p[s][np.newaxis]).requires_grad_() for s in states]
    packed = torch.nn.utils.rnn.pack_padded_sequence(xs, torch.tensor(lengths),
                                                     enforce_sorted=False)
    out, final = net(packed, tuple(initial) if kind == "lstm" else initial[0])
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    final = final if kind == "lstm" else (final,)
    loss = (out * torch.from_numpy(p["dhs"])).sum()
    for f, s in zip(final, states):
        loss = loss + (f[0] * torch.from_numpy(p[f"d{s[0]}_T"])).sum()
    loss.backward()
    db = net.bias_ih_l0.grad.numpy()  # = bias_hh_l0's gradient, but for the GRU's n block
    if kind == "gru":
        db = np.stack([db, net.bias_hh_l0.grad.numpy()])
    expected = [out.detach().numpy(), *[f[0].detach().numpy() for f in final], xs.grad.numpy(),
                *[s.grad[0].numpy() for s in initial], net.weight_ih_l0.grad.numpy().T,
                net.weight_hh_l0.grad.numpy().T, db]

    hs, finals, grads = run_sequence(module, kind, p, lengths)
    got = [np.where(past_end(lengths, T)[:, :, np.newaxis], 0, hs), *finals, *grads]
    out_names, grad_names = names(kind)
    for name, a, e in zip(out_names + grad_names, got, expected):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-12, err_msg=name)


# ---- matmul: the products of a training loop, on fastlstm's GEMM -----------------------------------

@pytest.mark.parametrize("shapes", [((5, 4, 3), (3, 2)), ((1, 1), (1, 1)), ((0, 7), (7, 3)),
                                    ((6, 0), (0, 4)), ((7,), (7, 5)), ((3, 0), (0, 0)),
                                    ((300, 257), (257, 129)), ((2, 33, 65), (65, 17))])
@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_matches_numpy(rng, shapes, dtype, simd):
    a = rng.standard_normal(shapes[0]).astype(dtype)
    b = rng.standard_normal(shapes[1]).astype(dtype)
    for module in (fastlstm, fastlstm.reference):
        got = module.matmul(a, b)
        assert got.shape == (a @ b).shape and got.dtype == dtype and got.flags.c_contiguous
        assert_close(got, a @ b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_reads_any_layout(rng, dtype):
    """Transposed views (the gradients' x^T @ dy and dy @ W^T), strided views and read-only
    arrays give NumPy's product; none is modified."""
    x = rng.standard_normal((150, 70)).astype(dtype)
    dy = rng.standard_normal((150, 40)).astype(dtype)
    W = rng.standard_normal((70, 40)).astype(dtype)
    W.flags.writeable = False
    before = [x.copy(), dy.copy(), W.copy()]
    for a, b in [(x.T, dy), (dy, W.T), (x[::2], W), (x[:, ::3], W[::3]), (x.T[:, ::2], dy[::2])]:
        assert_close(fastlstm.matmul(a, b), a @ b)
    for array, copy in zip((x, dy, W), before):
        np.testing.assert_array_equal(array, copy)


def test_matmul_promotes_and_checks(rng):
    a32 = rng.standard_normal((4, 3)).astype(np.float32)
    assert fastlstm.matmul(a32, np.ones((3, 2), np.float32)).dtype == np.float32
    assert fastlstm.matmul(a32, np.ones((3, 2))).dtype == np.float64
    assert fastlstm.matmul(np.ones((4, 3), int), np.ones((3, 2), int)).dtype == np.float64
    with pytest.raises(ValueError, match=r"b: expected shape \(K, N\) = \(3, 2\)"):
        fastlstm.matmul(a32, np.ones((5, 2)))
    with pytest.raises(ValueError, match="b: expected a 2-d array"):
        fastlstm.matmul(a32, np.ones(3))
    with pytest.raises(ValueError, match=r"a: expected an array of shape \(\.\.\., K\)"):
        fastlstm.matmul(np.float32(1), np.ones((1, 2)))
    with pytest.raises(TypeError, match="float32 or float64"):
        fastlstm.matmul(a32.astype(complex), np.ones((3, 2)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_bitwise_identical_for_any_thread_count(rng, dtype):
    a = rng.standard_normal((517, 301)).astype(dtype)
    b = rng.standard_normal((301, 203)).astype(dtype)
    results = []
    for n in (1, 2, 3):
        with fastlstm.num_threads(n):
            results += [fastlstm.matmul(a, b), fastlstm.matmul(a.T.copy().T, b)]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cell_reads_a_strided_x(rng, kind, dtype):
    """x as a user's loop slices it from a batch-major sequence (x[:, t]), or in Fortran order: the
    cell's fast path must not read it as if it were C-contiguous."""
    p = make_sequence_problem(rng, kind, 4, 5, 7, 6, dtype=dtype)
    batch_major = np.ascontiguousarray(p["xs"].transpose(1, 0, 2))     # (B, T, I)
    states = [p[s] for s in SEQUENCE_STATES[kind]]
    forward = f"{kind}_cell_forward"
    for x in (batch_major[:, 2], np.asfortranarray(p["xs"][2])):
        assert not x.flags.c_contiguous
        got = getattr(fastlstm, forward)(x, *states, p["W"], p["U"], p["b"])
        want = getattr(ref, forward)(np.ascontiguousarray(x), *states, p["W"], p["U"], p["b"])
        for g, w in zip(got[:-1], want[:-1]):
            assert_close(g, w)



def test_each_simd_level_runs_its_own_code():
    """A SIMD level chooses all of its ISA-specific code: the code that the tests run under
    use_simd(level) is compiled for that level's instruction sets, not for the host's best."""
    beyond_baseline = {"portable": set(), "avx2": {"avx", "fma", "avx2"},
                       "avx512": {"avx", "fma", "avx2", "avx512f"}}
    for name in fastlstm._config.available_simd():
        with fastlstm._config.use_simd(name):
            features = set(fastlstm._config.config()["simd_features"].split())
        assert features - {"sse2", "neon"} == beyond_baseline[name], (name, features)
