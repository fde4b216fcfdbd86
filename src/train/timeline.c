/* timeline.c: the per-rank event buffer of `train --timeline` and its Chrome trace-event JSON
 * (see timeline.h): {"traceEvents": [...]} of complete events ("ph": "X", microseconds), one
 * pid per rank, named "rank R" by metadata events. */
#include "timeline.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int timeline_on;

typedef struct {
    double t0, t1, bytes;
    int64_t step;
    int32_t kind, rank; /* kind -1: padding in the gathered array */
} TlEvent;

static struct {
    TlEvent *ev;
    long n, dropped;
    double origin;
    int rank;
    char *path;
} tl;

static const char *const NAMES[TL_KINDS] = {"step",      "data",      "forward",  "backward",
                                            "allreduce", "optimizer", "evaluate", "checkpoint"};

void timeline_start(Dist *d, const char *path) {
    memset(&tl, 0, sizeof tl);
    tl.ev = xmalloc(TIMELINE_CAPACITY * sizeof *tl.ev);
    tl.rank = d->rank;
    tl.path = xstrdup(path);
    dist_barrier(d);
    tl.origin = now_seconds();
    timeline_on = 1;
}

void timeline_record(TimelineKind k, double t0, double t1, long step, double bytes) {
    if (tl.n == TIMELINE_CAPACITY) {
        tl.dropped++;
        return;
    }
    tl.ev[tl.n++] = (TlEvent){t0 - tl.origin, t1 - tl.origin, bytes, step, (int32_t)k, tl.rank};
}

/* Microseconds, rounded the same way for every time so that an event inside another stays
 * inside it in the file (durations are differences of rounded ends). */
static double us(double s) { return (double)(long long)(s * 1e6 * 1000 + 0.5) / 1000; }

static int write_json(const char *path, const TlEvent *ev, long n, int ranks, long dropped,
                      Err *e) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        err_set(e, "cannot write the timeline %s: %s", tmp, strerror(errno));
        return -1;
    }
    fprintf(f,
            "{\"displayTimeUnit\": \"ms\", \"otherData\": {\"dropped_events\": %ld},\n"
            "\"traceEvents\": [\n",
            dropped);
    for (int r = 0; r < ranks; r++)
        fprintf(f,
                "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": 0, "
                "\"args\": {\"name\": \"rank %d\"}},\n"
                "{\"name\": \"process_sort_index\", \"ph\": \"M\", \"pid\": %d, \"tid\": 0, "
                "\"args\": {\"sort_index\": %d}},\n",
                r, r, r, r);
    int first = 1;
    for (long i = 0; i < n; i++) {
        const TlEvent *v = &ev[i];
        if (v->kind < 0) continue;
        double ts = us(v->t0), end = us(v->t1);
        fprintf(f,
                "%s{\"name\": \"%s\", \"cat\": \"train\", \"ph\": \"X\", \"pid\": %d, \"tid\": 0, "
                "\"ts\": %.3f, \"dur\": %.3f, \"args\": {\"step\": %lld",
                first ? "" : ",\n", NAMES[v->kind], v->rank, ts, end - ts, (long long)v->step);
        if (v->kind == TL_ALLREDUCE) fprintf(f, ", \"bytes\": %.0f", v->bytes);
        fprintf(f, "}}");
        first = 0;
    }
    fprintf(f, "\n]}\n");
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        err_set(e, "cannot write the timeline %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

int timeline_finish(Dist *d, Err *e) {
    if (!timeline_on) return 0;
    timeline_on = 0;
    /* every rank's events into one array, each rank a slot of the longest rank's count */
    double counts[2] = {(double)tl.n, (double)tl.dropped};
    dist_allreduce_max_f64(d, counts, 2);
    const long slot = (long)counts[0] > 0 ? (long)counts[0] : 1;
    TlEvent *all = xmalloc((size_t)slot * (size_t)d->size * sizeof *all);
    for (long i = 0; i < slot * d->size; i++) all[i].kind = -1;
    memcpy(all + (size_t)slot * (size_t)d->rank, tl.ev, (size_t)tl.n * sizeof *tl.ev);
    dist_allgather_rows(d, all, (int64_t)slot * d->size, sizeof *all);
    int rc = 0;
    if (d->rank == 0) {
        rc = write_json(tl.path, all, slot * d->size, d->size, (long)counts[1], e);
        if (rc == 0)
            printf("timeline: %s (%d rank%s%s; open it in ui.perfetto.dev or chrome://tracing)\n",
                   tl.path, d->size, d->size == 1 ? "" : "s",
                   counts[1] > 0 ? ", some events dropped: the buffer was full" : "");
    }
    free(all);
    free(tl.ev);
    free(tl.path);
    memset(&tl, 0, sizeof tl);
    return rc;
}
