/* main.c - runs every group of fastlstm's C tests and exits non-zero if any check failed.
 * Prints the build (compiler, OpenMP, the best SIMD level of this CPU), then one line per group. */
#include <stdio.h>
#include <time.h>

#include "../fastlstm.h"
#include "tests.h"

int main(void)
{
    printf("fastlstm C tests: %s, OpenMP %d, SIMD levels portable..%s\n", fl_compiler(),
           fl_openmp_version(), fl_simd_name(fl_simd_max()));
    long (*const groups[])(void) = {test_ukernels,      test_matmul, test_activations,
                                    test_pool,          test_passes, test_entry_checks,
                                    test_streams,       test_stream_checks, test_packed,
                                    test_blas_threads};
    long failures = 0;
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        failures += groups[i]();
    clock_gettime(CLOCK_MONOTONIC, &end);
    printf("%s: %ld failed checks, %.1f s\n", failures ? "FAILED" : "PASSED", failures,
           (double)(end.tv_sec - start.tv_sec) + 1e-9 * (double)(end.tv_nsec - start.tv_nsec));
    return failures != 0;
}
