/* test_kernels.c - fastlstm's kernels tested in C against naive C: the register tiles of the kernel
 * table, the blocked GEMM through fl_matmul, and the activations against libm.
 *
 * It includes fastlstm.c itself (as llm.c's test_gpt2.c includes train_gpt2.c), so that the static
 * tiles and activations of every instance are in reach; the whole library is compiled once, here,
 * and test_passes.c links against the public entry points this file then defines. Each level
 * tested is one that fl_simd_max() says this CPU runs.
 */
#include "../fastlstm.c"

#include <float.h>
#include <pthread.h>

#include "check.h"
#include "tests.h"

/* ---- the per-precision bodies, instantiated twice ------------------------------------------------ */

static long double sigmoid_reference(long double x)
{
    return 1 / (1 + expl(-x));
}

#if FL_X86
#define TL_X86(name) TL(name, avx2), TL(name, avx512)
#else
#define TL_X86(name) NULL, NULL
#endif

static const float true_min_f32 = FLT_TRUE_MIN, norm_min_f32 = FLT_MIN, real_max_f32 = FLT_MAX;
static const double true_min_f64 = DBL_TRUE_MIN, norm_min_f64 = DBL_MIN, real_max_f64 = DBL_MAX;

#define TREAL float
#define TNAME "f32"
#define TS(name) FL_CAT(name, f32)
#define TL(name, level) FL_CAT(FL_CAT(name, f32), level)
#define TEPS 0x1p-24
#define TULP ulp_distance_f
#include "kernels.inc"

#define TREAL double
#define TNAME "f64"
#define TS(name) FL_CAT(name, f64)
#define TL(name, level) FL_CAT(FL_CAT(name, f64), level)
#define TEPS 0x1p-53
#define TULP ulp_distance
#include "kernels.inc"

long test_ukernels(void)
{
    struct check_group g = check_begin("register tiles");
    struct rng rng = {0x5eed0001};
    test_ukernels_f32(&g, &rng);
    test_ukernels_f64(&g, &rng);
    char note[96];
    snprintf(note, sizeof note, "levels portable..%s, every tile, both forms, load_c 0 and 1",
             fl_simd_name(fl_simd_max()));
    return check_summary(&g, note);
}

long test_activations(void)
{
    struct check_group g = check_begin("activations vs libm");
    struct rng rng = {0x5eed0002};
    char note[2048] = "";
    test_activations_f32(&g, &rng, ACTIVATION_MAX_ULP, note, sizeof note);
    test_activations_f64(&g, &rng, ACTIVATION_MAX_ULP, note, sizeof note);
    check_summary(&g, NULL);
    printf("     max ulp (normal results): %s\n", note);
    return g.failures;
}

/* ---- the blocked GEMM through fl_matmul ---------------------------------------------------------- */

/* C (M, N) = op(A) @ op(B) in double, with the error bound of each element's sum in the dtype. */
static void naive_matmul(double *C, double *bound, const void *A, const void *B, int dtype,
                         ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int trans_a, int trans_b)
{
    const double eps = dtype ? 0x1p-53 : 0x1p-24;
    for (ptrdiff_t i = 0; i < M; i++)
        for (ptrdiff_t j = 0; j < N; j++) {
            double sum = 0, magnitude = 0;
            for (ptrdiff_t k = 0; k < K; k++) {
                const double a = element(A, dtype, trans_a ? k * M + i : i * K + k);
                const double b = element(B, dtype, trans_b ? j * K + k : k * N + j);
                sum += a * b;
                magnitude += fabs(a * b);
            }
            C[i * N + j] = sum;
            bound[i * N + j] = (double)(K + 2) * 2 * eps * magnitude;
        }
}

/* One product at every level and thread count: within the bound of naive C, C's canary past its
 * end intact, and the same bits for 1, 2 and 3 threads. C starts as NaN, which must not be read. */
static void matmul_case(struct check_group *g, struct rng *rng, int dtype, ptrdiff_t M,
                         ptrdiff_t N, ptrdiff_t K, int trans_a, int trans_b)
{
    const size_t size = dtype ? sizeof(double) : sizeof(float);
    enum { CANARY = 8 };
    void *A = malloc(size * (M * K + 1)), *B = malloc(size * (K * N + 1));
    void *C = malloc(size * (M * N + CANARY)), *C1 = malloc(size * (M * N + 1));
    double *want = malloc(sizeof(double) * (M * N + 1)), *bound = malloc(sizeof(double) * (M * N + 1));
    for (ptrdiff_t i = 0; i < M * K; i++)
        set_element(A, dtype, i, rng_uniform(rng, -1, 1));
    for (ptrdiff_t i = 0; i < K * N; i++)
        set_element(B, dtype, i, rng_uniform(rng, -1, 1));
    naive_matmul(want, bound, A, B, dtype, M, N, K, trans_a, trans_b);
    for (int simd = 0; simd <= fl_simd_max(); simd++) {
        for (int threads = 1; threads <= 3; threads++) {
            size_t bytes;
            int status = fl_matmul_workspace(dtype, M, N, K, threads, simd, &bytes);
            void *work = malloc(bytes ? bytes : 1);
            for (ptrdiff_t i = 0; i < M * N + CANARY; i++)
                set_element(C, dtype, i, i < M * N ? NAN : 777.0);
            if (status == FL_OK)
                status = fl_matmul(dtype, C, A, B, M, N, K, trans_a, trans_b, threads, simd, work,
                                   bytes);
            free(work);
            const char *where = fl_simd_name(simd);
            if (!check(g, status == FL_OK, "fl_matmul %s dtype %d (%td, %td, %td) status %d", where,
                       dtype, M, N, K, status))
                continue;
            long wrong = 0, touched = 0;
            for (ptrdiff_t i = 0; i < M * N; i++)
                wrong += !within(element(C, dtype, i), want[i], bound[i]);
            for (ptrdiff_t i = M * N; i < M * N + CANARY; i++)
                touched += element(C, dtype, i) != 777.0;
            check(g, wrong == 0, "fl_matmul %s dtype %d M %td N %td K %td trans %d%d threads %d: "
                  "%ld of %td wrong", where, dtype, M, N, K, trans_a, trans_b, threads, wrong,
                  M * N);
            check(g, touched == 0, "fl_matmul %s (%td, %td, %td): wrote past C", where, M, N, K);
            if (threads == 1)
                memcpy(C1, C, size * M * N);
            else
                check(g, memcmp(C1, C, size * M * N) == 0, "fl_matmul %s dtype %d (%td, %td, %td) "
                      "trans %d%d: %d threads differ from one", where, dtype, M, N, K, trans_a,
                      trans_b, threads);
        }
    }
    free(A);
    free(B);
    free(C);
    free(C1);
    free(want);
    free(bound);
}

long test_matmul(void)
{
    struct check_group g = check_begin("fl_matmul vs naive GEMM");
    struct rng rng = {0x5eed0003};
    static const ptrdiff_t sizes[] = {1, 3, 17, 67, 130};
    // beyond the cube: across the kc (256) and mc (96, 144) blocks, across nc (2040-3072 float,
    // 1024-1536 double columns), and K = 0 (C = 0) and empty products
    static const ptrdiff_t more[][3] = {{300, 37, 290}, {5, 3100, 260}, {3, 5, 0}, {0, 4, 3},
                                        {4, 0, 3}};
    const int n = sizeof sizes / sizeof sizes[0];
    for (int dtype = 0; dtype <= 1; dtype++)
        for (int trans = 0; trans < 4; trans++) {
            for (int q = 0; q < n * n * n; q++)
                matmul_case(&g, &rng, dtype, sizes[q / (n * n)], sizes[q / n % n], sizes[q % n],
                             trans >> 1, trans & 1);
            for (size_t q = 0; q < sizeof more / sizeof more[0]; q++)
                matmul_case(&g, &rng, dtype, more[q][0], more[q][1], more[q][2], trans >> 1,
                             trans & 1);
        }
    return check_summary(&g, "M, N, K in {1,3,17,67,130} and 5 more, 4 transposes, 1-3 threads");
}

/* ---- the pool's outcomes ------------------------------------------------------------------------- */

/* A job that records the team size each thread ran it with; thread 0 then holds the pool until
 * `release` is set, so that another call finds it busy. */
struct held_job {
    int team[2];
    int started, release;
};

static void hold_pool(void *arg, int index, int count)
{
    struct held_job *job = arg;
    job->team[index] = count;
    if (index == 0) {
        __atomic_store_n(&job->started, 1, __ATOMIC_RELEASE);
        while (!__atomic_load_n(&job->release, __ATOMIC_ACQUIRE))
            fl_pause();
    }
}

struct pool_call {
    struct fl_pool *pool;
    struct held_job *job;
    enum fl_pool_outcome outcome;
};

static void *run_held_job(void *arg)
{
    struct pool_call *call = arg;
    call->outcome = fl_pool_run(call->pool, hold_pool, call->job);
    return NULL;
}

static void *serve_pool(void *arg)
{
    fl_pool_serve(arg, 1);
    return NULL;
}

/* Whether *flag is set within 10 s: a call that waits where it must not fails, not hangs. */
static int set_in_time(const int *flag)
{
    const struct timespec nap = {0, 100000};
    for (int naps = 0; naps < 100000; naps++) {
        if (__atomic_load_n(flag, __ATOMIC_ACQUIRE))
            return 1;
        nanosleep(&nap, NULL);
    }
    return 0;
}

/* One layer's LSTM stream, B = 1, I = 64, H = 128 (two threads' worth), on `threads` threads. */
struct small_stream {
    struct fl_stream s;
    struct fl_stream_layer layer;
    float W[64 * 512], U[128 * 512], b[512], h[128], c[128], x[64];
    void *work;
    size_t work_bytes;
    int status, done;
};

static int make_small_stream(struct small_stream *t, struct rng *rng, int threads)
{
    for (int i = 0; i < 64 * 512; i++)
        t->W[i] = (float)rng_uniform(rng, -0.2, 0.2);
    for (int i = 0; i < 128 * 512; i++)
        t->U[i] = (float)rng_uniform(rng, -0.2, 0.2);
    for (int i = 0; i < 512; i++)
        t->b[i] = (float)rng_uniform(rng, -0.2, 0.2);
    for (int i = 0; i < 64; i++)
        t->x[i] = (float)rng_uniform(rng, -1, 1);
    memset(t->h, 0, sizeof t->h);
    memset(t->c, 0, sizeof t->c);
    t->layer = (struct fl_stream_layer){.I = 64, .H = 128, .w = {t->W, t->U, t->b},
                                        .h = t->h, .c = t->c};
    t->s = (struct fl_stream){.kind = FL_LSTM, .dtype = FL_FLOAT32, .B = 1, .layers = 1,
                             .layer = &t->layer, .num_threads = threads, .simd = fl_simd_max()};
    t->done = 0;
    if (fl_stream_workspace(&t->s, &t->work_bytes) != FL_OK)
        return 0;
    t->work = malloc(t->work_bytes);
    return t->work != NULL;
}

static void *step_small_stream(void *arg)
{
    struct small_stream *t = arg;
    t->status = FL_OK;
    for (int step = 0; step < 3; step++)
        t->status |= fl_stream_step(&t->s, t->x, t->work, t->work_bytes);
    __atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

long test_pool(void)
{
    struct check_group g = check_begin("pool outcomes");
    struct rng rng = {0x5eed0009};
    struct fl_pool *pool = aligned_alloc(64, (sizeof(struct fl_pool) + 63) / 64 * 64);
    struct small_stream *plain = malloc(sizeof *plain), *held = malloc(sizeof *held);
    if (!check(&g, pool && plain && held && fl_pool_init(pool, 2) == FL_OK &&
                       make_small_stream(plain, &rng, 1),
               "pool or stream not made")) {
        free(pool);
        free(plain);
        free(held);
        return check_summary(&g, NULL);
    }
    *held = *plain;
    held->s.layer = &held->layer;
    held->layer.w = (struct fl_weights){held->W, held->U, held->b};
    held->layer.h = held->h;
    held->layer.c = held->c;
    held->s.num_threads = 2;
    held->s.pool = pool;
    held->work = malloc(held->work_bytes);
    step_small_stream(plain);

    struct held_job first = {.release = 1}, second = {.release = 1};
    check(&g, fl_pool_run(pool, hold_pool, &first) == FL_POOL_AWAY && first.team[0] == 0,
          "a pool that no thread serves yet runs a call");
    pthread_t server, caller, stepper;
    if (!check(&g, pthread_create(&server, NULL, serve_pool, pool) == 0, "no serving thread")) {
        free(pool);
        return check_summary(&g, NULL);
    }
    while (fl_pool_serving(pool) < 1)
        sched_yield();
    first = (struct held_job){.release = 0};
    struct pool_call call = {pool, &first, FL_POOL_AWAY};
    const int holding = pthread_create(&caller, NULL, run_held_job, &call) == 0;
    if (check(&g, holding && set_in_time(&first.started), "the holding call did not start")) {
        check(&g, fl_pool_run(pool, hold_pool, &second) == FL_POOL_BUSY && second.team[0] == 0,
              "a call that found the pool running another one was run or not called busy");
        // a stream's step on the busy pool runs without it, and does not wait for it
        if (check(&g, held->work && pthread_create(&stepper, NULL, step_small_stream, held) == 0,
                  "no stepping thread")) {
            check(&g, set_in_time(&held->done), "a step waited for the busy pool");
            check(&g, fl_pool_calls(pool) == 0, "a step ran on the busy pool");
            __atomic_store_n(&first.release, 1, __ATOMIC_RELEASE);
            pthread_join(stepper, NULL);
            check(&g, held->status == FL_OK &&
                          memcmp(held->h, plain->h, sizeof plain->h) == 0 &&
                          memcmp(held->c, plain->c, sizeof plain->c) == 0,
                  "a step beside a busy pool: status %d, or bits differ from one thread's",
                  held->status);
        }
        __atomic_store_n(&first.release, 1, __ATOMIC_RELEASE);
        pthread_join(caller, NULL);
        check(&g, call.outcome == FL_POOL_RAN && first.team[0] == 2 && first.team[1] == 2,
              "the holding call: outcome %d, teams %d and %d", call.outcome, first.team[0],
              first.team[1]);
    }
    second = (struct held_job){.release = 1};
    check(&g, fl_pool_run(pool, hold_pool, &second) == FL_POOL_RAN && second.team[1] == 2,
          "a call once the pool is free again did not run on both threads");
    fl_pool_stop(pool);
    pthread_join(server, NULL);
    second = (struct held_job){.release = 1};
    check(&g, fl_pool_run(pool, hold_pool, &second) == FL_POOL_AWAY && second.team[0] == 0,
          "a stopped pool runs a call");
    free(plain->work);
    free(held->work);
    free(plain);
    free(held);
    free(pool);
    return check_summary(&g, "unserved, busy (a stream's step beside it), free and stopped");
}
