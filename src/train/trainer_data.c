/* trainer_data.c: the trainer's data: opening each split's source (listing, mapping: nothing
 * decoded), the split checks, loading = memory, the streamed passes (the batch order handed to
 * the prefetcher) and putting a batch where the forward pass starts (docs/data.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "preflight.h"
#include "train/train_impl.h"
#include "runenv.h"

void trainer_fail(const Trainer *t, int status, const Err *e) {
    if (t->dist->rank == 0) fprintf(stderr, "convnet-dist: %s\n", e->msg);
    dist_abort(t->dist, status);
}

void trainer_fail_local(const Trainer *t, int status, const Err *e) {
    if (t->dist->size > 1)
        fprintf(stderr, "convnet-dist: rank %d: %s\n", t->dist->rank, e->msg);
    else
        fprintf(stderr, "convnet-dist: %s\n", e->msg);
    dist_abort(t->dist, status);
}

static SourceImageOpts image_opts(const Trainer *t, int quiet) {
    const DataCfg *c = &t->job->data;
    SourceImageOpts o = {c->image_h,     c->image_w, c->channels,
                         c->decode_full, c->strict,  quiet,      t->dist};
    return o;
}

static const char *const split_names[3] = {"train", "validation", "test"};

/* The pack of split k (train, validation, test): pack_dir/<name>.pack, checked against the
 * source folder's fingerprint when that folder is there to list (a pack copied without its
 * JPEGs is taken as it is). */
static int open_pack(Trainer *t, Source *s, int k, const char *dir, Err *e) {
    const DataCfg *c = &t->job->data;
    char file[64];
    snprintf(file, sizeof file, "%s.pack", split_names[k]);
    char *path = path_join(c->pack_dir, file);
    SourceImageOpts o = image_opts(t, 1);
    uint64_t fp = 0;
    /* listing is collective: where some rank lacks the folder, the others list alone */
    int here = dir && access(dir, F_OK) == 0;
    if (dist_allreduce_max_int(t->dist, !here, "pack folder check")) o.dist = NULL;
    if (here) {
        Source folder;
        if (source_open_folder(&folder, dir, &o, e)) {
            free(path);
            return -1;
        }
        fp = source_fingerprint(&folder, &o);
        t->list_seconds += source_list_seconds(&folder);
        source_free(&folder);
    }
    int rc = source_open_pack(s, path, &o, fp, e);
    if (rc && !e->set) err_set(e, "%s: cannot open", path);
    free(path);
    return rc;
}

/* Split k's source, opened: nothing is decoded. An absent optional split stays empty. */
static void open_split(Trainer *t, Source *s, int k) {
    const DataCfg *c = &t->job->data;
    Err e = {0};
    int rc = 0;
    memset(s, 0, sizeof *s);
    if (c->format == DATA_IDX) {
        const char *img[3] = {c->train_images, c->val_images, c->test_images};
        const char *lab[3] = {c->train_labels, c->val_labels, c->test_labels};
        if (img[k]) rc = source_open_idx(s, img[k], lab[k], &e);
    } else {
        const char *dirs[3] = {c->train_dir, c->val_dir, c->test_dir};
        /* loading = memory warns while decoding (images_load_dir), not here too */
        SourceImageOpts o = image_opts(t, t->dist->rank != 0 || c->loading_memory);
        if (c->pack_dir && dirs[k])
            rc = open_pack(t, s, k, dirs[k], &e);
        else if (dirs[k])
            rc = source_open_folder(s, dirs[k], &o, &e);
        t->list_seconds += source_list_seconds(s);
    }
    if (rc) trainer_fail(t, EXIT_BAD_INPUT, &e);
}

/* After every split is open (and, loading = memory, decoded): the validation_split tail and the
 * checks that the splits fit together. */
static void data_finish(Trainer *t) {
    const DataCfg *c = &t->job->data;
    Err e = {0};
    double vs = t->job->train.validation_split;
    if (vs > 0 && t->val.n == 0) {
        /* Keras: the validation data are the last samples of the training data, not shuffled */
        source_free(&t->val);
        source_split_tail(&t->train, &t->val, (int64_t)floor((double)t->train.n * vs));
    }
    const Source *splits[3] = {&t->train, &t->val, &t->test};
    for (int i = 0; i < 3; i++)
        if (splits[i]->n && (splits[i]->h != t->train.h || splits[i]->w != t->train.w ||
                             splits[i]->c != t->train.c)) {
            err_set(&e, "%s: the splits' image shapes differ (%dx%dx%d vs %dx%dx%d)",
                    t->job->ini.path, splits[i]->h, splits[i]->w, splits[i]->c, t->train.h,
                    t->train.w, t->train.c);
            trainer_fail(t, EXIT_BAD_INPUT, &e);
        }
    /* Labels are class indices: every split must have the same classes in the same order. */
    for (int i = 1; i < 3 && c->format == DATA_IMAGES; i++) {
        const Source *s = splits[i];
        int same = s->n == 0 || s->n_classes == t->train.n_classes;
        for (int k = 0; same && s->n && k < s->n_classes; k++)
            same = !strcmp(s->class_names[k], t->train.class_names[k]);
        if (!same) {
            err_set(&e,
                    "%s: the %s folder's classes differ from %s's (%d vs %d class folders, or "
                    "other names)",
                    t->job->ini.path, i == 1 ? c->val_dir : c->test_dir, c->train_dir, s->n_classes,
                    t->train.n_classes);
            trainer_fail(t, EXIT_BAD_INPUT, &e);
        }
    }
    if (t->train.n == 0) {
        err_set(&e, "%s: no training samples", t->job->ini.path);
        trainer_fail(t, EXIT_BAD_INPUT, &e);
    }
}

void train_data_open(Trainer *t) {
    for (int k = 0; k < 3; k++) open_split(t, k == 0 ? &t->train : k == 1 ? &t->val : &t->test, k);
    Err e = {0};
    /* the class folders, before anything is planned (preflight.h works on a Dataset's fields) */
    Dataset probe;
    memset(&probe, 0, sizeof probe);
    probe.n = t->train.n;
    probe.n_classes = t->train.n_classes;
    probe.class_names = (char **)t->train.class_names;
    if (preflight_check_classes(t->job, &probe, &e)) trainer_fail(t, EXIT_BAD_INPUT, &e);
    if (!t->job->data.loading_memory) data_finish(t);
}

void train_data_load(Trainer *t) {
    if (!t->job->data.loading_memory) return;
    SourceImageOpts o = image_opts(t, t->dist->rank != 0);
    Err e = {0};
    Source *splits[3] = {&t->train, &t->val, &t->test};
    for (int k = 0; k < 3; k++)
        if (source_load_memory(splits[k], &o, &e)) trainer_fail(t, EXIT_BAD_INPUT, &e);
    data_finish(t);
}

void train_data_check_labels(Trainer *t) {
    const Job *j = t->job;
    const char *names[3] = {"training data", "validation data", "test data"};
    const char *files[3] = {j->data.train_labels ? j->data.train_labels : j->data.train_dir,
                            j->data.val_labels
                                ? j->data.val_labels
                                : (j->data.val_dir ? j->data.val_dir : j->data.train_labels),
                            j->data.test_labels ? j->data.test_labels : j->data.test_dir};
    const Source *splits[3] = {&t->train, &t->val, &t->test};
    Err e = {0};
    for (int i = 0; i < 3; i++) {
        char what[1200];
        snprintf(what, sizeof what, "%s (%s)", files[i] ? files[i] : "?", names[i]);
        /* a validation_split tail starts at sample train.n of the training file */
        int from_split = i == 1 && !j->data.val_labels && !j->data.val_dir;
        if (source_check_labels(splits[i], t->n_classes, from_split ? t->train.n : 0, what, &e))
            trainer_fail(t, EXIT_BAD_INPUT, &e);
    }
}

/* ---------------------------------------------------------------- streamed passes */

/* Batch k of the pass t->plan: the same ids that the step or loop will ask for. */
static int plan_ids(void *arg, long k, int64_t *ids) {
    const BatchPlan *p = arg;
    if (!p->perm) {
        int64_t s = p->lo + (int64_t)k * p->B;
        int n = (int)(p->hi - s < p->B ? p->hi - s : p->B);
        for (int i = 0; i < n; i++) ids[i] = s + i;
        return n;
    }
    long s = p->first + k / p->micro, mk = k % p->micro;
    if (p->cycle > 0) s %= p->cycle;
    int64_t g0 = (int64_t)s * p->B;
    int gB = (int)(p->n - g0 < p->B ? p->n - g0 : p->B);
    int lo = gB * p->rank / p->size, hi = gB * (p->rank + 1) / p->size, n = hi - lo;
    /* micro-batch mk of this rank's share, cut as train_step cuts it */
    int a = (int)(n * mk / p->micro), b = (int)(n * (mk + 1) / p->micro);
    memcpy(ids, p->perm + g0 + lo + a, (size_t)(b - a) * sizeof *ids);
    return b - a;
}

void train_stream_begin(Trainer *t, const Source *d, const FeatureCache *c, long batches) {
    train_stream_end(t);
    if ((c && c->from) || source_is_direct(d) || !t->pf) return;
    t->streaming = d;
    prefetch_begin(t->pf, d, batches, plan_ids, &t->plan);
}

void train_stream_end(Trainer *t) {
    if (t->streaming) prefetch_end(t->pf);
    t->streaming = NULL;
}

void train_stream_steps(Trainer *t, long first, long steps) {
    const int B = t->job->train.batch_size;
    const int K = t->job->train.grad_accum;
    t->plan = (BatchPlan){t->perm, t->train.n, 0, 0, B, t->dist->rank, t->dist->size, first, 0, K};
    train_stream_begin(t, &t->train, &t->cache_train, (steps - first) * K);
}

void train_stream_range(Trainer *t, const Source *d, const FeatureCache *c, int64_t lo,
                        int64_t hi) {
    const int B = t->model.max_batch;
    t->plan = (BatchPlan){NULL, d->n, lo, hi, B, t->dist->rank, t->dist->size, 0, 0, 1};
    train_stream_begin(t, d, c, (long)((hi - lo + B - 1) / B));
}

/* Put the samples t->ids[0..n) of split d, or their cached features, where the forward pass
 * starts, and their labels in t->labels; returns the layer to start at. A streamed split's
 * batch comes from the prefetcher, which was given the same ids. */
int train_load_batch(Trainer *t, const Source *d, const FeatureCache *c, int n) {
    Model *m = &t->model;
    if (c && c->from) {
        float *dst = model_layer_input(m, c->from);
        for (int i = 0; i < n; i++) {
            memcpy(dst + (size_t)i * c->dim, c->x + (size_t)t->ids[i] * c->dim,
                   c->dim * sizeof *dst);
            t->labels[i] = d->labels[t->ids[i]];
        }
        return c->from;
    }
    const uint8_t *px = NULL; /* a direct source: its own pixels */
    if (!source_is_direct(d)) {
        CHECK(t->streaming == d);
        const int64_t *ids = NULL;
        int got = 0;
        Err e = {0};
        if (prefetch_next(t->pf, &px, &ids, &got, &e)) trainer_fail_local(t, EXIT_BAD_INPUT, &e);
        CHECK(got == n && memcmp(ids, t->ids, (size_t)n * sizeof *ids) == 0);
    }
    const DataCfg *dc = &t->job->data;
    source_gather_batch(d, px, t->ids, n, dc->scale, dc->offset, model_input(m), t->labels);
    return 0;
}

/* The prefetcher, when a split streams: decode threads from the rank's share (docs/data.md). */
void train_data_start(Trainer *t) {
    const Source *splits[3] = {&t->train, &t->val, &t->test};
    int streamed = 0;
    for (int k = 0; k < 3; k++) streamed |= splits[k]->n && !source_is_direct(splits[k]);
    if (!streamed) return;
    int threads = t->dist->threads / 2 > 0 ? t->dist->threads / 2 : 1;
    if (runenv()->decode_threads) threads = runenv()->decode_threads;
    const size_t S = (size_t)t->train.h * t->train.w * t->train.c;
    t->pf = prefetch_new(threads, t->job->data.prefetch, t->model.max_batch, S);
}

void train_data_free(Trainer *t) {
    train_stream_end(t);
    prefetch_free(t->pf);
    t->pf = NULL;
    source_free(&t->val); /* a view of train's backend, maybe */
    source_free(&t->train);
    source_free(&t->test);
}
