"""The layers (fastlstm.LSTM, RNN, LSTMCell, RNNCell): against a hand-written composition of the
reference functions, against finite differences, against themselves run in chunks, and against
torch.nn (when torch is installed)."""
import copy
import doctest
import pickle
import types

import numpy as np
import pytest
from conftest import assert_close, source_file

import fastlstm
from fastlstm import layers
from fastlstm import reference as ref

KINDS = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "rnn": fastlstm.RNN}
CELLS = {"lstm": fastlstm.LSTMCell, "gru": fastlstm.GRUCell, "rnn": fastlstm.RNNCell}
N_STATES = {"lstm": 2, "gru": 1, "rnn": 1}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
BIAS_ROWS = {"lstm": (), "gru": (2,), "rnn": ()}  # the GRU keeps torch's two biases as b's rows
BACKENDS = {"fastlstm": fastlstm, "reference": ref}
DTYPES = [np.float32, np.float64]

# (num_layers, bidirectional, batch_first, T, B, I, H)
CONFIGS = [
    (1, False, False, 5, 3, 4, 6),
    (2, True, False, 4, 2, 3, 5),
    (2, True, True, 6, 3, 2, 4),
    (3, False, True, 3, 2, 5, 3),
    (2, True, True, 1, 1, 1, 1),
    (2, True, False, 0, 2, 3, 4),
]
CONFIG_IDS = [f"L{L}-{'bi' if bi else 'uni'}-{'bf' if bf else 'tm'}-T{T}B{B}I{I}H{H}"
              for L, bi, bf, T, B, I, H in CONFIGS]


def as_tuple(state, kind):
    return tuple(state) if N_STATES[kind] > 1 else (state,)


def as_state(arrays, kind):
    return tuple(arrays) if N_STATES[kind] > 1 else arrays[0]


def problem(rng, kind, L, D, batch_first, T, B, I, H, dtype):
    """x, an initial state, and upstream gradients for out and the final state."""
    def normal(*shape):
        return rng.standard_normal(shape).astype(dtype)

    x = normal(B, T, I) if batch_first else normal(T, B, I)
    state = as_state([normal(L * D, B, H) for _ in range(N_STATES[kind])], kind)
    dout = normal(B, T, D * H) if batch_first else normal(T, B, D * H)
    dstate = as_state([normal(L * D, B, H) for _ in range(N_STATES[kind])], kind)
    return x, state, dout, dstate


def composed(kind, params, x, state, dout, dstate, L, D, batch_first):
    """Forward and backward of a stacked, optionally bidirectional layer, composed by hand from
    the reference functions: (out, final state, dx, dstate, grads)."""
    forward = getattr(ref, f"{kind}_forward")
    backward = getattr(ref, f"{kind}_backward")
    S = N_STATES[kind]
    state, dstate = as_tuple(state, kind), as_tuple(dstate, kind)
    H = params["U_l0"].shape[0]
    xs = x.transpose(1, 0, 2) if batch_first else x
    finals = [np.zeros_like(state[0]) for _ in range(S)]
    caches = {}
    inp = xs
    for k in range(L):
        outs = []
        for d in range(D):
            s = "_reverse" if d else ""
            seq = inp[::-1] if d else inp
            hs, *final, caches[k, d] = forward(seq, *[a[k * D + d] for a in state],
                                               params[f"W_l{k}{s}"], params[f"U_l{k}{s}"],
                                               params[f"b_l{k}{s}"])
            outs.append(hs[::-1] if d else hs)
            for a, f in zip(finals, final):
                a[k * D + d] = f
        inp = np.concatenate(outs, axis=2)
    out = inp.transpose(1, 0, 2) if batch_first else inp

    grads, dinitial = {}, [np.zeros_like(state[0]) for _ in range(S)]
    g = dout.transpose(1, 0, 2) if batch_first else dout
    for k in reversed(range(L)):
        g_in = 0
        for d in range(D):
            s = "_reverse" if d else ""
            dhs = g[:, :, d * H : (d + 1) * H]
            dxs, *rest = backward(dhs[::-1] if d else dhs, *[a[k * D + d] for a in dstate],
                                  caches[k, d])
            g_in = g_in + (dxs[::-1] if d else dxs)
            for a, v in zip(dinitial, rest[:S]):
                a[k * D + d] = v
            grads[f"W_l{k}{s}"], grads[f"U_l{k}{s}"], grads[f"b_l{k}{s}"] = rest[S:]
        g = g_in
    dx = g.transpose(1, 0, 2) if batch_first else g
    return out, as_state(finals, kind), dx, as_state(dinitial, kind), grads


def check_layer(layer, x, state, dout, dstate, expected, kind, dtype):
    """Run forward and backward on `layer` and compare everything with `expected`."""
    out, final = layer(x, state)
    dx = layer.backward(dout, dstate)
    e_out, e_final, e_dx, e_dstate, e_grads = expected
    pairs = [("out", out, e_out), ("dx", dx, e_dx)]
    for i, (a, e) in enumerate(zip(as_tuple(final, kind), as_tuple(e_final, kind))):
        pairs.append((f"state[{i}]", a, e))
    for i, (a, e) in enumerate(zip(as_tuple(layer.dstate, kind), as_tuple(e_dstate, kind))):
        pairs.append((f"dstate[{i}]", a, e))
    assert set(layer.grads) == set(e_grads) == set(layer.params)
    pairs += [(f"grads[{n}]", layer.grads[n], e_grads[n]) for n in e_grads]
    for name, a, e in pairs:
        assert a.shape == np.shape(e), name
        assert a.dtype == dtype, name
        try:
            assert_close(a, e, dtype)
        except AssertionError as exc:
            raise AssertionError(f"{name} differs") from exc


# ---- layers against the reference functions ------------------------------------------------------


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_layer_matches_composed_reference(rng, kind, config, dtype, backend):
    L, bi, bf, T, B, I, H = config
    D = 2 if bi else 1
    layer = KINDS[kind](I, H, num_layers=L, bidirectional=bi, batch_first=bf, dtype=dtype,
                        seed=1, backend=BACKENDS[backend])
    x, state, dout, dstate = problem(rng, kind, L, D, bf, T, B, I, H, dtype)
    expected = composed(kind, layer.params, x, state, dout, dstate, L, D, bf)
    check_layer(layer, x, state, dout, dstate, expected, kind, dtype)


@pytest.mark.parametrize("kind", list(KINDS))
def test_backends_agree(rng, kind):
    x = rng.standard_normal((7, 3, 4)).astype(np.float32)
    dout = rng.standard_normal((7, 3, 10)).astype(np.float32)
    results = []
    for backend in (fastlstm, ref):
        layer = KINDS[kind](4, 5, num_layers=2, bidirectional=True, seed=3, backend=backend)
        out, final = layer(x)
        results.append([out, layer.backward(dout), *as_tuple(final, kind),
                        *as_tuple(layer.dstate, kind), *layer.grads.values()])
    for a, e in zip(*results):
        assert_close(a, e, np.float32)


@pytest.mark.parametrize("kind", list(KINDS))
def test_none_means_zero(rng, kind):
    """state=None is a zero state, dout=None and dstate=None zero gradients."""
    layer = KINDS[kind](3, 4, num_layers=2, bidirectional=True, dtype="float64", seed=0)
    x = rng.standard_normal((5, 2, 3))
    zeros = as_state([np.zeros((4, 2, 4))] * N_STATES[kind], kind)
    out, final = layer(x)
    out0, final0 = layer(x, zeros)
    np.testing.assert_array_equal(out, out0)
    for a, b in zip(as_tuple(final, kind), as_tuple(final0, kind)):
        np.testing.assert_array_equal(a, b)
    dstate = as_state([np.ones((4, 2, 4))] * N_STATES[kind], kind)
    dx = layer.backward(None, dstate, retain_cache=True)
    grads = {n: g.copy() for n, g in layer.grads.items()}
    layer.zero_grad()
    dx0 = layer.backward(np.zeros_like(out), dstate, retain_cache=True)
    np.testing.assert_array_equal(dx, dx0)
    for n in grads:
        np.testing.assert_array_equal(grads[n], layer.grads[n])
    layer.backward(np.ones_like(out))  # dstate=None
    assert all(np.isfinite(a).all() for a in as_tuple(layer.dstate, kind))


@pytest.mark.parametrize("kind", list(KINDS))
def test_gradients_match_finite_differences(rng, kind):
    """An oracle independent of the composition: the directional derivative of
    loss = sum(out * R) + sum(final * Rs) along random directions of x, the state and every
    parameter, against the gradients (float64, reference backend)."""
    L, D, T, B, I, H = 2, 2, 4, 2, 3, 3
    layer = KINDS[kind](I, H, num_layers=L, bidirectional=True, batch_first=True,
                        dtype="float64", seed=5, backend=ref)
    x, state, R, Rs = problem(rng, kind, L, D, True, T, B, I, H, np.float64)
    state, Rs = list(as_tuple(state, kind)), as_tuple(Rs, kind)

    def loss(x, state, params):
        saved = {n: p.copy() for n, p in layer.params.items()}
        for n, p in params.items():
            layer.params[n][...] = p
        out, final = layer(x, as_state(state, kind))
        for n, p in saved.items():
            layer.params[n][...] = p
        return np.sum(out * R) + sum(np.sum(f * r) for f, r in zip(as_tuple(final, kind), Rs))

    layer(x, as_state(state, kind))
    dx = layer.backward(R, as_state(Rs, kind))
    dstate, grads = as_tuple(layer.dstate, kind), dict(layer.grads)
    params = {n: p.copy() for n, p in layer.params.items()}
    eps = 1e-6
    for _ in range(3):
        vx = rng.standard_normal(x.shape)
        vs = [rng.standard_normal(s.shape) for s in state]
        vp = {n: rng.standard_normal(p.shape) for n, p in params.items()}

        def moved(sign):
            return loss(x + sign * eps * vx, [s + sign * eps * v for s, v in zip(state, vs)],
                        {n: p + sign * eps * vp[n] for n, p in params.items()})

        numeric = (moved(1) - moved(-1)) / (2 * eps)
        analytic = (np.sum(dx * vx) + sum(np.sum(g * v) for g, v in zip(dstate, vs))
                    + sum(np.sum(grads[n] * vp[n]) for n in params))
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def run_readme_block(heading):
    """Run the first Python block after `heading` in the README; return its namespace."""
    import re

    readme = source_file("README.md").read_text()
    section = readme.split(heading + "\n", 1)[1]
    namespace = {}
    exec(re.search(r"```python\n(.*?)```", section, re.S).group(1), namespace)
    return namespace


def test_readme_layer_example():
    namespace = run_readme_block("## Layers")
    assert namespace["out"].shape == (4, 50, 64) and namespace["h_n"].shape == (4, 4, 32)


def test_layer_docstring_examples():
    failures, tried = doctest.testmod(layers, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 0 and failures == 0


# ---- truncated BPTT: state carry -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_chunks_equal_the_whole_sequence(rng, kind, batch_first, dtype):
    """Forward in two chunks, carrying the state, equals one forward; backward of the second chunk
    then of the first, passing the gradient of the carried state, equals one backward."""
    L, T, T1, B, I, H = 2, 7, 3, 3, 4, 5
    cls = KINDS[kind]
    whole, first, second = (cls(I, H, num_layers=L, batch_first=batch_first, dtype=dtype, seed=9)
                            for _ in range(3))
    x, state, dout, dstate = problem(rng, kind, L, 1, batch_first, T, B, I, H, dtype)
    axis = 1 if batch_first else 0
    x1, x2 = np.split(x, [T1], axis=axis)
    dout1, dout2 = np.split(dout, [T1], axis=axis)

    out, final = whole(x, state)
    dx = whole.backward(dout, dstate)

    out1, carried = first(x1, state)
    out2, final2 = second(x2, carried)
    dx2 = second.backward(dout2, dstate)
    dx1 = first.backward(dout1, second.dstate)

    assert_close(np.concatenate([out1, out2], axis=axis), out, dtype)
    assert_close(np.concatenate([dx1, dx2], axis=axis), dx, dtype)
    for a, e in zip(as_tuple(final2, kind), as_tuple(final, kind)):
        assert_close(a, e, dtype)
    for a, e in zip(as_tuple(first.dstate, kind), as_tuple(whole.dstate, kind)):
        assert_close(a, e, dtype)
    for n in whole.grads:
        assert_close(first.grads[n] + second.grads[n], whole.grads[n], dtype)


# ---- parameters: init, accumulation, save/load ---------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_init_range_seed_and_dtype(kind):
    H = 16
    layer = KINDS[kind](5, H, num_layers=2, bidirectional=True, seed=0)
    k = 1 / np.sqrt(H)
    G = GATES[kind] * H
    expected = {}
    for l in range(2):
        for s in ("", "_reverse"):
            expected.update({f"W_l{l}{s}": (5 if l == 0 else 2 * H, G), f"U_l{l}{s}": (H, G),
                             f"b_l{l}{s}": (*BIAS_ROWS[kind], G)})
    assert {n: p.shape for n, p in layer.params.items()} == expected
    for name, p in layer.params.items():
        assert p.dtype == np.float32 and p.flags.c_contiguous
        assert np.all(np.abs(p) <= k * (1 + 1e-6)) and p.std() > k / 4, name
        np.testing.assert_array_equal(layer.grads[name], np.zeros_like(p))
    same = KINDS[kind](5, H, num_layers=2, bidirectional=True, seed=0)
    other = KINDS[kind](5, H, num_layers=2, bidirectional=True, seed=1)
    for name, p in layer.params.items():
        np.testing.assert_array_equal(same.params[name], p)
        assert not np.array_equal(other.params[name], p)
    assert KINDS[kind](2, 3, dtype="float64").params["U_l0"].dtype == np.float64


def test_unit_forget_bias():
    H = 4
    lstm = fastlstm.LSTM(3, H, num_layers=2, bidirectional=True, unit_forget_bias=True, seed=0)
    plain = fastlstm.LSTM(3, H, num_layers=2, bidirectional=True, seed=0)
    for name, b in lstm.params.items():
        if name.startswith("b_"):
            np.testing.assert_array_equal(b[H : 2 * H], 1)
            np.testing.assert_array_equal(b[:H], plain.params[name][:H])
            np.testing.assert_array_equal(b[2 * H :], plain.params[name][2 * H :])
        else:
            np.testing.assert_array_equal(b, plain.params[name])
    cell = fastlstm.LSTMCell(3, H, unit_forget_bias=True, seed=0)
    np.testing.assert_array_equal(cell.params["b"][H : 2 * H], 1)


@pytest.mark.parametrize("kind", list(KINDS))
def test_grads_accumulate_and_zero_grad_resets(rng, kind):
    layer = KINDS[kind](3, 4, num_layers=2, dtype="float64", seed=0)
    x, dout = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 4))
    arrays = {n: id(g) for n, g in layer.grads.items()}
    layer(x)
    layer.backward(dout)
    once = {n: g.copy() for n, g in layer.grads.items()}
    layer(x)  # a second micro-batch: its gradients add up with the first's
    layer.backward(dout)
    for n, g in layer.grads.items():
        np.testing.assert_allclose(g, 2 * once[n], rtol=1e-12)
    layer.zero_grad()
    assert {n: id(g) for n, g in layer.grads.items()} == arrays
    assert all(not g.any() for g in layer.grads.values())


@pytest.mark.parametrize("make", [
    lambda: fastlstm.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True,
                          dtype="float64", seed=0, unit_forget_bias=True),
    lambda: fastlstm.RNN(3, 4, num_layers=3, seed=0),
    lambda: fastlstm.LSTMCell(3, 4, dtype="float64", seed=0),
    lambda: fastlstm.RNNCell(3, 4, seed=0),
    lambda: fastlstm.GRU(3, 4, num_layers=2, bidirectional=True, seed=0),
    lambda: fastlstm.GRUCell(3, 4, dtype="float64", seed=0),
], ids=["LSTM", "RNN", "LSTMCell", "RNNCell", "GRU", "GRUCell"])
def test_save_load_round_trip(tmp_path, rng, make):
    layer = make()
    path = tmp_path / "layer.npz"
    layer.save(path)
    loaded = type(layer).load(path, backend=ref)
    assert loaded._config() == layer._config() and loaded.backend is ref
    assert repr(loaded) == repr(layer)
    for name, p in layer.params.items():
        np.testing.assert_array_equal(loaded.params[name], p)
        assert loaded.params[name].dtype == p.dtype
    shape = (2, 3) if isinstance(layer, layers._Cell) else (5, 2, 3)
    x = rng.standard_normal(shape)
    a, b = layer(x), loaded(x)
    assert_close(a[0], b[0], layer.dtype)
    with pytest.raises(ValueError, match="path: .* holds a fastlstm"):
        (fastlstm.RNN if isinstance(layer, fastlstm.LSTM) else fastlstm.LSTM).load(path)
    np.savez(tmp_path / "other.npz", W=np.zeros(3))
    with pytest.raises(ValueError, match="not written by fastlstm"):
        type(layer).load(tmp_path / "other.npz")


MAKERS = {
    "LSTM": lambda backend: fastlstm.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True,
                                          dtype="float64", seed=0, backend=backend),
    "GRU": lambda backend: fastlstm.GRU(3, 4, num_layers=2, seed=0, backend=backend),
    "RNN": lambda backend: fastlstm.RNN(3, 4, seed=0, backend=backend),
    "LSTMCell": lambda backend: fastlstm.LSTMCell(3, 4, seed=0, backend=backend),
    "GRUCell": lambda backend: fastlstm.GRUCell(3, 4, dtype="float64", seed=0, backend=backend),
    "RNNCell": lambda backend: fastlstm.RNNCell(3, 4, seed=0, backend=backend),
}


@pytest.mark.parametrize("backend", [None, ref], ids=["fastlstm", "reference"])
@pytest.mark.parametrize("copy_of", [copy.deepcopy, lambda x: pickle.loads(pickle.dumps(x))],
                         ids=["deepcopy", "pickle"])
@pytest.mark.parametrize("name", MAKERS)
def test_copy_and_pickle(rng, name, copy_of, backend):
    """A deep copy or a pickle of a layer in the middle of training: the same backend (imported
    again by name), configuration, parameters, gradients and saved forward, all its own."""
    layer = MAKERS[name](backend)
    shape = (2, 3) if isinstance(layer, layers._Cell) else (2, 5, 3) if layer.batch_first else (5, 2, 3)
    x = rng.standard_normal(shape)

    def output(result):  # (out, state) of a layer, (h, c) of an LSTMCell, h of the other cells
        return result[0] if isinstance(result, tuple) else result

    out = output(layer(x))
    layer.backward(np.ones_like(out))
    layer(x)  # a forward whose backward is still to come
    twin = copy_of(layer)
    assert twin.backend is layer.backend and repr(twin) == repr(layer)
    for name_, p in layer.params.items():
        np.testing.assert_array_equal(twin.params[name_], p)
        np.testing.assert_array_equal(twin.grads[name_], layer.grads[name_])
        assert not np.shares_memory(twin.params[name_], p)
    dout = rng.standard_normal(out.shape)
    np.testing.assert_array_equal(twin.backward(dout), layer.backward(dout))
    for name_ in layer.grads:
        np.testing.assert_array_equal(twin.grads[name_], layer.grads[name_])
    twin.params[next(iter(twin.params))][...] = 0  # the copy's parameters are its own
    assert layer.params[next(iter(layer.params))].any()


def test_pickle_keeps_arrays_shared_with_an_optimizer(rng):
    """A model pickled with its optimizer: the optimizer still updates the model's parameters."""
    from fastlstm.train import SGD
    lstm = fastlstm.LSTM(3, 4, seed=0)
    optimizer = SGD(lstm.params, lr=0.5)
    twin, twin_optimizer = pickle.loads(pickle.dumps((lstm, optimizer)))
    out = twin(rng.standard_normal((5, 2, 3)))[0]
    twin.backward(np.ones_like(out))
    before = {k: v.copy() for k, v in twin.params.items()}
    twin_optimizer.step(twin.grads)
    assert all(not np.array_equal(twin.params[k], before[k]) for k in before)
    np.testing.assert_array_equal(lstm.params["W_l0"], before["W_l0"])


def test_copy_keeps_a_backend_that_is_not_a_module():
    backend = types.SimpleNamespace(**{name: getattr(ref, name) for name in ref.__all__})
    twin = copy.deepcopy(fastlstm.LSTM(3, 4, backend=backend))
    assert twin.backend is not backend and twin.backend.lstm_forward is ref.lstm_forward
    assert copy.copy(fastlstm.LSTM(3, 4, backend=backend)).backend is backend


# ---- errors --------------------------------------------------------------------------------------


def _lstm():
    return fastlstm.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0)


def _forwarded(batch_first=False):
    lstm = fastlstm.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=batch_first, seed=0)
    lstm(np.zeros((5, 2, 3)))
    return lstm


_NO_LENGTHS = types.SimpleNamespace(**{
    name: (lambda f: lambda *args: f(*args))(getattr(ref, name)) for name in ref.__all__
})

ERRORS = [
    (lambda: fastlstm.LSTM(0, 4), ValueError, r"input_size: expected a positive integer, got 0"),
    (lambda: fastlstm.RNN(3, 2.5), ValueError, r"hidden_size: expected a positive integer"),
    (lambda: fastlstm.LSTM(3, 4, num_layers=0), ValueError, r"num_layers: expected a positive"),
    (lambda: fastlstm.LSTM(3, 4, dtype="float16"), TypeError, r"dtype: expected 'float32' or"),
    (lambda: fastlstm.LSTMCell(3, 4, dtype=int), TypeError, r"dtype: expected 'float32' or"),
    (lambda: _lstm()(np.zeros((5, 3))), ValueError,
     r"x: expected shape \(T, B, I\) = \(T, B, 3\), got \(5, 3\)"),
    (lambda: _lstm()(np.zeros((5, 2, 4))), ValueError,
     r"x: expected shape \(T, B, I\) = \(T, B, 3\), got \(5, 2, 4\)"),
    (lambda: fastlstm.RNN(3, 4, batch_first=True)(np.zeros((5, 2, 4))), ValueError,
     r"x: expected shape \(B, T, I\) = \(B, T, 3\)"),
    (lambda: _lstm()(np.zeros((5, 2, 3), complex)), TypeError, r"x: expected a real"),
    (lambda: _lstm()(np.zeros((5, 2, 3)), np.zeros((4, 2, 4))), ValueError,
     r"state: expected a tuple \(h_0, c_0\) or None"),
    (lambda: _lstm()(np.zeros((5, 2, 3)), (np.zeros((2, 2, 4)), None)), ValueError,
     r"state\[0\] \(h_0\): expected shape \(L\*D, B, H\) = \(4, 2, 4\), got \(2, 2, 4\)"),
    (lambda: fastlstm.RNN(3, 4)(np.zeros((5, 2, 3)), np.zeros((1, 3, 4))), ValueError,
     r"state: expected shape \(L\*D, B, H\) = \(1, 2, 4\), got \(1, 3, 4\)"),
    (lambda: _lstm().backward(np.zeros((5, 2, 8))), RuntimeError, r"backward: call forward first"),
    (lambda: _forwarded().backward(np.zeros((5, 2, 4))), ValueError,
     r"dout: expected shape \(T, B, D\*H\) = \(5, 2, 8\), got \(5, 2, 4\)"),
    (lambda: _forwarded(True).backward(np.zeros((2, 5, 8))), ValueError,
     r"dout: expected shape \(B, T, D\*H\) = \(5, 2, 8\), got \(2, 5, 8\)"),
    (lambda: _forwarded().backward(None, (None, np.zeros((4, 2, 5)))), ValueError,
     r"dstate\[1\] \(c_0\): expected shape"),
    (lambda: _lstm()(np.zeros((5, 2, 3)), lengths=[5, 5, 5]), ValueError,
     r"lengths: expected shape \(B,\) = \(2,\), got \(3,\)"),
    (lambda: _lstm()(np.zeros((5, 2, 3)), lengths=[5, 6]), ValueError,
     r"lengths: expected values in \[0, T\] = \[0, 5\]"),
    (lambda: _lstm()(np.zeros((5, 2, 3)), lengths=[5.0, 4.0]), TypeError, r"lengths: expected int"),
    (lambda: fastlstm.LSTM(3, 4, backend=_NO_LENGTHS)(np.zeros((5, 2, 3)), lengths=[5, 4]),
     NotImplementedError, r"lengths: the backend's lstm_forward takes no lengths keyword"),
    (lambda: fastlstm.LSTMCell(3, 4)(np.zeros((2, 4))), ValueError,
     r"x: expected shape \(B, I\) = \(B, 3\), got \(2, 4\)"),
    (lambda: fastlstm.LSTMCell(3, 4)(np.zeros((2, 3)), (np.zeros((2, 4)), np.zeros((3, 4)))),
     ValueError, r"state\[1\] \(c\): expected shape \(B, H\) = \(2, 4\), got \(3, 4\)"),
    (lambda: fastlstm.RNNCell(3, 4).backward(np.zeros((2, 4))), RuntimeError,
     r"backward: no forward step left"),
]


@pytest.mark.parametrize("call, error, message", ERRORS, ids=range(len(ERRORS)))
def test_errors_name_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_inputs_are_cast_to_the_layer_dtype(rng):
    layer = fastlstm.LSTM(3, 4, seed=0)
    x = rng.standard_normal((5, 2, 3))
    out, (h, c) = layer(x)
    assert out.dtype == h.dtype == c.dtype == np.float32
    assert layer.backward(np.ones((5, 2, 4))).dtype == np.float32
    np.testing.assert_array_equal(layer(x.astype(np.float32))[0], out)
    assert layer(np.ones((5, 2, 3), int))[0].dtype == np.float32


# ---- cells ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_steps_are_bptt(rng, kind, dtype, backend):
    """T forward steps of a cell, then T backward steps in reverse order, equal the sequence
    functions: outputs, dx, the initial state's gradient and the accumulated parameter gradients."""
    T, B, I, H = 4, 3, 5, 6
    cell = CELLS[kind](I, H, dtype=dtype, seed=2, backend=BACKENDS[backend])
    S = N_STATES[kind]
    xs = rng.standard_normal((T, B, I)).astype(dtype)
    state = [rng.standard_normal((B, H)).astype(dtype) for _ in range(S)]
    dhs = rng.standard_normal((T, B, H)).astype(dtype)
    dfinal = [rng.standard_normal((B, H)).astype(dtype) for _ in range(S)]
    p = cell.params
    hs, *final, cache = getattr(ref, f"{kind}_forward")(xs, *state, p["W"], p["U"], p["b"])
    dxs, *rest = getattr(ref, f"{kind}_backward")(dhs, *dfinal, cache)

    s = as_state(state, kind)
    outs = []
    for t in range(T):
        s = cell(xs[t], s)
        outs.append(as_tuple(s, kind)[0])
    assert_close(np.stack(outs), hs, dtype)
    for a, e in zip(as_tuple(s, kind), final):
        assert_close(a, e, dtype)
    d = list(dfinal)
    dx = [None] * T
    for t in reversed(range(T)):
        dx[t] = cell.backward(d[0] + dhs[t], *d[1:])
        d = list(as_tuple(cell.dstate, kind))
    assert_close(np.stack(dx), dxs, dtype)
    for a, e in zip(d, rest[:S]):
        assert_close(a, e, dtype)
    for n, e in zip("WUb", rest[S:]):
        assert cell.grads[n].dtype == dtype
        assert_close(cell.grads[n], e, dtype)
    with pytest.raises(RuntimeError):
        cell.backward(dhs[0])
    cell(xs[0])
    cell.clear_steps()
    with pytest.raises(RuntimeError):
        cell.backward(dhs[0])


# ---- Keras layout from plain arrays --------------------------------------------------------------


class FakeKerasLayer:
    """What from_keras uses of a Keras layer: get_weights() and get_config()."""

    def __init__(self, weights, **config):
        self.weights, self.config = weights, config

    def get_weights(self):
        return self.weights

    def get_config(self):
        return self.config


def keras_weights(rng, I, H, kind):
    """[kernel (I, G), recurrent_kernel (H, G), bias (G,) or a GRU's (2, G)], float32, as Keras
    stores them (a GRU's gate blocks in Keras' order z, r, h)."""
    G = GATES[kind] * H
    return [rng.uniform(-0.5, 0.5, (I, G)).astype(np.float32),
            rng.uniform(-0.5, 0.5, (H, G)).astype(np.float32),
            rng.uniform(-0.5, 0.5, (*BIAS_ROWS[kind], G)).astype(np.float32)]


def ours_from_keras(kind, weights):
    """Keras' arrays in fastlstm's gate order: the GRU's z, r, h blocks become r, z, n."""
    if kind != "gru":
        return weights
    def swap(a):
        z, r, n = np.split(a, 3, axis=-1)
        return np.concatenate([r, z, n], axis=-1)
    return [swap(a) for a in weights]


@pytest.mark.parametrize("kind", list(KINDS))
def test_from_keras_arrays(rng, kind):
    B, T, I, H = 3, 6, 4, 5
    weights = keras_weights(rng, I, H, kind)
    layer = KINDS[kind].from_keras(weights)
    assert layer.batch_first and layer.dtype == np.float32 and layer.num_layers == 1
    x = rng.standard_normal((B, T, I)).astype(np.float32)  # Keras' (batch, time, features)
    out, final = layer(x)
    no_state = [None] * N_STATES[kind]
    hs, *expected_final, _ = getattr(ref, f"{kind}_forward")(x.transpose(1, 0, 2), *no_state,
                                                             *ours_from_keras(kind, weights))
    assert_close(out, hs.transpose(1, 0, 2), np.float32)
    for a, e in zip(as_tuple(final, kind), expected_final):
        assert_close(a[0], e, np.float32)


@pytest.mark.parametrize("kind", list(KINDS))
def test_from_keras_bidirectional_layer(rng, kind):
    B, T, I, H = 2, 5, 3, 4
    weights = keras_weights(rng, I, H, kind) + keras_weights(rng, I, H, kind)
    inner = dict(activation="tanh", go_backwards=False)
    if kind != "rnn":
        inner["recurrent_activation"] = "sigmoid"
    wrapper = FakeKerasLayer(weights, merge_mode="concat",
                             layer={"class_name": "LSTM", "config": inner})
    layer = KINDS[kind].from_keras(wrapper, dtype="float64", batch_first=False)
    assert layer.bidirectional and layer.dtype == np.float64 and not layer.batch_first
    ours = ours_from_keras(kind, weights)
    params = {"W_l0": ours[0], "U_l0": ours[1], "b_l0": ours[2],
              "W_l0_reverse": ours[3], "U_l0_reverse": ours[4], "b_l0_reverse": ours[5]}
    params = {n: p.astype(np.float64) for n, p in params.items()}
    x, state, dout, dstate = problem(rng, kind, 1, 2, False, T, B, I, H, np.float64)
    expected = composed(kind, params, x, state, dout, dstate, 1, 2, False)
    check_layer(layer, x, state, dout, dstate, expected, kind, np.float64)


def test_from_keras_rejects_what_it_does_not_compute(rng):
    weights = keras_weights(rng, 3, 4, "lstm")
    with pytest.raises(ValueError, match="reset_after=False is not supported"):
        fastlstm.GRU.from_keras(FakeKerasLayer(keras_weights(rng, 3, 4, "gru"), reset_after=False))
    with pytest.raises(ValueError, match="recurrent_activation is 'hard_sigmoid'"):
        fastlstm.LSTM.from_keras(FakeKerasLayer(weights, activation="tanh",
                                                recurrent_activation="hard_sigmoid"))
    with pytest.raises(ValueError, match="go_backwards"):
        fastlstm.LSTM.from_keras(FakeKerasLayer(weights, go_backwards=True))
    with pytest.raises(ValueError, match="merge_mode 'sum'"):
        fastlstm.LSTM.from_keras(FakeKerasLayer(weights * 2, merge_mode="sum", layer={}))
    with pytest.raises(ValueError, match="got 2 arrays"):
        fastlstm.LSTM.from_keras(weights[:2])
    with pytest.raises(ValueError, match=r"bias expected shape \(16,\), got \(4,\)"):
        fastlstm.LSTM.from_keras(weights[:2] + [np.zeros(4)])
    with pytest.raises(ValueError, match="hidden_size: the Keras layer has hidden_size=4"):
        fastlstm.LSTM.from_keras(weights, hidden_size=5)


# ---- variable-length batches ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_lengths_equal_each_sequence_alone(rng, kind, backend):
    """A variable-length batch equals each sequence run alone: outputs (zero past the end), the
    final state at its own last step, dx, dstate, and parameter gradients summed over rows."""
    L, D, T, B, I, H = 2, 2, 6, 4, 3, 4
    lengths = np.array([6, 2, 0, 4])
    layer = KINDS[kind](I, H, num_layers=L, bidirectional=True, batch_first=True,
                        dtype="float64", seed=4, backend=BACKENDS[backend])
    alone = KINDS[kind](I, H, num_layers=L, bidirectional=True, batch_first=True,
                        dtype="float64", seed=4, backend=ref)
    x, state, dout, dstate = problem(rng, kind, L, D, True, T, B, I, H, np.float64)
    out, final = layer(x, state, lengths=lengths)
    dx = layer.backward(dout, dstate)
    summed = {n: np.zeros_like(g) for n, g in layer.grads.items()}
    for b, n in enumerate(lengths):
        rows = [s[:, b : b + 1] for s in as_tuple(state, kind)]
        drows = [s[:, b : b + 1] for s in as_tuple(dstate, kind)]
        out_b, final_b = alone(x[b : b + 1, :n], as_state(rows, kind))
        alone.zero_grad()
        dx_b = alone.backward(dout[b : b + 1, :n], as_state(drows, kind))
        assert_close(out[b, :n], out_b[0], np.float64)
        assert not out[b, n:].any()
        assert_close(dx[b, :n], dx_b[0], np.float64)
        assert not dx[b, n:].any()
        for a, e in zip(as_tuple(final, kind), as_tuple(final_b, kind)):
            assert_close(a[:, b], e[:, 0], np.float64)
        for a, e in zip(as_tuple(layer.dstate, kind), as_tuple(alone.dstate, kind)):
            assert_close(a[:, b], e[:, 0], np.float64)
        for name in summed:
            summed[name] += alone.grads[name]
    for name, g in summed.items():
        assert_close(layer.grads[name], g, np.float64)


# ---- PyTorch -------------------------------------------------------------------------------------


@pytest.fixture
def torch():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


def torch_module(torch, kind, I, H, dtype, **kwargs):
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind]
    torch.manual_seed(0)
    return cls(I, H, dtype=getattr(torch, np.dtype(dtype).name), **kwargs)


def torch_run(torch, module, kind, x, state, dout, dstate, lengths=None):
    """Outputs, final state and gradients of a torch module (zero-padded outputs if lengths)."""
    x_t = torch.tensor(x, requires_grad=True)
    state_t = [torch.tensor(s, requires_grad=True) for s in as_tuple(state, kind)]
    inp = x_t
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(
            x_t, torch.tensor(lengths), batch_first=module.batch_first, enforce_sorted=False)
    out, final = module(inp, as_state(state_t, kind))
    if lengths is not None:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(
            out, batch_first=module.batch_first, total_length=x.shape[int(module.batch_first)])
    loss = (out * torch.tensor(dout)).sum()
    for f, d in zip(as_tuple(final, kind), as_tuple(dstate, kind)):
        loss = loss + (f * torch.tensor(d)).sum()
    loss.backward()
    grads = {}
    for name, p in module.named_parameters():
        grads[name] = p.grad.numpy()
    return (out.detach().numpy(), [f.detach().numpy() for f in as_tuple(final, kind)],
            x_t.grad.numpy(), [s.grad.numpy() for s in state_t], grads)


def compare_with_torch(layer, result, out, final, dx, kind, dtype):
    t_out, t_final, t_dx, t_dstate, t_grads = result
    assert_close(out, t_out, dtype)
    assert_close(dx, t_dx, dtype)
    for a, e in zip(as_tuple(final, kind), t_final):
        assert_close(a, e, dtype)
    for a, e in zip(as_tuple(layer.dstate, kind), t_dstate):
        assert_close(a, e, dtype)
    for name, g in layer.grads.items():
        p, suffix = name.split("_", 1)
        if p == "b" and kind == "gru":  # db = (d(bias_ih), d(bias_hh))
            assert_close(g[0], t_grads[f"bias_ih_{suffix}"], dtype)
            assert_close(g[1], t_grads[f"bias_hh_{suffix}"], dtype)
        elif p == "b":  # d(bias_ih) = d(bias_hh) = db
            assert_close(g, t_grads[f"bias_ih_{suffix}"], dtype)
            assert_close(g, t_grads[f"bias_hh_{suffix}"], dtype)
        else:
            assert_close(g, t_grads[f"weight_{'ih' if p == 'W' else 'hh'}_{suffix}"].T, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("bidirectional, batch_first", [(True, False), (True, True), (False, True)],
                         ids=["bi-tm", "bi-bf", "uni-bf"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_matches_torch(torch, rng, kind, bidirectional, batch_first, dtype):
    L, T, B, I, H = 2, 5, 3, 4, 6
    D = 2 if bidirectional else 1
    module = torch_module(torch, kind, I, H, dtype, num_layers=L, bidirectional=bidirectional,
                          batch_first=batch_first)
    layer = KINDS[kind].from_torch(module)
    assert (layer.num_layers, layer.bidirectional, layer.batch_first) == (L, bidirectional,
                                                                          batch_first)
    assert layer.dtype == dtype
    x, state, dout, dstate = problem(rng, kind, L, D, batch_first, T, B, I, H, dtype)
    out, final = layer(x, state)
    dx = layer.backward(dout, dstate)
    compare_with_torch(layer, torch_run(torch, module, kind, x, state, dout, dstate),
                       out, final, dx, kind, dtype)


@pytest.mark.parametrize("kind", list(KINDS))
def test_torch_state_dict_round_trip(torch, rng, kind):
    layer = KINDS[kind](3, 5, num_layers=2, bidirectional=True, dtype="float64", seed=0)
    sd = layer.to_torch_state_dict()
    module = torch_module(torch, kind, 3, 5, np.float64, num_layers=2, bidirectional=True)
    assert list(sd) == list(module.state_dict())
    assert all(isinstance(v, np.ndarray) and (kind == "gru" or not sd[k.replace("_ih", "_hh")].any())
               for k, v in sd.items() if k.startswith("bias_ih"))
    module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    for back in (KINDS[kind].from_torch(sd), KINDS[kind].from_torch(module.state_dict()),
                 KINDS[kind].from_torch(module), KINDS[kind].from_torch(layer.to_torch())):
        assert back._config() == layer._config()
        for name, p in layer.params.items():
            np.testing.assert_array_equal(back.params[name], p)
    x = rng.standard_normal((4, 2, 3))
    assert_close(layer(x)[0], module(torch.tensor(x))[0].detach().numpy(), np.float64)
    # torch keeps two biases; their sum is our b
    torch.nn.init.uniform_(module.bias_hh_l1_reverse)
    back = KINDS[kind].from_torch(module, dtype="float32", batch_first=True)
    assert back.dtype == np.float32 and back.batch_first
    both = [module.bias_ih_l1_reverse.detach().numpy(), module.bias_hh_l1_reverse.detach().numpy()]
    expected = np.stack(both) if kind == "gru" else both[0] + both[1]
    assert_close(back.params["b_l1_reverse"], expected.astype(np.float32))


def test_from_torch_rejects_other_modules(torch):
    with pytest.raises(ValueError, match="weight_ih_l0 has 15 rows, a torch LSTM has 4\\*H = 20"):
        fastlstm.LSTM.from_torch(torch.nn.GRU(3, 5))
    with pytest.raises(ValueError, match="proj_size"):
        fastlstm.LSTM.from_torch(torch.nn.LSTM(3, 5, proj_size=2))
    with pytest.raises(ValueError, match="nonlinearity 'relu'"):
        fastlstm.RNN.from_torch(torch.nn.RNN(3, 5, nonlinearity="relu"))
    with pytest.raises(ValueError, match="expected torch weights named weight_ih_l0"):
        fastlstm.LSTM.from_torch({"weight": np.zeros(3)})
    with pytest.raises(ValueError, match="num_layers: the torch module has num_layers=2"):
        fastlstm.LSTM.from_torch(torch.nn.LSTM(3, 5, num_layers=2), num_layers=1)
    no_bias = fastlstm.LSTM.from_torch(torch.nn.LSTM(3, 5, bias=False))
    assert not no_bias.params["b_l0"].any()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_matches_torch_cell(torch, rng, kind, dtype):
    T, B, I, H = 3, 2, 4, 5
    torch.manual_seed(0)
    module = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell}[kind](
        I, H, dtype=getattr(torch, np.dtype(dtype).name))
    cell = CELLS[kind].from_torch(module)
    assert cell.dtype == dtype
    xs = rng.standard_normal((T, B, I)).astype(dtype)
    dhs = rng.standard_normal((T, B, H)).astype(dtype)
    xs_t = torch.tensor(xs, requires_grad=True)
    s_t, s = None, None
    loss = 0
    outs = []
    for t in range(T):
        s_t = module(xs_t[t], s_t)
        s = cell(xs[t], s)
        h_t = as_tuple(s_t, kind)[0]
        loss = loss + (h_t * torch.tensor(dhs[t])).sum()
        outs.append((as_tuple(s, kind)[0], h_t.detach().numpy()))
    loss.backward()
    for a, e in outs:
        assert_close(a, e, dtype)
    dx = [None] * T
    d = [None] * N_STATES[kind]
    for t in reversed(range(T)):
        dx[t] = cell.backward(dhs[t] + (0 if d[0] is None else d[0]), *d[1:])
        d = list(as_tuple(cell.dstate, kind))
    assert_close(np.stack(dx), xs_t.grad.numpy(), dtype)
    assert_close(cell.grads["W"], module.weight_ih.grad.numpy().T, dtype)
    assert_close(cell.grads["U"], module.weight_hh.grad.numpy().T, dtype)
    db = [module.bias_ih.grad.numpy(), module.bias_hh.grad.numpy()]
    assert_close(cell.grads["b"], np.stack(db) if kind == "gru" else db[0], dtype)
    sd = cell.to_torch_state_dict()
    np.testing.assert_array_equal(sd["weight_ih"], cell.params["W"].T)
    assert kind == "gru" or not sd["bias_hh"].any()


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_lengths_match_torch_packed_sequences(torch, rng, kind, batch_first, backend):
    L, D, T, B, I, H = 2, 2, 6, 4, 3, 5
    lengths = [6, 1, 3, 4]
    module = torch_module(torch, kind, I, H, np.float64, num_layers=L, bidirectional=True,
                          batch_first=batch_first)
    layer = KINDS[kind].from_torch(module, backend=BACKENDS[backend])
    x, state, dout, dstate = problem(rng, kind, L, D, batch_first, T, B, I, H, np.float64)
    out, final = layer(x, state, lengths=lengths)
    dx = layer.backward(dout, dstate)
    # torch's padded output and its gradient are zero past each end: so must ours be
    compare_with_torch(layer, torch_run(torch, module, kind, x, state, dout, dstate, lengths),
                       out, final, dx, kind, np.float64)


def test_readme_interop_example(capsys):
    namespace = run_readme_block("### From PyTorch, from Keras")
    assert namespace["out"].shape == (4, 10, 16) and namespace["c_n"].shape == (1, 4, 16)
    printed = capsys.readouterr().out
    if "largest difference from torch:" in printed:
        assert float(printed.split("largest difference from torch:")[1].split()[0]) < 1e-5


@pytest.mark.parametrize("layer_type", [fastlstm.LSTM, fastlstm.GRU, fastlstm.RNN])
def test_second_backward_raises_unless_the_cache_is_kept(rng, layer_type):
    """A second backward for one forward would add the gradients twice: it raises, as torch's
    does, unless the first kept the cache (retain_cache=True); then the gradients add up."""
    layer = layer_type(3, 4, num_layers=2, seed=0)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    out, _ = layer(x)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    layer.backward(dout)
    once = {name: grad.copy() for name, grad in layer.grads.items()}
    with pytest.raises(RuntimeError, match=r"already called for the last forward.*retain_cache"):
        layer.backward(dout)
    for name, grad in once.items():
        np.testing.assert_array_equal(layer.grads[name], grad)
    layer.zero_grad()
    layer(x)
    layer.backward(dout, retain_cache=True)
    layer.backward(dout)
    for name, grad in once.items():
        assert_close(layer.grads[name], 2 * grad)
    with pytest.raises(RuntimeError, match="already called"):
        layer.backward(dout)


def _zeros_for_spares(j, name, shape, dtype):
    return np.zeros(shape, dtype)


@pytest.mark.parametrize("layer_type", [fastlstm.LSTM, fastlstm.GRU, fastlstm.RNN])
def test_spare_arrays_left_dirty_give_the_same_bits(rng, monkeypatch, layer_type):
    """A layer keeps the arrays of the cache its backward (or the next forward) releases, and its
    next forward saves into them. Training steps of changing T, B and lengths, every spare filled
    with NaN before each step, give the bits of a twin whose forwards save into new arrays of
    zeros; a released cache's arrays are spares, a retained one's are not; a copy has none."""
    layer = layer_type(5, 7, num_layers=2, bidirectional=True, seed=0, dtype=np.float32)
    twin = copy.deepcopy(layer)
    monkeypatch.setattr(twin, "_spare_array", _zeros_for_spares)
    for T, B in [(6, 3), (9, 4), (4, 2), (9, 4)]:
        x = rng.standard_normal((T, B, 5)).astype(np.float32)
        lengths = rng.integers(0, T + 1, B)
        dout = rng.standard_normal((T, B, 14)).astype(np.float32)
        for spare in layer._spares.values():
            spare.view(np.uint8).fill(0xFF)
        results = []
        for model in (layer, twin):
            out, state = model(x, lengths=lengths)
            dx = model.backward(dout)
            results.append([out, *np.atleast_1d(state), dx, *model.grads.values()])
            model.zero_grad()
        for got, want in zip(*results):
            np.testing.assert_array_equal(got, want)
    kept = {key: spare.ctypes.data for key, spare in layer._spares.items()}
    assert len(kept) == 4 * len(layer._kind.saved)  # 2 layers x 2 directions
    out, _ = layer(x)
    assert not layer._spares  # the forward took them all
    layer.backward(dout, retain_cache=True)
    assert not layer._spares  # its cache is still held
    layer.backward(dout)
    assert {key: spare.ctypes.data for key, spare in layer._spares.items()} == kept
    assert not copy.copy(layer)._spares and not pickle.loads(pickle.dumps(layer))._spares


def test_caches_stay_apart_after_errors_replacements_and_copies(rng):
    """A forward that raises leaves the last forward's cache to its backward; forwards that replace
    a cache without a backward hand its arrays on, and the results stay right; a shallow copy shares
    the parameters but not the cache, so its backward asks for a forward of its own."""
    layer = fastlstm.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0)
    twin = fastlstm.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0, backend=ref)
    xs = [rng.standard_normal((5, 2, 3)) for _ in range(3)]
    dout = rng.standard_normal((5, 2, 8))

    def check(x):  # layer's last forward was of x; its backward against the twin's
        twin(x)
        assert_close(layer.backward(dout), twin.backward(dout))
        for name in layer.grads:
            assert_close(layer.grads[name], twin.grads[name])
        layer.zero_grad()
        twin.zero_grad()

    layer(xs[0])
    layer.backward(dout, retain_cache=True)
    layer.zero_grad()
    with pytest.raises(ValueError, match="x: expected shape"):
        layer(np.ones((5, 2, 7)))
    check(xs[0])
    for x in xs + xs:  # each forward replaces the last one's cache
        out, _ = layer(x)
        assert_close(out, twin(x)[0])
    check(xs[-1])
    layer(xs[1])
    copied = copy.copy(layer)
    assert copied.params is layer.params
    with pytest.raises(RuntimeError, match="call forward first"):
        copied.backward(dout)
    check(xs[1])
