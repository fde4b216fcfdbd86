/* dist.h: everything distributed, behind one small interface.
 *
 * Built with MPI (CONVNET_MPI=1) these calls are Open MPI collectives over MPI_COMM_WORLD;
 * built with MPI=0 they are the single-process versions (rank 0 of 1). No other module
 * includes <mpi.h>. Failures of MPI calls abort the whole job with a message (MPI_CHECK).
 */
#ifndef CONVNET_DIST_H
#define CONVNET_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef struct {
    int rank, size;
    int local_rank, local_size; /* ranks on this node */
    int threads;                /* OpenMP/BLAS threads of this rank */
    int cores;                  /* cores this rank may run on (affinity mask) */
    int node_cores;             /* cores online on this node */
    int owns_mpi;               /* we called MPI_Init, so we finalize */
    double collective_timeout;  /* watchdog, seconds; 0 = wait forever (see dist_set_watchdog) */
    long step;                  /* current global step, for watchdog messages */
    struct DistWatch *watch;    /* watchdog bookkeeping (arrival messages), NULL when off */
    struct DistGrads *grads;    /* overlapped gradient allreduce (dist_grad_setup), NULL when off */
    int time_grads;             /* record each bucket's post and completion times (--timeline) */
} Dist;

void dist_init(Dist *d, int *argc, char ***argv);
/* End MPI. `status` is this rank's exit status; the return value is the status to exit with:
 * the largest of all ranks' on rank 0, and with several ranks EXIT_OK on the others, which
 * exit first (see exit_last in dist.c: mpirun ends a job quickly only so). */
int dist_finalize(Dist *d, int status);
/* Stop every rank now with this exit status (MPI_Abort under MPI). */
void dist_abort(Dist *d, int status) __attribute__((noreturn));

/* Pick this rank's thread count: OMP_NUM_THREADS, else SLURM_CPUS_PER_TASK, else the cores of
 * its affinity mask divided among the node's ranks; apply it to OpenMP and OpenBLAS. */
void dist_setup_threads(Dist *d);

/* Watchdog for the training loop's collectives: from now on a collective that makes no
 * progress for `seconds` prints which step, which collective and which ranks it waited for,
 * then aborts the job with EXIT_COMM_TIMEOUT. Collectives become non-blocking calls polled with
 * MPI_Test; every rank tells rank 0 when it starts each step, and while waiting in a collective
 * the ranks keep telling each other (rank 0 and each other rank) that they are still there.
 * Rank 0 names the ranks that never reached the step and those silent since; another rank says
 * whether it still hears rank 0, and when it does, leaves the report and the abort to rank 0 for
 * one more timeout. seconds <= 0 turns it off. Collective over all ranks. */
void dist_set_watchdog(Dist *d, double seconds);
/* Mark the start of global step `step` (before any of its collectives). */
void dist_begin_step(Dist *d, long step);

/* In-place sums over ranks. `what` names the collective in watchdog messages. */
void dist_allreduce_sum_f32(Dist *d, float *buf, size_t n, const char *what);
void dist_allreduce_sum_f64(Dist *d, double *buf, size_t n, const char *what);
/* Element-wise max over ranks, in place. */
void dist_allreduce_max_f64(Dist *d, double *buf, size_t n);
/* Max over ranks of an int (e.g. "any rank wants to stop"). */
int dist_allreduce_max_int(Dist *d, int v, const char *what);
void dist_bcast(Dist *d, void *buf, size_t bytes, int root);
/* rows holds n rows of row_bytes; rank r has filled rows [n*r/size, n*(r+1)/size) (the shard
 * every sharded loop in the trainer uses). Afterwards every rank holds all n rows. */
void dist_allgather_rows(Dist *d, void *rows, int64_t n, size_t row_bytes);
void dist_barrier(Dist *d);

/* The gradient sum over ranks overlapped with the backward pass ([train] overlap_allreduce).
 *
 * dist_grad_setup, once: the gradient buffer holds n floats, a layer's slice starting at each of
 * starts[0 .. n_starts) (ascending, model_param_starts). Every step the range being summed is
 * cut into buckets at those layer starts, from the top down, merging consecutive layers until a
 * bucket holds at least bucket_floats: the same buckets on every rank, so that every rank issues
 * the same collectives in the same order.
 * dist_grad_begin: a step's sum of grads[lo, hi) begins (lo a layer start).
 * dist_grad_ready: grads[lo, hi) is final, hi being where the previous call's slice began (the
 * backward pass goes top down). Starts the allreduce of every bucket now complete and lets MPI
 * progress those in flight: Open MPI moves data only inside MPI calls. `dist` is the Dist; the
 * void * fits PassCtx.grads_ready.
 * dist_grad_finish: starts the buckets not started yet (a rank without samples in this step
 * reported nothing) and waits for all of them, under the watchdog when it is on.
 * Without setup, on one rank, or built with MPI=0, they do nothing. */
void dist_grad_setup(Dist *d, const size_t *starts, int n_starts, size_t n, size_t bucket_floats);
void dist_grad_begin(Dist *d, float *grads, size_t lo, size_t hi);
void dist_grad_ready(void *dist, size_t lo, size_t hi);
void dist_grad_finish(Dist *d, const char *what);
/* Buckets of the last dist_grad_begin; 0 when the allreduce is not overlapped. */
int dist_grad_buckets(const Dist *d);
/* Bucket b (0: the top layers', the first sent) of the last step, after dist_grad_finish: its
 * floats, and with d->time_grads set at its dist_grad_begin the now_seconds() times at which it
 * was posted and seen complete. Open MPI notices a completion only inside an MPI call: during
 * the backward pass that is the next layer's dist_grad_ready, so `done` is late by at most one
 * layer's backward; in dist_grad_finish it is exact. Off, the times are not read (0). */
void dist_grad_bucket(const Dist *d, int b, double *posted, double *done, size_t *floats);

/* Every rank checks that its (job hash, parameter count) equal rank 0's. On a mismatch every
 * rank returns -1 and rank 0's e names the first differing rank and what differs. */
int dist_check_same_job(Dist *d, uint64_t job_hash, uint64_t n_params, Err *e);

#endif
