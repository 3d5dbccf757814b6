/* tests.h - the test groups of the C tests, each a function that runs its checks, prints one
 * summary line and returns its failure count (main.c runs them all). */
#ifndef FASTLSTM_TESTS_TESTS_H
#define FASTLSTM_TESTS_TESTS_H

/* The largest distance allowed between an activation and libm's, where the result is normal. */
#define ACTIVATION_MAX_ULP 4

long test_ukernels(void);    /* test_kernels.c: every register tile against naive C */
long test_matmul(void);      /* test_kernels.c: fl_matmul against naive C, bits across threads */
long test_activations(void); /* test_kernels.c: sigmoid, tanh, exp of every instance vs libm */
long test_pool(void);        /* test_kernels.c: what fl_pool_run does with a call, and says */
long test_passes(void);      /* test_passes.c: sequences and cells against naive C */
long test_entry_checks(void); /* test_passes.c: the entry points' status codes, nothing written */
long test_streams(void);      /* test_passes.c: stacks stepped by fl_stream_step against naive C */
long test_stream_checks(void); /* test_passes.c: fl_stream_step's status codes, nothing written */
long test_packed(void); /* test_passes.c: fl_forward_packed against fl_forward, and its checks */
long test_blas_threads(void); /* test_blas_threads.c: OpenBLAS's jobs on a team; fork after one */

#endif /* FASTLSTM_TESTS_TESTS_H */
