/* test_preprocess.c: the [preprocess] layer (Keras's imagenet_utils.preprocess_input) in its
 * three modes against a reference written here the way Keras computes it, a central-difference
 * check of its input gradient, the 3-channel check, and its job-file keys. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ini.h"
#include "layer.h"
#include "testutil.h"

enum { N = 2, H = 3, W = 4, C = 3, SIZE = N * H * W * C };

/* The layer as [preprocess] mode = MODE configures it; 0 or -1 with e set. */
static int configure(Layer *L, const char *mode, Err *e) {
    char text[128];
    snprintf(text, sizeof text, "[preprocess]\nmode = %s\n", mode);
    IniFile ini;
    int rc = ini_parse_string(&ini, "pre.job", text, e);
    memset(L, 0, sizeof *L);
    L->kind = LAYER_PREPROCESS;
    snprintf(L->name, sizeof L->name, "preprocess");
    if (rc == 0) rc = layer_ops[LAYER_PREPROCESS]->configure(L, &ini, &ini.sec[0], e);
    if (rc == 0) rc = sec_check_unused(&ini, &ini.sec[0], e);
    ini_free(&ini);
    return rc;
}

/* Keras, keras/applications/imagenet_utils.py _preprocess_numpy_input, channels_last. */
static void keras_reference(const char *mode, const float *x, double *y) {
    for (int p = 0; p < N * H * W; p++) {
        const float *px = x + 3 * p;
        double *py = y + 3 * p;
        if (!strcmp(mode, "tf")) {
            for (int c = 0; c < 3; c++) py[c] = px[c] / 127.5 - 1.0;
        } else if (!strcmp(mode, "torch")) {
            const double mean[3] = {0.485, 0.456, 0.406}, std[3] = {0.229, 0.224, 0.225};
            for (int c = 0; c < 3; c++) py[c] = (px[c] / 255.0 - mean[c]) / std[c];
        } else { /* caffe: 'RGB'->'BGR', then zero-center by the ImageNet mean, no scaling */
            const double mean[3] = {103.939, 116.779, 123.68};
            for (int c = 0; c < 3; c++) py[c] = px[2 - c] - mean[c];
        }
    }
}

typedef struct {
    Layer L;
    float x[SIZE], y[SIZE], r[SIZE];
} Fixture;

static void forward(Fixture *f) {
    LayerCtx c = {0};
    layer_ops[LAYER_PREPROCESS]->forward(&f->L, &c, f->y, f->x, N);
}

/* loss = sum(y * r), so dloss/dy = r */
static double loss(void *ctx) {
    Fixture *f = ctx;
    forward(f);
    double s = 0;
    for (int i = 0; i < SIZE; i++) s += (double)f->y[i] * f->r[i];
    return s;
}

static void check_mode(const char *mode) {
    Fixture f;
    Err e = {0};
    CU_ASSERT_FATAL(configure(&f.L, mode, &e) == 0);
    f.L.in = (Shape){H, W, C, 0};
    CU_ASSERT_FATAL(layer_ops[LAYER_PREPROCESS]->plan(&f.L, &e) == 0);
    CU_ASSERT(f.L.out.h == H && f.L.out.w == W && f.L.out.c == C && !f.L.out.flat);
    CU_ASSERT(f.L.n_param == 0);
    CU_ASSERT_EQUAL(f.L.trainable, 0);
    /* distinct channel values, so a missing or wrong channel swap shows */
    testutil_fill(f.x, SIZE, 11, 0, 255);
    for (int i = 0; i < SIZE; i += 3) f.x[i] = 250.0f - (float)i; /* R far from B */
    forward(&f);
    double ref[SIZE], worst = 0;
    keras_reference(mode, f.x, ref);
    for (int i = 0; i < SIZE; i++)
        worst = fmax(worst, fabs(ref[i] - f.y[i]) / fmax(1.0, fabs(ref[i])));
    CU_ASSERT(worst < 2e-5); /* float32 arithmetic and float32 constants, as Keras's */
    if (worst >= 2e-5) printf("\n    %s: forward differs from Keras by %g\n", mode, worst);
    /* input gradient: backward against central differences of loss */
    testutil_fill(f.r, SIZE, 12, -1, 1);
    float dout[SIZE], din[SIZE];
    memcpy(dout, f.r, sizeof dout);
    LayerCtx c = {0};
    layer_ops[LAYER_PREPROCESS]->backward(&f.L, &c, din, dout, f.x, f.y, N);
    double err = testutil_grad_error(loss, &f, f.x, din, SIZE, 0, 0.5f);
    CU_ASSERT(err < 1e-4);
    if (err >= 1e-4) printf("\n    %s: input gradient error %g\n", mode, err);
}

static void test_caffe(void) { check_mode("caffe"); }
static void test_tf(void) { check_mode("tf"); }
static void test_torch(void) { check_mode("torch"); }

static void test_needs_rgb(void) {
    Layer L;
    Err e = {0};
    CU_ASSERT_FATAL(configure(&L, "caffe", &e) == 0);
    L.line = 7;
    L.in = (Shape){8, 8, 1, 0};
    CU_ASSERT(layer_ops[LAYER_PREPROCESS]->plan(&L, &e) != 0);
    CU_ASSERT(strstr(e.msg, "preprocess") && strstr(e.msg, "line 7") && strstr(e.msg, "8x8x1") &&
              strstr(e.msg, "color_mode = rgb"));
    Err e2 = {0};
    L.in = (Shape){1, 1, 3, 1};
    CU_ASSERT(layer_ops[LAYER_PREPROCESS]->plan(&L, &e2) != 0);
    CU_ASSERT(strstr(e2.msg, "flat") != NULL);
    /* a layer from an included file is named by that file and line */
    Err e3 = {0};
    L.file = "jobs/include/base.ini";
    CU_ASSERT(layer_ops[LAYER_PREPROCESS]->plan(&L, &e3) != 0);
    CU_ASSERT(strstr(e3.msg, "jobs/include/base.ini:7") != NULL);
}

static void test_keys(void) {
    Layer L;
    Err e = {0};
    CU_ASSERT(configure(&L, "imagenet", &e) != 0);
    CU_ASSERT(strstr(e.msg, "pre.job:2") && strstr(e.msg, "caffe, tf, torch"));
    /* mode defaults to caffe, Keras's default */
    IniFile ini;
    Err e2 = {0};
    CU_ASSERT_FATAL(ini_parse_string(&ini, "pre.job", "[preprocess]\n", &e2) == 0);
    memset(&L, 0, sizeof L);
    CU_ASSERT(layer_ops[LAYER_PREPROCESS]->configure(&L, &ini, &ini.sec[0], &e2) == 0);
    CU_ASSERT_EQUAL(L.u.pre.mode, PREPROCESS_CAFFE);
    ini_free(&ini);
    CU_ASSERT_EQUAL(layer_kind_from_section("preprocess"), LAYER_PREPROCESS);
}

TEST_SUITE(preprocess, {"caffe: RGB to BGR, ImageNet mean subtracted", test_caffe},
           {"tf: x / 127.5 - 1", test_tf}, {"torch: x / 255, ImageNet mean and std", test_torch},
           {"needs a 3-channel image input", test_needs_rgb}, {"mode key", test_keys})
