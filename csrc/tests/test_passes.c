/* test_passes.c - the passes of fastlstm.h through its public entry points, against a naive C
 * version written from the header's equations; and the entry points' checks.
 *
 * The naive version computes in double with plain loops: a sequence step by step, row by row, and
 * its backward through time in the same way; a cell is a one-step sequence. Each case runs at every
 * SIMD level this CPU has and with 1, 2 and 3 threads; the first is compared with the naive
 * version, the others must give the same bits. Every output array starts as NaN, so a pass that
 * reads what it should only write, or accumulates into it, fails.
 *
 * Shapes: T = steps, B = rows, I = inputs, H = units, G = gate blocks, N = G*H, R = bias rows.
 */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>

#include "../fastlstm.h"
#include "check.h"
#include "tests.h"

/* ---- a problem: its sizes and inputs in double (values exact in its dtype) ----------------------- */

struct problem {
    int kind, dtype, cell;
    ptrdiff_t T, B, I, H, G, N, R;
    ptrdiff_t *lengths;            /* (B,) or NULL */
    double *xs;                    /* (T, B, I) */
    double *h0, *c0;               /* (B, H) or NULL (zeros) */
    double *W, *U, *b;             /* (I, N), (H, N), (R, N) */
    double *dhs;                   /* (T, B, H) or NULL */
    double *dh_T, *dc_T;           /* (B, H) or NULL */
};

/* What a forward and a backward give, in double: the naive version's, or the library's read back. */
struct results {
    double *hs, *cs;    /* (T+1, B, H): [0] the initial state */
    double *gates;      /* (T, B, N) */
    double *hn;         /* (T, B, H) */
    double *dxs;        /* (T, B, I) */
    double *dh0, *dc0;  /* (B, H) */
    double *dW, *dU, *db; /* (I, N), (H, N), (R, N) */
};

static double *random_array(struct rng *rng, ptrdiff_t n, int dtype, double scale)
{
    double *a = malloc(sizeof(double) * (n + 1));
    for (ptrdiff_t i = 0; i < n; i++) {
        const double v = rng_uniform(rng, -scale, scale);
        a[i] = dtype ? v : (double)(float)v;
    }
    return a;
}

static double *zeros(ptrdiff_t n)
{
    return calloc((size_t)n + 1, sizeof(double));
}

static void free_problem(struct problem *p)
{
    free(p->lengths);
    free(p->xs);
    free(p->h0);
    free(p->c0);
    free(p->W);
    free(p->U);
    free(p->b);
    free(p->dhs);
    free(p->dh_T);
    free(p->dc_T);
}

static void free_results(struct results *r)
{
    double *arrays[] = {r->hs, r->cs, r->gates, r->hn, r->dxs, r->dh0, r->dc0, r->dW, r->dU, r->db};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
        free(arrays[i]);
}

/* ---- the naive version ----------------------------------------------------------------------------- */

static double sigmoid(double x)
{
    return 1 / (1 + exp(-x));
}

/* Whether step t is past row r's end. */
static int past(const struct problem *p, ptrdiff_t t, ptrdiff_t r)
{
    return p->lengths && t >= p->lengths[r];
}

/* The forward, step by step (fastlstm.h):
 *   LSTM: z = x_t W + h U + b; i, f, o = sigmoid, g = tanh; c_t = f c + i g; h_t = o tanh(c_t)
 *   GRU:  r, z = sigmoid(x W + b0 + h U + b1); hn = h U_n + b1_n; n = tanh(x W_n + b0_n + r hn);
 *         h_t = (1 - z) n + z h
 *   RNN:  h_t = tanh(x W + h U + b)
 * Past a row's end its h and c carry. */
static void naive_forward(const struct problem *p, struct results *o)
{
    const ptrdiff_t T = p->T, B = p->B, I = p->I, H = p->H, N = p->N, BH = B * H;
    o->hs = zeros((T + 1) * BH);
    o->cs = zeros((T + 1) * BH);
    o->gates = zeros(T * B * N);
    o->hn = zeros(T * BH);
    double *zx = zeros(N), *zh = zeros(N);
    for (ptrdiff_t i = 0; i < BH; i++) {
        o->hs[i] = p->h0 ? p->h0[i] : 0;
        o->cs[i] = p->c0 ? p->c0[i] : 0;
    }
    for (ptrdiff_t t = 0; t < T; t++)
        for (ptrdiff_t r = 0; r < B; r++) {
            const double *x = p->xs + (t * B + r) * I, *h_prev = o->hs + t * BH + r * H;
            const double *c_prev = o->cs + t * BH + r * H;
            double *h = o->hs + (t + 1) * BH + r * H, *c = o->cs + (t + 1) * BH + r * H;
            double *act = o->gates + (t * B + r) * N, *hn = o->hn + t * BH + r * H;
            if (past(p, t, r)) {
                for (ptrdiff_t j = 0; j < H; j++) {
                    h[j] = h_prev[j];
                    c[j] = c_prev[j];
                }
                continue;
            }
            // zx = x_t W + b[0]; zh = h_{t-1} U (+ b[1], the GRU's)
            for (ptrdiff_t n = 0; n < N; n++) {
                zx[n] = p->b[n];
                zh[n] = p->kind == FL_GRU ? p->b[N + n] : 0;
                for (ptrdiff_t i = 0; i < I; i++)
                    zx[n] += x[i] * p->W[i * N + n];
                for (ptrdiff_t k = 0; k < H; k++)
                    zh[n] += h_prev[k] * p->U[k * N + n];
            }
            for (ptrdiff_t j = 0; j < H; j++) {
                if (p->kind == FL_LSTM) {
                    const double ig = sigmoid(zx[j] + zh[j]), fg = sigmoid(zx[H + j] + zh[H + j]);
                    const double gg = tanh(zx[2 * H + j] + zh[2 * H + j]);
                    const double og = sigmoid(zx[3 * H + j] + zh[3 * H + j]);
                    c[j] = fg * c_prev[j] + ig * gg;
                    h[j] = og * tanh(c[j]);
                    act[j] = ig, act[H + j] = fg, act[2 * H + j] = gg, act[3 * H + j] = og;
                } else if (p->kind == FL_GRU) {
                    const double rg = sigmoid(zx[j] + zh[j]), zg = sigmoid(zx[H + j] + zh[H + j]);
                    const double ng = tanh(zx[2 * H + j] + rg * zh[2 * H + j]);
                    hn[j] = zh[2 * H + j];
                    h[j] = (1 - zg) * ng + zg * h_prev[j];
                    act[j] = rg, act[H + j] = zg, act[2 * H + j] = ng;
                } else {
                    h[j] = tanh(zx[j] + zh[j]);
                }
            }
        }
    free(zx);
    free(zh);
}

/* The backward through time of naive_forward's results, from dhs (every step's h_t), dh_T and
 * dc_T; past a row's end no gradient is made and dh, dc carry. dzx is the gradient of the
 * input-side pre-activation, dzh of the recurrent side: the same but for the GRU's n block, which
 * the reset gate scales on the recurrent side. */
static void naive_backward(const struct problem *p, struct results *o)
{
    const ptrdiff_t T = p->T, B = p->B, I = p->I, H = p->H, N = p->N, BH = B * H;
    o->dxs = zeros(T * B * p->I);
    o->dW = zeros(I * N);
    o->dU = zeros(H * N);
    o->db = zeros(p->R * N);
    double *dh = zeros(BH), *dc = zeros(BH), *dzx = zeros(N), *dzh = zeros(N);
    double *direct = zeros(H);
    for (ptrdiff_t i = 0; i < BH; i++) {
        dh[i] = p->dh_T ? p->dh_T[i] : 0;
        dc[i] = p->dc_T && p->kind == FL_LSTM ? p->dc_T[i] : 0;
    }
    for (ptrdiff_t t = T - 1; t >= 0; t--)
        for (ptrdiff_t r = 0; r < B; r++) {
            if (past(p, t, r))
                continue;
            const double *x = p->xs + (t * B + r) * I, *h_prev = o->hs + t * BH + r * H;
            const double *h = o->hs + (t + 1) * BH + r * H;
            const double *c_prev = o->cs + t * BH + r * H, *c = o->cs + (t + 1) * BH + r * H;
            const double *act = o->gates + (t * B + r) * N, *hn = o->hn + t * BH + r * H;
            double *dh_r = dh + r * H, *dc_r = dc + r * H;
            for (ptrdiff_t j = 0; j < H; j++) {
                const double dht = (p->dhs ? p->dhs[t * BH + r * H + j] : 0) + dh_r[j];
                direct[j] = 0;
                if (p->kind == FL_LSTM) {
                    const double ig = act[j], fg = act[H + j], gg = act[2 * H + j], og = act[3 * H + j];
                    const double tc = tanh(c[j]);
                    const double dct = dc_r[j] + dht * og * (1 - tc * tc);
                    dzx[j] = dct * gg * ig * (1 - ig);
                    dzx[H + j] = dct * c_prev[j] * fg * (1 - fg);
                    dzx[2 * H + j] = dct * ig * (1 - gg * gg);
                    dzx[3 * H + j] = dht * tc * og * (1 - og);
                    dc_r[j] = dct * fg;
                    for (int k = 0; k < 4; k++)
                        dzh[k * H + j] = dzx[k * H + j];
                } else if (p->kind == FL_GRU) {
                    const double rg = act[j], zg = act[H + j], ng = act[2 * H + j];
                    const double dn = dht * (1 - zg) * (1 - ng * ng);
                    dzx[j] = dzh[j] = dn * hn[j] * rg * (1 - rg);
                    dzx[H + j] = dzh[H + j] = dht * (h_prev[j] - ng) * zg * (1 - zg);
                    dzx[2 * H + j] = dn;
                    dzh[2 * H + j] = dn * rg;
                    direct[j] = dht * zg;
                } else {
                    dzx[j] = dzh[j] = dht * (1 - h[j] * h[j]);
                }
            }
            // dx_t = dzx W^T; dh_{t-1} = direct + dzh U^T; dW += x^T dzx; dU += h^T dzh; db += dz
            for (ptrdiff_t i = 0; i < I; i++) {
                double sum = 0;
                for (ptrdiff_t n = 0; n < N; n++)
                    sum += dzx[n] * p->W[i * N + n];
                o->dxs[(t * B + r) * I + i] = sum;
            }
            for (ptrdiff_t k = 0; k < H; k++) {
                double sum = direct[k];
                for (ptrdiff_t n = 0; n < N; n++)
                    sum += dzh[n] * p->U[k * N + n];
                dh_r[k] = sum;
            }
            for (ptrdiff_t n = 0; n < N; n++) {
                for (ptrdiff_t i = 0; i < I; i++)
                    o->dW[i * N + n] += x[i] * dzx[n];
                for (ptrdiff_t k = 0; k < H; k++)
                    o->dU[k * N + n] += h_prev[k] * dzh[n];
                o->db[n] += dzx[n];
                if (p->kind == FL_GRU)
                    o->db[N + n] += dzh[n];
            }
        }
    o->dh0 = dh;
    o->dc0 = dc;
    free(dzx);
    free(dzh);
    free(direct);
}

/* ---- the library's side: arrays of the dtype ----------------------------------------------------- */

static void *typed(const double *values, ptrdiff_t n, int dtype)
{
    if (!values)
        return NULL;
    void *a = malloc((dtype ? sizeof(double) : sizeof(float)) * (size_t)(n > 0 ? n : 1));
    for (ptrdiff_t i = 0; i < n; i++)
        set_element(a, dtype, i, values[i]);
    return a;
}

/* An output array of n elements, NaN throughout: a pass must write it, never read it. */
static void *output(ptrdiff_t n, int dtype)
{
    void *a = malloc((dtype ? sizeof(double) : sizeof(float)) * (size_t)(n > 0 ? n : 1));
    for (ptrdiff_t i = 0; i < n; i++)
        set_element(a, dtype, i, NAN);
    return a;
}

/* The library's arrays of one run, and their sizes. */
struct run {
    void *x, *h0, *c0, *W, *U, *b, *dhs, *dh_T, *dc_T;
    void *h, *c, *gates, *hn, *dx, *dh0, *dc0, *dW, *dU, *db;
    ptrdiff_t n_h, n_c, n_gates, n_hn, n_dx, n_dh0, n_dc0, n_dW, n_dU, n_db;
};

static void free_run(struct run *r)
{
    void *arrays[] = {r->x, r->h0, r->c0, r->W, r->U, r->b, r->dhs, r->dh_T, r->dc_T, r->h, r->c,
                      r->gates, r->hn, r->dx, r->dh0, r->dc0, r->dW, r->dU, r->db};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
        free(arrays[i]);
}

/* The library's arrays for a problem: its inputs in the dtype, and its outputs, NaN throughout. */
static void prepare_run(const struct problem *p, struct run *r)
{
    const ptrdiff_t steps = p->cell ? 1 : p->T, states = p->cell ? 1 : p->T + 1;
    const ptrdiff_t B = p->B, I = p->I, H = p->H, N = p->N, BH = B * H;
    const int lstm = p->kind == FL_LSTM, gru = p->kind == FL_GRU;
    const int dt = p->dtype;
    memset(r, 0, sizeof *r);
    r->x = typed(p->xs, steps * B * I, dt);
    r->h0 = typed(p->h0, BH, dt);
    r->c0 = typed(p->c0, BH, dt);
    r->W = typed(p->W, I * N, dt);
    r->U = typed(p->U, H * N, dt);
    r->b = typed(p->b, p->R * N, dt);
    r->dhs = typed(p->dhs, steps * BH, dt);
    r->dh_T = typed(p->dh_T, BH, dt);
    r->dc_T = typed(p->dc_T, BH, dt);
    r->n_h = states * BH;
    r->n_c = lstm ? states * BH : 0;
    r->n_gates = p->kind != FL_RNN ? steps * B * N : 0;
    r->n_hn = gru ? steps * BH : 0;
    r->n_dx = steps * B * I;
    r->n_dh0 = BH;
    r->n_dc0 = lstm ? BH : 0;
    r->n_dW = I * N;
    r->n_dU = H * N;
    r->n_db = p->R * N;
    r->h = output(r->n_h, dt);
    r->c = lstm ? output(r->n_c, dt) : NULL;
    r->gates = p->kind != FL_RNN ? output(r->n_gates, dt) : NULL;
    r->hn = gru ? output(r->n_hn, dt) : NULL;
    r->dx = output(r->n_dx, dt);
    r->dh0 = output(r->n_dh0, dt);
    r->dc0 = lstm ? output(r->n_dc0, dt) : NULL;
    r->dW = output(r->n_dW, dt);
    r->dU = output(r->n_dU, dt);
    r->db = output(r->n_db, dt);
}

/* The argument structs of a run, which the entry-check tests spoil one field at a time. */
struct call {
    struct fl_desc d;
    struct fl_weights w;
    struct fl_inputs in;
    struct fl_state state;
    struct fl_output_grads dout;
    struct fl_grads grads;
};

static struct call call_of(const struct problem *p, const struct run *r, int simd, int threads)
{
    const struct call c = {{p->kind, p->dtype, p->T, p->B, p->I, p->H, p->lengths, threads, simd,
                            NULL},
                           {r->W, r->U, r->b},
                           {r->x, r->h0, r->c0},
                           {r->h, r->c, r->gates, r->hn},
                           {r->dhs, r->dh_T, r->dc_T},
                           {r->dx, r->dh0, r->dc0, r->dW, r->dU, r->db}};
    return c;
}

/* Calls the entry point of a pass (enum fl_pass) with the call's arguments (NULL ones as NULL). */
static int call_pass(int pass, const struct fl_desc *d, const struct fl_weights *w,
                     const struct fl_inputs *in, const struct fl_state *state,
                     const struct fl_output_grads *dout, const struct fl_grads *grads, void *work,
                     size_t bytes)
{
    switch (pass) {
    case FL_FORWARD:
        return fl_forward(d, state, in, w, work, bytes);
    case FL_CELL_FORWARD:
        return fl_cell_forward(d, state, in, w, work, bytes);
    case FL_BACKWARD:
        return fl_backward(d, grads, state, dout, in, w, work, bytes);
    default:
        return fl_cell_backward(d, grads, state, dout, in, w, work, bytes);
    }
}

static int pass_of(int cell, int backward)
{
    return cell ? (backward ? FL_CELL_BACKWARD : FL_CELL_FORWARD)
                : (backward ? FL_BACKWARD : FL_FORWARD);
}

/* Runs the problem's forward then backward at one SIMD level and thread count, their stalls
 * added to *stalled_ns (fl_desc); returns the first status that is not FL_OK, or FL_OK. The
 * workspaces are exactly as large as fl_workspace says (so a sanitizer sees any access past
 * them). */
static int run_passes(const struct problem *p, int simd, int threads, struct run *r,
                      uint64_t *stalled_ns)
{
    prepare_run(p, r);
    struct call c = call_of(p, r, simd, threads);
    c.d.stalled_ns = stalled_ns;
    for (int backward = 0; backward <= 1; backward++) {
        const int pass = pass_of(p->cell, backward);
        size_t bytes = 0;
        int status = fl_workspace(pass, &c.d, &bytes);
        if (status != FL_OK)
            return status;
        void *work = malloc(bytes ? bytes : 1);
        status = call_pass(pass, &c.d, &c.w, &c.in, &c.state, &c.dout, &c.grads, work, bytes);
        free(work);
        if (status != FL_OK)
            return status;
    }
    return FL_OK;
}

/* ---- comparisons ----------------------------------------------------------------------------------- */

/* The worst relative error seen, per dtype, for the summary. */
static double worst_error[2];

/* Compares n elements of the library's array with the naive one: |got - want| <= tol (|want| + 1),
 * skipping (step, row) pairs past a row's end where `rows_of` (elements per row, 0 for none) says the
 * array holds nothing there (gates, hn). Returns the failures. */
static long compare(struct check_group *g, const char *what, const char *where,
                    const struct problem *p, const void *got, const double *want, ptrdiff_t n,
                    ptrdiff_t rows_of, double tol)
{
    long wrong = 0;
    ptrdiff_t first = -1;
    for (ptrdiff_t i = 0; i < n; i++) {
        if (rows_of && past(p, i / rows_of / p->B, i / rows_of % p->B))
            continue;
        const double error = fabs(element(got, p->dtype, i) - want[i]) / (fabs(want[i]) + 1);
        if (!(error <= tol)) {
            first = wrong++ ? first : i;
        } else if (error > worst_error[p->dtype]) {
            worst_error[p->dtype] = error;
        }
    }
    check(g, wrong == 0, "%s: %s, %ld of %td elements wrong, first [%td] = %.17g, naive %.17g",
          where, what, wrong, n, first, first < 0 ? 0 : element(got, p->dtype, first),
          first < 0 ? 0 : want[first]);
    return wrong;
}

static const char *kind_name(int kind)
{
    return kind == FL_LSTM ? "lstm" : kind == FL_GRU ? "gru" : "rnn";
}

/* Whether two runs wrote the same bits. */
static int same_bits(const struct run *a, const struct run *b, int dtype)
{
    const size_t size = dtype ? sizeof(double) : sizeof(float);
    const void *x[] = {a->h, a->c, a->gates, a->hn, a->dx, a->dh0, a->dc0, a->dW, a->dU, a->db};
    const void *y[] = {b->h, b->c, b->gates, b->hn, b->dx, b->dh0, b->dc0, b->dW, b->dU, b->db};
    const ptrdiff_t n[] = {a->n_h, a->n_c, a->n_gates, a->n_hn, a->n_dx, a->n_dh0, a->n_dc0,
                           a->n_dW, a->n_dU, a->n_db};
    for (int i = 0; i < 10; i++)
        if (n[i] && memcmp(x[i], y[i], size * (size_t)n[i]) != 0)
            return 0;
    return 1;
}

/* Tolerances relative to |want| + 1: the double results differ from naive C by rounding alone;
 * float ones by float rounding through the steps. */
#define TOL_F64 1e-12
#define TOL_F32 1e-5

/* Runs the problem at every level and 1-3 threads against the naive version. */
static void check_problem(struct check_group *g, const struct problem *p, const char *variant)
{
    struct results o = {0};
    naive_forward(p, &o);
    naive_backward(p, &o);
    const ptrdiff_t B = p->B, H = p->H, BH = B * H;
    const double tol = p->dtype ? TOL_F64 : TOL_F32;
    // a cell's state arrays are a step's: the naive ones from [1]
    const double *h = p->cell ? o.hs + BH : o.hs, *c = p->cell ? o.cs + BH : o.cs;
    for (int simd = 0; simd <= fl_simd_max(); simd++) {
        struct run first = {0}; /* the one-thread run, which the others must match */
        int have_first = 0;
        for (int threads = 1; threads <= 3; threads++) {
            char where[160];
            snprintf(where, sizeof where, "%s %s %s T%td B%td I%td H%td %s %s threads %d",
                     p->cell ? "cell" : "sequence", kind_name(p->kind), p->dtype ? "f64" : "f32",
                     p->T, B, p->I, H, variant, fl_simd_name(simd), threads);
            struct run r;
            // the stalls' count is added to, by less than a minute
            const uint64_t before = (uint64_t)1 << 40, minute = 60 * (uint64_t)1000000000;
            uint64_t stalled_ns = before;
            const int status = run_passes(p, simd, threads, &r, &stalled_ns);
            if (!check(g, status == FL_OK, "%s: status %d", where, status)) {
                free_run(&r);
                continue;
            }
            check(g, stalled_ns - before < minute,
                  "%s: stalled_ns %llu, from %llu", where, (unsigned long long)stalled_ns,
                  (unsigned long long)before);
            if (threads > 1) {
                check(g, have_first && same_bits(&first, &r, p->dtype),
                      "%s: bits differ from 1 thread", where);
                free_run(&r);
                continue;
            }
            compare(g, "h", where, p, r.h, h, r.n_h, 0, tol);
            if (p->kind == FL_LSTM) {
                compare(g, "c", where, p, r.c, c, r.n_c, 0, tol);
                compare(g, "dc0", where, p, r.dc0, o.dc0, BH, 0, tol);
            }
            if (p->kind != FL_RNN)
                compare(g, "gates", where, p, r.gates, o.gates, r.n_gates, p->N, tol);
            if (p->kind == FL_GRU)
                compare(g, "hn", where, p, r.hn, o.hn, r.n_hn, H, tol);
            compare(g, "dx", where, p, r.dx, o.dxs, r.n_dx, 0, tol);
            compare(g, "dh0", where, p, r.dh0, o.dh0, BH, 0, tol);
            compare(g, "dW", where, p, r.dW, o.dW, r.n_dW, 0, tol);
            compare(g, "dU", where, p, r.dU, o.dU, r.n_dU, 0, tol);
            compare(g, "db", where, p, r.db, o.db, r.n_db, 0, tol);
            first = r;
            have_first = 1;
        }
        free_run(&first);
    }
    free_results(&o);
}

/* The variants of a sequence problem: lengths or not, optional arrays given or NULL. */
enum variant { ALL_GIVEN, WITH_LENGTHS, NULL_STATE_AND_DHS, LENGTHS_NULL_FINAL_GRADS, VARIANTS };
static const char *const variant_names[] = {"all arrays", "lengths", "NULL h0 c0 dhs",
                                            "lengths, NULL c0 dh_T dc_T"};

/* A random problem of the kind, dtype and sizes; a cell's has one step and no dhs or lengths. */
static struct problem make_problem(struct rng *rng, int kind, int dtype, int cell, ptrdiff_t T,
                                   ptrdiff_t B, ptrdiff_t I, ptrdiff_t H, int variant)
{
    struct problem p = {.kind = kind, .dtype = dtype, .cell = cell, .T = cell ? 1 : T, .B = B,
                        .I = I, .H = H, .G = fl_gates(kind), .R = fl_bias_rows(kind)};
    p.N = p.G * H;
    const ptrdiff_t BH = B * H;
    p.xs = random_array(rng, p.T * B * I, dtype, 1);
    // weights of about torch's scale for the larger shapes, so that sums stay near 1
    p.W = random_array(rng, I * p.N, dtype, I > 11 ? 2 / sqrt((double)I) : 0.6);
    p.U = random_array(rng, H * p.N, dtype, H > 11 ? 2 / sqrt((double)H) : 0.6);
    p.b = random_array(rng, p.R * p.N, dtype, 0.5);
    const int lengths = !cell && (variant == WITH_LENGTHS || variant == LENGTHS_NULL_FINAL_GRADS);
    if (lengths) { // rows that end early (one step short), never start, and run whole
        p.lengths = malloc(sizeof(ptrdiff_t) * (B + 1));
        for (ptrdiff_t r = 0; r < B; r++)
            p.lengths[r] = r % 3 == 0 ? (T > 0 ? T - 1 : 0) : r % 3 == 1 ? 0 : T;
    }
    if (cell || variant != NULL_STATE_AND_DHS) {
        p.h0 = random_array(rng, BH, dtype, 1);
        if (kind == FL_LSTM && (cell || variant != LENGTHS_NULL_FINAL_GRADS))
            p.c0 = random_array(rng, BH, dtype, 1);
    }
    if (!cell && variant != NULL_STATE_AND_DHS)
        p.dhs = random_array(rng, p.T * BH, dtype, 1);
    // a cell's dh and dc may be NULL (but the GRU's dh) in the last variant, as a sequence's
    const int final_grads = variant != LENGTHS_NULL_FINAL_GRADS;
    if (final_grads || (cell && kind == FL_GRU))
        p.dh_T = random_array(rng, BH, dtype, 1);
    if (final_grads && kind == FL_LSTM)
        p.dc_T = random_array(rng, BH, dtype, 1);
    return p;
}

long test_passes(void)
{
    struct check_group g = check_begin("passes vs naive C");
    struct rng rng = {0x5eed0004};
    static const ptrdiff_t Ts[] = {0, 1, 5}, Bs[] = {1, 3}, Is[] = {1, 7}, Hs[] = {1, 5, 17};
    // larger shapes, each with a reason: threads at work (team_size), the steps computing their
    // own input side (B >= 8), backward dot products (B = 1, H >= 512), rows past 4-row tiles,
    // two rows (pair tiles) with units past a whole tile, a last unit group of one unit past
    // whole tiles (computed as edge columns) on one row and on two row panels, one row in the
    // wider AVX-512 row tile's groups of 80 (H = 150: 3 groups of 64, 2 of 80), and empty
    // dimensions
    static const ptrdiff_t more[][4] = {{4, 9, 7, 64}, {2, 1, 3, 512}, {2, 16, 16, 128},
                                        {3, 5, 2, 9},  {3, 13, 0, 20}, {4, 2, 6, 41},
                                        {3, 1, 4, 65}, {3, 6, 5, 65},  {3, 1, 5, 150},
                                        {3, 0, 2, 3},  {2, 2, 3, 0}};
    const ptrdiff_t cases = 3 * 2 * 2 * 3 + (ptrdiff_t)(sizeof more / sizeof more[0]);
    for (int kind = FL_LSTM; kind <= FL_RNN; kind++)
        for (int dtype = 0; dtype <= 1; dtype++)
            for (int cell = 0; cell <= 1; cell++)
                for (ptrdiff_t q = 0; q < cases; q++) {
                    ptrdiff_t T, B, I, H;
                    if (q < 36) {
                        T = Ts[q / 12], B = Bs[q / 6 % 2], I = Is[q / 3 % 2], H = Hs[q % 3];
                    } else {
                        T = more[q - 36][0], B = more[q - 36][1], I = more[q - 36][2],
                        H = more[q - 36][3];
                    }
                    if (cell && ((q < 36 && T != 1) || H >= 512))
                        continue; /* a cell's T is one step: the small shapes once; no dots */
                    for (int v = 0; v < VARIANTS; v++) {
                        if (cell && (v == WITH_LENGTHS || v == NULL_STATE_AND_DHS))
                            continue; /* cells take no lengths and require their state */
                        if (q >= 36 && (v == WITH_LENGTHS || v == NULL_STATE_AND_DHS))
                            continue; /* the larger shapes (slow with threads) in two variants */
                        struct problem p = make_problem(&rng, kind, dtype, cell, T, B, I, H, v);
                        check_problem(&g, &p, variant_names[v]);
                        free_problem(&p);
                    }
                }
    char note[128];
    snprintf(note, sizeof note, "worst error/(|naive|+1): f32 %.2g (tol %g), f64 %.2g (tol %g)",
             worst_error[0], TOL_F32, worst_error[1], TOL_F64);
    return check_summary(&g, note);
}

/* ---- the entry points' checks ----------------------------------------------------------------- */

#define CANARY 0xA5

/* The run's output arrays, filled with canary bytes; whether they still hold them. */
static void fill_outputs(struct run *r, int dtype)
{
    const size_t size = dtype ? sizeof(double) : sizeof(float);
    void *x[] = {r->h, r->c, r->gates, r->hn, r->dx, r->dh0, r->dc0, r->dW, r->dU, r->db};
    const ptrdiff_t n[] = {r->n_h, r->n_c, r->n_gates, r->n_hn, r->n_dx, r->n_dh0, r->n_dc0,
                           r->n_dW, r->n_dU, r->n_db};
    for (int i = 0; i < 10; i++)
        if (x[i])
            memset(x[i], CANARY, size * (size_t)n[i]);
}

static int outputs_intact(const struct run *r, int dtype)
{
    const size_t size = dtype ? sizeof(double) : sizeof(float);
    const void *x[] = {r->h, r->c, r->gates, r->hn, r->dx, r->dh0, r->dc0, r->dW, r->dU, r->db};
    const ptrdiff_t n[] = {r->n_h, r->n_c, r->n_gates, r->n_hn, r->n_dx, r->n_dh0, r->n_dc0,
                           r->n_dW, r->n_dU, r->n_db};
    for (int i = 0; i < 10; i++)
        for (size_t k = 0; x[i] && k < size * (size_t)n[i]; k++)
            if (((const unsigned char *)x[i])[k] != CANARY)
                return 0;
    return 1;
}

/* Calls a pass with a workspace of `bytes` (NULL when `null_work`), the outputs and workspace
 * filled with canary bytes; checks the status is `want` and, when it is an error, that neither
 * the outputs nor the workspace changed. */
static void expect(struct check_group *g, const char *what, int want, int pass, struct run *r,
                   int dtype, const struct call *c, size_t bytes, int null_work)
{
    void *work = malloc(bytes + 1);
    memset(work, 0x5A, bytes + 1);
    fill_outputs(r, dtype);
    const int status = call_pass(pass, &c->d, &c->w, &c->in, &c->state, &c->dout, &c->grads,
                                 null_work ? NULL : work, bytes);
    check(g, status == want, "pass %d %s: status %d, expected %d", pass, what, status, want);
    if (want != FL_OK) {
        int work_intact = 1;
        for (size_t k = 0; k <= bytes; k++)
            work_intact &= ((unsigned char *)work)[k] == 0x5A;
        check(g, outputs_intact(r, dtype) && work_intact, "pass %d %s: wrote before failing", pass,
              what);
    }
    free(work);
}

long test_entry_checks(void)
{
    struct check_group g = check_begin("entry point checks");
    struct rng rng = {0x5eed0005};
    for (int kind = FL_LSTM; kind <= FL_RNN; kind++)
        for (int dtype = 0; dtype <= 1; dtype++)
            for (int pass = FL_FORWARD; pass <= FL_CELL_BACKWARD; pass++) {
                const int cell = pass == FL_CELL_FORWARD || pass == FL_CELL_BACKWARD;
                const int backward = pass == FL_BACKWARD || pass == FL_CELL_BACKWARD;
                struct problem p = make_problem(&rng, kind, dtype, cell, 3, 2, 3, 4, WITH_LENGTHS);
                struct run r;
                prepare_run(&p, &r);
                const struct call ok = call_of(&p, &r, 0, 2);
                size_t bytes = 0;
                const int status = fl_workspace(pass, &ok.d, &bytes);
                check(&g, status == FL_OK && bytes > 0, "fl_workspace(%d) status %d, %zu bytes",
                      pass, status, bytes);
                // the workspace: one byte short, or none
                expect(&g, "workspace one byte short", FL_ERR_WORKSPACE, pass, &r, dtype, &ok,
                       bytes - 1, 0);
                expect(&g, "NULL workspace", FL_ERR_WORKSPACE, pass, &r, dtype, &ok, bytes, 1);
                // sizes
                struct call c;
#define SPOIL(field, value, want, what)                                                            \
    do {                                                                                           \
        c = ok;                                                                                    \
        c.field = value;                                                                           \
        expect(&g, what, want, pass, &r, dtype, &c, bytes, 0);                                     \
    } while (0)
                SPOIL(d.T, -1, cell ? FL_OK : FL_ERR_SIZE, "T = -1 (a cell ignores T)");
                SPOIL(d.B, -1, FL_ERR_SIZE, "B = -1");
                SPOIL(d.I, -1, FL_ERR_SIZE, "I = -1");
                SPOIL(d.H, -1, FL_ERR_SIZE, "H = -1");
                SPOIL(d.num_threads, 0, FL_ERR_SIZE, "num_threads = 0");
                const ptrdiff_t too_long[] = {3, 4}, negative[] = {-1, 2};
                if (!cell) {
                    SPOIL(d.lengths, too_long, FL_ERR_SIZE, "a length above T");
                    SPOIL(d.lengths, negative, FL_ERR_SIZE, "a negative length");
                }
                // kinds, dtypes, SIMD levels
                SPOIL(d.kind, 3, FL_ERR_ARGUMENT, "kind 3");
                SPOIL(d.kind, -1, FL_ERR_ARGUMENT, "kind -1");
                SPOIL(d.dtype, 2, FL_ERR_ARGUMENT, "dtype 2");
                SPOIL(d.simd, fl_simd_max() + 1, FL_ERR_SIMD, "simd above fl_simd_max()");
                SPOIL(d.simd, -1, FL_ERR_SIMD, "simd -1");
                // required arrays
                SPOIL(w.W, NULL, FL_ERR_ARGUMENT, "W NULL");
                SPOIL(w.U, NULL, FL_ERR_ARGUMENT, "U NULL");
                if (!backward) // the backward passes never read b
                    SPOIL(w.b, NULL, FL_ERR_ARGUMENT, "b NULL");
                SPOIL(in.x, NULL, FL_ERR_ARGUMENT, "x NULL");
                if (!backward || kind == FL_RNN)
                    SPOIL(state.h, NULL, FL_ERR_ARGUMENT, "h NULL");
                if (kind == FL_LSTM)
                    SPOIL(state.c, NULL, FL_ERR_ARGUMENT, "c NULL");
                if (kind != FL_RNN)
                    SPOIL(state.gates, NULL, FL_ERR_ARGUMENT, "gates NULL");
                if (kind == FL_GRU)
                    SPOIL(state.hn, NULL, FL_ERR_ARGUMENT, "hn NULL");
                if (cell) {
                    SPOIL(in.h0, NULL, FL_ERR_ARGUMENT, "a cell's h_prev NULL");
                    if (kind == FL_LSTM)
                        SPOIL(in.c0, NULL, FL_ERR_ARGUMENT, "a cell's c_prev NULL");
                }
                if (backward) {
                    SPOIL(grads.dx, NULL, FL_ERR_ARGUMENT, "dx NULL");
                    SPOIL(grads.dh0, NULL, FL_ERR_ARGUMENT, "dh0 NULL");
                    SPOIL(grads.dW, NULL, FL_ERR_ARGUMENT, "dW NULL");
                    SPOIL(grads.dU, NULL, FL_ERR_ARGUMENT, "dU NULL");
                    SPOIL(grads.db, NULL, FL_ERR_ARGUMENT, "db NULL");
                    if (kind == FL_LSTM)
                        SPOIL(grads.dc0, NULL, FL_ERR_ARGUMENT, "dc0 NULL");
                    if (cell && kind == FL_GRU)
                        SPOIL(dout.dh_T, NULL, FL_ERR_ARGUMENT, "a GRU cell's dh NULL");
                }
#undef SPOIL
                // whole structs missing
                c = ok;
                check(&g, call_pass(pass, NULL, &c.w, &c.in, &c.state, &c.dout, &c.grads, NULL, 0) ==
                              FL_ERR_ARGUMENT, "pass %d: NULL descriptor", pass);
                check(&g, call_pass(pass, &c.d, NULL, &c.in, &c.state, &c.dout, &c.grads, NULL, bytes) !=
                              FL_OK, "pass %d: NULL weights accepted", pass);
                // then the call itself works, with exactly the workspace asked for
                if (!backward)
                    expect(&g, "valid call", FL_OK, pass, &r, dtype, &ok, bytes, 0);
                free_run(&r);
                free_problem(&p);
            }
    // fl_workspace's own arguments
    const struct fl_desc d = {FL_LSTM, FL_FLOAT32, 3, 2, 3, 4, NULL, 1, 0, NULL};
    size_t bytes;
    check(&g, fl_workspace(4, &d, &bytes) == FL_ERR_ARGUMENT, "fl_workspace: pass 4 accepted");
    check(&g, fl_workspace(-1, &d, &bytes) == FL_ERR_ARGUMENT, "fl_workspace: pass -1 accepted");
    check(&g, fl_workspace(FL_FORWARD, &d, NULL) == FL_ERR_ARGUMENT,
          "fl_workspace: NULL bytes accepted");
    check(&g, fl_workspace(FL_FORWARD, NULL, &bytes) == FL_ERR_ARGUMENT,
          "fl_workspace: NULL descriptor accepted");
    // fl_matmul's checks, C untouched on error
    {
        float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 0, 0, 1, 1, 1}, C[4] = {-7, -7, -7, -7};
        size_t need;
        check(&g, fl_matmul_workspace(FL_FLOAT32, 2, 2, 3, 1, 0, &need) == FL_OK,
              "fl_matmul_workspace of a valid product failed");
        char *work = malloc(need);
        const struct {
            int dtype;
            ptrdiff_t M;
            int threads, simd, want;
            size_t bytes;
            const void *A;
            const char *what;
        } cases[] = {
            {2, 2, 1, 0, FL_ERR_ARGUMENT, need, A, "dtype 2"},
            {FL_FLOAT32, -1, 1, 0, FL_ERR_SIZE, need, A, "M = -1"},
            {FL_FLOAT32, 2, 0, 0, FL_ERR_SIZE, need, A, "0 threads"},
            {FL_FLOAT32, 2, 1, fl_simd_max() + 1, FL_ERR_SIMD, need, A, "simd above the max"},
            {FL_FLOAT32, 2, 1, 0, FL_ERR_WORKSPACE, need - 1, A, "workspace one byte short"},
            {FL_FLOAT32, 2, 1, 0, FL_ERR_ARGUMENT, need, NULL, "A NULL"},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            const int status = fl_matmul(cases[i].dtype, C, cases[i].A, B, cases[i].M, 2, 3, 0, 0,
                                         cases[i].threads, cases[i].simd, work, cases[i].bytes);
            check(&g, status == cases[i].want && C[0] == -7 && C[3] == -7,
                  "fl_matmul %s: status %d, expected %d, C[0] %g", cases[i].what, status,
                  cases[i].want, C[0]);
        }
        check(&g, fl_matmul(FL_FLOAT32, C, A, B, 2, 2, 3, 0, 0, 1, 0, work, need) == FL_OK &&
                      C[0] == 4 && C[1] == 5 && C[2] == 10 && C[3] == 11,
              "fl_matmul of a 2x3 by 3x2 product: %g %g %g %g", C[0], C[1], C[2], C[3]);
        free(work);
    }
    // sizes too large for any memory, last: under ubsan a size computation that overflows stops
    // the run here
    for (int kind = FL_LSTM; kind <= FL_RNN; kind++)
        for (int pass = FL_FORWARD; pass <= FL_CELL_BACKWARD; pass++) {
            const struct fl_desc huge = {kind, FL_FLOAT64, 3, 2, 3, PTRDIFF_MAX / 2,
                                         NULL, 1, 0, NULL};
            const int status = fl_workspace(pass, &huge, &bytes);
            check(&g, status == FL_ERR_OVERFLOW, "fl_workspace(%d) kind %d, H = PTRDIFF_MAX/2: "
                  "status %d, %zu bytes", pass, kind, status, status == FL_OK ? bytes : 0);
        }
    return check_summary(&g, "workspace, sizes, kinds, dtypes, levels, NULL arrays, overflow");
}

/* ---- streams: a stack of layers stepped one time step at a time ---------------------------------- */

#define STREAM_MAX_LAYERS 3
#define STREAM_MAX_THREADS 3

/* A stream's arrays in the dtype: the layers' weights and states, x for every step, and the top
 * layer's h after every step, copied out. */
struct stream_run {
    struct fl_stream_layer layer[STREAM_MAX_LAYERS];
    struct fl_stream s;
    void *xs, *top_hs;
};

static void free_stream_run(struct stream_run *r)
{
    for (int l = 0; l < r->s.layers; l++) {
        free((void *)r->layer[l].w.W);
        free((void *)r->layer[l].w.U);
        free((void *)r->layer[l].w.b);
        free(r->layer[l].h);
        free(r->layer[l].c);
    }
    free(r->xs);
    free(r->top_hs);
}

static void prepare_stream(const struct problem *p, int layers, int simd, int threads,
                           struct stream_run *r)
{
    *r = (struct stream_run){.s = {.kind = p[0].kind, .dtype = p[0].dtype, .B = p[0].B,
                                   .layers = layers, .layer = r->layer, .num_threads = threads,
                                   .simd = simd}};
    for (int l = 0; l < layers; l++) {
        const ptrdiff_t BH = p[l].B * p[l].H;
        r->layer[l] = (struct fl_stream_layer){
            .I = p[l].I,
            .H = p[l].H,
            .w = {typed(p[l].W, p[l].I * p[l].N, p[l].dtype),
                  typed(p[l].U, p[l].H * p[l].N, p[l].dtype),
                  typed(p[l].b, p[l].R * p[l].N, p[l].dtype)},
            .h = typed(p[l].h0, BH, p[l].dtype),
            .c = p[l].kind == FL_LSTM ? typed(p[l].c0, BH, p[l].dtype) : NULL};
    }
    r->xs = typed(p[0].xs, p[0].T * p[0].B * p[0].I, p[0].dtype);
    r->top_hs = output(p[0].T * p[0].B * p[layers - 1].H, p[0].dtype);
}

/* Steps the stream T times, copying the top layer's h out after each step, `pause_us` apart. */
static int run_stream_paced(const struct problem *p, struct stream_run *r, long pause_us)
{
    const int L = r->s.layers;
    const size_t size = p[0].dtype ? sizeof(double) : sizeof(float);
    const ptrdiff_t B = p[0].B, I = p[0].I, H_top = p[L - 1].H;
    size_t bytes;
    int status = fl_stream_workspace(&r->s, &bytes);
    void *work = malloc(bytes + 1);
    for (ptrdiff_t t = 0; status == FL_OK && t < p[0].T; t++) {
        if (t > 0 && pause_us > 0)
            nanosleep(&(struct timespec){0, pause_us * 1000}, NULL);
        status = fl_stream_step(&r->s, (const char *)r->xs + size * (size_t)(t * B * I), work,
                                bytes);
        memcpy((char *)r->top_hs + size * (size_t)(t * B * H_top), r->layer[L - 1].h,
               size * (size_t)(B * H_top));
    }
    free(work);
    return status;
}

static int run_stream(const struct problem *p, struct stream_run *r)
{
    return run_stream_paced(p, r, 0);
}

/* A pool of `threads` threads and the test's threads serving it, threads 1 .. threads-1. */
struct served_pool {
    struct fl_pool *pool;
    int threads;
    pthread_t thread[STREAM_MAX_THREADS];
    struct serving {
        struct fl_pool *pool;
        int index, status;
    } serving[STREAM_MAX_THREADS];
};

static void *serve(void *arg)
{
    struct serving *v = arg;
    v->status = fl_pool_serve(v->pool, v->index);
    return NULL;
}

/* Starts the pool's serving threads; returns 0 when the pool or a thread could not be made. */
static int start_pool(struct served_pool *sp, int threads)
{
    *sp = (struct served_pool){.threads = threads};
    sp->pool = aligned_alloc(64, (fl_pool_bytes() + 63) / 64 * 64);
    if (!sp->pool || fl_pool_init(sp->pool, threads) != FL_OK)
        return 0;
    for (int k = 1; k < threads; k++) {
        sp->serving[k] = (struct serving){sp->pool, k, -1};
        if (pthread_create(&sp->thread[k], NULL, serve, &sp->serving[k]) != 0)
            return 0;
    }
    // until they all serve, steps pass the pool by
    while (fl_pool_serving(sp->pool) < threads - 1)
        sched_yield();
    return 1;
}

/* Stops the pool, waits for its threads and returns whether each served without an error. */
static int stop_pool_threads(struct served_pool *sp)
{
    int served = 1;
    fl_pool_stop(sp->pool);
    for (int k = 1; k < sp->threads; k++) {
        pthread_join(sp->thread[k], NULL);
        served &= sp->serving[k].status == FL_OK;
    }
    return served;
}

/* The same, and frees the pool. */
static int stop_pool(struct served_pool *sp)
{
    const int served = stop_pool_threads(sp);
    free(sp->pool);
    return served;
}

/* A stack of layers (H of each in Hs) against naive_forward run layer by layer, the naive input of
 * each layer above the first the naive hs of the one below; at every level, 1-3 threads. */
static void check_stream(struct check_group *g, struct rng *rng, int kind, int dtype,
                         ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, const ptrdiff_t *Hs, int layers)
{
    struct problem p[STREAM_MAX_LAYERS];
    struct results o[STREAM_MAX_LAYERS] = {{0}};
    for (int l = 0; l < layers; l++) {
        const ptrdiff_t I_l = l ? Hs[l - 1] : I;
        p[l] = make_problem(rng, kind, dtype, 0, T, B, I_l, Hs[l], ALL_GIVEN);
        if (l > 0) { // the input: the naive states of the layer below, steps 1..T
            for (ptrdiff_t i = 0; i < T * B * I_l; i++)
                p[l].xs[i] = o[l - 1].hs[B * I_l + i];
        }
        naive_forward(&p[l], &o[l]);
    }
    const double tol = dtype ? TOL_F64 : TOL_F32;
    const ptrdiff_t top = Hs[layers - 1];
    for (int simd = 0; simd <= fl_simd_max(); simd++) {
        struct stream_run first = {0};
        for (int threads = 1; threads <= STREAM_MAX_THREADS; threads++)
            for (int pooled = 0; pooled <= (threads > 1); pooled++) {
                char where[160];
                snprintf(where, sizeof where,
                         "stream %s %s T%td B%td I%td H%td.. x%d %s threads %d%s", kind_name(kind),
                         dtype ? "f64" : "f32", T, B, I, Hs[0], layers, fl_simd_name(simd),
                         threads, pooled ? " on a pool" : "");
                struct stream_run r;
                struct served_pool sp = {0};
                prepare_stream(p, layers, simd, threads, &r);
                if (pooled && !check(g, start_pool(&sp, threads), "%s: pool not started", where))
                    pooled = 0;
                r.s.pool = pooled ? sp.pool : NULL;
                const int status = run_stream(p, &r);
                if (pooled) {
                    int team = 0;
                    fl_stream_threads(&r.s, &team);
                    const unsigned long calls = fl_pool_calls(sp.pool);
                    check(g, calls == (team > 1 ? (unsigned long)T : 0),
                          "%s: %lu steps ran on the pool, of %td", where, calls, T);
                    check(g, stop_pool(&sp), "%s: a thread served with an error", where);
                }
                if (!check(g, status == FL_OK, "%s: status %d", where, status)) {
                    free_stream_run(&r);
                    continue;
                }
                if (threads == 1) {
                    compare(g, "every step's top h", where, &p[0], r.top_hs,
                            o[layers - 1].hs + B * top, T * B * top, 0, tol);
                    for (int l = 0; l < layers; l++) {
                        const ptrdiff_t BH = B * Hs[l];
                        compare(g, "final h", where, &p[l], r.layer[l].h, o[l].hs + T * BH, BH, 0,
                                tol);
                        if (kind == FL_LSTM)
                            compare(g, "final c", where, &p[l], r.layer[l].c, o[l].cs + T * BH, BH,
                                    0, tol);
                    }
                    first = r;
                    continue;
                }
                const size_t size = dtype ? sizeof(double) : sizeof(float);
                int same = memcmp(first.top_hs, r.top_hs, size * (size_t)(T * B * top)) == 0;
                for (int l = 0; l < layers; l++) {
                    const size_t bytes = size * (size_t)(B * Hs[l]);
                    same &= memcmp(first.layer[l].h, r.layer[l].h, bytes) == 0;
                    same &= kind != FL_LSTM || memcmp(first.layer[l].c, r.layer[l].c, bytes) == 0;
                }
                check(g, same, "%s: bits differ from 1 thread", where);
                free_stream_run(&r);
            }
        free_stream_run(&first);
    }
    for (int l = 0; l < layers; l++) {
        free_results(&o[l]);
        free_problem(&p[l]);
    }
}

long test_streams(void)
{
    struct check_group g = check_begin("streams vs naive C");
    struct rng rng = {0x5eed0006};
    // (T, B, I, layers, H of each): one unit; odd sizes across tile edges; stacks whose steps
    // run on a team or a pool (B = 3, H = 128; the streaming benchmark's B = 1, I = 64, H = 128;
    // three layers of odd H, B = 2); H not a multiple of any tile (65, 200)
    static const ptrdiff_t cases[][7] = {{3, 1, 1, 1, 1},          {5, 3, 7, 2, 9, 17},
                                         {4, 2, 13, 3, 65, 5, 70}, {3, 3, 64, 2, 128, 128},
                                         {3, 1, 33, 1, 200},       {2, 5, 0, 2, 4, 3},
                                         {3, 1, 64, 1, 128},       {2, 2, 40, 3, 70, 100, 65}};
    for (int kind = FL_LSTM; kind <= FL_RNN; kind++)
        for (int dtype = 0; dtype <= 1; dtype++)
            for (size_t q = 0; q < sizeof cases / sizeof cases[0]; q++)
                check_stream(&g, &rng, kind, dtype, cases[q][0], cases[q][1], cases[q][2],
                             &cases[q][4], (int)cases[q][3]);
    return check_summary(&g, "T steps of a 1-3 layer stack, every level, 1-3 threads, pools");
}

/* A stream on a pool that was stopped, its threads gone, steps without it: the same bits as a
 * stream without a pool. */
static void check_stopped_pool(struct check_group *g, struct rng *rng)
{
    struct problem p = make_problem(rng, FL_LSTM, 0, 0, 3, 1, 64, 128, ALL_GIVEN);
    struct stream_run plain, stopped;
    struct served_pool sp;
    prepare_stream(&p, 1, fl_simd_max(), 2, &plain);
    prepare_stream(&p, 1, fl_simd_max(), 2, &stopped);
    if (check(g, start_pool(&sp, 2), "stopped pool: pool not started")) {
        check(g, stop_pool_threads(&sp), "stopped pool: a thread served with an error");
        fl_pool_stop(sp.pool); // a second stop does nothing
        stopped.s.pool = sp.pool;
        const int status = run_stream(&p, &plain) | run_stream(&p, &stopped);
        check(g, status == FL_OK, "stopped pool: status %d", status);
        check(g, fl_pool_calls(sp.pool) == 0 && fl_pool_serving(sp.pool) == 0,
              "stopped pool: %lu steps ran on it, %d threads serve it", fl_pool_calls(sp.pool),
              fl_pool_serving(sp.pool));
        check(g, memcmp(plain.top_hs, stopped.top_hs, sizeof(float) * 3 * 128) == 0,
              "stopped pool: bits differ from a stream without a pool");
        free(sp.pool);
    }
    free_stream_run(&plain);
    free_stream_run(&stopped);
    free_problem(&p);
}

/* A pool whose serving thread has gone to sleep between steps (2 ms apart, past its spinning) is
 * woken at each; a pool that no thread serves yet is passed by, never waited for (its thread
 * may be waiting for something the caller holds). Both give a plain stream's bits. */
static void check_idle_pools(struct check_group *g, struct rng *rng)
{
    struct problem p = make_problem(rng, FL_LSTM, 0, 0, 4, 1, 64, 128, ALL_GIVEN);
    struct stream_run plain, slept, unserved;
    struct served_pool sp;
    prepare_stream(&p, 1, fl_simd_max(), 2, &plain);
    prepare_stream(&p, 1, fl_simd_max(), 2, &slept);
    prepare_stream(&p, 1, fl_simd_max(), 2, &unserved);
    int status = run_stream(&p, &plain);
    if (check(g, start_pool(&sp, 2), "idle pools: pool not started")) {
        slept.s.pool = sp.pool;
        status |= run_stream_paced(&p, &slept, 2000);
        check(g, fl_pool_calls(sp.pool) == 4, "sleeping pool: %lu of 4 steps ran on it",
              fl_pool_calls(sp.pool));
        check(g, stop_pool(&sp), "sleeping pool: a thread served with an error");
    }
    struct fl_pool *lone = aligned_alloc(64, (fl_pool_bytes() + 63) / 64 * 64);
    status |= fl_pool_init(lone, 2);
    unserved.s.pool = lone;
    status |= run_stream(&p, &unserved);
    check(g, fl_pool_calls(lone) == 0, "unserved pool: %lu steps ran on it", fl_pool_calls(lone));
    check(g, status == FL_OK, "idle pools: status %d", status);
    const size_t bytes = sizeof(float) * 4 * 128;
    check(g, memcmp(plain.top_hs, slept.top_hs, bytes) == 0,
          "sleeping pool: bits differ from a stream without a pool");
    check(g, memcmp(plain.top_hs, unserved.top_hs, bytes) == 0,
          "unserved pool: bits differ from a stream without a pool");
    free(lone);
    free_stream_run(&plain);
    free_stream_run(&slept);
    free_stream_run(&unserved);
    free_problem(&p);
}

/* Two threads stepping a stream each on one pool at once: a step that finds the pool busy with
 * the other's runs without it. Both give the same bits as a stream without a pool. */
struct pool_caller {
    const struct problem *p;
    struct stream_run *r;
    int status;
};

static void *step_on_pool(void *arg)
{
    struct pool_caller *c = arg;
    c->status = run_stream(c->p, c->r);
    return NULL;
}

static void check_shared_pool(struct check_group *g, struct rng *rng)
{
    struct problem p = make_problem(rng, FL_GRU, 1, 0, 40, 1, 64, 128, ALL_GIVEN);
    struct stream_run plain, shared[2];
    struct served_pool sp;
    prepare_stream(&p, 1, fl_simd_max(), 2, &plain);
    int status = run_stream(&p, &plain);
    if (check(g, start_pool(&sp, 2), "shared pool: pool not started")) {
        struct pool_caller callers[2];
        pthread_t thread[2];
        for (int k = 0; k < 2; k++) {
            prepare_stream(&p, 1, fl_simd_max(), 2, &shared[k]);
            shared[k].s.pool = sp.pool;
            callers[k] = (struct pool_caller){&p, &shared[k], -1};
            pthread_create(&thread[k], NULL, step_on_pool, &callers[k]);
        }
        for (int k = 0; k < 2; k++) {
            pthread_join(thread[k], NULL);
            status |= callers[k].status;
            check(g, memcmp(plain.top_hs, shared[k].top_hs, sizeof(double) * 40 * 128) == 0,
                  "shared pool: caller %d's bits differ from a stream without a pool", k);
            free_stream_run(&shared[k]);
        }
        check(g, stop_pool(&sp), "shared pool: a thread served with an error");
    }
    check(g, status == FL_OK, "shared pool: status %d", status);
    free_stream_run(&plain);
    free_problem(&p);
}

/* A stream's statuses: each spoiled argument is refused before anything is written. */
long test_stream_checks(void)
{
    struct check_group g = check_begin("stream entry checks");
    struct rng rng = {0x5eed0007};
    for (int kind = FL_LSTM; kind <= FL_RNN; kind++)
        for (int dtype = 0; dtype <= 1; dtype++) {
            struct problem p[2] = {make_problem(&rng, kind, dtype, 0, 1, 2, 3, 4, ALL_GIVEN),
                                   make_problem(&rng, kind, dtype, 0, 1, 2, 4, 5, ALL_GIVEN)};
            struct stream_run r;
            prepare_stream(p, 2, 0, 2, &r);
            const size_t size = dtype ? sizeof(double) : sizeof(float);
            size_t bytes = 0;
            check(&g, fl_stream_workspace(&r.s, &bytes) == FL_OK && bytes > 0,
                  "fl_stream_workspace of a valid stream");
            unsigned char *work = malloc(bytes + 1);
            struct fl_stream s;
            struct fl_stream_layer layer[2];
            // each case: spoil a copy of the stream, expect `want` and the states untouched
#define SPOIL_STREAM(statement, want, what, x, work_bytes)                                         \
    do {                                                                                           \
        s = r.s;                                                                                   \
        memcpy(layer, r.layer, sizeof layer);                                                      \
        s.layer = layer;                                                                           \
        statement;                                                                                 \
        memset(r.layer[0].h, CANARY, size * 8);                                                    \
        memset(r.layer[1].h, CANARY, size * 10);                                                   \
        const int status = fl_stream_step(&s, x, work, work_bytes);                                \
        int intact = 1;                                                                            \
        for (size_t k = 0; k < size * 10; k++)                                                     \
            intact &= (k >= size * 8 || ((unsigned char *)r.layer[0].h)[k] == CANARY) &&           \
                      ((unsigned char *)r.layer[1].h)[k] == CANARY;                                \
        check(&g, status == (want), "%s %s: status %d, expected %d", kind_name(kind), what,       \
              status, want);                                                                       \
        check(&g, (want) == FL_OK || intact, "%s %s: wrote before failing", kind_name(kind),      \
              what);                                                                               \
    } while (0)
            SPOIL_STREAM((void)0, FL_OK, "a valid step", r.xs, bytes);
            SPOIL_STREAM((void)0, FL_ERR_WORKSPACE, "workspace one byte short", r.xs, bytes - 1);
            SPOIL_STREAM((void)0, FL_ERR_ARGUMENT, "x NULL", NULL, bytes);
            SPOIL_STREAM(s.layers = 0, FL_ERR_SIZE, "no layers", r.xs, bytes);
            SPOIL_STREAM(s.layer = NULL, FL_ERR_ARGUMENT, "layer NULL", r.xs, bytes);
            SPOIL_STREAM(s.B = -1, FL_ERR_SIZE, "B = -1", r.xs, bytes);
            SPOIL_STREAM(s.num_threads = 0, FL_ERR_SIZE, "num_threads = 0", r.xs, bytes);
            struct fl_pool *pool = aligned_alloc(64, (fl_pool_bytes() + 63) / 64 * 64);
            check(&g, fl_pool_init(pool, 3) == FL_OK, "fl_pool_init of 3 threads");
            SPOIL_STREAM(s.pool = pool, FL_ERR_ARGUMENT, "a pool of 3 threads, 2 asked", r.xs,
                         bytes);
            free(pool);
            SPOIL_STREAM(layer[1].I = 3, FL_ERR_SIZE, "layer 1's I not layer 0's H", r.xs, bytes);
            SPOIL_STREAM(layer[0].H = -1, FL_ERR_SIZE, "H = -1", r.xs, bytes);
            SPOIL_STREAM(s.kind = 3, FL_ERR_ARGUMENT, "kind 3", r.xs, bytes);
            SPOIL_STREAM(s.dtype = 2, FL_ERR_ARGUMENT, "dtype 2", r.xs, bytes);
            SPOIL_STREAM(s.simd = fl_simd_max() + 1, FL_ERR_SIMD, "simd above max", r.xs, bytes);
            SPOIL_STREAM(layer[1].w.W = NULL, FL_ERR_ARGUMENT, "W NULL", r.xs, bytes);
            SPOIL_STREAM(layer[0].w.U = NULL, FL_ERR_ARGUMENT, "U NULL", r.xs, bytes);
            SPOIL_STREAM(layer[1].w.b = NULL, FL_ERR_ARGUMENT, "b NULL", r.xs, bytes);
            SPOIL_STREAM(layer[1].h = NULL, FL_ERR_ARGUMENT, "h NULL", r.xs, bytes);
            if (kind == FL_LSTM)
                SPOIL_STREAM(layer[0].c = NULL, FL_ERR_ARGUMENT, "c NULL", r.xs, bytes);
#undef SPOIL_STREAM
            check(&g, fl_stream_step(NULL, r.xs, work, bytes) == FL_ERR_ARGUMENT, "NULL stream");
            check(&g, fl_stream_workspace(&r.s, NULL) == FL_ERR_ARGUMENT, "NULL bytes");
            free(work);
            free_stream_run(&r);
            free_problem(&p[0]);
            free_problem(&p[1]);
        }
    struct fl_pool *pool = aligned_alloc(64, (fl_pool_bytes() + 63) / 64 * 64);
    check(&g, fl_pool_init(NULL, 2) == FL_ERR_ARGUMENT, "fl_pool_init of NULL");
    check(&g, fl_pool_init(pool, 0) == FL_ERR_SIZE, "fl_pool_init of 0 threads");
    check(&g, fl_pool_init(pool, 2) == FL_OK && fl_pool_threads(pool) == 2, "fl_pool_init of 2");
    check(&g, fl_pool_serve(pool, 0) == FL_ERR_SIZE, "fl_pool_serve as thread 0 (the caller's)");
    check(&g, fl_pool_serve(pool, 2) == FL_ERR_SIZE, "fl_pool_serve as thread 2 of 2");
    check(&g, fl_pool_serve(NULL, 1) == FL_ERR_ARGUMENT, "fl_pool_serve of NULL");
    free(pool);
    check_stopped_pool(&g, &rng);
    check_shared_pool(&g, &rng);
    check_idle_pools(&g, &rng);
    return check_summary(&g, "sizes, kinds, dtypes, levels, NULL arrays, workspace, pools");
}

/* ---- weights packed ahead: fl_pack and fl_forward_packed ---------------------------------------- */

/* The forward of a problem with its weights packed ahead: FL_OK and the same bits in every
 * output as fl_forward's run `plain`, with W and U not passed at all. */
static void check_packed_forward(struct check_group *g, const struct problem *p, int simd,
                                 int threads, const struct run *plain, const char *where)
{
    struct run r;
    prepare_run(p, &r);
    struct call c = call_of(p, &r, simd, threads);
    size_t work_bytes = 0, packed_bytes = 0;
    int status = fl_workspace(FL_FORWARD, &c.d, &work_bytes);
    if (status == FL_OK)
        status = fl_pack_bytes(&c.d, &packed_bytes);
    void *packed = aligned_alloc(64, (packed_bytes + 63) / 64 * 64 + 64);
    if (status == FL_OK)
        status = fl_pack(&c.d, &c.w, packed, packed_bytes);
    void *work = malloc(work_bytes ? work_bytes : 1);
    c.w.W = c.w.U = NULL;
    if (status == FL_OK)
        status = fl_forward_packed(&c.d, &c.state, &c.in, &c.w, packed, packed_bytes, work,
                                   work_bytes);
    if (check(g, status == FL_OK, "%s: status %d", where, status)) {
        const size_t size = p->dtype ? sizeof(double) : sizeof(float);
        const void *x[] = {r.h, r.c, r.gates, r.hn}, *y[] = {plain->h, plain->c, plain->gates,
                                                              plain->hn};
        const ptrdiff_t n[] = {r.n_h, r.n_c, r.n_gates, r.n_hn};
        int same = 1;
        for (int i = 0; i < 4; i++)
            same &= !n[i] || memcmp(x[i], y[i], size * (size_t)n[i]) == 0;
        check(g, same, "%s: bits differ from fl_forward's", where);
    }
    free(work);
    free(packed);
    free_run(&r);
}

/* fl_forward_packed against fl_forward: every kind, dtype and level, 1-3 threads, with the tile of
 * each batch size (row, the wider row at H = 150, pair, narrow, wide), the steps computing
 * their own input side (B >= 8), and fl_forward reading W in place for it, tile by tile over two
 * blocks of terms (I = 300) and, with W over 6 MB, a block of terms at a time (I = 1024); then the
 * checks of the packed weights against the call. */
long test_packed(void)
{
    struct check_group g = check_begin("packed weights");
    struct rng rng = {0x5eed0008};
    static const ptrdiff_t shapes[][4] = {{5, 1, 7, 17}, {3, 2, 3, 41}, {4, 3, 5, 9},
                                          {2, 7, 2, 20}, {3, 9, 16, 64}, {2, 12, 0, 5},
                                          {0, 2, 3, 4},  {2, 1, 300, 70}, {3, 1, 5, 150},
                                          {1, 3, 1024, 400}};
    for (int kind = FL_LSTM; kind <= FL_RNN; kind++)
        for (int dtype = 0; dtype <= 1; dtype++)
            for (size_t q = 0; q < sizeof shapes / sizeof shapes[0]; q++) {
                const ptrdiff_t T = shapes[q][0], B = shapes[q][1], I = shapes[q][2],
                                H = shapes[q][3];
                struct problem p =
                    make_problem(&rng, kind, dtype, 0, T, B, I, H, q % 2 ? WITH_LENGTHS : ALL_GIVEN);
                for (int simd = 0; simd <= fl_simd_max(); simd++)
                    for (int threads = 1; threads <= 3; threads++) {
                        char where[160];
                        snprintf(where, sizeof where, "%s %s T%td B%td I%td H%td %s threads %d",
                                 kind_name(kind), dtype ? "f64" : "f32", T, B, I, H,
                                 fl_simd_name(simd), threads);
                        struct run plain;
                        prepare_run(&p, &plain);
                        const struct call c = call_of(&p, &plain, simd, threads);
                        size_t bytes = 0;
                        int status = fl_workspace(FL_FORWARD, &c.d, &bytes);
                        void *work = malloc(bytes ? bytes : 1);
                        if (status == FL_OK)
                            status = fl_forward(&c.d, &c.state, &c.in, &c.w, work, bytes);
                        free(work);
                        if (check(&g, status == FL_OK, "%s: fl_forward status %d", where, status))
                            check_packed_forward(&g, &p, simd, threads, &plain, where);
                        free_run(&plain);
                    }
                free_problem(&p);
            }

    // the checks: packed for another call, misaligned, short, NULL; nothing written on an error
    for (int dtype = 0; dtype <= 1; dtype++) {
        struct problem p = make_problem(&rng, FL_LSTM, dtype, 0, 3, 1, 5, 6, ALL_GIVEN);
        struct run r;
        prepare_run(&p, &r);
        const struct call c = call_of(&p, &r, fl_simd_max(), 2);
        size_t bytes = 0, work_bytes = 0;
        check(&g, fl_pack_bytes(&c.d, &bytes) == FL_OK && bytes > 0, "fl_pack_bytes");
        fl_workspace(FL_FORWARD, &c.d, &work_bytes);
        unsigned char *packed = aligned_alloc(64, (bytes + 64 + 63) / 64 * 64);
        void *work = malloc(work_bytes);
        check(&g, fl_pack(&c.d, &c.w, packed + 4, bytes) == FL_ERR_ARGUMENT,
              "fl_pack: misaligned buffer accepted");
        check(&g, fl_pack(&c.d, &c.w, packed, bytes - 1) == FL_ERR_WORKSPACE,
              "fl_pack: short buffer accepted");
        struct fl_weights no_U = c.w;
        no_U.U = NULL;
        check(&g, fl_pack(&c.d, &no_U, packed, bytes) == FL_ERR_ARGUMENT, "fl_pack: NULL U");
        check(&g, fl_pack(&c.d, &c.w, packed, bytes) == FL_OK, "fl_pack");
        struct {
            const char *what;
            struct fl_desc d;
        } others[] = {{"B = 2 (another tile)", c.d}, {"H = 5", c.d}, {"I = 4", c.d},
                      {"kind GRU", c.d}, {"the other dtype", c.d}, {"the portable level", c.d}};
        others[0].d.B = 2;
        others[1].d.H = 5;
        others[2].d.I = 4;
        others[3].d.kind = FL_GRU;
        others[4].d.dtype = !dtype;
        others[5].d.simd = FL_SIMD_PORTABLE;
        const int n_others = fl_simd_max() > FL_SIMD_PORTABLE ? 6 : 5;
        for (int i = 0; i < n_others; i++) {
            // arrays large enough for any of these calls, so that only the packing is wrong
            size_t need = 0;
            fl_workspace(FL_FORWARD, &others[i].d, &need);
            void *big = malloc(need);
            double *arrays = calloc(4096, sizeof(double));
            struct fl_weights w = {NULL, NULL, arrays};
            struct fl_inputs in = {arrays, NULL, NULL};
            struct fl_state out = {arrays + 1024, arrays + 2048, arrays + 3072, arrays + 3072};
            check(&g, fl_forward_packed(&others[i].d, &out, &in, &w, packed, bytes, big, need) ==
                          FL_ERR_PACKED,
                  "fl_forward_packed with weights packed for %s", others[i].what);
            free(arrays);
            free(big);
        }
        struct fl_weights w = c.w;
        fill_outputs(&r, dtype);
        check(&g, fl_forward_packed(&c.d, &c.state, &c.in, &w, packed + 4, bytes, work,
                                    work_bytes) == FL_ERR_ARGUMENT &&
                      outputs_intact(&r, dtype),
              "fl_forward_packed: misaligned packed weights accepted, or outputs written");
        check(&g, fl_forward_packed(&c.d, &c.state, &c.in, &w, NULL, bytes, work, work_bytes) ==
                      FL_ERR_ARGUMENT,
              "fl_forward_packed: NULL packed weights accepted");
        fill_outputs(&r, dtype);
        check(&g, fl_forward_packed(&c.d, &c.state, &c.in, &w, packed, bytes - 1, work,
                                    work_bytes) == FL_ERR_PACKED &&
                      outputs_intact(&r, dtype),
              "fl_forward_packed: a buffer one byte short accepted, or outputs written");
        memset(packed, 0, 8);
        check(&g, fl_forward_packed(&c.d, &c.state, &c.in, &w, packed, bytes, work, work_bytes) ==
                          FL_ERR_PACKED &&
                      outputs_intact(&r, dtype),
              "fl_forward_packed: a buffer fl_pack did not fill accepted, or outputs written");
        free(work);
        free(packed);
        free_run(&r);
        free_problem(&p);
    }
    return check_summary(&g, "fl_forward_packed against fl_forward, bit for bit; its checks");
}
