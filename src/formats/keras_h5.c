/* keras_h5.c: Keras HDF5 weights files into a planned model's parameters (see keras_h5.h).
 * Every HDF5 handle is closed on every path, and HDF5's own error printing is off while the
 * file is read (our messages say what went wrong). */
#include "keras_h5.h"
#include "keras3_h5.h"

#include "isolate.h"
#include "runenv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if CONVNET_HDF5

#include <hdf5.h>
#include <sys/mman.h>

/* A list of strings read from an attribute (malloc'd). */
typedef struct {
    char **v;
    int n;
} StrList;

static void strlist_free(StrList *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static void strlist_add(StrList *l, const char *s, size_t len) {
    char **grown = xmalloc((size_t)(l->n + 1) * sizeof *grown);
    if (l->n) memcpy(grown, l->v, (size_t)l->n * sizeof *grown);
    free(l->v);
    l->v = grown;
    char *copy = xmalloc(len + 1);
    memcpy(copy, s, len);
    copy[len] = 0;
    l->v[l->n++] = copy;
}

static void close_id(hid_t id, herr_t (*closer)(hid_t)) {
    if (id >= 0) closer(id);
}

/* Append the strings of attribute `name` of obj (`where` names obj in messages). An empty
 * attribute may have any type (Keras writes an empty float array for a layer without weights).
 * 0, or -1 with e set. */
static int read_string_attr(hid_t obj, const char *name, StrList *out, const char *file,
                            const char *where, Err *e) {
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t space = a >= 0 ? H5Aget_space(a) : -1;
    hid_t type = a >= 0 ? H5Aget_type(a) : -1;
    hid_t memtype = -1;
    int rc = -1;
    hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (a < 0 || space < 0 || type < 0 || n < 0) {
        err_set(e, "%s: cannot read attribute '%s' of %s", file, name, where);
    } else if (n == 0) {
        rc = 0;
    } else if (H5Tget_class(type) != H5T_STRING) {
        err_set(e, "%s: attribute '%s' of %s is not a list of strings", file, name, where);
    } else if (H5Tis_variable_str(type) > 0) {
        char **buf = xcalloc((size_t)n, sizeof *buf);
        memtype = H5Tcopy(H5T_C_S1);
        if (memtype < 0 || H5Tset_size(memtype, H5T_VARIABLE) < 0 || H5Aread(a, memtype, buf) < 0) {
            err_set(e, "%s: cannot read attribute '%s' of %s", file, name, where);
            for (hssize_t i = 0; i < n; i++) H5free_memory(buf[i]); /* read before the error */
        } else {
            for (hssize_t i = 0; i < n; i++) {
                strlist_add(out, buf[i] ? buf[i] : "", buf[i] ? strlen(buf[i]) : 0);
                H5free_memory(buf[i]);
            }
            rc = 0;
        }
        free(buf);
    } else {
        size_t len = H5Tget_size(type);
        char *buf = len ? xmalloc((size_t)n * len) : NULL;
        if (!len || H5Aread(a, type, buf) < 0) {
            err_set(e, "%s: cannot read attribute '%s' of %s", file, name, where);
        } else {
            int spaces = H5Tget_strpad(type) == H5T_STR_SPACEPAD;
            for (hssize_t i = 0; i < n; i++) {
                const char *s = buf + (size_t)i * len;
                size_t k = strnlen(s, len);
                while (spaces && k > 0 && s[k - 1] == ' ') k--;
                strlist_add(out, s, k);
            }
            rc = 0;
        }
        free(buf);
    }
    close_id(memtype, H5Tclose);
    close_id(type, H5Tclose);
    close_id(space, H5Sclose);
    close_id(a, H5Aclose);
    return rc;
}

/* The string list attribute `name` of obj, whole or in Keras's chunks name0, name1, ...
 * 0 read, 1 absent, -1 error (e set). */
static int read_names(hid_t obj, const char *name, StrList *out, const char *file,
                      const char *where, Err *e) {
    memset(out, 0, sizeof *out);
    htri_t whole = H5Aexists(obj, name);
    if (whole < 0) {
        err_set(e, "%s: cannot read the attributes of %s", file, where);
        return -1;
    }
    if (whole) return read_string_attr(obj, name, out, file, where, e);
    int chunks = 0;
    for (;; chunks++) {
        char chunk[96];
        snprintf(chunk, sizeof chunk, "%s%d", name, chunks);
        if (H5Aexists(obj, chunk) <= 0) break;
        if (read_string_attr(obj, chunk, out, file, where, e)) {
            strlist_free(out);
            return -1;
        }
    }
    return chunks ? 0 : 1;
}

static void format_dims(char *buf, size_t n, const hsize_t *dims, int rank) {
    size_t at = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < rank && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%llu", i ? ", " : "",
                               (unsigned long long)dims[i]);
    if (at < n) snprintf(buf + at, n - at, rank == 1 ? ",)" : ")");
}

/* The shape L's parameter tensor `which` must have in the file (Keras's); its rank. */
static int expected_dims(const Layer *L, int which, hsize_t *dims) {
    unsigned long long d[4];
    int rank = keras_weight_dims(L, which, d);
    for (int i = 0; i < rank; i++) dims[i] = (hsize_t)d[i];
    return rank;
}

/* Dataset group/wname into dst, after checking its type and shape against layer L. */
static int load_dataset(hid_t group, const char *wname, const Layer *L, int which, float *dst,
                        const char *file, Err *e) {
    hid_t d = H5Dopen2(group, wname, H5P_DEFAULT);
    hid_t type = d >= 0 ? H5Dget_type(d) : -1;
    hid_t space = d >= 0 ? H5Dget_space(d) : -1;
    const char *what = L->param[which].name;
    int rc = -1;
    hsize_t dims[H5S_MAX_RANK], want[4];
    int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    int want_rank = expected_dims(L, which, want);
    char got_s[160], want_s[160];
    if (d < 0) {
        err_set(e, "%s: layer '%s': dataset '%s/%s' (its %s, listed in weight_names) is missing",
                file, L->name, L->name, wname, what);
    } else if (type < 0 || space < 0 || rank < 0 || rank > H5S_MAX_RANK) {
        err_set(e, "%s: layer '%s': cannot read dataset '%s/%s'", file, L->name, L->name, wname);
    } else if (H5Tget_class(type) != H5T_FLOAT ||
               (H5Tget_size(type) != 2 && H5Tget_size(type) != 4 && H5Tget_size(type) != 8)) {
        /* an odd element size would make libhdf5 size its conversion buffer from it */
        err_set(e,
                "%s: layer '%s': dataset '%s/%s' does not hold floating-point values of 2, 4 "
                "or 8 bytes (its %s must be float32)",
                file, L->name, L->name, wname, what);
    } else if (H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        err_set(e, "%s: layer '%s': cannot read the shape of dataset '%s/%s'", file, L->name,
                L->name, wname);
    } else if (rank != want_rank || memcmp(dims, want, (size_t)rank * sizeof *dims) != 0) {
        format_dims(got_s, sizeof got_s, dims, rank);
        format_dims(want_s, sizeof want_s, want, want_rank);
        err_set(e, "%s: layer '%s': dataset '%s/%s' (%s) has shape %s, the job's layer needs %s",
                file, L->name, L->name, wname, what, got_s, want_s);
    } else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
        err_set(e, "%s: layer '%s': cannot read dataset '%s/%s' (truncated or damaged file?)", file,
                L->name, L->name, wname);
    } else if (floats_first_nonfinite(dst, L->param[which].n) < L->param[which].n) {
        size_t n = L->param[which].n, bad = floats_first_nonfinite(dst, n);
        err_set(e,
                "%s: layer '%s': dataset '%s/%s' (%s) holds a non-finite value (%g, value %zu "
                "of %zu): refusing to train from it",
                file, L->name, L->name, wname, what, (double)dst[bad], bad, n);
    } else {
        rc = 0;
    }
    close_id(space, H5Sclose);
    close_id(type, H5Tclose);
    close_id(d, H5Dclose);
    return rc;
}

/* The model layer named name, NULL when none; -1 with e set when two layers share it. */
static Layer *find_layer(Model *m, const char *name, const char *file, int *dup, Err *e) {
    Layer *found = NULL;
    *dup = 0;
    for (int l = 0; l < m->n_layers; l++) {
        if (strcmp(m->layers[l].name, name) != 0) continue;
        if (found) {
            err_set(e, "%s: layer '%s': the job has two layers of that name", file, name);
            *dup = 1;
            return NULL;
        }
        found = &m->layers[l];
    }
    return found;
}

/* One group of the file: its weights into the model layer of the same name. 1 when it has
 * weights (loaded), 0 when it has none, -1 on error. */
static int load_layer(hid_t root, const char *lname, Model *m, const char *file, Err *e) {
    hid_t g = H5Gopen2(root, lname, H5P_DEFAULT);
    if (g < 0) {
        err_set(e, "%s: layer_names lists '%s' but the file has no group of that name", file,
                lname);
        return -1;
    }
    char where[160];
    snprintf(where, sizeof where, "layer group '%s'", lname);
    StrList w;
    int rc = read_names(g, "weight_names", &w, file, where, e);
    if (rc == 1) {
        err_set(e,
                "%s: layer group '%s' has no 'weight_names' attribute (not a Keras weights file?)",
                file, lname);
        rc = -1;
    }
    int dup = 0;
    Layer *L = rc == 0 && w.n > 0 ? find_layer(m, lname, file, &dup, e) : NULL;
    if (rc != 0 || w.n == 0 || dup) {
        rc = rc != 0 || dup ? -1 : 0;
    } else if (!L) {
        err_set(e, "%s: layer '%s' has weights in the file but the job has no layer of that name",
                file, lname);
        rc = -1;
    } else if (L->n_param == 0) {
        err_set(e,
                "%s: layer '%s' has weights in the file but the job's layer of that name (%s) "
                "has no parameters",
                file, lname, layer_ops[L->kind]->keras_name);
        rc = -1;
    } else if (w.n != L->n_param) {
        char list[160];
        keras_weight_list(L, list, sizeof list);
        err_set(e,
                "%s: layer '%s' has %d weights in the file (%s%s%s%s), the job's %s has %d (%s%s)",
                file, lname, w.n, w.v[0], w.n > 1 ? ", " : "", w.n > 1 ? w.v[1] : "",
                w.n > 2 ? ", ..." : "", layer_ops[L->kind]->keras_name, L->n_param, list,
                keras_use_bias_hint(L));
        rc = -1;
    } else {
        /* by position, in Keras's order (kernel, bias; gamma, beta, moving_mean, moving_variance) */
        for (int i = 0; i < L->n_param && rc == 0; i++)
            rc = load_dataset(g, w.v[i], L, i, m->params + L->param[i].off, file, e);
        if (rc == 0) rc = 1;
    }
    strlist_free(&w);
    H5Gclose(g);
    return rc;
}

/* Why a file image does not open (its first bytes head[0..got)): "not HDF5" (no signature at
 * offset 0), a zip (a Keras 3 .keras), or "damaged". */
static void open_error(const char *path, const unsigned char *head, size_t got, Err *e) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (got == 0)
        err_set(e, "%s: the file is empty, not an HDF5 file (Keras .h5 weights)", path);
    else if (got >= 4 && !memcmp(head, "PK\3\4", 4)) /* Keras 3 model.save: a zip */
        err_set(e,
                "%s: a zip archive (a Keras 3 .keras model?), not an HDF5 file: its weights "
                "are the model.weights.h5 inside (unzip it and use that)",
                path);
    else if (got < sizeof sig || memcmp(head, sig, sizeof sig) != 0)
        err_set(e, "%s: not an HDF5 file (Keras .h5 weights start with the HDF5 signature)", path);
    else
        err_set(e,
                "%s: HDF5 signature present but the file cannot be opened: truncated or "
                "damaged (download it again)",
                path);
}

static int load_file(hid_t f, const char *path, Model *m, Err *e) {
    hid_t root = H5Gopen2(f, "/", H5P_DEFAULT);
    if (root < 0) {
        err_set(e, "%s: cannot open the HDF5 root group", path);
        return -1;
    }
    if (keras3_h5_detect(root)) { /* Keras 3 .weights.h5: /layers/<key>/vars/0, ... */
        H5Gclose(root);
        return keras3_h5_load_file(f, path, m, e);
    }
    /* a whole-model file (model.save) keeps the weights under /model_weights */
    if (H5Aexists(root, "layer_names") <= 0 && H5Aexists(root, "layer_names0") <= 0 &&
        H5Lexists(root, "model_weights", H5P_DEFAULT) > 0) {
        hid_t mw = H5Gopen2(root, "model_weights", H5P_DEFAULT);
        H5Gclose(root);
        root = mw;
        if (root < 0) {
            err_set(e, "%s: cannot open group /model_weights", path);
            return -1;
        }
    }
    StrList names;
    int rc = read_names(root, "layer_names", &names, path, "the root group", e);
    if (rc == 1)
        err_set(e,
                "%s: unsupported HDF5 layout: no 'layer_names' attribute at the root (Keras 2 "
                "save_weights, keras-applications, model_weights of a whole-model .h5) and no "
                "/layers group (Keras 3 .weights.h5); those are the formats this build reads",
                path);
    int loaded = 0;
    for (int i = 0; rc == 0 && i < names.n; i++) {
        int r = load_layer(root, names.v[i], m, path, e);
        if (r < 0) rc = -1;
        loaded += r > 0;
    }
    if (rc == 0 && loaded == 0) {
        err_set(e, "%s: none of its %d layers has weights", path, names.n);
        rc = -1;
    }
    strlist_free(&names);
    H5Gclose(root);
    return rc ? -1 : 0;
}

/* HDF5's file-image callbacks for a read-only image used in place: every buffer HDF5 asks
 * for is the caller's (no copy: a mapped 500 MB file stays one mapping), never grown or freed
 * by HDF5. (H5LTopen_file_image does the same but leaks its callback data, 72 bytes a file.) */
typedef struct {
    const void *buf;
    size_t n;
} Image;

static void *image_malloc(size_t size, H5FD_file_image_op_t op, void *udata) {
    const Image *im = udata;
    return size == im->n ? (void *)im->buf : NULL;
}

static void *image_memcpy(void *dest, const void *src, size_t size, H5FD_file_image_op_t op,
                          void *udata) {
    return dest == src ? dest : NULL; /* only ever the image onto itself */
}

static void *image_realloc(void *ptr, size_t size, H5FD_file_image_op_t op, void *udata) {
    return NULL; /* read-only */
}

static herr_t image_free(void *ptr, H5FD_file_image_op_t op, void *udata) { return 0; }
static void *image_udata_copy(void *udata) { return udata; }
static herr_t image_udata_free(void *udata) { return 0; }

int keras_h5_load_weights_image(const void *buf, size_t n, const char *name, Model *m, Err *e) {
    if (n < 8) {
        open_error(name, buf, n, e);
        return -1;
    }
    /* HDF5's core driver reads the image, with HDF5's error printing off meanwhile: it prints
     * its error stack to stderr by default */
    H5E_auto2_t old_func = NULL;
    void *old_data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &old_func, &old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    Image im = {buf, n};
    H5FD_file_image_callbacks_t cb = {image_malloc, image_memcpy,     image_realloc,
                                      image_free,   image_udata_copy, image_udata_free,
                                      &im};
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    int rc = -1;
    if (fapl < 0 || H5Pset_fapl_core(fapl, 1 << 16, 0) < 0 ||
        H5Pset_file_image_callbacks(fapl, &cb) < 0 || H5Pset_file_image(fapl, (void *)buf, n) < 0) {
        err_set(e, "%s: cannot set up an in-memory HDF5 file", name);
    } else {
        /* the core driver refuses an image whose name is an existing file: a name that
         * never is (in the sandbox every open fails anyway) */
        hid_t f = H5Fopen("/dev/null/convnet-dist-h5-image", H5F_ACC_RDONLY, fapl);
        if (f < 0) {
            open_error(name, buf, n, e);
        } else {
            rc = load_file(f, name, m, e);
            H5Fclose(f);
        }
    }
    if (fapl >= 0) H5Pclose(fapl);
    H5Eset_auto2(H5E_DEFAULT, old_func, old_data);
    return rc;
}

typedef struct {
    const void *image;
    size_t n;
    const char *path;
    Model *m;
} Isolated;

/* In the sandboxed child: the model's parameters are the shared copy isolate_run() made. */
static int load_isolated(void *ctx, void *buf, Err *e) {
    const Isolated *c = ctx;
    Model child = *c->m;
    child.params = buf;
    return keras_h5_load_weights_image(c->image, c->n, c->path, &child, e);
}

int keras_h5_load_isolated(const void *image, size_t n, const char *path, Model *m,
                           IsolateOpts *opts, Err *e) {
    /* library start-up (and its reading of the environment) happens here, outside the
     * sandbox; filter plugins (dlopen of code) are never loaded for a file from elsewhere */
    H5open();
    H5PLset_loading_state(0);
    Isolated c = {image, n, path, m};
    return isolate_run(load_isolated, &c, m->params, m->n_params * sizeof(float), opts, e);
}

int keras_h5_load_weights(const char *path, Model *m, Err *e) {
    /* a named pipe or device would block or never end: refused first */
    long long size = 0;
    FILE *f = file_open_regular(path, "Keras weights file", &size, e);
    if (!f) return -1;
    /* the sandboxed reader may open nothing: the file is mapped before it starts */
    void *image = size > 0 ? mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fileno(f), 0) : NULL;
    int map_err = errno;
    fclose(f);
    if (image == MAP_FAILED) {
        err_set(e, "cannot map Keras weights file %s (%lld bytes): %s", path, size,
                strerror(map_err));
        return -1;
    }
    /* libhdf5 is not memory-safe on a damaged file: it reads it in a sandboxed child process
     * (isolate.h), and only parameters that loaded completely come back.
     * CONVNET_H5_INPROCESS=1: in this process (debugging); CONVNET_H5_UNSANDBOXED=1: in a child
     * without the seccomp filter where the kernel has none */
    int rc;
    if (runenv()->h5_inprocess) {
        rc = keras_h5_load_weights_image(image, (size_t)size, path, m, e);
    } else {
        IsolateOpts opts = {
            .what = path, .reader = "the HDF5 parser", .unsandboxed_ok = runenv()->h5_unsandboxed};
        rc = keras_h5_load_isolated(image, (size_t)size, path, m, &opts, e);
    }
    if (image) munmap(image, (size_t)size);
    return rc;
}

#else

int keras_h5_load_weights_image(const void *buf, size_t n, const char *name, Model *m, Err *e) {
    return keras_h5_load_weights(name, m, e);
}

int keras_h5_load_isolated(const void *image, size_t n, const char *path, Model *m,
                           IsolateOpts *opts, Err *e) {
    return keras_h5_load_weights(path, m, e);
}

int keras_h5_load_weights(const char *path, Model *m, Err *e) {
    err_set(e,
            "%s: cannot read Keras .h5 weights: built without HDF5: apt-get install "
            "libhdf5-dev and rebuild",
            path);
    return -1;
}

#endif
