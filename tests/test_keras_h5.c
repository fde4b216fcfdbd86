/* test_keras_h5.c: the Keras .h5 weights importer (keras_h5.c) on files this test writes with
 * the HDF5 C API in the layout of Keras's save_weights and of
 * vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 (root attribute layer_names, one group per
 * layer with weight_names, kernel and bias datasets; layers without weights have an empty
 * float array, as Keras writes it); every parameter is compared, and wrong files must give
 * clear errors. Also: jobs/include/vgg16-base.ini plans to Keras's VGG16(include_top=False). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job.h"
#include "keras_h5.h"
#include "model.h"
#include "testutil.h"

#if CONVNET_HDF5
#include <hdf5.h>
#endif

/* ---- the model: 6x6x3 -> block1_conv1 (3x3x3x4) -> block1_pool -> block2_conv1 (3x3x4x5)
 *      -> flatten -> dense (2 units: a new head the file does not have) ---- */

enum { IH = 6, IW = 6, IC = 3, OC1 = 4, OC2 = 5, UNITS = 2 };

typedef struct {
    Layer layers[5];
    Model m;
} Small;

static Layer mk(LayerKind kind, const char *name, int units, int k) {
    Layer L;
    memset(&L, 0, sizeof L);
    L.kind = kind;
    snprintf(L.name, sizeof L.name, "%s", name);
    L.units = units;
    L.kh = L.kw = k;
    L.sh = L.sw = kind == LAYER_MAXPOOL2D ? k : 1;
    L.padding = PAD_SAME;
    L.act = kind == LAYER_CONV2D ? ACT_RELU : ACT_LINEAR;
    L.use_bias = 1;
    L.trainable = kind == LAYER_CONV2D || kind == LAYER_DENSE;
    return L;
}

/* The small model with glorot weights; conv2_name / oc2 change the second convolution. */
static void small_init(Small *s, const char *conv2_name, int oc2) {
    s->layers[0] = mk(LAYER_CONV2D, "block1_conv1", OC1, 3);
    s->layers[1] = mk(LAYER_MAXPOOL2D, "block1_pool", 0, 2);
    s->layers[2] = mk(LAYER_CONV2D, conv2_name, oc2, 3);
    s->layers[3] = mk(LAYER_FLATTEN, "flatten", 0, 0);
    s->layers[4] = mk(LAYER_DENSE, "dense", UNITS, 0);
    Err e = {0};
    CU_ASSERT_FATAL(model_plan(&s->m, s->layers, 5, (Shape){IH, IW, IC, 0}, 1, &e) == 0);
    CU_ASSERT_FATAL(model_alloc(&s->m, NULL) == 0);
    model_init_params(&s->m, 3);
}

#if CONVNET_HDF5

/* The file's values, Keras's layouts: kernels (KH, KW, C, OC) and (IN, UNITS), biases. */
enum { FLAT = (IH / 2) * (IW / 2) * OC2 };
typedef struct {
    float k1[3 * 3 * IC * OC1], b1[OC1], k2[3 * 3 * OC1 * 6], b2[6], kd[FLAT * UNITS], bd[UNITS];
} Values;

/* What the writer changes to make a wrong (or a legacy) file. */
typedef struct {
    int legacy_names;    /* 2016 names in the group ("block1_conv1_W_1:0") rather than
                          * "block1_conv1/kernel:0" (a subgroup, as Keras 2 writes) */
    int vlen_strings;    /* variable-length strings rather than fixed-length (h5py's 'S') */
    int oc2;             /* block2_conv1's filters in the file (0: OC2) */
    int no_weight_names; /* block2_conv1 without its weight_names attribute */
    int no_layer_names;  /* no layer_names at the root */
    int int_bias;        /* block1_conv1's bias as int32 */
    int no_bias_dataset; /* block2_conv1's bias listed in weight_names but not written */
    int whole_model;     /* under /model_weights, as model.save writes a whole model */
    int chunked;         /* layer_names split into layer_names0 and layer_names1 */
    int dense;           /* weights for the head ("dense") too */
} Variant;

static void fill_values(Values *v) {
    testutil_fill(v->k1, sizeof v->k1 / sizeof *v->k1, 21, -1, 1);
    testutil_fill(v->b1, OC1, 22, -1, 1);
    testutil_fill(v->k2, sizeof v->k2 / sizeof *v->k2, 23, -1, 1);
    testutil_fill(v->b2, 6, 24, -1, 1);
    testutil_fill(v->kd, FLAT * UNITS, 25, -1, 1);
    testutil_fill(v->bd, UNITS, 26, -1, 1);
}

/* A string list attribute; an empty list is an empty float64 array, as Keras writes it. */
static void put_names(hid_t obj, const char *attr, const char *const *names, int n, int vlen) {
    hsize_t dim = (hsize_t)n;
    hid_t space = H5Screate_simple(1, &dim, NULL), type, a;
    if (n == 0) {
        a = H5Acreate2(obj, attr, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT);
        CU_ASSERT(a >= 0);
        H5Aclose(a);
        H5Sclose(space);
        return;
    }
    type = H5Tcopy(H5T_C_S1);
    if (vlen) {
        H5Tset_size(type, H5T_VARIABLE);
        a = H5Acreate2(obj, attr, type, space, H5P_DEFAULT, H5P_DEFAULT);
        CU_ASSERT(H5Awrite(a, type, names) >= 0);
    } else {
        size_t len = 1;
        for (int i = 0; i < n; i++)
            if (strlen(names[i]) > len) len = strlen(names[i]);
        H5Tset_size(type, len);
        H5Tset_strpad(type, H5T_STR_NULLPAD);
        char *buf = calloc((size_t)n, len);
        for (int i = 0; i < n; i++) memcpy(buf + (size_t)i * len, names[i], strlen(names[i]));
        a = H5Acreate2(obj, attr, type, space, H5P_DEFAULT, H5P_DEFAULT);
        CU_ASSERT(H5Awrite(a, type, buf) >= 0);
        free(buf);
    }
    H5Aclose(a);
    H5Tclose(type);
    H5Sclose(space);
}

/* A float32 (or int32) dataset at group/path, creating intermediate groups. */
static void put_dataset(hid_t g, const char *path, int rank, const hsize_t *dims, const float *data,
                        int as_int) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(g, path, as_int ? H5T_STD_I32LE : H5T_IEEE_F32LE, space, lcpl, H5P_DEFAULT,
                         H5P_DEFAULT);
    CU_ASSERT_FATAL(d >= 0);
    hsize_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    if (as_int) {
        int *ints = calloc(n, sizeof *ints);
        CU_ASSERT(H5Dwrite(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, ints) >= 0);
        free(ints);
    } else
        CU_ASSERT(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d);
    H5Sclose(space);
    H5Pclose(lcpl);
}

/* One conv layer's group: weight_names, then kernel and bias. */
static void put_conv(hid_t f, const char *name, int c, int oc, const float *k, const float *b,
                     const Variant *v, int second) {
    hid_t g = H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    char wk[96], wb[96];
    if (v->legacy_names) {
        snprintf(wk, sizeof wk, "%s_W_1:0", name);
        snprintf(wb, sizeof wb, "%s_b_1:0", name);
    } else {
        snprintf(wk, sizeof wk, "%s/kernel:0", name);
        snprintf(wb, sizeof wb, "%s/bias:0", name);
    }
    const char *wn[2] = {wk, wb};
    if (!(second && v->no_weight_names)) put_names(g, "weight_names", wn, 2, v->vlen_strings);
    const hsize_t kd[4] = {3, 3, (hsize_t)c, (hsize_t)oc}, bd[1] = {(hsize_t)oc};
    put_dataset(g, wk, 4, kd, k, 0);
    if (!(second && v->no_bias_dataset)) put_dataset(g, wb, 1, bd, b, !second && v->int_bias);
    H5Gclose(g);
}

static void put_empty(hid_t f, const char *name, const Variant *v) {
    hid_t g = H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    put_names(g, "weight_names", NULL, 0, v->vlen_strings);
    H5Gclose(g);
}

/* Write dir/name in Keras's layout; returns the path (static, rotated). */
static const char *write_h5(const char *name, const Values *vals, const Variant *v) {
    static char paths[4][600];
    static int slot;
    char *p = paths[slot++ % 4];
    snprintf(p, sizeof paths[0], "%s/%s", testutil_tmpdir(), name);
    hid_t file = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(file >= 0);
    hid_t f = v->whole_model
                  ? H5Gcreate2(file, "model_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)
                  : file;
    const char *layers[] = {"input_1",     "block1_conv1", "block1_pool", "block2_conv1",
                            "block2_pool", "flatten",      "dense"};
    int n = v->dense ? 7 : 5;
    if (v->chunked) {
        put_names(f, "layer_names0", layers, 3, v->vlen_strings);
        put_names(f, "layer_names1", layers + 3, n - 3, v->vlen_strings);
    } else if (!v->no_layer_names)
        put_names(f, "layer_names", layers, n, v->vlen_strings);
    const char *backend = "tensorflow";
    put_names(f, "backend", &backend, 1, v->vlen_strings);
    put_empty(f, "input_1", v);
    put_conv(f, "block1_conv1", IC, OC1, vals->k1, vals->b1, v, 0);
    put_empty(f, "block1_pool", v);
    put_conv(f, "block2_conv1", OC1, v->oc2 ? v->oc2 : OC2, vals->k2, vals->b2, v, 1);
    put_empty(f, "block2_pool", v);
    if (v->dense) {
        put_empty(f, "flatten", v);
        hid_t g = H5Gcreate2(f, "dense", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        const char *wn[2] = {"dense/kernel:0", "dense/bias:0"};
        put_names(g, "weight_names", wn, 2, v->vlen_strings);
        put_dataset(g, wn[0], 2, (const hsize_t[]){FLAT, UNITS}, vals->kd, 0);
        put_dataset(g, wn[1], 1, (const hsize_t[]){UNITS}, vals->bd, 0);
        H5Gclose(g);
    }
    if (v->whole_model) H5Gclose(f);
    H5Fclose(file);
    return p;
}

/* Load a good file and compare every parameter: the convolutions hold the file's values, the
 * head keeps its own. */
static void check_load(const Variant *v) {
    Values vals;
    fill_values(&vals);
    const char *path = write_h5("good.h5", &vals, v);
    Small s;
    small_init(&s, "block2_conv1", OC2);
    const Layer *d = &s.m.layers[4];
    size_t nd = layer_n_weights(d);
    float *head = malloc(nd * sizeof *head);
    memcpy(head, s.m.params + d->param_off, nd * sizeof *head);
    Err e = {0};
    int rc = keras_h5_load_weights(path, &s.m, &e);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_EQUAL(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0); /* every handle closed */
    const Layer *c1 = &s.m.layers[0], *c2 = &s.m.layers[2];
    const float *p = s.m.params;
    CU_ASSERT_EQUAL_FATAL(c1->param[0].n, sizeof vals.k1 / sizeof *vals.k1);
    CU_ASSERT(memcmp(p + c1->param_off, vals.k1, sizeof vals.k1) == 0);
    CU_ASSERT(memcmp(p + c1->param[1].off, vals.b1, sizeof vals.b1) == 0);
    CU_ASSERT_EQUAL_FATAL(c2->param[0].n, (size_t)3 * 3 * OC1 * OC2);
    CU_ASSERT(memcmp(p + c2->param_off, vals.k2, c2->param[0].n * sizeof(float)) == 0);
    CU_ASSERT(memcmp(p + c2->param[1].off, vals.b2, OC2 * sizeof(float)) == 0);
    if (v->dense) {
        CU_ASSERT_EQUAL_FATAL(d->param[0].n, (size_t)FLAT * UNITS);
        CU_ASSERT(memcmp(p + d->param_off, vals.kd, sizeof vals.kd) == 0);
        CU_ASSERT(memcmp(p + d->param[1].off, vals.bd, sizeof vals.bd) == 0);
    } else
        CU_ASSERT(memcmp(p + d->param_off, head, nd * sizeof *head) == 0);
    free(head);
    model_free(&s.m);
}

static void test_load_keras2(void) { check_load(&(Variant){0}); }

static void test_load_legacy_vlen(void) {
    check_load(&(Variant){.legacy_names = 1, .vlen_strings = 1});
}

static void test_load_whole_model_chunked(void) {
    check_load(&(Variant){.whole_model = 1, .chunked = 1, .dense = 1});
}

/* Load a file made with variant v into a model (conv2_name, oc2); the error must have every
 * fragment, and the file's name. */
static void expect_error(const char *path, const char *conv2_name, int oc2,
                         const char *const *frags) {
    Small s;
    small_init(&s, conv2_name, oc2);
    Err e = {0};
    CU_ASSERT_EQUAL(keras_h5_load_weights(path, &s.m, &e), -1);
    CU_ASSERT(e.set);
    HAS(e.msg, path);
    for (int i = 0; frags[i]; i++) HAS(e.msg, frags[i]);
    CU_ASSERT_EQUAL(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0); /* every handle closed */
    model_free(&s.m);
}

static void test_missing_layer(void) {
    Values vals;
    fill_values(&vals);
    const char *path = write_h5("renamed.h5", &vals, &(Variant){0});
    expect_error(path, "conv2d_1", OC2,
                 (const char *[]){"layer 'block2_conv1' has weights in the file but the job has "
                                  "no layer of that name",
                                  NULL});
}

static void test_wrong_shape(void) {
    Values vals;
    fill_values(&vals);
    const char *path = write_h5("shape.h5", &vals, &(Variant){.oc2 = 6});
    expect_error(path, "block2_conv1", OC2,
                 (const char *[]){"block2_conv1", "kernel:0", "kernel", "(3, 3, 4, 6)",
                                  "(3, 3, 4, 5)", NULL});
}

static void test_not_hdf5(void) {
    const char *dir = testutil_tmpdir();
    const char *text = "[data]\nthis is a job file, not HDF5 weights\n";
    expect_error(testutil_write_file(dir, "weights.txt", text, strlen(text)), "block2_conv1", OC2,
                 (const char *[]){"not an HDF5 file", NULL});
    expect_error(testutil_write_file(dir, "empty.h5", "", 0), "block2_conv1", OC2,
                 (const char *[]){"empty", "not an HDF5 file", NULL});
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no-such.h5", dir);
    expect_error(missing, "block2_conv1", OC2, (const char *[]){"cannot open", NULL});
}

static void test_truncated(void) {
    Values vals;
    fill_values(&vals);
    const char *good = write_h5("whole.h5", &vals, &(Variant){0});
    long n = testutil_file_size(good);
    CU_ASSERT_FATAL(n > 0);
    char *buf = malloc((size_t)n);
    FILE *f = fopen(good, "rb");
    CU_ASSERT_FATAL(f && fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    const char *cut = testutil_write_file(testutil_tmpdir(), "cut.h5", buf, (size_t)n / 2);
    expect_error(cut, "block2_conv1", OC2, (const char *[]){"truncated or damaged", NULL});
    free(buf);
}

static void test_missing_attributes(void) {
    Values vals;
    fill_values(&vals);
    const char *path = write_h5("nown.h5", &vals, &(Variant){.no_weight_names = 1});
    expect_error(path, "block2_conv1", OC2,
                 (const char *[]){"'block2_conv1'", "no 'weight_names' attribute", NULL});
    path = write_h5("noln.h5", &vals, &(Variant){.no_layer_names = 1});
    expect_error(path, "block2_conv1", OC2, (const char *[]){"no 'layer_names' attribute", NULL});
}

static void test_bad_datasets(void) {
    Values vals;
    fill_values(&vals);
    const char *path = write_h5("intbias.h5", &vals, &(Variant){.int_bias = 1});
    expect_error(path, "block2_conv1", OC2,
                 (const char *[]){"block1_conv1", "bias:0", "floating-point", NULL});
    path = write_h5("nobias.h5", &vals, &(Variant){.no_bias_dataset = 1});
    expect_error(path, "block2_conv1", OC2,
                 (const char *[]){"block2_conv1/bias:0", "is missing", NULL});
}

/* A NaN in a kernel is refused, naming the file, the layer and the dataset. */
static void test_nonfinite(void) {
    Values vals;
    fill_values(&vals);
    vals.k2[5] = NAN;
    const char *path = write_h5("nan.h5", &vals, &(Variant){0});
    expect_error(path, "block2_conv1", OC2,
                 (const char *[]){"layer 'block2_conv1'", "kernel:0", "non-finite", NULL});
}

/* The same file from a file image in memory (the fuzz target's route) loads the same values. */
static void test_file_image(void) {
    Values vals;
    fill_values(&vals);
    const char *path = write_h5("image.h5", &vals, &(Variant){0});
    long n = testutil_file_size(path);
    CU_ASSERT_FATAL(n > 0);
    unsigned char *buf = malloc((size_t)n);
    FILE *f = fopen(path, "rb");
    CU_ASSERT_FATAL(f && fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    Small s;
    small_init(&s, "block2_conv1", OC2);
    Err e = {0};
    int rc = keras_h5_load_weights_image(buf, (size_t)n, "image.h5", &s.m, &e);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(memcmp(s.m.params + s.m.layers[0].param_off, vals.k1, sizeof vals.k1) == 0);
    Err e2 = {0}; /* cut to its first 64 bytes: an error, no crash */
    CU_ASSERT_EQUAL(keras_h5_load_weights_image(buf, 64, "image.h5", &s.m, &e2), -1);
    HAS(e2.msg, "image.h5");
    CU_ASSERT_EQUAL(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
    free(buf);
    model_free(&s.m);
}

/* The job-file route: a [keras_h5] section loads the file into the layers named like its
 * groups when the trainer starts (summary plans and loads without data); a wrong file ends the
 * command with exit 2 and a message naming the file, before anything runs. */
static void test_job_section(void) {
    Values vals;
    fill_values(&vals);
    const char *good = write_h5("job-good.h5", &vals, &(Variant){0});
    const char *bad = write_h5("job-bad.h5", &vals, &(Variant){.oc2 = 6});
    const char *dir = testutil_tmpdir();
    const char *paths[2] = {good, bad};
    for (int i = 0; i < 2; i++) {
        char text[2048], name[32], cmd[4096];
        snprintf(text, sizeof text,
                 "[data]\nformat = images\nroot = %s\ntrain_dir = .\ntest_dir = .\n"
                 "image_size = %d,%d\ncolor_mode = rgb\n"
                 "[conv2d]\nname = block1_conv1\nfilters = %d\nkernel_size = 3\npadding = same\n"
                 "activation = relu\ntrainable = false\n"
                 "[maxpooling2d]\nname = block1_pool\npool_size = 2\n"
                 "[conv2d]\nname = block2_conv1\nfilters = %d\nkernel_size = 3\npadding = same\n"
                 "activation = relu\ntrainable = false\n"
                 "[keras_h5]\nfile = %s\n"
                 "[flatten]\n[dense]\nunits = %d\nactivation = softmax\n"
                 "[train]\nloss = sparse_categorical_crossentropy\n",
                 dir, IH, IW, OC1, OC2, paths[i], UNITS);
        snprintf(name, sizeof name, "h5-%d.job", i);
        const char *job = testutil_write_file(dir, name, text, strlen(text));
        snprintf(cmd, sizeof cmd, "'%s' summary '%s'", testutil_bin(), job);
        char *out = NULL;
        int rc = testutil_run(cmd, &out);
        if (i == 0) {
            CU_ASSERT_EQUAL(rc, 0);
            HAS(out, "Non-trainable params: 297"); /* 3x3x3x4+4 + 3x3x4x5+5 */
        } else {
            CU_ASSERT_EQUAL(rc, 2);
            HAS(out, bad);
            HAS(out, "(3, 3, 4, 6)");
        }
        free(out);
    }
}

#else

static void test_built_without_hdf5(void) {
    Small s;
    small_init(&s, "block2_conv1", OC2);
    Err e = {0};
    CU_ASSERT_EQUAL(keras_h5_load_weights("vgg16.h5", &s.m, &e), -1);
    CU_ASSERT(strstr(e.msg, "vgg16.h5") && strstr(e.msg, "built without HDF5") &&
              strstr(e.msg, "apt-get install libhdf5-dev"));
    model_free(&s.m);
}

#endif

/* ---- jobs/include/vgg16-base.ini is Keras's VGG16(include_top=False) ---- */

static void test_vgg16_base(void) {
    char cwd[PATH_MAX], text[PATH_MAX + 512];
    CU_ASSERT_FATAL(getcwd(cwd, sizeof cwd) != NULL);
    const char *dir = testutil_tmpdir();
    snprintf(text, sizeof text,
             "[data]\nformat = images\nroot = %s\ntrain_dir = .\ntest_dir = .\n"
             "image_size = 180,180\ncolor_mode = rgb\n"
             "[preprocess]\nmode = caffe\n"
             "[include]\nfile = %s/jobs/include/vgg16-base.ini\n"
             "[train]\nloss = binary_crossentropy\n",
             dir, cwd);
    const char *path = testutil_write_file(dir, "vgg16.job", text, strlen(text));
    Job j;
    Err e = {0};
    int rc = job_load(&j, path, NULL, 0, &e);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_FATAL(rc == 0);
    CU_ASSERT_EQUAL_FATAL(j.n_layers, 1 + 13 + 5);
    static const char *const convs[13] = {
        "block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1",
        "block3_conv2", "block3_conv3", "block4_conv1", "block4_conv2", "block4_conv3",
        "block5_conv1", "block5_conv2", "block5_conv3"};
    int k = 0, pools = 0;
    for (int l = 1; l < j.n_layers; l++) {
        const Layer *L = &j.layers[l];
        if (L->kind == LAYER_CONV2D) {
            CU_ASSERT_FATAL(k < 13);
            CU_ASSERT_STRING_EQUAL(L->name, convs[k]);
            CU_ASSERT_EQUAL(L->trainable, 0);
            k++;
        } else {
            char want[32];
            snprintf(want, sizeof want, "block%d_pool", ++pools);
            CU_ASSERT_EQUAL(L->kind, LAYER_MAXPOOL2D);
            CU_ASSERT_STRING_EQUAL(L->name, want);
        }
    }
    CU_ASSERT_EQUAL(k, 13);
    CU_ASSERT_EQUAL(pools, 5);
    CU_ASSERT_EQUAL(j.layers[0].kind, LAYER_PREPROCESS);
    Model m;
    CU_ASSERT_FATAL(model_plan(&m, j.layers, j.n_layers, (Shape){180, 180, 3, 0}, 1, &e) == 0);
    CU_ASSERT_EQUAL(m.n_params, 14714688); /* Keras: VGG16(include_top=False).summary() */
    CU_ASSERT_EQUAL(model_trainable_count(&m), 0);
    Shape out = model_output_shape(&m);
    CU_ASSERT(out.h == 5 && out.w == 5 && out.c == 512 && !out.flat); /* the book's (5, 5, 512) */
    model_free(&m);
    job_free(&j);
}

TEST_SUITE(keras_h5,
#if CONVNET_HDF5
           {"Keras 2 layout: every parameter loaded, the head left alone", test_load_keras2},
           {"2016 weight names, variable-length strings", test_load_legacy_vlen},
           {"a whole-model file, layer_names in chunks, a Dense layer",
            test_load_whole_model_chunked},
           {"a layer the job lacks", test_missing_layer},
           {"a kernel of the wrong shape", test_wrong_shape},
           {"not HDF5: text, empty, absent", test_not_hdf5}, {"truncated file", test_truncated},
           {"[keras_h5] in a job: loaded at start, a wrong file is exit 2", test_job_section},
           {"missing weight_names / layer_names", test_missing_attributes},
           {"integer bias, missing dataset", test_bad_datasets},
           {"a non-finite kernel value", test_nonfinite},
           {"from a file image in memory", test_file_image},
#else
           {"built without HDF5: a clear error", test_built_without_hdf5},
#endif
           {"jobs/include/vgg16-base.ini is Keras's VGG16 conv base", test_vgg16_base})
