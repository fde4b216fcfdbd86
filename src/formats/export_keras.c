/* export_keras.c: a model's parameters as Keras weights files, Keras 2 `save_weights` or Keras 3
 * `.weights.h5` (layouts in export.h and keras3_h5.h), and the export dispatch. The HDF5 file
 * is built in memory (the core driver, no backing store), then written with file_write_atomic,
 * so a failed export leaves nothing half written. */
#include "export.h"

#include <stdlib.h>
#include <string.h>

#include "keras3_h5.h"

int export_format_parse(const char *s, ExportFormat *f, Err *e) {
    static const char *const names[] = {"keras2", "keras3", "onnx"};
    for (int i = 0; i < 3; i++)
        if (s && !strcmp(s, names[i])) {
            *f = (ExportFormat)i;
            return 0;
        }
    err_set(e,
            "--format %s: expected keras2 (Keras 2 save_weights .h5), keras3 (Keras 3 "
            ".weights.h5) or onnx",
            s ? s : "(missing)");
    return -1;
}

int export_model(const Model *m, const Job *job, ExportFormat f, const char *path, Err *e) {
    if (f == EXPORT_ONNX) return export_onnx(m, job, path, e);
    return export_keras_h5(m, path, f == EXPORT_KERAS3, e);
}

#if CONVNET_HDF5

#define KERAS2_VERSION "2.15.0" /* the tf.keras version whose files we write */

/* A fixed-length, NUL-padded ASCII string type of len bytes, as h5py stores bytes. */
static hid_t str_type(size_t len) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, len ? len : 1);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    return t;
}

/* Attribute name = list of n strings (h5py's np.array of bytes); an empty list is an empty
 * float64 array, as Keras writes it (np.asarray([])). */
static int put_str_list(hid_t obj, const char *name, char **v, int n) {
    hsize_t dim = (hsize_t)n;
    hid_t space = H5Screate_simple(1, &dim, NULL), type, a;
    int ok;
    if (n == 0) {
        a = H5Acreate2(obj, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT);
        ok = a >= 0;
        if (a >= 0) H5Aclose(a);
        H5Sclose(space);
        return ok ? 0 : -1;
    }
    size_t len = 1;
    for (int i = 0; i < n; i++)
        if (strlen(v[i]) > len) len = strlen(v[i]);
    char *buf = xcalloc((size_t)n, len);
    for (int i = 0; i < n; i++) memcpy(buf + (size_t)i * len, v[i], strlen(v[i]));
    type = str_type(len);
    a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    ok = a >= 0 && H5Awrite(a, type, buf) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Tclose(type);
    H5Sclose(space);
    free(buf);
    return ok ? 0 : -1;
}

/* A scalar variable-length ASCII string attribute: what h5py makes of attrs[name] = b"...". */
static int put_str(hid_t obj, const char *name, const char *s) {
    hid_t space = H5Screate(H5S_SCALAR), type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, type, &s) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Tclose(type);
    H5Sclose(space);
    return ok ? 0 : -1;
}

/* Weight `which` of L as a float32 dataset at g/dname (intermediate groups created). */
static int put_weight(hid_t g, const char *dname, const Layer *L, int which, const float *p) {
    unsigned long long d[4];
    int rank = keras_weight_dims(L, which, d);
    hsize_t dims[4];
    for (int i = 0; i < rank; i++) dims[i] = (hsize_t)d[i];
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(g, dname, H5T_IEEE_F32LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    int ok = ds >= 0 && H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, p) >= 0;
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(space);
    H5Pclose(lcpl);
    return ok ? 0 : -1;
}

/* Layers that exist in Keras, with their group names: Keras 2 the layer names, Keras 3 the
 * keys. */
static int keras_layers(const Model *m, int keras3, char (*names)[64], int *index) {
    char(*keys)[64] = xcalloc((size_t)m->n_layers + 1, sizeof *keys);
    keras3_layer_keys(m, keys);
    int n = 0;
    for (int l = 0; l < m->n_layers; l++) {
        if (!keys[l][0]) continue; /* no Keras layer ([preprocess]) */
        snprintf(names[n], 64, "%s", keras3 ? keys[l] : m->layers[l].name);
        index[n++] = l;
    }
    free(keys);
    return n;
}

static int write_keras2(hid_t f, const Model *m) {
    char(*names)[64] = xcalloc((size_t)m->n_layers + 1, sizeof *names);
    int *index = xmalloc(((size_t)m->n_layers + 1) * sizeof *index);
    int n = keras_layers(m, 0, names, index), rc = 0;
    char **list = xmalloc(((size_t)n + 1) * sizeof *list);
    for (int i = 0; i < n; i++) list[i] = names[i];
    rc |= put_str_list(f, "layer_names", list, n);
    rc |= put_str(f, "backend", "tensorflow");
    rc |= put_str(f, "keras_version", KERAS2_VERSION);
    for (int i = 0; i < n && !rc; i++) {
        const Layer *L = &m->layers[index[i]];
        hid_t g = H5Gcreate2(f, names[i], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) {
            rc = -1;
            break;
        }
        char wn[LAYER_MAX_PARAMS][128];
        char *wv[LAYER_MAX_PARAMS];
        for (int k = 0; k < L->n_param; k++) {
            snprintf(wn[k], sizeof wn[k], "%s/%s:0", L->name, L->param[k].name);
            wv[k] = wn[k];
        }
        rc |= put_str_list(g, "weight_names", wv, L->n_param);
        for (int k = 0; k < L->n_param; k++)
            rc |= put_weight(g, wn[k], L, k, m->params + L->param[k].off);
        H5Gclose(g);
    }
    free(list);
    free(index);
    free(names);
    return rc;
}

static int write_keras3(hid_t f, const Model *m) {
    char(*names)[64] = xcalloc((size_t)m->n_layers + 1, sizeof *names);
    int *index = xmalloc(((size_t)m->n_layers + 1) * sizeof *index);
    int n = keras_layers(m, 1, names, index), rc = 0;
    hid_t v = H5Gcreate2(f, "vars", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT); /* the model's own */
    hid_t layers = H5Gcreate2(f, "layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    rc = v < 0 || layers < 0 ? -1 : 0;
    for (int i = 0; i < n && !rc; i++) {
        const Layer *L = &m->layers[index[i]];
        hid_t g = H5Gcreate2(layers, names[i], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hid_t vars = g >= 0 ? H5Gcreate2(g, "vars", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
        if (vars < 0) rc = -1;
        for (int k = 0; k < L->n_param && !rc; k++) {
            char dname[12]; /* an int in decimal, sign and all */
            snprintf(dname, sizeof dname, "%d", k);
            rc |= put_weight(vars, dname, L, k, m->params + L->param[k].off);
        }
        if (vars >= 0) H5Gclose(vars);
        if (g >= 0) H5Gclose(g);
    }
    if (layers >= 0) H5Gclose(layers);
    if (v >= 0) H5Gclose(v);
    free(index);
    free(names);
    return rc;
}

/* Every layer has a Keras 3 key, or is one Keras has no layer for and has no weights; else
 * -1 with e naming the layer and its kind. */
static int keras_layers_check(const Model *m, Err *e) {
    for (int l = 0; l < m->n_layers; l++) {
        const Layer *L = &m->layers[l];
        const LayerOps *ops = layer_ops[L->kind];
        if (!ops->keras3_key && !(ops->flags & LAYER_F_NO_KERAS)) {
            err_set(e,
                    "export: layer '%s' (kind %s): the kind has no Keras 3 key (LayerOps."
                    "keras3_key) and is not marked as having no Keras layer",
                    L->name, ops->keras_name ? ops->keras_name : "?");
            return -1;
        }
        if (L->n_param && !ops->keras3_key) {
            err_set(e, "export: layer '%s' (%s): its weights have no Keras layout here", L->name,
                    ops->keras_name);
            return -1;
        }
    }
    return 0;
}

int export_keras_h5(const Model *m, const char *path, int keras3, Err *e) {
    if (keras_layers_check(m, e)) return -1;
    H5E_auto2_t old_func = NULL;
    void *old_data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &old_func, &old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    /* in memory: the core driver without a backing store, then one atomic write */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_core(fapl, 1 << 20, 0);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    int rc = f < 0 ? -1 : keras3 ? write_keras3(f, m) : write_keras2(f, m);
    void *image = NULL;
    ssize_t size = -1;
    if (f >= 0 && rc == 0 && H5Fflush(f, H5F_SCOPE_GLOBAL) >= 0) {
        size = H5Fget_file_image(f, NULL, 0);
        if (size > 0) {
            image = xmalloc((size_t)size);
            if (H5Fget_file_image(f, image, (size_t)size) != size) size = -1;
        }
    }
    if (f >= 0) H5Fclose(f);
    H5Pclose(fapl);
    H5Eset_auto2(H5E_DEFAULT, old_func, old_data);
    if (rc || size <= 0) {
        err_set(e, "export: cannot build the HDF5 image of %s (HDF5 error)", path);
        free(image);
        return -1;
    }
    IoChunk c = {image, (size_t)size};
    rc = file_write_atomic(path, &c, 1, e);
    free(image);
    return rc;
}

#else

int export_keras_h5(const Model *m, const char *path, int keras3, Err *e) {
    err_set(e,
            "%s: cannot write Keras .h5 weights: built without HDF5: apt-get install "
            "libhdf5-dev and rebuild",
            path);
    return -1;
}

#endif
