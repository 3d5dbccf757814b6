"""Threads, SIMD level and build information of the C kernels."""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Iterator, Optional

from . import _core
from ._version import __version__

_SIMD_LEVELS = {"portable": 0, "avx2": 1, "avx512": 2}
_state: dict[str, Optional[int]] = {"threads": None}  # set_num_threads(); None means the default
# the defaults from the environment and the CPU, read once on first use
_environment: dict[str, int] = {}


class _Overrides(threading.local):
    """num_threads() and use_simd() settings of one Python thread (None: not set)."""

    threads: Optional[int] = None
    simd: Optional[int] = None


_local = _Overrides()


def _default_num_threads() -> int:
    """OMP_NUM_THREADS (its first entry) if set, else the cores this process may run on (read once,
    as the OpenMP runtime reads its environment once)."""
    if "threads" not in _environment:
        _environment["threads"] = _read_num_threads()
    return _environment["threads"]


def _read_num_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """The number of threads the C kernels use (results are bitwise the same for any number).

    Returns
    -------
    int
        The innermost :func:`num_threads` setting of this Python thread, else the value given to
        :func:`set_num_threads`, else ``OMP_NUM_THREADS``, else the number of usable cores.
    """
    return _local.threads or _state["threads"] or _default_num_threads()


def _check_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"num_threads: expected an int >= 1, got {n!r}")
    return n


def set_num_threads(n: int) -> None:
    """Set the number of threads the C kernels use from now on, for every Python thread.

    Parameters
    ----------
    n : int
        At least 1.
    """
    _state["threads"] = _check_count(n)


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Use `n` threads inside a ``with`` block of this Python thread, then restore the setting.

    Examples
    --------
    >>> import fastlstm
    >>> with fastlstm.num_threads(1):
    ...     fastlstm.get_num_threads()
    1
    """
    previous = _local.threads
    _local.threads = _check_count(n)
    try:
        yield
    finally:
        _local.threads = previous


def simd_level() -> int:
    """The SIMD level in use: a `use_simd` override, else ``FASTLSTM_SIMD``, else the CPU's best.

    ``FASTLSTM_SIMD`` is read once, when the kernels are first used. Naming a level above the CPU's
    best selects the best; an unknown name is a ValueError.
    """
    if _local.simd is not None:
        return _local.simd
    if "simd" not in _environment:
        _environment["simd"] = _read_simd_level()
    return _environment["simd"]


def _read_simd_level() -> int:
    best = _core.simd_max()
    name = os.environ.get("FASTLSTM_SIMD", "").strip().lower()
    if not name:
        return best
    if name not in _SIMD_LEVELS:
        raise ValueError(
            f"FASTLSTM_SIMD: expected one of {list(_SIMD_LEVELS)}, got {name!r}"
        )
    return min(_SIMD_LEVELS[name], best)


def available_simd() -> list[str]:
    """Names of the SIMD levels this CPU runs, slowest first."""
    return [name for name, level in _SIMD_LEVELS.items() if level <= _core.simd_max()]


@contextlib.contextmanager
def use_simd(name: str) -> Iterator[None]:
    """Run the kernels of SIMD level `name` ("portable", "avx2", "avx512") inside a ``with`` block."""
    if name not in available_simd():
        raise ValueError(f"simd: expected one of {available_simd()}, got {name!r}")
    previous = _local.simd
    _local.simd = _SIMD_LEVELS[name]
    try:
        yield
    finally:
        _local.simd = previous


def kernel_args() -> tuple[int, int]:
    """(num_threads, simd) as the C kernels take them. Every kernel call asks, so it is kept cheap."""
    return get_num_threads(), simd_level()


def config() -> dict[str, Any]:
    """The build and run-time configuration as a dict."""
    omp = _core.openmp_version()
    return {
        "version": __version__,
        "openmp": bool(omp),
        "openmp_version": omp or None,
        "openmp_note": _core.openmp_note(),
        "num_threads": get_num_threads(),
        "simd": _core.simd_name(simd_level()),
        "simd_available": available_simd(),
        "simd_features": _core.simd_features(simd_level()),
        "compiler": _core.compiler(),
        "cflags": _core.cflags(),
    }


def show_config() -> None:
    """Print fastlstm's version, whether OpenMP is on (and its version), the SIMD level in use,
    compiler and flags."""
    for key, value in config().items():
        print(f"{key:>16}: {value}")
