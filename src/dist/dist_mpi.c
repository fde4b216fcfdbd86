/* dist_mpi.c: include/dist.h over Open MPI (built with MPI=1): process start-up (MPI_Init), the
 * collectives the trainer uses, and the gradient sum in buckets overlapped with the backward
 * pass. The collective watchdog is watchdog.c; what MPI=0 builds instead is dist_local.c. */
#include "dist/dist_mpi.h"
#include "runenv.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The overlapped gradient allreduce (dist_grad_*). */
struct DistGrads {
    size_t *starts; /* layer starts, ascending */
    int n_starts;
    size_t n, bucket_floats;
    float *grads;
    size_t hi, ready; /* this step sums grads[.., hi); grads[ready, hi) are final */
    size_t *cut;      /* this step's buckets, top first: bucket b is [cut[b], b ? cut[b-1] : hi) */
    MPI_Request *req; /* one per bucket */
    int n_buckets, started;
    /* train --timeline (Dist.time_grads at dist_grad_begin): when each bucket was posted and
     * seen complete; idx is MPI_Testsome's output */
    int timed;
    double *posted, *done;
    int *idx;
};

/* MPI counts are int: no bucket is larger. */
#define BUCKET_MAX ((size_t)1 << 30)

/* Started by mpirun (its daemons connect over TCP) on several hosts, without short TCP
 * keepalives for those connections: a lost host then leaves mpirun waiting for minutes (Open MPI's
 * defaults: 300 s + 9 x 20 s) or for ever after an MPI_Abort (see runtime_detection_s). mpirun
 * passes --mca settings to the ranks as OMPI_MCA_* variables, the same on every rank, so every
 * rank takes the same branch; several hosts means several processor names. Under srun the ranks
 * have no mpirun daemons (no OMPI_MCA_orte_hnp_uri): Slurm notices a lost node itself. */
static void warn_without_keepalive(const Dist *d) {
    if (d->size == 1 || !runenv()->mpirun_daemons || runenv()->keepalive_set) return;
    char mine[MPI_MAX_PROCESSOR_NAME] = {0};
    int len = 0;
    MPI_CHECK(MPI_Get_processor_name(mine, &len));
    char *all = xmalloc((size_t)d->size * sizeof mine);
    MPI_CHECK(MPI_Gather(mine, (int)sizeof mine, MPI_CHAR, all, (int)sizeof mine, MPI_CHAR, 0,
                         MPI_COMM_WORLD));
    int hosts = 1;
    for (int r = 1; d->rank == 0 && r < d->size; r++) {
        int seen = 0;
        for (int q = 0; q < r && !seen; q++)
            seen = !strcmp(all + (size_t)r * sizeof mine, all + (size_t)q * sizeof mine);
        hosts += !seen;
    }
    if (d->rank == 0 && hosts > 1)
        fprintf(stderr,
                "convnet-dist: warning: %d ranks on %d hosts without the runtime keepalive: a "
                "lost host or cut link can leave mpirun hanging for minutes or for ever. Launch "
                "with convnet-run, or add to mpirun: --mca oob_tcp_keepalive_time 2 --mca "
                "oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 3\n",
                d->size, hosts);
    free(all);
}

void dist_init(Dist *d, int *argc, char ***argv) {
    memset(d, 0, sizeof *d);
    d->size = 1;
    d->local_size = 1;
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        MPI_CHECK(MPI_Init(argc, argv));
        d->owns_mpi = 1;
    }
    /* Errors come back to us as codes so MPI_CHECK can say where they happened. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &d->rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &d->size));
    MPI_Comm node;
    MPI_CHECK(
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node));
    MPI_CHECK(MPI_Comm_rank(node, &d->local_rank));
    MPI_CHECK(MPI_Comm_size(node, &d->local_size));
    MPI_Comm_free(&node);
    warn_without_keepalive(d);
}

static void grads_free(Dist *d) {
    struct DistGrads *g = d->grads;
    if (!g) return;
    free(g->starts);
    free(g->cut);
    free(g->req);
    free(g->posted);
    free(g->done);
    free(g->idx);
    free(g);
    d->grads = NULL;
}

/* Rank 0's end of a job that ends with a non-zero status (a stop on a signal: 3 or 5). mpirun
 * takes any rank's non-zero exit for a failure and aborts the job; the abort, on every node
 * whose daemon still counts a rank of the job alive (the one that just exited included),
 * waits 2 x odls_base_sigkill_timeout (convnet-run sets 10 s inside Slurm, for scancel's
 * sake). With every rank exiting 3 each node waited in turn: 38-40 s from the checkpoint to
 * the end on 2 Slurm nodes (tests/slurm). So the other ranks exit 0 as soon as MPI is
 * finalized, their daemons see them end normally, and rank 0, which carries the status
 * (mpirun and srun report it), exits a second later: 21 s, the head node's wait alone. */
static int exit_last(int status) {
    struct timespec ts = {1, 0};
    while (nanosleep(&ts, &ts) != 0) {
    }
    return status;
}

int dist_finalize(Dist *d, int status) {
    /* the job's status: a rank that would end differently from the others says so here */
    if (d->owns_mpi) status = dist_allreduce_max_int(d, status, "exit status");
    watch_free(d);
    grads_free(d);
    if (d->owns_mpi) {
        MPI_Finalize();
        if (d->size > 1 && status != EXIT_OK) status = d->rank == 0 ? exit_last(status) : EXIT_OK;
    }
    d->owns_mpi = 0;
    return status;
}

void dist_abort(Dist *d, int status) {
    fflush(stdout);
    fflush(stderr);
    if (d->size > 1) MPI_Abort(MPI_COMM_WORLD, status);
    exit(status);
}

/* Blocking allreduce, or with the watchdog on, a polled non-blocking one. */
static void allreduce(Dist *d, void *buf, int n, MPI_Datatype type, MPI_Op op, const char *what) {
    if (!d->watch) {
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, n, type, op, MPI_COMM_WORLD));
        return;
    }
    MPI_Request req;
    MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf, n, type, op, MPI_COMM_WORLD, &req));
    watch_wait(d, &req, 1, what, NULL);
}

void dist_allreduce_sum_f32(Dist *d, float *buf, size_t n, const char *what) {
    if (d->size > 1) /* MPI counts are int: reduce in chunks below 2^30 elements */
        for (size_t off = 0; off < n; off += 1u << 30) {
            size_t c = n - off < (1u << 30) ? n - off : (1u << 30);
            allreduce(d, buf + off, (int)c, MPI_FLOAT, MPI_SUM, what);
        }
}

void dist_allreduce_sum_f64(Dist *d, double *buf, size_t n, const char *what) {
    if (d->size > 1) allreduce(d, buf, (int)n, MPI_DOUBLE, MPI_SUM, what);
}

void dist_allreduce_max_f64(Dist *d, double *buf, size_t n) {
    if (d->size > 1) allreduce(d, buf, (int)n, MPI_DOUBLE, MPI_MAX, "max");
}

int dist_allreduce_max_int(Dist *d, int v, const char *what) {
    if (d->size > 1) allreduce(d, &v, 1, MPI_INT, MPI_MAX, what);
    return v;
}

void dist_bcast(Dist *d, void *buf, size_t bytes, int root) {
    if (d->size > 1)
        for (size_t off = 0; off < bytes; off += 1u << 30) {
            size_t c = bytes - off < (1u << 30) ? bytes - off : (1u << 30);
            if (!d->watch) {
                MPI_CHECK(MPI_Bcast((char *)buf + off, (int)c, MPI_BYTE, root, MPI_COMM_WORLD));
                continue;
            }
            /* under the watchdog like every collective of the training loop: a rank stopped
             * or cut off at an epoch's end must not leave the others waiting for ever */
            MPI_Request req;
            MPI_CHECK(MPI_Ibcast((char *)buf + off, (int)c, MPI_BYTE, root, MPI_COMM_WORLD, &req));
            watch_wait(d, &req, 1, "broadcast", NULL);
        }
}

void dist_barrier(Dist *d) {
    if (d->size > 1 && d->watch) {
        MPI_Request req;
        MPI_CHECK(MPI_Ibarrier(MPI_COMM_WORLD, &req));
        watch_wait(d, &req, 1, "barrier", NULL);
    } else if (d->size > 1)
        MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
}

void dist_grad_setup(Dist *d, const size_t *starts, int n_starts, size_t n, size_t bucket_floats) {
    grads_free(d);
    if (d->size == 1) return;
    struct DistGrads *g = xcalloc(1, sizeof *g);
    g->starts = xmalloc(((size_t)n_starts + 1) * sizeof *g->starts);
    memcpy(g->starts, starts, (size_t)n_starts * sizeof *starts);
    g->n_starts = n_starts;
    g->n = n;
    g->bucket_floats = bucket_floats;
    /* one bucket per layer at most, plus the splits of layers above BUCKET_MAX */
    size_t cap = (size_t)n_starts + 2 + n / BUCKET_MAX;
    g->cut = xmalloc(cap * sizeof *g->cut);
    g->req = xmalloc(cap * sizeof *g->req);
    g->posted = xcalloc(cap, sizeof *g->posted);
    g->done = xcalloc(cap, sizeof *g->done);
    g->idx = xmalloc(cap * sizeof *g->idx);
    d->grads = g;
}

void dist_grad_begin(Dist *d, float *grads, size_t lo, size_t hi) {
    struct DistGrads *g = d->grads;
    if (!g) return;
    CHECK(lo <= hi && hi <= g->n);
    g->grads = grads;
    g->hi = g->ready = hi;
    g->n_buckets = g->started = 0;
    g->timed = d->time_grads;
    /* The bucket being formed is [s, top): it grows down over whole layers until it holds
     * bucket_floats; the lowest layer's start (or lo) closes the last one. */
    size_t top = hi;
    for (int i = g->n_starts - 1; top > lo; i--) {
        size_t s = i >= 0 && g->starts[i] > lo ? g->starts[i] : lo;
        if (s >= top || (s > lo && top - s < g->bucket_floats)) continue;
        for (; top - s > BUCKET_MAX; top -= BUCKET_MAX) g->cut[g->n_buckets++] = top - BUCKET_MAX;
        g->cut[g->n_buckets++] = s;
        top = s;
    }
}

/* Start, in order, every bucket that lies wholly in grads[ready, hi). */
static void grads_start(struct DistGrads *g, size_t ready) {
    for (; g->started < g->n_buckets && g->cut[g->started] >= ready; g->started++) {
        int b = g->started;
        size_t lo = g->cut[b], hi = b ? g->cut[b - 1] : g->hi;
        if (g->timed) g->posted[b] = now_seconds();
        MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, g->grads + lo, (int)(hi - lo), MPI_FLOAT, MPI_SUM,
                                 MPI_COMM_WORLD, &g->req[b]));
    }
}

void dist_grad_ready(void *dist, size_t lo, size_t hi) {
    struct DistGrads *g = ((Dist *)dist)->grads;
    if (!g) return;
    CHECK(lo <= hi && hi == g->ready);
    g->ready = lo;
    grads_start(g, lo);
    if (!g->started) return;
    if (!g->timed) {
        int done = 0;
        MPI_CHECK(MPI_Testall(g->started, g->req, &done, MPI_STATUSES_IGNORE));
        return;
    }
    /* timed: which buckets are done, each now (a completed request becomes MPI_REQUEST_NULL,
     * which the waits below skip) */
    int n_done = 0;
    MPI_CHECK(MPI_Testsome(g->started, g->req, &n_done, g->idx, MPI_STATUSES_IGNORE));
    if (n_done == MPI_UNDEFINED) return;
    double now = now_seconds();
    for (int i = 0; i < n_done; i++) g->done[g->idx[i]] = now;
}

void dist_grad_finish(Dist *d, const char *what) {
    struct DistGrads *g = d->grads;
    if (!g) return;
    grads_start(g, 0);
    if (d->watch)
        watch_wait(d, g->req, g->started, what, g->timed ? g->done : NULL);
    else if (!g->timed)
        MPI_CHECK(MPI_Waitall(g->started, g->req, MPI_STATUSES_IGNORE));
    else
        for (int b;;) {
            MPI_CHECK(MPI_Waitany(g->started, g->req, &b, MPI_STATUS_IGNORE));
            if (b == MPI_UNDEFINED) break;
            g->done[b] = now_seconds();
        }
}

int dist_grad_buckets(const Dist *d) {
    if (d->grads) return d->grads->n_buckets;
    return 0;
}

void dist_grad_bucket(const Dist *d, int b, double *posted, double *done, size_t *floats) {
    const struct DistGrads *g = d->grads;
    CHECK(g && b >= 0 && b < g->n_buckets);
    *floats = (b ? g->cut[b - 1] : g->hi) - g->cut[b];
    *posted = g->timed ? g->posted[b] : 0;
    *done = g->timed ? g->done[b] : 0;
}


void dist_allgather_bytes(Dist *d, const void *mine, void *all, size_t bytes) {
    MPI_CHECK(MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD));
}
