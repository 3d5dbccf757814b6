/* blas_threads.c - NumPy's OpenBLAS run on fastlstm's OpenMP threads (blas_threads.h). */
#include "blas_threads.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* omp_pause_resource_all is OpenMP 5.0; GCC's libgomp has it from GCC 9 on, while its _OPENMP
 * still says 4.5. */
#if defined(_OPENMP) && \
    (_OPENMP >= 201811 || (defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 9))
#define FL_CAN_RELEASE_THREADS 1
#else
#define FL_CAN_RELEASE_THREADS 0
#endif

/* The process-wide state: OpenBLAS's jobs of two calls at once would share its buffers. */
static pthread_mutex_t calls_lock = PTHREAD_MUTEX_INITIALIZER; /* held for a whole call */
static unsigned long calls;                                    /* written under calls_lock */
static pthread_once_t fork_handlers_once = PTHREAD_ONCE_INIT;
static int fork_handlers_status;

/* One call's jobs. */
struct jobs {
    fl_openblas_job dojob;
    int numjobs;
    size_t bytes;  /* of each job's data */
    char *jobdata; /* (numjobs, bytes) */
    int dojob_data;
};

/* A job run on a thread started for it. */
struct started_job {
    pthread_t thread;
    const struct jobs *jobs;
    int job;
};

static void run_job(const struct jobs *jobs, int job)
{
    jobs->dojob(job, jobs->jobdata + (size_t)job * jobs->bytes, jobs->dojob_data);
}

static void *run_started_job(void *arg)
{
    const struct started_job *started = arg;
    run_job(started->jobs, started->job);
    return NULL;
}

/* Thread `thread` of a team of `team` threads (team <= numjobs) runs job `thread`; thread 0 first
 * starts a thread for each job from `team` on, and waits for them after its own. */
static void run_share(const struct jobs *jobs, int thread, int team)
{
    if (thread != 0 || team == jobs->numjobs) {
        run_job(jobs, thread);
        return;
    }
    int extra = jobs->numjobs - team;
    struct started_job started[extra];
    for (int k = 0; k < extra; k++) {
        started[k] = (struct started_job){.jobs = jobs, .job = team + k};
        if (pthread_create(&started[k].thread, NULL, run_started_job, &started[k]) != 0) {
            // The jobs already running wait for this one: there is no way on but a thread.
            fprintf(stderr, "fastlstm: could not start a thread for OpenBLAS's job %d of %d\n",
                    team + k, jobs->numjobs);
            abort();
        }
    }
    run_job(jobs, 0);
    for (int k = 0; k < extra; k++)
        pthread_join(started[k].thread, NULL);
}

void fl_openblas_threads(int sync, fl_openblas_job dojob, int numjobs, size_t jobdata_bytes,
                         void *jobdata, int dojob_data)
{
    (void)sync;
    if (numjobs < 1)
        return;
    const struct jobs jobs = {.dojob = dojob, .numjobs = numjobs, .bytes = jobdata_bytes,
                              .jobdata = jobdata, .dojob_data = dojob_data};
    pthread_mutex_lock(&calls_lock);
    __atomic_store_n(&calls, calls + 1, __ATOMIC_RELAXED);
#ifdef _OPENMP
    // With dynamic adjustment off, the runtime gives the team all numjobs threads unless a limit
    // (nesting, OMP_THREAD_LIMIT) says otherwise; run_share covers that case.
    int dynamic = omp_get_dynamic();
    omp_set_dynamic(0);
#pragma omp parallel num_threads(numjobs) if (numjobs > 1)
    run_share(&jobs, omp_get_thread_num(), omp_get_num_threads());
    omp_set_dynamic(dynamic);
#else
    run_share(&jobs, 0, 1);
#endif
    pthread_mutex_unlock(&calls_lock);
}

unsigned long fl_openblas_calls(void)
{
    return __atomic_load_n(&calls, __ATOMIC_RELAXED);
}

static void before_fork(void)
{
    pthread_mutex_lock(&calls_lock);
#if FL_CAN_RELEASE_THREADS
    omp_pause_resource_all(omp_pause_hard);
#endif
}

static void after_fork(void)
{
    pthread_mutex_unlock(&calls_lock);
}

static void install_fork_handlers(void)
{
    fork_handlers_status = pthread_atfork(before_fork, after_fork, after_fork);
}

int fl_fork_handlers_install(void)
{
    pthread_once(&fork_handlers_once, install_fork_handlers);
    return fork_handlers_status;
}

int fl_fork_releases_threads(void)
{
    return FL_CAN_RELEASE_THREADS;
}
