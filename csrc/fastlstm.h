/* fastlstm.h - the contract of the C layer.
 *
 * Whole-sequence forward and backward passes (BPTT) of an LSTM, a GRU and a vanilla tanh RNN, in
 * float and double. Pure C: no Python, no allocation. The caller passes a workspace whose size the
 * matching *_workspace function gives, and a thread count; results are bitwise identical for every
 * thread count.
 *
 * Shape legend
 *   T = time steps, B = batch rows, I = input features, H = hidden units, G = gate rows per unit:
 *   G = 4 for the LSTM (gate blocks [i | f | g | o] along the last axis), G = 3 for the GRU
 *   ([r | z | n]), G = 1 for the RNN.
 * Layouts: every array is C-contiguous (row-major), time-major for sequences.
 *   xs (T, B, I)    W (I, G*H)    U (H, G*H)    b (G*H,), but b (2, 3H) for the GRU
 *   hs_ext, cs_ext (T+1, B, H): index 0 holds the initial state, index t+1 the state after step t.
 *   gates (T, B, G*H): the activations of every step, saved by the forward for the backward; the
 *   GRU also saves hn (T, B, H) below, the recurrent part of n that the reset gate scaled.
 *
 * LSTM step (z is the pre-activation, then overwritten by the activations in `gates`):
 *   z   = x_t @ W + h_{t-1} @ U + b
 *   i, f, o = sigmoid(z_i, z_f, z_o);  g = tanh(z_g)
 *   c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)
 * GRU step (PyTorch's nn.GRU): b[0] is the input-side bias, b[1] the recurrent-side one, kept apart
 * because the reset gate scales the recurrent part of n only:
 *   r   = sigmoid(x_t @ W_r + b[0]_r + h_{t-1} @ U_r + b[1]_r)
 *   z   = sigmoid(x_t @ W_z + b[0]_z + h_{t-1} @ U_z + b[1]_z)
 *   hn  = h_{t-1} @ U_n + b[1]_n
 *   n   = tanh(x_t @ W_n + b[0]_n + r * hn)
 *   h_t = (1 - z) * n + z * h_{t-1}
 * RNN step:
 *   h_t = tanh(x_t @ W + h_{t-1} @ U + b)
 *
 * Variable-length batches: lengths (B,), a ptrdiff_t array (NumPy's intp), gives each row's own
 * number of steps, each in [0, T]; NULL means T for every row. At a step t >= lengths[r] row r keeps
 * its state (h_t = h_{t-1}, c_t = c_{t-1}, written to hs_ext and cs_ext), so the final state is the
 * state after the row's own last step; the backward makes no gradient there (no dxs, dW, dU, db;
 * dhs there is ignored) and carries dh_T, dc_T back unchanged to the row's last step. The backward
 * takes the lengths its forward was given. gates and hn hold nothing meaningful past a row's end.
 *
 * Every function returns FL_OK or an FL_ERR_* status; nothing is written when the status is an error.
 */
#ifndef FASTLSTM_H
#define FASTLSTM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum fl_status {
    FL_OK = 0,
    FL_ERR_SIZE = 1, /* a negative size, a length outside [0, T], or a thread count below 1 */
    FL_ERR_SIMD = 2  /* a SIMD level this CPU (or this build) does not have */
};

/* SIMD levels of the matrix kernels, chosen at run time. */
enum fl_simd {
    FL_SIMD_PORTABLE = 0, /* 16-byte vectors: SSE2 on x86-64, NEON on arm64 */
    FL_SIMD_AVX2 = 1,     /* 32-byte vectors with FMA */
    FL_SIMD_AVX512 = 2    /* 64-byte vectors with FMA */
};

/* ---- build and machine ------------------------------------------------------------------------- */

int fl_simd_max(void);                /* the best level this CPU runs */
const char *fl_simd_name(int simd);   /* "portable", "avx2", "avx512" */
int fl_openmp_version(void);          /* _OPENMP (yyyymm), or 0 in a serial build */
const char *fl_compiler(void);        /* the compiler's version string */

/* ---- workspaces -------------------------------------------------------------------------------- */
/* Bytes of workspace each pass needs; `elsize` is sizeof(float) or sizeof(double). Returns 0 for
 * invalid sizes. The workspace needs no alignment: the kernels align inside it. */

size_t fl_lstm_forward_workspace(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                 int num_threads, int simd, int elsize);
size_t fl_lstm_backward_workspace(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                  int num_threads, int simd, int elsize);
size_t fl_gru_forward_workspace(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                int num_threads, int simd, int elsize);
size_t fl_gru_backward_workspace(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                 int num_threads, int simd, int elsize);
size_t fl_rnn_forward_workspace(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                int num_threads, int simd, int elsize);
size_t fl_rnn_backward_workspace(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                 int num_threads, int simd, int elsize);

/* ---- passes -------------------------------------------------------------------------------------
 * Argument order: outputs, saved state, inputs, weights, sizes, then threads, SIMD level, workspace.
 * The sizes start with lengths (B,), each row's steps, or NULL (T for every row).
 * Optional inputs (h0, c0, dhs, dh_T, dc_T) may be NULL, meaning zeros.
 * Backward passes overwrite their gradient outputs; they never accumulate into them. */

#define FL_DECLARE_PASSES(real, suffix)                                                              \
    /* forward: hs_ext, cs_ext (T+1, B, H) and gates (T, B, 4H) out;                            */  \
    /*          h0, c0 (B, H); xs (T, B, I); W (I, 4H); U (H, 4H); b (4H,) in                    */  \
    int fl_lstm_forward_##suffix(real *hs_ext, real *cs_ext, real *gates,                            \
                                 const real *h0, const real *c0, const real *xs,                     \
                                 const real *W, const real *U, const real *b,                        \
                                 const ptrdiff_t *lengths,                                           \
                                 ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,                 \
                                 int num_threads, int simd, void *workspace);                        \
    /* backward: dxs (T, B, I), dh0, dc0 (B, H), dW (I, 4H), dU (H, 4H), db (4H,) out;           */  \
    /*           hs_ext, cs_ext, gates saved by the forward; dhs (T, B, H), dh_T, dc_T (B, H) in */  \
    int fl_lstm_backward_##suffix(real *dxs, real *dh0, real *dc0, real *dW, real *dU, real *db,     \
                                  const real *hs_ext, const real *cs_ext, const real *gates,         \
                                  const real *dhs, const real *dh_T, const real *dc_T,               \
                                  const real *xs, const real *W, const real *U,                      \
                                  const ptrdiff_t *lengths,                                          \
                                  ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,                \
                                  int num_threads, int simd, void *workspace);                       \
    /* forward: hs_ext (T+1, B, H), gates (T, B, 3H) = r, z, n and hn (T, B, H) out;             */  \
    /*          h0 (B, H); xs (T, B, I); W (I, 3H); U (H, 3H); b (2, 3H) in                      */  \
    int fl_gru_forward_##suffix(real *hs_ext, real *gates, real *hn, const real *h0,                 \
                                const real *xs, const real *W, const real *U, const real *b,         \
                                const ptrdiff_t *lengths,                                            \
                                ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,                  \
                                int num_threads, int simd, void *workspace);                         \
    /* backward: dxs (T, B, I), dh0 (B, H), dW (I, 3H), dU (H, 3H), db (2, 3H) out;              */  \
    /*           hs_ext, gates, hn saved by the forward; dhs (T, B, H), dh_T (B, H) in           */  \
    int fl_gru_backward_##suffix(real *dxs, real *dh0, real *dW, real *dU, real *db,                 \
                                 const real *hs_ext, const real *gates, const real *hn,              \
                                 const real *dhs, const real *dh_T, const real *xs, const real *W,   \
                                 const real *U, const ptrdiff_t *lengths,                            \
                                 ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,                 \
                                 int num_threads, int simd, void *workspace);                        \
    /* forward: hs_ext (T+1, B, H) out; h0 (B, H); xs (T, B, I); W (I, H); U (H, H); b (H,) in   */  \
    int fl_rnn_forward_##suffix(real *hs_ext, const real *h0, const real *xs,                        \
                                const real *W, const real *U, const real *b,                         \
                                const ptrdiff_t *lengths,                                            \
                                ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,                  \
                                int num_threads, int simd, void *workspace);                         \
    /* backward: dxs (T, B, I), dh0 (B, H), dW (I, H), dU (H, H), db (H,) out;                   */  \
    /*           hs_ext saved by the forward; dhs (T, B, H), dh_T (B, H) in                      */  \
    int fl_rnn_backward_##suffix(real *dxs, real *dh0, real *dW, real *dU, real *db,                 \
                                 const real *hs_ext, const real *dhs, const real *dh_T,              \
                                 const real *xs, const real *W, const real *U,                       \
                                 const ptrdiff_t *lengths,                                           \
                                 ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,                 \
                                 int num_threads, int simd, void *workspace);

FL_DECLARE_PASSES(float, f32)
FL_DECLARE_PASSES(double, f64)

#undef FL_DECLARE_PASSES

/* ---- cells: one step, for callers that loop over time themselves ----------------------------------
 * The same maths as a one-step pass, made cheap to call: no workspace, the weights read in place
 * (never packed or cached, so changes to them between calls are always seen), and small steps run on
 * the calling thread. h_prev and c_prev are required (pass zeros); dh and dc may be NULL (zeros),
 * except the GRU's dh.
 * dz is scratch the caller provides: the step's pre-activation gradients. */

#define FL_DECLARE_CELLS(real, suffix)                                                               \
    /* forward: h, c (B, H) and gates (B, 4H) out; x (B, I); h_prev, c_prev (B, H);            */  \
    /*          W (I, 4H); U (H, 4H); b (4H,) in                                                */  \
    int fl_lstm_cell_forward_##suffix(real *h, real *c, real *gates, const real *x,                  \
                                      const real *h_prev, const real *c_prev, const real *W,         \
                                      const real *U, const real *b, ptrdiff_t B, ptrdiff_t I,        \
                                      ptrdiff_t H, int num_threads, int simd);                       \
    /* backward: dx (B, I), dh_prev, dc_prev (B, H), dW (I, 4H), dU (H, 4H), db (4H,) out;      */  \
    /*           dz (B, 4H) scratch; dh, dc (B, H) in; x, h_prev, c_prev, c, gates as the       */  \
    /*           forward used and gave them; W, U                                               */  \
    int fl_lstm_cell_backward_##suffix(real *dx, real *dh_prev, real *dc_prev, real *dW, real *dU,   \
                                       real *db, real *dz, const real *dh, const real *dc,           \
                                       const real *x, const real *h_prev, const real *c_prev,        \
                                       const real *c, const real *gates, const real *W,              \
                                       const real *U, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,         \
                                       int num_threads, int simd);                                   \
    /* forward: h (B, H) out; x (B, I); h_prev (B, H); W (I, H); U (H, H); b (H,) in            */  \
    int fl_rnn_cell_forward_##suffix(real *h, const real *x, const real *h_prev, const real *W,      \
                                     const real *U, const real *b, ptrdiff_t B, ptrdiff_t I,         \
                                     ptrdiff_t H, int num_threads, int simd);                        \
    /* backward: dx (B, I), dh_prev (B, H), dW (I, H), dU (H, H), db (H,) out; dz (B, H)        */  \
    /*           scratch; dh (B, H) in; x, h_prev, h as the forward used and gave them; W, U    */  \
    int fl_rnn_cell_backward_##suffix(real *dx, real *dh_prev, real *dW, real *dU, real *db,         \
                                      real *dz, const real *dh, const real *x, const real *h_prev,   \
                                      const real *h, const real *W, const real *U, ptrdiff_t B,      \
                                      ptrdiff_t I, ptrdiff_t H, int num_threads, int simd);         \
    /* GRU forward: h (B, H), gates (B, 3H) (r, z, n) and hn (B, H) (h_prev @ U_n + b[1]_n) out;  */  \
    /*              gh (B, 3H) scratch; x (B, I); h_prev (B, H); W (I, 3H); U (H, 3H); b (2, 3H) */  \
    int fl_gru_cell_forward_##suffix(real *h, real *gates, real *hn, real *gh, const real *x,        \
                                     const real *h_prev, const real *W, const real *U,               \
                                     const real *b, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,           \
                                     int num_threads, int simd);                                     \
    /* GRU backward: dx (B, I), dh_prev (B, H), dW (I, 3H), dU (H, 3H), db (2, 3H) out;        */  \
    /*               dz (2, B, 3H) scratch; dh (B, H) in (required); x, h_prev, gates, hn, W, U */  \
    int fl_gru_cell_backward_##suffix(real *dx, real *dh_prev, real *dW, real *dU, real *db,         \
                                      real *dz, const real *dh, const real *x, const real *h_prev,   \
                                      const real *gates, const real *hn, const real *W,              \
                                      const real *U, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,          \
                                      int num_threads, int simd);

FL_DECLARE_CELLS(float, f32)
FL_DECLARE_CELLS(double, f64)

#undef FL_DECLARE_CELLS

/* ---- a plain matrix product, for the training toolkit's Linear layer --------------------------------
 * C (M, N) = op(A) (M, K) @ op(B) (K, N): A stored (M, K), or (K, M) transposed when trans_a; B
 * stored (K, N), or (N, K) transposed when trans_b; all row-major. The same blocked GEMM and threads
 * as the passes, so a training step of fastlstm's layers never needs a BLAS. */

size_t fl_matmul_workspace(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int num_threads, int simd,
                           int elsize);
int fl_matmul_f32(float *C, const float *A, const float *B, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                  int trans_a, int trans_b, int num_threads, int simd, void *workspace);
int fl_matmul_f64(double *C, const double *A, const double *B, ptrdiff_t M, ptrdiff_t N,
                  ptrdiff_t K, int trans_a, int trans_b, int num_threads, int simd, void *workspace);

#ifdef __cplusplus
}
#endif

#endif /* FASTLSTM_H */
