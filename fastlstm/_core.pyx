# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The wall between Python and csrc/ (declared in _core.pxd): one function per pass, for every kind
(enum fl_kind) and both dtypes. Each checks that the arrays it is handed fit together (dtype,
layout, shape), fills the C descriptor, allocates the workspace, releases the GIL and calls C.
Callers (fastlstm/_functions.py) convert dtypes and contiguity and allocate the outputs of the
sequence passes. The cells, called once per time step, take a faster road (see their section)."""
import numpy as np

# What setup.py compiled this extension with, as string macros (a build without them says so).
cdef extern from *:
    """
    #ifndef FASTLSTM_CFLAGS
    #define FASTLSTM_CFLAGS "unknown: not built by setup.py"
    #endif
    #ifndef FASTLSTM_OPENMP_NOTE
    #define FASTLSTM_OPENMP_NOTE "unknown: not built by setup.py"
    #endif
    """
    const char *FASTLSTM_CFLAGS
    const char *FASTLSTM_OPENMP_NOTE

cimport numpy as cnp
from cpython.list cimport PyList_GET_ITEM
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc
from cpython.ref cimport PyObject
from libc.stdint cimport uint64_t, uintptr_t
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from posix.unistd cimport getpid

# NumPy's headers bring <complex.h>, whose macro I (the imaginary unit) would replace the field I of
# struct fl_desc in the code below.
cdef extern from *:
    """
    #undef I
    """

cnp.import_array()


# Python's own count, read on the object itself: Cython's Py_REFCNT takes an object, and passing
# one would add the reference it counts.
cdef extern from "Python.h":
    Py_ssize_t Py_REFCNT(PyObject *o)


# ---- build and machine ----------------------------------------------------------------------------

def simd_max():
    """The best SIMD level (0 portable, 1 avx2, 2 avx512) this CPU runs."""
    return fl_simd_max()


def simd_name(int simd):
    return fl_simd_name(simd).decode()


def simd_features(int simd):
    """The instruction sets the code of a SIMD level was compiled for, e.g. "sse2 avx fma avx2"."""
    return fl_simd_features(simd).decode().strip()


def openmp_version():
    """_OPENMP of the build (yyyymm), 0 for a serial build."""
    return fl_openmp_version()


def compiler():
    return fl_compiler().decode()


def cflags():
    """The compiler flags this extension was built with (recorded by setup.py)."""
    return FASTLSTM_CFLAGS.decode()


def openmp_note():
    """Why this build has OpenMP or not: "OpenMP found" or "serial build: ..." (from setup.py)."""
    return FASTLSTM_OPENMP_NOTE.decode()


# ---- NumPy's OpenBLAS on these threads, and fork (csrc/blas_threads.h; used by _blas.py) ----------

def openblas_callback_address():
    """The address of fl_openblas_threads, for OpenBLAS's openblas_set_threads_callback_function."""
    return <uintptr_t>&fl_openblas_threads


def openblas_calls():
    """The OpenBLAS calls whose jobs fl_openblas_threads has run in this process."""
    return fl_openblas_calls()


def install_fork_handlers():
    """Install the C layer's fork handlers (once; later calls do nothing)."""
    cdef int status = fl_fork_handlers_install()
    if status != 0:
        raise OSError(status, "fastlstm: pthread_atfork failed")


def fork_releases_threads():
    """Whether the OpenMP runtime's threads are released before fork (OpenMP 5.0's pause)."""
    return bool(fl_fork_releases_threads())


def gates(int kind):
    """G, the gate blocks per hidden unit of a kind (4, 3, 1)."""
    return fl_gates(kind)


def bias_rows(int kind):
    """The rows of a kind's bias b (2 for the GRU, else 1)."""
    return fl_bias_rows(kind)


# ---- checks and conversions -----------------------------------------------------------------------

cdef _raise_for(int status):
    if status == FL_OK:
        return
    if status == FL_ERR_SIZE:
        raise ValueError("fastlstm: a negative size, a length outside [0, T] or a thread count "
                         "below 1")
    if status == FL_ERR_SIMD:
        raise ValueError("fastlstm: this CPU does not run the requested SIMD level")
    if status == FL_ERR_OVERFLOW:
        raise MemoryError("fastlstm: these sizes need more memory than can be addressed")
    if status == FL_ERR_PACKED:
        raise ValueError("packed: expected weights packed for this call's kind, dtype, SIMD "
                         "level, I, H and batch size, got weights packed for another")
    raise RuntimeError(f"fastlstm: the C layer refused the call (status {status})")


cdef str _dtype_name(int typenum):
    """The name of NumPy's type number (np.dtype takes no type numbers since NumPy 2)."""
    return str(cnp.PyArray_DescrFromType(typenum))


cdef int _dtype_of(int typenum) except -1:
    if typenum == cnp.NPY_FLOAT32:
        return FL_FLOAT32
    if typenum == cnp.NPY_FLOAT64:
        return FL_FLOAT64
    raise TypeError(f"fastlstm: the kernels take float32 or float64, got {_dtype_name(typenum)}")


cdef bint _fits(object a, int typenum, int ndim, ptrdiff_t d0, ptrdiff_t d1, ptrdiff_t d2):
    """Whether `a` is a well-behaved (C-contiguous, aligned, native byte order) ndarray of
    `typenum` and shape (d0, d1, d2)[:ndim]."""
    if type(a) is not cnp.ndarray:
        return False
    cdef cnp.ndarray array = <cnp.ndarray>a
    if (cnp.PyArray_TYPE(array) != typenum or not cnp.PyArray_ISCARRAY_RO(array)
            or not cnp.PyArray_ISNOTSWAPPED(array) or cnp.PyArray_NDIM(array) != ndim):
        return False
    return ((ndim < 1 or cnp.PyArray_DIM(array, 0) == d0)
            and (ndim < 2 or cnp.PyArray_DIM(array, 1) == d1)
            and (ndim < 3 or cnp.PyArray_DIM(array, 2) == d2))


cdef bint _fits_shape(object a, int typenum, tuple shape):
    return _fits(a, typenum, len(shape), shape[0], shape[1] if len(shape) > 1 else 0,
                 shape[2] if len(shape) > 2 else 0)


cdef bint _fits_bias(object b, int typenum, int kind, ptrdiff_t N):
    cdef int rows = fl_bias_rows(kind)
    return _fits(b, typenum, 1, N, 0, 0) if rows == 1 else _fits(b, typenum, 2, rows, N, 0)


cdef void *_data(object a, str name, int typenum, tuple shape, bint needed) except? NULL:
    """The data of `a`, which must fit (_fits); NULL where the pass has no use for it (not
    `needed`) or it is an optional None (`needed` is then None's meaning, zeros: pass False)."""
    if not needed or a is None:
        if needed:
            raise ValueError(f"{name}: expected an array of shape {shape}, got None")
        return NULL
    if not _fits_shape(a, typenum, shape):
        raise ValueError(f"{name}: expected a C-contiguous {_dtype_name(typenum)} array of shape "
                         f"{shape}, got {getattr(a, 'dtype', type(a).__name__)} "
                         f"{getattr(a, 'shape', '')}")
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef void *_optional(object a, str name, int typenum, tuple shape, bint exists) except? NULL:
    """An optional input: NULL for None (zeros), else its data (when the kind has it)."""
    return _data(a, name, typenum, shape, exists and a is not None)


cdef tuple _bias_shape(int kind, ptrdiff_t N):
    cdef int rows = fl_bias_rows(kind)
    if rows == 1:
        return (N,)
    return (rows, N)


cdef fl_desc _desc(int kind, int typenum, ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                   int num_threads, int simd) except *:
    cdef fl_desc d
    if fl_gates(kind) == 0:
        raise ValueError(f"kind: expected one of FL_LSTM, FL_GRU, FL_RNN, got {kind}")
    d.kind, d.dtype = kind, _dtype_of(typenum)
    d.T, d.B, d.I, d.H = T, B, I, H
    d.lengths = NULL
    d.num_threads, d.simd = num_threads, simd
    d.stalled_ns = NULL
    return d


cdef fl_weights _weights(const fl_desc *d, int typenum, object W, object U, object b,
                        bint needs_W_U=True, bint needs_b=True) except *:
    """The weights of a call: W and U required unless they come packed (then None or unread), b
    in the forwards only."""
    cdef fl_weights w
    cdef ptrdiff_t N = fl_gates(d.kind) * d.H
    w.W = _data(W, "W", typenum, (d.I, N), needs_W_U or W is not None)
    w.U = _data(U, "U", typenum, (d.H, N), needs_W_U or U is not None)
    w.b = _data(b, "b", typenum, _bias_shape(d.kind, N), needs_b)
    return w


cdef void *_packed_data(object packed) except? NULL:
    """The data of a buffer pack() made: a 1-d C-contiguous uint8 array."""
    if (type(packed) is not cnp.ndarray or cnp.PyArray_TYPE(<cnp.ndarray>packed) != cnp.NPY_UINT8
            or not cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>packed)
            or cnp.PyArray_NDIM(<cnp.ndarray>packed) != 1):
        raise ValueError(f"packed: expected the uint8 array fastlstm packed the weights into, got "
                         f"{getattr(packed, 'dtype', type(packed).__name__)} "
                         f"{getattr(packed, 'shape', '')}")
    return cnp.PyArray_DATA(<cnp.ndarray>packed)


cdef cnp.ndarray _work_array(size_t nbytes, object workspace_of):
    """A workspace of nbytes: a new array, or workspace_of(nbytes) when the caller gives that
    function, which returns a C-contiguous uint8 array of nbytes."""
    if workspace_of is None:
        return np.empty(nbytes, np.uint8)
    cdef cnp.ndarray work = workspace_of(nbytes)
    if work is None:
        raise ValueError(f"workspace: expected a uint8 array of {nbytes} bytes, got None")
    if (cnp.PyArray_TYPE(work) != cnp.NPY_UINT8 or not cnp.PyArray_ISCARRAY(work)
            or cnp.PyArray_NDIM(work) != 1 or <size_t>work.shape[0] != nbytes):
        raise ValueError(f"workspace: expected a writeable C-contiguous uint8 array of {nbytes} "
                         f"bytes, got {work.dtype} {(<object>work).shape}")
    return work


cdef cnp.ndarray _workspace(int pass_, const fl_desc *d, object workspace_of):
    """The workspace of a pass (enum fl_pass) of d, as _work_array gives it."""
    cdef size_t nbytes
    _raise_for(fl_workspace(pass_, d, &nbytes))
    return _work_array(nbytes, workspace_of)


# ---- the matrix product of the training toolkit -----------------------------------------------------

def matmul(C, A, B, bint trans_a, bint trans_b, int num_threads, int simd, workspace_of=None):
    """C (M, N) := op(A) @ op(B): A (M, K), or (K, M) when trans_a; B (K, N), or (N, K) when
    trans_b; all of C's dtype. `workspace_of`, if given, gives the workspace (see _work_array)."""
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>C)
    cdef int dtype = _dtype_of(typenum)
    cdef ptrdiff_t M = C.shape[0], N = C.shape[1]
    cdef ptrdiff_t K = A.shape[0] if trans_a else A.shape[1]
    cdef void *c = _data(C, "C", typenum, (M, N), True)
    cdef const void *a = _data(A, "A", typenum, (K, M) if trans_a else (M, K), True)
    cdef const void *b = _data(B, "B", typenum, (N, K) if trans_b else (K, N), True)
    cdef size_t nbytes
    _raise_for(fl_matmul_workspace(dtype, M, N, K, num_threads, simd, &nbytes))
    cdef cnp.ndarray work = _work_array(nbytes, workspace_of)
    cdef void *workspace = cnp.PyArray_DATA(work)
    cdef int status
    with nogil:
        status = fl_matmul(dtype, c, a, b, M, N, K, trans_a, trans_b, num_threads, simd, workspace,
                           nbytes)
    _raise_for(status)


# ---- sequences ------------------------------------------------------------------------------------
# Arrays a kind has not (the cell state but for the LSTM, gates for the RNN, hn but for the GRU)
# are ignored and may be None.

def pack(int kind, W, U, ptrdiff_t B, int num_threads, int simd):
    """A new uint8 array (64-byte aligned) holding W (I, N) and U (H, N) packed for the forwards of
    B rows (fl_pack)."""
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>U)
    cdef ptrdiff_t H = U.shape[0], I = W.shape[0]
    cdef fl_desc d = _desc(kind, t, 0, B, I, H, num_threads, simd)
    cdef fl_weights w = _weights(&d, t, W, U, None, True, False)
    cdef size_t nbytes
    _raise_for(fl_pack_bytes(&d, &nbytes))
    cdef cnp.ndarray memory = np.empty(nbytes + 64, np.uint8)
    cdef size_t start = (64 - <size_t>cnp.PyArray_DATA(memory) % 64) % 64
    cdef cnp.ndarray packed = memory[start:start + nbytes]
    cdef void *data = cnp.PyArray_DATA(packed)
    cdef int status
    with nogil:
        status = fl_pack(&d, &w, data, nbytes)
    _raise_for(status)
    return packed


def forward(int kind, hs_ext, cs_ext, gates, hn, h0, c0, xs, W, U, b, lengths, int num_threads,
            int simd, packed=None, workspace_of=None):
    """hs_ext (T+1, B, H), and the kind's cs_ext (T+1, B, H), gates (T, B, N) and hn (T, B, H),
    := the forward of xs (T, B, I) from h0, c0 (B, H) (None: zeros), each row for its own length
    (lengths (B,) np.intp, or None: T). With `packed` (pack()'s array for this call's kind,
    dtype, SIMD level, I, H and B), W and U are not read and may be None. `workspace_of`, if
    given, gives the workspace (see _work_array). Returns the nanoseconds its threads stalled
    (fl_desc.stalled_ns)."""
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>xs)
    cdef ptrdiff_t T = xs.shape[0], B = xs.shape[1], I = xs.shape[2], H = hs_ext.shape[2]
    cdef fl_desc d = _desc(kind, t, T, B, I, H, num_threads, simd)
    cdef ptrdiff_t N = fl_gates(kind) * H
    cdef fl_weights w = _weights(&d, t, W, U, b, packed is None)
    cdef const void *packed_data = NULL if packed is None else _packed_data(packed)
    cdef size_t packed_bytes = 0 if packed is None else packed.shape[0]
    cdef fl_inputs inp
    cdef fl_state out
    inp.x = _data(xs, "xs", t, (T, B, I), True)
    inp.h0 = _optional(h0, "h0", t, (B, H), True)
    inp.c0 = _optional(c0, "c0", t, (B, H), kind == FL_LSTM)
    out.h = _data(hs_ext, "hs_ext", t, (T + 1, B, H), True)
    out.c = _data(cs_ext, "cs_ext", t, (T + 1, B, H), kind == FL_LSTM)
    out.gates = _data(gates, "gates", t, (T, B, N), kind != FL_RNN)
    out.hn = _data(hn, "hn", t, (T, B, H), kind == FL_GRU)
    d.lengths = <const ptrdiff_t *>_optional(lengths, "lengths", cnp.NPY_INTP, (B,), True)
    cdef cnp.ndarray work = _workspace(FL_FORWARD, &d, workspace_of)
    cdef void *workspace = cnp.PyArray_DATA(work)
    cdef size_t nbytes = work.shape[0]
    cdef uint64_t stalled_ns = 0
    d.stalled_ns = &stalled_ns
    cdef int status
    with nogil:
        if packed_data == NULL:
            status = fl_forward(&d, &out, &inp, &w, workspace, nbytes)
        else:
            status = fl_forward_packed(&d, &out, &inp, &w, packed_data, packed_bytes, workspace,
                                       nbytes)
    _raise_for(status)
    return stalled_ns


def backward(int kind, dxs, dh0, dc0, dW, dU, db, hs_ext, cs_ext, gates, hn, dhs, dh_T, dc_T, xs,
             W, U, lengths, int num_threads, int simd, workspace_of=None):
    """dxs (T, B, I), dh0 (B, H), the LSTM's dc0 (B, H), dW, dU, db := the backward, from what
    forward saved, of the gradients dhs (T, B, H), dh_T, dc_T (B, H) (each None: zeros).
    `workspace_of` and the return as forward's."""
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>xs)
    cdef ptrdiff_t T = xs.shape[0], B = xs.shape[1], I = xs.shape[2], H = U.shape[0]
    cdef fl_desc d = _desc(kind, t, T, B, I, H, num_threads, simd)
    cdef ptrdiff_t N = fl_gates(kind) * H
    cdef fl_weights w = _weights(&d, t, W, U, None, True, False)
    cdef fl_inputs inp
    inp.x = _data(xs, "xs", t, (T, B, I), True)
    inp.h0 = inp.c0 = NULL
    cdef fl_state saved
    saved.h = _data(hs_ext, "hs_ext", t, (T + 1, B, H), True)
    saved.c = _data(cs_ext, "cs_ext", t, (T + 1, B, H), kind == FL_LSTM)
    saved.gates = _data(gates, "gates", t, (T, B, N), kind != FL_RNN)
    saved.hn = _data(hn, "hn", t, (T, B, H), kind == FL_GRU)
    cdef fl_output_grads dout
    dout.dhs = _optional(dhs, "dhs", t, (T, B, H), True)
    dout.dh_T = _optional(dh_T, "dh_T", t, (B, H), True)
    dout.dc_T = _optional(dc_T, "dc_T", t, (B, H), kind == FL_LSTM)
    cdef fl_grads out
    out.dx = _data(dxs, "dxs", t, (T, B, I), True)
    out.dh0 = _data(dh0, "dh0", t, (B, H), True)
    out.dc0 = _data(dc0, "dc0", t, (B, H), kind == FL_LSTM)
    out.dW = _data(dW, "dW", t, (I, N), True)
    out.dU = _data(dU, "dU", t, (H, N), True)
    out.db = _data(db, "db", t, _bias_shape(kind, N), True)
    d.lengths = <const ptrdiff_t *>_optional(lengths, "lengths", cnp.NPY_INTP, (B,), True)
    cdef cnp.ndarray work = _workspace(FL_BACKWARD, &d, workspace_of)
    cdef void *workspace = cnp.PyArray_DATA(work)
    cdef size_t nbytes = work.shape[0]
    cdef uint64_t stalled_ns = 0
    d.stalled_ns = &stalled_ns
    cdef int status
    with nogil:
        status = fl_backward(&d, &out, &saved, &dout, &inp, &w, workspace, nbytes)
    _raise_for(status)
    return stalled_ns


# ---- cells ------------------------------------------------------------------------------------------
# A cell is called once per time step from the user's own loop, so its call must cost little: the
# wall is handed the user's arguments as they are, and when they already fit (arrays of one float
# dtype, C-contiguous, of fitting shapes: a loop's usual case) it computes the step in this one call,
# its scratch on the stack when it is small. Otherwise it returns None, and the caller checks and
# converts the arguments (raising the reference's errors) and calls again.

# Bytes of scratch a cell takes from the stack rather than from a new array.
cdef enum:
    STACK_SCRATCH = 16384

# What a cell call that stalled is reported to (fastlstm._config.note_cell_stalls, set there): a
# cell returns its arrays, so it hands its stalls (fl_desc.stalled_ns) on itself, and only when it
# had some, so that a call that had none pays nothing for it.
_note_stalls = None


def only_listed(items, Py_ssize_t k):
    """Whether items[k] (items a list, or of a subclass) has no reference but the list's: no view
    of an array, for one, since a view holds one on the array that owns its memory. (Python's
    sys.getrefcount counts its caller's references too, some of which Python 3.14 no longer
    counts.)"""
    if not isinstance(items, list):
        raise TypeError(f"only_listed: items must be a list, not {type(items).__name__}")
    if not 0 <= k < len(items):
        raise IndexError(f"only_listed: k = {k} outside a list of {len(items)}")
    return Py_REFCNT(PyList_GET_ITEM(items, k)) == 1


def set_stall_note(note):
    """Call note(num_threads, stalled_ns, seconds) after each cell call that stalled."""
    global _note_stalls
    _note_stalls = note


cdef double _seconds() nogil:
    cdef timespec now
    clock_gettime(CLOCK_MONOTONIC, &now)
    return now.tv_sec + 1e-9 * now.tv_nsec


cdef void _note_cell(int num_threads, uint64_t stalled_ns, double start) except *:
    if stalled_ns and _note_stalls is not None:
        _note_stalls(num_threads, stalled_ns, _seconds() - start)


cdef int _cell_typenum(object x, object U):
    """The dtype (NPY_FLOAT32 or NPY_FLOAT64) of x and U when both are 2-d ndarrays of it, else -1."""
    if type(x) is not cnp.ndarray or type(U) is not cnp.ndarray:
        return -1
    if cnp.PyArray_NDIM(<cnp.ndarray>x) != 2 or cnp.PyArray_NDIM(<cnp.ndarray>U) != 2:
        return -1
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>x)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        return -1
    return typenum if cnp.PyArray_TYPE(<cnp.ndarray>U) == typenum else -1


cdef cnp.ndarray _empty(ptrdiff_t rows, ptrdiff_t cols, int typenum):
    """A new C-contiguous array of shape (rows, cols), or (rows,) when cols < 0."""
    cdef cnp.npy_intp dims[2]
    dims[0] = rows
    dims[1] = cols
    return cnp.PyArray_EMPTY(1 if cols < 0 else 2, dims, typenum, 0)


cdef inline ptrdiff_t _dim(object a, int axis):
    return cnp.PyArray_DIM(<cnp.ndarray>a, axis)


cdef inline void *_ptr(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


def cell_forward(int kind, x, h_prev, c_prev, W, U, b, int num_threads, int simd):
    """The outputs of one step: the LSTM's (h, c, a copy of c, gates), the GRU's (h, gates, hn),
    the RNN's h; h, c, hn (B, H), gates (B, N) the activations (LSTM i, f, g, o; GRU r, z, n). None
    when the arguments do not fit yet."""
    cdef int t = _cell_typenum(x, U)
    if t < 0:
        return None
    cdef ptrdiff_t B = _dim(x, 0), I = _dim(x, 1), H = _dim(U, 0)
    cdef ptrdiff_t N = fl_gates(kind) * H
    if not (_fits(x, t, 2, B, I, 0) and _fits(h_prev, t, 2, B, H, 0)
            and (kind != FL_LSTM or _fits(c_prev, t, 2, B, H, 0)) and _fits(W, t, 2, I, N, 0)
            and _fits(U, t, 2, H, N, 0) and _fits_bias(b, t, kind, N)):
        return None
    cdef fl_desc d = _desc(kind, t, 1, B, I, H, num_threads, simd)
    h = _empty(B, H, t)
    c = _empty(B, H, t) if kind == FL_LSTM else None
    gates = _empty(B, N, t) if kind != FL_RNN else None
    hn = _empty(B, H, t) if kind == FL_GRU else None
    cdef fl_weights w
    cdef fl_inputs inp
    cdef fl_state out
    w.W, w.U, w.b = _ptr(W), _ptr(U), _ptr(b)
    inp.x, inp.h0, inp.c0 = _ptr(x), _ptr(h_prev), _ptr(c_prev) if kind == FL_LSTM else NULL
    out.h, out.c, out.gates, out.hn = _ptr(h), _ptr(c), _ptr(gates), _ptr(hn)
    # the scratch on the stack; a step too large for it fails with FL_ERR_WORKSPACE, before
    # anything is written, and is given a new array of the size it needs
    cdef unsigned char stack[STACK_SCRATCH]
    cdef size_t nbytes = STACK_SCRATCH
    cdef void *workspace = stack
    cdef int status
    cdef uint64_t stalled_ns = 0
    d.stalled_ns = &stalled_ns
    cdef double start = _seconds()
    with nogil:
        status = fl_cell_forward(&d, &out, &inp, &w, workspace, nbytes)
    if status == FL_ERR_WORKSPACE:
        _raise_for(fl_workspace(FL_CELL_FORWARD, &d, &nbytes))
        work = np.empty(nbytes, np.uint8)
        workspace = _ptr(work)
        with nogil:
            status = fl_cell_forward(&d, &out, &inp, &w, workspace, nbytes)
    _raise_for(status)
    _note_cell(num_threads, stalled_ns, start)
    if kind == FL_LSTM:
        # c twice: the cache keeps its own, as the caller may change the returned one (a reset)
        return h, c, cnp.PyArray_NewCopy(c, cnp.NPY_CORDER), gates
    if kind == FL_GRU:
        return h, gates, hn
    return h


def cell_backward(int kind, dh, dc, x, h_prev, c_prev, h, c, gates, hn, W, U, int num_threads,
                  int simd):
    """The gradients of one step from what cell_forward used and gave: (dx, dh_prev, dc_prev,
    dW, dU, db) for the LSTM, (dx, dh_prev, dW, dU, db) for the others. None when dh or dc (each
    None or (B, H); the GRU's dh required) do not fit yet; ValueError when the cache does not."""
    cdef int t = _cell_typenum(x, U)
    if t < 0:
        raise ValueError("cache: not the arrays the matching forward saved")
    cdef ptrdiff_t B = _dim(x, 0), I = _dim(x, 1), H = _dim(U, 0)
    cdef ptrdiff_t N = fl_gates(kind) * H
    if not (_fits(x, t, 2, B, I, 0) and _fits(h_prev, t, 2, B, H, 0) and _fits(W, t, 2, I, N, 0)
            and _fits(U, t, 2, H, N, 0) and (kind != FL_LSTM or _fits(c_prev, t, 2, B, H, 0))
            and (kind != FL_LSTM or _fits(c, t, 2, B, H, 0))
            and (kind != FL_RNN or _fits(h, t, 2, B, H, 0))
            and (kind == FL_RNN or _fits(gates, t, 2, B, N, 0))
            and (kind != FL_GRU or _fits(hn, t, 2, B, H, 0))):
        raise ValueError("cache: not the arrays the matching forward saved")
    if not ((dh is None and kind != FL_GRU) or _fits(dh, t, 2, B, H, 0)):
        return None
    if kind == FL_LSTM and not (dc is None or _fits(dc, t, 2, B, H, 0)):
        return None
    cdef fl_desc d = _desc(kind, t, 1, B, I, H, num_threads, simd)
    dx, dh_prev = _empty(B, I, t), _empty(B, H, t)
    dc_prev = _empty(B, H, t) if kind == FL_LSTM else None
    cdef int bias_rows = fl_bias_rows(kind)
    dW, dU = _empty(I, N, t), _empty(H, N, t)
    db = _empty(N, -1, t) if bias_rows == 1 else _empty(bias_rows, N, t)
    cdef fl_weights w
    cdef fl_inputs inp
    cdef fl_state saved
    cdef fl_output_grads dout
    cdef fl_grads out
    w.W, w.U, w.b = _ptr(W), _ptr(U), NULL
    inp.x, inp.h0, inp.c0 = _ptr(x), _ptr(h_prev), _ptr(c_prev) if kind == FL_LSTM else NULL
    saved.h = _ptr(h) if kind == FL_RNN else NULL
    saved.c = _ptr(c) if kind == FL_LSTM else NULL
    saved.gates = _ptr(gates) if kind != FL_RNN else NULL
    saved.hn = _ptr(hn) if kind == FL_GRU else NULL
    dout.dhs, dout.dh_T, dout.dc_T = NULL, _ptr(dh), _ptr(dc) if kind == FL_LSTM else NULL
    out.dx, out.dh0, out.dc0 = _ptr(dx), _ptr(dh_prev), _ptr(dc_prev)
    out.dW, out.dU, out.db = _ptr(dW), _ptr(dU), _ptr(db)
    # the scratch on the stack; a step too large for it fails with FL_ERR_WORKSPACE, before
    # anything is written, and is given a new array of the size it needs
    cdef unsigned char stack[STACK_SCRATCH]
    cdef size_t nbytes = STACK_SCRATCH
    cdef void *workspace = stack
    cdef int status
    cdef uint64_t stalled_ns = 0
    d.stalled_ns = &stalled_ns
    cdef double start = _seconds()
    with nogil:
        status = fl_cell_backward(&d, &out, &saved, &dout, &inp, &w, workspace, nbytes)
    if status == FL_ERR_WORKSPACE:
        _raise_for(fl_workspace(FL_CELL_BACKWARD, &d, &nbytes))
        work = np.empty(nbytes, np.uint8)
        workspace = _ptr(work)
        with nogil:
            status = fl_cell_backward(&d, &out, &saved, &dout, &inp, &w, workspace, nbytes)
    _raise_for(status)
    _note_cell(num_threads, stalled_ns, start)
    if kind == FL_LSTM:
        return dx, dh_prev, dc_prev, dW, dU, db
    return dx, dh_prev, dW, dU, db


# ---- streams --------------------------------------------------------------------------------------
# A stream steps a stack of layers one time step per call, so the call must cost little: the
# arrays (weights, states, workspace) are checked and their addresses taken once, in bind(), and a
# step checks only x. The GIL is released only for steps long enough to repay it.

# Flops of a step from which the GIL is released: below, releasing and taking it back (~0.1 us)
# would cost more than another thread could gain meanwhile.
cdef enum:
    RELEASE_GIL_FLOPS = 262144


cdef class Pool:
    """A pool of C threads for streams (fl_pool): the memory here, the threads fastlstm.stream's.
    Each of threads - 1 Python threads runs serve(k), which returns once stop() is called."""
    cdef void *memory
    cdef fl_pool *pool
    cdef int pid           # the process the pool and its threads are in
    cdef readonly int threads
    cdef readonly bint stopped

    def __cinit__(self, int threads):
        self.memory = PyMem_Malloc(fl_pool_bytes() + 63)
        if self.memory == NULL:
            raise MemoryError()
        self.pool = <fl_pool *>((<uintptr_t>self.memory + 63) & ~(<uintptr_t>63))
        _raise_for(fl_pool_init(self.pool, threads))
        self.threads, self.pid = threads, getpid()

    def __dealloc__(self):
        PyMem_Free(self.memory)

    @property
    def serving(self):
        """The threads inside serve() now: steps pass the pool by until threads - 1 are."""
        return fl_pool_serving(self.pool)

    @property
    def calls(self):
        """How many steps have run on the pool."""
        return fl_pool_calls(self.pool)

    def serve(self, int index):
        """Serve as the pool's thread `index` until stop(); the GIL released throughout."""
        cdef int status
        with nogil:
            status = fl_pool_serve(self.pool, index)
        _raise_for(status)

    def stop(self):
        """Make serve() return, once a step running on the pool is done; steps no longer use it.
        In a process forked from the pool's, whose threads did not come along (and whose copy of
        the pool may show a step that never ends there), it only stops steps from using it."""
        if not self.stopped:
            self.stopped = True
            if getpid() == self.pid:
                with nogil:
                    fl_pool_stop(self.pool)


cdef class Stepper:
    """The C side of fastlstm.Stream: one fl_stream over arrays the Python side owns."""
    cdef fl_stream stream
    cdef fl_stream_layer *layers
    cdef object arrays     # every array the C side reads or writes, kept alive with it
    cdef object top        # the top layer's h (B, H): what step returns
    cdef cnp.ndarray work
    cdef int typenum
    cdef ptrdiff_t I
    cdef bint release_gil
    cdef bint pooled       # whether steps run on a pool (the process's, shared by its threads)
    cdef Pool pool         # that pool, once a step has asked for it, or None

    def __dealloc__(self):
        PyMem_Free(self.layers)

    def bind(self, int kind, list weights, h, c, int num_threads, int simd, bint pooled):
        """Binds the stream to `weights`, one (W, U, b) per layer, and the states h, c (L, B, H)
        (c None but for the LSTM); every array C-contiguous of one float dtype. With `pooled`, its
        steps run on the pool that ``self._pool()`` gives."""
        cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>h)
        cdef ptrdiff_t L = len(weights), B = h.shape[1], H, I
        cdef int l
        if self.layers != NULL:
            raise RuntimeError("stream: already bound")
        self.layers = <fl_stream_layer *>PyMem_Calloc(L, sizeof(fl_stream_layer))
        if self.layers == NULL:
            raise MemoryError()
        self.stream.kind, self.stream.dtype = kind, _dtype_of(t)
        self.stream.B, self.stream.layers, self.stream.layer = B, L, self.layers
        self.stream.num_threads, self.stream.simd = num_threads, simd
        self.stream.pool = NULL
        cdef double flops = 0
        for l in range(L):
            W, U, b = weights[l]
            I, H = W.shape[0], U.shape[0]
            N = fl_gates(kind) * H
            self.layers[l].I, self.layers[l].H = I, H
            self.layers[l].w.W = _data(W, "W", t, (I, N), True)
            self.layers[l].w.U = _data(U, "U", t, (H, N), True)
            self.layers[l].w.b = _data(b, "b", t, _bias_shape(kind, N), True)
            self.layers[l].h = _data(h[l], "h", t, (B, H), True)
            self.layers[l].c = _data(c[l], "c", t, (B, H), True) if kind == FL_LSTM else NULL
            flops += 2.0 * B * (I + H) * N
        self.arrays = (weights, h, c)
        self.top = h[L - 1]
        self.typenum, self.I = t, self.layers[0].I
        self.release_gil = flops >= RELEASE_GIL_FLOPS
        cdef size_t nbytes
        cdef int threads
        _raise_for(fl_stream_workspace(&self.stream, &nbytes))
        _raise_for(fl_stream_threads(&self.stream, &threads))
        self.pooled = pooled and threads > 1
        self.work = np.empty(nbytes, np.uint8)

    def step(self, x):
        """Advance the state by one time step of x and return the top layer's new h.

        Parameters
        ----------
        x : array_like, shape (B, I)
            Cast to the layer's dtype (an x that is not already a C-contiguous array of it goes
            through the Python side's ``_convert``, which checks it).

        Returns
        -------
        h_t : ndarray, shape (B, H)
            A buffer the stream reuses: the next step overwrites it.
        """
        if self.layers == NULL:
            raise RuntimeError("stream: not bound to a layer")
        if not _fits(x, self.typenum, 2, self.stream.B, self.I, 0):
            x = self._convert(x)
            if not _fits(x, self.typenum, 2, self.stream.B, self.I, 0):
                raise ValueError("x: _convert did not give a C-contiguous (B, I) array")
        if self.pooled and (self.pool is None or self.pool.stopped):
            self.pool = self._pool()
            self.stream.pool = self.pool.pool
        cdef const void *data = cnp.PyArray_DATA(<cnp.ndarray>x)
        cdef void *workspace = cnp.PyArray_DATA(self.work)
        cdef size_t nbytes = cnp.PyArray_DIM(self.work, 0)
        cdef int status
        # a copy: another Python thread stepping this stream meanwhile (the GIL released) may
        # replace its pool (one stopped meanwhile), which a step must not see change under it
        cdef fl_stream stream = self.stream
        if self.release_gil:
            with nogil:
                status = fl_stream_step(&stream, data, workspace, nbytes)
        else:
            status = fl_stream_step(&stream, data, workspace, nbytes)
        _raise_for(status)
        return self.top
