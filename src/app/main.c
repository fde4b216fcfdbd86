/* main.c: the command line of convnet-dist: parses the command and its options, then hands
 * over to the trainer. Bad command lines exit with status 2 and the usage. */
#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "checkpoint.h"
#include "dist.h"
#include "export.h"
#include "images.h"
#include "job.h"
#include "predict.h"
#include "preflight.h"
#include "rundir.h"
#include "timeline.h"
#include "source.h"
#include "runenv.h"
#include "stop.h"
#include "train.h"
#include "weights.h"

static const char *const usage =
    "usage: convnet-dist COMMAND ...\n"
    "  train JOB [--set SECTION.KEY=VALUE]... [--weights FILE] [--save FILE]\n"
    "            [--resume | --no-resume] [--timeline FILE]\n"
    "        train the job's model; --weights starts from saved weights; --timeline writes what\n"
    "        each rank did (Chrome trace-event JSON: Perfetto, chrome://tracing); checkpoints go "
    "to\n"
    "        [checkpoint] path, by default runs/<job name>/checkpoint ($CONVNET_RUNS for runs,\n"
    "        path = off for none); it resumes from the checkpoint when there is one\n"
    "        (--resume: must be one, --no-resume: start afresh)\n"
    "  predict JOB [--weights FILE] IMAGE... [--top K] [--json]   classify JPEG images\n"
    "  export JOB [--weights FILE] --format keras2|keras3|onnx --out PATH [--set ...]\n"
    "        the model as Keras weights (.h5, .weights.h5) or an ONNX inference graph\n"
    "  summary JOB [--set ...]          resolved configuration and Keras-style model summary\n"
    "  eval JOB --weights FILE [--split test|validation|train] [--set ...]\n"
    "  diff-weights A B [--rtol R]      max relative difference; exit 0 when <= R (1e-5)\n"
    "  bench JOB [--steps S] [--reps R] [--warmup W] [--synthetic] [--forward] [--profile]\n"
    "            [--set ...]\n"
    "        training throughput: one JSON line (median/min/max images/s, step split, RSS);\n"
    "        --forward: inference forward passes only; --profile: then where a step goes,\n"
    "        per layer and pass\n"
    "  bench-allreduce [--floats N] [--reps R]   gradient allreduce time over the ranks, JSON\n"
    "  pack JOB [--set ...]             decode each split's image folder once into [data] "
    "pack_dir\n"
    "        (train.pack, validation.pack, test.pack; in parallel under mpirun)\n"
    "  bench-loader JOB                 image decoding without and with the in-memory cache, JSON\n"
    "  augment-preview JOB --out FILE.jpg [--index I]   a training image under 9 augmentations\n"
    "Run under mpirun/srun for data parallelism: mpirun -np 4 convnet-dist train JOB\n"
    "Exit status: 0 done, 1 runtime failure, 2 bad input, 3 preempted (checkpoint written),\n"
    "4 a collective timed out, 5 stopped by a signal without a checkpoint,\n"
    "6 the loss became NaN or infinite (terminate_on_nan; the last checkpoint is kept).\n";

static void bad_usage(const char *fmt, const char *arg) {
    fprintf(stderr, "convnet-dist: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", usage);
    exit(EXIT_BAD_INPUT);
}

typedef struct {
    const char *job;
    char **sets;
    int n_sets;
    const char *weights, *save, *split, *out, *format, *timeline;
    long index;       /* augment-preview: which training image */
    const char *pos2; /* second positional (diff-weights) */
    double rtol;
    long steps, reps, warmup; /* bench */
    long floats;              /* bench-allreduce */
    long top;                 /* predict */
    int synthetic, json, profile, forward;
    ResumeMode resume;
    char **pos; /* predict: the images */
    int n_pos;
} Args;

static void parse_args(Args *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->rtol = 1e-5;
    a->steps = 30;
    a->reps = 5;
    a->warmup = 5;
    a->floats = 991041; /* the dogs-vs-cats convnet's gradient */
    a->sets = xmalloc((size_t)argc * sizeof *a->sets);
    a->pos = xmalloc((size_t)argc * sizeof *a->pos);
    a->top = 1;
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        int has_next = i + 1 < argc;
        if (!strcmp(s, "--synthetic")) {
            a->synthetic = 1;
        } else if (!strcmp(s, "--forward")) {
            a->forward = 1;
        } else if (!strcmp(s, "--profile")) {
            a->profile = 1;
            runenv_set_profile(1); /* model_alloc turns the per-layer clocks on */
        } else if (!strcmp(s, "--json")) {
            a->json = 1;
        } else if (!strcmp(s, "--resume") || !strcmp(s, "--no-resume")) {
            a->resume = !strcmp(s, "--resume") ? RESUME_REQUIRED : RESUME_NEVER;
        } else if (!strcmp(s, "--steps") || !strcmp(s, "--reps") || !strcmp(s, "--warmup") ||
                   !strcmp(s, "--floats") || !strcmp(s, "--index") || !strcmp(s, "--top")) {
            if (!has_next) bad_usage("option %s needs a value", s);
            long v;
            /* --warmup and --index may be 0 (the default image is 0) */
            int zero_ok = !strcmp(s, "--warmup") || !strcmp(s, "--index");
            if (parse_long(argv[++i], &v) != 0 || v < (zero_ok ? 0 : 1) || v > 1000000000)
                bad_usage("option needs a count, got '%s'", argv[i]);
            *(!strcmp(s, "--steps")    ? &a->steps
              : !strcmp(s, "--reps")   ? &a->reps
              : !strcmp(s, "--floats") ? &a->floats
              : !strcmp(s, "--index")  ? &a->index
              : !strcmp(s, "--top")    ? &a->top
                                       : &a->warmup) = v;
        } else if (!strcmp(s, "--set") || !strcmp(s, "--weights") || !strcmp(s, "--save") ||
                   !strcmp(s, "--split") || !strcmp(s, "--rtol") || !strcmp(s, "--out") ||
                   !strcmp(s, "--format") || !strcmp(s, "--timeline")) {
            if (!has_next) bad_usage("option %s needs a value", s);
            const char *v = argv[++i];
            if (!strcmp(s, "--set"))
                a->sets[a->n_sets++] = (char *)v;
            else if (!strcmp(s, "--weights"))
                a->weights = v;
            else if (!strcmp(s, "--save"))
                a->save = v;
            else if (!strcmp(s, "--split"))
                a->split = v;
            else if (!strcmp(s, "--out"))
                a->out = v;
            else if (!strcmp(s, "--format"))
                a->format = v;
            else if (!strcmp(s, "--timeline"))
                a->timeline = v;
            else if (parse_double(v, &a->rtol) != 0 || a->rtol < 0)
                bad_usage("--rtol needs a non-negative number, got '%s'", v);
        } else if (s[0] == '-') {
            bad_usage("unknown option '%s'", s);
        } else if (!a->job) {
            a->job = s;
        } else {
            if (!a->pos2) a->pos2 = s;
            a->pos[a->n_pos++] = (char *)s;
        }
    }
}

static void load_job(Job *j, const Args *a, const Dist *d) {
    Err e = {0};
    if (!a->job) bad_usage("%s", "missing JOB file");
    int n = a->n_sets;
    char **sets = xmalloc(((size_t)n + 1) * sizeof *sets);
    memcpy(sets, a->sets, (size_t)n * sizeof *sets);
    char save_set[4200];
    if (a->save) {
        snprintf(save_set, sizeof save_set, "train.save=%s", a->save);
        sets[n++] = save_set;
    }
    int rc = job_load(j, a->job, sets, n, &e);
    free(sets);
    if (rc) {
        if (d->rank == 0) fprintf(stderr, "convnet-dist: %s\n", e.msg);
        exit(EXIT_BAD_INPUT); /* every rank reads the same file and fails the same way */
    }
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static void cmd_bench(Trainer *t, const Args *a, Dist *d) {
    double *img_s = xmalloc((size_t)a->reps * sizeof *img_s);
    StepTimes tm;
    /* the collectives training runs: polled under the watchdog unless collective_timeout = off */
    double ct = t->job->train.collective_timeout;
    dist_set_watchdog(d, ct > 0 ? ct : ct == 0 ? 60.0 : 0.0);
    if (a->forward)
        trainer_bench_forward(t, (int)a->warmup, (int)a->steps, (int)a->reps, img_s, &tm);
    else
        trainer_bench(t, (int)a->warmup, (int)a->steps, (int)a->reps, img_s, &tm);
    qsort(img_s, (size_t)a->reps, sizeof *img_s, cmp_double);
    /* what one checkpoint (parameters + optimizer state, fsync'd) costs rank 0 */
    double ck_ms[3];
    char ck_path[256];
    const char *tmp = runenv()->tmpdir;
    snprintf(ck_path, sizeof ck_path, "%s/convnet-bench-%ld.ckpt", tmp ? tmp : "/tmp",
             (long)getpid());
    for (int i = 0; i < 3; i++) {
        CheckpointState st;
        memset(&st, 0, sizeof st);
        Err e = {0};
        double t0 = now_seconds();
        if (checkpoint_save(ck_path, &st, t->model.params, t->model.n_params, t->opt.s1, t->opt.s2,
                            t->opt.n, &e))
            die(EXIT_RUNTIME, "%s", e.msg);
        ck_ms[i] = 1e3 * (now_seconds() - t0);
    }
    unlink(ck_path);
    qsort(ck_ms, 3, sizeof *ck_ms, cmp_double);
    /* rank 0's wait in the step's collectives includes waiting for slower ranks; the rank that
     * arrived last waited for the communication alone */
    double last_comm = -tm.comm;
    dist_allreduce_max_f64(d, &last_comm, 1);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double steps = (double)a->steps * a->reps;
    if (d->rank == 0)
        printf("{\"job\": \"%s\", \"batch\": %d, \"grad_accum\": %d, \"ranks\": %d, \"threads\": "
               "%d, \"steps\": %ld, "
               "\"reps\": %ld, \"img_s_median\": %.1f, \"img_s_min\": %.1f, \"img_s_max\": %.1f, "
               "\"compute_ms\": %.3f, \"comm_ms\": %.3f, \"comm_ms_min\": %.3f, \"data_ms\": %.3f, "
               "\"grad_floats\": %zu, \"grad_buckets\": %d, \"checkpoint_ms\": %.2f, "
               "\"peak_rss_mb\": %.1f}\n",
               t->job->name, t->job->train.batch_size, t->job->train.grad_accum, d->size,
               d->threads, a->steps, a->reps, img_s[a->reps / 2], img_s[0], img_s[a->reps - 1],
               1e3 * tm.compute / steps, 1e3 * tm.comm / steps, -1e3 * last_comm / steps,
               1e3 * tm.data / steps, t->model.state_lo - t->model.train_lo, dist_grad_buckets(d),
               ck_ms[1], ru.ru_maxrss / 1024.0);
    if (d->rank == 0 && a->profile) {
        printf("step profile, rank 0, ms per step: data %.2f, model forward + backward %.2f, loss "
               "%.2f, "
               "optimizer %.2f, collectives (gradients, loss) %.2f\n",
               1e3 * tm.data / steps, 1e3 * (tm.compute - tm.loss - tm.optim) / steps,
               1e3 * tm.loss / steps, 1e3 * tm.optim / steps, 1e3 * tm.comm / steps);
        model_print_profile(&t->model, stdout);
    }
    free(img_s);
}

/* Median time of an in-place float allreduce of a->floats values over all ranks. */
static void cmd_bench_allreduce(const Args *a, Dist *d) {
    float *buf = xcalloc((size_t)a->floats, sizeof *buf);
    double *ms = xmalloc((size_t)a->reps * sizeof *ms);
    for (int i = 0; i < 3; i++) dist_allreduce_sum_f32(d, buf, (size_t)a->floats, "warm-up");
    for (long r = 0; r < a->reps; r++) {
        dist_barrier(d);
        double t0 = now_seconds();
        dist_allreduce_sum_f32(d, buf, (size_t)a->floats, "bench");
        ms[r] = 1e3 * (now_seconds() - t0);
    }
    /* the slowest rank's time is the collective's time */
    dist_allreduce_max_f64(d, ms, (size_t)a->reps);
    qsort(ms, (size_t)a->reps, sizeof *ms, cmp_double);
    if (d->rank == 0)
        printf("{\"ranks\": %d, \"floats\": %ld, \"mbytes\": %.2f, \"reps\": %ld, \"ms_median\": "
               "%.3f, "
               "\"ms_min\": %.3f, \"ms_max\": %.3f}\n",
               d->size, a->floats, a->floats * 4.0 / 1e6, a->reps, ms[a->reps / 2], ms[0],
               ms[a->reps - 1]);
    free(buf);
    free(ms);
}

/* Decoding throughput of the job's training images: from the JPEG files every epoch (no
 * cache), and from the decoded uint8 images kept in memory (the cache: a gather to floats). */
static void cmd_bench_loader(Trainer *t, const Job *job) {
    if (job->data.format != DATA_IMAGES)
        die(EXIT_BAD_INPUT, "%s: bench-loader needs format = images", job->ini.path);
    double decode = images_bench_decode(job->data.train_dir, job->data.image_h, job->data.image_w,
                                        1);
    if (decode < 0) die(EXIT_BAD_INPUT, "cannot read %s", job->data.train_dir);
    const Source *d = &t->train; /* loading = memory: main() sets it for this command */
    int B = t->model.max_batch;
    double t0 = now_seconds();
    for (int64_t s = 0; s + B <= d->n; s += B) {
        for (int i = 0; i < B; i++) t->ids[i] = s + i;
        source_gather_batch(d, NULL, t->ids, B, job->data.scale, job->data.offset, model_input(&t->model),
                            t->labels);
    }
    double cached = (double)(d->n / B * B) / (now_seconds() - t0);
    printf("{\"job\": \"%s\", \"images\": %lld, \"decode_img_s\": %.1f, \"cached_img_s\": %.1f, "
           "\"cache_mb\": %.1f}\n",
           job->name, (long long)d->n, decode, cached, (double)d->n * d->h * d->w * d->c / 1e6);
}

/* The book's figure 8.10: one training image under nine random augmentations. */
static void cmd_augment_preview(Trainer *t, const Job *job, const Args *a) {
    if (!a->out) bad_usage("%s", "augment-preview needs --out FILE.jpg");
    const Source *d = &t->train;
    if (a->index < 0 || a->index >= d->n)
        die(EXIT_BAD_INPUT, "--index %ld: the training data has %lld images", a->index,
            (long long)d->n);
    Err e = {0};
    uint8_t *img = xmalloc((size_t)d->h * d->w * d->c);
    SourceWorker w = {0};
    int rc = source_read(d, a->index, img, &w, &e);
    source_worker_free(&w);
    if (rc < 0 || augment_preview_write(a->out, img, d->h, d->w, d->c, t->model.layers,
                                        t->model.n_layers, job->train.seed, &e)) {
        free(img);
        die(rc < 0 ? EXIT_BAD_INPUT : EXIT_RUNTIME, "%s", e.msg);
    }
    free(img);
    printf("wrote %s: training image %ld under 9 augmentations\n", a->out, a->index);
}

/* The model with its weights (--weights, else the job's initial ones: seed, [darknet],
 * [keras_h5]) as a Keras weights file or an ONNX graph. */
static void cmd_export(Trainer *t, const Job *job, const Args *a, Dist *d) {
    Err e = {0};
    ExportFormat f;
    if (export_format_parse(a->format, &f, &e)) bad_usage("%s", e.msg);
    if (!a->out) bad_usage("%s", "export needs --out PATH");
    trainer_init(t, job, d, TRAINER_NO_DATA);
    if (a->weights && weights_load(a->weights, &t->model, &e)) die(EXIT_BAD_INPUT, "%s", e.msg);
    if (!a->weights)
        fprintf(stderr, "convnet-dist: note: no --weights: exporting the job's initial weights\n");
    if (export_model(&t->model, job, f, a->out, &e)) die(EXIT_RUNTIME, "%s", e.msg);
    printf("wrote %s (%s)\n", a->out, a->format);
}

static int cmd_diff_weights(const Args *a) {
    if (!a->job || a->n_pos != 1) bad_usage("%s", "diff-weights needs two weights files");
    Err e = {0};
    uint64_t na = 0, nb = 0;
    float *wa = weights_read_raw(a->job, &na, &e);
    float *wb = wa ? weights_read_raw(a->pos2, &nb, &e) : NULL;
    if (wa && wb && na != nb)
        err_set(&e, "%s has %llu parameters, %s has %llu", a->job, (unsigned long long)na, a->pos2,
                (unsigned long long)nb);
    if (e.set) {
        free(wa);
        free(wb);
        free(a->sets);
        free(a->pos);
        die(EXIT_BAD_INPUT, "%s", e.msg);
    }
    double worst = 0;
    uint64_t at = 0, identical = 0;
    for (uint64_t i = 0; i < na; i++) {
        double d = fabs((double)wa[i] - wb[i]) / fmax(1e-3, fmax(fabs(wa[i]), fabs(wb[i])));
        if (isnan(d)) d = isnan(wa[i]) && isnan(wb[i]) ? 0.0 : INFINITY; /* NaN vs a number */
        identical += wa[i] == wb[i];
        if (d > worst) {
            worst = d;
            at = i;
        }
    }
    printf("%llu parameters, %llu bitwise identical, max relative difference %.3g (at %llu; "
           "relative to max(|a|,|b|,1e-3))\n",
           (unsigned long long)na, (unsigned long long)identical, worst, (unsigned long long)at);
    free(wa);
    free(wb);
    return worst <= a->rtol ? EXIT_OK : EXIT_RUNTIME;
}

/* predict IMAGE...: class scores from --weights, or from the job's pretrained base. */
static int cmd_predict(Trainer *t, const Job *job, const Args *a, Dist *d) {
    trainer_init(t, job, d, TRAINER_NO_DATA);
    Err e = {0};
    if (a->weights && weights_load(a->weights, &t->model, &e)) die(EXIT_BAD_INPUT, "%s", e.msg);
    if (predict_images(&t->model, job, a->pos, a->n_pos, (int)a->top, a->json, stdout, stderr,
                       &e)) {
        fprintf(stderr, "convnet-dist: %s\n", e.msg);
        return EXIT_BAD_INPUT;
    }
    return EXIT_OK;
}

/* pack JOB: each split's folder decoded once at the job's image size into [data] pack_dir
 * (docs/data.md), every rank its range of each split. */
static int cmd_pack(Job *job, Dist *d) {
    const DataCfg *c = &job->data;
    Err e = {0};
    if (c->format != DATA_IMAGES || !c->pack_dir) {
        if (d->rank == 0)
            fprintf(stderr, "convnet-dist: %s: pack needs format = images and a [data] pack_dir\n",
                    job->ini.path);
        return EXIT_BAD_INPUT;
    }
    if (d->rank == 0 && mkdir(c->pack_dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "convnet-dist: %s: cannot create the pack folder: %s\n", c->pack_dir,
                strerror(errno));
        dist_abort(d, EXIT_BAD_INPUT);
    }
    const char *dirs[3] = {c->train_dir, c->val_dir, c->test_dir};
    const char *names[3] = {"train.pack", "validation.pack", "test.pack"};
    SourceImageOpts o = {c->image_h,     c->image_w, c->channels,
                         c->decode_full, c->strict,  d->rank != 0, d};
    for (int k = 0; k < 3; k++) {
        if (!dirs[k]) continue;
        Source f;
        double t0 = now_seconds();
        if (source_open_folder(&f, dirs[k], &o, &e)) {
            if (d->rank == 0) fprintf(stderr, "convnet-dist: %s\n", e.msg);
            dist_abort(d, EXIT_BAD_INPUT);
        }
        double listed = now_seconds() - t0;
        char *path = path_join(c->pack_dir, names[k]);
        int64_t bad = 0;
        int rc = source_pack_folder(&f, &o, path, d, &bad, &e);
        double bad_all = (double)bad;
        dist_allreduce_sum_f64(d, &bad_all, 1, "pack");
        if (rc) {
            fprintf(stderr, "convnet-dist: %s\n", e.msg); /* every rank: the failing one says why */
            dist_abort(d, EXIT_RUNTIME);
        }
        double secs = now_seconds() - t0;
        if (d->rank == 0)
            printf(
                "packed %s: %lld images of %dx%dx%d from %s (listed in %.2f s), %.1f s, %.0f img/s "
                "over %d ranks%s\n",
                path, (long long)f.n, c->image_h, c->image_w, c->channels, dirs[k], listed, secs,
                (double)f.n / secs, d->size,
                bad_all > 0 ? "; some JPEGs failed to decode: packed as black images" : "");
        free(path);
        source_free(&f);
    }
    return EXIT_OK;
}

/* The split that eval reads (--split, default test), checked before any data is loaded. */
static const char *eval_split(const Args *a) {
    const char *split = a->split ? a->split : "test";
    if (strcmp(split, "test") && strcmp(split, "validation") && strcmp(split, "train"))
        bad_usage("--split must be test, validation or train, not '%s'", split);
    return split;
}

/* train, or eval --weights FILE: the data are loaded (sharded over the ranks). */
static int cmd_train_or_eval(Trainer *t, const Job *job, const Args *a, Dist *d, int train) {
    trainer_init(t, job, d, TRAINER_LOAD_DATA);
    if (a->weights) {
        Err e = {0};
        int rc = weights_load(a->weights, &t->model, &e);
        if (rc && d->rank == 0) fprintf(stderr, "convnet-dist: %s\n", e.msg);
        if (rc) dist_abort(d, EXIT_BAD_INPUT);
    }
    if (train) {
        if (d->rank == 0) trainer_print_setup(t, stdout);
        if (a->timeline) timeline_start(d, a->timeline, &t->model);
        int status = trainer_fit(t, a->resume);
        Err e = {0};
        if (a->timeline && timeline_finish(d, &e)) {
            fprintf(stderr, "convnet-dist: %s\n", e.msg);
            if (status == EXIT_OK) status = EXIT_RUNTIME;
        }
        return status;
    }
    const char *split = eval_split(a);
    const Source *ds = !strcmp(split, "test")         ? &t->test
                       : !strcmp(split, "validation") ? &t->val
                                                      : &t->train;
    if (ds->n == 0) die(EXIT_BAD_INPUT, "%s: the job has no %s data", job->ini.path, split);
    EvalResult r = trainer_evaluate(t, ds);
    if (d->rank == 0)
        printf("%s: %lld samples - loss: %.4f - accuracy: %.4f\n", split, (long long)r.count,
               r.loss, r.accuracy);
    return EXIT_OK;
}

/* Usage errors that need no job: the command, positional arguments, required options. */
static void check_command(const char *cmd, const Args *a, int distributed, int local) {
    if (!distributed && !local) bad_usage("unknown command '%s'", cmd);
    if (strcmp(cmd, "predict") && a->n_pos > 0) bad_usage("unexpected argument '%s'", a->pos[0]);
    if (!strcmp(cmd, "predict") && a->n_pos == 0)
        bad_usage("%s", "predict needs at least one IMAGE");
    if (!strcmp(cmd, "eval") && !a->weights) bad_usage("%s", "eval needs --weights FILE");
    if (!strcmp(cmd, "eval")) eval_split(a);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_BAD_INPUT : EXIT_OK;
    }
    const char *cmd = argv[1];
    runenv_load(); /* the one read of the environment (runenv.h) */
    Args a;
    parse_args(&a, argc, argv);
    Dist dist;
    if (!strcmp(cmd, "diff-weights")) {
        int rc = cmd_diff_weights(&a);
        free(a.sets);
        free(a.pos);
        return rc;
    }
    if (!strcmp(cmd, "bench-allreduce")) {
        dist_init(&dist, &argc, &argv);
        cmd_bench_allreduce(&a, &dist);
        return dist_finalize(&dist, EXIT_OK);
    }
    int distributed = !strcmp(cmd, "train") || !strcmp(cmd, "eval") || !strcmp(cmd, "bench") ||
                      !strcmp(cmd, "pack");
    int local = !strcmp(cmd, "summary") || !strcmp(cmd, "bench-loader") ||
                !strcmp(cmd, "augment-preview") || !strcmp(cmd, "predict") ||
                !strcmp(cmd, "export");
    check_command(cmd, &a, distributed, local);
    if (!strcmp(cmd, "train")) stop_install_handlers(); /* before start-up, see stop.h */
    if (distributed)
        dist_init(&dist, &argc, &argv);
    else {
        memset(&dist, 0, sizeof dist);
        dist.size = dist.local_size = 1;
    }
    dist_setup_threads(&dist);
    Job job;
    load_job(&job, &a, &dist);
    if (!strcmp(cmd, "predict") && !a.weights && !job.has_darknet && !job.keras_h5)
        bad_usage("%s",
                  "predict needs --weights FILE (or a job with a [darknet] or [keras_h5] base)");
    Err pe = {0};
    /* the files a training run writes, checked before its data are read, not after it ends */
    /* the default run directory is ours to make (rundir.h): made now, it is checked like the rest */
    /* and removed again while empty: the first checkpoint makes it (fit.c), so a run that
     * fails before then leaves no empty runs/<name>/ behind */
    if (!strcmp(cmd, "train") && dist.rank == 0) {
        int bad = rundir_prepare(&job, &pe) || preflight_check_outputs(&job, &pe) ||
                  preflight_check_class_names(&job, 0, &pe);
        rundir_remove_empty(&job);
        if (bad) {
            fprintf(stderr, "convnet-dist: %s\n", pe.msg);
            dist_abort(&dist, EXIT_BAD_INPUT);
        }
    }
    Trainer t;
    int status = EXIT_OK;
    if (!strcmp(cmd, "pack")) {
        status = cmd_pack(&job, &dist);
        memset(&t, 0, sizeof t);
    } else if (!strcmp(cmd, "summary")) {
        trainer_init(&t, &job, &dist, TRAINER_NO_DATA);
        trainer_print_setup(&t, stdout);
    } else if (!strcmp(cmd, "predict")) {
        status = cmd_predict(&t, &job, &a, &dist);
    } else if (!strcmp(cmd, "export")) {
        cmd_export(&t, &job, &a, &dist);
    } else if (!strcmp(cmd, "bench-loader") || !strcmp(cmd, "augment-preview")) {
        job.data.loading_memory |= !strcmp(cmd, "bench-loader"); /* it times the in-memory gather */
        trainer_init(&t, &job, &dist, TRAINER_LOAD_DATA);
        if (!strcmp(cmd, "bench-loader"))
            cmd_bench_loader(&t, &job);
        else
            cmd_augment_preview(&t, &job, &a);
    } else if (!strcmp(cmd, "bench")) {
        trainer_init(&t, &job, &dist, a.synthetic ? TRAINER_SYNTHETIC : TRAINER_LOAD_DATA);
        cmd_bench(&t, &a, &dist);
    } else {
        status = cmd_train_or_eval(&t, &job, &a, &dist, !strcmp(cmd, "train"));
    }
    trainer_free(&t);
    job_free(&job);
    free(a.sets);
    free(a.pos);
    return dist_finalize(&dist, status);
}
