/* timeline.c: the per-rank event buffer of `train --timeline` and its Chrome trace-event JSON
 * (see timeline.h): {"traceEvents": [...]} of complete events ("ph": "X", microseconds), one
 * pid per rank, named "rank R" by metadata events; on each rank thread 0 is the training loop
 * (steps, their parts, each layer's backward inside its micro-batch's backward), and thread
 * 1 + b is gradient allreduce bucket b, which runs beside the backward pass and so cannot nest
 * in thread 0's slices. */
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
    int32_t kind, rank, index; /* kind -1: padding in the gathered array */
} TlEvent;

static struct {
    TlEvent *ev;
    long n, dropped;
    double origin;
    int rank, n_layers;
    char *path;
    char (*layer)[48]; /* the model's layer names (every rank's are rank 0's: the same job) */
    const char **kind; /* and their Keras class names */
} tl;

static const char *const NAMES[TL_KINDS] = {"step",      "data",      "forward",  "backward",
                                            "allreduce", "optimizer", "evaluate", "checkpoint",
                                            "layer",     "bucket"};

void timeline_start(Dist *d, const char *path, const Model *m) {
    memset(&tl, 0, sizeof tl);
    tl.ev = xmalloc(TIMELINE_CAPACITY * sizeof *tl.ev);
    tl.rank = d->rank;
    tl.path = xstrdup(path);
    tl.n_layers = m->n_layers;
    tl.layer = xcalloc((size_t)m->n_layers + 1, sizeof *tl.layer);
    tl.kind = xcalloc((size_t)m->n_layers + 1, sizeof *tl.kind);
    for (int l = 0; l < m->n_layers; l++) {
        snprintf(tl.layer[l], sizeof tl.layer[l], "%s", m->layers[l].name);
        tl.kind[l] = layer_ops[m->layers[l].kind]->keras_name;
    }
    d->time_grads = 1;
    dist_barrier(d);
    tl.origin = now_seconds();
    timeline_on = 1;
}

void timeline_record(TimelineKind k, int index, double t0, double t1, long step, double bytes) {
    if (tl.n == TIMELINE_CAPACITY) {
        tl.dropped++;
        return;
    }
    tl.ev[tl.n++] = (TlEvent){t0 - tl.origin, t1 - tl.origin, bytes, step,
                              (int32_t)k,     tl.rank,        index};
}

void timeline_layer_timed(void *dist, int layer, double t0, double t1) {
    timeline_record(TL_LAYER, layer, t0, t1, ((const Dist *)dist)->step, 0);
}

void timeline_record_buckets(const Dist *d) {
    for (int b = 0, n = dist_grad_buckets(d); b < n; b++) {
        double posted, done;
        size_t floats;
        dist_grad_bucket(d, b, &posted, &done, &floats);
        timeline_record(TL_BUCKET, b, posted, done, d->step, 4.0 * (double)floats);
    }
}

/* Microseconds, rounded the same way for every time so that an event inside another stays
 * inside it in the file (durations are differences of rounded ends). */
static double us(double s) { return (double)(long long)(s * 1e6 * 1000 + 0.5) / 1000; }

/* Rank, then start, then the longer first: a parent precedes the children that start with it,
 * as viewers that nest in file order want. */
static int event_order(const void *pa, const void *pb) {
    const TlEvent *a = pa, *b = pb;
    if (a->rank != b->rank) return a->rank < b->rank ? -1 : 1;
    if (a->t0 != b->t0) return a->t0 < b->t0 ? -1 : 1;
    return (a->t1 < b->t1) - (a->t1 > b->t1);
}

static void write_event(FILE *f, const TlEvent *v, int first) {
    const char *name = NAMES[v->kind], *cat = "train";
    char bucket[32];
    int tid = 0;
    if (v->kind == TL_LAYER && v->index >= 0 && v->index < tl.n_layers) {
        name = tl.layer[v->index];
        cat = "backward";
    } else if (v->kind == TL_BUCKET) {
        snprintf(bucket, sizeof bucket, "bucket %d", v->index);
        name = bucket;
        cat = "allreduce";
        tid = 1 + v->index;
    }
    double ts = us(v->t0), end = us(v->t1);
    fprintf(f,
            "%s{\"name\": \"%s\", \"cat\": \"%s\", \"ph\": \"X\", \"pid\": %d, \"tid\": %d, "
            "\"ts\": %.3f, \"dur\": %.3f, \"args\": {\"step\": %lld",
            first ? "" : ",\n", name, cat, v->rank, tid, ts, end - ts, (long long)v->step);
    if (v->kind == TL_ALLREDUCE || v->kind == TL_BUCKET) fprintf(f, ", \"bytes\": %.0f", v->bytes);
    if (v->kind == TL_LAYER && v->index >= 0 && v->index < tl.n_layers)
        fprintf(f, ", \"layer\": \"%s\"", tl.kind[v->index]);
    fprintf(f, "}}");
}

/* The names of rank r's process and threads (the buckets' up to `buckets`). */
static void write_names(FILE *f, int r, int buckets) {
    fprintf(f,
            "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": 0, "
            "\"args\": {\"name\": \"rank %d\"}},\n"
            "{\"name\": \"process_sort_index\", \"ph\": \"M\", \"pid\": %d, \"tid\": 0, "
            "\"args\": {\"sort_index\": %d}},\n"
            "{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": 0, "
            "\"args\": {\"name\": \"train\"}},\n",
            r, r, r, r, r);
    for (int b = 0; b < buckets; b++)
        fprintf(f,
                "{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": %d, "
                "\"args\": {\"name\": \"allreduce bucket %d\"}},\n",
                r, 1 + b, b);
}

static int write_json(const char *path, TlEvent *ev, long n, int ranks, long dropped, Err *e) {
    qsort(ev, (size_t)n, sizeof *ev, event_order); /* the padding (kind -1) too: skipped below */
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
    int buckets = 0;
    for (long i = 0; i < n; i++)
        if (ev[i].kind == TL_BUCKET && ev[i].index >= buckets) buckets = ev[i].index + 1;
    for (int r = 0; r < ranks; r++) write_names(f, r, buckets);
    int first = 1;
    for (long i = 0; i < n; i++) {
        if (ev[i].kind < 0) continue;
        write_event(f, &ev[i], first);
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
    d->time_grads = 0;
    /* every rank's events into one array, each rank a slot of the longest rank's count */
    double counts[2] = {(double)tl.n, (double)tl.dropped};
    dist_allreduce_max_f64(d, counts, 2);
    const long slot = (long)counts[0] > 0 ? (long)counts[0] : 1;
    TlEvent *all = xmalloc((size_t)slot * (size_t)d->size * sizeof *all);
    memset(all, 0, (size_t)slot * (size_t)d->size * sizeof *all);
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
    free(tl.layer);
    free(tl.kind);
    memset(&tl, 0, sizeof tl);
    return rc;
}
