"""Build the C kernels and the Cython wall.

OpenMP is probed by compiling a tiny program; without it (or with FASTLSTM_OPENMP=0) the same source
builds serially, with a warning. FASTLSTM_NATIVE=1 adds -march=native (the default build runs on any
x86-64 and picks its SIMD kernels at run time). The C layer's own tests, sanitizer builds included,
are built by csrc/Makefile.
"""
import os
import pathlib
import tempfile
import warnings

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NUMPY_MACROS = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
# -fno-trapping-math: the kernels never look at floating-point exception flags, and without it GCC
# leaves the activation loops scalar (csrc/pointwise.inc). It changes no result.
BASE_FLAGS = ["-O3", "-std=gnu11", "-fno-math-errno", "-fno-trapping-math", "-Wno-unused-function"]


def c_string(text):
    """`text` as a C string literal, for a -D macro (passed to the compiler as one argument)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def openmp_works(compiler):
    """Whether `compiler` compiles and links a program with -fopenmp."""
    with tempfile.TemporaryDirectory() as tmp:
        source = pathlib.Path(tmp, "probe.c")
        source.write_text("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
        try:
            objects = compiler.compile([str(source)], output_dir=tmp, extra_postargs=["-fopenmp"])
            compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=["-fopenmp"])
        except Exception:  # any compile or link error means no usable OpenMP
            return False
    return True


class BuildExt(build_ext):
    def build_extensions(self):
        self.force = True  # the flags below depend on the environment, not only on file times
        flags = list(BASE_FLAGS)
        if os.environ.get("FASTLSTM_NATIVE") == "1":
            flags.append("-march=native")
        if os.environ.get("FASTLSTM_OPENMP") == "0":
            reason = "serial build: FASTLSTM_OPENMP=0"
        elif openmp_works(self.compiler):
            reason = "OpenMP found"
            flags.append("-fopenmp")
        else:
            reason = "serial build: the compiler has no OpenMP"
        if reason.startswith("serial"):
            warnings.warn(f"fastlstm: {reason}; the kernels will run on one thread")
        # The build's own record, compiled into the extension (fastlstm._core.cflags() and
        # openmp_note()): every install path and every rebuild carries the flags it was built with.
        build_info = [("FASTLSTM_CFLAGS", c_string(" ".join(flags))),
                      ("FASTLSTM_OPENMP_NOTE", c_string(reason))]
        for ext in self.extensions:
            ext.extra_compile_args = flags
            ext.extra_link_args = [f for f in flags if f.startswith("-fopenmp")] + ["-pthread"]
            ext.define_macros = NUMPY_MACROS + build_info
        super().build_extensions()


core = Extension(
    "fastlstm._core",
    sources=["fastlstm/_core.pyx", "csrc/fastlstm.c", "csrc/blas_threads.c"],
    include_dirs=["csrc", numpy.get_include()],
    define_macros=NUMPY_MACROS,
    depends=[str(p) for p in pathlib.Path("csrc").glob("*")],
)

setup(ext_modules=[core], cmdclass={"build_ext": BuildExt})
