/* prefetch.c: worker threads that read a pass's batches ahead of the step (see source.h).
 *
 * The ring holds `depth` batch buffers. Batch b goes to slot b % depth; the workers hand out
 * its samples one at a time (a sample is the unit of work: a JPEG decode, or a pack record's
 * copy and checksum), so that all workers help with the batch the step will want first, and
 * move on to batch b + 1 only when every sample of b is handed out; the step's own thread joins
 * in on the batch it is waiting for. A slot is refilled once the
 * consumer has moved past it. Which thread reads which sample changes nothing: every sample is
 * written to its own place, so the batch is the same bytes whatever the thread count or timing.
 */
#include "source.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Bad JPEGs named per pass before the rest are only counted. */
enum { WARN_MAX = 10 };

typedef struct {
    uint8_t *px;
    int64_t *ids;
    long batch; /* which batch the slot holds (-1: none yet) */
    int n, handed, done;
} Slot;

struct Prefetch {
    pthread_mutex_t mu;
    pthread_cond_t work, ready;
    int threads, depth, max_batch;
    size_t S;
    Slot *slots;
    pthread_t *tid;
    /* the pass */
    const Source *src;
    long n_batches, head,
        fill; /* head: the batch the consumer takes next; fill: being handed out */
    PrefetchBatchFn fn;
    void *arg;
    int active, quit, busy, held;
    int failed;
    Err err;
    SourceWorker helper; /* the consumer's, when it reads samples itself */
    int64_t bad;
    int warned;
};

/* Another sample to read: the batch being filled has a free slot and samples left. */
static int have_work(const Prefetch *p) {
    return p->active && !p->failed && p->fill < p->n_batches && p->fill < p->head + p->depth;
}

/* With the lock held: hand out the next sample and read it (the lock is released meanwhile).
 * 0 when there is nothing to hand out. */
static int take_one(Prefetch *p, SourceWorker *w) {
    if (!have_work(p)) return 0;
    Slot *s = &p->slots[p->fill % p->depth];
    if (s->batch != p->fill) { /* the first reader on this batch asks for its ids */
        s->batch = p->fill;
        s->n = p->fn(p->arg, p->fill, s->ids);
        s->handed = s->done = 0;
    }
    if (s->handed == s->n) { /* an empty batch (a rank without samples in a step) */
        p->fill++;
        pthread_cond_broadcast(&p->ready);
        return 1;
    }
    int k = s->handed++;
    if (s->handed == s->n) p->fill++;
    const Source *src = p->src;
    int64_t id = s->ids[k];
    uint8_t *out = s->px + (size_t)k * p->S;
    p->busy++;
    pthread_mutex_unlock(&p->mu);
    Err e = {0};
    int rc = source_read(src, id, out, w, &e);
    pthread_mutex_lock(&p->mu);
    p->busy--;
    if (rc < 0 && !p->failed) {
        p->failed = 1;
        p->err = e;
    } else if (rc > 0) {
        p->bad++;
        if (p->warned++ < WARN_MAX)
            fprintf(stderr,
                    "convnet-dist: warning: %s: trained as a black image (it failed to "
                    "decode after it was listed; sample %lld)%s\n",
                    e.msg, (long long)id,
                    p->warned == WARN_MAX ? "; further bad images are only counted" : "");
    }
    s->done++;
    if (s->done == s->n || p->busy == 0 || p->failed) pthread_cond_broadcast(&p->ready);
    return 1;
}

static void *worker(void *arg) {
    Prefetch *p = arg;
    SourceWorker w = {0};
    pthread_mutex_lock(&p->mu);
    while (!p->quit)
        if (!take_one(p, &w)) pthread_cond_wait(&p->work, &p->mu);
    pthread_mutex_unlock(&p->mu);
    source_worker_free(&w);
    return NULL;
}

Prefetch *prefetch_new(int threads, int depth, int max_batch, size_t sample_bytes) {
    Prefetch *p = xcalloc(1, sizeof *p);
    p->threads = threads > 0 ? threads : 1;
    p->depth = depth > 0 ? depth : 1;
    p->max_batch = max_batch;
    p->S = sample_bytes;
    p->held = -1;
    p->slots = xcalloc((size_t)p->depth, sizeof *p->slots);
    for (int i = 0; i < p->depth; i++) {
        p->slots[i].px = xmalloc((size_t)max_batch * sample_bytes + 1);
        p->slots[i].ids = xmalloc((size_t)max_batch * sizeof *p->slots[i].ids);
        p->slots[i].batch = -1;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->ready, NULL);
    p->tid = xmalloc((size_t)p->threads * sizeof *p->tid);
    for (int i = 0; i < p->threads; i++)
        if (pthread_create(&p->tid[i], NULL, worker, p) != 0)
            die(EXIT_RUNTIME, "cannot start a data-loading thread");
    return p;
}

void prefetch_free(Prefetch *p) {
    if (!p) return;
    prefetch_end(p);
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->threads; i++) pthread_join(p->tid[i], NULL);
    source_worker_free(&p->helper);
    for (int i = 0; i < p->depth; i++) {
        free(p->slots[i].px);
        free(p->slots[i].ids);
    }
    free(p->slots);
    free(p->tid);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->ready);
    free(p);
}

void prefetch_begin(Prefetch *p, const Source *src, long n_batches, PrefetchBatchFn fn, void *arg) {
    prefetch_end(p);
    pthread_mutex_lock(&p->mu);
    p->src = src;
    p->n_batches = n_batches;
    p->fn = fn;
    p->arg = arg;
    p->head = p->fill = 0;
    p->held = -1;
    p->failed = 0;
    p->warned = 0;
    for (int i = 0; i < p->depth; i++) p->slots[i].batch = -1;
    p->active = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
}

int prefetch_next(Prefetch *p, const uint8_t **px, const int64_t **ids, int *n, Err *e) {
    pthread_mutex_lock(&p->mu);
    CHECK(p->active && p->head < p->n_batches);
    if (p->held >= 0) { /* the batch handed out last time is free again */
        p->held = -1;
        p->head++;
        pthread_cond_broadcast(&p->work);
    }
    CHECK(p->head < p->n_batches);
    Slot *s = &p->slots[p->head % p->depth];
    /* while the step's batch is not complete, the step's thread reads its samples too: the
     * step never sits idle while its own data wait for a decoder the OS has not scheduled */
    while (!p->failed && !(s->batch == p->head && s->done == s->n && s->handed == s->n))
        if (p->fill != p->head || !take_one(p, &p->helper)) pthread_cond_wait(&p->ready, &p->mu);
    int rc = 0;
    if (p->failed) {
        err_set(e, "%s", p->err.msg);
        rc = -1;
    } else {
        *px = s->px;
        *ids = s->ids;
        *n = s->n;
        p->held = 1;
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void prefetch_end(Prefetch *p) {
    pthread_mutex_lock(&p->mu);
    p->active = 0;
    while (p->busy > 0) pthread_cond_wait(&p->ready, &p->mu);
    p->held = -1;
    pthread_mutex_unlock(&p->mu);
}

int64_t prefetch_bad_count(const Prefetch *p) { return p->bad; }

int prefetch_threads(const Prefetch *p) { return p->threads; }
