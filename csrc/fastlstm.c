/* fastlstm.c - the C layer of fastlstm, one translation unit read top to bottom:
 * threading shim and shared loops, run-time SIMD selection, register-tile kernels, GEMM, then the
 * LSTM, GRU and RNN passes, their cells and a plain matrix product, each type-generic body
 * instantiated once for float and once for double.
 *
 * It does not allocate, print, read the environment or keep state between calls: the caller passes
 * sizes, a thread count, a SIMD level and a workspace (fastlstm.h is the contract).
 */
#include "fastlstm.h"

#include <math.h>
#include <limits.h>
#include <sched.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- threading shim: the serial build is the same source ----------------------------------------- */

static inline int fl_thread_index(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static inline int fl_thread_count(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/* Threads worth starting for work whose steps each cost 2*B*(I+H)*G*H flops: just the caller's
 * where a step is too small to pay for its wait (a whole sequence, one per step) or for the team
 * itself (a cell, ~1.3 us to start a team per call). Measured on a 2-core AVX-512 machine, T = 100:
 * a sequence ran as fast or faster on one thread up to ~100K flops a step (B = 1, H = 64; B = 2,
 * H = 64), on two 25-30% faster from ~200K (B = 1, I = 64, H = 128); a cell step of 200K flops was
 * 20% slower on two. */
#define FL_SEQUENCE_TEAM_FLOPS 131072.0
#define FL_CELL_TEAM_FLOPS 524288.0

/* The forward steps compute their input side x_t @ W themselves (recurrent.inc, input_in_steps)
 * from this many rows, when W and U together take at most this many bytes. Measured on a 2-core
 * AVX-512 machine, in-process A/B, float32: 0-6% faster at B >= 8, H = 256; slower at B <= 2
 * (W is read at every step for one or two rows) and at H = 512 (W and U no longer stay in L2). */
#define FL_INPUT_IN_STEPS_ROWS 8
#define FL_INPUT_IN_STEPS_BYTES 2097152.0
static inline int team_size(int num_threads, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H, int G,
                            double team_flops)
{
    const double step_flops = 2.0 * (double)B * (double)(I + H) * (double)G * (double)H;
    return step_flops < team_flops ? 1 : num_threads;
}

/* Runs the statement `call` on a team of `threads` threads, or on the calling thread alone, outside
 * any parallel region, when that is one: even a one-thread region allocates a team and wakes a futex,
 * a cost a cell step, called once per time step, would pay every time. The orphaned `omp for` loops
 * inside `call` then run whole on the caller. */
#define FL_ON_TEAM(threads, call)                                                                  \
    do {                                                                                           \
        const int fl_team = (threads);                                                             \
        if (fl_team == 1) {                                                                        \
            call;                                                                                  \
        } else {                                                                                   \
            _Pragma("omp parallel num_threads(fl_team)") call;                                     \
        }                                                                                          \
    } while (0)

/* ---- shared loops: work items claimed by the threads of a team -----------------------------------
 * Every loop of a sequence pass (and of matmul.inc's product) runs its items on the whole team: the
 * steps' (unit groups by row blocks, one loop per time step) and the big products' (tiles and
 * packed panels). They are not
 * split statically with a barrier after each loop, because a barrier waits for every thread to
 * arrive: a thread that the operating system has descheduled (its core taken by another thread
 * pool's spinning workers, NumPy's BLAS after a product, say) would stall the team for a time slice
 * at every step. Instead each thread claims items, its own share first (the same units at every
 * step, so their weights stay in its cache), then what is left of the others' shares; a loop is
 * complete when all its items are done, whoever did them, and a thread that comes late finds the
 * items taken and moves on. Every item is computed whole by one thread in a fixed order, so results
 * do not depend on which thread computed it, nor on the thread count.
 *
 * Each counter holds (loop << 32) | position: a claim succeeds only on the counter of the loop that
 * the claimer is at, so a late thread never takes an item of a later loop. The thread that finishes
 * the last item of a loop resets every share for the next loop, then publishes it in `done`.
 * Loops of no items are skipped by every thread alike; a loop has fewer than 2^32 items.
 *
 * The same loops run outside a team (team NULL: the cells, which run on the calling thread or on an
 * OpenMP team of their own) as OpenMP's static split, each thread its own share, then a barrier. */
#define FL_LINE 64 /* bytes: one counter per cache line, so that threads do not share lines */

struct fl_counter {
    uint64_t value;
    char pad[FL_LINE - sizeof(uint64_t)];
};

/* The team of a pass, in its workspace: done is (loop << 32) | items finished in that loop;
 * share[k] (loop << 32) | next position in thread k's share; then loop[k], the loop thread k is
 * at (its own counter, no atomics). `threads` shares, however many threads the team got. Threads
 * that wait long sleep on `wake` (see fl_loop_end), `sleepers` of them. */
struct fl_team {
    int threads;
    struct fl_counter done;
    struct {
        uint32_t wake, sleepers;
        char pad[FL_LINE - 2 * sizeof(uint32_t)];
    } sleep;
    struct fl_counter counters[]; /* share[threads], then loop[threads] */
};

static size_t fl_team_bytes(int threads)
{
    return sizeof(struct fl_team) + 2 * (size_t)threads * sizeof(struct fl_counter);
}

/* Sets up the team in its memory for `threads` threads, at loop 0; before the parallel region. */
static struct fl_team *fl_team_open(void *memory, int threads)
{
    struct fl_team *team = memory;
    team->threads = threads;
    team->done.value = 0;
    team->sleep.wake = team->sleep.sleepers = 0;
    for (int k = 0; k < 2 * threads; k++)
        team->counters[k].value = 0;
    return team;
}

static inline uint64_t *fl_share(struct fl_team *team, int k)
{
    return &team->counters[k].value;
}

static inline uint64_t *fl_loop_of(struct fl_team *team, int k)
{
    return &team->counters[team->threads + k].value;
}

/* Thread k's share of n items, of `threads`: [n*k/threads, n*(k+1)/threads). */
static inline ptrdiff_t fl_share_start(ptrdiff_t n, int k, int threads)
{
    return n * k / threads;
}

/* The next item of a loop over n items for this thread: sets *item and returns 1, or returns 0
 * when none is left. Start *item at -1; write the loop as
 *     for (ptrdiff_t i = -1; fl_next(team, n, &i); fl_done(team, n)) ...
 *     fl_loop_end(team, n); */
static int fl_next(struct fl_team *team, ptrdiff_t n, ptrdiff_t *item)
{
    if (!team) { /* OpenMP's static split: this thread's share, in order */
        const int k = fl_thread_index(), threads = fl_thread_count();
        *item = *item < 0 ? fl_share_start(n, k, threads) : *item + 1;
        return *item < fl_share_start(n, k + 1, threads);
    }
    const int me = fl_thread_index();
    const uint64_t loop = *fl_loop_of(team, me);
    for (int i = 0; i < team->threads; i++) {
        const int k = (me + i) % team->threads; /* own share first */
        const ptrdiff_t start = fl_share_start(n, k, team->threads);
        const ptrdiff_t size = fl_share_start(n, k + 1, team->threads) - start;
        uint64_t *share = fl_share(team, k);
        uint64_t seen = __atomic_load_n(share, __ATOMIC_RELAXED);
        while (seen >> 32 == loop && (ptrdiff_t)(seen & 0xffffffffu) < size) {
            if (__atomic_compare_exchange_n(share, &seen, seen + 1, 0, __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED)) {
                *item = start + (ptrdiff_t)(seen & 0xffffffffu);
                return 1;
            }
        }
    }
    return 0;
}

/* Sleeping and waking on a 32-bit word: a futex on Linux; elsewhere the sleeper only gives its
 * core away for a moment. fl_sleep returns at once if *word is no longer `seen`. */
static void fl_sleep(uint32_t *word, uint32_t seen)
{
#ifdef __linux__
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
#else
    (void)word;
    (void)seen;
    sched_yield();
#endif
}

static void fl_wake_all(uint32_t *word)
{
#ifdef __linux__
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)word;
#endif
}

static inline void fl_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Marks this thread's current item of a loop over n items done; the thread that finishes the last
 * one opens the next loop. */
static void fl_done(struct fl_team *team, ptrdiff_t n)
{
    if (!team)
        return;
    const uint64_t loop = *fl_loop_of(team, fl_thread_index());
    const uint64_t before = __atomic_fetch_add(&team->done.value, 1, __ATOMIC_ACQ_REL);
    if ((ptrdiff_t)(before & 0xffffffffu) + 1 < n)
        return;
    for (int k = 0; k < team->threads; k++)
        __atomic_store_n(fl_share(team, k), (loop + 1) << 32, __ATOMIC_RELAXED);
    __atomic_store_n(&team->done.value, (loop + 1) << 32, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&team->sleep.wake, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&team->sleep.sleepers, __ATOMIC_SEQ_CST) > 0)
        fl_wake_all(&team->sleep.wake);
}

/* A waiting thread spins this many pauses (some 100 us), then sleeps until the loop is complete:
 * the items of a loop finish within microseconds of each other on an idle machine, while a thread
 * that the system has descheduled with an item returns only after a time slice, which a spinning
 * (or merely yielding) waiter would keep from it, or from whatever else needs the core. */
#define FL_SPIN_PAUSES 4000

/* Waits until every item of the loop over n is done (their results visible to this thread), then
 * moves this thread to the next loop. */
static void fl_loop_end(struct fl_team *team, ptrdiff_t n)
{
    if (!team) {
#pragma omp barrier
        return;
    }
    if (n == 0)
        return;
    uint64_t *loop = fl_loop_of(team, fl_thread_index());
    const uint64_t next = (*loop + 1) << 32;
    for (int spins = 0; spins < FL_SPIN_PAUSES; spins++) {
        if (__atomic_load_n(&team->done.value, __ATOMIC_ACQUIRE) >= next)
            break;
        fl_pause();
    }
    // Sleep: announce it, then look again, so that the thread completing the loop (which
    // publishes `done`, bumps `wake`, then looks for sleepers) either sees this sleeper or is seen.
    for (;;) {
        const uint32_t seen = __atomic_load_n(&team->sleep.wake, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&team->done.value, __ATOMIC_SEQ_CST) >= next)
            break;
        __atomic_add_fetch(&team->sleep.sleepers, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&team->done.value, __ATOMIC_SEQ_CST) < next)
            fl_sleep(&team->sleep.wake, seen);
        __atomic_sub_fetch(&team->sleep.sleepers, 1, __ATOMIC_SEQ_CST);
    }
    *loop += 1;
}

/* a * b, setting *overflow when it does not fit in size_t. */
static inline size_t checked_product(size_t a, size_t b, int *overflow)
{
    size_t product;
    if (__builtin_mul_overflow(a, b, &product))
        *overflow = 1;
    return product;
}

static inline size_t larger(size_t a, size_t b)
{
    return a > b ? a : b;
}

#define FL_UNIT_CHUNK 64 /* hidden units per work item of the per-unit loops */
#define FL_CHUNK 4096   /* elements per work item of the element-wise loops of the passes */

/* Work items of a per-unit loop: (row, chunk of FL_UNIT_CHUNK units), so one row still feeds
 * every thread. */
static inline ptrdiff_t unit_items(ptrdiff_t B, ptrdiff_t H)
{
    return B * ((H + FL_UNIT_CHUNK - 1) / FL_UNIT_CHUNK);
}

static inline void unit_range(ptrdiff_t item, ptrdiff_t H, ptrdiff_t *r, ptrdiff_t *j0, ptrdiff_t *j1)
{
    const ptrdiff_t chunks = (H + FL_UNIT_CHUNK - 1) / FL_UNIT_CHUNK;
    *r = item / chunks;
    *j0 = (item % chunks) * FL_UNIT_CHUNK;
    *j1 = *j0 + FL_UNIT_CHUNK < H ? *j0 + FL_UNIT_CHUNK : H;
}

/* ---- variable-length batches: lengths (B,), each row's steps; NULL means T for every row --------- */

/* Whether every length is in [0, T]. */
static int lengths_fit(const ptrdiff_t *lengths, ptrdiff_t T, ptrdiff_t B)
{
    for (ptrdiff_t r = 0; lengths && r < B; r++)
        if (lengths[r] < 0 || lengths[r] > T)
            return 0;
    return 1;
}

/* Whether step t is past row r's end: the row then carries its state through the step unchanged,
 * and its gradient back through it, with none made at the step. */
static inline int past_end(const ptrdiff_t *lengths, ptrdiff_t t, ptrdiff_t r)
{
    return lengths && t >= lengths[r];
}

/* The steps a pass computes: up to the longest row's end (T without lengths), after which every
 * row only carries its state; none without rows or units (T may then be huge: nothing to carry). */
static ptrdiff_t steps_to_run(const ptrdiff_t *lengths, ptrdiff_t T, ptrdiff_t B, ptrdiff_t H)
{
    if (B == 0 || H == 0)
        return 0;
    ptrdiff_t longest = lengths ? 0 : T;
    for (ptrdiff_t r = 0; lengths && r < B; r++)
        longest = lengths[r] > longest ? lengths[r] : longest;
    return longest;
}

int fl_openmp_version(void)
{
#ifdef _OPENMP
    return _OPENMP;
#else
    return 0;
#endif
}

const char *fl_compiler(void)
{
#ifdef __VERSION__
    return __VERSION__;
#else
    return "unknown";
#endif
}

/* ---- SIMD level, chosen at run time --------------------------------------------------------------- */

#if defined(__x86_64__) || defined(__i386__)
#define FL_X86 1
#define FL_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define FL_TARGET_AVX512 __attribute__((target("avx512f,fma")))
/* The per-unit loops, compiled once per ISA and picked when the library loads. */
#define FL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FL_X86 0
#define FL_CLONES
#endif

int fl_simd_max(void)
{
#if FL_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return FL_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return FL_SIMD_AVX2;
#endif
    return FL_SIMD_PORTABLE;
}

const char *fl_simd_name(int simd)
{
    switch (simd) {
    case FL_SIMD_PORTABLE:
        return "portable";
    case FL_SIMD_AVX2:
        return "avx2";
    case FL_SIMD_AVX512:
        return "avx512";
    default:
        return "unknown";
    }
}

/* Lanes i, j, k, l of the 8 lanes of a then b, 4-lane vectors; mask is an integer vector type of
 * their shape. GCC before 12 has only __builtin_shuffle, clang only __builtin_shufflevector. */
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define FL_SHUFFLE4(mask, a, b, i, j, k, l) __builtin_shufflevector(a, b, i, j, k, l)
#endif
#endif
#ifndef FL_SHUFFLE4
#define FL_SHUFFLE4(mask, a, b, i, j, k, l) __builtin_shuffle(a, b, (mask){i, j, k, l})
#endif

/* ---- register-tile kernels: (precision) x (SIMD level) x (tile shape) ----------------------------
 * Wide tiles for the large products use 24 of the 32 AVX-512 registers for accumulators, 12 of the 16
 * AVX2/SSE/NEON ones. The per-step product h_{t-1} @ U has only B rows: narrow (4-row) and row
 * (1-row) tiles waste fewer multiply-adds on padding there. */

enum fl_tile { FL_TILE_WIDE, FL_TILE_NARROW, FL_TILE_ROW };

/* Where a step's pointwise pass finds the pre-activations (recurrent.inc, lstm_units). */
enum fl_pre { FROM_Z, FROM_Z_TILES, FROM_TILES };

#define FL_TILE_MAX (12 * 32) /* the largest mr*nr below, for the scratch tile at matrix edges */
#define FL_NR_MAX 64         /* the largest nr below, for the leftover columns of in-place products */
#define FL_ALIGN_MIN_K 16    /* terms from which in-place products align their tiles to B */

#define REAL float
#define UK_SPEC (ukernel_f32_portable_wide, , 16, 6, 2)
#include "ukernel.inc"
#define UK_SPEC (ukernel_f32_portable_narrow, , 16, 4, 2)
#include "ukernel.inc"
#define UK_SPEC (ukernel_f32_portable_row, , 16, 1, 4)
#include "ukernel.inc"
#if FL_X86
#define UK_SPEC (ukernel_f32_avx2_wide, FL_TARGET_AVX2, 32, 6, 2)
#include "ukernel.inc"
#define UK_SPEC (ukernel_f32_avx2_narrow, FL_TARGET_AVX2, 32, 4, 3)
#include "ukernel.inc"
#define UK_SPEC (ukernel_f32_avx2_row, FL_TARGET_AVX2, 32, 1, 4)
#include "ukernel.inc"
#define UK_SPEC (ukernel_f32_avx512_wide, FL_TARGET_AVX512, 64, 12, 2)
#include "ukernel.inc"
#define UK_SPEC (ukernel_f32_avx512_narrow, FL_TARGET_AVX512, 64, 4, 4)
#include "ukernel.inc"
#define UK_SPEC (ukernel_f32_avx512_row, FL_TARGET_AVX512, 64, 1, 4)
#include "ukernel.inc"
#endif
#undef REAL

#define REAL double
#define UK_SPEC (ukernel_f64_portable_wide, , 16, 6, 2)
#include "ukernel.inc"
#define UK_SPEC (ukernel_f64_portable_narrow, , 16, 4, 2)
#include "ukernel.inc"
#define UK_SPEC (ukernel_f64_portable_row, , 16, 1, 4)
#include "ukernel.inc"
#if FL_X86
#define UK_SPEC (ukernel_f64_avx2_wide, FL_TARGET_AVX2, 32, 6, 2)
#include "ukernel.inc"
#define UK_SPEC (ukernel_f64_avx2_narrow, FL_TARGET_AVX2, 32, 4, 3)
#include "ukernel.inc"
#define UK_SPEC (ukernel_f64_avx2_row, FL_TARGET_AVX2, 32, 1, 4)
#include "ukernel.inc"
#define UK_SPEC (ukernel_f64_avx512_wide, FL_TARGET_AVX512, 64, 12, 2)
#include "ukernel.inc"
#define UK_SPEC (ukernel_f64_avx512_narrow, FL_TARGET_AVX512, 64, 4, 4)
#include "ukernel.inc"
#define UK_SPEC (ukernel_f64_avx512_row, FL_TARGET_AVX512, 64, 1, 4)
#include "ukernel.inc"
#endif
#undef REAL

/* ---- GEMM and the passes, once per precision ------------------------------------------------------ */

#define FL_CAT_(a, b) a##_##b
#define FL_CAT(a, b) FL_CAT_(a, b)
#define FN(name) FL_CAT(name, SUFFIX)

/* Block sizes (data, per kernel): kc*nr of a B panel fits L1, mc*kc of A fits L2. Rows are indexed
 * by enum fl_simd, columns by enum fl_tile; a level a build lacks repeats the portable kernels (never
 * selected, as fl_simd_max() does not report it). */
#define REAL float
#define SUFFIX f32
#define FL_INT int32_t
#define FL_BITS uint32_t
#define FL_MANT 23
#define FL_BIAS 127
#define FL_EXP_LO (-104)
#define FL_EXP_HI 89
#define FL_DEGREE 7
#define FABS fabsf
#define COPYSIGN copysignf
#include "gemm.inc"
#include "activations.inc"
static const struct FN(kernel) FN(kernel_table)[3][3] = {
    {{6, 8, 96, 256, 2048, ukernel_f32_portable_wide, ukernel_f32_portable_wide_strided},
     {4, 8, 144, 256, 2048, ukernel_f32_portable_narrow, ukernel_f32_portable_narrow_strided},
     {1, 16, 64, 256, 2048, ukernel_f32_portable_row, ukernel_f32_portable_row_strided}},
#if FL_X86
    {{6, 16, 96, 256, 2048, ukernel_f32_avx2_wide, ukernel_f32_avx2_wide_strided},
     {4, 24, 144, 256, 2040, ukernel_f32_avx2_narrow, ukernel_f32_avx2_narrow_strided},
     {1, 32, 64, 256, 2048, ukernel_f32_avx2_row, ukernel_f32_avx2_row_strided}},
    {{12, 32, 144, 256, 3072, ukernel_f32_avx512_wide, ukernel_f32_avx512_wide_strided},
     {4, 64, 144, 256, 3072, ukernel_f32_avx512_narrow, ukernel_f32_avx512_narrow_strided},
     {1, 64, 64, 256, 3072, ukernel_f32_avx512_row, ukernel_f32_avx512_row_strided}},
#else
    {{6, 8, 96, 256, 2048, ukernel_f32_portable_wide, ukernel_f32_portable_wide_strided},
     {4, 8, 144, 256, 2048, ukernel_f32_portable_narrow, ukernel_f32_portable_narrow_strided},
     {1, 16, 64, 256, 2048, ukernel_f32_portable_row, ukernel_f32_portable_row_strided}},
    {{6, 8, 96, 256, 2048, ukernel_f32_portable_wide, ukernel_f32_portable_wide_strided},
     {4, 8, 144, 256, 2048, ukernel_f32_portable_narrow, ukernel_f32_portable_narrow_strided},
     {1, 16, 64, 256, 2048, ukernel_f32_portable_row, ukernel_f32_portable_row_strided}},
#endif
};
#include "recurrent.inc"
#include "cell.inc"
#include "matmul.inc"
#undef REAL
#undef SUFFIX
#undef FL_INT
#undef FL_BITS
#undef FL_MANT
#undef FL_BIAS
#undef FL_EXP_LO
#undef FL_EXP_HI
#undef FL_DEGREE
#undef FABS
#undef COPYSIGN

#define REAL double
#define SUFFIX f64
#define FL_INT int32_t
#define FL_BITS uint64_t
#define FL_MANT 52
#define FL_BIAS 1023
#define FL_EXP_LO (-746)
#define FL_EXP_HI 710
#define FL_DEGREE 13
#define FABS fabs
#define COPYSIGN copysign
#include "gemm.inc"
#include "activations.inc"
static const struct FN(kernel) FN(kernel_table)[3][3] = {
    {{6, 4, 96, 256, 1024, ukernel_f64_portable_wide, ukernel_f64_portable_wide_strided},
     {4, 4, 144, 256, 1024, ukernel_f64_portable_narrow, ukernel_f64_portable_narrow_strided},
     {1, 8, 64, 256, 1024, ukernel_f64_portable_row, ukernel_f64_portable_row_strided}},
#if FL_X86
    {{6, 8, 96, 256, 1024, ukernel_f64_avx2_wide, ukernel_f64_avx2_wide_strided},
     {4, 12, 144, 256, 1020, ukernel_f64_avx2_narrow, ukernel_f64_avx2_narrow_strided},
     {1, 16, 64, 256, 1024, ukernel_f64_avx2_row, ukernel_f64_avx2_row_strided}},
    {{12, 16, 144, 256, 1536, ukernel_f64_avx512_wide, ukernel_f64_avx512_wide_strided},
     {4, 32, 144, 256, 1536, ukernel_f64_avx512_narrow, ukernel_f64_avx512_narrow_strided},
     {1, 32, 64, 256, 1536, ukernel_f64_avx512_row, ukernel_f64_avx512_row_strided}},
#else
    {{6, 4, 96, 256, 1024, ukernel_f64_portable_wide, ukernel_f64_portable_wide_strided},
     {4, 4, 144, 256, 1024, ukernel_f64_portable_narrow, ukernel_f64_portable_narrow_strided},
     {1, 8, 64, 256, 1024, ukernel_f64_portable_row, ukernel_f64_portable_row_strided}},
    {{6, 4, 96, 256, 1024, ukernel_f64_portable_wide, ukernel_f64_portable_wide_strided},
     {4, 4, 144, 256, 1024, ukernel_f64_portable_narrow, ukernel_f64_portable_narrow_strided},
     {1, 8, 64, 256, 1024, ukernel_f64_portable_row, ukernel_f64_portable_row_strided}},
#endif
};
#include "recurrent.inc"
#include "cell.inc"
#include "matmul.inc"
#undef REAL
#undef SUFFIX
#undef FL_INT
#undef FL_BITS
#undef FL_MANT
#undef FL_BIAS
#undef FL_EXP_LO
#undef FL_EXP_HI
#undef FL_DEGREE
#undef FABS
#undef COPYSIGN

/* ---- workspace sizes, by element size --------------------------------------------------------------- */

static size_t workspace(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H, int G, int backward,
                        int num_threads, int simd, int elsize)
{
    if (elsize == (int)sizeof(float))
        return workspace_f32(T, B, I, H, G, backward, num_threads, simd);
    if (elsize == (int)sizeof(double))
        return workspace_f64(T, B, I, H, G, backward, num_threads, simd);
    return 0;
}

size_t fl_matmul_workspace(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int num_threads, int simd,
                           int elsize)
{
    if (elsize == (int)sizeof(float))
        return matmul_workspace_f32(M, N, K, num_threads, simd);
    if (elsize == (int)sizeof(double))
        return matmul_workspace_f64(M, N, K, num_threads, simd);
    return 0;
}

size_t fl_lstm_forward_workspace(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                 int num_threads, int simd, int elsize)
{
    return workspace(T, B, I, H, 4, 0, num_threads, simd, elsize);
}

size_t fl_lstm_backward_workspace(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                  int num_threads, int simd, int elsize)
{
    return workspace(T, B, I, H, 4, 1, num_threads, simd, elsize);
}

size_t fl_gru_forward_workspace(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                int num_threads, int simd, int elsize)
{
    return workspace(T, B, I, H, 3, 0, num_threads, simd, elsize);
}

size_t fl_gru_backward_workspace(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                 int num_threads, int simd, int elsize)
{
    return workspace(T, B, I, H, 3, 1, num_threads, simd, elsize);
}

size_t fl_rnn_forward_workspace(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                int num_threads, int simd, int elsize)
{
    return workspace(T, B, I, H, 1, 0, num_threads, simd, elsize);
}

size_t fl_rnn_backward_workspace(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H,
                                 int num_threads, int simd, int elsize)
{
    return workspace(T, B, I, H, 1, 1, num_threads, simd, elsize);
}
