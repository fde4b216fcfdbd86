/* job.c: turns a parsed job file into a Job: [data], [model], [train] and the layer sections in
 * order, with Keras defaults, range checks and unknown-key errors (see job.h). */
#include "job.h"
#include "rundir.h"
#include "runenv.h"

#include <stdlib.h>
#include <string.h>


static int path_key(IniFile *ini, Section *s, const char *key, int required, const char *root,
                    char **out, Err *e) {
    const char *v = sec_get_str(ini, s, key, required, NULL, e);
    if (!v) {
        *out = NULL;
        return e->set ? -1 : 0;
    }
    *out = path_join(root, v);
    return 0;
}

/* The directory relative data paths are under: [data] root, else $CONVNET_DATA, else data/.
 * Pretrained weights ([darknet], [keras_h5]) are data too and live under the same root. */
static const char *data_root(IniFile *ini, Err *e) {
    Section *d = ini_find(ini, "data");
    const char *env = runenv()->data_root;
    const char *def = env ? env : "data";
    return d ? sec_get_str(ini, d, "root", 0, def, e) : def;
}

static int resolve_data(Job *j, Section *s, Err *e) {
    IniFile *ini = &j->ini;
    DataCfg *d = &j->data;
    static const char *const formats[] = {"idx", "images", NULL};
    int fmt;
    if (sec_get_enum(ini, s, "format", 0, DATA_IDX, formats, &fmt, e)) return -1;
    d->format = (DataFormat)fmt;
    const char *root = data_root(ini, e);
    d->root = xstrdup(root);
    if (sec_get_float(ini, s, "scale", 0, 1.0, -1e30, 1e30, &d->scale, e) ||
        sec_get_float(ini, s, "offset", 0, 0.0, -1e30, 1e30, &d->offset, e) ||
        path_key(ini, s, "class_names", 0, root, &d->class_names, e))
        return -1;
    /* how the samples reach the step (docs/data.md): the same pixels whichever is chosen */
    static const char *const loadings[] = {"stream", "memory", NULL};
    if (sec_get_enum(ini, s, "loading", 0, 0, loadings, &d->loading_memory, e) ||
        sec_get_int(ini, s, "prefetch", 0, DATA_PREFETCH_DEFAULT, 1, 64, &d->prefetch, e))
        return -1;
    if (d->format == DATA_IDX) {
        if (path_key(ini, s, "train_images", 1, root, &d->train_images, e) ||
            path_key(ini, s, "train_labels", 1, root, &d->train_labels, e) ||
            path_key(ini, s, "test_images", 1, root, &d->test_images, e) ||
            path_key(ini, s, "test_labels", 1, root, &d->test_labels, e) ||
            path_key(ini, s, "validation_images", 0, root, &d->val_images, e) ||
            path_key(ini, s, "validation_labels", 0, root, &d->val_labels, e))
            return -1;
        if (!d->val_images != !d->val_labels) {
            err_set(e,
                    "%s:%d: [data] needs both validation_images and validation_labels, or "
                    "neither",
                    ini_section_file(ini, s), s->line);
            return -1;
        }
    } else {
        static const char *const colors[] = {"grayscale", "rgb", NULL};
        static const char *const label_modes[] = {"int", "binary", NULL};
        static const char *const decodes[] = {"scaled", "full", NULL};
        int color, lm;
        if (path_key(ini, s, "train_dir", 1, root, &d->train_dir, e) ||
            path_key(ini, s, "validation_dir", 0, root, &d->val_dir, e) ||
            path_key(ini, s, "test_dir", 1, root, &d->test_dir, e) ||
            sec_get_pair(ini, s, "image_size", 0, 256, 256, 1, 8192, &d->image_h, &d->image_w, e) ||
            sec_get_enum(ini, s, "color_mode", 0, 1, colors, &color, e) ||
            sec_get_enum(ini, s, "label_mode", 0, 0, label_modes, &lm, e) ||
            sec_get_bool(ini, s, "strict", 0, &d->strict, e) ||
            sec_get_enum(ini, s, "decode", 0, 0, decodes, &d->decode_full, e) ||
            path_key(ini, s, "pack_dir", 0, root, &d->pack_dir, e))
            return -1;
        d->channels = color ? 3 : 1;
        d->binary_labels = lm;
    }
    return sec_check_unused(ini, s, e);
}

/* [train]'s recipe keys: the schedule, TerminateOnNaN, gradient accumulation, lr scaling. */
static int resolve_train_recipe(IniFile *ini, Section *s, TrainCfg *t, Err *e) {
    static const char *const scalings[] = {"none", "linear", NULL};
    if (lr_schedule_configure(ini, s, NULL, t->opt.lr, &t->schedule, e) ||
        sec_get_bool(ini, s, "terminate_on_nan", 1, &t->terminate_on_nan, e) ||
        sec_get_int(ini, s, "gradient_accumulation_steps", 0, 1, 1, 1 << 16, &t->grad_accum, e) ||
        sec_get_enum(ini, s, "lr_scaling", 0, 0, scalings, &t->lr_scaling_linear, e))
        return -1;
    t->lr_scale = 1.0;
    if (t->lr_scaling_linear) {
        /* the global batch the job's learning rates were tuned for */
        if (sec_get_int(ini, s, "lr_reference_batch", 1, 0, 1, 1 << 20, &t->lr_reference_batch, e))
            return -1;
        t->lr_scale = (double)t->batch_size / t->lr_reference_batch;
    }
    return 0;
}

static int resolve_train(Job *j, Section *s, Err *e) {
    IniFile *ini = &j->ini;
    TrainCfg *t = &j->train;
    static const char *const losses[] = {"sparse_categorical_crossentropy", "binary_crossentropy",
                                         NULL};
    static const char *const opts[] = {"rmsprop", "adam", "sgd", NULL};
    static const char *const metrics[] = {"accuracy", NULL};
    int loss, opt, metric;
    long seed;
    OptConfig *o = &t->opt;
    if (sec_get_enum(ini, s, "loss", 1, 0, losses, &loss, e) ||
        sec_get_enum(ini, s, "optimizer", 0, OPT_RMSPROP, opts, &opt, e) ||
        sec_get_enum(ini, s, "metrics", 0, 0, metrics, &metric, e) ||
        sec_get_int(ini, s, "batch_size", 0, 32, 1, 1 << 20, &t->batch_size, e) ||
        sec_get_int(ini, s, "epochs", 0, 1, 0, 1 << 20, &t->epochs, e) ||
        sec_get_long(ini, s, "seed", 0, 1, 0, (long)(~0UL >> 1), &seed, e) ||
        sec_get_double(ini, s, "validation_split", 0, 0.0, 0.0, 0.99, &t->validation_split, e) ||
        sec_get_long(ini, s, "steps_per_epoch", 0, 0, 0, 1L << 40, &t->steps_per_epoch, e) ||
        sec_get_bool(ini, s, "shuffle", 1, &t->shuffle, e) ||
        sec_get_bool(ini, s, "overlap_allreduce", 0, &t->overlap_allreduce, e) ||
        sec_get_double(ini, s, "bucket_mb", 0, 1.0, 1e-6, 1e6, &t->bucket_mb, e))
        return -1;
    const char *ct = sec_get_str(ini, s, "collective_timeout", 0, "auto", e);
    if (!strcmp(ct, "auto"))
        t->collective_timeout = 0;
    else if (!strcmp(ct, "off"))
        t->collective_timeout = -1;
    else if (parse_double(ct, &t->collective_timeout) != 0 || t->collective_timeout <= 0) {
        err_set(
            e,
            "%s: [train] collective_timeout must be auto, off or a number of seconds > 0, got '%s'",
            ini->path, ct);
        return -1;
    }
    t->loss = (LossKind)loss;
    t->seed = (uint64_t)seed;
    o->kind = (OptKind)opt;
    /* Keras defaults: RMSprop lr 1e-3 rho 0.9; Adam lr 1e-3 betas 0.9/0.999; SGD lr 0.01 */
    double lr_default = o->kind == OPT_SGD ? 0.01 : 0.001;
    if (sec_get_float(ini, s, "lr", 0, lr_default, 0.0, 1e3, &o->lr, e) ||
        sec_get_float(ini, s, "epsilon", 0, 1e-7, 0.0, 1.0, &o->epsilon, e))
        return -1;
    if (o->kind == OPT_RMSPROP &&
        (sec_get_float(ini, s, "rho", 0, 0.9, 0.0, 1.0, &o->rho, e) ||
         sec_get_float(ini, s, "momentum", 0, 0.0, 0.0, 1.0, &o->momentum, e)))
        return -1;
    if (o->kind == OPT_RMSPROP) {
        /* where RMSprop adds epsilon: Keras 3's sqrt(v + eps), or tf.keras 2's sqrt(v) + eps */
        static const char *const placements[] = {"inside_sqrt", "outside_sqrt", NULL};
        if (sec_get_enum(ini, s, "epsilon_placement", 0, 0, placements, &o->epsilon_outside_sqrt,
                         e))
            return -1;
        if (o->epsilon_outside_sqrt && o->momentum > 0) {
            err_set(
                e,
                "%s:%d: [train] epsilon_placement = outside_sqrt needs momentum = 0 (tf.keras 2 "
                "adds epsilon inside the root when RMSprop has momentum)",
                ini_section_file(ini, s), s->line);
            return -1;
        }
    }
    if (o->kind == OPT_ADAM &&
        (sec_get_float(ini, s, "beta_1", 0, 0.9, 0.0, 0.999999, &o->beta1, e) ||
         sec_get_float(ini, s, "beta_2", 0, 0.999, 0.0, 0.9999999, &o->beta2, e)))
        return -1;
    if (o->kind == OPT_SGD &&
        (sec_get_float(ini, s, "momentum", 0, 0.0, 0.0, 1.0, &o->momentum, e) ||
         sec_get_bool(ini, s, "nesterov", 0, &o->nesterov, e)))
        return -1;
    if (resolve_train_recipe(ini, s, t, e)) return -1;
    t->save = xstrdup(sec_get_str(ini, s, "save", 0, "", e));
    t->step_log = xstrdup(sec_get_str(ini, s, "step_log", 0, "", e));
    t->csv_log = xstrdup(sec_get_str(ini, s, "csv_log", 0, "", e));
    t->chart = xstrdup(sec_get_str(ini, s, "chart", 0, "", e));
    static const char *const cache_modes[] = {"off", "auto", NULL};
    if (sec_get_enum(ini, s, "feature_cache", 0, 1, cache_modes, &t->feature_cache, e)) return -1;
    /* names[i] is ConvAlgoId i - 2; default: direct with oneDNN, else im2col */
    static const char *const algos[] = {"default", "auto", "im2col", "direct", "winograd", NULL};
    int algo;
    if (sec_get_enum(ini, s, "conv_algorithm", 0, 0, algos, &algo, e)) return -1;
    t->conv_algo = (ConvAlgoId)(algo - 2);
    /* Keras's policy names (docs/mixed-precision.md) */
    static const char *const precisions[] = {"float32", "mixed_bfloat16", NULL};
    if (sec_get_enum(ini, s, "precision", 0, 0, precisions, &t->mixed_bf16, e)) return -1;
    return sec_check_unused(ini, s, e);
}

static int resolve_checkpoint(Job *j, Section *s, Err *e) {
    IniFile *ini = &j->ini;
    CheckpointCfg *c = &j->ckpt;
    static const char *const monitors[] = {"val_loss", "val_accuracy", "loss", "accuracy",
                                           NULL}; /* Monitor order */
    static const char *const modes[] = {"auto", "min", "max", NULL};
    int monitor, mode;
    free(c->path);
    free(c->save_best);
    c->path = xstrdup(sec_get_str(ini, s, "path", 0, "auto", e)); /* rundir.c resolves auto/off */
    c->save_best = xstrdup(sec_get_str(ini, s, "save_best", 0, "", e));
    if (sec_get_long(ini, s, "every_steps", 0, 0, 0, 1L << 40, &c->every_steps, e) ||
        sec_get_bool(ini, s, "every_epoch", 1, &c->every_epoch, e) ||
        sec_get_int(ini, s, "keep", 0, 1, 1, 1000, &c->keep, e) ||
        sec_get_enum(ini, s, "monitor", 0, MONITOR_VAL_LOSS, monitors, &monitor, e) ||
        sec_get_enum(ini, s, "mode", 0, 0, modes, &mode, e) ||
        sec_get_int(ini, s, "patience", 0, 0, 0, 1 << 20, &c->patience, e) ||
        sec_get_bool(ini, s, "restore_best_weights", 0, &c->restore_best, e))
        return -1;
    c->monitor = (Monitor)monitor;
    c->higher_is_better = mode == 2 || (mode == 0 && (monitor == MONITOR_VAL_ACCURACY ||
                                                      monitor == MONITOR_ACCURACY));
    return sec_check_unused(ini, s, e);
}

static int find_layer(const Job *j, const char *name) {
    for (int l = 0; l < j->n_layers; l++)
        if (!strcmp(j->layers[l].name, name)) return l;
    return -1;
}

/* `inputs = name[, name...]`: the earlier layers (or `input`, the model's input) whose outputs
 * this layer reads; without the key, the previous layer's (Keras Sequential). */
static int resolve_inputs(Job *j, Layer *L, Section *s, Err *e) {
    const char *v = sec_get_str(&j->ini, s, "inputs", 0, NULL, e);
    if (!v) return 0;
    const char *file = ini_section_file(&j->ini, s);
    int line = s->line;
    for (int k = 0; k < s->n_kv; k++)
        if (!strcmp(s->kv[k].key, "inputs") && s->kv[k].line) line = s->kv[k].line;
    char name[sizeof L->name];
    for (const char *p = v;;) {
        while (*p == ' ' || *p == '\t') p++;
        size_t n = strcspn(p, ", \t");
        if (n == 0 || n >= sizeof name) {
            char q[ERR_QUOTE_MAX];
            err_set(e, "%s:%d: inputs: expected layer names separated by commas, got %s", file,
                    line, err_quote(v, q, sizeof q));
            return -1;
        }
        memcpy(name, p, n);
        name[n] = 0;
        int idx = !strcmp(name, "input") ? LAYER_INPUT : find_layer(j, name);
        if (idx == LAYER_INPUT && strcmp(name, "input") != 0) {
            err_set(e,
                    "%s:%d: inputs: no earlier layer is named '%s' (a layer reads layers above "
                    "it, or `input`: a later or its own name would be a cycle)",
                    file, line, name);
            return -1;
        }
        if (L->n_inputs == LAYER_MAX_INPUTS) {
            err_set(e, "%s:%d: inputs: at most %d", file, line, LAYER_MAX_INPUTS);
            return -1;
        }
        L->inputs[L->n_inputs++] = idx;
        p += n;
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) break;
        if (*p++ != ',') {
            char q[ERR_QUOTE_MAX];
            err_set(e, "%s:%d: inputs: expected layer names separated by commas, got %s", file,
                    line, err_quote(v, q, sizeof q));
            return -1;
        }
    }
    return 0;
}

static int resolve_layer(Job *j, Section *s, int kind, Err *e) {
    Layer *L = &j->layers[j->n_layers];
    memset(L, 0, sizeof *L);
    L->kind = (LayerKind)kind;
    /* Keras-style instance name unless the job names the layer (pretrained weights in Keras
     * files are matched by name: block1_conv1, ...) */
    const char *name = sec_get_str(&j->ini, s, "name", 0, s->label, e);
    if (!name[0] || strlen(name) >= sizeof L->name || find_layer(j, name) >= 0) {
        char q[ERR_QUOTE_MAX];
        err_set(e, "%s:%d: layer name %s is %s", ini_section_file(&j->ini, s), s->line,
                err_quote(name, q, sizeof q),
                !name[0]                   ? "empty"
                : find_layer(j, name) >= 0 ? "already taken by an earlier layer"
                                           : "too long");
        return -1;
    }
    snprintf(L->name, sizeof L->name, "%s", name);
    L->line = s->line;
    L->file = ini_section_file(&j->ini, s);
    L->trainable = 1;
    if (resolve_inputs(j, L, s, e)) return -1;
    if (layer_ops[kind]->configure(L, &j->ini, s, e)) return -1;
    if (sec_check_unused(&j->ini, s, e)) return -1;
    j->n_layers++;
    return 0;
}

/* After the phases: lr_scaling applied to their schedules (lr then holds the first step's
 * rate), and ReduceLROnPlateau only where the rate is the job's to set. */
static int phases_finish(Job *j, Err *e) {
    for (int p = 0; p < j->n_phases; p++) {
        PhaseCfg *ph = &j->phases[p];
        lr_schedule_scale(&ph->schedule, j->train.lr_scale);
        ph->lr = (float)lr_schedule_at(&ph->schedule, 0);
        if (j->plateau.enabled && ph->schedule.kind != LR_CONSTANT) {
            /* Keras refuses too: an optimizer whose learning_rate is a schedule has no rate to set */
            err_set(e,
                    "%s:%d: [reduce_lr_on_plateau] needs a constant learning rate, but the %s "
                    "sets lr_schedule = %s",
                    j->ini.path, ph->line, ph->line ? "[phase] here" : "[train] section",
                    lr_schedule_name(ph->schedule.kind));
            return -1;
        }
    }
    return 0;
}

/* The [phase] sections, after the layers and [train] are known; without any, one phase from
 * [train]. */
static int resolve_phases(Job *j, Err *e) {
    IniFile *ini = &j->ini;
    int n = 0;
    for (int i = 0; i < ini->n_sec; i++) n += !strcmp(ini->sec[i].name, "phase");
    j->phases = xcalloc(n ? (size_t)n : 1, sizeof *j->phases);
    if (n == 0) {
        j->phases[0] = (PhaseCfg){j->train.epochs, j->train.opt.lr, -1, 0, j->train.schedule};
        j->n_phases = 1;
        return phases_finish(j, e);
    }
    Section *train = ini_find(ini, "train");
    for (int k = 0; k < train->n_kv; k++)
        if (!strcmp(train->kv[k].key, "epochs") && !train->kv[k].resolved) {
            err_set(e, "%s:%d: with [phase] sections the epochs are set per phase, not in [train]",
                    ini_section_file(ini, train),
                    train->kv[k].line ? train->kv[k].line : train->line);
            return -1;
        }
    long total = 0;
    for (int i = 0; i < ini->n_sec; i++) {
        Section *s = &ini->sec[i];
        if (strcmp(s->name, "phase")) continue;
        PhaseCfg *p = &j->phases[j->n_phases++];
        p->line = s->line;
        p->unfreeze_from = -1;
        if (sec_get_int(ini, s, "epochs", 1, 0, 1, 1 << 20, &p->epochs, e) ||
            sec_get_float(ini, s, "lr", 0, j->train.opt.lr, 0.0, 1e3, &p->lr, e) ||
            lr_schedule_configure(ini, s, &j->train.schedule, p->lr, &p->schedule, e))
            return -1;
        const char *from = sec_get_str(ini, s, "unfreeze_from", 0, "", e);
        if (from[0]) {
            p->unfreeze_from = find_layer(j, from);
            if (p->unfreeze_from < 0) {
                err_set(e,
                        "%s:%d: unfreeze_from = %s: the job has no layer of that name (see "
                        "`convnet-dist summary`)",
                        ini_section_file(ini, s), s->line, from);
                return -1;
            }
        }
        if (sec_check_unused(ini, s, e)) return -1;
        total += p->epochs;
    }
    if (total > (1 << 20)) {
        err_set(e, "%s: the phases add up to %ld epochs, more than %d", ini->path, total, 1 << 20);
        return -1;
    }
    j->train.epochs = (int)total;
    return phases_finish(j, e);
}

/* The section s of the job: a layer, a [darknet] base (many layers), or one of the job's own
 * sections. *have_data and *have_train are set when s is [data] or [train]. */
static int resolve_section(Job *j, Section *s, int capacity, int *have_data, int *have_train,
                           Err *e) {
    IniFile *ini = &j->ini;
    int kind = layer_kind_from_section(s->name);
    int repeated = strcmp(s->name, s->label) != 0;
    if (kind >= 0) return resolve_layer(j, s, kind, e);
    if (repeated &&
        (!strcmp(s->name, "data") || !strcmp(s->name, "train") || !strcmp(s->name, "model") ||
         !strcmp(s->name, "checkpoint") || !strcmp(s->name, "reduce_lr_on_plateau"))) {
        err_set(e, "%s:%d: section [%s] appears twice", ini_section_file(ini, s), s->line, s->name);
        return -1;
    }
    if (!strcmp(s->name, "data")) {
        *have_data = 1;
        return resolve_data(j, s, e);
    }
    if (!strcmp(s->name, "train")) {
        *have_train = 1;
        return resolve_train(j, s, e);
    }
    if (!strcmp(s->name, "darknet")) {
        if (j->has_darknet) {
            err_set(e, "%s:%d: only one [darknet] base per job", ini_section_file(ini, s), s->line);
            return -1;
        }
        j->has_darknet = 1;
        return darknet_expand(ini, s, data_root(ini, e), j->layers, &j->n_layers, capacity,
                              &j->darknet, e);
    }
    if (!strcmp(s->name, "keras_h5")) {
        if (j->keras_h5) {
            err_set(e, "%s:%d: only one [keras_h5] weights file per job", ini_section_file(ini, s),
                    s->line);
            return -1;
        }
        if (path_key(ini, s, "file", 1, data_root(ini, e), &j->keras_h5, e)) return -1;
        return sec_check_unused(ini, s, e);
    }
    if (!strcmp(s->name, "phase")) return 0; /* resolve_phases, once the layers are known */
    if (!strcmp(s->name, "reduce_lr_on_plateau")) return plateau_configure(ini, s, &j->plateau, e);
    if (!strcmp(s->name, "checkpoint")) return resolve_checkpoint(j, s, e);
    if (!strcmp(s->name, "model")) {
        const char *name = sec_get_str(ini, s, "name", 0, NULL, e);
        if (name) j->name = xstrdup(name);
        return sec_check_unused(ini, s, e);
    }
    char kinds[512] = "";
    for (int k = 0; k < LAYER_KIND_COUNT; k++) {
        strncat(kinds, " ", sizeof kinds - strlen(kinds) - 1);
        strncat(kinds, layer_ops[k]->section, sizeof kinds - strlen(kinds) - 1);
    }
    err_set(e,
            "%s:%d: unknown section [%s]; expected data, model, train, checkpoint, "
            "phase, reduce_lr_on_plateau, darknet, keras_h5 or a layer:%s",
            ini_section_file(ini, s), s->line, s->name, kinds);
    return -1;
}

/* What the sections leave open: the job's name from its file name, the default checkpoint, the
 * run directory, and the two hashes (the job's computation; what a checkpoint may resume into). */
static int job_resolve_defaults(Job *j, const char *path, Err *e) {
    IniFile *ini = &j->ini;
    if (!j->name) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        j->name = xstrdup(base);
        char *dot = strrchr(j->name, '.');
        if (dot && dot != j->name) *dot = 0;
    }
    if (!j->ckpt.path) { /* no [checkpoint] section: the defaults (the run directory) */
        Section none = {.name = "checkpoint", .label = "checkpoint"};
        if (resolve_checkpoint(j, &none, e)) return -1;
        for (int k = 0; k < none.n_kv; k++) {
            free(none.kv[k].key);
            free(none.kv[k].value);
        }
        free(none.kv);
    }
    if (rundir_resolve(j, e)) return -1;
        /* Everything that changes the computation; where results are written does not. A key added
     * after checkpoints existed is left out at the value that computes what its absence did, so
     * that a run checkpointed by an earlier convnet-dist resumes after an upgrade (its default
     * is filled in and hashed like any key: without this, every new key would orphan every
     * checkpoint). Each new key with a default goes here; tests/test_job_hash.c pins the hashes
     * of the jobs in jobs/ and fails when a change moves them. */
#define KEYS_ADDED_LATER                                                                       \
    "data.decode=scaled", "train.epsilon_placement=inside_sqrt", "train.lr_schedule=constant", \
        "phase.lr_schedule=constant", "train.terminate_on_nan=true",                           \
        "train.gradient_accumulation_steps=1", "train.lr_scaling=none", "data.loading=stream", \
        "data.prefetch=3", "train.precision=float32"
    static const char *const ignore[] = {"train.save",  "train.step_log", "train.csv_log",
                                         "train.chart", KEYS_ADDED_LATER, NULL};
    j->hash = ini_hash(ini, ignore);
    /* A checkpoint resumes into the same model and training, possibly for more epochs, with other
     * checkpoint settings, or with another watchdog or gradient allreduce. */
    static const char *const resume_ignore[] = {"train.save",
                                                "train.step_log",
                                                "train.csv_log",
                                                "train.chart",
                                                "train.epochs",
                                                "train.collective_timeout",
                                                "train.overlap_allreduce",
                                                "train.bucket_mb",
                                                "checkpoint.*",
                                                "train.terminate_on_nan",
                                                "data.loading",
                                                "data.prefetch",
                                                "data.pack_dir",
                                                KEYS_ADDED_LATER,
                                                NULL};
#undef KEYS_ADDED_LATER
    j->resume_hash = ini_hash(ini, resume_ignore);
    return 0;
}

int job_load(Job *j, const char *path, char *const *overrides, int n_overrides, Err *e) {
    memset(j, 0, sizeof *j);
    if (ini_parse_file(&j->ini, path, e)) return -1;
    IniFile *ini = &j->ini;
    for (int i = 0; i < n_overrides; i++)
        if (ini_apply_override(ini, overrides[i], e)) return -1;
    /* a [darknet] section expands to many layers */
    const int capacity = ini->n_sec + 1024;
    j->layers = xcalloc((size_t)capacity, sizeof *j->layers);
    int have_data = 0, have_train = 0;
    for (int i = 0; i < ini->n_sec; i++)
        if (resolve_section(j, &ini->sec[i], capacity, &have_data, &have_train, e)) return -1;
    if (!have_data) {
        err_set(e, "%s: the job has no [data] section", ini->path);
        return -1;
    }
    if (!have_train) {
        err_set(e, "%s: the job has no [train] section", ini->path);
        return -1;
    }
    if (j->n_layers == 0) {
        err_set(e, "%s: the job has no layers", ini->path);
        return -1;
    }
    if (resolve_phases(j, e)) return -1;
    /* convolutions without their own `algorithm` (Darknet's too, and SeparableConv2D's
     * pointwise one) take [train]'s */
    for (int l = 0; l < j->n_layers; l++)
        if ((j->layers[l].kind == LAYER_CONV2D || j->layers[l].kind == LAYER_SEPARABLE_CONV2D) &&
            !j->layers[l].conv_algo_strict)
            j->layers[l].conv_algo = j->train.conv_algo;
    for (int l = 0; l < j->n_layers; l++) /* and the precision policy, whatever their algorithm */
        j->layers[l].mixed_bf16 = j->train.mixed_bf16 &&
                                  (j->layers[l].kind == LAYER_CONV2D ||
                                   j->layers[l].kind == LAYER_SEPARABLE_CONV2D);
    return job_resolve_defaults(j, path, e);
}

void job_free(Job *j) {
    DataCfg *d = &j->data;
    char *paths[] = {d->root,        d->train_images,   d->train_labels,  d->test_images,
                     d->test_labels, d->val_images,     d->val_labels,    d->train_dir,
                     d->val_dir,     d->test_dir,       d->class_names,   d->pack_dir,
                     j->train.save,  j->train.step_log, j->train.csv_log, j->train.chart,
                     j->ckpt.path,   j->ckpt.save_best, j->name,          j->keras_h5};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) free(paths[i]);
    free(j->layers);
    free(j->phases);
    if (j->has_darknet) darknet_import_free(&j->darknet);
    ini_free(&j->ini);
    memset(j, 0, sizeof *j);
}
