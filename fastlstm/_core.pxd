# The C contract (csrc/fastlstm.h), declared once for the wall (_core.pyx) and any Cython caller.
from libc.stddef cimport ptrdiff_t
from libc.stdint cimport uint64_t

cdef extern from "fastlstm.h" nogil:
    cpdef enum fl_status:
        FL_OK
        FL_ERR_SIZE
        FL_ERR_SIMD
        FL_ERR_WORKSPACE
        FL_ERR_ARGUMENT
        FL_ERR_OVERFLOW
        FL_ERR_PACKED

    cpdef enum fl_kind:
        FL_LSTM
        FL_GRU
        FL_RNN

    cpdef enum fl_dtype:
        FL_FLOAT32
        FL_FLOAT64

    cpdef enum fl_pass:
        FL_FORWARD
        FL_BACKWARD
        FL_CELL_FORWARD
        FL_CELL_BACKWARD

    struct fl_desc:
        int kind
        int dtype
        ptrdiff_t T, B, I, H
        const ptrdiff_t *lengths
        int num_threads
        int simd
        uint64_t *stalled_ns

    struct fl_weights:
        const void *W
        const void *U
        const void *b

    struct fl_inputs:
        const void *x
        const void *h0
        const void *c0

    struct fl_state:
        void *h
        void *c
        void *gates
        void *hn

    struct fl_output_grads:
        const void *dhs
        const void *dh_T
        const void *dc_T

    struct fl_grads:
        void *dx
        void *dh0
        void *dc0
        void *dW
        void *dU
        void *db

    int fl_simd_max()
    const char *fl_simd_name(int simd)
    const char *fl_simd_features(int simd)
    int fl_openmp_version()
    const char *fl_compiler()
    int fl_gates(int kind)
    int fl_bias_rows(int kind)

    int fl_workspace(int pass_, const fl_desc *d, size_t *nbytes)
    int fl_forward(const fl_desc *d, const fl_state *out, const fl_inputs *inp,
                   const fl_weights *w, void *workspace, size_t workspace_bytes)
    int fl_pack_bytes(const fl_desc *d, size_t *nbytes)
    int fl_pack(const fl_desc *d, const fl_weights *w, void *packed, size_t packed_bytes)
    int fl_forward_packed(const fl_desc *d, const fl_state *out, const fl_inputs *inp,
                          const fl_weights *w, const void *packed, size_t packed_bytes,
                          void *workspace, size_t workspace_bytes)
    int fl_backward(const fl_desc *d, const fl_grads *out, const fl_state *saved,
                    const fl_output_grads *dout, const fl_inputs *inp, const fl_weights *w,
                    void *workspace, size_t workspace_bytes)
    int fl_cell_forward(const fl_desc *d, const fl_state *out, const fl_inputs *inp,
                        const fl_weights *w, void *workspace, size_t workspace_bytes)
    int fl_cell_backward(const fl_desc *d, const fl_grads *out, const fl_state *saved,
                         const fl_output_grads *dout, const fl_inputs *inp, const fl_weights *w,
                         void *workspace, size_t workspace_bytes)

    struct fl_stream_layer:
        ptrdiff_t I, H
        fl_weights w
        void *h
        void *c

    struct fl_pool:
        pass

    size_t fl_pool_bytes()
    int fl_pool_init(fl_pool *pool, int threads)
    int fl_pool_serving(const fl_pool *pool)
    unsigned long fl_pool_calls(const fl_pool *pool)
    int fl_pool_serve(fl_pool *pool, int index)
    void fl_pool_stop(fl_pool *pool)

    struct fl_stream:
        int kind
        int dtype
        ptrdiff_t B
        int layers
        const fl_stream_layer *layer
        int num_threads
        int simd
        fl_pool *pool

    int fl_stream_workspace(const fl_stream *s, size_t *nbytes)
    int fl_stream_threads(const fl_stream *s, int *threads)
    int fl_stream_step(const fl_stream *s, const void *x, void *workspace, size_t workspace_bytes)

    int fl_matmul_workspace(int dtype, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int num_threads,
                            int simd, size_t *nbytes)
    int fl_matmul(int dtype, void *C, const void *A, const void *B, ptrdiff_t M, ptrdiff_t N,
                  ptrdiff_t K, int trans_a, int trans_b, int num_threads, int simd,
                  void *workspace, size_t workspace_bytes)


# NumPy's OpenBLAS run on fastlstm's OpenMP threads (csrc/blas_threads.h).
cdef extern from "blas_threads.h" nogil:
    ctypedef void (*fl_openblas_job)(int job, void *jobdata, int dojob_data)
    void fl_openblas_threads(int sync, fl_openblas_job dojob, int numjobs, size_t jobdata_bytes,
                             void *jobdata, int dojob_data)
    unsigned long fl_openblas_calls()
    int fl_fork_handlers_install()
    int fl_fork_releases_threads()
