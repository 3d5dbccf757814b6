"""A NumPy training loop: the kernels as a user's script meets them, NumPy's BLAS at its defaults."""
import contextlib
import time

import numpy as np

import fastlstm
from fastlstm import _blas, _config, reference

from .timing import SETTLE_SECONDS

# the training-loop table: (T, B, I, H, O), an LSTM under a linear read-out of O outputs
LOOPS = [(50, 8, 64, 128, 64), (50, 32, 64, 256, 64), (25, 64, 256, 512, 64)]
LOOP_STEPS = 4  # timed training steps of each contender per round
QUIET_SECONDS = 0.15  # a sleep before each contender: OpenBLAS's threads spin about 0.1 s
# the ratios of the training-loop table: speed-ups over the reference, then fastlstm's time against
# its time with NumPy's BLAS on one thread (when threadpoolctl is there to set that)
LOOP_RATIOS = [("reference", "fastlstm"), ("fastlstm, BLAS's own threads", "fastlstm"),
               ("fastlstm, fixed threads", "fastlstm"),
               ("reference", "fastlstm + matmul"),
               ("fastlstm", "fastlstm, 1 BLAS thread"),
               ("fastlstm + matmul", "fastlstm, 1 BLAS thread")]


def make_training_step(module, spec, dtype="float32", seed=0, product=np.matmul):
    """One step of a plain NumPy training loop around `module`'s LSTM (fastlstm or the reference).

    The step a user writes: ``lstm_forward``, a read-out ``hs @ V``, the mean squared error's
    gradient, ``lstm_backward``, the read-out's gradient and an SGD update of every parameter in
    place. The read-out's three products are `product`: NumPy's ``@`` by default, or
    ``fastlstm.matmul``. Returns ``step() -> loss``; the same seed gives each module the same
    problem.
    """
    T, B, I, H, O = spec
    rng = np.random.default_rng(seed)

    def normal(dims, scale=1.0):
        return (scale * rng.standard_normal(dims)).astype(dtype)

    xs, targets = normal((T, B, I)), normal((T, B, O))
    W, U, b = normal((I, 4 * H), H**-0.5), normal((H, 4 * H), H**-0.5), np.zeros(4 * H, dtype)
    V = normal((H, O), H**-0.5)
    lr = 1e-3

    def step():
        hs, _, _, cache = module.lstm_forward(xs, None, None, W, U, b)
        error = product(hs, V) - targets                                 # (T, B, O)
        dxs, _, _, dW, dU, db = module.lstm_backward(product(error, V.T), None, None, cache)
        dV = product(hs.reshape(-1, H).T, error.reshape(-1, O))
        for param, grad in ((W, dW), (U, dU), (b, db), (V, dV)):
            param -= lr * grad
        return float(np.mean(error**2))

    return step


def _one_blas_thread():
    """A context manager factory limiting NumPy's BLAS to one thread (threadpoolctl), or None."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return lambda: threadpool_limits(limits=1, user_api="blas")


def bench_training_loop(spec, threads, dtype, repeat, steps=LOOP_STEPS, settle=SETTLE_SECONDS):
    """Time a NumPy training loop (:func:`make_training_step`) around fastlstm and the reference.

    NumPy's BLAS keeps its default thread count. Each round times `steps` training steps of each
    contender in turn, each after `settle` seconds of its own untimed steps, so that each contender
    meets what its own loop leaves spinning, as a script looping over it does. For the same reason
    each contender starts as a script of its own would: after `QUIET_SECONDS` of sleep, in which
    the threads the previous one left spinning stop, and with all fastlstm's threads, not with the
    fewer that the previous one may have left it (``_config.forget_sharing``).

    The reference's loop runs NumPy's BLAS on OpenBLAS's own threads, as without fastlstm
    (``_blas.own_threads``); fastlstm's on fastlstm's threads, as after ``import fastlstm``. A
    contender runs fastlstm's loop with the BLAS on its own threads too: what sharing the threads
    gains. Another keeps fastlstm's thread count as set (``_config.fixed_threads``, as
    ``FASTLSTM_DYNAMIC_THREADS=0``): what the adjustment to cores taken by other threads gains, or
    costs. Another computes the read-out of fastlstm's loop with ``fastlstm.matmul`` instead of
    NumPy's ``@``; with threadpoolctl, a last one is the plain loop with the BLAS on one thread.
    Returns the record: every step time of each contender in ms, and per round the ratios of the
    contenders' median step times.
    """
    plain = contextlib.nullcontext
    contenders = {
        "fastlstm": (make_training_step(fastlstm, spec, dtype), plain),
        "fastlstm, BLAS's own threads": (make_training_step(fastlstm, spec, dtype),
                                         _blas.own_threads),
        "fastlstm, fixed threads": (make_training_step(fastlstm, spec, dtype),
                                    _config.fixed_threads),
        "reference": (make_training_step(reference, spec, dtype), _blas.own_threads),
        "fastlstm + matmul": (make_training_step(fastlstm, spec, dtype, product=fastlstm.matmul),
                              plain),
    }
    limit = _one_blas_thread()
    if limit is not None:
        contenders["fastlstm, 1 BLAS thread"] = (make_training_step(fastlstm, spec, dtype), limit)
    ms = {name: [] for name in contenders}
    with fastlstm.num_threads(threads):
        for _ in range(repeat):
            for name, (step, context) in contenders.items():
                time.sleep(QUIET_SECONDS)
                _config.forget_sharing()
                with context():
                    end = time.perf_counter() + settle
                    while time.perf_counter() < end:
                        step()
                    for _ in range(steps):
                        start = time.perf_counter()
                        step()
                        ms[name].append(1e3 * (time.perf_counter() - start))
    rounds = {name: np.median(np.reshape(times, (repeat, steps)), axis=1)
              for name, times in ms.items()}
    T, B, I, H, O = spec
    return {"T": T, "B": B, "I": I, "H": H, "O": O, "steps_per_round": steps, "step_ms": ms,
            "ratio_per_round": {f"{top} / {bottom}": list(rounds[top] / rounds[bottom])
                                for top, bottom in LOOP_RATIOS
                                if top in rounds and bottom in rounds}}
