/* fastlstm.h - the contract of the C layer.
 *
 * Whole-sequence forward and backward passes (BPTT) and single steps ("cells") of an LSTM, a GRU
 * and a vanilla tanh RNN, in float and double; and a plain matrix product. Pure C: no Python, no
 * allocation. A call is described by a struct fl_desc (the kind, the dtype, the sizes, the lengths,
 * the thread count and the SIMD level); its arrays come in named structs. The caller passes a
 * workspace of at least the size fl_workspace gives, and its size, which every entry point checks.
 * Results are bitwise identical for every thread count (for a given SIMD level).
 *
 * Shape legend
 *   T = time steps, B = batch rows, I = input features, H = hidden units,
 *   G = gate blocks per unit (fl_gates): 4 for the LSTM ([i | f | g | o] along the last axis),
 *   3 for the GRU ([r | z | n]), 1 for the RNN; N = G*H, the columns of the weights.
 * Layouts: every array is C-contiguous (row-major), time-major for sequences.
 *   xs (T, B, I)    W (I, N)    U (H, N)    b (fl_bias_rows, N): one row, but two for the GRU
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
 * Variable-length batches (sequences only): lengths (B,), a ptrdiff_t array (NumPy's intp), gives
 * each row's own number of steps, each in [0, T]; NULL means T for every row. At a step
 * t >= lengths[r] row r keeps its state (h_t = h_{t-1}, c_t = c_{t-1}), so the final state is the
 * state after the row's own last step; the backward makes no gradient there (no dxs, dW, dU, db;
 * dhs there is ignored) and carries dh_T, dc_T back unchanged to the row's last step. The backward
 * takes the lengths its forward was given. gates and hn hold nothing meaningful past a row's end.
 *
 * Every function returns FL_OK or an FL_ERR_* status; nothing is written when it is an error.
 */
#ifndef FASTLSTM_H
#define FASTLSTM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum fl_status {
    FL_OK = 0,
    FL_ERR_SIZE = 1,      /* a negative size, a length outside [0, T], a thread count below 1, or
                           * a stream layer whose input is not the H of the layer below */
    FL_ERR_SIMD = 2,      /* a SIMD level this CPU (or this build) does not have */
    FL_ERR_WORKSPACE = 3, /* a workspace smaller than fl_workspace says the call needs, or a
                           * buffer for packed weights smaller than fl_pack_bytes says */
    FL_ERR_ARGUMENT = 4,  /* an unknown kind, dtype or pass, a required array that is NULL, a
                           * buffer for packed weights not 64-byte aligned, or a stream's pool
                           * of another thread count than the stream's */
    FL_ERR_OVERFLOW = 5,  /* sizes whose workspace or arrays do not fit in memory's addresses */
    FL_ERR_PACKED = 6     /* packed weights that fl_pack made for another kind, dtype, SIMD level,
                           * I, H or batch tile than the call's */
};

enum fl_kind { FL_LSTM = 0, FL_GRU = 1, FL_RNN = 2 };
enum fl_dtype { FL_FLOAT32 = 0, FL_FLOAT64 = 1 };

/* The SIMD level: it chooses every piece of ISA-specific code a call runs (register tiles,
 * pointwise loops, dot products), so each level's results are its own and reproducible. */
enum fl_simd {
    FL_SIMD_PORTABLE = 0, /* the baseline ISA: SSE2 on x86-64, NEON on arm64 */
    FL_SIMD_AVX2 = 1,     /* x86-64-v3: 32-byte vectors with FMA */
    FL_SIMD_AVX512 = 2    /* x86-64-v4: 64-byte vectors with FMA */
};

/* The passes, for fl_workspace. */
enum fl_pass { FL_FORWARD = 0, FL_BACKWARD = 1, FL_CELL_FORWARD = 2, FL_CELL_BACKWARD = 3 };

/* ---- build and machine ------------------------------------------------------------------------- */

int fl_simd_max(void);                /* the best level this CPU runs */
const char *fl_simd_name(int simd);   /* "portable", "avx2", "avx512" */
const char *fl_simd_features(int simd); /* what a level's code was compiled for, e.g. "sse2 avx fma
                                         * avx2"; "" for a level this build lacks */
int fl_openmp_version(void);          /* _OPENMP (yyyymm), or 0 in a serial build */
const char *fl_compiler(void);        /* the compiler's version string */
int fl_gates(int kind);               /* G: 4, 3, 1; 0 for an unknown kind */
int fl_bias_rows(int kind);           /* rows of b: 1, 2 (GRU), 1; 0 for an unknown kind */

/* ---- the descriptor and the arrays -------------------------------------------------------------- */

struct fl_desc {
    int kind;                 /* enum fl_kind */
    int dtype;                /* enum fl_dtype: every array below has this element type */
    ptrdiff_t T, B, I, H;     /* a cell takes one step: its T is ignored */
    const ptrdiff_t *lengths; /* (B,) each row's steps, or NULL (T for every row); sequences only */
    int num_threads;          /* >= 1 */
    int simd;                 /* enum fl_simd, at most fl_simd_max() */
    uint64_t *stalled_ns;     /* or NULL; a pass adds to it the nanoseconds its threads waited,
                               * past a spin, for one another (for an item another thread had
                               * claimed, at a barrier or the pass's end): a sign that its cores
                               * are shared (fl_team and fl_barrier in fastlstm.c) */
};

struct fl_weights {
    const void *W; /* (I, N) */
    const void *U; /* (H, N) */
    const void *b; /* (fl_bias_rows, N); the forward passes' only */
};

/* The forward's inputs. A sequence's h0, c0 may be NULL (zeros); a cell's are required. */
struct fl_inputs {
    const void *x;  /* sequence xs (T, B, I); cell x (B, I) */
    const void *h0; /* (B, H): the initial state, a cell's h_prev */
    const void *c0; /* (B, H): the LSTM's initial cell state, a cell's c_prev; unused otherwise */
};

/* What the forward writes and the backward reads back. */
struct fl_state {
    void *h;     /* sequence hs_ext (T+1, B, H): [0] the initial state, [t+1] the state after step
                  * t; cell h (B, H) */
    void *c;     /* the LSTM's cell state, shaped as h; NULL for the others */
    void *gates; /* LSTM (T, B, 4H) i, f, g, o; GRU (T, B, 3H) r, z, n; a cell's (B, N); NULL for
                  * the RNN */
    void *hn;    /* GRU (T, B, H), a cell's (B, H): h_{t-1} @ U_n + b[1]_n; NULL for the others */
};

/* Gradients of the forward's outputs; any may be NULL (zeros), but a GRU cell's dh_T. */
struct fl_output_grads {
    const void *dhs;  /* sequence (T, B, H) of every step's h_t; NULL for a cell */
    const void *dh_T; /* (B, H) of the final state; a cell's dh */
    const void *dc_T; /* (B, H) of the LSTM's final cell state; a cell's dc */
};

/* What the backward writes: it overwrites, never accumulates. */
struct fl_grads {
    void *dx;  /* sequence dxs (T, B, I); cell dx (B, I) */
    void *dh0; /* (B, H): of the initial state, a cell's dh_prev */
    void *dc0; /* (B, H): of the LSTM's initial cell state, a cell's dc_prev; NULL for the others */
    void *dW;  /* (I, N) */
    void *dU;  /* (H, N) */
    void *db;  /* (fl_bias_rows, N) */
};

/* ---- entry points --------------------------------------------------------------------------------
 * fl_workspace sets *bytes to the workspace a pass needs (no alignment needed: the kernels align
 * inside it). The passes take that workspace and its size, and fail with FL_ERR_WORKSPACE when it
 * is smaller. Argument order: descriptor, outputs, saved state, inputs, weights, workspace. */

int fl_workspace(int pass, const struct fl_desc *d, size_t *bytes);

int fl_forward(const struct fl_desc *d, const struct fl_state *out, const struct fl_inputs *in,
               const struct fl_weights *w, void *workspace, size_t workspace_bytes);
int fl_backward(const struct fl_desc *d, const struct fl_grads *out, const struct fl_state *saved,
                const struct fl_output_grads *dout, const struct fl_inputs *in,
                const struct fl_weights *w, void *workspace, size_t workspace_bytes);

/* ---- weights packed once, for many forwards with the same weights ----------------------------
 * fl_forward packs W and U into the layout of its register tiles at every call, which costs two
 * passes over the weights: as much as the whole of a short sequence's steps at B = 1-4, H >= 512.
 * A caller that runs many forwards with weights that do not change (inference) packs them once
 * with fl_pack and passes them to fl_forward_packed, which then reads neither W nor U (either
 * may be NULL). The packing depends on the kind, dtype, SIMD level, I, H and, through the tile of
 * the per-step product, on B; not on T, the lengths or the thread count. The packed buffer starts
 * with a record of what it was packed for, which fl_forward_packed checks against its descriptor
 * (FL_ERR_PACKED, also for a buffer of fewer bytes than this call's packing, whose record it then
 * does not read); it must be 64-byte aligned. The results are bitwise those of fl_forward. */

int fl_pack_bytes(const struct fl_desc *d, size_t *bytes);
int fl_pack(const struct fl_desc *d, const struct fl_weights *w, void *packed,
            size_t packed_bytes);
int fl_forward_packed(const struct fl_desc *d, const struct fl_state *out,
                      const struct fl_inputs *in, const struct fl_weights *w, const void *packed,
                      size_t packed_bytes, void *workspace, size_t workspace_bytes);

/* One step, for callers that loop over time themselves: the same maths as a one-step sequence,
 * made cheap to call. The weights are read in place (never packed or cached, so changes to them
 * between calls are always seen), and small steps run on the calling thread. */
int fl_cell_forward(const struct fl_desc *d, const struct fl_state *out,
                    const struct fl_inputs *in, const struct fl_weights *w, void *workspace,
                    size_t workspace_bytes);
int fl_cell_backward(const struct fl_desc *d, const struct fl_grads *out,
                     const struct fl_state *saved, const struct fl_output_grads *dout,
                     const struct fl_inputs *in, const struct fl_weights *w, void *workspace,
                     size_t workspace_bytes);

/* ---- streaming: one time step through a stack of layers ------------------------------------------
 * For inference one step at a time (a streaming model, a decoder): layer 0 reads x, each layer
 * above the new h of the one below, and every layer's state is advanced in place. One call per
 * step for the whole stack; the weights are read in place at every step (never packed or cached,
 * so changes to them between steps are always seen). Steps large enough to repay a team run on
 * one, each thread on the same hidden units of a layer at every step. */

struct fl_stream_layer {
    ptrdiff_t I, H;      /* input features (the layer below's H above layer 0), hidden units */
    struct fl_weights w; /* W (I, N), U (H, N), b (fl_bias_rows, N): N = G*H */
    void *h;             /* (B, H) the state h_{t-1}, replaced by h_t */
    void *c;             /* (B, H) the LSTM's c_{t-1}, replaced by c_t; NULL for the others */
};

struct fl_pool;

struct fl_stream {
    int kind;                            /* enum fl_kind, of every layer */
    int dtype;                           /* enum fl_dtype, of every array */
    ptrdiff_t B;                         /* rows stepped together */
    int layers;                          /* >= 1 */
    const struct fl_stream_layer *layer; /* [layers], layer 0 the input side */
    int num_threads;                     /* >= 1 */
    int simd;                            /* enum fl_simd, at most fl_simd_max() */
    struct fl_pool *pool; /* NULL, or a pool of num_threads threads to run the steps on */
};

int fl_stream_workspace(const struct fl_stream *s, size_t *bytes);
/* The threads its steps run on: num_threads, or 1 for steps too small to repay a team. */
int fl_stream_threads(const struct fl_stream *s, int *threads);
/* One step of x (B, I of layer 0); the top layer's h_t is then in its layer's h. */
int fl_stream_step(const struct fl_stream *s, const void *x, void *workspace,
                   size_t workspace_bytes);

/* ---- a pool: threads that wait between a stream's steps for the next one ------------------------
 * Starting and ending an OpenMP team costs a fifth of a small stream step; a pool's threads instead
 * stay, spinning for a while (some 100 us) and then asleep, until the next step. fastlstm starts no
 * thread and allocates nothing: the caller gives fl_pool_bytes() of memory, aligned to 64 bytes,
 * initialises it for `threads` threads (the caller's own, which is thread 0, and threads - 1 more),
 * and runs fl_pool_serve(pool, k) on a thread of its own for each k in 1 .. threads-1. A stream
 * whose `pool` is the pool then runs its steps on them. fl_pool_stop waits for a step that is
 * running, then makes every fl_pool_serve return; the memory may be freed once they all have (a
 * second stop does nothing). A step on a stopped pool, or on a pool that not all its threads
 * serve yet, runs on an OpenMP team instead: a step never waits for a thread to arrive. A step on a
 * pool busy with another thread's step runs on its calling thread alone: the pool's threads have
 * the cores. Several threads may so share one pool. */

size_t fl_pool_bytes(void);
int fl_pool_init(struct fl_pool *pool, int threads);
int fl_pool_threads(const struct fl_pool *pool);
/* The threads inside fl_pool_serve now, and how many steps have run on the pool (not without). */
int fl_pool_serving(const struct fl_pool *pool);
unsigned long fl_pool_calls(const struct fl_pool *pool);
/* Serves the pool as its thread `index` (1 .. threads-1) until fl_pool_stop. */
int fl_pool_serve(struct fl_pool *pool, int index);
void fl_pool_stop(struct fl_pool *pool);

/* ---- a plain matrix product, for the training toolkit's Linear layer --------------------------------
 * C (M, N) = op(A) (M, K) @ op(B) (K, N): A stored (M, K), or (K, M) transposed when trans_a; B
 * stored (K, N), or (N, K) transposed when trans_b; all row-major, of element type dtype. The same
 * blocked GEMM and threads as the passes, so a training step of fastlstm's layers needs no BLAS. */

int fl_matmul_workspace(int dtype, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int num_threads,
                        int simd, size_t *bytes);
int fl_matmul(int dtype, void *C, const void *A, const void *B, ptrdiff_t M, ptrdiff_t N,
              ptrdiff_t K, int trans_a, int trans_b, int num_threads, int simd, void *workspace,
              size_t workspace_bytes);

#ifdef __cplusplus
}
#endif

#endif /* FASTLSTM_H */
