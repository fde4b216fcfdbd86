/* preflight.c: checks made before a run commits memory or time to its inputs (see
 * preflight.h): plan memory, output paths, degenerate class folders, non-finite weights. */
#include "preflight.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

void preflight_param_name(const Model *m, size_t i, char *buf, size_t n) {
    for (int l = 0; l < m->n_layers; l++) {
        const Layer *L = &m->layers[l];
        for (int t = 0; t < L->n_param; t++) {
            const LayerParam *P = &L->param[t];
            if (i < P->off || i >= P->off + P->n) continue;
            snprintf(buf, n, "layer '%s' %s, value %zu of %zu", L->name, P->name, i - P->off, P->n);
            return;
        }
    }
    snprintf(buf, n, "parameter %zu", i);
}

int preflight_params_finite(const Model *m, const float *params, const char *path, const char *what,
                            Err *e) {
    size_t bad = floats_first_nonfinite(params, m->n_params);
    if (bad == m->n_params) return 0;
    char name[160];
    preflight_param_name(m, bad, name, sizeof name);
    err_set(e, "%s: %s holds a non-finite weight (%g) in %s: refusing to train from it", path, what,
            (double)params[bad], name);
    return -1;
}

/* ---------------------------------------------------------------- memory */

static double gb(double bytes) { return bytes / 1e9; }

int preflight_check_memory(const Model *m, size_t opt_floats, int batch_size, int ranks_on_node,
                           const char *job, unsigned long long node_bytes, Err *e) {
    /* what model_alloc() makes, by name (params and grads, activations, the gradient
     * buffers, layer state, workspace) and the optimizer's state */
    struct {
        const char *name;
        double bytes;
    } buf[] = {
        {"activations", 4.0 * (double)m->acts_floats},
        {"gradient buffers", 4.0 * (double)(model_activation_floats(m) - m->acts_floats)},
        {"layer state for backward", (double)m->aux_bytes},
        {"workspace", 4.0 * (double)m->ws_floats},
        {"parameters and gradients", 8.0 * (double)m->n_params},
        {"optimizer state", 4.0 * (double)opt_floats},
    };
    const int nb = (int)(sizeof buf / sizeof buf[0]);
    double total = 0;
    for (int i = 0; i < nb; i++) total += buf[i].bytes;
    double avail = (double)node_bytes;
    if (avail <= 0) {
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        avail = pages > 0 && page > 0 ? (double)pages * (double)page : 0;
        struct rlimit rl;
        if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            (avail <= 0 || (double)rl.rlim_cur < avail))
            avail = (double)rl.rlim_cur;
    }
    /* every rank on the node holds its own copy of all of it */
    const int ranks = ranks_on_node > 1 ? ranks_on_node : 1;
    if (avail <= 0 || total * ranks <= avail) return 0;
    avail /= ranks;
    /* the two biggest buffers, and the layer with the largest output */
    int a = 0, b = -1;
    for (int i = 1; i < nb; i++)
        if (buf[i].bytes > buf[a].bytes) a = i;
    for (int i = 0; i < nb; i++)
        if (i != a && (b < 0 || buf[i].bytes > buf[b].bytes)) b = i;
    int big = 0;
    for (int l = 1; l < m->n_layers; l++)
        if (shape_size(m->layers[l].out) > shape_size(m->layers[big].out)) big = l;
    /* everything but the parameters scales with the batch */
    double fixed = 8.0 * (double)m->n_params + 4.0 * (double)opt_floats;
    double per_sample = (total - fixed) / (m->max_batch > 0 ? m->max_batch : 1);
    long fits = per_sample > 0 ? (long)((avail * 0.8 - fixed) / per_sample) : 0;
    fits = fits * batch_size / (m->max_batch > 0 ? m->max_batch : 1);
    char hint[160];
    if (fits >= 1)
        snprintf(hint, sizeof hint, "lower train.batch_size (now %d; about %ld fits)", batch_size,
                 fits);
    else
        snprintf(hint, sizeof hint,
                 "the parameters alone do not fit: a smaller model or input "
                 "size");
    char share[64] = "";
    if (ranks > 1) snprintf(share, sizeof share, " (its share for each of %d ranks)", ranks);
    err_set(e,
            "%s: the model needs %.2f GB for batch_size %d, this node has %.2f GB%s: biggest "
            "buffers: %s %.2f GB, %s %.2f GB (the largest layer output is %s's, %zu floats "
            "per sample); %s",
            job, gb(total), batch_size, gb(avail), share, buf[a].name, gb(buf[a].bytes),
            buf[b].name, gb(buf[b].bytes), m->n_layers ? m->layers[big].name : "input",
            m->n_layers ? shape_size(m->layers[big].out) : 0, hint);
    return -1;
}

/* ---------------------------------------------------------------- outputs */

/* path (the value of `key`) can be written: not a directory, in a writable folder. */
static int check_output(const char *job, const char *key, const char *path, Err *e) {
    if (!path || !*path) return 0;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        err_set(e, "%s: %s = %s is a directory: it must name a file to write", job, key, path);
        return -1;
    }
    char *copy = xstrdup(path);
    const char *dir = dirname(copy);
    int rc = 0;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        err_set(e, "%s: %s = %s: folder %s does not exist (create it first)", job, key, path, dir);
        rc = -1;
    } else if (access(dir, W_OK | X_OK) != 0) {
        err_set(e, "%s: %s = %s: folder %s is not writable: %s", job, key, path, dir,
                strerror(errno));
        rc = -1;
    }
    free(copy);
    return rc;
}

int preflight_check_outputs(const Job *j, Err *e) {
    const char *job = j->ini.path;
    const struct {
        const char *key, *path;
    } out[] = {
        {"train.save (--save)", j->train.save}, {"train.step_log", j->train.step_log},
        {"train.csv_log", j->train.csv_log},    {"train.chart", j->train.chart},
        {"checkpoint.path", j->ckpt.path},      {"checkpoint.save_best", j->ckpt.save_best},
    };
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++)
        if (check_output(job, out[i].key, out[i].path, e)) return -1;
    return 0;
}

/* ---------------------------------------------------------------- data */

int preflight_check_class_names(const Job *j, int outputs, Err *e) {
    const char *path = j->data.class_names;
    if (!path) return 0;
    Err oe = {0};
    FILE *f = file_open_regular(path, "class names file", NULL, &oe);
    if (!f) {
        err_set(e, "%s: [data] class_names: %s", j->ini.path, oe.msg);
        return -1;
    }
    int k = outputs == 1 ? 2 : outputs, n = 0;
    char *line = NULL;
    size_t cap = 0;
    while (n < k && getline(&line, &cap, f) >= 0) n++;
    free(line);
    fclose(f);
    if (n < k) {
        err_set(e,
                "%s: [data] class_names = %s has %d line%s, the model has %d classes (one "
                "name per line, in output order)",
                j->ini.path, path, n, n == 1 ? "" : "s", k);
        return -1;
    }
    return 0;
}

int preflight_check_classes(const Job *j, const Dataset *train, Err *e) {
    if (j->data.format != DATA_IMAGES || train->n == 0) return 0;
    const char *dir = j->data.train_dir;
    if (train->n_classes < 2) {
        err_set(e,
                "%s: only one class folder (%s): a classifier needs at least two, one "
                "folder of images per class",
                dir, train->class_names && train->n_classes ? train->class_names[0] : "?");
        return -1;
    }
    if (j->train.loss == LOSS_BINARY_CROSSENTROPY && train->n_classes != 2) {
        err_set(e, "%s: %d class folders, binary_crossentropy needs exactly two", dir,
                train->n_classes);
        return -1;
    }
    return 0;
}
