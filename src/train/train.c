/* train.c: data loading per job, the trainer's plan and buffers, feature caches, one distributed
 * optimizer step, sharded evaluation and the bench loops (see train.h; the epoch loop is fit.c). */
#include "train.h"
#include "train/train_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "images.h"
#include "keras_h5.h"
#include "loss.h"
#include "preflight.h"
#include "stop.h"
#include "weights.h"


static void load_idx_split(Dataset *d, const char *images, const char *labels, Dist *dist) {
    Err e = {0};
    if (idx_load(d, images, labels, &e)) {
        if (dist->rank == 0) fprintf(stderr, "convnet-dist: %s\n", e.msg);
        dist_abort(dist, EXIT_BAD_INPUT);
    }
}

static void load_image_split(Dataset *d, const char *dir, const DataCfg *c, Dist *dist) {
    Err e = {0};
    ImageDirOptions o;
    image_dir_options_default(&o);
    o.height = c->image_h;
    o.width = c->image_w;
    o.channels = c->channels;
    o.strict = c->strict;
    o.exact = c->decode_full;
    o.quiet = dist->rank != 0; /* every rank reads the same files: one warning is enough */
    if (images_load_dir(d, dir, &o, &e)) {
        if (dist->rank == 0) fprintf(stderr, "convnet-dist: %s\n", e.msg);
        dist_abort(dist, EXIT_BAD_INPUT);
    }
}

static void load_data(Trainer *t) {
    const DataCfg *c = &t->job->data;
    Dist *dist = t->dist;
    if (c->format == DATA_IDX) {
        load_idx_split(&t->train, c->train_images, c->train_labels, dist);
        load_idx_split(&t->test, c->test_images, c->test_labels, dist);
        if (c->val_images) load_idx_split(&t->val, c->val_images, c->val_labels, dist);
    } else {
        load_image_split(&t->train, c->train_dir, c, dist);
        load_image_split(&t->test, c->test_dir, c, dist);
        if (c->val_dir) load_image_split(&t->val, c->val_dir, c, dist);
    }
    double vs = t->job->train.validation_split;
    if (vs > 0 && t->val.n == 0) {
        /* Keras: the validation data are the last samples of the training data, not shuffled */
        int64_t count = (int64_t)floor((double)t->train.n * vs);
        dataset_split_tail(&t->train, &t->val, count);
    }
    const Dataset *splits[3] = {&t->train, &t->val, &t->test};
    for (int i = 0; i < 3; i++)
        if (splits[i]->n && (splits[i]->h != t->train.h || splits[i]->w != t->train.w ||
                             splits[i]->c != t->train.c)) {
            if (dist->rank == 0)
                fprintf(stderr, "convnet-dist: %s: the splits' image shapes differ (%dx%dx%d vs "
                                "%dx%dx%d)\n",
                        t->job->ini.path, splits[i]->h, splits[i]->w, splits[i]->c, t->train.h,
                        t->train.w, t->train.c);
            dist_abort(dist, EXIT_BAD_INPUT);
        }
    /* Labels are class indices: every split must have the same classes in the same order. */
    for (int i = 1; i < 3 && c->format == DATA_IMAGES; i++) {
        const Dataset *s = splits[i];
        int same = s->n == 0 || s->n_classes == t->train.n_classes;
        for (int k = 0; same && s->n && k < s->n_classes; k++)
            same = !strcmp(s->class_names[k], t->train.class_names[k]);
        if (!same) {
            if (dist->rank == 0)
                fprintf(stderr, "convnet-dist: %s: the %s folder's classes differ from %s's (%d vs %d "
                                "class folders, or other names)\n",
                        t->job->ini.path, i == 1 ? c->val_dir : c->test_dir, c->train_dir,
                        s->n_classes, t->train.n_classes);
            dist_abort(dist, EXIT_BAD_INPUT);
        }
    }
    if (t->train.n == 0) {
        if (dist->rank == 0) fprintf(stderr, "convnet-dist: %s: no training samples\n", t->job->ini.path);
        dist_abort(dist, EXIT_BAD_INPUT);
    }
}

/* The model's output must fit the loss, and every label must fit the model. */
static void check_outputs(Trainer *t) {
    const Job *j = t->job;
    Shape out = model_output_shape(&t->model);
    Err e = {0};
    const Layer *last = &j->layers[j->n_layers - 1];
    char where[1100];
    layer_where(last, where, sizeof where);
    if (!out.flat) {
        err_set(&e, "%s: the last layer (%s, %s) must output a flat vector of class scores "
                    "(add [flatten] and [dense])",
                j->ini.path, last->name, where);
    } else if (j->train.loss == LOSS_BINARY_CROSSENTROPY) {
        if (out.c != 1 || last->act != ACT_SIGMOID)
            err_set(&e, "%s: binary_crossentropy needs a last layer with 1 unit and sigmoid "
                        "activation; %s (%s) has %d units, activation %s",
                    j->ini.path, last->name, where, out.c, activation_name(last->act));
        t->n_classes = 2;
    } else {
        if (out.c < 2 || last->act != ACT_SOFTMAX)
            err_set(&e, "%s: sparse_categorical_crossentropy needs a last layer with one unit per "
                        "class and softmax activation; %s (%s) has %d units, activation %s",
                    j->ini.path, last->name, where, out.c, activation_name(last->act));
        t->n_classes = out.c;
    }
    if (!e.set && t->train.labels) {
        const char *names[3] = {"training data", "validation data", "test data"};
        const char *files[3] = {j->data.train_labels ? j->data.train_labels : j->data.train_dir,
                                j->data.val_labels ? j->data.val_labels
                                                   : (j->data.val_dir ? j->data.val_dir : j->data.train_labels),
                                j->data.test_labels ? j->data.test_labels : j->data.test_dir};
        const Dataset *splits[3] = {&t->train, &t->val, &t->test};
        for (int i = 0; i < 3 && !e.set; i++) {
            char what[1200];
            snprintf(what, sizeof what, "%s (%s)", files[i] ? files[i] : "?", names[i]);
            /* a validation_split tail starts at sample train.n of the training file */
            int from_split = i == 1 && !j->data.val_labels && !j->data.val_dir;
            dataset_check_labels(splits[i], t->n_classes, from_split ? t->train.n : 0, what, &e);
        }
    }
    if (e.set) {
        if (t->dist->rank == 0) fprintf(stderr, "convnet-dist: %s\n", e.msg);
        dist_abort(t->dist, EXIT_BAD_INPUT);
    }
}

/* n random samples of shape s with labels in [0, classes), keyed on the job seed. */
static void synthetic_dataset(Dataset *d, Shape s, int64_t n, int classes, uint64_t seed) {
    memset(d, 0, sizeof *d);
    d->n = n;
    d->h = s.h;
    d->w = s.w;
    d->c = s.c;
    size_t total = (size_t)n * shape_size(s);
    d->pixels = xmalloc(total);
    d->labels = xmalloc((size_t)n * sizeof *d->labels);
    Rng r = rng_keyed(seed, RNG_SPLIT, 1, 0);
    for (size_t i = 0; i < total; i++) d->pixels[i] = (uint8_t)rng_u64(&r);
    for (int64_t i = 0; i < n; i++) d->labels[i] = (int32_t)rng_below(&r, (uint64_t)classes);
    d->n_classes = classes;
}

/* Plan the model, then, for conv_algorithm = auto, time the candidates: rank 0 alone does that
 * and broadcasts its choice, which every other rank then plans with, so that all ranks run the
 * same arithmetic. */
static void plan_model(Trainer *t, Shape input, int max_batch) {
    const Job *job = t->job;
    Dist *dist = t->dist;
    Err e = {0};
    /* every rank plans the same layers the same way: they fail, or go on, together */
    int rc = model_plan(&t->model, job->layers, job->n_layers, input, max_batch, &e);
    if (!rc && model_has_auto_algorithms(&t->model)) {
        const int n = job->n_layers;
        ConvAlgoId *algos = xmalloc(((size_t)n + 1) * sizeof *algos);
        if (dist->rank == 0) rc = model_tune_algorithms(&t->model, algos, &e);
        algos[n] = (ConvAlgoId)rc; /* rank 0's outcome rides along */
        dist_bcast(dist, algos, ((size_t)n + 1) * sizeof *algos, 0);
        if (dist->rank != 0) rc = algos[n] ? -1 : model_set_algorithms(&t->model, algos, &e);
        if (dist->rank != 0 && algos[n]) err_set(&e, "rank 0 could not plan the timed algorithms");
        free(algos);
    }
    if (rc) {
        /* the message names the layer's file and line (an [include]d file, maybe) */
        if (dist->rank == 0) fprintf(stderr, "convnet-dist: %s\n", e.msg);
        dist_abort(dist, EXIT_BAD_INPUT);
    }
}

/* A failed preflight check (rc != 0, message in e): bad input, nothing done yet. */
static void preflight_or_abort(Trainer *t, int rc, const Err *e) {
    if (!rc) return;
    if (t->dist->rank == 0) fprintf(stderr, "convnet-dist: %s\n", e->msg);
    dist_abort(t->dist, EXIT_BAD_INPUT);
}

void trainer_init(Trainer *t, const Job *job, Dist *dist, TrainerData data) {
    memset(t, 0, sizeof *t);
    t->job = job;
    t->dist = dist;
    Shape input;
    if (data == TRAINER_LOAD_DATA) {
        load_data(t);
        Err pe = {0};
        preflight_or_abort(t, preflight_check_classes(job, &t->train, &pe), &pe);
        input = (Shape){t->train.h, t->train.w, t->train.c, 0};
    } else if (job->data.format == DATA_IMAGES) {
        input = (Shape){job->data.image_h, job->data.image_w, job->data.channels, 0};
    } else {
        /* Without data (summary): the test split's IDX file gives the input shape. */
        Dataset probe;
        Err e = {0};
        if (idx_load(&probe, job->data.test_images, job->data.test_labels, &e)) {
            fprintf(stderr, "convnet-dist: %s\n", e.msg);
            dist_abort(dist, EXIT_BAD_INPUT);
        }
        input = (Shape){probe.h, probe.w, probe.c, 0};
        dataset_free(&probe);
    }
    int B = job->train.batch_size;
    int max_batch = (B + dist->size - 1) / dist->size;
    plan_model(t, input, max_batch);
    Err e = {0};
    if (data == TRAINER_SYNTHETIC) {
        int outputs = (int)shape_size(model_output_shape(&t->model));
        /* 8 global batches: steps cycle through them; a benchmark holds about one batch of data,
         * as the peer does, not a data set */
        int64_t n = 8 * (int64_t)job->train.batch_size;
        synthetic_dataset(&t->train, input, n, outputs > 1 ? outputs : 2, job->train.seed);
    }
    /* state for every parameter: a phase that unfreezes more needs no new arrays */
    optim_init(&t->opt, &job->train.opt, t->model.state_lo);
    /* no phase trains anything below `lowest`: those layers only ever run forward */
    int lowest = t->model.n_layers;
    for (int p = job->n_phases - 1; p >= 0; p--) {
        trainer_set_phase(t, p);
        if (t->model.lowest_trainable < lowest) lowest = t->model.lowest_trainable;
    }
    model_plan_backward(&t->model, lowest);
    check_outputs(t);
    if (dist_check_same_job(dist, job->hash, t->model.n_params, &e)) {
        if (dist->rank == 0) fprintf(stderr, "convnet-dist: %s\n", e.msg);
        dist_abort(dist, EXIT_BAD_INPUT);
    }
    /* the plan against the node's memory, before model_alloc() commits it */
    preflight_or_abort(t, preflight_check_memory(&t->model, 2 * t->model.n_params,
                                                 job->train.batch_size, dist->local_size,
                                                 job->ini.path, 0, &e),
                       &e);
    if (model_alloc(&t->model, &e)) { /* any rank may lack the memory: it says so itself */
        fprintf(stderr, "convnet-dist: rank %d: %s\n", dist->rank, e.msg);
        dist_abort(dist, EXIT_RUNTIME);
    }
    if (dist->rank == 0) {
        model_init_params(&t->model, job->train.seed);
        if (job->has_darknet && darknet_load_weights(&job->darknet, &t->model, &e)) {
            fprintf(stderr, "convnet-dist: %s\n", e.msg);
            dist_abort(dist, EXIT_BAD_INPUT);
        }
        if (job->keras_h5 && keras_h5_load_weights(job->keras_h5, &t->model, &e)) {
            fprintf(stderr, "convnet-dist: %s\n", e.msg);
            dist_abort(dist, EXIT_BAD_INPUT);
        }
    }
    dist_bcast(dist, t->model.params, t->model.n_params * sizeof(float), 0);
    if (job->train.overlap_allreduce) {
        size_t *starts = xmalloc(((size_t)t->model.n_layers + 1) * sizeof *starts);
        int n_starts = model_param_starts(&t->model, starts);
        dist_grad_setup(dist, starts, n_starts, t->model.state_lo,
                        (size_t)(job->train.bucket_mb * 1e6 / sizeof(float)));
        free(starts);
    }
    size_t outputs = shape_size(model_output_shape(&t->model));
    t->perm = xmalloc(((size_t)t->train.n + 1) * sizeof *t->perm);
    t->ids = xmalloc((size_t)max_batch * sizeof *t->ids);
    t->labels = xmalloc((size_t)max_batch * sizeof *t->labels);
    t->dlogits = xmalloc((size_t)max_batch * outputs * sizeof *t->dlogits);
}

void trainer_free(Trainer *t) {
    model_free(&t->model);
    optim_free(&t->opt);
    dataset_free(&t->train);
    dataset_free(&t->val);
    dataset_free(&t->test);
    free(t->perm);
    free(t->ids);
    free(t->labels);
    free(t->dlogits);
    free(t->cache_train.x);
    free(t->cache_val.x);
}

void trainer_set_phase(Trainer *t, int phase) {
    const PhaseCfg *ph = &t->job->phases[phase];
    Model *m = &t->model;
    for (int l = 0; l < m->n_layers; l++) {
        Layer *L = &m->layers[l];
        if (layer_n_weights(L) == 0) continue;
        /* the job's flag (its layers stay as parsed), or the phase unfreezes it */
        L->trainable = t->job->layers[l].trainable || (ph->unfreeze_from >= 0 && l >= ph->unfreeze_from);
    }
    model_update_trainable(m);
    t->opt.cfg.lr = ph->lr;
    t->phase = phase;
}

/* ---------------------------------------------------------------- feature cache */

/* Layers whose training-mode output depends on random draws or on the batch (a trainable
 * BatchNormalization; a frozen one runs on its moving statistics). */
static int varies_in_training(const Layer *L) {
    return layer_is_random(L) || ((layer_ops[L->kind]->flags & LAYER_F_BATCH) && L->trainable);
}

/* Where a split's cache starts (0: no cache worth having). Nothing below the lowest trainable
 * layer changes during a phase, so its output can be computed once; a split used for
 * training must also stop before the first random layer (evaluation runs them as
 * identities). Only a prefix with weights is worth caching: that is the work saved. */
static int cache_start(const Trainer *t, int training) {
    const Model *m = &t->model;
    if (!t->job->train.feature_cache || m->lowest_trainable >= m->n_layers) return 0;
    int from = m->lowest_trainable, weights = 0;
    for (int l = 0; l < from; l++)
        if (training && varies_in_training(&m->layers[l])) from = l;
    while (from > 0 && !graph_is_cut(m, from)) from--; /* no branch may cross the cut */
    for (int l = 0; l < from; l++) weights |= layer_n_weights(&m->layers[l]) > 0;
    return weights ? from : 0;
}

/* Run layers [0, from) once over split d (each rank its shard, then gathered) into c. */
static void cache_build(Trainer *t, FeatureCache *c, const Dataset *d, int from, const char *what) {
    free(c->x);
    memset(c, 0, sizeof *c);
    if (from == 0 || d->n == 0) return;
    Model *m = &t->model;
    Dist *dist = t->dist;
    const DataCfg *dc = &t->job->data;
    const size_t dim = model_layer_input_floats(m, from);
    const double mb = (double)d->n * (double)dim * sizeof(float) / 1e6;
    /* every rank on a node holds the whole cache: leave most of the memory to everything else */
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    double node_mb = pages > 0 && page > 0 ? (double)pages * (double)page / 1e6 : 0;
    if (node_mb > 0 && mb * dist->local_size > node_mb / 3) {
        if (dist->rank == 0)
            printf("feature cache: %s not cached: %.0f MB x %d ranks on this node exceed a third of "
                   "its %.0f MB; the frozen layers run every epoch\n",
                   what, mb, dist->local_size, node_mb);
        return;
    }
    double t0 = now_seconds();
    c->x = xmalloc((size_t)d->n * dim * sizeof *c->x);
    c->from = from;
    c->dim = dim;
    int64_t lo = d->n * dist->rank / dist->size, hi = d->n * (dist->rank + 1) / dist->size;
    PassCtx p = {.training = 0, .seed = t->job->train.seed, .epoch = 0, .sample_ids = t->ids};
    for (int64_t s = lo; s < hi; s += m->max_batch) {
        int n = (int)(hi - s < m->max_batch ? hi - s : m->max_batch);
        for (int i = 0; i < n; i++) t->ids[i] = s + i;
        dataset_gather_batch(d, t->ids, n, dc->scale, dc->offset, model_input(m), t->labels);
        const float *f = model_forward_layers(m, 0, from, n, &p);
        memcpy(c->x + (size_t)s * dim, f, (size_t)n * dim * sizeof *f);
    }
    dist_allgather_rows(dist, c->x, d->n, dim * sizeof *c->x);
    if (dist->rank == 0) {
        printf("feature cache: %s: layers %s..%s run once over %lld samples: %zu floats each "
               "(%.0f MB), %.1f s\n",
               what, m->layers[0].name, m->layers[from - 1].name, (long long)d->n, dim, mb,
               now_seconds() - t0);
        fflush(stdout);
    }
}

/* (Re)build the caches the current phase allows: at the start and after a phase switch. */
void train_caches_update(Trainer *t) {
    int ft = cache_start(t, 1), fv = cache_start(t, 0);
    /* also when the wanted cache is missing: an earlier build may have been skipped for memory */
    if (ft != t->cache_train.from || (ft && !t->cache_train.x))
        cache_build(t, &t->cache_train, &t->train, ft, "training data");
    if (fv != t->cache_val.from || (fv && !t->cache_val.x))
        cache_build(t, &t->cache_val, &t->val, fv, "validation data");
}

/* Put the samples t->ids[0..n) of split d, or their cached features, where the forward pass
 * starts, and their labels in t->labels; returns the layer to start at. */
static int load_batch(Trainer *t, const Dataset *d, const FeatureCache *c, int n) {
    Model *m = &t->model;
    if (c && c->from) {
        float *dst = model_layer_input(m, c->from);
        for (int i = 0; i < n; i++) {
            memcpy(dst + (size_t)i * c->dim, c->x + (size_t)t->ids[i] * c->dim, c->dim * sizeof *dst);
            t->labels[i] = d->labels[t->ids[i]];
        }
        return c->from;
    }
    const DataCfg *dc = &t->job->data;
    dataset_gather_batch(d, t->ids, n, dc->scale, dc->offset, model_input(m), t->labels);
    return 0;
}

/* Fisher-Yates from the keyed stream (seed, shuffle, epoch): identical on every rank. */
void train_epoch_permutation(int64_t *perm, int64_t n, uint64_t seed, int epoch, int shuffle) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    if (!shuffle) return;
    Rng r = rng_keyed(seed, RNG_SHUFFLE, (uint64_t)epoch, 0);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t k = (int64_t)rng_below(&r, (uint64_t)i + 1);
        int64_t tmp = perm[i];
        perm[i] = perm[k];
        perm[k] = tmp;
    }
}

EvalResult trainer_evaluate(Trainer *t, const Dataset *d) {
    EvalResult res = {0, 0, d->n};
    if (d->n == 0) return res;
    const Dist *dist = t->dist;
    Model *m = &t->model;
    const FeatureCache *cache = d == &t->val ? &t->cache_val : NULL;
    int64_t lo = d->n * dist->rank / dist->size, hi = d->n * (dist->rank + 1) / dist->size;
    LossStats st = {0, 0};
    PassCtx p = {.training = 0, .seed = t->job->train.seed, .epoch = 0, .sample_ids = t->ids};
    int K = (int)shape_size(model_output_shape(m));
    for (int64_t s = lo; s < hi; s += m->max_batch) {
        int n = (int)(hi - s < m->max_batch ? hi - s : m->max_batch);
        for (int i = 0; i < n; i++) t->ids[i] = s + i;
        int from = load_batch(t, d, cache, n);
        float *logits = model_forward_layers(m, from, m->n_layers, n, &p);
        loss_compute(t->job->train.loss, &st, NULL, logits, t->labels, n, K, 0.0f);
    }
    double sums[3] = {st.loss_sum, st.correct, (double)(hi - lo)};
    dist_allreduce_sum_f64(t->dist, sums, 3, "evaluation sums");
    res.count = (int64_t)sums[2];
    res.loss = sums[0] / sums[2];
    res.accuracy = sums[1] / sums[2];
    return res;
}


/* LayerCtx.allreduce for SyncBatchNorm: the global batch's per-channel sums. */
static void sum_over_ranks(void *arg, double *buf, int n) {
    dist_allreduce_sum_f64((Dist *)arg, buf, (size_t)n, "batch-norm statistics");
}

/* One optimizer step on the global batch perm[g0 .. g0+gB). Returns the batch's (loss sum,
 * correct) summed over ranks. */
LossStats train_step(Trainer *t, const int64_t *batch, int gB, int epoch, StepTimes *tm, int *stop) {
    Model *m = &t->model;
    const Dist *dist = t->dist;
    int lo = gB * dist->rank / dist->size, hi = gB * (dist->rank + 1) / dist->size, n = hi - lo;
    double t0 = now_seconds();
    for (int i = 0; i < n; i++) t->ids[i] = batch[lo + i];
    int from = n > 0 ? load_batch(t, &t->train, &t->cache_train, n) : 0;
    double t1 = now_seconds();
    /* before any collective of the step: overlapped, the gradient buckets go out during backward */
    dist_begin_step(t->dist, t->dist->step + 1);
    model_zero_grad(m);
    const int overlap = t->job->train.overlap_allreduce;
    if (overlap) dist_grad_begin(t->dist, m->grads, m->train_lo, m->state_lo);
    LossStats st = {0, 0};
    PassCtx p = {.training = 1, .seed = t->job->train.seed, .epoch = epoch, .sample_ids = t->ids,
                 .grads_ready = overlap ? dist_grad_ready : NULL, .grads_arg = t->dist,
                 .allreduce = sum_over_ranks, .allreduce_arg = t->dist};
    if (n == 0) { /* a rank without samples still takes part in the layers' collectives */
        model_collectives_idle(m, &p);
    } else {
        float *logits = model_forward_layers(m, from, m->n_layers, n, &p);
        int K = (int)shape_size(model_output_shape(m));
        double tl = now_seconds();
        loss_compute(t->job->train.loss, &st, t->dlogits, logits, t->labels, n, K, 1.0f / (float)gB);
        tm->loss += now_seconds() - tl;
        model_backward(m, t->dlogits, n, &p);
    }
    double t2 = now_seconds();
    if (overlap)
        dist_grad_finish(t->dist, "gradients");
    else
        dist_allreduce_sum_f32(t->dist, m->grads + m->train_lo, m->state_lo - m->train_lo, "gradients");
    /* the stop flag rides on the step's small allreduce: every rank stops at the same step */
    double sums[3] = {st.loss_sum, st.correct, stop_requested()};
    dist_allreduce_sum_f64(t->dist, sums, 3, "step loss");
    *stop = sums[2] > 0;
    double t3 = now_seconds();
    optim_step(&t->opt, m->params, m->grads, m->train_lo);
    double t4 = now_seconds();
    tm->data += t1 - t0;
    tm->compute += (t2 - t1) + (t4 - t3);
    tm->optim += t4 - t3;
    tm->comm += t3 - t2;
    LossStats total = {sums[0], sums[1]};
    return total;
}

void train_print_progress(int tty, long step, long steps, double loss, double acc, double ips,
                          int final) {
    if (tty) {
        printf("\r%6ld/%-6ld  %8.0f img/s  loss: %.4f  accuracy: %.4f%s", step, steps, ips, loss,
               acc, final ? "\n" : "");
    } else {
        printf("  step %ld/%ld  %.0f img/s  loss: %.4f  accuracy: %.4f\n", step, steps, ips, loss,
               acc);
    }
    fflush(stdout);
}

void trainer_print_setup(const Trainer *t, FILE *f) {
    const Dist *d = t->dist;
    fprintf(f, "convnet-dist: job %s (%s)\n", t->job->ini.path, t->job->name);
    fprintf(f, "resolved configuration:\n");
    ini_print_resolved(&t->job->ini, f);
    fprintf(f, "ranks x threads: %d x %d (this node: %d ranks, %d cores online, %d in rank 0's "
               "affinity mask)\n",
            d->size, d->threads, d->local_size, d->node_cores, d->cores);
    if (d->local_size * d->threads > d->node_cores)
        fprintf(f, "warning: %d ranks x %d threads on this node exceed its %d cores: set "
                   "OMP_NUM_THREADS or use fewer ranks per node\n",
                d->local_size, d->threads, d->node_cores);
    if (t->train.n)
        fprintf(f, "data: train %lld, validation %lld, test %lld samples of %dx%dx%d (%.1f MB as "
                   "uint8 in memory)\n",
                (long long)t->train.n, (long long)t->val.n, (long long)t->test.n, t->train.h,
                t->train.w, t->train.c,
                (double)(t->train.n + t->val.n + t->test.n) * t->train.h * t->train.w * t->train.c /
                    1e6);
    const Model *m = &t->model;
    fprintf(f, "buffers: parameters %.1f MB (+ gradients, optimizer state), activations %.1f MB "
               "(tensors kept for the backward %.1f MB, shared by liveness %.1f MB, gradients %.1f MB, "
               "layer state %.1f MB), workspace %.1f MB, per-rank batch %d\n",
            m->n_params * 4.0 / 1e6, model_activation_floats(m) * 4.0 / 1e6 + m->aux_bytes / 1e6,
            m->acts_kept_floats * 4.0 / 1e6, (m->acts_floats - m->acts_kept_floats) * 4.0 / 1e6,
            (model_activation_floats(m) - m->acts_floats) * 4.0 / 1e6, m->aux_bytes / 1e6,
            m->ws_floats * 4.0 / 1e6, m->max_batch);
    model_print_summary(m, t->job->name, f);
}

static int cmp_dbl(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* collective_timeout = auto: 10x the median step (the slowest rank's), at least 60 s. */
void train_set_auto_watchdog(Dist *d, double *secs, int n) {
    qsort(secs, (size_t)n, sizeof *secs, cmp_dbl);
    double median = secs[n / 2];
    dist_allreduce_max_f64(d, &median, 1);
    dist_set_watchdog(d, median * 10 > 60 ? median * 10 : 60);
}

void trainer_bench(Trainer *t, int warmup, int steps, int reps, double *img_s, StepTimes *times) {
    const int64_t n = t->train.n, B = t->job->train.batch_size;
    const long batches = (long)(n / B);
    CHECK(batches >= 1);
    train_epoch_permutation(t->perm, n, t->job->train.seed, 0, 1);
    StepTimes tm = {0, 0, 0, 0, 0};
    long b = 0;
    int stop = 0;
    for (int i = 0; i < warmup; i++, b++) train_step(t, t->perm + (b % batches) * B, (int)B, 0, &tm, &stop);
    memset(&tm, 0, sizeof tm);
    if (t->model.prof) memset(t->model.prof, 0, 4 * (size_t)t->model.n_layers * sizeof *t->model.prof);
    for (int r = 0; r < reps; r++) {
        dist_barrier(t->dist);
        double t0 = now_seconds();
        for (int i = 0; i < steps; i++, b++) train_step(t, t->perm + (b % batches) * B, (int)B, 0, &tm, &stop);
        /* every rank waits for the slowest: rank 0's clock then covers the whole step */
        dist_barrier(t->dist);
        img_s[r] = (double)steps * B / (now_seconds() - t0);
    }
    if (times) *times = tm;
}

void trainer_bench_forward(Trainer *t, int warmup, int steps, int reps, double *img_s, StepTimes *times) {
    Model *m = &t->model;
    const int n = m->max_batch; /* this rank's share of the global batch */
    const int64_t B = t->job->train.batch_size;
    CHECK(t->train.n >= n);
    for (int i = 0; i < n; i++) t->ids[i] = i;
    load_batch(t, &t->train, &t->cache_train, n);
    PassCtx p = {.training = 0, .seed = t->job->train.seed, .sample_ids = t->ids};
    for (int i = 0; i < warmup; i++) model_forward(m, n, &p);
    if (m->prof) memset(m->prof, 0, 4 * (size_t)m->n_layers * sizeof *m->prof);
    StepTimes tm = {0, 0, 0, 0, 0};
    for (int r = 0; r < reps; r++) {
        dist_barrier(t->dist);
        double t0 = now_seconds();
        for (int i = 0; i < steps; i++) model_forward(m, n, &p);
        dist_barrier(t->dist);
        double dt = now_seconds() - t0;
        tm.compute += dt;
        img_s[r] = (double)steps * B / dt;
    }
    if (times) *times = tm;
}

