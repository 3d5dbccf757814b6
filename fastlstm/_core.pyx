# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The wall between Python and csrc/: checks that the arrays it is handed fit together, allocates the
workspace, releases the GIL and calls C. Callers (fastlstm/_functions.py) convert dtypes and
contiguity and allocate the outputs of the sequence passes; the float and double paths come from one
fused source. The cells, called once per time step, take a faster road (see their section)."""
from libc.stddef cimport ptrdiff_t

import numpy as np

cdef extern from "fastlstm.h" nogil:
    int FL_OK, FL_ERR_SIZE, FL_ERR_SIMD
    int fl_simd_max()
    const char *fl_simd_name(int simd)
    int fl_openmp_version()
    const char *fl_compiler()
    size_t fl_lstm_forward_workspace(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                     int num_threads, int simd, int elsize)
    size_t fl_lstm_backward_workspace(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                      int num_threads, int simd, int elsize)
    size_t fl_gru_forward_workspace(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                    int num_threads, int simd, int elsize)
    size_t fl_gru_backward_workspace(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                     int num_threads, int simd, int elsize)
    size_t fl_rnn_forward_workspace(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                    int num_threads, int simd, int elsize)
    size_t fl_rnn_backward_workspace(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                     int num_threads, int simd, int elsize)
    int fl_lstm_forward_f32(float *hs_ext, float *cs_ext, float *gates, const float *h0,
                            const float *c0, const float *xs, const float *W, const float *U,
                            const float *b, const ptrdiff_t *lengths, ptrdiff_t T, ptrdiff_t B,
                            ptrdiff_t I, ptrdiff_t H, int num_threads, int simd, void *workspace)
    int fl_lstm_forward_f64(double *hs_ext, double *cs_ext, double *gates, const double *h0,
                            const double *c0, const double *xs, const double *W, const double *U,
                            const double *b, const ptrdiff_t *lengths, ptrdiff_t T, ptrdiff_t B,
                            ptrdiff_t I, ptrdiff_t H, int num_threads, int simd, void *workspace)
    int fl_lstm_backward_f32(float *dxs, float *dh0, float *dc0, float *dW, float *dU, float *db,
                             const float *hs_ext, const float *cs_ext, const float *gates,
                             const float *dhs, const float *dh_T, const float *dc_T,
                             const float *xs, const float *W, const float *U,
                             const ptrdiff_t *lengths, ptrdiff_t T, ptrdiff_t B, ptrdiff_t I,
                             ptrdiff_t H, int num_threads, int simd, void *workspace)
    int fl_lstm_backward_f64(double *dxs, double *dh0, double *dc0, double *dW, double *dU,
                             double *db, const double *hs_ext, const double *cs_ext,
                             const double *gates, const double *dhs, const double *dh_T,
                             const double *dc_T, const double *xs, const double *W, const double *U,
                             const ptrdiff_t *lengths, ptrdiff_t T, ptrdiff_t B, ptrdiff_t I,
                             ptrdiff_t H, int num_threads, int simd, void *workspace)
    int fl_gru_forward_f32(float *hs_ext, float *gates, float *hn, const float *h0, const float *xs,
                           const float *W, const float *U, const float *b, const ptrdiff_t *lengths,
                           ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H, int num_threads,
                           int simd, void *workspace)
    int fl_gru_forward_f64(double *hs_ext, double *gates, double *hn, const double *h0,
                           const double *xs, const double *W, const double *U, const double *b,
                           const ptrdiff_t *lengths, ptrdiff_t T, ptrdiff_t B, ptrdiff_t I,
                           ptrdiff_t H, int num_threads, int simd, void *workspace)
    int fl_gru_backward_f32(float *dxs, float *dh0, float *dW, float *dU, float *db,
                            const float *hs_ext, const float *gates, const float *hn,
                            const float *dhs, const float *dh_T, const float *xs, const float *W,
                            const float *U, const ptrdiff_t *lengths, ptrdiff_t T, ptrdiff_t B,
                            ptrdiff_t I, ptrdiff_t H, int num_threads, int simd, void *workspace)
    int fl_gru_backward_f64(double *dxs, double *dh0, double *dW, double *dU, double *db,
                            const double *hs_ext, const double *gates, const double *hn,
                            const double *dhs, const double *dh_T, const double *xs,
                            const double *W, const double *U, const ptrdiff_t *lengths, ptrdiff_t T,
                            ptrdiff_t B, ptrdiff_t I, ptrdiff_t H, int num_threads, int simd,
                            void *workspace)
    int fl_rnn_forward_f32(float *hs_ext, const float *h0, const float *xs, const float *W,
                           const float *U, const float *b, const ptrdiff_t *lengths, ptrdiff_t T,
                           ptrdiff_t B, ptrdiff_t I, ptrdiff_t H, int num_threads, int simd,
                           void *workspace)
    int fl_rnn_forward_f64(double *hs_ext, const double *h0, const double *xs, const double *W,
                           const double *U, const double *b, const ptrdiff_t *lengths, ptrdiff_t T,
                           ptrdiff_t B, ptrdiff_t I, ptrdiff_t H, int num_threads, int simd,
                           void *workspace)
    int fl_rnn_backward_f32(float *dxs, float *dh0, float *dW, float *dU, float *db,
                            const float *hs_ext, const float *dhs, const float *dh_T,
                            const float *xs, const float *W, const float *U,
                            const ptrdiff_t *lengths, ptrdiff_t T, ptrdiff_t B, ptrdiff_t I,
                            ptrdiff_t H, int num_threads, int simd, void *workspace)
    int fl_rnn_backward_f64(double *dxs, double *dh0, double *dW, double *dU, double *db,
                            const double *hs_ext, const double *dhs, const double *dh_T,
                            const double *xs, const double *W, const double *U,
                            const ptrdiff_t *lengths, ptrdiff_t T, ptrdiff_t B, ptrdiff_t I,
                            ptrdiff_t H, int num_threads, int simd, void *workspace)

    int fl_lstm_cell_forward_f32(float *h, float *c, float *gates, const float *x,
                                 const float *h_prev, const float *c_prev, const float *W,
                                 const float *U, const float *b, ptrdiff_t B, ptrdiff_t I,
                                 ptrdiff_t H, int num_threads, int simd)
    int fl_lstm_cell_forward_f64(double *h, double *c, double *gates, const double *x,
                                 const double *h_prev, const double *c_prev, const double *W,
                                 const double *U, const double *b, ptrdiff_t B, ptrdiff_t I,
                                 ptrdiff_t H, int num_threads, int simd)
    int fl_lstm_cell_backward_f32(float *dx, float *dh_prev, float *dc_prev, float *dW, float *dU,
                                  float *db, float *dz, const float *dh, const float *dc,
                                  const float *x, const float *h_prev, const float *c_prev,
                                  const float *c, const float *gates, const float *W,
                                  const float *U, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                  int num_threads, int simd)
    int fl_lstm_cell_backward_f64(double *dx, double *dh_prev, double *dc_prev, double *dW,
                                  double *dU, double *db, double *dz, const double *dh,
                                  const double *dc, const double *x, const double *h_prev,
                                  const double *c_prev, const double *c, const double *gates,
                                  const double *W, const double *U, ptrdiff_t B, ptrdiff_t I,
                                  ptrdiff_t H, int num_threads, int simd)
    int fl_rnn_cell_forward_f32(float *h, const float *x, const float *h_prev, const float *W,
                                const float *U, const float *b, ptrdiff_t B, ptrdiff_t I,
                                ptrdiff_t H, int num_threads, int simd)
    int fl_rnn_cell_forward_f64(double *h, const double *x, const double *h_prev, const double *W,
                                const double *U, const double *b, ptrdiff_t B, ptrdiff_t I,
                                ptrdiff_t H, int num_threads, int simd)
    int fl_rnn_cell_backward_f32(float *dx, float *dh_prev, float *dW, float *dU, float *db,
                                 float *dz, const float *dh, const float *x, const float *h_prev,
                                 const float *h, const float *W, const float *U, ptrdiff_t B,
                                 ptrdiff_t I, ptrdiff_t H, int num_threads, int simd)
    int fl_rnn_cell_backward_f64(double *dx, double *dh_prev, double *dW, double *dU, double *db,
                                 double *dz, const double *dh, const double *x,
                                 const double *h_prev, const double *h, const double *W,
                                 const double *U, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                 int num_threads, int simd)

cdef extern from "fastlstm.h" nogil:
    size_t fl_matmul_workspace(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int num_threads, int simd,
                               int elsize)
    int fl_matmul_f32(float *C, const float *A, const float *B, ptrdiff_t M, ptrdiff_t N,
                      ptrdiff_t K, int trans_a, int trans_b, int num_threads, int simd,
                      void *workspace)
    int fl_matmul_f64(double *C, const double *A, const double *B, ptrdiff_t M, ptrdiff_t N,
                      ptrdiff_t K, int trans_a, int trans_b, int num_threads, int simd,
                      void *workspace)

cdef extern from "fastlstm.h" nogil:
    int fl_gru_cell_forward_f32(float *h, float *gates, float *hn, float *gh, const float *x,
                                const float *h_prev, const float *W, const float *U,
                                const float *b, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                int num_threads, int simd)
    int fl_gru_cell_forward_f64(double *h, double *gates, double *hn, double *gh, const double *x,
                                const double *h_prev, const double *W, const double *U,
                                const double *b, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                int num_threads, int simd)
    int fl_gru_cell_backward_f32(float *dx, float *dh_prev, float *dW, float *dU, float *db,
                                 float *dz, const float *dh, const float *x, const float *h_prev,
                                 const float *gates, const float *hn, const float *W,
                                 const float *U, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                 int num_threads, int simd)
    int fl_gru_cell_backward_f64(double *dx, double *dh_prev, double *dW, double *dU, double *db,
                                 double *dz, const double *dh, const double *x,
                                 const double *h_prev, const double *gates, const double *hn,
                                 const double *W, const double *U, ptrdiff_t B, ptrdiff_t I,
                                 ptrdiff_t H, int num_threads, int simd)

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

# After fastlstm.h: NumPy's headers bring <complex.h>, whose macro I would clash with its argument names.
cimport numpy as cnp

cnp.import_array()

ctypedef fused real:
    float
    double


# ---- build and machine ----------------------------------------------------------------------------

def simd_max():
    """The best SIMD level (0 portable, 1 avx2, 2 avx512) this CPU runs."""
    return fl_simd_max()


def simd_name(int simd):
    return fl_simd_name(simd).decode()


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


# ---- helpers --------------------------------------------------------------------------------------

cdef _expect(str name, tuple shape, tuple expected):
    if shape != expected:
        raise ValueError(f"{name}: expected shape {expected}, got {shape}")


cdef _raise_for(int status):
    if status == FL_ERR_SIZE:
        raise ValueError("fastlstm: a negative size, a length outside [0, T] or a thread count "
                         "below 1")
    if status == FL_ERR_SIMD:
        raise ValueError("fastlstm: this CPU does not run the requested SIMD level")
    if status != FL_OK:
        raise RuntimeError(f"fastlstm: C kernel failed with status {status}")


cdef unsigned char[::1] _workspace(size_t nbytes):
    if nbytes == 0:
        raise MemoryError("fastlstm: workspace size overflows")
    return np.empty(nbytes, dtype=np.uint8)


cdef const ptrdiff_t *_lengths(object lengths, ptrdiff_t B) except? NULL:
    """Data pointer of the lengths (B,), an np.intp array; NULL for None (every row T steps)."""
    cdef const ptrdiff_t[::1] view
    if lengths is None:
        return NULL
    view = lengths
    _expect("lengths", (view.shape[0],), (B,))
    return &view[0]


cdef const real *_optional(object array, tuple shape, str name, real precision) except? NULL:
    """Data pointer of an optional (B, H) input, NULL for None; `precision` picks float or double."""
    cdef const real[:, ::1] view
    if array is None:
        return NULL
    view = array
    _expect(name, (view.shape[0], view.shape[1]), shape)
    return &view[0, 0]


# ---- the matrix product of the training toolkit -----------------------------------------------------

def matmul(real[:, ::1] C, const real[:, ::1] A, const real[:, ::1] B, bint trans_a, bint trans_b,
           int num_threads, int simd):
    """C (M, N) := op(A) @ op(B): A (M, K), or (K, M) when trans_a; B (K, N), or (N, K) when
    trans_b."""
    cdef ptrdiff_t M = C.shape[0], N = C.shape[1]
    cdef ptrdiff_t K = A.shape[0] if trans_a else A.shape[1]
    _expect("A", (A.shape[0], A.shape[1]), (K, M) if trans_a else (M, K))
    _expect("B", (B.shape[0], B.shape[1]), (N, K) if trans_b else (K, N))
    cdef unsigned char[::1] work = _workspace(
        fl_matmul_workspace(M, N, K, num_threads, simd, sizeof(real)))
    cdef int status
    with nogil:
        if real is float:
            status = fl_matmul_f32(&C[0, 0], &A[0, 0], &B[0, 0], M, N, K, trans_a, trans_b,
                                   num_threads, simd, &work[0])
        else:
            status = fl_matmul_f64(&C[0, 0], &A[0, 0], &B[0, 0], M, N, K, trans_a, trans_b,
                                   num_threads, simd, &work[0])
    _raise_for(status)


# ---- LSTM -----------------------------------------------------------------------------------------

def lstm_forward(real[:, :, ::1] hs_ext, real[:, :, ::1] cs_ext, real[:, :, ::1] gates,
                 object h0, object c0, const real[:, :, ::1] xs, const real[:, ::1] W,
                 const real[:, ::1] U, const real[::1] b, object lengths, int num_threads,
                 int simd):
    """hs_ext, cs_ext (T+1, B, H), gates (T, B, 4H) := the LSTM forward of xs (T, B, I), each row
    for its own length (lengths (B,), or None: T)."""
    cdef ptrdiff_t T = xs.shape[0], B = xs.shape[1], I = xs.shape[2], H = U.shape[0]
    _expect("U", (U.shape[0], U.shape[1]), (H, 4 * H))
    _expect("W", (W.shape[0], W.shape[1]), (I, 4 * H))
    _expect("b", (b.shape[0],), (4 * H,))
    _expect("hs_ext", (hs_ext.shape[0], hs_ext.shape[1], hs_ext.shape[2]), (T + 1, B, H))
    _expect("cs_ext", (cs_ext.shape[0], cs_ext.shape[1], cs_ext.shape[2]), (T + 1, B, H))
    _expect("gates", (gates.shape[0], gates.shape[1], gates.shape[2]), (T, B, 4 * H))
    cdef const real *h0p = _optional(h0, (B, H), "h0", <real>0)
    cdef const real *c0p = _optional(c0, (B, H), "c0", <real>0)
    cdef const ptrdiff_t *lengthsp = _lengths(lengths, B)
    cdef unsigned char[::1] work = _workspace(
        fl_lstm_forward_workspace(T, B, I, H, num_threads, simd, sizeof(real)))
    cdef int status
    with nogil:
        if real is float:
            status = fl_lstm_forward_f32(&hs_ext[0, 0, 0], &cs_ext[0, 0, 0], &gates[0, 0, 0], h0p,
                                         c0p, &xs[0, 0, 0], &W[0, 0], &U[0, 0], &b[0], lengthsp, T,
                                         B, I, H, num_threads, simd, &work[0])
        else:
            status = fl_lstm_forward_f64(&hs_ext[0, 0, 0], &cs_ext[0, 0, 0], &gates[0, 0, 0], h0p,
                                         c0p, &xs[0, 0, 0], &W[0, 0], &U[0, 0], &b[0], lengthsp, T,
                                         B, I, H, num_threads, simd, &work[0])
    _raise_for(status)


def lstm_backward(real[:, :, ::1] dxs, real[:, ::1] dh0, real[:, ::1] dc0, real[:, ::1] dW,
                  real[:, ::1] dU, real[::1] db, const real[:, :, ::1] hs_ext,
                  const real[:, :, ::1] cs_ext, const real[:, :, ::1] gates, object dhs,
                  object dh_T, object dc_T, const real[:, :, ::1] xs, const real[:, ::1] W,
                  const real[:, ::1] U, object lengths, int num_threads, int simd):
    """dxs, dh0, dc0, dW, dU, db := the LSTM backward, from what lstm_forward saved."""
    cdef ptrdiff_t T = xs.shape[0], B = xs.shape[1], I = xs.shape[2], H = U.shape[0]
    cdef const real[:, :, ::1] dhs_view
    cdef const real *dhsp = NULL
    _expect("U", (U.shape[0], U.shape[1]), (H, 4 * H))
    _expect("W", (W.shape[0], W.shape[1]), (I, 4 * H))
    _expect("hs_ext", (hs_ext.shape[0], hs_ext.shape[1], hs_ext.shape[2]), (T + 1, B, H))
    _expect("cs_ext", (cs_ext.shape[0], cs_ext.shape[1], cs_ext.shape[2]), (T + 1, B, H))
    _expect("gates", (gates.shape[0], gates.shape[1], gates.shape[2]), (T, B, 4 * H))
    _expect("dxs", (dxs.shape[0], dxs.shape[1], dxs.shape[2]), (T, B, I))
    _expect("dh0", (dh0.shape[0], dh0.shape[1]), (B, H))
    _expect("dc0", (dc0.shape[0], dc0.shape[1]), (B, H))
    _expect("dW", (dW.shape[0], dW.shape[1]), (I, 4 * H))
    _expect("dU", (dU.shape[0], dU.shape[1]), (H, 4 * H))
    _expect("db", (db.shape[0],), (4 * H,))
    if dhs is not None:
        dhs_view = dhs
        _expect("dhs", (dhs_view.shape[0], dhs_view.shape[1], dhs_view.shape[2]), (T, B, H))
        dhsp = &dhs_view[0, 0, 0]
    cdef const real *dh_Tp = _optional(dh_T, (B, H), "dh_T", <real>0)
    cdef const real *dc_Tp = _optional(dc_T, (B, H), "dc_T", <real>0)
    cdef const ptrdiff_t *lengthsp = _lengths(lengths, B)
    cdef unsigned char[::1] work = _workspace(
        fl_lstm_backward_workspace(T, B, I, H, num_threads, simd, sizeof(real)))
    cdef int status
    with nogil:
        if real is float:
            status = fl_lstm_backward_f32(&dxs[0, 0, 0], &dh0[0, 0], &dc0[0, 0], &dW[0, 0],
                                          &dU[0, 0], &db[0], &hs_ext[0, 0, 0], &cs_ext[0, 0, 0],
                                          &gates[0, 0, 0], dhsp, dh_Tp, dc_Tp, &xs[0, 0, 0],
                                          &W[0, 0], &U[0, 0], lengthsp, T, B, I, H, num_threads,
                                          simd, &work[0])
        else:
            status = fl_lstm_backward_f64(&dxs[0, 0, 0], &dh0[0, 0], &dc0[0, 0], &dW[0, 0],
                                          &dU[0, 0], &db[0], &hs_ext[0, 0, 0], &cs_ext[0, 0, 0],
                                          &gates[0, 0, 0], dhsp, dh_Tp, dc_Tp, &xs[0, 0, 0],
                                          &W[0, 0], &U[0, 0], lengthsp, T, B, I, H, num_threads,
                                          simd, &work[0])
    _raise_for(status)


# ---- GRU ------------------------------------------------------------------------------------------

def gru_forward(real[:, :, ::1] hs_ext, real[:, :, ::1] gates, real[:, :, ::1] hn, object h0,
                const real[:, :, ::1] xs, const real[:, ::1] W, const real[:, ::1] U,
                const real[:, ::1] b, object lengths, int num_threads, int simd):
    """hs_ext (T+1, B, H), gates (T, B, 3H), hn (T, B, H) := the GRU forward of xs (T, B, I), each
    row for its own length (lengths (B,), or None: T)."""
    cdef ptrdiff_t T = xs.shape[0], B = xs.shape[1], I = xs.shape[2], H = U.shape[0]
    _expect("U", (U.shape[0], U.shape[1]), (H, 3 * H))
    _expect("W", (W.shape[0], W.shape[1]), (I, 3 * H))
    _expect("b", (b.shape[0], b.shape[1]), (2, 3 * H))
    _expect("hs_ext", (hs_ext.shape[0], hs_ext.shape[1], hs_ext.shape[2]), (T + 1, B, H))
    _expect("gates", (gates.shape[0], gates.shape[1], gates.shape[2]), (T, B, 3 * H))
    _expect("hn", (hn.shape[0], hn.shape[1], hn.shape[2]), (T, B, H))
    cdef const real *h0p = _optional(h0, (B, H), "h0", <real>0)
    cdef const ptrdiff_t *lengthsp = _lengths(lengths, B)
    cdef unsigned char[::1] work = _workspace(
        fl_gru_forward_workspace(T, B, I, H, num_threads, simd, sizeof(real)))
    cdef int status
    with nogil:
        if real is float:
            status = fl_gru_forward_f32(&hs_ext[0, 0, 0], &gates[0, 0, 0], &hn[0, 0, 0], h0p,
                                        &xs[0, 0, 0], &W[0, 0], &U[0, 0], &b[0, 0], lengthsp, T, B,
                                        I, H, num_threads, simd, &work[0])
        else:
            status = fl_gru_forward_f64(&hs_ext[0, 0, 0], &gates[0, 0, 0], &hn[0, 0, 0], h0p,
                                        &xs[0, 0, 0], &W[0, 0], &U[0, 0], &b[0, 0], lengthsp, T, B,
                                        I, H, num_threads, simd, &work[0])
    _raise_for(status)


def gru_backward(real[:, :, ::1] dxs, real[:, ::1] dh0, real[:, ::1] dW, real[:, ::1] dU,
                 real[:, ::1] db, const real[:, :, ::1] hs_ext, const real[:, :, ::1] gates,
                 const real[:, :, ::1] hn, object dhs, object dh_T, const real[:, :, ::1] xs,
                 const real[:, ::1] W, const real[:, ::1] U, object lengths, int num_threads,
                 int simd):
    """dxs, dh0, dW, dU, db := the GRU backward, from what gru_forward saved."""
    cdef ptrdiff_t T = xs.shape[0], B = xs.shape[1], I = xs.shape[2], H = U.shape[0]
    cdef const real[:, :, ::1] dhs_view
    cdef const real *dhsp = NULL
    _expect("U", (U.shape[0], U.shape[1]), (H, 3 * H))
    _expect("W", (W.shape[0], W.shape[1]), (I, 3 * H))
    _expect("hs_ext", (hs_ext.shape[0], hs_ext.shape[1], hs_ext.shape[2]), (T + 1, B, H))
    _expect("gates", (gates.shape[0], gates.shape[1], gates.shape[2]), (T, B, 3 * H))
    _expect("hn", (hn.shape[0], hn.shape[1], hn.shape[2]), (T, B, H))
    _expect("dxs", (dxs.shape[0], dxs.shape[1], dxs.shape[2]), (T, B, I))
    _expect("dh0", (dh0.shape[0], dh0.shape[1]), (B, H))
    _expect("dW", (dW.shape[0], dW.shape[1]), (I, 3 * H))
    _expect("dU", (dU.shape[0], dU.shape[1]), (H, 3 * H))
    _expect("db", (db.shape[0], db.shape[1]), (2, 3 * H))
    if dhs is not None:
        dhs_view = dhs
        _expect("dhs", (dhs_view.shape[0], dhs_view.shape[1], dhs_view.shape[2]), (T, B, H))
        dhsp = &dhs_view[0, 0, 0]
    cdef const real *dh_Tp = _optional(dh_T, (B, H), "dh_T", <real>0)
    cdef const ptrdiff_t *lengthsp = _lengths(lengths, B)
    cdef unsigned char[::1] work = _workspace(
        fl_gru_backward_workspace(T, B, I, H, num_threads, simd, sizeof(real)))
    cdef int status
    with nogil:
        if real is float:
            status = fl_gru_backward_f32(&dxs[0, 0, 0], &dh0[0, 0], &dW[0, 0], &dU[0, 0], &db[0, 0],
                                         &hs_ext[0, 0, 0], &gates[0, 0, 0], &hn[0, 0, 0], dhsp,
                                         dh_Tp, &xs[0, 0, 0], &W[0, 0], &U[0, 0], lengthsp, T, B, I,
                                         H, num_threads, simd, &work[0])
        else:
            status = fl_gru_backward_f64(&dxs[0, 0, 0], &dh0[0, 0], &dW[0, 0], &dU[0, 0], &db[0, 0],
                                         &hs_ext[0, 0, 0], &gates[0, 0, 0], &hn[0, 0, 0], dhsp,
                                         dh_Tp, &xs[0, 0, 0], &W[0, 0], &U[0, 0], lengthsp, T, B, I,
                                         H, num_threads, simd, &work[0])
    _raise_for(status)


# ---- RNN ------------------------------------------------------------------------------------------

def rnn_forward(real[:, :, ::1] hs_ext, object h0, const real[:, :, ::1] xs,
                const real[:, ::1] W, const real[:, ::1] U, const real[::1] b, object lengths,
                int num_threads, int simd):
    """hs_ext (T+1, B, H) := the RNN forward of xs (T, B, I), each row for its own length
    (lengths (B,), or None: T)."""
    cdef ptrdiff_t T = xs.shape[0], B = xs.shape[1], I = xs.shape[2], H = U.shape[0]
    _expect("U", (U.shape[0], U.shape[1]), (H, H))
    _expect("W", (W.shape[0], W.shape[1]), (I, H))
    _expect("b", (b.shape[0],), (H,))
    _expect("hs_ext", (hs_ext.shape[0], hs_ext.shape[1], hs_ext.shape[2]), (T + 1, B, H))
    cdef const real *h0p = _optional(h0, (B, H), "h0", <real>0)
    cdef const ptrdiff_t *lengthsp = _lengths(lengths, B)
    cdef unsigned char[::1] work = _workspace(
        fl_rnn_forward_workspace(T, B, I, H, num_threads, simd, sizeof(real)))
    cdef int status
    with nogil:
        if real is float:
            status = fl_rnn_forward_f32(&hs_ext[0, 0, 0], h0p, &xs[0, 0, 0], &W[0, 0], &U[0, 0],
                                        &b[0], lengthsp, T, B, I, H, num_threads, simd, &work[0])
        else:
            status = fl_rnn_forward_f64(&hs_ext[0, 0, 0], h0p, &xs[0, 0, 0], &W[0, 0], &U[0, 0],
                                        &b[0], lengthsp, T, B, I, H, num_threads, simd, &work[0])
    _raise_for(status)


def rnn_backward(real[:, :, ::1] dxs, real[:, ::1] dh0, real[:, ::1] dW, real[:, ::1] dU,
                 real[::1] db, const real[:, :, ::1] hs_ext, object dhs, object dh_T,
                 const real[:, :, ::1] xs, const real[:, ::1] W, const real[:, ::1] U,
                 object lengths, int num_threads, int simd):
    """dxs, dh0, dW, dU, db := the RNN backward, from what rnn_forward saved."""
    cdef ptrdiff_t T = xs.shape[0], B = xs.shape[1], I = xs.shape[2], H = U.shape[0]
    cdef const real[:, :, ::1] dhs_view
    cdef const real *dhsp = NULL
    _expect("U", (U.shape[0], U.shape[1]), (H, H))
    _expect("W", (W.shape[0], W.shape[1]), (I, H))
    _expect("hs_ext", (hs_ext.shape[0], hs_ext.shape[1], hs_ext.shape[2]), (T + 1, B, H))
    _expect("dxs", (dxs.shape[0], dxs.shape[1], dxs.shape[2]), (T, B, I))
    _expect("dh0", (dh0.shape[0], dh0.shape[1]), (B, H))
    _expect("dW", (dW.shape[0], dW.shape[1]), (I, H))
    _expect("dU", (dU.shape[0], dU.shape[1]), (H, H))
    _expect("db", (db.shape[0],), (H,))
    if dhs is not None:
        dhs_view = dhs
        _expect("dhs", (dhs_view.shape[0], dhs_view.shape[1], dhs_view.shape[2]), (T, B, H))
        dhsp = &dhs_view[0, 0, 0]
    cdef const real *dh_Tp = _optional(dh_T, (B, H), "dh_T", <real>0)
    cdef const ptrdiff_t *lengthsp = _lengths(lengths, B)
    cdef unsigned char[::1] work = _workspace(
        fl_rnn_backward_workspace(T, B, I, H, num_threads, simd, sizeof(real)))
    cdef int status
    with nogil:
        if real is float:
            status = fl_rnn_backward_f32(&dxs[0, 0, 0], &dh0[0, 0], &dW[0, 0], &dU[0, 0], &db[0],
                                         &hs_ext[0, 0, 0], dhsp, dh_Tp, &xs[0, 0, 0], &W[0, 0],
                                         &U[0, 0], lengthsp, T, B, I, H, num_threads, simd,
                                         &work[0])
        else:
            status = fl_rnn_backward_f64(&dxs[0, 0, 0], &dh0[0, 0], &dW[0, 0], &dU[0, 0], &db[0],
                                         &hs_ext[0, 0, 0], dhsp, dh_Tp, &xs[0, 0, 0], &W[0, 0],
                                         &U[0, 0], lengthsp, T, B, I, H, num_threads, simd,
                                         &work[0])
    _raise_for(status)


# ---- cells ----------------------------------------------------------------------------------------
# A user's step loop calls these once per step, so what counts is the cost of a call. They check and
# allocate through NumPy's C API (tens of nanoseconds an array), not typed memoryviews (about a
# microsecond for each of a cell's nine arrays). They take the user's arguments as given and return
# None, touching nothing, unless every array already fits: an ndarray, aligned, C-contiguous, native
# byte order, all of one float dtype, shapes that match. The caller then validates and converts them
# (raising the reference's errors) and calls again.

cdef int _float_type(object a):
    """NPY_FLOAT32 or NPY_FLOAT64 for a 2-d ndarray of that dtype, else -1."""
    if type(a) is not cnp.ndarray or cnp.PyArray_NDIM(<cnp.ndarray>a) != 2:
        return -1
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>a)
    return typenum if typenum == cnp.NPY_FLOAT32 or typenum == cnp.NPY_FLOAT64 else -1


cdef int _cell_sizes(object x, object U, ptrdiff_t *B, ptrdiff_t *I, ptrdiff_t *H):
    """The dtype (NPY_FLOAT32 or NPY_FLOAT64) of x and U when both are 2-d arrays of it and x is
    C-contiguous (as _fits checks), else -1; sets B, I to x's shape and H to U's rows."""
    cdef int typenum = _float_type(x)
    if typenum < 0 or _float_type(U) != typenum:
        return -1
    B[0], I[0] = cnp.PyArray_DIM(<cnp.ndarray>x, 0), cnp.PyArray_DIM(<cnp.ndarray>x, 1)
    H[0] = cnp.PyArray_DIM(<cnp.ndarray>U, 0)
    return typenum if _fits(x, typenum, B[0], I[0]) else -1


cdef bint _fits(object a, int typenum, ptrdiff_t rows, ptrdiff_t cols):
    """Whether `a` is a well-behaved C-contiguous ndarray of `typenum` and shape (rows, cols), or
    (rows,) when cols < 0."""
    if type(a) is not cnp.ndarray:
        return False
    cdef cnp.ndarray array = <cnp.ndarray>a
    if (cnp.PyArray_TYPE(array) != typenum or not cnp.PyArray_ISCARRAY_RO(array)
            or not cnp.PyArray_ISNOTSWAPPED(array)):
        return False
    if cols < 0:
        return cnp.PyArray_NDIM(array) == 1 and cnp.PyArray_DIM(array, 0) == rows
    return (cnp.PyArray_NDIM(array) == 2 and cnp.PyArray_DIM(array, 0) == rows
            and cnp.PyArray_DIM(array, 1) == cols)


cdef _need(bint fits, str name):
    if not fits:
        raise ValueError(f"{name}: not the array the matching forward saved")


cdef inline void *_data(object a):
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline const void *_data_or_null(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef cnp.ndarray _empty(ptrdiff_t rows, ptrdiff_t cols, int typenum):
    """A new C-contiguous array of shape (rows, cols), or (rows,) when cols < 0."""
    cdef cnp.npy_intp dims[2]
    dims[0] = rows
    dims[1] = cols
    return cnp.PyArray_EMPTY(1 if cols < 0 else 2, dims, typenum, 0)


def lstm_cell_forward(x, h_prev, c_prev, W, U, b, int num_threads, int simd):
    """(h, c, a copy of c, gates) of one LSTM step, h and c (B, H), gates (B, 4H) the activations
    i, f, g, o; None when the arguments do not fit yet."""
    cdef ptrdiff_t B, I, H
    cdef int t = _cell_sizes(x, U, &B, &I, &H)
    if t < 0:
        return None
    if not (_fits(h_prev, t, B, H) and _fits(c_prev, t, B, H) and _fits(W, t, I, 4 * H)
            and _fits(U, t, H, 4 * H) and _fits(b, t, 4 * H, -1)):
        return None
    h, c, gates = _empty(B, H, t), _empty(B, H, t), _empty(B, 4 * H, t)
    cdef void *ph = _data(h)
    cdef void *pc = _data(c)
    cdef void *pg = _data(gates)
    cdef const void *px = _data(x)
    cdef const void *ph_prev = _data(h_prev)
    cdef const void *pc_prev = _data(c_prev)
    cdef const void *pW = _data(W)
    cdef const void *pU = _data(U)
    cdef const void *pb = _data(b)
    cdef int status
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = fl_lstm_cell_forward_f32(<float *>ph, <float *>pc, <float *>pg, <const float *>px,
                                              <const float *>ph_prev, <const float *>pc_prev,
                                              <const float *>pW, <const float *>pU,
                                              <const float *>pb, B, I, H, num_threads, simd)
        else:
            status = fl_lstm_cell_forward_f64(<double *>ph, <double *>pc, <double *>pg,
                                              <const double *>px, <const double *>ph_prev,
                                              <const double *>pc_prev, <const double *>pW,
                                              <const double *>pU, <const double *>pb, B, I, H,
                                              num_threads, simd)
    _raise_for(status)
    # c twice: the cache keeps its own, as the caller may change the returned one (say, a reset)
    return h, c, cnp.PyArray_NewCopy(c, cnp.NPY_CORDER), gates


def lstm_cell_backward(dh, dc, x, h_prev, c_prev, c, gates, W, U, int num_threads, int simd):
    """(dx, dh_prev, dc_prev, dW, dU, db) of one LSTM step from what lstm_cell_forward used and
    gave; None when dh or dc (each None or (B, H)) do not fit yet."""
    cdef ptrdiff_t B, I, H
    cdef int t = _cell_sizes(x, U, &B, &I, &H)
    _need(t >= 0, "cache")
    _need(_fits(h_prev, t, B, H) and _fits(c_prev, t, B, H) and _fits(c, t, B, H)
          and _fits(gates, t, B, 4 * H) and _fits(W, t, I, 4 * H) and _fits(U, t, H, 4 * H), "cache")
    if not ((dh is None or _fits(dh, t, B, H)) and (dc is None or _fits(dc, t, B, H))):
        return None
    dx, dh_prev, dc_prev = _empty(B, I, t), _empty(B, H, t), _empty(B, H, t)
    dW, dU, db, dz = _empty(I, 4 * H, t), _empty(H, 4 * H, t), _empty(4 * H, -1, t), _empty(B, 4 * H, t)
    cdef void *pdx = _data(dx)
    cdef void *pdh_prev = _data(dh_prev)
    cdef void *pdc_prev = _data(dc_prev)
    cdef void *pdW = _data(dW)
    cdef void *pdU = _data(dU)
    cdef void *pdb = _data(db)
    cdef void *pdz = _data(dz)
    cdef const void *pdh = _data_or_null(dh)
    cdef const void *pdc = _data_or_null(dc)
    cdef const void *px = _data(x)
    cdef const void *ph_prev = _data(h_prev)
    cdef const void *pc_prev = _data(c_prev)
    cdef const void *pc = _data(c)
    cdef const void *pg = _data(gates)
    cdef const void *pW = _data(W)
    cdef const void *pU = _data(U)
    cdef int status
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = fl_lstm_cell_backward_f32(
                <float *>pdx, <float *>pdh_prev, <float *>pdc_prev, <float *>pdW, <float *>pdU,
                <float *>pdb, <float *>pdz, <const float *>pdh, <const float *>pdc,
                <const float *>px, <const float *>ph_prev, <const float *>pc_prev,
                <const float *>pc, <const float *>pg, <const float *>pW, <const float *>pU, B, I, H,
                num_threads, simd)
        else:
            status = fl_lstm_cell_backward_f64(
                <double *>pdx, <double *>pdh_prev, <double *>pdc_prev, <double *>pdW, <double *>pdU,
                <double *>pdb, <double *>pdz, <const double *>pdh, <const double *>pdc,
                <const double *>px, <const double *>ph_prev, <const double *>pc_prev,
                <const double *>pc, <const double *>pg, <const double *>pW, <const double *>pU, B, I,
                H, num_threads, simd)
    _raise_for(status)
    return dx, dh_prev, dc_prev, dW, dU, db


def rnn_cell_forward(x, h_prev, W, U, b, int num_threads, int simd):
    """h (B, H) of one RNN step; None when the arguments do not fit yet."""
    cdef ptrdiff_t B, I, H
    cdef int t = _cell_sizes(x, U, &B, &I, &H)
    if t < 0:
        return None
    if not (_fits(h_prev, t, B, H) and _fits(W, t, I, H) and _fits(U, t, H, H)
            and _fits(b, t, H, -1)):
        return None
    h = _empty(B, H, t)
    cdef void *ph = _data(h)
    cdef const void *px = _data(x)
    cdef const void *ph_prev = _data(h_prev)
    cdef const void *pW = _data(W)
    cdef const void *pU = _data(U)
    cdef const void *pb = _data(b)
    cdef int status
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = fl_rnn_cell_forward_f32(<float *>ph, <const float *>px, <const float *>ph_prev,
                                             <const float *>pW, <const float *>pU, <const float *>pb,
                                             B, I, H, num_threads, simd)
        else:
            status = fl_rnn_cell_forward_f64(<double *>ph, <const double *>px,
                                             <const double *>ph_prev, <const double *>pW,
                                             <const double *>pU, <const double *>pb, B, I, H,
                                             num_threads, simd)
    _raise_for(status)
    return h


def rnn_cell_backward(dh, x, h_prev, h, W, U, int num_threads, int simd):
    """(dx, dh_prev, dW, dU, db) of one RNN step from what rnn_cell_forward used and gave; None
    when dh (None or (B, H)) does not fit yet."""
    cdef ptrdiff_t B, I, H
    cdef int t = _cell_sizes(x, U, &B, &I, &H)
    _need(t >= 0, "cache")
    _need(_fits(h_prev, t, B, H) and _fits(h, t, B, H) and _fits(W, t, I, H)
          and _fits(U, t, H, H), "cache")
    if not (dh is None or _fits(dh, t, B, H)):
        return None
    dx, dh_prev, dz = _empty(B, I, t), _empty(B, H, t), _empty(B, H, t)
    dW, dU, db = _empty(I, H, t), _empty(H, H, t), _empty(H, -1, t)
    cdef void *pdx = _data(dx)
    cdef void *pdh_prev = _data(dh_prev)
    cdef void *pdW = _data(dW)
    cdef void *pdU = _data(dU)
    cdef void *pdb = _data(db)
    cdef void *pdz = _data(dz)
    cdef const void *pdh = _data_or_null(dh)
    cdef const void *px = _data(x)
    cdef const void *ph_prev = _data(h_prev)
    cdef const void *ph = _data(h)
    cdef const void *pW = _data(W)
    cdef const void *pU = _data(U)
    cdef int status
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = fl_rnn_cell_backward_f32(
                <float *>pdx, <float *>pdh_prev, <float *>pdW, <float *>pdU, <float *>pdb,
                <float *>pdz, <const float *>pdh, <const float *>px, <const float *>ph_prev,
                <const float *>ph, <const float *>pW, <const float *>pU, B, I, H, num_threads, simd)
        else:
            status = fl_rnn_cell_backward_f64(
                <double *>pdx, <double *>pdh_prev, <double *>pdW, <double *>pdU, <double *>pdb,
                <double *>pdz, <const double *>pdh, <const double *>px, <const double *>ph_prev,
                <const double *>ph, <const double *>pW, <const double *>pU, B, I, H, num_threads,
                simd)
    _raise_for(status)
    return dx, dh_prev, dW, dU, db


def gru_cell_forward(x, h_prev, W, U, b, int num_threads, int simd):
    """(h, gates, hn) of one GRU step: h and hn (B, H), gates (B, 3H) the activations r, z, n, hn
    the recurrent part of n; None when the arguments do not fit yet."""
    cdef ptrdiff_t B, I, H
    cdef int t = _cell_sizes(x, U, &B, &I, &H)
    if t < 0:
        return None
    if not (_fits(h_prev, t, B, H) and _fits(W, t, I, 3 * H) and _fits(U, t, H, 3 * H)
            and _fits(b, t, 2, 3 * H)):
        return None
    h, gates, hn, gh = _empty(B, H, t), _empty(B, 3 * H, t), _empty(B, H, t), _empty(B, 3 * H, t)
    cdef void *ph = _data(h)
    cdef void *pg = _data(gates)
    cdef void *phn = _data(hn)
    cdef void *pgh = _data(gh)
    cdef const void *px = _data(x)
    cdef const void *ph_prev = _data(h_prev)
    cdef const void *pW = _data(W)
    cdef const void *pU = _data(U)
    cdef const void *pb = _data(b)
    cdef int status
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = fl_gru_cell_forward_f32(<float *>ph, <float *>pg, <float *>phn, <float *>pgh,
                                             <const float *>px, <const float *>ph_prev,
                                             <const float *>pW, <const float *>pU,
                                             <const float *>pb, B, I, H, num_threads, simd)
        else:
            status = fl_gru_cell_forward_f64(<double *>ph, <double *>pg, <double *>phn,
                                             <double *>pgh, <const double *>px,
                                             <const double *>ph_prev, <const double *>pW,
                                             <const double *>pU, <const double *>pb, B, I, H,
                                             num_threads, simd)
    _raise_for(status)
    return h, gates, hn


def gru_cell_backward(dh, x, h_prev, gates, hn, W, U, int num_threads, int simd):
    """(dx, dh_prev, dW, dU, db) of one GRU step from what gru_cell_forward used and gave; None
    when dh ((B, H), required) does not fit yet."""
    cdef ptrdiff_t B, I, H
    cdef int t = _cell_sizes(x, U, &B, &I, &H)
    _need(t >= 0, "cache")
    _need(_fits(h_prev, t, B, H) and _fits(gates, t, B, 3 * H) and _fits(hn, t, B, H)
          and _fits(W, t, I, 3 * H) and _fits(U, t, H, 3 * H), "cache")
    if not _fits(dh, t, B, H):
        return None
    dx, dh_prev, dz = _empty(B, I, t), _empty(B, H, t), _empty(2 * B, 3 * H, t)
    dW, dU, db = _empty(I, 3 * H, t), _empty(H, 3 * H, t), _empty(2, 3 * H, t)
    cdef void *pdx = _data(dx)
    cdef void *pdh_prev = _data(dh_prev)
    cdef void *pdW = _data(dW)
    cdef void *pdU = _data(dU)
    cdef void *pdb = _data(db)
    cdef void *pdz = _data(dz)
    cdef const void *pdh = _data(dh)
    cdef const void *px = _data(x)
    cdef const void *ph_prev = _data(h_prev)
    cdef const void *pg = _data(gates)
    cdef const void *phn = _data(hn)
    cdef const void *pW = _data(W)
    cdef const void *pU = _data(U)
    cdef int status
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = fl_gru_cell_backward_f32(
                <float *>pdx, <float *>pdh_prev, <float *>pdW, <float *>pdU, <float *>pdb,
                <float *>pdz, <const float *>pdh, <const float *>px, <const float *>ph_prev,
                <const float *>pg, <const float *>phn, <const float *>pW, <const float *>pU, B, I,
                H, num_threads, simd)
        else:
            status = fl_gru_cell_backward_f64(
                <double *>pdx, <double *>pdh_prev, <double *>pdW, <double *>pdU, <double *>pdb,
                <double *>pdz, <const double *>pdh, <const double *>px, <const double *>ph_prev,
                <const double *>pg, <const double *>phn, <const double *>pW, <const double *>pU,
                B, I, H, num_threads, simd)
    _raise_for(status)
    return dx, dh_prev, dW, dU, db
