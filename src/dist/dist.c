/* dist.c: MPI behind the dist.h interface, or its single-process stand-in when built with
 * MPI=0 (CONVNET_MPI=0). Owns process start-up (MPI_Init), thread placement per rank, the
 * collectives the trainer uses (the gradient sum also in buckets overlapped with the backward
 * pass), the collective watchdog, and the check that all ranks run the same job. */
#include "dist.h"

#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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
enum { TAG_WATCH = 7301 };

/* A rank this rank's watchdog talks to. */
typedef struct {
    int rank;
    long in, out;           /* receive and send buffers: a step number */
    MPI_Request recv, send; /* the posted receive; the last send (MPI_REQUEST_NULL: none) */
    long seen;              /* the last step it said it had reached */
    double heard;           /* when it last said anything (now_seconds) */
} WatchPeer;

/* Watchdog state. The ranks talk in a star, rank 0 with every rank and every other rank with
 * rank 0, so that a rank cut off from some ranks can still be named by rank 0: each rank tells
 * rank 0 the step it reaches at the start of every step, and while it waits in a collective it
 * repeats its step to the ranks it talks to every quarter of the timeout. */
struct DistWatch {
    WatchPeer *peer;
    int n_peer;
    double last_beat; /* when this rank last repeated its step */
};

/* The overlapped gradient allreduce (dist_grad_*). */
struct DistGrads {
    size_t *starts; /* layer starts, ascending */
    int n_starts;
    size_t n, bucket_floats;
    float *grads;
    size_t hi, ready;   /* this step sums grads[.., hi); grads[ready, hi) are final */
    size_t *cut;        /* this step's buckets, top first: bucket b is [cut[b], b ? cut[b-1] : hi) */
    MPI_Request *req;   /* one per bucket */
    int n_buckets, started;
};

/* MPI counts are int: no bucket is larger. */
#define BUCKET_MAX ((size_t)1 << 30)
#endif

/* openblas_set_num_threads is not in every cblas.h; declare it ourselves. */
void openblas_set_num_threads(int);

static int env_int(const char *name) {
    const char *v = getenv(name);
    long x;
    if (!v || parse_long(v, &x) != 0 || x < 1 || x > 4096) return 0;
    return (int)x;
}

#if CONVNET_MPI
/* Started by mpirun (its daemons connect over TCP) on several hosts, without short TCP
 * keepalives for those connections: a lost host then leaves mpirun waiting for minutes (Open MPI's
 * defaults: 300 s + 9 x 20 s) or for ever after an MPI_Abort (see runtime_detection_s). mpirun
 * passes --mca settings to the ranks as OMPI_MCA_* variables, the same on every rank, so every
 * rank takes the same branch; several hosts means several processor names. Under srun the ranks
 * have no mpirun daemons (no OMPI_MCA_orte_hnp_uri): Slurm notices a lost node itself. */
static void warn_without_keepalive(const Dist *d) {
    if (d->size == 1 || !getenv("OMPI_MCA_orte_hnp_uri") || getenv("OMPI_MCA_oob_tcp_keepalive_time"))
        return;
    char mine[MPI_MAX_PROCESSOR_NAME] = {0};
    int len = 0;
    MPI_CHECK(MPI_Get_processor_name(mine, &len));
    char *all = xmalloc((size_t)d->size * sizeof mine);
    MPI_CHECK(MPI_Gather(mine, (int)sizeof mine, MPI_CHAR, all, (int)sizeof mine, MPI_CHAR, 0, MPI_COMM_WORLD));
    int hosts = 1;
    for (int r = 1; d->rank == 0 && r < d->size; r++) {
        int seen = 0;
        for (int q = 0; q < r && !seen; q++) seen = !strcmp(all + (size_t)r * sizeof mine, all + (size_t)q * sizeof mine);
        hosts += !seen;
    }
    if (d->rank == 0 && hosts > 1)
        fprintf(stderr, "convnet-dist: warning: %d ranks on %d hosts without the runtime keepalive: a "
                        "lost host or cut link can leave mpirun hanging for minutes or for ever. Launch "
                        "with convnet-run, or add to mpirun: --mca oob_tcp_keepalive_time 2 --mca "
                        "oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 3\n",
                d->size, hosts);
    free(all);
}
#endif

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
    warn_without_keepalive(d);
#endif
}

#if CONVNET_MPI
static void grads_free(Dist *d) {
    struct DistGrads *g = d->grads;
    if (!g) return;
    free(g->starts);
    free(g->cut);
    free(g->req);
    free(g);
    d->grads = NULL;
}
#endif

#if CONVNET_MPI
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
    while (nanosleep(&ts, &ts) != 0) {}
    return status;
}
#endif

int dist_finalize(Dist *d, int status) {
#if CONVNET_MPI
    /* the job's status: a rank that would end differently from the others says so here */
    if (d->owns_mpi) status = dist_allreduce_max_int(d, status, "exit status");
    struct DistWatch *w = d->watch;
    if (w) {
        /* settle the watchdog's messages before MPI_Finalize */
        for (int i = 0; i < w->n_peer; i++) MPI_CHECK(MPI_Wait(&w->peer[i].send, MPI_STATUS_IGNORE));
        dist_barrier(d);
        for (int i = 0; i < w->n_peer; i++) {
            MPI_CHECK(MPI_Cancel(&w->peer[i].recv));
            MPI_Wait(&w->peer[i].recv, MPI_STATUS_IGNORE);
        }
        free(w->peer);
        free(w);
        d->watch = NULL;
    }
    grads_free(d);
    if (d->owns_mpi) {
        MPI_Finalize();
        if (d->size > 1 && status != EXIT_OK) status = d->rank == 0 ? exit_last(status) : EXIT_OK;
    }
#endif
    d->owns_mpi = 0;
    return status;
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
/* Take in what the ranks we talk to have said, and post the receives again. */
static void watch_poll(Dist *d) {
    struct DistWatch *w = d->watch;
    for (int i = 0; i < w->n_peer; i++) {
        WatchPeer *p = &w->peer[i];
        for (;;) {
            int flag = 0;
            MPI_CHECK(MPI_Test(&p->recv, &flag, MPI_STATUS_IGNORE));
            if (!flag) break;
            p->seen = p->in;
            p->heard = now_seconds();
            MPI_CHECK(MPI_Irecv(&p->in, 1, MPI_LONG, p->rank, TAG_WATCH, MPI_COMM_WORLD, &p->recv));
        }
    }
}

/* Tell the ranks we talk to that we are still here, at this step. A rank whose previous message
 * has not gone out (a cut link) is skipped: this never blocks. */
static void watch_beat(Dist *d) {
    struct DistWatch *w = d->watch;
    for (int i = 0; i < w->n_peer; i++) {
        WatchPeer *p = &w->peer[i];
        int sent = 0;
        MPI_CHECK(MPI_Test(&p->send, &sent, MPI_STATUS_IGNORE));
        if (!sent) continue;
        p->out = d->step;
        MPI_CHECK(MPI_Isend(&p->out, 1, MPI_LONG, p->rank, TAG_WATCH, MPI_COMM_WORLD, &p->send));
    }
    w->last_beat = now_seconds();
}

/* A rank that waits in a collective repeats its step every quarter of the timeout: not heard from
 * for half of it, a rank is silent. */
static int watch_silent(const Dist *d, const WatchPeer *p, double now) {
    return now - p->heard > d->collective_timeout / 2;
}

/* How long a wait may make no progress. Rank 0 knows the most (it hears from every rank), so
 * another rank that still hears it leaves it one more timeout to report and abort the job. */
static double watch_patience(const Dist *d) {
    if (d->rank == 0 || watch_silent(d, &d->watch->peer[0], now_seconds())) return d->collective_timeout;
    return 2 * d->collective_timeout;
}

/* Append printf-style to buf[cap] at *len; what does not fit is dropped. */
static void appendf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void appendf(char *buf, size_t cap, size_t *len, const char *fmt, ...) {
    if (*len + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (k > 0) *len = *len + (size_t)k < cap ? *len + (size_t)k : cap - 1;
}

/* Seconds Open MPI's runtime takes to notice a lost host, when mpirun was given short TCP
 * keepalives for its daemons (it passes --mca settings on as OMPI_MCA_* variables):
 * oob_tcp_keepalive_time + intvl x probes. 0 when they are not set. */
static double runtime_detection_s(void) {
    int t = env_int("OMPI_MCA_oob_tcp_keepalive_time");
    if (!t) return 0;
    int intvl = env_int("OMPI_MCA_oob_tcp_keepalive_intvl"), probes = env_int("OMPI_MCA_oob_tcp_keepalive_probes");
    return t + (intvl ? intvl : 20) * (probes ? probes : 9); /* Open MPI's defaults */
}

/* Print what this rank knows: the step, the collective, and the ranks it waited for. `hold`:
 * seconds until the abort. */
static void watch_report(Dist *d, const char *what, double waited, double hold) {
    struct DistWatch *w = d->watch;
    watch_poll(d);
    double now = now_seconds();
    char behind[1024] = "", silent[1024] = "", msg[2200] = "", when[160] = "";
    size_t nb = 0, ns = 0, nm = 0;
    for (int i = 0; i < w->n_peer; i++) {
        const WatchPeer *p = &w->peer[i];
        if (d->rank == 0 && p->seen < d->step)
            appendf(behind, sizeof behind, &nb, "%s%d (last seen at step %ld)", nb ? ", " : "", p->rank, p->seen);
        else if (watch_silent(d, p, now))
            appendf(silent, sizeof silent, &ns, "%s%d (for %.1f s)", ns ? ", " : "", p->rank, now - p->heard);
    }
    if (d->rank != 0)
        appendf(msg, sizeof msg, &nm, ns ? "not heard from rank 0 for %.1f s"
                                         : "rank 0, heard from %.1f s ago, names the ranks it waits for",
                now - w->peer[0].heard);
    else if (!nb && !ns)
        appendf(msg, sizeof msg, &nm, "every rank reached this step and is still heard from: the "
                                      "collective itself stalls (a broken or slow network)");
    else
        appendf(msg, sizeof msg, &nm, "%s%s%s%s%s", nb ? "ranks that never reached this step: " : "", behind,
                nb && ns ? "; " : "", ns ? "ranks not heard from since they reached it: " : "", silent);
    if (hold > 0)
        snprintf(when, sizeof when, " in %.0f s unless mpirun ends it first on a lost host", hold);
    fprintf(stderr,
            "convnet-dist: rank %d: watchdog: collective '%s' at step %ld made no progress for %.0f s "
            "(collective_timeout %.0f s); %s; aborting the job%s (exit status %d)\n",
            d->rank, what, d->step, waited, d->collective_timeout, msg, when, EXIT_COMM_TIMEOUT);
    fflush(stderr);
}

/* Sleep `s` seconds; signals (the runtime's SIGTERM, which the trainer catches) do not cut it
 * short: the runtime goes on to SIGKILL. */
static void sleep_through(double s) {
    if (s <= 0) return;
    struct timespec left = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&left, &left) != 0) continue;
}

/* Report and abort. Once an abort is under way, mpirun (Open MPI 4.1.4) waits forever for the
 * daemon of a host it cannot reach, and a daemon whose connection carries output does not notice
 * a cut link (TCP keepalives probe idle connections only). So with keepalives set, the abort
 * waits until the stall has lasted twice their detection time: after a cut link the runtime has
 * ended the job by then. Rank 0, normally beside mpirun, reports at once; the other ranks report
 * only if the job is still there after the wait. */
static void watch_fire(Dist *d, const char *what, double waited) __attribute__((noreturn));
static void watch_fire(Dist *d, const char *what, double waited) {
    double hold = 2 * runtime_detection_s() - waited;
    if (d->rank == 0) {
        watch_report(d, what, waited, hold);
        sleep_through(hold);
    } else {
        sleep_through(hold);
        watch_report(d, what, hold > 0 ? waited + hold : waited, 0);
    }
    MPI_Abort(MPI_COMM_WORLD, EXIT_COMM_TIMEOUT);
    _exit(EXIT_COMM_TIMEOUT); /* MPI_Abort should not return; if the runtime is gone, go anyway */
}

/* Complete every request of reqs[n], or fire the watchdog when none completes for too long. */
static void watch_wait(Dist *d, MPI_Request *reqs, int n, const char *what) {
    double progress = now_seconds();
    for (long spins = 1;; spins++) {
        int done = 0, which = MPI_UNDEFINED;
        MPI_CHECK(MPI_Testany(n, reqs, &which, &done, MPI_STATUS_IGNORE));
        if (done && which == MPI_UNDEFINED) return; /* none left */
        if (done) {
            progress = now_seconds();
            continue;
        }
        if (spins % 64 == 0) {
            watch_poll(d);
            double now = now_seconds();
            if (now - d->watch->last_beat > d->collective_timeout / 4) watch_beat(d);
            if (now - progress > watch_patience(d)) watch_fire(d, what, now - progress);
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
    watch_wait(d, &req, 1, what);
}
#endif

void dist_set_watchdog(Dist *d, double seconds) {
#if CONVNET_MPI
    if (d->size > 1 && seconds > 0 && !d->watch) {
        dist_barrier(d);
        struct DistWatch *w = xcalloc(1, sizeof *w);
        w->n_peer = d->rank == 0 ? d->size - 1 : 1;
        w->peer = xcalloc((size_t)w->n_peer, sizeof *w->peer);
        double now = now_seconds();
        for (int i = 0; i < w->n_peer; i++) {
            WatchPeer *p = &w->peer[i];
            p->rank = d->rank == 0 ? i + 1 : 0;
            p->send = MPI_REQUEST_NULL;
            p->seen = d->step;
            p->heard = now;
            MPI_CHECK(MPI_Irecv(&p->in, 1, MPI_LONG, p->rank, TAG_WATCH, MPI_COMM_WORLD, &p->recv));
        }
        w->last_beat = now;
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
    /* the previous message went out at least a collective ago: this wait does not block */
    WatchPeer *root = &w->peer[0];
    MPI_CHECK(MPI_Wait(&root->send, MPI_STATUS_IGNORE));
    root->out = step;
    MPI_CHECK(MPI_Isend(&root->out, 1, MPI_LONG, 0, TAG_WATCH, MPI_COMM_WORLD, &root->send));
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
            if (!d->watch) {
                MPI_CHECK(MPI_Bcast((char *)buf + off, (int)c, MPI_BYTE, root, MPI_COMM_WORLD));
                continue;
            }
            /* under the watchdog like every collective of the training loop: a rank stopped
             * or cut off at an epoch's end must not leave the others waiting for ever */
            MPI_Request req;
            MPI_CHECK(MPI_Ibcast((char *)buf + off, (int)c, MPI_BYTE, root, MPI_COMM_WORLD, &req));
            watch_wait(d, &req, 1, "broadcast");
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
    if (d->size > 1 && d->watch) {
        MPI_Request req;
        MPI_CHECK(MPI_Ibarrier(MPI_COMM_WORLD, &req));
        watch_wait(d, &req, 1, "barrier");
    } else if (d->size > 1)
        MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
#endif
    (void)d;
}

void dist_grad_setup(Dist *d, const size_t *starts, int n_starts, size_t n, size_t bucket_floats) {
#if CONVNET_MPI
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
    d->grads = g;
#endif
    (void)d, (void)starts, (void)n_starts, (void)n, (void)bucket_floats;
}

void dist_grad_begin(Dist *d, float *grads, size_t lo, size_t hi) {
#if CONVNET_MPI
    struct DistGrads *g = d->grads;
    if (!g) return;
    CHECK(lo <= hi && hi <= g->n);
    g->grads = grads;
    g->hi = g->ready = hi;
    g->n_buckets = g->started = 0;
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
#endif
    (void)d, (void)grads, (void)lo, (void)hi;
}

#if CONVNET_MPI
/* Start, in order, every bucket that lies wholly in grads[ready, hi). */
static void grads_start(struct DistGrads *g, size_t ready) {
    for (; g->started < g->n_buckets && g->cut[g->started] >= ready; g->started++) {
        int b = g->started;
        size_t lo = g->cut[b], hi = b ? g->cut[b - 1] : g->hi;
        MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, g->grads + lo, (int)(hi - lo), MPI_FLOAT, MPI_SUM,
                                 MPI_COMM_WORLD, &g->req[b]));
    }
}
#endif

void dist_grad_ready(void *dist, size_t lo, size_t hi) {
#if CONVNET_MPI
    struct DistGrads *g = ((Dist *)dist)->grads;
    if (!g) return;
    CHECK(lo <= hi && hi == g->ready);
    g->ready = lo;
    grads_start(g, lo);
    int done = 0;
    if (g->started) MPI_CHECK(MPI_Testall(g->started, g->req, &done, MPI_STATUSES_IGNORE));
#endif
    (void)dist, (void)lo, (void)hi;
}

void dist_grad_finish(Dist *d, const char *what) {
#if CONVNET_MPI
    struct DistGrads *g = d->grads;
    if (!g) return;
    grads_start(g, 0);
    if (d->watch)
        watch_wait(d, g->req, g->started, what);
    else
        MPI_CHECK(MPI_Waitall(g->started, g->req, MPI_STATUSES_IGNORE));
#endif
    (void)d, (void)what;
}

int dist_grad_buckets(const Dist *d) {
#if CONVNET_MPI
    if (d->grads) return d->grads->n_buckets;
#endif
    (void)d;
    return 0;
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
