/* watchdog.c: the collective watchdog of include/dist.h (dist_set_watchdog, dist_begin_step),
 * MPI builds only: collectives become non-blocking calls polled here, the ranks tell each other
 * where they are, and a collective that makes no progress for collective_timeout is reported
 * (which step, which collective, which ranks) before the job is aborted. */
#include "dist/dist_mpi.h"
#include "runenv.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    if (d->rank == 0 || watch_silent(d, &d->watch->peer[0], now_seconds()))
        return d->collective_timeout;
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
    const RunEnv *env = runenv();
    int t = env->keepalive_time;
    if (!t) return 0;
    int intvl = env->keepalive_intvl, probes = env->keepalive_probes;
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
            appendf(behind, sizeof behind, &nb, "%s%d (last seen at step %ld)", nb ? ", " : "",
                    p->rank, p->seen);
        else if (watch_silent(d, p, now))
            appendf(silent, sizeof silent, &ns, "%s%d (for %.1f s)", ns ? ", " : "", p->rank,
                    now - p->heard);
    }
    if (d->rank != 0)
        appendf(msg, sizeof msg, &nm,
                ns ? "not heard from rank 0 for %.1f s"
                   : "rank 0, heard from %.1f s ago, names the ranks it waits for",
                now - w->peer[0].heard);
    else if (!nb && !ns)
        appendf(msg, sizeof msg, &nm,
                "every rank reached this step and is still heard from: the "
                "collective itself stalls (a broken or slow network)");
    else
        appendf(msg, sizeof msg, &nm, "%s%s%s%s%s",
                nb ? "ranks that never reached this step: " : "", behind, nb && ns ? "; " : "",
                ns ? "ranks not heard from since they reached it: " : "", silent);
    if (hold > 0)
        snprintf(when, sizeof when, " in %.0f s unless mpirun ends it first on a lost host", hold);
    fprintf(
        stderr,
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

/* dist_mpi.h */
void watch_wait(Dist *d, MPI_Request *reqs, int n, const char *what, double *done_at) {
    double progress = now_seconds();
    for (long spins = 1;; spins++) {
        int done = 0, which = MPI_UNDEFINED;
        MPI_CHECK(MPI_Testany(n, reqs, &which, &done, MPI_STATUS_IGNORE));
        if (done && which == MPI_UNDEFINED) return; /* none left */
        if (done) {
            progress = now_seconds();
            if (done_at) done_at[which] = progress;
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

void dist_set_watchdog(Dist *d, double seconds) {
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
    d->collective_timeout = seconds;
}

void dist_begin_step(Dist *d, long step) {
    d->step = step;
    struct DistWatch *w = d->watch;
    if (!w || d->rank == 0) return;
    /* the previous message went out at least a collective ago: this wait does not block */
    WatchPeer *root = &w->peer[0];
    MPI_CHECK(MPI_Wait(&root->send, MPI_STATUS_IGNORE));
    root->out = step;
    MPI_CHECK(MPI_Isend(&root->out, 1, MPI_LONG, 0, TAG_WATCH, MPI_COMM_WORLD, &root->send));
}


void watch_free(Dist *d) {
    struct DistWatch *w = d->watch;
    if (!w) return;
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
