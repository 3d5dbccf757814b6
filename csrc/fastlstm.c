/* fastlstm.c - the C layer of fastlstm, one translation unit read top to bottom:
 * the threading shim and the shared loops, the kinds, run-time SIMD selection, then per precision
 * (levels.inc) the register tiles (tuning.inc) and one instance of the passes per SIMD level
 * (instance.inc), and last the public entry points (dispatch.inc), which check every call and
 * pick the instance.
 *
 * It does not allocate, print, read the environment, start threads or keep state between calls:
 * the caller passes a descriptor, the arrays and a workspace (fastlstm.h is the contract), and for
 * a pool (pool.inc) its memory and its threads.
 */
#include "fastlstm.h"

#include <math.h>
#include <limits.h>
#include <sched.h>
#include <time.h>
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

#include "tuning.inc" /* the thresholds; the tiles come per precision, below */

/* Threads worth starting for work whose steps each cost 2*B*(I+H)*G*H flops (tuning.inc). */
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
 * Each counter holds (loop << 32) | position, of the last loop anyone claimed from it: a share of
 * an earlier loop counts as whole, one of a later loop as empty, so a late thread never takes an
 * item of a later loop, and nobody resets the shares between loops (that cost the thread that
 * finished a loop a write to every other thread's share, and them a cache line each: forwards at
 * B = 1, H = 128 took 0.91-0.97x the time without it, in-process A/B). The thread that finishes
 * the last item of a loop publishes the next in `done`. Loops of no items are skipped by every
 * thread alike; a loop has fewer than 2^32 items, and a team runs fewer than 2^32 loops (a pass
 * runs a few per time step).
 *
 * The same loops run outside a team (team NULL: the cells, which run on the calling thread or on an
 * OpenMP team of their own) as OpenMP's static split, each thread its own share, then a barrier. */
#define FL_LINE 64 /* bytes: one counter per cache line, so that threads do not share lines */

struct fl_counter {
    uint64_t value;
    char pad[FL_LINE - sizeof(uint64_t)];
};

/* The team of a pass, in its workspace: done is (loop << 32) | items finished in that loop;
 * share[k] (loop << 32) | next position in thread k's share, in the last loop claimed from it;
 * then loop[k], the loop thread k is at (its own counter, no atomics). `threads` shares, however
 * many threads the team got. Threads that wait long sleep on `wake` (see fl_loop_end), `sleepers`
 * of them, and add the time they slept to `stalled_ns`; `finished_ns` is when thread 0 finished
 * its part of the region. On cores of their own the team's threads finish a loop, and the region,
 * within an item of one another: long waits mean that a thread was descheduled (holding an item,
 * or before it could see that nothing was left), and then the team has fewer cores than threads. */
struct fl_team {
    int threads;
    struct fl_counter done;
    struct {
        uint32_t wake, sleepers;
        uint64_t stalled_ns, finished_ns;
        char pad[FL_LINE - 2 * sizeof(uint32_t) - 2 * sizeof(uint64_t)];
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
    team->sleep.stalled_ns = team->sleep.finished_ns = 0;
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
        for (;;) {
            // a share last claimed from in an earlier loop is whole; in a later one (this loop
            // is complete, since a thread is there), empty
            const ptrdiff_t position = seen >> 32 == loop ? (ptrdiff_t)(seen & 0xffffffffu)
                                       : seen >> 32 < loop ? 0
                                                           : size;
            if (position >= size)
                break;
            if (__atomic_compare_exchange_n(share, &seen, (loop << 32) | (uint64_t)(position + 1),
                                            0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
                *item = start + position;
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

/* A monotonic clock in nanoseconds, for the stalls of a team. */
static uint64_t fl_now_ns(void)
{
    struct timespec now;
#ifdef CLOCK_MONOTONIC
    clock_gettime(CLOCK_MONOTONIC, &now);
#else
    timespec_get(&now, TIME_UTC);
#endif
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

/* The last statement of a team's parallel region: thread 0 notes the time, for fl_team_report. */
static void fl_team_finish(struct fl_team *team)
{
    if (fl_thread_index() == 0)
        team->sleep.finished_ns = fl_now_ns();
}

/* After the parallel region: adds the team's stalls to the caller's count, if it keeps one, the
 * time thread 0 waited at the region's end for the others included. */
static void fl_team_report(const struct fl_team *team, uint64_t *stalled_ns)
{
    if (!stalled_ns)
        return;
    const uint64_t now = fl_now_ns(), finished = team->sleep.finished_ns;
    *stalled_ns += team->sleep.stalled_ns + (finished && now > finished ? now - finished : 0);
}

/* When a statically split loop began, for fl_barrier: 0 where no stalls are counted. */
static uint64_t fl_loop_began(const uint64_t *stalled_ns)
{
    return stalled_ns && fl_thread_count() > 1 ? fl_now_ns() : 0;
}

/* The barrier of every thread of an OpenMP team after a statically split loop (the cells') that
 * began at `began` (fl_loop_began). Where the caller keeps a count of stalls, each thread adds to
 * it what it waited past the longer of its own share's time and FL_STALL_FREE_NS: a static split
 * leaves one thread up to a share's fraction waiting for the other as a matter of course (the
 * tiles of a cell's product are not all alike), a descheduled thread keeps the others waiting for
 * a time slice, milliseconds. */
static void fl_barrier(uint64_t *stalled_ns, uint64_t began)
{
    if (!began) {
#pragma omp barrier
        return;
    }
    const uint64_t arrived = fl_now_ns();
#pragma omp barrier
    const uint64_t left = fl_now_ns();
    if (arrived < began || left < arrived) // a clock without CLOCK_MONOTONIC may step back
        return;
    const uint64_t worked = arrived - began, waited = left - arrived;
    const uint64_t allowed = worked > FL_STALL_FREE_NS ? worked : FL_STALL_FREE_NS;
    if (waited > allowed)
        __atomic_add_fetch(stalled_ns, waited - allowed, __ATOMIC_RELAXED);
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
    __atomic_store_n(&team->done.value, (loop + 1) << 32, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&team->sleep.sleepers, __ATOMIC_SEQ_CST) > 0) {
        __atomic_add_fetch(&team->sleep.wake, 1, __ATOMIC_SEQ_CST);
        fl_wake_all(&team->sleep.wake);
    }
}


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
        if (__atomic_load_n(&team->done.value, __ATOMIC_ACQUIRE) >= next) {
            *loop += 1;
            return;
        }
        fl_pause();
    }
    // Sleep: announce it, then look again, so that the thread completing the loop (which
    // publishes `done`, then looks for sleepers, and bumps `wake` for them) either sees this
    // sleeper or is seen; a bump after `seen` was read keeps the futex from sleeping.
    // The time from here on is a stall (see fl_team).
    const uint64_t since = fl_now_ns();
    for (;;) {
        const uint32_t seen = __atomic_load_n(&team->sleep.wake, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&team->done.value, __ATOMIC_SEQ_CST) >= next)
            break;
        __atomic_add_fetch(&team->sleep.sleepers, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&team->done.value, __ATOMIC_SEQ_CST) < next)
            fl_sleep(&team->sleep.wake, seen);
        __atomic_sub_fetch(&team->sleep.sleepers, 1, __ATOMIC_SEQ_CST);
    }
    const uint64_t until = fl_now_ns();
    if (until > since) // a clock without CLOCK_MONOTONIC may step back
        __atomic_add_fetch(&team->sleep.stalled_ns, until - since, __ATOMIC_RELAXED);
    *loop += 1;
}

#include "pool.inc" /* threads that stay between a stream's steps */

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

/* Whether H hidden units make an odd number of unit groups of nr (a step of one row has one work
 * item per group: one of two threads computes a group more than the other at every step). */
static int odd_groups(ptrdiff_t H, ptrdiff_t nr)
{
    return (H + nr - 1) / nr % 2 == 1;
}

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

/* ---- the kinds ------------------------------------------------------------------------------------ */

/* G, the gate blocks per unit of a kind; 0 for an unknown one. A constant wherever the kind is. */
static inline int gates_of(int kind)
{
    return kind == FL_LSTM ? 4 : kind == FL_GRU ? 3 : kind == FL_RNN ? 1 : 0;
}

int fl_gates(int kind)
{
    return gates_of(kind);
}

int fl_bias_rows(int kind)
{
    return kind == FL_GRU ? 2 : gates_of(kind) ? 1 : 0;
}

/* The threads a stream's step runs on: its num_threads when its flops, 2*B*(I + H)*G*H per layer,
 * repay a team (tuning.inc), else 1. */
static int stream_threads(const struct fl_stream *s)
{
    double flops = 0;
    for (int l = 0; l < s->layers; l++)
        flops += 2.0 * (double)s->B * (double)(s->layer[l].I + s->layer[l].H) *
                 (double)gates_of(s->kind) * (double)s->layer[l].H;
    return flops < FL_STREAM_TEAM_FLOPS ? 1 : s->num_threads;
}

/* ---- SIMD level, chosen at run time --------------------------------------------------------------
 * Each level is an instruction set that every piece of ISA-specific code is compiled for: the
 * register tiles (ukernel.inc, by function attributes) and one instance of everything else
 * (instance.inc, under the level's target options). */

#if defined(__x86_64__) || defined(__i386__)
#define FL_X86 1
#define FL_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define FL_TARGET_AVX512 __attribute__((target("avx512f,fma")))
#else
#define FL_X86 0
#endif

int fl_simd_max(void)
{
#if FL_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4"))
        return FL_SIMD_AVX512;
    if (__builtin_cpu_supports("x86-64-v3"))
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

/* kernel_table's columns, and their count */
enum fl_tile {
    FL_TILE_WIDE,
    FL_TILE_NARROW,
    FL_TILE_ROW,
    FL_TILE_PAIR,
    FL_TILE_ROW_WIDE,
    FL_TILES
};

/* steps.inc: how a forward that packs its own weights computes its input side xs @ W. */
enum fl_input_side {
    FL_INPUT_PACKED,         /* the GEMM over W packed for the wide tile */
    FL_INPUT_IN_PLACE,       /* W read in place, each tile through all its terms */
    FL_INPUT_IN_PLACE_BLOCKS /* W read in place, every tile a block of kc terms at a time */
};

/* pointwise.inc: where a forward finds a step's pre-activations, a constant of each caller. */
enum fl_pre {
    FROM_Z,       /* z itself: the whole pre-activation (the cells compute it in one product) */
    FROM_Z_TILES, /* x_t @ W in z, plus the bias b and the recurrent side h_{t-1} @ U in tiles */
    FROM_TILES    /* the bias b plus tiles holding x_t @ W + h_{t-1} @ U (input_in_steps) */
};

/* The pre-activation of gate block k at unit j; the tiles hold units [j0, j0 + ...) of gate k at
 * rec + k*rs. */
#define FL_PRE(from, z, b, rec, rs, k, j, j0, H)                                                  \
    ((from) == FROM_Z         ? (z)[(k) * (H) + (j)]                                              \
     : (from) == FROM_Z_TILES ? ((z)[(k) * (H) + (j)] + (b)[(k) * (H) + (j)]) + (rec)[(k) * (rs) + (j) - (j0)] \
                              : (b)[(k) * (H) + (j)] + (rec)[(k) * (rs) + (j) - (j0)])


/* body(from, ...) with `from` a constant in each of its three calls (pointwise.inc: a loop whose
 * loads depend on a run-time `from` does not vectorize). */
#define FL_CONSTANT_PRE(from, body, ...)                                                           \
    ((from) == FROM_Z         ? body(FROM_Z, __VA_ARGS__)                                           \
     : (from) == FROM_Z_TILES ? body(FROM_Z_TILES, __VA_ARGS__)                                     \
                              : body(FROM_TILES, __VA_ARGS__))

#define FL_TILE_MAX (12 * 32) /* the largest mr*nr of the tiles, for the scratch tile at edges */
#define FL_NR_MAX 80         /* the largest nr, for the leftover columns of in-place products */
#define FL_GATES_MAX 4       /* the most gates of a kind (the LSTM's) */

/* The record at the start of weights packed by fl_pack: what they were packed for, which
 * fl_forward_packed compares with what its own call would pack, and where W's and U's panels
 * start (byte offsets from the record, 64-byte aligned). */
struct fl_packing {
    uint64_t magic; /* FL_PACKING_MAGIC */
    int kind, dtype, simd;
    int step_tile;      /* enum fl_tile of the per-step product, which B (and H at B = 1) chooses */
    int input_in_steps; /* W packed like U, for the steps (input_in_steps), or for the GEMM */
    ptrdiff_t I, H;
    size_t w_offset, u_offset, bytes;
};
#define FL_PACKING_MAGIC 0x6b6361706c7366ull /* "fslpack" */

/* The entry points of one instance (instance.inc), for dispatch.inc; the passes are indexed by
 * enum fl_kind. */
struct fl_instance {
    const char *features; /* the instruction sets it was compiled for */
    int (*workspace)(int pass, const struct fl_desc *d, size_t *bytes);
    int (*forward[3])(const struct fl_desc *d, const struct fl_state *out,
                      const struct fl_inputs *in, const struct fl_weights *w, const void *packed,
                      void *workspace);
    int (*packing)(const struct fl_desc *d, struct fl_packing *p);
    void (*pack)(const struct fl_desc *d, const struct fl_weights *w, void *packed,
                 const struct fl_packing *p);
    int (*backward[3])(const struct fl_desc *d, const struct fl_grads *out,
                       const struct fl_state *saved, const struct fl_output_grads *dout,
                       const struct fl_inputs *in, const struct fl_weights *w, void *workspace);
    int (*cell_forward[3])(const struct fl_desc *d, const struct fl_state *out,
                           const struct fl_inputs *in, const struct fl_weights *w,
                           void *workspace);
    int (*cell_backward[3])(const struct fl_desc *d, const struct fl_grads *out,
                            const struct fl_state *saved, const struct fl_output_grads *dout,
                            const struct fl_inputs *in, const struct fl_weights *w,
                            void *workspace);
    int (*stream_workspace)(const struct fl_stream *s, size_t *bytes);
    int (*stream_step[3])(const struct fl_stream *s, const void *x, void *workspace);
    size_t (*matmul_workspace)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int num_threads, int simd);
    void (*matmul)(void *C, const void *A, const void *B, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                   int trans_a, int trans_b, int num_threads, int simd, void *workspace);
};

/* ---- the instances: per precision, the tiles, then the passes once per SIMD level ----------------- */

#define FL_CAT_(a, b) a##_##b
#define FL_CAT(a, b) FL_CAT_(a, b)
#define FP(name) FL_CAT(name, SUFFIX)          /* the precision's: kernel_table_f32 */
#define FN(name) FL_CAT(FP(name), LEVEL)       /* the instance's: forward_lstm_f32_avx2 */

/* The target options of each level's instance: the same instruction sets as fl_simd_max() tests
 * for. GCC takes them as a pragma, clang as an attribute pushed onto every function. */
#if defined(__clang__)
#define FL_TARGET_PUSH(isa) _Pragma(FL_STRING(clang attribute push(__attribute__((target(isa))), apply_to = function)))
#define FL_TARGET_POP _Pragma("clang attribute pop")
#else
#define FL_TARGET_PUSH(isa) _Pragma("GCC push_options") _Pragma(FL_STRING(GCC target(isa)))
#define FL_TARGET_POP _Pragma("GCC pop_options")
#endif
#define FL_STRING(x) #x

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
#include "levels.inc"

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
#include "levels.inc"

/* The instances by [dtype][simd]; a level the build lacks repeats the portable one (never chosen:
 * fl_simd_max() does not report it). */
static const struct fl_instance *const fl_instances[2][3] = {
#if FL_X86
    {&instance_f32_portable, &instance_f32_avx2, &instance_f32_avx512},
    {&instance_f64_portable, &instance_f64_avx2, &instance_f64_avx512},
#else
    {&instance_f32_portable, &instance_f32_portable, &instance_f32_portable},
    {&instance_f64_portable, &instance_f64_portable, &instance_f64_portable},
#endif
};

#include "dispatch.inc"
