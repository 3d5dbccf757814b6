"""Shared fixtures and tolerances for the fastlstm tests.

The tests run against whichever fastlstm Python imports: the editable build of a clone, or an
installed wheel or sdist when pytest starts outside the source tree (`cd /tmp && pytest
/path/to/clone/tests`). The header names the one under test; FASTLSTM_TEST_INSTALLED=1 makes
the run fail at once if that is the source tree's.
"""
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastlstm

# The clone or sdist these tests belong to: README.md and examples/ are read from it.
SOURCE_TREE = pathlib.Path(__file__).resolve().parents[1]
# The working directory of the tests' child `python -c` / `python -m fastlstm`: it holds no
# fastlstm/ folder, so a child imports the fastlstm this process imported, as a user's would,
# never a source tree that shadows an installed package.
CHILD_CWD = pathlib.Path(__file__).resolve().parent


def source_file(*parts):
    """The path of a file of the source tree (README.md, examples/...); skips the calling test (or
    module) when the tests were copied without it."""
    path = SOURCE_TREE.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: this test needs the tests/ folder of a clone or an sdist, "
                    f"beside {parts[0]}", allow_module_level=True)
    return path


def pytest_report_header(config):
    package = pathlib.Path(fastlstm.__file__).parent
    settings = fastlstm._config.config()
    return [f"fastlstm {fastlstm.__version__} from {package}",
            "fastlstm config: " + ", ".join(f"{k}={v}" for k, v in settings.items())]


def pytest_configure(config):
    package = pathlib.Path(fastlstm.__file__).resolve().parent
    if os.environ.get("FASTLSTM_TEST_INSTALLED") == "1" and package.parent == SOURCE_TREE:
        raise pytest.UsageError(f"FASTLSTM_TEST_INSTALLED=1, but fastlstm was imported from the "
                                f"source tree at {package}, not from an installed package")

# ---- MPI: the children that tests start under mpiexec ---------------------------------------------


def find_mpiexec():
    """The mpiexec beside this Python (a venv with Open MPI's wheel), else on PATH, else None."""
    beside = pathlib.Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


# find_spec, not an import: importing mpi4py.MPI would start MPI in the pytest process itself.
needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or find_mpiexec() is None,
    reason="needs mpi4py and mpiexec: pip install 'fastlstm[mpi]'")


def mpiexec(n, *args, timeout=120):
    """Run `python args...` on n ranks with one OpenMP thread each, over TCP on the loopback
    interface as between machines, from CHILD_CWD; fail with its output unless it succeeds."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               # mpiexec refuses to start as root (CI containers) without both of these
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    command = [find_mpiexec(), "-n", str(n), "--oversubscribe", "--bind-to", "none",
               "--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", "lo",
               sys.executable, *map(str, args)]
    done = subprocess.run(command, cwd=CHILD_CWD, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


# Tolerances for comparing the C kernels with the NumPy reference, defined once.
TOLERANCE = {
    np.dtype(np.float32): dict(rtol=2e-4, atol=2e-5),
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-11),
}


def assert_close(actual, expected, dtype=None):
    """assert_allclose with the tolerance of `dtype` (default: expected's dtype)."""
    tol = TOLERANCE[np.dtype(dtype or np.asarray(expected).dtype)]
    np.testing.assert_allclose(actual, expected, **tol)


def assert_all_close(actual, expected, names):
    assert len(actual) == len(expected) == len(names)
    for a, e, name in zip(actual, expected, names):
        assert a.shape == e.shape, name
        assert a.dtype == e.dtype, name
        try:
            assert_close(a, e)
        except AssertionError as exc:
            raise AssertionError(f"{name} differs from the reference") from exc


def central_difference(f, x, index, eps=1e-6):
    """d f() / d x[index] by a central difference of the scalar f() (x changed in place and
    restored)."""
    saved = x[index]
    x[index] = saved + eps
    up = f()
    x[index] = saved - eps
    down = f()
    x[index] = saved
    return (up - down) / (2 * eps)


def numeric_gradient(f, x, eps=1e-6):
    """d f() / d x, every element by central_difference."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        grad[index] = central_difference(f, x, index, eps)
    return grad


@pytest.fixture
def rng():
    return np.random.default_rng(20261122)


def lstm_params(rng, I, H, dtype=np.float64, gates=4, scale=None):
    """W (I, gates*H), U (H, gates*H), b (gates*H,) with PyTorch's uniform +-1/sqrt(H) init."""
    k = scale if scale is not None else 1 / np.sqrt(max(H, 1))
    W = rng.uniform(-k, k, (I, gates * H)).astype(dtype)
    U = rng.uniform(-k, k, (H, gates * H)).astype(dtype)
    b = rng.uniform(-k, k, gates * H).astype(dtype)
    return W, U, b


def make_problem(rng, T, B, I, H, dtype=np.float64, gates=4):
    """Inputs, initial states, weights and upstream gradients of one random problem."""
    def normal(*shape):
        return rng.standard_normal(shape).astype(dtype)

    W, U, b = lstm_params(rng, I, H, dtype, gates)
    return dict(
        xs=normal(T, B, I), h0=normal(B, H), c0=normal(B, H), W=W, U=U, b=b,
        dhs=normal(T, B, H), dh_T=normal(B, H), dc_T=normal(B, H),
    )


def make_gru_problem(rng, T, B, I, H, dtype=np.float64):
    """make_problem for the GRU: W (I, 3H), U (H, 3H) and b (2, 3H), input-side and recurrent-side
    biases; no cell state."""
    p = make_problem(rng, T, B, I, H, dtype, gates=3)
    k = 1 / np.sqrt(max(H, 1))
    p["b"] = rng.uniform(-k, k, (2, 3 * H)).astype(dtype)
    del p["c0"], p["dc_T"]
    return p


@pytest.fixture(params=fastlstm._config.available_simd())
def simd(request):
    """Every SIMD kernel this CPU runs."""
    with fastlstm._config.use_simd(request.param):
        yield request.param


# ---- the three sequence functions alike, for the tests that run them all -------------------------

KINDS = ["lstm", "rnn", "gru"]
SEQUENCE_STATES = {"lstm": ("h0", "c0"), "rnn": ("h0",), "gru": ("h0",)}


def make_sequence_problem(rng, kind, T, B, I, H, dtype=np.float64):
    """make_problem (LSTM, RNN) or make_gru_problem for `kind`, one of KINDS."""
    if kind == "gru":
        return make_gru_problem(rng, T, B, I, H, dtype)
    return make_problem(rng, T, B, I, H, dtype, gates=4 if kind == "lstm" else 1)


def run_sequence(module, kind, p, lengths=None):
    """`kind`'s forward with `lengths`, then its backward, in `module` on the problem p:
    (hs, finals, grads) with finals (h_T,) or (h_T, c_T) and grads (dxs, dh0[, dc0], dW, dU, db)."""
    states = SEQUENCE_STATES[kind]
    hs, *finals, cache = getattr(module, f"{kind}_forward")(
        p["xs"], *[p[s] for s in states], p["W"], p["U"], p["b"], lengths=lengths
    )
    dfinals = [p[f"d{s[0]}_T"] for s in states]  # h0 -> dh_T, c0 -> dc_T
    grads = getattr(module, f"{kind}_backward")(p["dhs"], *dfinals, cache)
    return hs, tuple(finals), tuple(grads)


def past_end(lengths, T):
    """(T, B) whether step t is past row b's end."""
    return np.arange(T)[:, np.newaxis] >= np.asarray(lengths)
