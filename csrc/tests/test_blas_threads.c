/* test_blas_threads.c - fl_openblas_threads runs every job once, all at once, and a forked child
 * of a process whose OpenMP team ran can start a team of its own (blas_threads.h). */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../blas_threads.h"
#include "check.h"
#include "tests.h"

#define MAX_JOBS 8
#define WAIT_SECONDS 10.0 /* a job that waits longer for the others counts as a hang */

/* What all the jobs of one call share: how many have arrived, and how often each one ran. */
struct call_record {
    int numjobs, arrived, timed_out, bad_data;
    int ran[MAX_JOBS];
};

/* One job's element of OpenBLAS's jobdata array. */
struct job_element {
    struct call_record *call;
    int job;
    char pad[20]; /* an element size that is not a power of two */
};

static double seconds_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

/* As a level-3 job of OpenBLAS does: arrives, then waits until every job of its call has. */
static void waiting_job(int job, void *jobdata, int dojob_data)
{
    struct job_element *element = jobdata;
    struct call_record *call = element->call;
    if (element->job != job || dojob_data != 7)
        __atomic_add_fetch(&call->bad_data, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&call->ran[job], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&call->arrived, 1, __ATOMIC_ACQ_REL);
    double deadline = seconds_now() + WAIT_SECONDS;
    while (__atomic_load_n(&call->arrived, __ATOMIC_ACQUIRE) < call->numjobs) {
        if (seconds_now() > deadline) {
            __atomic_store_n(&call->timed_out, 1, __ATOMIC_RELAXED);
            return;
        }
    }
}

/* Runs one call of `numjobs` waiting jobs; returns whether each ran once, together, with its
 * own element and the call's dojob_data. */
static int run_call(int numjobs)
{
    struct call_record call = {.numjobs = numjobs};
    struct job_element elements[MAX_JOBS];
    for (int job = 0; job < numjobs; job++)
        elements[job] = (struct job_element){.call = &call, .job = job};
    fl_openblas_threads(1, waiting_job, numjobs, sizeof elements[0], elements, 7);
    int ok = !call.timed_out && !call.bad_data && call.arrived == numjobs;
    for (int job = 0; job < numjobs; job++)
        ok &= call.ran[job] == 1;
    return ok;
}

/* Forks after an OpenMP team ran; returns whether the child could run a team of two and exit. */
static int child_runs_a_team(void)
{
    int sum = 0;
#pragma omp parallel num_threads(2) reduction(+ : sum)
    sum += 1;
    pid_t child = fork();
    if (child == 0) {
        alarm(20); // a child whose team waits for threads it does not have is killed
        int child_sum = 0;
#pragma omp parallel num_threads(2) reduction(+ : child_sum)
        child_sum += 1;
        _exit(child_sum >= 1 ? 0 : 1);
    }
    int status = 0;
    if (child < 0 || waitpid(child, &status, 0) != child)
        return 0;
    return sum >= 1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

long test_blas_threads(void)
{
    struct check_group group = check_begin("OpenBLAS jobs, fork");
    unsigned long calls_before = fl_openblas_calls();
    for (int numjobs = 1; numjobs <= MAX_JOBS; numjobs++)
        check(&group, run_call(numjobs), "%d jobs: not each once, all at once", numjobs);
    check(&group, fl_openblas_calls() - calls_before == MAX_JOBS, "calls counted: %lu",
          fl_openblas_calls() - calls_before);

    // Inside a parallel region the nested team has one thread: the other jobs get threads of
    // their own; the two callers' calls run one after the other.
    int nested_ok[2] = {1, 1};
#pragma omp parallel num_threads(2)
    {
        int caller = 0;
#ifdef _OPENMP
        caller = omp_get_thread_num();
#endif
        nested_ok[caller] = run_call(3);
    }
    check(&group, nested_ok[0] && nested_ok[1], "calls from inside a parallel region");

    check(&group, fl_fork_handlers_install() == 0, "fork handlers not installed");
    check(&group, fl_fork_handlers_install() == 0, "a second install is not a no-op");
    if (fl_fork_releases_threads())
        check(&group, child_runs_a_team(), "a forked child's team did not run");
    return check_summary(&group, fl_fork_releases_threads() ? "1-8 jobs, nested calls, fork"
                                                            : "1-8 jobs, nested calls; no fork");
}
