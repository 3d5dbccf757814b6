"""Fixtures of the pytest-benchmark comparisons in this folder (run them with ``pytest bench/``).

They are not part of the default test run (``testpaths = ["tests"]``).
"""
import pytest

import fastlstm
from fastlstm import bench


def pytest_addoption(parser):
    parser.addoption("--bench-dtype", choices=["float32", "float64"], default="float32",
                     help="dtype of the fastlstm benchmarks (default: float32)")


@pytest.fixture(scope="session")
def dtype(request):
    return request.config.getoption("--bench-dtype")


@pytest.fixture(scope="session")
def threads():
    """The threads of fastlstm and torch: fastlstm's default (OMP_NUM_THREADS, else the cores)."""
    return fastlstm.get_num_threads()


@pytest.fixture(scope="session")
def cases(dtype):
    """A function of a shape (T, B, I, H) and a kind giving its problem and the reference's outputs
    per pass.

    Each problem and its outputs are made once for the whole session.
    """
    made = {}

    def case(shape, kind="lstm"):
        if (shape, kind) not in made:
            problem = bench.make_problem(shape, dtype, kind=kind)
            expected = [call() for call in bench.setup_reference(problem, threads=1)]
            made[shape, kind] = problem, dict(zip(bench.PASSES, expected))
        return made[shape, kind]

    return case
