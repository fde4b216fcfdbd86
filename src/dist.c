/* dist.c: MPI behind the dist.h interface, or its single-process stand-in when built with
 * MPI=0 (CONVNET_MPI=0). Owns process start-up (MPI_Init), thread placement per rank, the
 * collectives the trainer uses, and the check that all ranks run the same job. */
#include "dist.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if CONVNET_MPI
#include <mpi.h>

#define MPI_CHECK(call)                                                                      \
    do {                                                                                     \
        int mpi_rc_ = (call);                                                                \
        if (mpi_rc_ != MPI_SUCCESS) {                                                        \
            char mpi_msg_[MPI_MAX_ERROR_STRING];                                             \
            int mpi_len_ = 0;                                                                \
            MPI_Error_string(mpi_rc_, mpi_msg_, &mpi_len_);                                  \
            fprintf(stderr, "convnet-dist: %s failed at %s:%d: %s\n", #call, __FILE__, __LINE__, \
                    mpi_msg_);                                                               \
            MPI_Abort(MPI_COMM_WORLD, EXIT_RUNTIME);                                         \
        }                                                                                    \
    } while (0)
#endif

#if CONVNET_MPI
enum { TAG_ARRIVE = 7301 };

/* Watchdog state: every rank sends rank 0 the step it has reached; rank 0 keeps one receive
 * posted per rank and records the last step each rank announced. */
struct DistWatch {
    long sent_step;    /* buffer of this rank's pending arrival message */
    MPI_Request send;  /* pending arrival message (non-root), MPI_REQUEST_NULL when none */
    long *recv_step;   /* rank 0: receive buffers, one per rank */
    long *seen;        /* rank 0: last step announced by each rank */
    MPI_Request *recv; /* rank 0: posted receives, one per rank (index 0 unused) */
};

#endif

/* openblas_set_num_threads is not in every cblas.h; declare it ourselves. */
void openblas_set_num_threads(int);

static int env_int(const char *name) {
    const char *v = getenv(name);
    long x;
    if (!v || parse_long(v, &x) != 0 || x < 1 || x > 4096) return 0;
    return (int)x;
}

void dist_init(Dist *d, int *argc, char ***argv) {
    memset(d, 0, sizeof *d);
    d->size = 1;
    d->local_size = 1;
#if CONVNET_MPI
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
    MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL,
                                  &node));
    MPI_CHECK(MPI_Comm_rank(node, &d->local_rank));
    MPI_CHECK(MPI_Comm_size(node, &d->local_size));
    MPI_Comm_free(&node);
#endif
}

void dist_finalize(Dist *d) {
#if CONVNET_MPI
    struct DistWatch *w = d->watch;
    if (w) {
        /* settle the watchdog's messages before MPI_Finalize */
        MPI_CHECK(MPI_Wait(&w->send, MPI_STATUS_IGNORE));
        dist_barrier(d);
        if (d->rank == 0)
            for (int r = 1; r < d->size; r++) {
                MPI_CHECK(MPI_Cancel(&w->recv[r]));
                MPI_Wait(&w->recv[r], MPI_STATUS_IGNORE);
            }
        free(w->recv_step);
        free(w->seen);
        free(w->recv);
        free(w);
        d->watch = NULL;
    }
    if (d->owns_mpi) MPI_Finalize();
#endif
    d->owns_mpi = 0;
}

void dist_abort(Dist *d, int status) {
    fflush(stdout);
    fflush(stderr);
#if CONVNET_MPI
    if (d->size > 1) MPI_Abort(MPI_COMM_WORLD, status);
#endif
    exit(status);
}

void dist_setup_threads(Dist *d) {
    cpu_set_t set;
    d->cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    d->node_cores = online > 0 ? (int)online : d->cores;
    int t = env_int("OMP_NUM_THREADS");
    if (!t) t = env_int("SLURM_CPUS_PER_TASK");
    if (!t) {
        /* Bound to a core set (mpirun --bind-to, srun --cpu-bind): use all of it. Otherwise
         * share the node's cores among the ranks on it. */
        int shared = d->cores >= d->node_cores && d->local_size > 1;
        t = shared ? d->cores / d->local_size : d->cores;
        if (t < 1) t = 1;
    }
    d->threads = t;
#ifdef _OPENMP
    omp_set_num_threads(t);
#endif
    openblas_set_num_threads(t);
}

#if CONVNET_MPI
/* Rank 0: take in every arrival message that has come, and re-post the receives. */
static void watch_poll_arrivals(Dist *d) {
    struct DistWatch *w = d->watch;
    if (d->rank != 0) return;
    for (int r = 1; r < d->size; r++)
        for (;;) {
            int flag = 0;
            MPI_CHECK(MPI_Test(&w->recv[r], &flag, MPI_STATUS_IGNORE));
            if (!flag) break;
            w->seen[r] = w->recv_step[r];
            MPI_CHECK(MPI_Irecv(&w->recv_step[r], 1, MPI_LONG, r, TAG_ARRIVE, MPI_COMM_WORLD,
                                &w->recv[r]));
        }
}

static void watch_fire(Dist *d, const char *what, double waited) __attribute__((noreturn));
static void watch_fire(Dist *d, const char *what, double waited) {
    char missing[1024] = "";
    if (d->rank == 0) {
        watch_poll_arrivals(d);
        size_t len = 0;
        for (int r = 1; r < d->size && len + 48 < sizeof missing; r++)
            if (d->watch->seen[r] < d->step)
                len += (size_t)snprintf(missing + len, sizeof missing - len, "%s%d (last seen at step %ld)",
                                        len ? ", " : "", r, d->watch->seen[r]);
    }
    const char *who = d->rank != 0 ? "rank 0 lists the ranks it waits for"
                      : missing[0] ? "ranks that never reached this step: "
                                   : "every rank entered this step's collectives and one stalled inside (a "
                                     "broken or slow network, or a stopped process)";
    fprintf(stderr,
            "convnet-dist: rank %d: watchdog: collective '%s' at step %ld made no progress for %.0f s "
            "(collective_timeout); %s%s; aborting the job (exit status %d)\n",
            d->rank, what, d->step, waited, who, missing, EXIT_COMM_TIMEOUT);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, EXIT_COMM_TIMEOUT);
    _exit(EXIT_COMM_TIMEOUT); /* MPI_Abort should not return; if the runtime is gone, go anyway */
}

/* Complete a request, or fire the watchdog when it makes no progress for too long. */
static void watch_wait(Dist *d, MPI_Request *req, const char *what) {
    double start = now_seconds();
    for (long spins = 1;; spins++) {
        int done = 0;
        MPI_CHECK(MPI_Test(req, &done, MPI_STATUS_IGNORE));
        if (done) return;
        if (spins % 64 == 0) {
            watch_poll_arrivals(d);
            double waited = now_seconds() - start;
            if (waited > d->collective_timeout) watch_fire(d, what, waited);
            if (spins > 4096) usleep(50); /* a long wait: stop burning the core */
        }
    }
}

/* Blocking allreduce, or with the watchdog on, a polled non-blocking one. */
static void allreduce(Dist *d, void *buf, int n, MPI_Datatype type, MPI_Op op, const char *what) {
    if (!d->watch) {
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, n, type, op, MPI_COMM_WORLD));
        return;
    }
    MPI_Request req;
    MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf, n, type, op, MPI_COMM_WORLD, &req));
    watch_wait(d, &req, what);
}
#endif

void dist_set_watchdog(Dist *d, double seconds) {
#if CONVNET_MPI
    if (d->size > 1 && seconds > 0 && !d->watch) {
        dist_barrier(d);
        struct DistWatch *w = xcalloc(1, sizeof *w);
        w->send = MPI_REQUEST_NULL;
        if (d->rank == 0) {
            w->recv_step = xcalloc((size_t)d->size, sizeof *w->recv_step);
            w->seen = xcalloc((size_t)d->size, sizeof *w->seen);
            w->recv = xmalloc((size_t)d->size * sizeof *w->recv);
            w->recv[0] = MPI_REQUEST_NULL;
            for (int r = 1; r < d->size; r++)
                MPI_CHECK(MPI_Irecv(&w->recv_step[r], 1, MPI_LONG, r, TAG_ARRIVE, MPI_COMM_WORLD,
                                    &w->recv[r]));
        }
        d->watch = w;
    }
#endif
    d->collective_timeout = seconds;
}

void dist_begin_step(Dist *d, long step) {
    d->step = step;
#if CONVNET_MPI
    struct DistWatch *w = d->watch;
    if (!w || d->rank == 0) return;
    /* the previous arrival message went out a whole step ago: this wait does not block */
    MPI_CHECK(MPI_Wait(&w->send, MPI_STATUS_IGNORE));
    w->sent_step = step;
    MPI_CHECK(MPI_Isend(&w->sent_step, 1, MPI_LONG, 0, TAG_ARRIVE, MPI_COMM_WORLD, &w->send));
#endif
}

void dist_allreduce_sum_f32(Dist *d, float *buf, size_t n, const char *what) {
#if CONVNET_MPI
    if (d->size > 1) /* MPI counts are int: reduce in chunks below 2^30 elements */
        for (size_t off = 0; off < n; off += 1u << 30) {
            size_t c = n - off < (1u << 30) ? n - off : (1u << 30);
            allreduce(d, buf + off, (int)c, MPI_FLOAT, MPI_SUM, what);
        }
#endif
    (void)d, (void)buf, (void)n, (void)what;
}

void dist_allreduce_sum_f64(Dist *d, double *buf, size_t n, const char *what) {
#if CONVNET_MPI
    if (d->size > 1) allreduce(d, buf, (int)n, MPI_DOUBLE, MPI_SUM, what);
#endif
    (void)d, (void)buf, (void)n, (void)what;
}

void dist_allreduce_max_f64(Dist *d, double *buf, size_t n) {
#if CONVNET_MPI
    if (d->size > 1) allreduce(d, buf, (int)n, MPI_DOUBLE, MPI_MAX, "max");
#endif
    (void)d, (void)buf, (void)n;
}

int dist_allreduce_max_int(Dist *d, int v, const char *what) {
#if CONVNET_MPI
    if (d->size > 1) allreduce(d, &v, 1, MPI_INT, MPI_MAX, what);
#endif
    (void)d, (void)what;
    return v;
}

void dist_bcast(Dist *d, void *buf, size_t bytes, int root) {
#if CONVNET_MPI
    if (d->size > 1)
        for (size_t off = 0; off < bytes; off += 1u << 30) {
            size_t c = bytes - off < (1u << 30) ? bytes - off : (1u << 30);
            MPI_CHECK(MPI_Bcast((char *)buf + off, (int)c, MPI_BYTE, root, MPI_COMM_WORLD));
        }
#endif
    (void)d, (void)buf, (void)bytes, (void)root;
}

void dist_allgather_rows(Dist *d, void *rows, int64_t n, size_t row_bytes) {
    /* one broadcast per owner: simple, and dist_bcast already splits large shards into
     * chunks that MPI's int counts can describe */
    for (int r = 0; r < d->size; r++) {
        int64_t lo = n * r / d->size, hi = n * (r + 1) / d->size;
        dist_bcast(d, (char *)rows + (size_t)lo * row_bytes, (size_t)(hi - lo) * row_bytes, r);
    }
}

void dist_barrier(Dist *d) {
#if CONVNET_MPI
    if (d->size > 1) MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
#endif
    (void)d;
}

int dist_check_same_job(Dist *d, uint64_t job_hash, uint64_t n_params, Err *e) {
    if (d->size == 1) return 0;
    uint64_t mine[2] = {job_hash, n_params};
    uint64_t *all = xmalloc((size_t)d->size * sizeof mine);
#if CONVNET_MPI
    MPI_CHECK(MPI_Allgather(mine, 2, MPI_UINT64_T, all, 2, MPI_UINT64_T, MPI_COMM_WORLD));
#else
    memcpy(all, mine, sizeof mine);
#endif
    int bad = -1;
    for (int r = 1; r < d->size && bad < 0; r++)
        if (all[2 * r] != all[0] || all[2 * r + 1] != all[1]) bad = r;
    if (bad >= 0) {
        if (all[2 * bad + 1] != all[1])
            err_set(e, "rank %d's model has %llu parameters but rank 0's has %llu: every rank must "
                       "run the same job file",
                    bad, (unsigned long long)all[2 * bad + 1], (unsigned long long)all[1]);
        else
            err_set(e, "rank %d resolved a different job than rank 0 (configuration hash %016llx vs "
                       "%016llx): every rank must run the same job file and --set options",
                    bad, (unsigned long long)all[2 * bad], (unsigned long long)all[0]);
    }
    free(all);
    return bad >= 0 ? -1 : 0;
}
