# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The wall between Python and csrc/: checks that the arrays it is handed fit together, allocates the
workspace, releases the GIL and calls C. Callers (fastlstm/_functions.py) convert dtypes and
contiguity and allocate the outputs; the float and double paths come from one fused source."""
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
                            const float *b, ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                            int num_threads, int simd, void *workspace)
    int fl_lstm_forward_f64(double *hs_ext, double *cs_ext, double *gates, const double *h0,
                            const double *c0, const double *xs, const double *W, const double *U,
                            const double *b, ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                            int num_threads, int simd, void *workspace)
    int fl_lstm_backward_f32(float *dxs, float *dh0, float *dc0, float *dW, float *dU, float *db,
                             const float *hs_ext, const float *cs_ext, const float *gates,
                             const float *dhs, const float *dh_T, const float *dc_T,
                             const float *xs, const float *W, const float *U, ptrdiff_t T,
                             ptrdiff_t B, ptrdiff_t I, ptrdiff_t H, int num_threads, int simd,
                             void *workspace)
    int fl_lstm_backward_f64(double *dxs, double *dh0, double *dc0, double *dW, double *dU,
                             double *db, const double *hs_ext, const double *cs_ext,
                             const double *gates, const double *dhs, const double *dh_T,
                             const double *dc_T, const double *xs, const double *W,
                             const double *U, ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                             int num_threads, int simd, void *workspace)
    int fl_gru_forward_f32(float *hs_ext, float *gates, float *hn, const float *h0,
                           const float *xs, const float *W, const float *U, const float *b,
                           ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H, int num_threads,
                           int simd, void *workspace)
    int fl_gru_forward_f64(double *hs_ext, double *gates, double *hn, const double *h0,
                           const double *xs, const double *W, const double *U, const double *b,
                           ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H, int num_threads,
                           int simd, void *workspace)
    int fl_gru_backward_f32(float *dxs, float *dh0, float *dW, float *dU, float *db,
                            const float *hs_ext, const float *gates, const float *hn,
                            const float *dhs, const float *dh_T, const float *xs, const float *W,
                            const float *U, ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                            int num_threads, int simd, void *workspace)
    int fl_gru_backward_f64(double *dxs, double *dh0, double *dW, double *dU, double *db,
                            const double *hs_ext, const double *gates, const double *hn,
                            const double *dhs, const double *dh_T, const double *xs,
                            const double *W, const double *U, ptrdiff_t T, ptrdiff_t B,
                            ptrdiff_t I, ptrdiff_t H, int num_threads, int simd, void *workspace)
    int fl_rnn_forward_f32(float *hs_ext, const float *h0, const float *xs, const float *W,
                           const float *U, const float *b, ptrdiff_t T, ptrdiff_t B, ptrdiff_t I,
                           ptrdiff_t H, int num_threads, int simd, void *workspace)
    int fl_rnn_forward_f64(double *hs_ext, const double *h0, const double *xs, const double *W,
                           const double *U, const double *b, ptrdiff_t T, ptrdiff_t B,
                           ptrdiff_t I, ptrdiff_t H, int num_threads, int simd, void *workspace)
    int fl_rnn_backward_f32(float *dxs, float *dh0, float *dW, float *dU, float *db,
                            const float *hs_ext, const float *dhs, const float *dh_T,
                            const float *xs, const float *W, const float *U, ptrdiff_t T,
                            ptrdiff_t B, ptrdiff_t I, ptrdiff_t H, int num_threads, int simd,
                            void *workspace)
    int fl_rnn_backward_f64(double *dxs, double *dh0, double *dW, double *dU, double *db,
                            const double *hs_ext, const double *dhs, const double *dh_T,
                            const double *xs, const double *W, const double *U, ptrdiff_t T,
                            ptrdiff_t B, ptrdiff_t I, ptrdiff_t H, int num_threads, int simd,
                            void *workspace)

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


# ---- helpers --------------------------------------------------------------------------------------

cdef _expect(str name, tuple shape, tuple expected):
    if shape != expected:
        raise ValueError(f"{name}: expected shape {expected}, got {shape}")


cdef _raise_for(int status):
    if status == FL_ERR_SIZE:
        raise ValueError("fastlstm: negative size or thread count")
    if status == FL_ERR_SIMD:
        raise ValueError("fastlstm: this CPU does not run the requested SIMD level")
    if status != FL_OK:
        raise RuntimeError(f"fastlstm: C kernel failed with status {status}")


cdef unsigned char[::1] _workspace(size_t nbytes):
    if nbytes == 0:
        raise MemoryError("fastlstm: workspace size overflows")
    return np.empty(nbytes, dtype=np.uint8)


cdef const real *_optional(object array, tuple shape, str name, real precision) except? NULL:
    """Data pointer of an optional (B, H) input, NULL for None; `precision` picks float or double."""
    cdef const real[:, ::1] view
    if array is None:
        return NULL
    view = array
    _expect(name, (view.shape[0], view.shape[1]), shape)
    return &view[0, 0]


# ---- LSTM -----------------------------------------------------------------------------------------

def lstm_forward(real[:, :, ::1] hs_ext, real[:, :, ::1] cs_ext, real[:, :, ::1] gates,
                 object h0, object c0, const real[:, :, ::1] xs, const real[:, ::1] W,
                 const real[:, ::1] U, const real[::1] b, int num_threads, int simd):
    """hs_ext, cs_ext (T+1, B, H), gates (T, B, 4H) := the LSTM forward of xs (T, B, I)."""
    cdef ptrdiff_t T = xs.shape[0], B = xs.shape[1], I = xs.shape[2], H = U.shape[0]
    _expect("U", (U.shape[0], U.shape[1]), (H, 4 * H))
    _expect("W", (W.shape[0], W.shape[1]), (I, 4 * H))
    _expect("b", (b.shape[0],), (4 * H,))
    _expect("hs_ext", (hs_ext.shape[0], hs_ext.shape[1], hs_ext.shape[2]), (T + 1, B, H))
    _expect("cs_ext", (cs_ext.shape[0], cs_ext.shape[1], cs_ext.shape[2]), (T + 1, B, H))
    _expect("gates", (gates.shape[0], gates.shape[1], gates.shape[2]), (T, B, 4 * H))
    cdef const real *h0p = _optional(h0, (B, H), "h0", <real>0)
    cdef const real *c0p = _optional(c0, (B, H), "c0", <real>0)
    cdef unsigned char[::1] work = _workspace(
        fl_lstm_forward_workspace(T, B, I, H, num_threads, simd, sizeof(real)))
    cdef int status
    with nogil:
        if real is float:
            status = fl_lstm_forward_f32(&hs_ext[0, 0, 0], &cs_ext[0, 0, 0], &gates[0, 0, 0], h0p,
                                         c0p, &xs[0, 0, 0], &W[0, 0], &U[0, 0], &b[0], T, B, I, H,
                                         num_threads, simd, &work[0])
        else:
            status = fl_lstm_forward_f64(&hs_ext[0, 0, 0], &cs_ext[0, 0, 0], &gates[0, 0, 0], h0p,
                                         c0p, &xs[0, 0, 0], &W[0, 0], &U[0, 0], &b[0], T, B, I, H,
                                         num_threads, simd, &work[0])
    _raise_for(status)


def lstm_backward(real[:, :, ::1] dxs, real[:, ::1] dh0, real[:, ::1] dc0, real[:, ::1] dW,
                  real[:, ::1] dU, real[::1] db, const real[:, :, ::1] hs_ext,
                  const real[:, :, ::1] cs_ext, const real[:, :, ::1] gates, object dhs,
                  object dh_T, object dc_T, const real[:, :, ::1] xs, const real[:, ::1] W,
                  const real[:, ::1] U, int num_threads, int simd):
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
    cdef unsigned char[::1] work = _workspace(
        fl_lstm_backward_workspace(T, B, I, H, num_threads, simd, sizeof(real)))
    cdef int status
    with nogil:
        if real is float:
            status = fl_lstm_backward_f32(&dxs[0, 0, 0], &dh0[0, 0], &dc0[0, 0], &dW[0, 0],
                                          &dU[0, 0], &db[0], &hs_ext[0, 0, 0], &cs_ext[0, 0, 0],
                                          &gates[0, 0, 0], dhsp, dh_Tp, dc_Tp, &xs[0, 0, 0],
                                          &W[0, 0], &U[0, 0], T, B, I, H, num_threads, simd,
                                          &work[0])
        else:
            status = fl_lstm_backward_f64(&dxs[0, 0, 0], &dh0[0, 0], &dc0[0, 0], &dW[0, 0],
                                          &dU[0, 0], &db[0], &hs_ext[0, 0, 0], &cs_ext[0, 0, 0],
                                          &gates[0, 0, 0], dhsp, dh_Tp, dc_Tp, &xs[0, 0, 0],
                                          &W[0, 0], &U[0, 0], T, B, I, H, num_threads, simd,
                                          &work[0])
    _raise_for(status)


# ---- GRU ------------------------------------------------------------------------------------------

def gru_forward(real[:, :, ::1] hs_ext, real[:, :, ::1] gates, real[:, :, ::1] hn, object h0,
                const real[:, :, ::1] xs, const real[:, ::1] W, const real[:, ::1] U,
                const real[:, ::1] b, int num_threads, int simd):
    """hs_ext (T+1, B, H), gates (T, B, 3H), hn (T, B, H) := the GRU forward of xs (T, B, I)."""
    cdef ptrdiff_t T = xs.shape[0], B = xs.shape[1], I = xs.shape[2], H = U.shape[0]
    _expect("U", (U.shape[0], U.shape[1]), (H, 3 * H))
    _expect("W", (W.shape[0], W.shape[1]), (I, 3 * H))
    _expect("b", (b.shape[0], b.shape[1]), (2, 3 * H))
    _expect("hs_ext", (hs_ext.shape[0], hs_ext.shape[1], hs_ext.shape[2]), (T + 1, B, H))
    _expect("gates", (gates.shape[0], gates.shape[1], gates.shape[2]), (T, B, 3 * H))
    _expect("hn", (hn.shape[0], hn.shape[1], hn.shape[2]), (T, B, H))
    cdef const real *h0p = _optional(h0, (B, H), "h0", <real>0)
    cdef unsigned char[::1] work = _workspace(
        fl_gru_forward_workspace(T, B, I, H, num_threads, simd, sizeof(real)))
    cdef int status
    with nogil:
        if real is float:
            status = fl_gru_forward_f32(&hs_ext[0, 0, 0], &gates[0, 0, 0], &hn[0, 0, 0], h0p,
                                        &xs[0, 0, 0], &W[0, 0], &U[0, 0], &b[0, 0], T, B, I, H,
                                        num_threads, simd, &work[0])
        else:
            status = fl_gru_forward_f64(&hs_ext[0, 0, 0], &gates[0, 0, 0], &hn[0, 0, 0], h0p,
                                        &xs[0, 0, 0], &W[0, 0], &U[0, 0], &b[0, 0], T, B, I, H,
                                        num_threads, simd, &work[0])
    _raise_for(status)


def gru_backward(real[:, :, ::1] dxs, real[:, ::1] dh0, real[:, ::1] dW, real[:, ::1] dU,
                 real[:, ::1] db, const real[:, :, ::1] hs_ext, const real[:, :, ::1] gates,
                 const real[:, :, ::1] hn, object dhs, object dh_T, const real[:, :, ::1] xs,
                 const real[:, ::1] W, const real[:, ::1] U, int num_threads, int simd):
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
    cdef unsigned char[::1] work = _workspace(
        fl_gru_backward_workspace(T, B, I, H, num_threads, simd, sizeof(real)))
    cdef int status
    with nogil:
        if real is float:
            status = fl_gru_backward_f32(&dxs[0, 0, 0], &dh0[0, 0], &dW[0, 0], &dU[0, 0],
                                         &db[0, 0], &hs_ext[0, 0, 0], &gates[0, 0, 0],
                                         &hn[0, 0, 0], dhsp, dh_Tp, &xs[0, 0, 0], &W[0, 0],
                                         &U[0, 0], T, B, I, H, num_threads, simd, &work[0])
        else:
            status = fl_gru_backward_f64(&dxs[0, 0, 0], &dh0[0, 0], &dW[0, 0], &dU[0, 0],
                                         &db[0, 0], &hs_ext[0, 0, 0], &gates[0, 0, 0],
                                         &hn[0, 0, 0], dhsp, dh_Tp, &xs[0, 0, 0], &W[0, 0],
                                         &U[0, 0], T, B, I, H, num_threads, simd, &work[0])
    _raise_for(status)


# ---- RNN ------------------------------------------------------------------------------------------

def rnn_forward(real[:, :, ::1] hs_ext, object h0, const real[:, :, ::1] xs,
                const real[:, ::1] W, const real[:, ::1] U, const real[::1] b, int num_threads,
                int simd):
    """hs_ext (T+1, B, H) := the RNN forward of xs (T, B, I)."""
    cdef ptrdiff_t T = xs.shape[0], B = xs.shape[1], I = xs.shape[2], H = U.shape[0]
    _expect("U", (U.shape[0], U.shape[1]), (H, H))
    _expect("W", (W.shape[0], W.shape[1]), (I, H))
    _expect("b", (b.shape[0],), (H,))
    _expect("hs_ext", (hs_ext.shape[0], hs_ext.shape[1], hs_ext.shape[2]), (T + 1, B, H))
    cdef const real *h0p = _optional(h0, (B, H), "h0", <real>0)
    cdef unsigned char[::1] work = _workspace(
        fl_rnn_forward_workspace(T, B, I, H, num_threads, simd, sizeof(real)))
    cdef int status
    with nogil:
        if real is float:
            status = fl_rnn_forward_f32(&hs_ext[0, 0, 0], h0p, &xs[0, 0, 0], &W[0, 0], &U[0, 0],
                                        &b[0], T, B, I, H, num_threads, simd, &work[0])
        else:
            status = fl_rnn_forward_f64(&hs_ext[0, 0, 0], h0p, &xs[0, 0, 0], &W[0, 0], &U[0, 0],
                                        &b[0], T, B, I, H, num_threads, simd, &work[0])
    _raise_for(status)


def rnn_backward(real[:, :, ::1] dxs, real[:, ::1] dh0, real[:, ::1] dW, real[:, ::1] dU,
                 real[::1] db, const real[:, :, ::1] hs_ext, object dhs, object dh_T,
                 const real[:, :, ::1] xs, const real[:, ::1] W, const real[:, ::1] U,
                 int num_threads, int simd):
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
    cdef unsigned char[::1] work = _workspace(
        fl_rnn_backward_workspace(T, B, I, H, num_threads, simd, sizeof(real)))
    cdef int status
    with nogil:
        if real is float:
            status = fl_rnn_backward_f32(&dxs[0, 0, 0], &dh0[0, 0], &dW[0, 0], &dU[0, 0], &db[0],
                                         &hs_ext[0, 0, 0], dhsp, dh_Tp, &xs[0, 0, 0], &W[0, 0],
                                         &U[0, 0], T, B, I, H, num_threads, simd, &work[0])
        else:
            status = fl_rnn_backward_f64(&dxs[0, 0, 0], &dh0[0, 0], &dW[0, 0], &dU[0, 0], &db[0],
                                         &hs_ext[0, 0, 0], dhsp, dh_Tp, &xs[0, 0, 0], &W[0, 0],
                                         &U[0, 0], T, B, I, H, num_threads, simd, &work[0])
    _raise_for(status)
