/* test_export.c: Keras weights in and out, checked against files h5py writes in Keras's own
 * layouts (tests/keras_h5_tool.py): a Keras 3 .weights.h5 and a Keras 2 save_weights file with
 * the same values give bitwise the same forward pass; `convnet-dist export --format keras2 |
 * keras3` writes files identical (groups, attributes, dtypes, values) to h5py's; an exported
 * file imported into a fresh job predicts bitwise the same (tests/test_onnx.c has the ONNX
 * checks). Without python3-h5py the tests skip (testutil_skip: counted; a failure under CI,
 * where `make deps` installs it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "keras_h5.h"
#include "model.h"
#include "testutil.h"
#include "weights.h"

/* Run a helper script; 77 = its dependency is missing: a counted skip (a failure under CI,
 * where make deps installs it). 1 when it ran. */
static int run_tool(const char *cmd, int *status, char **out) {
    *status = testutil_run(cmd, out);
    if (*status == 77) {
        char *nl = strchr(*out, '\n');
        if (nl) *nl = 0;
        testutil_skip("export (Keras files by h5py)", *out, 1);
        return 0;
    }
    return 1;
}

#define SPEC \
    "conv2d:conv2d:3x3x1x4:b,max_pooling2d:max_pooling2d,flatten:flatten,dense:dense:100x3:b"

static const char *write_job(const char *name, const char *extra) {
    const char *dir = testutil_tmpdir();
    char text[4096];
    snprintf(text, sizeof text,
             "[data]\nformat = images\nroot = %s\ntrain_dir = .\ntest_dir = .\n"
             "image_size = 12,12\ncolor_mode = grayscale\nscale = 1/255\n"
             "[conv2d]\nfilters = 4\nkernel_size = 3\nactivation = relu\n"
             "[maxpooling2d]\n[flatten]\n[dense]\nunits = 3\nactivation = softmax\n%s"
             "[train]\nloss = sparse_categorical_crossentropy\n",
             dir, extra);
    return testutil_write_file(dir, name, text, strlen(text));
}

typedef struct {
    Job job;
    Model m;
} Net;

static void net_init(Net *n, const char *job) {
    Err e = {0};
    int rc = job_load(&n->job, job, NULL, 0, &e);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_FATAL(rc == 0);
    rc = model_plan(&n->m, n->job.layers, n->job.n_layers, (Shape){12, 12, 1, 0}, 4, &e);
    CU_ASSERT_FATAL(rc == 0);
    CU_ASSERT_FATAL(model_alloc(&n->m, NULL) == 0);
    model_init_params(&n->m, 7);
}

static void net_free(Net *n) {
    model_free(&n->m);
    job_free(&n->job);
}

/* Forward pass of 4 fixed inputs into out (4 x 3 logits). */
static void net_forward(Net *n, float *out) {
    testutil_fill(model_input(&n->m), 4 * 144, 5, 0, 1);
    int64_t ids[4] = {0, 1, 2, 3};
    PassCtx pc = {.training = 0, .seed = 1, .sample_ids = ids};
    memcpy(out, model_forward(&n->m, 4, &pc), 12 * sizeof *out);
}

static int load(Net *n, const char *path) {
    Err e = {0};
    int rc = keras_h5_load_weights(path, &n->m, &e);
    if (rc) printf("\n    %s\n", e.msg);
    return rc;
}

/* h5py's Keras 2 and Keras 3 files of SPEC's layers with the same values (seed) into
 * dir/<tag>2.h5 and dir/<tag>3.weights.h5; 0 when h5py is missing (a counted skip). */
static int write_fixtures(const char *tag, int seed, char *k2, char *k3, size_t n) {
    const char *dir = testutil_tmpdir();
    char cmd[4096], *out = NULL;
    snprintf(k2, n, "%s/%s2.h5", dir, tag);
    snprintf(k3, n, "%s/%s3.weights.h5", dir, tag);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/keras_h5_tool.py write %s %s %s %d", SPEC, k2,
             k3, seed);
    int st, ran = run_tool(cmd, &st, &out);
    if (ran && st) printf("\n    %s\n", out);
    if (ran) CU_ASSERT_EQUAL(st, 0);
    free(out);
    return ran && st == 0;
}

static void keras3_matches_keras2(void) {
#if CONVNET_HDF5
    char k2[1024], k3[1024];
    if (!write_fixtures("fixture", 11, k2, k3, sizeof k2)) return;
    Net a, b;
    net_init(&a, write_job("k.job", ""));
    net_init(&b, write_job("k.job", ""));
    CU_ASSERT_EQUAL(load(&a, k2), 0);
    CU_ASSERT_EQUAL(load(&b, k3), 0);
    CU_ASSERT(memcmp(a.m.params, b.m.params, a.m.n_params * sizeof(float)) == 0);
    float ya[12], yb[12], y0[12];
    net_forward(&a, ya);
    net_forward(&b, yb);
    CU_ASSERT(memcmp(ya, yb, sizeof ya) == 0);
    /* and the file's values did change the model */
    model_init_params(&b.m, 7);
    net_forward(&b, y0);
    CU_ASSERT(memcmp(ya, y0, sizeof ya) != 0);
    net_free(&a);
    net_free(&b);
#endif
}

/* Our export of a model loaded from h5py's files is h5py's file, object for object. */
static void export_is_keras_layout(void) {
#if CONVNET_HDF5
    const char *dir = testutil_tmpdir();
    char cmd[8192], k2[1024], k3[1024], w[1024], e2[1024], e3[1024], *out = NULL;
    if (!write_fixtures("fx", 12, k2, k3, sizeof k2)) return;
    snprintf(w, sizeof w, "%s/fx.weights", dir);
    snprintf(e2, sizeof e2, "%s/out2.h5", dir);
    snprintf(e3, sizeof e3, "%s/out3.weights.h5", dir);
    int st;
    Net a;
    const char *job = write_job("x.job", "");
    net_init(&a, job);
    CU_ASSERT_EQUAL_FATAL(load(&a, k3), 0);
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(weights_save(w, &a.m, &e), 0);
    const char *fmt[2] = {"keras2", "keras3"}, *dst[2] = {e2, e3}, *ref[2] = {k2, k3};
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd, "'%s' export '%s' --weights '%s' --format %s --out '%s'",
                 testutil_bin(), job, w, fmt[i], dst[i]);
        st = testutil_run(cmd, &out);
        if (st) printf("\n    %s\n", out);
        CU_ASSERT_EQUAL(st, 0);
        free(out);
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/keras_h5_tool.py compare '%s' '%s'",
                 dst[i], ref[i]);
        st = testutil_run(cmd, &out);
        if (st) printf("\n    %s\n", out);
        CU_ASSERT_EQUAL(st, 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, " 0 differences"));
        free(out);
    }
    /* no temp file left beside the outputs */
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -c '\\.tmp\\.'", dir);
    st = testutil_run(cmd, &out);
    CU_ASSERT(out && atoi(out) == 0);
    free(out);
    net_free(&a);
#endif
}

/* Exported, then imported into a fresh job: the same predictions, bitwise. */
static void export_import_predicts_the_same(void) {
#if CONVNET_HDF5
    const char *dir = testutil_tmpdir();
    char cmd[8192], w[1024], path[2][1024], *out = NULL;
    snprintf(w, sizeof w, "%s/rt.weights", dir);
    snprintf(path[0], sizeof path[0], "%s/rt2.h5", dir);
    snprintf(path[1], sizeof path[1], "%s/rt3.weights.h5", dir);
    Net a;
    const char *job = write_job("rt.job", "");
    net_init(&a, job);
    model_init_params(&a.m, 99);
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(weights_save(w, &a.m, &e), 0);
    net_free(&a);
    const char *fmt[2] = {"keras2", "keras3"};
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd, "'%s' export '%s' --weights '%s' --format %s --out '%s'",
                 testutil_bin(), job, w, fmt[i], path[i]);
        int st = testutil_run(cmd, &out);
        if (st) printf("\n    %s\n", out);
        CU_ASSERT_EQUAL(st, 0);
        free(out);
        /* the fresh job: the same layers, its weights from the exported file */
        char extra[1200], name[32];
        snprintf(extra, sizeof extra, "[keras_h5]\nfile = %s\n", path[i]);
        snprintf(name, sizeof name, "fresh%d.job", i);
        Net b;
        net_init(&b, write_job(name, extra));
        Net c;
        net_init(&c, job);
        CU_ASSERT_EQUAL(load(&b, path[i]), 0);
        CU_ASSERT_EQUAL(weights_load(w, &c.m, &e), 0);
        CU_ASSERT(memcmp(b.m.params, c.m.params, c.m.n_params * sizeof(float)) == 0);
        float yb[12], yc[12];
        net_forward(&b, yb);
        net_forward(&c, yc);
        CU_ASSERT(memcmp(yb, yc, sizeof yb) == 0);
        net_free(&b);
        net_free(&c);
    }
#endif
}

static void unsupported_layouts(void) {
#if CONVNET_HDF5
    const char *dir = testutil_tmpdir();
    char cmd[4096], p[1024], *out = NULL;
    snprintf(p, sizeof p, "%s/other.h5", dir);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import sys\ntry:\n import h5py\nexcept ImportError:\n "
             "print('python3-h5py is not installed'); sys.exit(77)\n"
             "f = h5py.File('%s', 'w'); f.create_dataset('x', data=[1.0])\"",
             p);
    int st;
    if (!run_tool(cmd, &st, &out)) {
        free(out);
        return;
    }
    free(out);
    Net a;
    net_init(&a, write_job("u.job", ""));
    Err e = {0};
    CU_ASSERT_EQUAL(keras_h5_load_weights(p, &a.m, &e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "unsupported HDF5 layout"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "Keras 3 .weights.h5"));
    /* a Keras 3 .keras model is a zip holding model.weights.h5 */
    static const char zip_bytes[] = "PK\3\4 rest of a zip";
    const char *zip = testutil_write_file(dir, "model.keras", zip_bytes, sizeof zip_bytes - 1);
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL(keras_h5_load_weights(zip, &a.m, &e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "model.weights.h5 inside"));
    /* a Keras 3 file of another architecture: the dataset path and both shapes */
    char k2[1024], k3[1024];
    snprintf(k2, sizeof k2, "%s/wrong2.h5", dir);
    snprintf(k3, sizeof k3, "%s/wrong3.weights.h5", dir);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 tests/keras_h5_tool.py write "
             "conv2d:conv2d:3x3x1x5:b,flatten:flatten,dense:dense:100x3:b %s %s 1",
             k2, k3);
    CU_ASSERT_EQUAL(testutil_run(cmd, NULL), 0);
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL(keras_h5_load_weights(k3, &a.m, &e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "layers/conv2d/vars/0"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "(3, 3, 1, 5)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "(3, 3, 1, 4)"));
    net_free(&a);
#endif
}

TEST_SUITE(export,
           {"Keras 3 .weights.h5 gives the Keras 2 file's forward pass", keras3_matches_keras2},
           {"export keras2/keras3: the layout h5py writes for Keras", export_is_keras_layout},
           {"export then import into a fresh job: bitwise the same",
            export_import_predicts_the_same},
           {"unsupported layouts and wrong shapes are named", unsupported_layouts})
