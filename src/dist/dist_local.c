/* dist_local.c: include/dist.h for a build without MPI (MPI=0): one process, rank 0 of 1. The
 * collectives leave their buffers as they are (the sum over one rank), the watchdog and the
 * overlapped gradient sum do nothing. The MPI build uses dist_mpi.c and watchdog.c instead. */
#include "dist/dist_impl.h"

#include <stdlib.h>
#include <string.h>

void dist_init(Dist *d, int *argc, char ***argv) {
    (void)argc, (void)argv;
    memset(d, 0, sizeof *d);
    d->size = 1;
    d->local_size = 1;
}

int dist_finalize(Dist *d, int status) {
    d->owns_mpi = 0;
    return status;
}

void dist_abort(Dist *d, int status) {
    (void)d;
    fflush(stdout);
    fflush(stderr);
    exit(status);
}

void dist_set_watchdog(Dist *d, double seconds) { d->collective_timeout = seconds; }

void dist_begin_step(Dist *d, long step) { d->step = step; }

void dist_allreduce_sum_f32(Dist *d, float *buf, size_t n, const char *what) {
    (void)d, (void)buf, (void)n, (void)what;
}

void dist_allreduce_sum_f64(Dist *d, double *buf, size_t n, const char *what) {
    (void)d, (void)buf, (void)n, (void)what;
}

void dist_allreduce_max_f64(Dist *d, double *buf, size_t n) { (void)d, (void)buf, (void)n; }

int dist_allreduce_max_int(Dist *d, int v, const char *what) {
    (void)d, (void)what;
    return v;
}

void dist_bcast(Dist *d, void *buf, size_t bytes, int root) {
    (void)d, (void)buf, (void)bytes, (void)root;
}

void dist_barrier(Dist *d) { (void)d; }

void dist_grad_setup(Dist *d, const size_t *starts, int n_starts, size_t n, size_t bucket_floats) {
    (void)d, (void)starts, (void)n_starts, (void)n, (void)bucket_floats;
}

void dist_grad_begin(Dist *d, float *grads, size_t lo, size_t hi) {
    (void)d, (void)grads, (void)lo, (void)hi;
}

void dist_grad_ready(void *dist, size_t lo, size_t hi) { (void)dist, (void)lo, (void)hi; }

void dist_grad_finish(Dist *d, const char *what) { (void)d, (void)what; }

int dist_grad_buckets(const Dist *d) {
    (void)d;
    return 0;
}

void dist_grad_bucket(const Dist *d, int b, double *posted, double *done, size_t *floats) {
    (void)d, (void)b;
    *posted = *done = 0;
    *floats = 0;
}

void dist_allgather_bytes(Dist *d, const void *mine, void *all, size_t bytes) {
    (void)d;
    memcpy(all, mine, bytes);
}
