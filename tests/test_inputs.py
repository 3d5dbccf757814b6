"""Unusual but valid inputs: layouts, dtypes, non-finite values; inputs are never modified and
outputs are new C-contiguous arrays, whose memory no result still held shares."""
import threading

import numpy as np
import pytest
from conftest import (KINDS, assert_all_close, assert_close, make_gru_problem, make_problem,
                      make_sequence_problem, run_sequence)

import fastlstm
from fastlstm import reference as ref

FORWARD_ARGS = ["xs", "h0", "c0", "W", "U", "b"]


def forward_backward(module, args, grads):
    hs, h_T, c_T, cache = module.lstm_forward(*args)
    return [hs, h_T, c_T, *module.lstm_backward(*grads, cache)]


def test_strided_transposed_and_readonly_inputs(rng):
    T, B, I, H = 4, 3, 5, 6
    p = make_problem(rng, T, B, I, H)
    expected = forward_backward(ref, [p[k] for k in FORWARD_ARGS], [p["dhs"], p["dh_T"], p["dc_T"]])

    xs_strided = np.repeat(p["xs"], 2, axis=2)[:, :, ::2]  # every other column of a wider array
    W_fortran = np.asfortranarray(p["W"])
    U_view = np.ascontiguousarray(p["U"].T).T  # a transposed view of the transpose
    b_readonly = p["b"].copy()
    b_readonly.flags.writeable = False
    h0_strided = np.stack([p["h0"], p["h0"]], axis=-1)[..., 0]  # last-axis stride of 2 elements
    dhs_reversed = p["dhs"][::-1].copy()[::-1]  # negative strides
    args = [xs_strided, h0_strided, p["c0"], W_fortran, U_view, b_readonly]
    got = forward_backward(fastlstm, args, [dhs_reversed, p["dh_T"], p["dc_T"]])
    assert not xs_strided.flags.c_contiguous and not W_fortran.flags.c_contiguous
    assert not h0_strided.flags.c_contiguous
    assert dhs_reversed.strides[0] < 0
    for a, e in zip(got, expected):
        assert_close(a, e)


def test_broadcast_initial_state(rng):
    p = make_problem(rng, 3, 4, 2, 5)
    h0 = np.broadcast_to(p["h0"][0], p["h0"].shape)  # zero stride along B
    got = fastlstm.lstm_forward(p["xs"], h0, None, p["W"], p["U"], p["b"])
    want = ref.lstm_forward(p["xs"], np.array(h0), None, p["W"], p["U"], p["b"])
    assert_all_close(got[:3], want[:3], ["hs", "h_T", "c_T"])


@pytest.mark.parametrize(
    "dtypes, expected",
    [
        ({"xs": np.float32, "W": np.float64}, np.float64),  # mixed: NumPy promotes
        ({"xs": np.int64, "h0": np.int32, "c0": np.int8, "W": np.int64, "U": np.int16,
          "b": np.int64}, np.float64),  # integers compute in float64
        ({"xs": np.float16, "h0": np.float16, "c0": np.float16, "W": np.float16,
          "U": np.float16, "b": np.float16}, np.float32),  # float16 computes in float32
        ({"xs": np.float16, "W": np.float32, "U": np.float32, "b": np.float32, "h0": np.float32,
          "c0": np.float32}, np.float32),
    ],
)
def test_dtype_promotion(rng, dtypes, expected):
    p = make_problem(rng, 3, 2, 4, 5)
    args = {k: (p[k] * 3).astype(dtypes.get(k, np.float64)) for k in FORWARD_ARGS}
    got = fastlstm.lstm_forward(*[args[k] for k in FORWARD_ARGS])
    want = ref.lstm_forward(*[args[k] for k in FORWARD_ARGS])
    for a, e in zip(got[:3], want[:3]):
        assert a.dtype == e.dtype == expected
        assert_close(a, e)


def test_lists_are_accepted(rng):
    p = make_problem(rng, 2, 2, 3, 2)
    args = [p[k].tolist() for k in FORWARD_ARGS]
    got = fastlstm.lstm_forward(*args)
    want = ref.lstm_forward(*[p[k] for k in FORWARD_ARGS])
    assert_all_close(got[:3], want[:3], ["hs", "h_T", "c_T"])


def test_gradient_dtype_follows_forward(rng):
    p = make_problem(rng, 3, 2, 4, 5, dtype=np.float32)
    *_, cache = fastlstm.lstm_forward(*[p[k] for k in FORWARD_ARGS])
    grads = fastlstm.lstm_backward(p["dhs"].astype(np.float64), p["dh_T"].astype(np.int64), None, cache)
    assert all(g.dtype == np.float32 for g in grads)


@pytest.mark.parametrize("module", [fastlstm, ref], ids=["fastlstm", "reference"])
def test_inputs_never_modified_and_outputs_fresh(rng, module):
    p = make_problem(rng, 4, 3, 5, 6)
    originals = {k: v.copy() for k, v in p.items()}
    args = [p[k] for k in FORWARD_ARGS]
    hs, h_T, c_T, cache = module.lstm_forward(*args)
    grads = module.lstm_backward(p["dhs"], p["dh_T"], p["dc_T"], cache)
    module.lstm_backward(p["dhs"], p["dh_T"], p["dc_T"], cache)  # a cache may be used twice
    for k, v in originals.items():
        np.testing.assert_array_equal(p[k], v, err_msg=k)
    for out in [hs, h_T, c_T, *grads]:
        assert out.flags.c_contiguous
        assert not any(np.shares_memory(out, v) for v in p.values())


def test_backward_twice_gives_the_same(rng):
    p = make_problem(rng, 4, 3, 5, 6)
    *_, cache = fastlstm.lstm_forward(*[p[k] for k in FORWARD_ARGS])
    first = fastlstm.lstm_backward(p["dhs"], p["dh_T"], p["dc_T"], cache)
    second = fastlstm.lstm_backward(p["dhs"], p["dh_T"], p["dc_T"], cache)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_propagate_like_reference(rng, dtype, bad):
    p = make_problem(rng, 4, 3, 5, 6, dtype=dtype)
    p["xs"][1, 0, 2] = bad  # one bad input in one row from step 1 on
    p["W"][0, 3] = bad
    p["dhs"][2, 1, 1] = bad
    with np.errstate(all="ignore"):
        want = forward_backward(ref, [p[k] for k in FORWARD_ARGS], [p["dhs"], p["dh_T"], p["dc_T"]])
        got = forward_backward(fastlstm, [p[k] for k in FORWARD_ARGS], [p["dhs"], p["dh_T"], p["dc_T"]])
    for name, a, e in zip(["hs", "h_T", "c_T", "dxs", "dh0", "dc0", "dW", "dU", "db"], got, want):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(e), err_msg=f"{name}: NaN pattern")
        np.testing.assert_array_equal(np.isposinf(a), np.isposinf(e), err_msg=f"{name}: +inf")
        np.testing.assert_array_equal(np.isneginf(a), np.isneginf(e), err_msg=f"{name}: -inf")
        finite = np.isfinite(e)
        assert_close(a[finite], e[finite], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturating_activations(dtype):
    """Huge pre-activations saturate the gates exactly as the reference does, without NaN."""
    H = 4
    z = np.array([-1e30, -1e4, -100, -50, -20, -1e-8, 0, -0.0, 1e-8, 20, 50, 100, 1e4, 1e30])
    xs = z.reshape(-1, 1, 1).astype(dtype)
    W = np.ones((1, 4 * H), dtype)
    U = np.zeros((H, 4 * H), dtype)
    b = np.zeros(4 * H, dtype)
    got = fastlstm.lstm_forward(xs, None, None, W, U, b)
    want = ref.lstm_forward(xs, None, None, W, U, b)
    assert np.all(np.isfinite(got[0]))
    assert_all_close(got[:3], want[:3], ["hs", "h_T", "c_T"])


GRU_ARGS = ["xs", "h0", "W", "U", "b"]


def gru_forward_backward(module, args, grads):
    hs, h_T, cache = module.gru_forward(*args)
    return [hs, h_T, *module.gru_backward(*grads, cache)]


def test_gru_strided_transposed_and_readonly_inputs(rng):
    p = make_gru_problem(rng, 4, 3, 5, 6)
    expected = gru_forward_backward(ref, [p[k] for k in GRU_ARGS], [p["dhs"], p["dh_T"]])
    b_fortran = np.asfortranarray(p["b"])  # (2, 3H) in column order
    U_view = np.ascontiguousarray(p["U"].T).T
    W_readonly = p["W"].copy()
    W_readonly.flags.writeable = False
    xs_strided = np.repeat(p["xs"], 2, axis=2)[:, :, ::2]
    args = [xs_strided, p["h0"][::-1].copy()[::-1], W_readonly, U_view, b_fortran]
    got = gru_forward_backward(fastlstm, args, [p["dhs"][::-1].copy()[::-1], p["dh_T"]])
    assert not b_fortran.flags.c_contiguous and not U_view.flags.c_contiguous
    for a, e in zip(got, expected):
        assert_close(a, e)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_gru_non_finite_values_propagate_like_reference(rng, dtype, bad):
    p = make_gru_problem(rng, 4, 3, 5, 6, dtype=dtype)
    p["xs"][1, 0, 2] = bad
    p["U"][0, 3] = bad
    p["dhs"][2, 1, 1] = bad
    with np.errstate(all="ignore"):
        want = gru_forward_backward(ref, [p[k] for k in GRU_ARGS], [p["dhs"], p["dh_T"]])
        got = gru_forward_backward(fastlstm, [p[k] for k in GRU_ARGS], [p["dhs"], p["dh_T"]])
    for name, a, e in zip(["hs", "h_T", "dxs", "dh0", "dW", "dU", "db"], got, want):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(e), err_msg=f"{name}: NaN pattern")
        np.testing.assert_array_equal(np.isposinf(a), np.isposinf(e), err_msg=f"{name}: +inf")
        np.testing.assert_array_equal(np.isneginf(a), np.isneginf(e), err_msg=f"{name}: -inf")
        finite = np.isfinite(e)
        assert_close(a[finite], e[finite], dtype)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("kind", KINDS)
def test_non_finite_values_with_lengths(rng, kind, bad):
    """Past each end a non-finite dhs is ignored, and a row that has ended carries its state and
    its gradient exactly, even where the recurrent weights hold Inf or NaN (0 * Inf is NaN)."""
    p = make_sequence_problem(rng, kind, 4, 3, 5, 6)
    lengths = [4, 0, 2]
    p["U"][0, 3] = bad
    p["dhs"][3, 2, 1] = bad  # past row 2's end
    with np.errstate(all="ignore"):
        want = run_sequence(ref, kind, p, lengths)
        got = run_sequence(fastlstm, kind, p, lengths)
    (hs, _, (dxs, dh0, *_)) = got
    np.testing.assert_array_equal(hs[:, 1], np.broadcast_to(p["h0"][1], (4, 6)))
    np.testing.assert_array_equal(dh0[1], p["dh_T"][1])
    assert not dxs[:, 1].any()
    for i, (a, e) in enumerate(zip([got[0], *got[1], *got[2]], [want[0], *want[1], *want[2]])):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(e), err_msg=f"output {i}: NaN pattern")
        np.testing.assert_array_equal(np.isposinf(a), np.isposinf(e), err_msg=f"output {i}: +inf")
        np.testing.assert_array_equal(np.isneginf(a), np.isneginf(e), err_msg=f"output {i}: -inf")
        finite = np.isfinite(e)
        assert_close(a[finite], e[finite])


# ---- the forward's saved arrays, recycled (fastlstm/_functions.py, _recycled_array) ------------


def forward_of(kind, xs, W, U, b):
    """A sequence forward of `kind` from zeros: (its results, every array of them and its cache)."""
    results = getattr(fastlstm, f"{kind}_forward")(xs, *([None] * (2 if kind == "lstm" else 1)),
                                                   W, U, b)
    return results, list(results[:-1]) + forward_cache_arrays(results[-1])


def forward_cache_arrays(cache):
    return [getattr(cache, name) for name in ("hs_ext", "cs_ext", "gates", "hn")
            if getattr(cache, name, None) is not None]


@pytest.fixture
def recycling_all(monkeypatch):
    """Every saved array recycled, however small, from no buffers; the test's own buffers dropped
    (and their count with them) before the module's are back."""
    monkeypatch.setattr(fastlstm._functions, "_RECYCLED_BYTES", (1, 1 << 30))
    monkeypatch.setattr(fastlstm._functions, "_recycled", threading.local())
    monkeypatch.setattr(fastlstm._functions, "_recycled_bytes", 0)
    yield
    fastlstm._functions._recycled.__dict__.pop("buffers", None)


def weights_of(rng, kind, I, H):
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[kind]
    b = rng.standard_normal((2, gates * H) if kind == "gru" else gates * H)
    return rng.standard_normal((I, gates * H)), rng.standard_normal((H, gates * H)), b


@pytest.mark.parametrize("kept", ["everything", "hs", "cache"])
@pytest.mark.parametrize("kind", KINDS)
def test_recycled_arrays_never_hold_live_results(rng, kind, kept, recycling_all):
    """A forward's saved arrays reuse the memory of earlier results only once nothing refers to it:
    the results still held (all of them, only hs, or only the cache) keep their values and share
    no memory with the next results, which are the bits of forwards into new arrays."""
    W, U, b = weights_of(rng, kind, 3, 5)
    xs = [rng.standard_normal((4, 2, 3)) for _ in range(4)]
    with pytest.MonkeyPatch.context() as fresh:
        fresh.setattr(fastlstm._functions, "_RECYCLED_BYTES", (1 << 62, 1 << 62))
        expected = [[a.copy() for a in forward_of(kind, x, W, U, b)[1]] for x in xs]
    results, arrays = forward_of(kind, xs[0], W, U, b)
    index = {"everything": range(len(arrays)), "hs": [0], "cache": range(len(results) - 1,
                                                                          len(arrays))}[kept]
    held = [arrays[i] for i in index]
    held_expected = [expected[0][i] for i in index]
    cache = results[-1] if kept == "cache" else None
    del results, arrays
    for x, want in zip(xs[1:], expected[1:]):
        results, arrays = forward_of(kind, x, W, U, b)
        for got, expected_array in zip(arrays, want):
            np.testing.assert_array_equal(got, expected_array)
            assert not any(np.shares_memory(got, array) for array in held)
    for got, want in zip(held, held_expected):
        np.testing.assert_array_equal(got, want)
    assert cache is None or all(any(a is b for b in held) for a in forward_cache_arrays(cache))
    del results, arrays, got
    kept_buffers = {id(buffer) for buffer in fastlstm._functions._recycled.buffers}
    _, again = forward_of(kind, xs[0], W, U, b)
    reused = {id(a.base) for a in again if a.base is not None}  # the copies h_T, c_T have none
    assert reused and reused <= kept_buffers


def test_buffers_are_kept_within_bounds(rng, recycling_all, monkeypatch):
    """Arrays above _RECYCLED_BYTES are new and not kept; all threads' buffers together stay
    within _RECYCLED_TOTAL_BYTES, and leave the count when their thread ends."""
    functions = fastlstm._functions
    monkeypatch.setattr(functions, "_RECYCLED_BYTES", (1, 2000))
    monkeypatch.setattr(functions, "_RECYCLED_TOTAL_BYTES", 3000)
    W, U, b = weights_of(rng, "lstm", 3, 5)
    xs = rng.standard_normal((4, 2, 3))  # gates of 4*2*20*8 = 1280 bytes, states 400 each
    big = rng.standard_normal((20, 2, 3))  # gates of 6400 bytes: new, states of 1680: kept
    results = [forward_of("lstm", big, W, U, b)]
    assert results[0][0][-1].gates.base is None
    assert [buffer.nbytes for buffer in functions._recycled.buffers] == [1680]  # two: over 3000
    sizes = []

    def step():
        kept = [forward_of("lstm", xs, W, U, b) for _ in range(3)]
        sizes.append(sum(buffer.nbytes for buffer in functions._recycled.buffers))
        assert functions._recycled_bytes <= 3000
        return kept

    results.append(step())
    worker = threading.Thread(target=step)
    worker.start()
    worker.join()
    assert len(sizes) == 2 and functions._recycled_bytes == sizes[0] <= 3000


def test_a_view_kept_keeps_its_memory(rng, recycling_all):
    """A view of a result, or a memoryview of one, keeps its memory from the next forward."""
    W, U, b = rng.standard_normal((3, 20)), rng.standard_normal((5, 20)), rng.standard_normal(20)
    xs = rng.standard_normal((4, 2, 3))
    hs = fastlstm.lstm_forward(xs, None, None, W, U, b)[0]
    view, memory = hs[::2, 1], memoryview(hs[1:])
    kept_view, kept_memory = view.copy(), np.array(memory)
    del hs
    for _ in range(4):
        _, arrays = forward_of("lstm", xs + 1, W, U, b)
        assert not any(np.shares_memory(a, view) or np.shares_memory(a, np.asarray(memory))
                       for a in arrays)
    np.testing.assert_array_equal(view, kept_view)
    np.testing.assert_array_equal(np.asarray(memory), kept_memory)


def test_only_listed_counts_views():
    array = np.zeros(8)
    items = [array]
    del array
    assert fastlstm._core.only_listed(items, 0)
    view = items[0][2:]
    assert not fastlstm._core.only_listed(items, 0)
    del view
    assert fastlstm._core.only_listed(items, 0)
    with pytest.raises(IndexError, match="k = 1 outside a list of 1"):
        fastlstm._core.only_listed(items, 1)
