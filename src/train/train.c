/* train.c: the trainer's plan and buffers, one distributed optimizer step, sharded evaluation and
 * the bench loops (see train.h; the epoch loop is fit.c, the data trainer_data.c, the feature
 * caches cache.c). */
#include "train.h"
#include "train/train_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keras_h5.h"
#include "loss.h"
#include "preflight.h"
#include "timeline.h"
#include "stop.h"
#include "weights.h"


/* The model's output must fit the loss, and every label must fit the model. */
static void check_outputs(Trainer *t) {
    const Job *j = t->job;
    Shape out = model_output_shape(&t->model);
    Err e = {0};
    const Layer *last = &j->layers[j->n_layers - 1];
    char where[1100];
    layer_where(last, where, sizeof where);
    if (!out.flat) {
        err_set(&e,
                "%s: the last layer (%s, %s) must output a flat vector of class scores "
                "(add [flatten] and [dense])",
                j->ini.path, last->name, where);
    } else if (j->train.loss == LOSS_BINARY_CROSSENTROPY) {
        if (out.c != 1 || last->act != ACT_SIGMOID)
            err_set(&e,
                    "%s: binary_crossentropy needs a last layer with 1 unit and sigmoid "
                    "activation; %s (%s) has %d units, activation %s",
                    j->ini.path, last->name, where, out.c, activation_name(last->act));
        t->n_classes = 2;
    } else {
        if (out.c < 2 || last->act != ACT_SOFTMAX)
            err_set(&e,
                    "%s: sparse_categorical_crossentropy needs a last layer with one unit per "
                    "class and softmax activation; %s (%s) has %d units, activation %s",
                    j->ini.path, last->name, where, out.c, activation_name(last->act));
        t->n_classes = out.c;
    }
    if (e.set) trainer_fail(t, EXIT_BAD_INPUT, &e);
}

/* n random samples of shape s with labels in [0, classes), keyed on the job seed. */
static void synthetic_source(Source *src, Shape s, int64_t n, int classes, uint64_t seed) {
    Dataset dd, *d = &dd;
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
    source_from_dataset(src, d, "synthetic data");
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
        ConvChoice *algos = xcalloc((size_t)n + 1, sizeof *algos);
        if (dist->rank == 0) rc = model_tune_algorithms(&t->model, algos, &e);
        algos[n].algo = (ConvAlgoId)rc; /* rank 0's outcome rides along */
        dist_bcast(dist, algos, ((size_t)n + 1) * sizeof *algos, 0);
        if (dist->rank != 0) rc = algos[n].algo ? -1 : model_set_algorithms(&t->model, algos, &e);
        if (dist->rank != 0 && algos[n].algo)
            err_set(&e, "rank 0 could not plan the timed algorithms");
        free(algos);
    }
    /* the message names the layer's file and line (an [include]d file, maybe) */
    if (rc) trainer_fail(t, EXIT_BAD_INPUT, &e);
}

/* The input shape without data (summary, predict, export): the job's image size, or the test
 * split's IDX header (mapped, not read). */
static Shape input_without_data(Trainer *t) {
    const Job *job = t->job;
    if (job->data.format == DATA_IMAGES)
        return (Shape){job->data.image_h, job->data.image_w, job->data.channels, 0};
    IdxData probe;
    Err e = {0};
    if (idx_data_open(&probe, job->data.test_images, 3, &e)) trainer_fail(t, EXIT_BAD_INPUT, &e);
    Shape s = {(int)probe.dims[1], (int)probe.dims[2], 1, 0};
    idx_data_close(&probe);
    return s;
}

/* Rank 0's initial parameters (seed, [darknet], [keras_h5]), then every rank gets them. */
static void init_params(Trainer *t) {
    const Job *job = t->job;
    Dist *dist = t->dist;
    Err e = {0};
    if (dist->rank == 0) {
        model_init_params(&t->model, job->train.seed);
        /* rank 0 alone reads these: it says why itself */
        if ((job->has_darknet && darknet_load_weights(&job->darknet, &t->model, &e)) ||
            (job->keras_h5 && keras_h5_load_weights(job->keras_h5, &t->model, &e)))
            trainer_fail(t, EXIT_BAD_INPUT, &e);
    }
    dist_bcast(dist, t->model.params, t->model.n_params * sizeof(float), 0);
}

/* Check before data: the sources are opened (listings, mappings) and every check that needs no
 * pixel runs (the plan, its memory, the classes, the labels) before the first image is decoded
 * (loading = memory) or read (streaming, at the first step). */
void trainer_init(Trainer *t, const Job *job, Dist *dist, TrainerData data) {
    memset(t, 0, sizeof *t);
    t->job = job;
    t->dist = dist;
    Shape input;
    if (data == TRAINER_LOAD_DATA) {
        train_data_open(t);
        input = job->data.format == DATA_IMAGES ? input_without_data(t)
                                                : (Shape){t->train.h, t->train.w, t->train.c, 0};
    } else {
        input = input_without_data(t);
    }
    int B = job->train.batch_size, K = job->train.grad_accum;
    /* the model is planned for one micro-batch: memory follows B / ranks / K */
    int max_batch = ((B + dist->size - 1) / dist->size + K - 1) / K;
    plan_model(t, input, max_batch);
    Err e = {0};
    /* a training run's class names name every output (predict only notes a short file) */
    if (data == TRAINER_LOAD_DATA &&
        preflight_check_class_names(job, (int)shape_size(model_output_shape(&t->model)), &e))
        trainer_fail(t, EXIT_BAD_INPUT, &e);
    if (data == TRAINER_SYNTHETIC) {
        int outputs = (int)shape_size(model_output_shape(&t->model));
        /* 8 global batches: steps cycle through them; a benchmark holds about one batch of data,
         * as the peer does, not a data set */
        int64_t n = 8 * (int64_t)job->train.batch_size;
        synthetic_source(&t->train, input, n, outputs > 1 ? outputs : 2, job->train.seed);
    }
    /* no phase trains anything below `lowest`: those layers only ever run forward */
    int lowest = t->model.n_layers;
    for (int p = job->n_phases - 1; p >= 0; p--) {
        trainer_set_phase(t, p);
        if (t->model.lowest_trainable < lowest) lowest = t->model.lowest_trainable;
    }
    model_plan_backward(&t->model, lowest);
    check_outputs(t);
    if (dist_check_same_job(dist, job->hash, t->model.n_params, &e))
        trainer_fail(t, EXIT_BAD_INPUT, &e);
    /* the plan against the node's memory, before model_alloc() commits it */
    if (preflight_check_memory(&t->model, 2 * t->model.n_params, job->train.batch_size,
                               dist->local_size, job->ini.path, 0, &e))
        trainer_fail(t, EXIT_BAD_INPUT, &e);
    /* state for every parameter: a phase that unfreezes more needs no new arrays. Allocated
     * only once the memory check has passed (an ASan build touches what it allocates: a plan
     * refused for its size must not commit its optimizer state first); optim_init sets the
     * job's learning rate, so phase 0's is set again */
    optim_init(&t->opt, &job->train.opt, t->model.state_lo);
    t->opt.cfg.lr = job->phases[0].lr;
    if (data == TRAINER_LOAD_DATA) {
        train_data_load(t); /* loading = memory: the first decode */
        train_data_check_labels(t);
    }
    /* any rank may lack the memory: it says so itself */
    if (model_alloc(&t->model, &e)) trainer_fail_local(t, EXIT_RUNTIME, &e);
    init_params(t);
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
    if (data == TRAINER_LOAD_DATA) train_data_start(t);
}

void trainer_free(Trainer *t) {
    train_data_free(t);
    model_free(&t->model);
    optim_free(&t->opt);
    free(t->perm);
    free(t->ids);
    free(t->labels);
    free(t->dlogits);
    train_cache_free(&t->cache_train);
    train_cache_free(&t->cache_val);
}

void trainer_set_phase(Trainer *t, int phase) {
    const PhaseCfg *ph = &t->job->phases[phase];
    Model *m = &t->model;
    for (int l = 0; l < m->n_layers; l++) {
        Layer *L = &m->layers[l];
        if (layer_n_weights(L) == 0) continue;
        /* the job's flag (its layers stay as parsed), or the phase unfreezes it */
        L->trainable = t->job->layers[l].trainable ||
                       (ph->unfreeze_from >= 0 && l >= ph->unfreeze_from);
    }
    model_update_trainable(m);
    t->opt.cfg.lr = ph->lr;
    t->phase = phase;
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

EvalResult trainer_evaluate(Trainer *t, const Source *d) {
    EvalResult res = {0, 0, d->n};
    if (d->n == 0) return res;
    const Dist *dist = t->dist;
    Model *m = &t->model;
    const FeatureCache *cache = d == &t->val ? &t->cache_val : NULL;
    int64_t lo = d->n * dist->rank / dist->size, hi = d->n * (dist->rank + 1) / dist->size;
    LossStats st = {0, 0};
    PassCtx p = {.training = 0, .seed = t->job->train.seed, .epoch = 0, .sample_ids = t->ids};
    int K = (int)shape_size(model_output_shape(m));
    train_stream_range(t, d, cache, lo, hi);
    for (int64_t s = lo; s < hi; s += m->max_batch) {
        int n = (int)(hi - s < m->max_batch ? hi - s : m->max_batch);
        for (int i = 0; i < n; i++) t->ids[i] = s + i;
        int from = train_load_batch(t, d, cache, n);
        float *logits = model_forward_layers(m, from, m->n_layers, n, &p);
        loss_compute(t->job->train.loss, &st, NULL, logits, t->labels, n, K, 0.0f);
    }
    train_stream_end(t);
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

/* Forward and backward of this rank's micro-batch ids[0..n) of a step on a global batch of gB
 * (gradients added to m->grads, loss statistics to st). Returns the seconds spent loading it. */
static double micro_step(Trainer *t, int n, int gB, const PassCtx *p, LossStats *st,
                         StepTimes *tm) {
    Model *m = &t->model;
    double t0 = now_seconds();
    int from = n > 0 ? train_load_batch(t, &t->train, &t->cache_train, n) : 0;
    double loaded = now_seconds() - t0;
    if (n == 0) { /* a rank without samples still takes part in the layers' collectives */
        model_collectives_idle(m, p);
        return loaded;
    }
    float *logits = model_forward_layers(m, from, m->n_layers, n, p);
    int K = (int)shape_size(model_output_shape(m));
    double tl = now_seconds();
    /* scaled by the global batch of the whole optimizer step: the micro-batches' gradients add
     * up to the mean over it, as one pass over the whole batch gives */
    loss_compute(t->job->train.loss, st, t->dlogits, logits, t->labels, n, K, 1.0f / (float)gB);
    double tb = now_seconds();
    tm->loss += tb - tl;
    model_backward(m, t->dlogits, n, p);
    TIMELINE(TL_DATA, t0, t0 + loaded, t->dist->step, 0);
    TIMELINE(TL_FORWARD, t0 + loaded, tb, t->dist->step, 0);
    TIMELINE(TL_BACKWARD, tb, now_seconds(), t->dist->step, 0);
    return loaded;
}

/* One optimizer step on the global batch perm[g0 .. g0+gB): this rank's contiguous share, as
 * gradient_accumulation_steps micro-batches whose gradients add up before the one allreduce
 * (overlapped with the last micro-batch's backward). Returns the batch's (loss sum, correct)
 * summed over ranks. */
LossStats train_step(Trainer *t, const int64_t *batch, int gB, int epoch, StepTimes *tm,
                     int *stop) {
    Model *m = &t->model;
    const Dist *dist = t->dist;
    int lo = gB * dist->rank / dist->size, hi = gB * (dist->rank + 1) / dist->size, n = hi - lo;
    const int micro = t->job->train.grad_accum;
    double t1 = now_seconds(), data = 0;
    /* before any collective of the step: overlapped, the gradient buckets go out during backward */
    dist_begin_step(t->dist, t->dist->step + 1);
    model_zero_grad(m);
    const int overlap = t->job->train.overlap_allreduce;
    if (overlap) dist_grad_begin(t->dist, m->grads, m->train_lo, m->state_lo);
    LossStats st = {0, 0};
    PassCtx p = {.training = 1,
                 .seed = t->job->train.seed,
                 .epoch = epoch,
                 .sample_ids = t->ids,
                 .grads_arg = t->dist,
                 .layer_timed = timeline_on ? timeline_layer_timed : NULL,
                 .layer_timed_arg = t->dist,
                 .allreduce = sum_over_ranks,
                 .allreduce_arg = t->dist};
    for (int k = 0; k < micro; k++) {
        int a = n * k / micro, b = n * (k + 1) / micro;
        for (int i = a; i < b; i++) t->ids[i - a] = batch[lo + i];
        /* a gradient slice is final only after the last micro-batch's backward */
        p.grads_ready = overlap && k == micro - 1 ? dist_grad_ready : NULL;
        data += micro_step(t, b - a, gB, &p, &st, tm);
    }
    double t2 = now_seconds();
    const size_t n_grads = m->state_lo - m->train_lo;
    if (overlap) {
        dist_grad_finish(t->dist, "gradients");
        if (timeline_on) timeline_record_buckets(t->dist);
    } else {
        dist_allreduce_sum_f32(t->dist, m->grads + m->train_lo, n_grads, "gradients");
        /* one bucket, the whole gradient (none on one rank: nothing is sent) */
        if (dist->size > 1) TIMELINE(TL_BUCKET, t2, now_seconds(), dist->step, 4.0 * n_grads);
    }
    /* the stop flag rides on the step's small allreduce: every rank stops at the same step */
    double sums[3] = {st.loss_sum, st.correct, stop_requested()};
    dist_allreduce_sum_f64(t->dist, sums, 3, "step loss");
    *stop = sums[2] > 0;
    double t3 = now_seconds();
    optim_step(&t->opt, m->params, m->grads, m->train_lo);
    double t4 = now_seconds();
    TIMELINE(TL_ALLREDUCE, t2, t3, t->dist->step, 4.0 * (double)n_grads);
    TIMELINE(TL_OPTIMIZER, t3, t4, t->dist->step, 0);
    tm->data += data;
    tm->compute += (t2 - t1 - data) + (t4 - t3);
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
    fprintf(f,
            "ranks x threads: %d x %d (this node: %d ranks, %d cores online, %d in rank 0's "
            "affinity mask)\n",
            d->size, d->threads, d->local_size, d->node_cores, d->cores);
    if (d->local_size * d->threads > d->node_cores)
        fprintf(f,
                "warning: %d ranks x %d threads on this node exceed its %d cores: set "
                "OMP_NUM_THREADS or use fewer ranks per node\n",
                d->local_size, d->threads, d->node_cores);
    if (t->train.n) {
        const double S = (double)t->train.h * t->train.w * t->train.c;
        fprintf(f, "data: train %lld, validation %lld, test %lld samples of %dx%dx%d, ",
                (long long)t->train.n, (long long)t->val.n, (long long)t->test.n, t->train.h,
                t->train.w, t->train.c);
        if (!t->pf)
            fprintf(f, "%s (%.1f MB of uint8 pixels)\n",
                    t->job->data.loading_memory ? "decoded into memory" : "mapped",
                    (double)(t->train.n + t->val.n + t->test.n) * S / 1e6);
        else
            fprintf(f,
                    "streamed from %s by %d threads, %d batches ahead (%.1f MB of buffers, "
                    "listing %.1f MB, listed in %.2f s)\n",
                    source_kind(&t->train) == SOURCE_PACK ? "packs" : "JPEG files",
                    t->pf ? prefetch_threads(t->pf) : 0, t->job->data.prefetch,
                    t->job->data.prefetch * S * t->model.max_batch / 1e6,
                    (source_index_bytes(&t->train) + source_index_bytes(&t->test)) / 1e6,
                    t->list_seconds);
    }
    const Model *m = &t->model;
    fprintf(
        f,
        "buffers: parameters %.1f MB (+ gradients, optimizer state), activations %.1f MB "
        "(tensors kept for the backward %.1f MB, shared by liveness %.1f MB, gradients %.1f MB, "
        "layer state %.1f MB), workspace %.1f MB, per-rank batch %d\n",
        m->n_params * 4.0 / 1e6, model_activation_floats(m) * 4.0 / 1e6 + m->aux_bytes / 1e6,
        m->acts_kept_floats * 4.0 / 1e6, (m->acts_floats - m->acts_kept_floats) * 4.0 / 1e6,
        (model_activation_floats(m) - m->acts_floats) * 4.0 / 1e6, m->aux_bytes / 1e6,
        m->ws_floats * 4.0 / 1e6, m->max_batch);
    model_print_summary(m, t->job->name, f);
    schedule_print_effective(t->job, t->model.max_batch, f);
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
    /* a streamed split is read ahead in the order the loop below cycles through */
    const int K = t->job->train.grad_accum;
    t->plan = (BatchPlan){t->perm, n, 0, 0, (int)B, t->dist->rank, t->dist->size, 0, batches, K};
    train_stream_begin(t, &t->train, &t->cache_train, (warmup + (long)steps * reps) * K);
    StepTimes tm = {0, 0, 0, 0, 0};
    long b = 0;
    int stop = 0;
    for (int i = 0; i < warmup; i++, b++)
        train_step(t, t->perm + (b % batches) * B, (int)B, 0, &tm, &stop);
    memset(&tm, 0, sizeof tm);
    if (t->model.prof)
        memset(t->model.prof, 0, 4 * (size_t)t->model.n_layers * sizeof *t->model.prof);
    for (int r = 0; r < reps; r++) {
        dist_barrier(t->dist);
        double t0 = now_seconds();
        for (int i = 0; i < steps; i++, b++)
            train_step(t, t->perm + (b % batches) * B, (int)B, 0, &tm, &stop);
        /* every rank waits for the slowest: rank 0's clock then covers the whole step */
        dist_barrier(t->dist);
        img_s[r] = (double)steps * B / (now_seconds() - t0);
    }
    train_stream_end(t);
    if (times) *times = tm;
}

void trainer_bench_forward(Trainer *t, int warmup, int steps, int reps, double *img_s,
                           StepTimes *times) {
    Model *m = &t->model;
    const int n = m->max_batch; /* this rank's share of the global batch */
    const int64_t B = t->job->train.batch_size;
    CHECK(t->train.n >= n);
    for (int i = 0; i < n; i++) t->ids[i] = i;
    train_stream_range(t, &t->train, &t->cache_train, 0, n);
    train_load_batch(t, &t->train, &t->cache_train, n);
    train_stream_end(t);
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
