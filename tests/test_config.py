"""Threads, SIMD selection, build information and the documentation's examples."""
import doctest
import subprocess
import sys
import threading

import pytest

import fastlstm
from conftest import CHILD_CWD
from fastlstm import _config, _functions, reference


def test_num_threads_context_restores():
    before = fastlstm.get_num_threads()
    with fastlstm.num_threads(3):
        assert fastlstm.get_num_threads() == 3
        with fastlstm.num_threads(1):
            assert fastlstm.get_num_threads() == 1
        assert fastlstm.get_num_threads() == 3
    assert fastlstm.get_num_threads() == before


def test_num_threads_context_is_per_python_thread():
    seen = {}

    def other():
        seen["other"] = fastlstm.get_num_threads()

    with fastlstm.num_threads(5):
        worker = threading.Thread(target=other)
        worker.start()
        worker.join()
    assert seen["other"] == fastlstm.get_num_threads() != 5


def test_set_num_threads():
    try:
        fastlstm.set_num_threads(2)
        assert fastlstm.get_num_threads() == 2
    finally:
        _config._state["threads"] = None


def test_default_follows_omp_num_threads():
    code = "import fastlstm; print(fastlstm.get_num_threads())"
    env = {"OMP_NUM_THREADS": "3", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=CHILD_CWD)
    assert out.stdout.strip() == "3", out.stderr


def test_show_config(capsys):
    fastlstm.show_config()
    text = capsys.readouterr().out
    for key in ("openmp", "simd", "compiler", "cflags", "num_threads"):
        assert key in text
    config = _config.config()
    assert config["simd"] in config["simd_available"]
    assert "-march=native" not in config["cflags"] or "FASTLSTM_NATIVE" in config["openmp_note"]


def test_build_info_matches_the_build():
    """The flags and the OpenMP note come from the extension itself, so they describe this build
    (a rebuild with other switches cannot leave an older record behind)."""
    config = _config.config()
    assert config["openmp"] == ("-fopenmp" in config["cflags"].split())
    expected_note = "OpenMP found" if config["openmp"] else "serial build"
    assert config["openmp_note"].startswith(expected_note), config["openmp_note"]
    assert "-O3" in config["cflags"].split()


def test_use_simd_rejects_unknown_level():
    with pytest.raises(ValueError, match="simd: expected one of"):
        with _config.use_simd("sse9"):
            pass


def test_public_api_mirrors_reference():
    for name in reference.__all__:
        assert callable(getattr(fastlstm, name)), name
        assert getattr(fastlstm, name).__doc__, name
    assert set(_functions.__all__) == set(reference.__all__)


@pytest.mark.parametrize("module", [reference, _functions, _config], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    failures, tried = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert failures == 0


def test_docstring_examples_exist():
    assert doctest.testmod(reference).attempted > 0
    assert doctest.testmod(_functions).attempted > 0


def test_kinds_table_matches_the_c_layer():
    """fastlstm._kinds, which the Python side reads, agrees with csrc/fastlstm.h's enum fl_kind,
    fl_gates and fl_bias_rows."""
    from fastlstm import _core, _kinds

    for kind in _kinds.KINDS.values():
        assert kind.code == int(getattr(_core.fl_kind, "FL_" + kind.name.upper()))
        assert (_core.gates(kind.code), _core.bias_rows(kind.code)) == (kind.gates, kind.bias_rows)
    assert _core.gates(len(_kinds.KINDS)) == 0
