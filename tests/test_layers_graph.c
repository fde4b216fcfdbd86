/* test_layers_graph.c: the chapter-9 layers against naive references written here, with
 * central-difference checks of the input and of every weight tensor:
 * - BatchNormalization in training mode (the batch's statistics; moving statistics against
 *   Keras's update formula), in inference mode and frozen (the moving statistics, no update),
 *   center/scale off, on a flat input;
 * - DepthwiseConv2D (valid, same, stride 2, 5x5, bias, relu);
 * - SeparableConv2D (depthwise then pointwise, with im2col and oneDNN direct pointwise
 *   convolutions, and a batch shorter than the plan's);
 * - Activation;
 * and per-layer parameter lists: names, shapes and roles, and a weights file and checkpoint
 * written before parameter lists existed (tests/fixtures/) still load. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "conv_algo.h"
#include "export.h"
#include "keras_h5.h"
#include "job.h"
#include "layerref.h"
#include "model.h"
#include "testutil.h"
#include "weights.h"

/* ---- BatchNormalization ---- */

static Layer bn_layer(int trainable) {
    Layer L;
    memset(&L, 0, sizeof L);
    L.kind = LAYER_BATCHNORM;
    L.u.bn = (BatchNormCfg){0.99f, 1e-3f, 1, 1};
    L.trainable = trainable;
    return L;
}

/* Moving statistics that differ from the batch's, so that a mode mix-up shows. */
static void bn_set_moving(Fixture *f, int mean_i, int C) {
    for (int c = 0; c < C; c++) {
        f->p[mean_i][c] = 0.3f - 0.1f * (float)c;
        f->p[mean_i + 1][c] = 0.5f + 0.25f * (float)c;
    }
}

static void check_bn_training(Shape in, int N) {
    Fixture f;
    fixture_init(&f, bn_layer(1), in, N);
    const int C = in.c;
    const size_t M = (size_t)N * in.h * in.w;
    CU_ASSERT_EQUAL_FATAL(f.L.n_param, 4);
    CU_ASSERT(!strcmp(f.L.param[0].name, "gamma") && !strcmp(f.L.param[1].name, "beta"));
    CU_ASSERT(!strcmp(f.L.param[2].name, "moving_mean") && f.L.param[2].role == PARAM_STATE);
    CU_ASSERT(!strcmp(f.L.param[3].name, "moving_variance") && f.L.param[3].role == PARAM_STATE);
    bn_set_moving(&f, 2, C);
    float mm0[64], mv0[64];
    memcpy(mm0, f.p[2], C * 4);
    memcpy(mv0, f.p[3], C * 4);
    f.training = 1;
    fixture_forward(&f);
    double worst = 0, worst_stat = 0;
    for (int c = 0; c < C; c++) {
        double s = 0, s2 = 0;
        for (size_t r = 0; r < M; r++) s += f.in[r * C + c];
        double mean = s / (double)M;
        for (size_t r = 0; r < M; r++) s2 += pow(f.in[r * C + c] - mean, 2);
        double var = s2 / (double)M; /* biased, as Keras normalises and as Keras 3 updates */
        for (size_t r = 0; r < M; r++) {
            double y = f.p[0][c] * (f.in[r * C + c] - mean) / sqrt(var + 1e-3) + f.p[1][c];
            worst = fmax(worst, fabs(y - f.out[r * C + c]));
        }
        /* Keras: moving = moving * momentum + batch * (1 - momentum) */
        worst_stat = fmax(worst_stat, fabs(mm0[c] * 0.99 + mean * 0.01 - f.p[2][c]));
        worst_stat = fmax(worst_stat, fabs(mv0[c] * 0.99 + var * 0.01 - f.p[3][c]));
    }
    CU_ASSERT(worst < 1e-5);
    CU_ASSERT(worst_stat < 1e-6);
    if (worst >= 1e-5 || worst_stat >= 1e-6)
        printf("\n    bn forward %g, moving stats %g\n", worst, worst_stat);
    check_gradients(&f, 1e-2, 1e-2f);
    fixture_free(&f);
}

static void test_bn_training(void) { check_bn_training((Shape){3, 4, 5, 0}, 3); }
static void test_bn_training_flat(void) { check_bn_training((Shape){1, 1, 7, 1}, 6); }

/* Evaluation, and a frozen layer in a training pass: the moving statistics, unchanged. */
static void check_bn_inference(int trainable, int training) {
    Fixture f;
    Shape in = {4, 3, 6, 0};
    const int C = in.c, N = 2;
    fixture_init(&f, bn_layer(trainable), in, N);
    bn_set_moving(&f, 2, C);
    float mm0[8], mv0[8];
    memcpy(mm0, f.p[2], C * 4);
    memcpy(mv0, f.p[3], C * 4);
    f.training = training;
    fixture_forward(&f);
    double worst = 0;
    for (size_t r = 0; r < (size_t)N * in.h * in.w; r++)
        for (int c = 0; c < C; c++) {
            double y = f.p[0][c] * (f.in[r * C + c] - mm0[c]) / sqrt(mv0[c] + 1e-3) + f.p[1][c];
            worst = fmax(worst, fabs(y - f.out[r * C + c]));
        }
    CU_ASSERT(worst < 1e-5);
    CU_ASSERT(memcmp(mm0, f.p[2], C * 4) == 0 && memcmp(mv0, f.p[3], C * 4) == 0);
    if (!trainable) check_gradients(&f, 1e-2, 1e-2f); /* the input gradient of a frozen BN */
    fixture_free(&f);
}
static void test_bn_inference(void) { check_bn_inference(1, 0); }
static void test_bn_frozen(void) { check_bn_inference(0, 1); }

static void test_bn_no_center_scale(void) {
    Layer L = bn_layer(1);
    L.u.bn.center = 0;
    L.u.bn.scale = 0;
    Fixture f;
    fixture_init(&f, L, (Shape){2, 3, 3, 0}, 4);
    CU_ASSERT_EQUAL_FATAL(f.L.n_param, 2);
    CU_ASSERT(!strcmp(f.L.param[0].name, "moving_mean"));
    f.training = 1;
    fixture_forward(&f);
    /* no gamma, beta: every channel of the output has mean 0, variance var / (var + eps) */
    double worst = 0;
    for (int c = 0; c < 3; c++) {
        double s = 0;
        for (int r = 0; r < 4 * 6; r++) s += f.out[r * 3 + c];
        worst = fmax(worst, fabs(s / 24));
    }
    CU_ASSERT(worst < 1e-5);
    check_gradients(&f, 1e-2, 1e-2f);
    fixture_free(&f);
}

/* ---- DepthwiseConv2D ---- */

static Layer dw_layer(LayerKind kind, int k, int s, Padding p, Activation a, int units) {
    Layer L = layerfix_window_layer(kind, units, k, s, p, a);
    L.conv_algo = CONV_ALGO_IM2COL;
    return L;
}

static double act_ref(Activation a, double x) {
    return a == ACT_RELU ? (x > 0 ? x : 0) : a == ACT_SIGMOID ? 1 / (1 + exp(-x)) : x;
}

static void check_depthwise(int H, int W, int C, int k, int s, Padding p, Activation a) {
    Fixture f;
    const int N = 2;
    fixture_init(&f, dw_layer(LAYER_DEPTHWISE_CONV2D, k, s, p, a, 0), (Shape){H, W, C, 0}, N);
    CU_ASSERT(!strcmp(f.L.param[0].name, "depthwise_kernel") && f.L.param[0].rank == 4 &&
              f.L.param[0].dims[2] == C && f.L.param[0].dims[3] == 1);
    fixture_forward(&f);
    size_t no = N * shape_size(f.L.out);
    double *ref = malloc(no * sizeof *ref), worst = 0;
    layerref_depthwise(&f.L, f.in, f.p[0], N, ref);
    for (size_t i = 0; i < no; i++)
        worst = fmax(worst, fabs(act_ref(a, ref[i] + f.p[1][i % C]) - f.out[i]));
    CU_ASSERT(worst < 1e-5);
    if (worst >= 1e-5) printf("\n    depthwise forward error %g\n", worst);
    /* relu: a smaller step, so that fewer differences straddle its kink */
    check_gradients(&f, 1e-2, a == ACT_RELU ? 1e-3f : 1e-2f);
    free(ref);
    fixture_free(&f);
}
static void test_depthwise_valid(void) { check_depthwise(6, 7, 5, 3, 1, PAD_VALID, ACT_LINEAR); }
static void test_depthwise_same_stride2(void) {
    check_depthwise(7, 6, 3, 3, 2, PAD_SAME, ACT_SIGMOID);
}
static void test_depthwise_5x5(void) { check_depthwise(6, 6, 17, 5, 1, PAD_SAME, ACT_LINEAR); }
static void test_depthwise_relu(void) { check_depthwise(5, 4, 3, 3, 1, PAD_VALID, ACT_RELU); }
/* the kernels' channel blocks of 16: two whole blocks and a tail, at the mini-Xception's 3x3
 * same stride 1 (input gradient gathered); one block under an even kernel's uneven padding */
static void test_depthwise_blocks(void) { check_depthwise(6, 5, 33, 3, 1, PAD_SAME, ACT_RELU); }
static void test_depthwise_even(void) { check_depthwise(5, 6, 16, 2, 1, PAD_SAME, ACT_LINEAR); }

/* ---- SeparableConv2D ---- */

/* out_nhwc: the layer's reader reads NHWC (oneDNN's pointwise step then writes NHWC) */
static void check_separable(int H, int W, int C, int OC, int s, Padding p, ConvAlgoId algo, int N,
                            int max_batch, int out_nhwc) {
    if (!conv_algo_get(algo)) {
        testutil_skip("separable_conv2d with oneDNN", "this build has no oneDNN (ONEDNN=0)", 0);
        return;
    }
    Layer L = dw_layer(LAYER_SEPARABLE_CONV2D, 3, s, p, ACT_LINEAR, OC);
    L.conv_algo = algo;
    L.conv_algo_strict = 1;
    L.out_read_as_nhwc = out_nhwc;
    Fixture f;
    fixture_init(&f, L, (Shape){H, W, C, 0}, max_batch);
    f.N = N;
    CU_ASSERT_EQUAL_FATAL(f.L.n_param, 3);
    CU_ASSERT_EQUAL(f.L.out_fmt, algo == CONV_ALGO_DIRECT && !out_nhwc ? FMT_BLK16 : FMT_NHWC);
    CU_ASSERT(!strcmp(f.L.param[1].name, "pointwise_kernel") && f.L.param[1].dims[0] == 1 &&
              f.L.param[1].dims[2] == C && f.L.param[1].dims[3] == OC);
    fixture_forward(&f);
    const int OH = f.L.out.h, OW = f.L.out.w;
    size_t nm = (size_t)N * OH * OW * C, no = (size_t)N * OH * OW * OC;
    double *mid = malloc(nm * sizeof *mid), worst = 0;
    float *out = malloc(no * 4);
    layerref_depthwise(&f.L, f.in, f.p[0], N, mid);
    layout_reorder(out, FMT_NHWC, f.out, f.L.out_fmt, N, f.L.out);
    for (size_t r = 0; r < (size_t)N * OH * OW; r++)
        for (int o = 0; o < OC; o++) {
            double y = f.p[2][o];
            for (int c = 0; c < C; c++) y += mid[r * C + c] * f.p[1][c * OC + o];
            worst = fmax(worst, fabs(y - out[r * OC + o]));
        }
    CU_ASSERT(worst < 1e-4);
    if (worst >= 1e-4)
        printf("\n    separable (%s) forward error %g\n", conv_algo_name(algo), worst);
    if (f.L.out_fmt == FMT_NHWC)
        check_gradients(&f, 1e-2, 1e-2f);
    else { /* r is read in the blocked layout: zero its padding lanes so loss and gradient agree */
        float *rn = malloc((size_t)max_batch * shape_size(f.L.out) * 4);
        testutil_fill(rn, (size_t)max_batch * shape_size(f.L.out), 4, -1, 1);
        layout_reorder(f.r, f.L.out_fmt, rn, FMT_NHWC, max_batch, f.L.out);
        free(rn);
        check_gradients(&f, 1e-2, 1e-2f);
    }
    free(mid);
    free(out);
    fixture_free(&f);
}
static void test_separable_im2col(void) {
    check_separable(6, 5, 4, 6, 1, PAD_SAME, CONV_ALGO_IM2COL, 2, 2, 0);
}
static void test_separable_direct(void) {
    check_separable(6, 5, 4, 20, 1, PAD_SAME, CONV_ALGO_DIRECT, 2, 2, 0);
}
static void test_separable_direct_nhwc(void) {
    check_separable(6, 5, 4, 20, 1, PAD_SAME, CONV_ALGO_DIRECT, 2, 2, 1);
}
static void test_separable_direct_short(void) {
    check_separable(7, 7, 3, 5, 2, PAD_VALID, CONV_ALGO_DIRECT, 2, 3,
                    0); /* 2 samples of a 3-batch plan */
    check_separable(7, 7, 3, 5, 2, PAD_VALID, CONV_ALGO_DIRECT, 2, 3, 1);
}

/* ---- Activation ---- */

/* every activation the layer takes (the fused one-pass paths and the copy-then-apply one) */
static void test_activation(void) {
    const Activation acts[] = {ACT_RELU, ACT_LEAKY, ACT_SIGMOID, ACT_LINEAR};
    for (int k = 0; k < 4; k++) {
        Layer L;
        memset(&L, 0, sizeof L);
        L.kind = LAYER_ACTIVATION;
        L.act = acts[k];
        Fixture f;
        fixture_init(&f, L, (Shape){3, 2, 5, 0}, 2);
        CU_ASSERT_EQUAL(f.L.n_param, 0);
        fixture_forward(&f);
        double worst = 0;
        for (int i = 0; i < 60; i++) {
            double x = f.in[i];
            double ref = acts[k] == ACT_RELU      ? (x > 0 ? x : 0)
                         : acts[k] == ACT_LEAKY   ? (x > 0 ? x : LEAKY_SLOPE * x)
                         : acts[k] == ACT_SIGMOID ? 1 / (1 + exp(-x))
                                                  : x;
            worst = fmax(worst, fabs(ref - f.out[i]));
        }
        CU_ASSERT(worst < 1e-6);
        check_gradients(&f, 1e-2, 1e-3f);
        fixture_free(&f);
    }
}

/* ---- parameter lists in a model; files from before them ---- */

static const char *fixture_path(const char *name) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "tests/fixtures/%s", name);
    return buf;
}

static void test_old_files_load(void) {
    Job j;
    Model m;
    Err e = {0};
    /* the data root the fixture's run had: its checkpoint holds the resume hash under it */
    char *was = testutil_env_swap("CONVNET_DATA", "/work/shared/data");
    int loaded = job_load(&j, fixture_path("v1-chain.job"), NULL, 0, &e);
    testutil_env_restore("CONVNET_DATA", was);
    CU_ASSERT_FATAL(loaded == 0);
    CU_ASSERT_FATAL(model_plan(&m, j.layers, j.n_layers, (Shape){28, 28, 1, 0}, 16, &e) == 0);
    CU_ASSERT_FATAL(model_alloc(&m, NULL) == 0);
    CU_ASSERT_EQUAL(m.state_lo, m.n_params); /* a chain of Conv2D/Dense has no state */
    int rc = weights_load(fixture_path("v1-chain.weights"), &m, &e);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_EQUAL(rc, 0);
    /* the values are the file's payload after its 32-byte header */
    FILE *fp = fopen(fixture_path("v1-chain.weights"), "rb");
    CU_ASSERT_FATAL(fp != NULL);
    float *file = malloc(m.n_params * 4);
    CU_ASSERT(fseek(fp, 32, SEEK_SET) == 0 && fread(file, 4, m.n_params, fp) == m.n_params);
    fclose(fp);
    CU_ASSERT(memcmp(file, m.params, m.n_params * 4) == 0);
    /* the checkpoint: the job's resume hash (it still resumes after the upgrade) and the
     * model's structure hash still match */
    CheckpointState st;
    float *s1 = calloc(m.state_lo, 4), *s2 = calloc(m.state_lo, 4);
    Err e2 = {0};
    rc = checkpoint_load(fixture_path("v1-chain.ckpt"), &st, m.params, m.n_params, s1, s2,
                         m.state_lo, j.resume_hash, model_structure_hash(&m), &e2);
    if (rc) printf("\n    %s\n", e2.msg);
    CU_ASSERT_EQUAL(rc, 0);
    free(file), free(s1), free(s2);
    model_free(&m);
    job_free(&j);
}

/* A model with BN and separable layers: state after every weight, names and counts. */
static void test_param_layout(void) {
    const char *dir = testutil_tmpdir();
    const char
        *text = "[model]\nname = p\n[data]\nformat = idx\ntrain_images = a\ntrain_labels = b\n"
                "test_images = a\ntest_labels = b\n"
                "[conv2d]\nfilters = 4\nkernel_size = 3\n[batch_normalization]\n"
                "[separable_conv2d]\nfilters = 5\nkernel_size = 3\npadding = same\n"
                "[batch_normalization]\n[activation]\nactivation = relu\n"
                "[global_average_pooling2d]\n[dense]\nunits = 2\nactivation = softmax\n"
                "[train]\nloss = sparse_categorical_crossentropy\nconv_algorithm = im2col\n";
    Job j;
    Model m;
    Err e = {0};
    int rc = job_load(&j, testutil_write_file(dir, "p.job", text, strlen(text)), NULL, 0, &e);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_FATAL(rc == 0);
    CU_ASSERT_FATAL(model_plan(&m, j.layers, j.n_layers, (Shape){8, 8, 3, 0}, 4, &e) == 0);
    /* weights: conv 3*3*3*4 + 4, bn 4 + 4, sep 9*4 + 4*5 + 5, bn 5 + 5, dense 5*2 + 2 */
    const size_t weights = 112 + 8 + 61 + 10 + 12, state = 8 + 10;
    CU_ASSERT_EQUAL(m.state_lo, weights);
    CU_ASSERT_EQUAL(m.n_params, weights + state);
    CU_ASSERT_EQUAL(model_trainable_count(&m), weights);
    const Layer *bn = &m.layers[1], *bn2 = &m.layers[3];
    CU_ASSERT(bn->param[2].off == weights && bn->param[3].off == weights + 4);
    CU_ASSERT(bn2->param[2].off == weights + 8);
    CU_ASSERT(m.train_lo == 0);
    CU_ASSERT_EQUAL(layer_param_find(&m.layers[2], "pointwise_kernel"), 1);
    CU_ASSERT_FATAL(model_alloc(&m, NULL) == 0);
    model_init_params(&m, 3);
    CU_ASSERT(m.params[bn->param[0].off] == 1.0f && m.params[bn->param[3].off] == 1.0f);
    CU_ASSERT(m.params[bn->param[1].off] == 0.0f && m.params[bn->param[2].off] == 0.0f);
    /* the summary's Keras counts */
    char path[1024];
    snprintf(path, sizeof path, "%s/summary.txt", dir);
    FILE *f = fopen(path, "w");
    model_print_summary(&m, "p", f);
    fclose(f);
    char out[16384] = {0};
    f = fopen(path, "r");
    CU_ASSERT_FATAL(f != NULL);
    size_t got = fread(out, 1, sizeof out - 1, f);
    fclose(f);
    CU_ASSERT(got > 0 && strstr(out, "Non-trainable params: 18") &&
              strstr(out, "Trainable params: 203"));
    model_free(&m);
    job_free(&j);
}

/* Keras 2 and Keras 3 files of a model with BN and separable layers, written and read back:
 * every tensor, the moving statistics included, by name and Keras shape. */
static void test_h5_round_trip(void) {
#if CONVNET_HDF5
    const char *dir = testutil_tmpdir();
    const char
        *text = "[model]\nname = h\n[data]\nformat = idx\ntrain_images = a\ntrain_labels = b\n"
                "test_images = a\ntest_labels = b\n"
                "[separable_conv2d]\nfilters = 5\nkernel_size = 3\n[batch_normalization]\n"
                "[depthwise_conv2d]\nkernel_size = 3\n[activation]\nactivation = relu\n"
                "[global_average_pooling2d]\n[dense]\nunits = 2\nactivation = softmax\n"
                "[train]\nloss = sparse_categorical_crossentropy\nconv_algorithm = im2col\n";
    const char *job = testutil_write_file(dir, "h.job", text, strlen(text));
    for (int keras3 = 0; keras3 < 2; keras3++) {
        Job j, j2;
        Model a, b;
        Err e = {0};
        CU_ASSERT_FATAL(job_load(&j, job, NULL, 0, &e) == 0 &&
                        job_load(&j2, job, NULL, 0, &e) == 0);
        CU_ASSERT_FATAL(model_plan(&a, j.layers, j.n_layers, (Shape){9, 9, 3, 0}, 2, &e) == 0);
        CU_ASSERT_FATAL(model_plan(&b, j2.layers, j2.n_layers, (Shape){9, 9, 3, 0}, 2, &e) == 0);
        CU_ASSERT_FATAL(model_alloc(&a, NULL) == 0);
        CU_ASSERT_FATAL(model_alloc(&b, NULL) == 0);
        testutil_fill(a.params, a.n_params, 9, 0.1f, 0.9f); /* moving variances must be > 0 */
        memset(b.params, 0, b.n_params * sizeof *b.params);
        char path[1024];
        snprintf(path, sizeof path, "%s/h%s", dir, keras3 ? ".weights.h5" : ".h5");
        int rc = export_keras_h5(&a, path, keras3, &e);
        if (rc == 0) rc = keras_h5_load_weights(path, &b, &e);
        if (rc) printf("\n    keras%d: %s\n", keras3 ? 3 : 2, e.msg);
        CU_ASSERT_EQUAL(rc, 0);
        CU_ASSERT(memcmp(a.params, b.params, a.n_params * sizeof *a.params) == 0);
        CU_ASSERT(a.n_params > a.state_lo); /* the moving statistics were part of it */
        model_free(&a), model_free(&b);
        job_free(&j), job_free(&j2);
    }
#else
    testutil_skip("BN/separable Keras h5 round trip", "built with HDF5=0", 0);
#endif
}

TEST_SUITE(layers_graph,
           {"batch norm training: statistics, moving averages, gradients", test_bn_training},
           {"batch norm training on a flat input", test_bn_training_flat},
           {"batch norm inference uses the moving statistics", test_bn_inference},
           {"batch norm frozen: moving statistics, no update, input gradient", test_bn_frozen},
           {"batch norm without center and scale", test_bn_no_center_scale},
           {"depthwise conv valid", test_depthwise_valid},
           {"depthwise conv same stride 2 sigmoid", test_depthwise_same_stride2},
           {"depthwise conv 5x5 same, 17 channels", test_depthwise_5x5},
           {"depthwise conv relu", test_depthwise_relu},
           {"depthwise conv 33 channels same: blocks and tail", test_depthwise_blocks},
           {"depthwise conv 2x2 same, 16 channels", test_depthwise_even},
           {"separable conv, im2col pointwise", test_separable_im2col},
           {"separable conv, oneDNN direct pointwise", test_separable_direct},
           {"separable conv, oneDNN direct pointwise read as NHWC", test_separable_direct_nhwc},
           {"separable conv, short batch, stride 2 valid", test_separable_direct_short},
           {"activation layer", test_activation},
           {"weights file and checkpoint from before parameter lists load", test_old_files_load},
           {"parameter layout: weights then state, Keras counts", test_param_layout},
           {"Keras 2 and 3 h5 round trip of BN and separable layers", test_h5_round_trip})
