/* check.h - what the C tests share: a seeded random generator, counted checks that report their
 * first few failures, closeness within an error bound, and distances in ulp.
 *
 * Each test file keeps its own counts (struct check_group) and prints one summary line per group;
 * a group's function returns its failure count, and main adds them up. Header-only and static,
 * so that each test file is self-contained; no allocation or state beyond the group.
 */
#ifndef FASTLSTM_TESTS_CHECK_H
#define FASTLSTM_TESTS_CHECK_H

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- a group of checks ------------------------------------------------------------------------- */

#ifndef CHECK_REPORTS
#define CHECK_REPORTS 8 /* failures printed per group; the rest are only counted */
#endif

struct check_group {
    const char *name;
    long checks, failures;
    struct timespec start; /* set by check_begin */
};

static struct check_group check_begin(const char *name)
{
    struct check_group group = {name, 0, 0, {0, 0}};
    clock_gettime(CLOCK_MONOTONIC, &group.start);
    return group;
}

/* Counts one check of `group`; prints the message of a failure (the first few of them). */
static int check(struct check_group *group, int ok, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
static int check(struct check_group *group, int ok, const char *format, ...)
{
    group->checks++;
    if (ok)
        return 1;
    if (group->failures++ < CHECK_REPORTS) {
        va_list args;
        va_start(args, format);
        printf("  FAIL %s: ", group->name);
        vprintf(format, args);
        printf("\n");
        va_end(args);
    }
    return 0;
}

/* Prints the group's one-line summary (with an optional note) and returns its failure count. */
static long check_summary(const struct check_group *group, const char *note)
{
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    const double seconds = (double)(end.tv_sec - group->start.tv_sec) +
                           1e-9 * (double)(end.tv_nsec - group->start.tv_nsec);
    printf("%-4s %-24s %6ld checks, %ld failed, %4.1f s%s%s\n", group->failures ? "FAIL" : "ok",
           group->name, group->checks, group->failures, seconds, note && *note ? "; " : "",
           note ? note : "");
    fflush(stdout);
    return group->failures;
}

/* ---- random numbers: xorshift64*, seeded, the same on every machine -------------------------------- */

struct rng {
    uint64_t state;
};

static uint64_t rng_next(struct rng *r)
{
    r->state ^= r->state >> 12;
    r->state ^= r->state << 25;
    r->state ^= r->state >> 27;
    return r->state * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [lo, hi). */
static inline double rng_uniform(struct rng *r, double lo, double hi)
{
    return lo + (hi - lo) * (double)(rng_next(r) >> 11) * 0x1p-53;
}

/* ---- closeness ------------------------------------------------------------------------------------ */

/* Whether got is within tol of want; NaN matches only NaN, an infinity only itself. */
static inline int within(double got, double want, double tol)
{
    if (isnan(want) || isnan(got))
        return isnan(want) && isnan(got);
    if (isinf(want) || isinf(got))
        return got == want;
    return fabs(got - want) <= tol;
}

/* Distance in ulp between two doubles (or two floats, with float_ulp): the count of representable
 * numbers between them, 0 when equal (+0 and -0 too); UINT64_MAX when exactly one is NaN. */
static inline uint64_t ordered64(double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    const uint64_t sign = UINT64_C(1) << 63;
    return u & sign ? sign - (u & ~sign) : sign + u; /* -0 and +0 both at 2^63 */
}

static inline uint64_t ulp_distance(double a, double b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b) ? 0 : UINT64_MAX;
    const uint64_t x = ordered64(a), y = ordered64(b);
    return x > y ? x - y : y - x;
}

static inline uint64_t ordered32(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u >> 31 ? (uint64_t)(0x80000000u - (u & 0x7fffffffu)) : (uint64_t)u + 0x80000000u;
}

static inline uint64_t ulp_distance_f(float a, float b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b) ? 0 : UINT64_MAX;
    const uint64_t x = ordered32(a), y = ordered32(b);
    return x > y ? x - y : y - x;
}

/* ---- arrays of either dtype, read as double -------------------------------------------------------- */

/* Element i of an array of floats (dtype 0, FL_FLOAT32) or doubles (dtype 1). */
static inline double element(const void *array, int dtype, ptrdiff_t i)
{
    return dtype ? ((const double *)array)[i] : (double)((const float *)array)[i];
}

static inline void set_element(void *array, int dtype, ptrdiff_t i, double value)
{
    if (dtype)
        ((double *)array)[i] = value;
    else
        ((float *)array)[i] = (float)value;
}

#endif /* FASTLSTM_TESTS_CHECK_H */
