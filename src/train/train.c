/* train.c: data loading per job, the trainer's plan and buffers, feature caches, one distributed
 * optimizer step, sharded evaluation and the bench loops (see train.h; the epoch loop is fit.c). */
#include "train.h"
#include "train/train_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keras_h5.h"
#include "loss.h"
#include "preflight.h"
#include "weights.h"


/* The model's output must fit the loss, and every label must fit the model. */
static void check_outputs(Trainer *t) {
    Job *j = t->job;
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

/* Plan the model. conv_algorithm = auto times the candidates while planning: rank 0 alone
 * does that and broadcasts its choice, which every other rank then plans with, so that all
 * ranks run the same arithmetic. */
static void plan_model(Trainer *t, Shape input, int max_batch) {
    Job *job = t->job;
    Dist *dist = t->dist;
    int tune = 0;
    for (int l = 0; l < job->n_layers; l++) tune |= job->layers[l].conv_algo == CONV_ALGO_AUTO;
    Err e = {0};
    int rc = 0;
    if (dist->rank == 0 || !tune) rc = model_plan(&t->model, job->layers, job->n_layers, input, max_batch, &e);
    if (tune) {
        int *algos = xmalloc((size_t)job->n_layers * sizeof *algos);
        for (int l = 0; l < job->n_layers; l++) algos[l] = rc ? CONV_ALGO_IM2COL : (int)job->layers[l].conv_algo;
        dist_bcast(dist, algos, (size_t)job->n_layers * sizeof *algos, 0);
        for (int l = 0; l < job->n_layers; l++) job->layers[l].conv_algo = (ConvAlgoId)algos[l];
        free(algos);
        if (dist->rank != 0) rc = model_plan(&t->model, job->layers, job->n_layers, input, max_batch, &e);
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
    if (idx_data_open(&probe, job->data.test_images, 3, &e)) {
        fprintf(stderr, "convnet-dist: %s\n", e.msg);
        dist_abort(t->dist, EXIT_BAD_INPUT);
    }
    Shape s = {(int)probe.dims[1], (int)probe.dims[2], 1, 0};
    idx_data_close(&probe);
    return s;
}

/* Rank 0's initial parameters (seed, [darknet], [keras_h5]), then every rank gets them. */
static void init_params(Trainer *t) {
    Job *job = t->job;
    Dist *dist = t->dist;
    Err e = {0};
    if (dist->rank == 0) {
        model_init_params(&t->model, job->train.seed);
        /* rank 0 alone reads these: it says why itself */
        if ((job->has_darknet && darknet_load_weights(&job->darknet, &t->model, &e)) ||
            (job->keras_h5 && keras_h5_load_weights(job->keras_h5, &t->model, &e))) {
            fprintf(stderr, "convnet-dist: %s\n", e.msg);
            dist_abort(dist, EXIT_BAD_INPUT);
        }
    }
    dist_bcast(dist, t->model.params, t->model.n_params * sizeof(float), 0);
}

/* Check before data: the sources are opened (listings, mappings) and every check that needs no
 * pixel runs (the plan, its memory, the classes, the labels) before the first image is decoded
 * (loading = memory) or read (streaming, at the first step). */
void trainer_init(Trainer *t, Job *job, Dist *dist, TrainerData data) {
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
    int B = job->train.batch_size;
    int max_batch = (B + dist->size - 1) / dist->size;
    plan_model(t, input, max_batch);
    Err e = {0};
    if (data == TRAINER_SYNTHETIC) {
        int outputs = (int)shape_size(model_output_shape(&t->model));
        /* 8 global batches: steps cycle through them; a benchmark holds about one batch of data,
         * as the peer does, not a data set */
        int64_t n = 8 * (int64_t)job->train.batch_size;
        synthetic_source(&t->train, input, n, outputs > 1 ? outputs : 2, job->train.seed);
    }
    /* state for every parameter: a phase that unfreezes more needs no new arrays */
    optim_init(&t->opt, &job->train.opt, t->model.state_lo);
    t->trainable_job = xmalloc((size_t)job->n_layers * sizeof *t->trainable_job);
    for (int l = 0; l < job->n_layers; l++) t->trainable_job[l] = job->layers[l].trainable;
    /* no phase trains anything below `lowest`: those layers only ever run forward */
    int lowest = t->model.n_layers;
    for (int p = job->n_phases - 1; p >= 0; p--) {
        trainer_set_phase(t, p);
        if (t->model.lowest_trainable < lowest) lowest = t->model.lowest_trainable;
    }
    model_plan_backward(&t->model, lowest);
    check_outputs(t);
    if (dist_check_same_job(dist, job->hash, t->model.n_params, &e)) trainer_fail(t, EXIT_BAD_INPUT, &e);
    /* the plan against the node's memory, before model_alloc() commits it */
    if (preflight_check_memory(&t->model, 2 * t->model.n_params, job->train.batch_size,
                               dist->local_size, job->ini.path, 0, &e))
        trainer_fail(t, EXIT_BAD_INPUT, &e);
    if (data == TRAINER_LOAD_DATA) {
        train_data_load(t); /* loading = memory: the first decode */
        train_data_check_labels(t);
    }
    model_alloc(&t->model);
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

static void cache_free(FeatureCache *c);

void trainer_free(Trainer *t) {
    train_data_free(t);
    model_free(&t->model);
    optim_free(&t->opt);
    free(t->perm);
    free(t->ids);
    free(t->labels);
    free(t->dlogits);
    free(t->trainable_job);
    cache_free(&t->cache_train);
    cache_free(&t->cache_val);
}

void trainer_set_phase(Trainer *t, int phase) {
    const PhaseCfg *ph = &t->job->phases[phase];
    Model *m = &t->model;
    for (int l = 0; l < m->n_layers; l++) {
        Layer *L = &m->layers[l];
        if (layer_n_weights(L) == 0) continue;
        L->trainable = t->trainable_job[l] || (ph->unfreeze_from >= 0 && l >= ph->unfreeze_from);
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

static void cache_free(FeatureCache *c) {
    if (c->map) munmap(c->map, c->map_len);
    free(c->owned);
    memset(c, 0, sizeof *c);
}

/* Where the cache file goes: the run directory when it exists, else $TMPDIR (or /tmp). */
static void cache_dir(const Job *j, char *dir, size_t n) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, n, "%s", tmp && *tmp ? tmp : "/tmp");
    if (j->ckpt.in_run_dir && j->ckpt.path[0]) {
        char run[3800];
        snprintf(run, sizeof run, "%s", j->ckpt.path);
        char *slash = strrchr(run, '/');
        if (slash) *slash = 0;
        struct stat st;
        if (slash && stat(run, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(dir, n, "%s", run);
    }
}

/* Rank 0 makes the cache's file (path.tmp, `bytes` long), every rank opens it for writing. The
 * fd, or -1 on every rank when any rank could not (a directory that not every node sees). */
static int cache_file_open(Trainer *t, const char *tag, size_t bytes, char *path, size_t n) {
    Dist *d = t->dist;
    int fd = -1;
    char tmp[4200];
    if (d->rank == 0) {
        char dir[3800];
        cache_dir(t->job, dir, sizeof dir);
        snprintf(path, n, "%s/feature-cache-%s-%ld.f32", dir, tag, (long)getpid());
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        /* the space up front: a full disk fails now, not as SIGBUS when the mapping is read */
        if (fd >= 0 && posix_fallocate(fd, 0, (off_t)bytes) != 0) {
            close(fd);
            unlink(tmp);
            fd = -1;
        }
    }
    dist_bcast(d, path, n, 0);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (d->rank != 0) fd = open(tmp, O_WRONLY | O_CLOEXEC);
    if (dist_allreduce_max_int(d, fd < 0, "feature cache file")) {
        if (fd >= 0) close(fd);
        if (d->rank == 0) unlink(tmp);
        return -1;
    }
    return fd;
}

/* Every rank has written its rows: rank 0 renames the file into place, every rank maps it
 * read-only and shared (the node's one copy is the page cache), then it is unlinked: the
 * mappings keep it while the run lasts, and nothing is left behind. 0, or -1 on every rank. */
static int cache_file_share(Trainer *t, FeatureCache *c, int fd, const char *path, size_t bytes,
                            int failed) {
    Dist *d = t->dist;
    failed |= fsync(fd) != 0;
    close(fd);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (dist_allreduce_max_int(d, failed, "feature cache rows")) {
        if (d->rank == 0) unlink(tmp);
        return -1;
    }
    if (d->rank == 0) failed = rename(tmp, path) != 0;
    if (dist_allreduce_max_int(d, failed, "feature cache rename")) {
        if (d->rank == 0) unlink(tmp);
        return -1;
    }
    int rfd = open(path, O_RDONLY | O_CLOEXEC);
    void *m = rfd >= 0 ? mmap(NULL, bytes, PROT_READ, MAP_SHARED, rfd, 0) : MAP_FAILED;
    if (rfd >= 0) close(rfd);
    failed = m == MAP_FAILED;
    failed = dist_allreduce_max_int(d, failed, "feature cache mapping");
    if (d->rank == 0) unlink(path);
    if (failed) {
        if (m != MAP_FAILED) munmap(m, bytes);
        return -1;
    }
    c->map = m;
    c->map_len = bytes;
    c->x = m;
    return 0;
}

/* Run layers [0, from) once over split d into c: each rank its shard, written into one file
 * that every rank then maps (or, when no file can be shared, gathered into every rank). */
static void cache_build(Trainer *t, FeatureCache *c, const Source *d, int from, const char *what,
                        const char *tag) {
    cache_free(c);
    if (from == 0 || d->n == 0) return;
    Model *m = &t->model;
    Dist *dist = t->dist;
    const size_t dim = model_layer_input_floats(m, from);
    const size_t bytes = (size_t)d->n * dim * sizeof(float);
    const double mb = (double)bytes / 1e6;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    double node_mb = pages > 0 && page > 0 ? (double)pages * (double)page / 1e6 : 0;
    /* a file: one copy per node; else every rank holds all of it. Either way, leave most of
     * the memory to everything else. */
    char path[4096] = "";
    int fd = node_mb > 0 && mb > node_mb / 3 ? -1 : cache_file_open(t, tag, bytes, path, sizeof path);
    int copies = fd >= 0 ? 1 : dist->local_size;
    if (node_mb > 0 && mb * copies > node_mb / 3) {
        if (dist->rank == 0)
            printf("feature cache: %s not cached: %.0f MB x %d copies on this node exceed a third "
                   "of its %.0f MB; the frozen layers run every epoch\n",
                   what, mb, copies, node_mb);
        if (fd >= 0) cache_file_share(t, c, fd, path, bytes, 1); /* removes the file */
        return;
    }
    double t0 = now_seconds();
    if (fd < 0) c->owned = xmalloc(bytes);
    c->from = from;
    c->dim = dim;
    int64_t lo = d->n * dist->rank / dist->size, hi = d->n * (dist->rank + 1) / dist->size;
    PassCtx p = {.training = 0, .seed = t->job->train.seed, .epoch = 0, .sample_ids = t->ids};
    int failed = 0;
    train_stream_range(t, d, NULL, lo, hi);
    for (int64_t s = lo; s < hi; s += m->max_batch) {
        int n = (int)(hi - s < m->max_batch ? hi - s : m->max_batch);
        for (int i = 0; i < n; i++) t->ids[i] = s + i;
        train_load_batch(t, d, NULL, n);
        const float *f = model_forward_layers(m, 0, from, n, &p);
        size_t len = (size_t)n * dim * sizeof *f;
        if (fd < 0)
            memcpy(c->owned + (size_t)s * dim, f, len);
        else
            failed |= pwrite(fd, f, len, (off_t)((size_t)s * dim * sizeof *f)) != (ssize_t)len;
    }
    train_stream_end(t);
    if (fd >= 0 && cache_file_share(t, c, fd, path, bytes, failed)) {
        c->from = 0; /* the frozen layers run every epoch instead */
        if (dist->rank == 0) printf("feature cache: %s: the cache file %s could not be written\n", what, path);
        return;
    }
    if (fd < 0) {
        dist_allgather_rows(dist, c->owned, d->n, dim * sizeof *c->owned);
        c->x = c->owned;
    }
    if (dist->rank == 0) {
        printf("feature cache: %s: layers %s..%s run once over %lld samples: %zu floats each "
               "(%.0f MB, %s), %.1f s\n",
               what, m->layers[0].name, m->layers[from - 1].name, (long long)d->n, dim, mb,
               c->map ? "one file mapped by every rank of a node" : "a copy in every rank",
               now_seconds() - t0);
        fflush(stdout);
    }
}

/* (Re)build the caches the current phase allows: at the start and after a phase switch. */
void train_caches_update(Trainer *t) {
    int ft = cache_start(t, 1), fv = cache_start(t, 0);
    /* also when the wanted cache is missing: an earlier build may have been skipped for memory */
    if (ft != t->cache_train.from || (ft && !t->cache_train.x) || (!ft && t->cache_train.x))
        cache_build(t, &t->cache_train, &t->train, ft, "training data", "train");
    if (fv != t->cache_val.from || (fv && !t->cache_val.x) || (!fv && t->cache_val.x))
        cache_build(t, &t->cache_val, &t->val, fv, "validation data", "validation");
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

/* One optimizer step on the global batch perm[g0 .. g0+gB). Returns the batch's (loss sum,
 * correct) summed over ranks. */
LossStats train_step(Trainer *t, const int64_t *batch, int gB, int epoch, StepTimes *tm, int *stop) {
    Model *m = &t->model;
    const Dist *dist = t->dist;
    int lo = gB * dist->rank / dist->size, hi = gB * (dist->rank + 1) / dist->size, n = hi - lo;
    double t0 = now_seconds();
    for (int i = 0; i < n; i++) t->ids[i] = batch[lo + i];
    int from = n > 0 ? train_load_batch(t, &t->train, &t->cache_train, n) : 0;
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
    double sums[3] = {st.loss_sum, st.correct, train_stop_requested()};
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
    if (t->train.n) {
        const double S = (double)t->train.h * t->train.w * t->train.c;
        fprintf(f, "data: train %lld, validation %lld, test %lld samples of %dx%dx%d, ", (long long)t->train.n,
                (long long)t->val.n, (long long)t->test.n, t->train.h, t->train.w, t->train.c);
        if (!t->pf)
            fprintf(f, "%s (%.1f MB of uint8 pixels)\n",
                    t->job->data.loading_memory ? "decoded into memory" : "mapped",
                    (double)(t->train.n + t->val.n + t->test.n) * S / 1e6);
        else
            fprintf(f, "streamed from %s by %d threads, %d batches ahead (%.1f MB of buffers, "
                       "listing %.1f MB)\n",
                    source_kind(&t->train) == SOURCE_PACK ? "packs" : "JPEG files",
                    t->pf ? prefetch_threads(t->pf) : 0, t->job->data.prefetch,
                    t->job->data.prefetch * S * t->model.max_batch / 1e6,
                    (source_index_bytes(&t->train) + source_index_bytes(&t->test)) / 1e6);
    }
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
    /* a streamed split is read ahead in the order the loop below cycles through */
    t->plan = (BatchPlan){t->perm, n, 0, 0, (int)B, t->dist->rank, t->dist->size, 0, batches};
    train_stream_begin(t, &t->train, &t->cache_train, warmup + (long)steps * reps);
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
    train_stream_end(t);
    if (times) *times = tm;
}

void trainer_bench_forward(Trainer *t, int warmup, int steps, int reps, double *img_s, StepTimes *times) {
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

