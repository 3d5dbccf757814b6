"""layer.freeze(): the forward with its weights copied and packed once must give the layer's forward
bit for bit, for every kind, dtype, stack, layout, batch tile and thread count, and never see
later changes to the layer."""
import copy
import doctest
import pickle

import numpy as np
import pytest

import fastlstm
from fastlstm import _core, frozen as frozen_module, reference

KINDS = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "rnn": fastlstm.RNN}
# (T, B, I, H): the per-step product's tile of each batch size (a row at B = 1, a pair at B = 2,
# narrow and wide tiles at B = 3 and 7, the wider row tile at B = 1, H = 150), the steps computing
# their own input side (B = 9 and 16 at small weights), units past a whole tile (H = 65, 257), an
# I of 513, the input side read in place over terms in two blocks (I = 300; the frozen forward's W
# is packed) and, with W over 6 MB, a block of terms at a time (I = 1024), and no steps
SHAPES = [(5, 1, 7, 17), (4, 2, 13, 65), (3, 3, 5, 9), (3, 7, 2, 20), (3, 1, 6, 150),
          (4, 9, 16, 64), (2, 16, 33, 40), (2, 2, 513, 257), (3, 2, 300, 20), (2, 3, 1024, 400),
          (0, 3, 4, 5)]


def all_outputs(result):
    out, state = result
    return [out, *(state if isinstance(state, tuple) else (state,))]


def assert_same_bits(got, want):
    for g, w in zip(all_outputs(got), all_outputs(want)):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert np.array_equal(g, w), "the frozen forward's bits differ from the layer's"


def random_state(rng, layer, B):
    shape = (layer.num_layers * layer.num_directions, B, layer.hidden_size)
    h = rng.standard_normal(shape)
    return (h, rng.standard_normal(shape)) if isinstance(layer, fastlstm.LSTM) else h


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}-B{}-I{}-H{}".format(*s))
@pytest.mark.parametrize("kind", KINDS)
def test_frozen_forward_is_the_forward_bit_for_bit(kind, shape, dtype):
    T, B, I, H = shape
    rng = np.random.default_rng(1)
    layer = KINDS[kind](I, H, dtype=dtype, seed=2)
    frozen = layer.freeze()
    x = rng.standard_normal((T, B, I))
    state = random_state(rng, layer, B)
    lengths = rng.integers(0, T + 1, B)
    for args in [(x,), (x, state), (x, None, lengths)]:
        want = layer(*args)
        assert_same_bits(frozen(*args), want)
        assert_same_bits(frozen(*args), want)  # the packing made by the first call, reused


@pytest.mark.parametrize("kind", KINDS)
def test_frozen_stack_bidirectional_batch_first(kind):
    """Every (layer, direction) packed for itself; batch-first layout and lengths as the layer's."""
    rng = np.random.default_rng(3)
    layer = KINDS[kind](6, 11, num_layers=3, bidirectional=True, batch_first=True, seed=4)
    frozen = layer.freeze()
    x = rng.standard_normal((4, 5, 6))  # (B, T, I)
    lengths = np.array([5, 0, 3, 1])
    state = random_state(rng, layer, 4)
    assert_same_bits(frozen(x, state, lengths), layer(x, state, lengths))
    assert_same_bits(frozen.forward(x), layer.forward(x))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_frozen_forward_on_any_thread_count(threads):
    """Packed on one thread count, run on another: the same bits (packing does not depend on it)."""
    rng = np.random.default_rng(5)
    layer = fastlstm.LSTM(40, 96, num_layers=2, seed=6)
    x = rng.standard_normal((6, 3, 40))
    with fastlstm.num_threads(1):
        want = layer(x)
    frozen = layer.freeze()
    with fastlstm.num_threads(4 - threads):
        frozen(x)  # packs
    with fastlstm.num_threads(threads):
        assert_same_bits(frozen(x), want)


def test_frozen_weights_are_a_copy():
    """Training the layer after freeze() changes nothing in the frozen forward; freezing again
    takes the new weights. The layer's own cache for its backward is left alone."""
    rng = np.random.default_rng(7)
    layer = fastlstm.LSTM(5, 8, seed=8)
    x = rng.standard_normal((4, 2, 5))
    before = layer(x)
    frozen = layer.freeze()
    frozen(x)
    for p in layer.params.values():
        p += 0.5
    after = layer(x)
    assert not np.array_equal(after[0], before[0])
    assert_same_bits(frozen(x), before)
    assert_same_bits(layer.freeze()(x), after)
    # the layer's backward still belongs to its last forward, after the frozen calls
    frozen(x)
    dx = layer.backward(np.ones_like(after[0]))
    ref = fastlstm.LSTM(5, 8, backend=reference)
    for name, p in layer.params.items():
        ref.params[name][...] = p
    ref(x)
    np.testing.assert_allclose(dx, ref.backward(np.ones_like(after[0])), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_frozen_reuses_its_scratch_arrays(kind):
    """The arrays a forward works in are kept from call to call (grown when a call needs more),
    never the outputs, and every call still gives the layer's bits."""
    rng = np.random.default_rng(16)
    layer = KINDS[kind](4, 6, num_layers=2, bidirectional=True, seed=17)
    frozen = layer.freeze()
    outs = []
    for T, B in [(5, 3), (9, 3), (3, 2), (9, 3)]:
        x = rng.standard_normal((T, B, 4))
        got = frozen(x)
        assert_same_bits(got, layer(x))
        outs.append(got[0])
    kept = frozen._scratch.__dict__
    assert sorted(kept) == sorted(set(layer._kind.saved) - {"hs_ext"})
    assert all(not np.shares_memory(a, b) for a in outs for b in kept.values())
    # a call no larger than the largest so far takes the same memory
    before = {name: memory.ctypes.data for name, memory in kept.items()}
    frozen(rng.standard_normal((2, 3, 4)))
    assert {name: memory.ctypes.data for name, memory in kept.items()} == before


def test_frozen_keeps_the_last_batch_sizes():
    """A packing per batch size, the last four kept; each batch size still gives the layer's bits."""
    rng = np.random.default_rng(9)
    layer = fastlstm.GRU(6, 10, seed=10)
    frozen = layer.freeze()
    for B in (1, 2, 3, 4, 5, 6, 1):
        x = rng.standard_normal((3, B, 6))
        assert_same_bits(frozen(x), layer(x))
    assert len(frozen._packs) == frozen_module._KEPT_PACKINGS
    assert list(frozen._packs)[-1][0] == 1


def test_frozen_shared_by_python_threads():
    """Threads calling one Frozen with five batch sizes at once (more than it keeps packed) each
    get the layer's bits."""
    import threading

    rng = np.random.default_rng(14)
    layer = fastlstm.LSTM(9, 33, num_layers=2, seed=15)
    frozen = layer.freeze()
    xs = [rng.standard_normal((4, B, 9)) for B in (1, 2, 3, 5, 8)]
    wants = [layer(x) for x in xs]
    failures = []

    def run(k):
        for _ in range(20):
            x, want = xs[k % len(xs)], wants[k % len(xs)]
            got = frozen(x)
            if not all(np.array_equal(g, w) for g, w in zip(all_outputs(got), all_outputs(want))):
                failures.append(k)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(frozen._packs) == frozen_module._KEPT_PACKINGS


def test_frozen_with_the_reference_backend():
    """Another backend's frozen forward runs that backend on the copied weights."""
    rng = np.random.default_rng(11)
    layer = fastlstm.LSTM(4, 6, num_layers=2, seed=12, backend=reference)
    x = rng.standard_normal((3, 2, 4))
    frozen = layer.freeze()
    want = layer(x)
    for p in layer.params.values():
        p *= 2
    assert_same_bits(frozen(x), want)
    assert frozen._packs == {}


@pytest.mark.parametrize("copy_of", [copy.deepcopy, lambda x: pickle.loads(pickle.dumps(x))],
                         ids=["deepcopy", "pickle"])
def test_frozen_copies_and_pickles(copy_of):
    """A copy of a Frozen that has packed: its own weights, no packings or scratch arrays until
    its first call, then the layer's bits."""
    rng = np.random.default_rng(16)
    layer = fastlstm.GRU(5, 7, num_layers=2, bidirectional=True, seed=17)
    frozen = layer.freeze()
    x = rng.standard_normal((4, 3, 5))
    want = frozen(x)
    twin = copy_of(frozen)
    assert twin._packs == {} and not vars(twin._scratch)
    assert repr(twin) == repr(frozen)
    assert_same_bits(twin(x), want)
    assert len(twin._packs) == 1
    for name, p in twin._layer.params.items():
        assert not np.shares_memory(p, frozen._layer.params[name])


def test_frozen_rejects_bad_input_as_the_layer_does():
    layer = fastlstm.RNN(3, 4, seed=0)
    frozen = layer.freeze()
    with pytest.raises(ValueError) as want:
        layer(np.ones((2, 2, 5)))
    with pytest.raises(ValueError) as got:
        frozen(np.ones((2, 2, 5)))
    assert str(got.value) == str(want.value)
    with pytest.raises(ValueError, match="lengths"):
        frozen(np.ones((2, 2, 3)), None, [3, 1])


def test_weights_packed_for_another_call_are_refused():
    """The C layer checks what the weights were packed for: another batch tile, H or dtype is a
    clear ValueError, never a misread."""
    rng = np.random.default_rng(13)
    W, U = rng.standard_normal((5, 24)), rng.standard_normal((6, 24))
    b = np.zeros(24)
    threads, simd = fastlstm._config.kernel_args()
    packed = _core.pack(0, W, U, 1, threads, simd)  # FL_LSTM for one row
    assert packed.ctypes.data % 64 == 0
    xs = rng.standard_normal((3, 2, 5))
    with pytest.raises(ValueError, match="packed: expected weights packed for this call"):
        fastlstm._functions._sequence_forward(fastlstm._kinds.LSTM, xs, (None, None), W, U, b,
                                              None, packed)
    with pytest.raises(ValueError, match="packed: expected weights packed for this call"):
        fastlstm._functions._sequence_forward(fastlstm._kinds.LSTM, xs[:, :1], (None, None), W, U,
                                              b, None, packed[:64])  # too short: never read
    with pytest.raises(ValueError, match="packed: expected the uint8 array"):
        fastlstm._functions._sequence_forward(fastlstm._kinds.LSTM, xs, (None, None), W, U, b,
                                              None, packed.view(np.int32))
    with pytest.raises(ValueError, match="packed: expected weights packed for this call"):
        fastlstm._functions._sequence_forward(fastlstm._kinds.LSTM, xs[:, :1].astype(np.float32),
                                              (None, None), W.astype(np.float32),
                                              U.astype(np.float32), b.astype(np.float32), None,
                                              packed)


def test_frozen_docstring_examples():
    """The module's examples (those of layer.freeze run with the layers' module)."""
    failures, tried = doctest.testmod(frozen_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert failures == 0 and tried > 0
