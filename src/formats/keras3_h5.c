/* keras3_h5.c: Keras 3 `.weights.h5` files (layout in keras3_h5.h) into a planned model's
 * parameters, and the Keras 3 layer keys the exporter writes. Every HDF5 handle is closed on
 * every path; keras_h5.c has already turned HDF5's own error printing off. */
#include "keras3_h5.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the kind's LayerOps entry: the kinds own their Keras 3 keys */
const char *keras3_class_key(LayerKind kind) {
    return (int)kind >= 0 && kind < LAYER_KIND_COUNT ? layer_ops[kind]->keras3_key : NULL;
}

void keras3_layer_keys(const Model *m, char (*keys)[64]) {
    int seen[LAYER_KIND_COUNT] = {0};
    for (int l = 0; l < m->n_layers; l++) {
        LayerKind k = m->layers[l].kind;
        const char *base = keras3_class_key(k);
        if (!base)
            keys[l][0] = 0;
        else if (seen[k]++ == 0)
            snprintf(keys[l], 64, "%s", base);
        else
            snprintf(keys[l], 64, "%s_%d", base, seen[k] - 1);
    }
}

int keras_weight_dims(const Layer *L, int which, unsigned long long *dims) {
    if (which < 0 || which >= L->n_param) return 0;
    for (int i = 0; i < L->param[which].rank; i++)
        dims[i] = (unsigned long long)L->param[which].dims[i];
    return L->param[which].rank;
}

/* "kernel, bias" or "gamma, beta, moving_mean, moving_variance": L's weights in Keras's order */
const char *keras_use_bias_hint(const Layer *L) {
    return layer_param_find(L, "bias") < 0 && layer_param_find(L, "gamma") < 0
               ? "; use_bias = false"
               : "";
}

void keras_weight_list(const Layer *L, char *buf, size_t n) {
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < L->n_param && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%s", i ? ", " : "", L->param[i].name);
}

#if CONVNET_HDF5

static void shape_str(char *buf, size_t n, const unsigned long long *d, int rank) {
    size_t at = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < rank && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%llu", i ? ", " : "", d[i]);
    if (at < n) snprintf(buf + at, n - at, rank == 1 ? ",)" : ")");
}

/* vars/<which> of the layer's group into dst after checking type and shape. */
static int read_var(hid_t vars, const char *gpath, const Layer *L, int which, float *dst,
                    const char *file, Err *e) {
    char dname[12]; /* an int in decimal, sign and all */
    snprintf(dname, sizeof dname, "%d", which);
    hid_t d = H5Lexists(vars, dname, H5P_DEFAULT) > 0 ? H5Dopen2(vars, dname, H5P_DEFAULT) : -1;
    hid_t type = d >= 0 ? H5Dget_type(d) : -1, space = d >= 0 ? H5Dget_space(d) : -1;
    int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1, rc = -1;
    unsigned long long want[4];
    int want_rank = keras_weight_dims(L, which, want);
    hsize_t dims[H5S_MAX_RANK];
    char got_s[160], want_s[160];
    const char *what = L->param[which].name;
    if (d < 0) {
        err_set(e, "%s: layer '%s': dataset %s/vars/%s (its %s) is missing or not a dataset", file,
                L->name, gpath, dname, what);
    } else if (type < 0 || rank < 0 || rank > H5S_MAX_RANK ||
               H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        err_set(e, "%s: layer '%s': cannot read dataset %s/vars/%s", file, L->name, gpath, dname);
    } else if (H5Tget_class(type) != H5T_FLOAT) {
        err_set(e, "%s: layer '%s': dataset %s/vars/%s (%s) does not hold floating-point values",
                file, L->name, gpath, dname, what);
    } else {
        unsigned long long got[H5S_MAX_RANK];
        int same = rank == want_rank;
        for (int i = 0; i < rank; i++) {
            got[i] = dims[i];
            same = same && got[i] == want[i];
        }
        if (!same) {
            shape_str(got_s, sizeof got_s, got, rank);
            shape_str(want_s, sizeof want_s, want, want_rank);
            err_set(
                e, "%s: layer '%s': dataset %s/vars/%s (%s) has shape %s, the job's layer needs %s",
                file, L->name, gpath, dname, what, got_s, want_s);
        } else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
            err_set(e,
                    "%s: layer '%s': cannot read dataset %s/vars/%s (truncated or damaged file?)",
                    file, L->name, gpath, dname);
        } else {
            rc = 0;
        }
    }
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (d >= 0) H5Dclose(d);
    return rc;
}

typedef struct {
    Model *m;
    char (*keys)[64];
    const char *file;
    Err *e;
    int loaded, failed;
} Walk;

/* Number of entries of group/vars (0 when there is no vars group), -1 on a damaged file. */
static long vars_count(hid_t g, hid_t *vars_out) {
    *vars_out = -1;
    if (H5Lexists(g, "vars", H5P_DEFAULT) <= 0) return 0;
    hid_t v = H5Gopen2(g, "vars", H5P_DEFAULT);
    H5G_info_t info;
    if (v < 0 || H5Gget_info(v, &info) < 0) {
        if (v >= 0) H5Gclose(v);
        return -1;
    }
    *vars_out = v;
    return (long)info.nlinks;
}

/* One child of /layers: its variables into the job layer with the same Keras 3 key. */
static herr_t load_child(hid_t layers, const char *key, const H5L_info_t *info, void *arg) {
    Walk *w = arg;
    char gpath[160];
    snprintf(gpath, sizeof gpath, "layers/%s", key);
    hid_t g = H5Gopen2(layers, key, H5P_DEFAULT);
    if (g < 0) return 0; /* not a group: nothing Keras reads */
    hid_t vars;
    long n = vars_count(g, &vars);
    int nested = H5Lexists(g, "layers", H5P_DEFAULT) > 0;
    Layer *L = NULL;
    for (int l = 0; l < w->m->n_layers && !L; l++)
        if (!strcmp(w->keys[l], key)) L = &w->m->layers[l];
    int rc = 0;
    if (n < 0) {
        err_set(w->e, "%s: cannot read group %s/vars (damaged file?)", w->file, gpath);
        rc = -1;
    } else if (nested) {
        err_set(w->e,
                "%s: %s is a nested model (%s/layers/...): unsupported; this build reads "
                "Keras 3 .weights.h5 files of flat Sequential models (layers/<class>/vars) "
                "and Keras 2 save_weights files",
                w->file, gpath, gpath);
        rc = -1;
    } else if (n == 0) {
        rc = 0; /* a layer without weights (pooling, flatten, ...) */
    } else if (!L) {
        err_set(w->e,
                "%s: %s has %ld weights but the job has no layer of that Keras 3 key (Keras 3 "
                "keys are class names numbered in layer order: conv2d, conv2d_1, dense, ...)",
                w->file, gpath, n);
        rc = -1;
    } else if (L->n_param == 0) {
        err_set(w->e, "%s: %s has %ld weights but the job's layer '%s' (%s) has no parameters",
                w->file, gpath, n, L->name, layer_ops[L->kind]->keras_name);
        rc = -1;
    } else if (n != L->n_param) {
        char list[160];
        keras_weight_list(L, list, sizeof list);
        err_set(w->e, "%s: %s has %ld weights, the job's layer '%s' (%s) has %d (%s%s)", w->file,
                gpath, n, L->name, layer_ops[L->kind]->keras_name, L->n_param, list,
                keras_use_bias_hint(L));
        rc = -1;
    } else {
        for (int i = 0; i < L->n_param && rc == 0; i++)
            rc = read_var(vars, gpath, L, i, w->m->params + L->param[i].off, w->file, w->e);
        w->loaded += rc == 0;
    }
    if (vars >= 0) H5Gclose(vars);
    H5Gclose(g);
    if (rc) w->failed = 1;
    return rc ? 1 : 0; /* stop at the first error */
}

int keras3_h5_detect(hid_t root) {
    return H5Aexists(root, "layer_names") <= 0 && H5Aexists(root, "layer_names0") <= 0 &&
           H5Lexists(root, "layers", H5P_DEFAULT) > 0;
}

int keras3_h5_load_file(hid_t f, const char *path, Model *m, Err *e) {
    for (int l = 0; l < m->n_layers; l++) { /* a kind without its key could match no group */
        const Layer *L = &m->layers[l];
        if (L->n_param && !keras3_class_key(L->kind)) {
            err_set(e,
                    "%s: the job's layer '%s' (kind %s) has weights but its kind has no Keras 3 "
                    "key (LayerOps.keras3_key): they cannot be read from a Keras 3 file",
                    path, L->name, layer_ops[L->kind]->keras_name);
            return -1;
        }
    }
    hid_t layers = H5Gopen2(f, "layers", H5P_DEFAULT);
    if (layers < 0) {
        err_set(e, "%s: cannot open group /layers", path);
        return -1;
    }
    char(*keys)[64] = xcalloc((size_t)m->n_layers + 1, sizeof *keys);
    keras3_layer_keys(m, keys);
    Walk w = {m, keys, path, e, 0, 0};
    herr_t it = H5Literate(layers, H5_INDEX_NAME, H5_ITER_INC, NULL, load_child, &w);
    H5Gclose(layers);
    free(keys);
    if (w.failed) return -1;
    if (it < 0) {
        err_set(e, "%s: cannot list group /layers (damaged file?)", path);
        return -1;
    }
    if (w.loaded == 0) {
        err_set(e, "%s: none of its layers (Keras 3 layout, /layers/<key>/vars) has weights", path);
        return -1;
    }
    return 0;
}

#endif
