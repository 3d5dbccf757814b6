"""NumPy's OpenBLAS on fastlstm's OpenMP threads: one set of threads for both.

NumPy's OpenBLAS keeps worker threads of its own that spin for about 0.1 s after each
multithreaded product, so in a loop of fastlstm passes and NumPy products the two sets of threads
take turns on the cores (csrc/blas_threads.h). At import, fastlstm hands each OpenBLAS library
loaded in the process that runs its own threads (the pthreads build: NumPy's and SciPy's wheels)
the C layer's callback, and from then on their multithreaded calls run their jobs on the calling
thread's OpenMP team, the threads of fastlstm's passes. Results are the same bits: OpenBLAS splits
the work as before, only the threads that run the pieces change.

``FASTLSTM_BLAS_THREADS=own`` leaves OpenBLAS its own threads. Libraries loaded after fastlstm
(SciPy's, when SciPy is imported later) keep theirs. Linux only (the loaded libraries are read
from /proc/self/maps).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
from typing import Iterator

from . import _core

# OpenBLAS's entry points, as the wheels decorate them: NumPy's scipy_openblas64 adds a prefix and
# a suffix, SciPy's scipy_openblas32 the prefix only, a plain build neither.
_AFFIXES = [("scipy_", "64_"), ("scipy_", ""), ("", "")]
_PTHREADS = 1  # openblas_get_parallel(): 0 sequential, 1 pthreads, 2 OpenMP

# FASTLSTM_BLAS_THREADS as read at import, and each library given the callback with its setter
_state: dict[str, object] = {"mode": None, "libraries": [], "setters": []}


def _mode() -> str:
    """"own" when FASTLSTM_BLAS_THREADS asks OpenBLAS to keep its own threads, else "shared"."""
    value = os.environ.get("FASTLSTM_BLAS_THREADS", "").strip().lower()
    return "own" if value in ("own", "0", "false", "no", "off") else "shared"


def _loaded_openblas() -> list[str]:
    """Paths of the shared libraries mapped into this process whose path names OpenBLAS (the
    wheels' libscipy_openblas*.so; Debian's openblas-pthread/libblas.so.3)."""
    try:
        with open("/proc/self/maps") as maps:
            lines = maps.read().splitlines()
    except OSError:  # not Linux
        return []
    paths = []
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) == 6:
            path = fields[5]
            if ("openblas" in path.lower() and ".so" in os.path.basename(path)
                    and path not in paths):
                paths.append(path)
    return paths


def _entry(library: ctypes.CDLL, name: str):
    """OpenBLAS's function `name` in `library`, under any of the wheels' decorations, or None."""
    for prefix, suffix in _AFFIXES:
        function = getattr(library, f"{prefix}{name}{suffix}", None)
        if function is not None:
            return function
    return None


def _callback_setter(path: str):
    """The callback setter of the library at `path` if it runs its own pthreads, else None."""
    try:
        library = ctypes.CDLL(path)
    except OSError:
        return None
    parallel = _entry(library, "openblas_get_parallel")
    setter = _entry(library, "openblas_set_threads_callback_function")
    if parallel is None or setter is None:  # not OpenBLAS, or older than 0.3.27
        return None
    parallel.restype = ctypes.c_int
    if parallel() != _PTHREADS:
        return None
    setter.argtypes = [ctypes.c_void_p]
    setter.restype = None
    return setter


def share_threads() -> None:
    """At import: install the fork handlers, then give the loaded OpenBLAS libraries the callback
    (unless FASTLSTM_BLAS_THREADS=own, or this build has no OpenMP)."""
    _core.install_fork_handlers()
    _state["mode"] = mode = _mode()
    if mode == "own" or _core.openmp_version() == 0:
        return
    address = _core.openblas_callback_address()
    for path in _loaded_openblas():
        setter = _callback_setter(path)
        if setter is not None:
            setter(address)
            _state["libraries"].append(path)
            _state["setters"].append(setter)


@contextlib.contextmanager
def own_threads() -> Iterator[None]:
    """OpenBLAS on its own threads meanwhile, as without fastlstm (for the benchmark: the whole
    process switches, not only this Python thread)."""
    for setter in _state["setters"]:
        setter(None)
    try:
        yield
    finally:
        for setter in _state["setters"]:
            setter(_core.openblas_callback_address())


def describe() -> str:
    """What runs OpenBLAS's threads, for fastlstm.show_config()."""
    libraries = _state["libraries"]
    if libraries:
        names = ", ".join(os.path.basename(path) for path in libraries)
        return f"fastlstm's OpenMP threads ({names}; {_core.openblas_calls()} calls so far)"
    if _state["mode"] == "own":
        return "OpenBLAS's own (FASTLSTM_BLAS_THREADS=own)"
    if _core.openmp_version() == 0:
        return "OpenBLAS's own (a serial build of fastlstm)"
    return "OpenBLAS's own (no loaded OpenBLAS runs pthreads and takes a threads callback)"
