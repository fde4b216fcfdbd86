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
} Dist;

void dist_init(Dist *d, int *argc, char ***argv);
void dist_finalize(Dist *d);
/* Stop every rank now with this exit status (MPI_Abort under MPI). */
void dist_abort(Dist *d, int status) __attribute__((noreturn));

/* Pick this rank's thread count: OMP_NUM_THREADS, else SLURM_CPUS_PER_TASK, else the cores of
 * its affinity mask divided among the node's ranks; apply it to OpenMP and OpenBLAS. */
void dist_setup_threads(Dist *d);

/* Watchdog for the training loop's collectives: from now on a collective that makes no
 * progress for `seconds` prints which step, which collective and (on rank 0) which ranks never
 * arrived, then aborts the job with EXIT_COMM_TIMEOUT. Collectives become non-blocking calls
 * polled with MPI_Test, and every rank tells rank 0 when it starts each step's gradient
 * collective. seconds <= 0 turns it off. Collective over all ranks. */
void dist_set_watchdog(Dist *d, double seconds);
/* Mark the start of global step `step` (before its gradient allreduce). */
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

/* Every rank checks that its (job hash, parameter count) equal rank 0's. On a mismatch every
 * rank returns -1 and rank 0's e names the first differing rank and what differs. */
int dist_check_same_job(Dist *d, uint64_t job_hash, uint64_t n_params, Err *e);

#endif
