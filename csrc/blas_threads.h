/* blas_threads.h - NumPy's OpenBLAS run on fastlstm's OpenMP threads, and fork made safe for them.
 *
 * NumPy's OpenBLAS (its pthreads build) keeps worker threads of its own, which spin for about
 * 0.1 s after each multithreaded product. In a loop that calls NumPy's `@` between fastlstm's
 * passes they never stop, and they take turns on the cores with fastlstm's OpenMP threads: each
 * side's threads wait for cores that the other side's hold. OpenBLAS lets its caller run the jobs
 * of its multithreaded calls instead (openblas_set_threads_callback_function, OpenBLAS >= 0.3.27);
 * fastlstm/_blas.py gives it fl_openblas_threads, which runs them on the calling thread's OpenMP
 * team: the same threads as fastlstm's passes, one set of threads for both.
 *
 * Unlike fastlstm.h's kernels, this part keeps process-wide state (a lock, fork handlers) and may
 * start threads: it stands in for OpenBLAS's own thread server, which is one per process. It is
 * also the one place in csrc/ that prints and aborts: when it cannot start a thread that a waiting
 * piece of an OpenBLAS call needs, there is no way on (the other pieces wait for it for ever), and
 * it says so on stderr and aborts, as OpenMP runtimes and OpenBLAS's own server do.
 */
#ifndef FASTLSTM_BLAS_THREADS_H
#define FASTLSTM_BLAS_THREADS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One of OpenBLAS's jobs: dojob(job, jobdata + job * jobdata_bytes, dojob_data). */
typedef void (*fl_openblas_job)(int job, void *jobdata, int dojob_data);

/* OpenBLAS's openblas_threads_callback: runs jobs 0 .. numjobs-1 of one call, all at once, job k
 * on thread k of the calling thread's OpenMP team (a level-3 call's jobs wait for one another, so
 * each needs a thread of its own); jobs that the team has no thread for (inside another parallel
 * region, OMP_THREAD_LIMIT, OMP_DYNAMIC) run on threads started for them. Returns when all are
 * done. OpenBLAS gives each job the buffers of the thread number it passes, the same for every
 * call, so calls from several threads run one at a time. `sync` (always 1) is not used. */
void fl_openblas_threads(int sync, fl_openblas_job dojob, int numjobs, size_t jobdata_bytes,
                         void *jobdata, int dojob_data);

/* The calls fl_openblas_threads has run, in this process. */
unsigned long fl_openblas_calls(void);

/* Installs the fork handlers, once (later calls do nothing): before fork, wait for an
 * fl_openblas_threads call that is running and release the forking thread's OpenMP threads, so
 * that the child finds neither a lock taken by a thread it does not have nor a team whose threads
 * did not come along (libgomp's next parallel region would wait for them for ever); the parent
 * starts new ones at its next parallel region. Returns 0, or pthread_atfork's error. */
int fl_fork_handlers_install(void);

/* Whether the OpenMP runtime can release its threads before fork (omp_pause_resource_all). */
int fl_fork_releases_threads(void);

#ifdef __cplusplus
}
#endif

#endif
