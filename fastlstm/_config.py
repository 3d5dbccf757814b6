"""Threads, SIMD level and build information of the C kernels."""
from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any, Iterator, Optional

from . import _blas, _core
from ._version import __version__

_SIMD_LEVELS = {"portable": 0, "avx2": 1, "avx512": 2}
_state: dict[str, Optional[int]] = {"threads": None}  # set_num_threads(); None means the default
# the defaults from the environment and the CPU, read once on first use
_environment: dict[str, Any] = {}


class _Overrides(threading.local):
    """num_threads() and use_simd() settings of one Python thread (None: not set), and what it
    saw of the cores being shared (see note_stalls)."""

    threads: Optional[int] = None
    simd: Optional[int] = None
    stalled_share: float = 0.0  # a running mean of the share of the passes' time spent stalled
    shared_of: int = 0          # the thread count that the cores turned out too few for, or 0
    shared_threads: int = 0     # the count used instead, until shared_until (time.monotonic())
    shared_until: float = 0.0
    shared_tries: int = 0       # the whiles of fewer threads since a calm second
    noted_until: float = 0.0    # when the last sparse report (a cell's) came


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

    Notes
    -----
    It is the most the kernels use. When a pass's threads stall waiting for one another (a core
    taken by another process, or by NumPy's BLAS threads, which spin for about 0.1 s after each
    product), the Python thread that called it halves its count for a while, then tries all of
    them again: 5 ms or a pass's time at first, twice as long after each try that stalls again,
    up to a tenth of a second or ten passes. ``FASTLSTM_DYNAMIC_THREADS=0`` turns this off.
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


# ---- sharing the cores --------------------------------------------------------------------------
# The thread count is what fastlstm may use. A pass on more threads than the cores that are free
# for it runs slower than on fewer: a thread that the system deschedules (its core taken by NumPy's
# BLAS threads, which spin for 0.1 s after each product, or by another process) stalls the team
# until it runs again, holding its item, keeping the region from ending or the others waiting at a
# barrier. The C passes report the time their threads stalled so (fl_desc.stalled_ns); when that
# becomes a large share of their time, this Python thread halves its thread count for a while,
# then tries all of them again: for 5 ms or a pass's time at first, twice as long after each try
# that stalls again within a second, up to a tenth of a second or ten passes. So a loop that
# shares its cores for good (NumPy's `@` between the passes) spends a few percent of its passes
# trying, and one pass that stalled on a busy moment costs the next pass or two their threads,
# not a tenth of a second. Every kernel call of the Python thread uses the halved count meanwhile
# (fastlstm.matmul's too), but streams, which step on pools of their own. The bits do not depend
# on the thread count. FASTLSTM_DYNAMIC_THREADS=0 turns this off.

# Stalls on this share of the threads' time (a running mean over passes, each pass a quarter)
# halve the thread count: in a NumPy loop whose `@` left the BLAS's threads spinning, two threads
# stalled for 10-25% of a pass's time (T, B, H = 50-25, 8-64, 128-512, the median pass); in the
# same loops on fastlstm.matmul, 0.1-3% (single passes up to 27% on this shared machine).
_STALLED_SHARE = 0.08
_STALLED_WEIGHT = 0.25
# The longest while of the halved count: this, or this many passes like the one that stalled.
_SHARED_SECONDS = 0.1
_SHARED_PASSES = 10
# The first while: this, or one such pass; first again when none began for _CALM_SECONDS after
# the last one ended.
_FIRST_SECONDS = 0.005
_CALM_SECONDS = 1.0
# The clock of the whiles (the tests move it by hand).
_now = time.monotonic


def _read_dynamic() -> bool:
    value = os.environ.get("FASTLSTM_DYNAMIC_THREADS", "").strip().lower()
    return value not in ("0", "false", "no", "off")


def _dynamic() -> bool:
    if "dynamic" not in _environment:
        _environment["dynamic"] = _read_dynamic()
    return bool(_environment["dynamic"])


def kernel_args() -> tuple[int, int]:
    """(num_threads, simd) as the C kernels take them: fewer threads for a while after passes
    stalled (note_stalls). Every kernel call asks, so it is kept cheap."""
    threads, local = get_num_threads(), _local
    if local.shared_of == threads and _dynamic():
        if _now() < local.shared_until:
            return local.shared_threads, simd_level()
        # Try all of them again, the running share where the cut left it: the try renews the cut
        # exactly when it stalls more than the threshold's share, however the passes on fewer
        # threads moved the mean meanwhile.
        local.shared_of, local.stalled_share = 0, _STALLED_SHARE
    return threads, simd_level()


def note_stalls(threads: int, stalled_ns: int, seconds: float, sparse: bool = False) -> None:
    """After a pass of `seconds` on `threads` threads that stalled `stalled_ns` nanoseconds in all
    (the C layer's count): halve this Python thread's count for a while when the stalls' running
    share of the threads' time passes _STALLED_SHARE. A `sparse` caller (a cell, which reports
    only the calls that stalled) counts the time since its last report as passes that did not
    stall, each as long as this one."""
    if threads < 2 or seconds <= 0 or not _dynamic():
        return
    local, configured, now = _local, get_num_threads(), _now()
    if sparse:
        unreported = (now - seconds - local.noted_until) / seconds if local.noted_until else 0.0
        if unreported >= 1:
            local.stalled_share *= (1 - _STALLED_WEIGHT) ** min(unreported, 64.0)
        local.noted_until = now
    share = stalled_ns * 1e-9 / (threads * seconds)
    local.stalled_share += _STALLED_WEIGHT * (share - local.stalled_share)
    if local.stalled_share <= _STALLED_SHARE:
        return
    # Left at the threshold, the running share stays above it after the next pass (the try)
    # exactly when that pass stalls more than the threshold's share.
    local.stalled_share = _STALLED_SHARE
    if now > local.shared_until + _CALM_SECONDS:
        local.shared_tries = 0
    local.shared_tries = min(local.shared_tries + 1, 16)
    longest = max(_SHARED_SECONDS, _SHARED_PASSES * seconds)
    first = max(_FIRST_SECONDS, seconds)
    local.shared_of, local.shared_threads = configured, threads // 2
    local.shared_until = now + min(longest, first * 2.0 ** (local.shared_tries - 1))


def note_cell_stalls(threads: int, stalled_ns: int, seconds: float) -> None:
    """note_stalls for a cell call that stalled (the Cython wall's report)."""
    note_stalls(threads, stalled_ns, seconds, sparse=True)


@contextlib.contextmanager
def fixed_threads() -> Iterator[None]:
    """Keep the thread count as set, without the adjustment (as FASTLSTM_DYNAMIC_THREADS=0),
    inside a ``with`` block: the benchmark's contender that shows what the adjustment gains. For
    the whole process, every Python thread, while it lasts."""
    previous = _dynamic()
    _environment["dynamic"] = False
    try:
        yield
    finally:
        _environment["dynamic"] = previous


def forget_sharing() -> None:
    """Forget what this Python thread saw of the cores being shared: the next pass uses all the
    threads (the benchmark's contenders start so, each as a script of its own would)."""
    local = _local
    local.stalled_share, local.shared_of, local.shared_tries = 0.0, 0, 0
    local.noted_until = 0.0


_core.set_stall_note(note_cell_stalls)


def config() -> dict[str, Any]:
    """The build and run-time configuration as a dict."""
    omp = _core.openmp_version()
    return {
        "version": __version__,
        "openmp": bool(omp),
        "openmp_version": omp or None,
        "openmp_note": _core.openmp_note(),
        "num_threads": get_num_threads(),
        "dynamic_threads": _dynamic(),
        "blas_threads": _blas.describe(),
        "simd": _core.simd_name(simd_level()),
        "simd_available": available_simd(),
        "simd_features": _core.simd_features(simd_level()),
        "compiler": _core.compiler(),
        "cflags": _core.cflags(),
    }


def show_config() -> None:
    """Print fastlstm's version, whether OpenMP is on (and its version), the thread count and
    whose threads NumPy's BLAS runs on, the SIMD level in use, compiler and flags."""
    for key, value in config().items():
        print(f"{key:>16}: {value}")
