"""Streaming inference: layer.stream(batch_size) steps a layer one time step at a time and must give
what forward gives on the whole sequence, for every kind, dtype, stack and backend."""
import copy
import doctest
import faulthandler
import multiprocessing
import pickle
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest

import fastlstm
from fastlstm import reference, stream as stream_module

from conftest import assert_close

KINDS = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "rnn": fastlstm.RNN}
# (T, B, I, H, num_layers): odd sizes, a tile's edge (H = 65 > 64), a step large enough to run on
# a team of threads (B = 3, I = 64, H = 128: ~1.2M flops), and a stack
SHAPES = [(1, 1, 1, 1, 1), (7, 3, 5, 9, 2), (4, 2, 13, 65, 3), (3, 3, 64, 128, 2),
          (5, 1, 33, 200, 1)]


def make_layer(kind, I, H, layers, dtype, backend=None, batch_first=False):
    return KINDS[kind](I, H, num_layers=layers, dtype=dtype, seed=3, backend=backend,
                       batch_first=batch_first)


def random_state(rng, layer, B):
    shape = (layer.num_layers, B, layer.hidden_size)
    h = rng.standard_normal(shape).astype(layer.dtype)
    if isinstance(layer, fastlstm.LSTM):
        return h, rng.standard_normal(shape).astype(layer.dtype)
    return h


def step_all(stream, xs):
    """The top layer's h at every step, (T, B, H): copies, since step reuses its buffer."""
    return np.stack([stream.step(x).copy() for x in xs])


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("backend", [None, reference], ids=["c", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_stepping_equals_forward(kind, dtype, shape, backend):
    T, B, I, H, layers = shape
    rng = np.random.default_rng(sum(shape))
    layer = make_layer(kind, I, H, layers, dtype, backend)
    xs = rng.standard_normal((T, B, I)).astype(dtype)
    state = random_state(rng, layer, B)
    stream = layer.stream(batch_size=B)
    stream.reset(state)
    hs = step_all(stream, xs)
    out, final = layer.forward(xs, state)
    assert hs.dtype == np.dtype(dtype)
    assert_close(hs, out)
    for got, expected in zip(as_tuple(stream.state), as_tuple(final)):
        assert got.shape == expected.shape and got.dtype == expected.dtype
        assert_close(got, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_continues_where_forward_stops(kind):
    """A stream started from forward's final state continues the sequence: forward over the whole
    of it equals forward over the first part, then steps."""
    rng = np.random.default_rng(1)
    layer = make_layer(kind, 6, 10, 2, np.float64)
    xs = rng.standard_normal((9, 2, 6))
    _, state = layer.forward(xs[:4])
    stream = layer.stream(2)
    stream.reset(state)
    hs = step_all(stream, xs[4:])
    out, _ = layer.forward(xs)
    assert_close(hs, out[4:])


def test_batch_first_layer_steps_the_same():
    """batch_first changes only forward's layout: a step's x is (B, I) either way."""
    rng = np.random.default_rng(2)
    layer = make_layer("lstm", 4, 7, 1, np.float64, batch_first=True)
    x = rng.standard_normal((3, 5, 4))  # (B, T, I)
    hs = step_all(layer.stream(3), x.transpose(1, 0, 2))
    out, _ = layer.forward(x)
    assert_close(hs, out.transpose(1, 0, 2))


@pytest.mark.parametrize("kind", KINDS)
def test_same_bits_for_any_thread_count(kind):
    rng = np.random.default_rng(4)
    layer = make_layer(kind, 64, 130, 2, np.float32)
    xs = rng.standard_normal((4, 3, 64)).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        with fastlstm.num_threads(threads):
            stream = layer.stream(3)
        results.append((step_all(stream, xs), *as_tuple(stream.state)))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


# ---- the pools that steps run on -----------------------------------------------------------------
# A step of the streaming benchmark's size (B = 1, I = 64, H = 128) runs on two threads: on the
# process's pool of two, which its Python threads share.

needs_threads = pytest.mark.skipif(not fastlstm._core.openmp_version(),
                                   reason="a serial build steps streams on one thread, no pool")


def pool_threads():
    return [t for t in threading.enumerate() if t.name.startswith("fastlstm-pool-")]


def pooled_stream(layer, B=1):
    with fastlstm.num_threads(2):
        return layer.stream(B)


def served(pool):
    """The pool, once its threads serve it (until then steps pass it by)."""
    for _ in range(10000):
        if pool.serving == pool.threads - 1:
            return pool
        time.sleep(0.001)
    raise AssertionError(f"{pool.serving} of {pool.threads - 1} threads serve the pool")


@needs_threads
def test_steps_run_on_the_pool_with_the_same_bits():
    rng = np.random.default_rng(11)
    layer = make_layer("lstm", 64, 128, 2, np.float32)
    xs = rng.standard_normal((6, 1, 64)).astype(np.float32)
    with fastlstm.num_threads(1):
        on_one = layer.stream(1)
    expected = step_all(on_one, xs)
    stream, other = pooled_stream(layer), pooled_stream(layer)
    pool = served(stream._pool())
    assert other._pool() is pool
    calls = pool.calls
    np.testing.assert_array_equal(step_all(stream, xs), expected)
    np.testing.assert_array_equal(step_all(other, xs), expected)
    assert pool.calls == calls + 2 * len(xs)


@needs_threads
def test_python_threads_share_the_pool():
    """Streams stepped from two Python threads at once share one pool: a step that finds it busy
    with the other thread's step runs without it, and every step gives the single-threaded bits.
    The pool outlives the threads that stepped on it."""
    rng = np.random.default_rng(12)
    layer = make_layer("gru", 256, 512, 1, np.float64)  # large enough to release the GIL
    xs = rng.standard_normal((30, 1, 256))
    with fastlstm.num_threads(1):
        expected = step_all(layer.stream(1), xs)
    streams = [pooled_stream(layer) for _ in range(2)]
    pool = served(streams[0]._pool())
    calls = pool.calls
    results, pools = [None, None], [None, None]

    def run(k):
        pools[k] = streams[k]._pool()
        results[k] = step_all(streams[k], xs)

    workers = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for result in results:
        np.testing.assert_array_equal(result, expected)
    assert pools[0] is pool and pools[1] is pool
    assert pool.calls > calls  # and those that found it busy ran without it (C test: test_pool)
    assert not pool.stopped and pool.serving == pool.threads - 1
    streams[0].reset()
    np.testing.assert_array_equal(step_all(streams[0], xs), expected)
    assert streams[0]._pool() is pool


def _step_in_child(stream, xs, connection):
    faulthandler.dump_traceback_later(20, exit=True)  # a hang shows where, and ends the child
    connection.send(step_all(stream, xs))
    connection.close()


@pytest.mark.skipif(sys.platform != "linux", reason="fork is the default start method on Linux")
def test_a_stream_steps_in_a_forked_child():
    """The pool's threads do not come along into a child made by fork: the child's steps find a
    pool of their own instead of waiting for threads that are not there."""
    rng = np.random.default_rng(13)
    layer = make_layer("lstm", 64, 128, 1, np.float32)
    xs = rng.standard_normal((8, 1, 64)).astype(np.float32)
    stream = pooled_stream(layer)
    step_all(stream, xs[:4])
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_step_in_child, args=(stream, xs[4:], sender))
    child.start()
    sender.close()
    got = receiver.recv() if receiver.poll(60) else None
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        child.join()
    expected = step_all(stream, xs[4:])
    assert child.exitcode == 0 and got is not None, f"the child ended with {child.exitcode}"
    np.testing.assert_array_equal(got, expected)


def _step_a_new_stream(layer, x):
    with fastlstm.num_threads(2):
        stream = layer.stream(1)
    for _ in range(20):
        stream.step(x)


@pytest.mark.skipif(sys.platform != "linux", reason="fork is the default start method on Linux")
def test_children_forked_while_another_thread_steps():
    """A child forked while another thread's step runs on the pool (the GIL released for it) has a
    copy of that pool that never finishes the step: dropping it in the child must not wait for it."""
    layer = make_layer("lstm", 256, 256, 1, np.float32)
    x = np.ones((1, 256), np.float32)
    stop = threading.Event()

    def step_until_stopped():
        with fastlstm.num_threads(2):
            stream = layer.stream(1)
        while not stop.is_set():
            stream.step(x)

    stepper = threading.Thread(target=step_until_stopped)
    stepper.start()
    context = multiprocessing.get_context("fork")
    exit_codes = []
    try:
        for _ in range(6):
            child = context.Process(target=_step_a_new_stream, args=(layer, x))
            child.start()
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
                child.join()
            exit_codes.append(child.exitcode)
    finally:
        stop.set()
        stepper.join()
    assert exit_codes == [0] * 6


@needs_threads
def test_a_pool_not_yet_served_is_passed_by():
    """A step never waits for a pool's threads to arrive: one could be waiting for the GIL that
    the stepping thread holds (a step this small does not release it)."""
    rng = np.random.default_rng(14)
    layer = make_layer("lstm", 64, 128, 1, np.float32)
    xs = rng.standard_normal((5, 1, 64)).astype(np.float32)
    with fastlstm.num_threads(1):
        expected = step_all(layer.stream(1), xs)
    pool = fastlstm._core.Pool(2)
    stream = pooled_stream(layer)
    stream._pool = lambda: pool
    np.testing.assert_array_equal(step_all(stream, xs), expected)
    assert pool.calls == 0
    threading.Thread(target=pool.serve, args=(1,), daemon=True).start()
    served(pool)
    stream.reset()
    np.testing.assert_array_equal(step_all(stream, xs), expected)
    assert pool.calls == len(xs)
    pool.stop()


@needs_threads
def test_a_stopped_pool_is_replaced():
    layer = make_layer("rnn", 64, 256, 1, np.float32)
    x = np.ones((1, 64), np.float32)
    stream = pooled_stream(layer)
    stream.step(x)
    pool = stream._pool()
    pool.stop()
    pool.stop()  # a second stop does nothing
    with fastlstm.num_threads(1):
        expected = layer.stream(1)
    stream.reset()
    np.testing.assert_array_equal(stream.step(x), expected.step(x))
    assert stream._pool() is not pool and not stream._pool().stopped


@pytest.mark.parametrize("backend", [None, reference], ids=["c", "reference"])
def test_weights_changed_in_place_are_seen(backend):
    rng = np.random.default_rng(5)
    layer = make_layer("gru", 3, 5, 2, np.float64, backend)
    stream = layer.stream(2)
    x = rng.standard_normal((2, 3))
    stream.step(x)
    layer.params["U_l1"] *= 0.5  # a training update, in place
    layer.params["b_l0"][...] = 1
    state = stream.state
    got = stream.step(x).copy()
    expected, _ = layer.forward(x[np.newaxis], state)
    assert_close(got, expected[0])


def test_step_returns_one_reused_buffer_and_state_is_a_copy():
    layer = make_layer("lstm", 3, 4, 2, np.float32)
    stream = layer.stream(1)
    x = np.ones((1, 3), np.float32)
    first = stream.step(x)
    kept = first.copy()
    second = stream.step(x)
    assert second is first  # the documented reuse: the next step overwrites it
    assert not np.array_equal(kept, second)
    h, c = stream.state
    h[...] = 7
    assert not np.any(stream.state[0] == 7)
    np.testing.assert_array_equal(stream.state[0][-1], second)


def test_reset():
    rng = np.random.default_rng(6)
    layer = make_layer("lstm", 3, 4, 2, np.float64)
    stream = layer.stream(2)
    xs = rng.standard_normal((3, 2, 3))
    first = step_all(stream, xs)
    stream.reset()
    for a in stream.state:
        np.testing.assert_array_equal(a, 0)
    np.testing.assert_array_equal(step_all(stream, xs), first)
    h0 = rng.standard_normal((2, 2, 4))
    stream.reset((h0, None))  # None for either state means zeros, as forward takes it
    h, c = stream.state
    np.testing.assert_array_equal(h, h0)
    np.testing.assert_array_equal(c, 0)


def test_steps_allocate_nothing():
    """A step of a well-formed x makes no new array: the stream owns every buffer."""
    layer = make_layer("lstm", 16, 32, 2, np.float32)
    stream = layer.stream(4)
    x = np.ones((4, 16), np.float32)
    stream.step(x)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(200):
            stream.step(x)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 4096, f"200 steps allocated {grown} bytes"


@pytest.mark.parametrize("x", [[[1, 2, 3]], np.ones((1, 3), np.int64), np.ones((3, 1)).T,
                               np.ones((1, 3), np.float64)])
def test_x_is_converted_like_forwards(x):
    layer = make_layer("rnn", 3, 4, 1, np.float32)
    expected = layer.stream(1).step(np.asarray(x, np.float32)).copy()
    np.testing.assert_array_equal(layer.stream(1).step(x), expected)


@pytest.mark.parametrize("x, error, words", [
    (np.ones((2, 3)), ValueError, ["x", "(B, I) = (1, 3)", "(2, 3)"]),
    (np.ones((1, 4)), ValueError, ["x", "(1, 3)", "(1, 4)"]),
    (np.ones(3), ValueError, ["x", "(1, 3)", "(3,)"]),
    (np.ones((1, 3), complex), TypeError, ["x", "complex"]),
    ("abc", TypeError, ["x"]),
])
def test_bad_x_is_refused(x, error, words):
    stream = make_layer("lstm", 3, 4, 1, np.float32).stream(1)
    with pytest.raises(error) as info:
        stream.step(x)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, "2"])
def test_bad_batch_size_is_refused(batch_size):
    with pytest.raises((ValueError, TypeError), match="batch_size"):
        make_layer("gru", 3, 4, 1, np.float32).stream(batch_size)


def test_bad_state_is_refused():
    stream = make_layer("lstm", 3, 4, 2, np.float32).stream(1)
    with pytest.raises(ValueError, match=r"state\[0\]"):
        stream.reset((np.zeros((1, 1, 4)), None))
    with pytest.raises(ValueError, match="state"):
        stream.reset(np.zeros((2, 1, 4)))  # the LSTM's state is a pair


@pytest.mark.parametrize("kind", KINDS)
def test_bidirectional_is_refused(kind):
    layer = KINDS[kind](3, 4, bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional"):
        layer.stream(1)


@pytest.mark.parametrize("copy_of", [copy.copy, copy.deepcopy, pickle.dumps],
                         ids=["copy", "deepcopy", "pickle"])
def test_a_stream_is_not_copied(copy_of):
    """A stream steps its layer's own arrays: a copy is refused with a clear error, not made half."""
    stream = fastlstm.LSTM(3, 4).stream(1)
    with pytest.raises(TypeError, match=r"stream cannot be copied or pickled.*layer\.stream"):
        copy_of(stream)


def test_an_unbound_stepper_refuses_to_step():
    with pytest.raises(RuntimeError, match="not bound"):
        fastlstm._core.Stepper().step(np.ones((1, 1), np.float32))


def test_docstring_examples():
    failures, tried = doctest.testmod(stream_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 0 and failures == 0


def test_readme_streaming_example():
    from test_layers import run_readme_block

    namespace = run_readme_block("### Streaming inference: one time step at a time")
    out, h_t = namespace["out"], namespace["h_t"]
    assert h_t.shape == (1, 128)
    assert_close(h_t, out[-1])
