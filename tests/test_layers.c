/* test_layers.c: every layer's forward pass against a naive reference written here, and a
 * central-difference check of its input, weight and bias gradients, over several shapes
 * (odd sizes, stride 2, same padding, 1x1 kernels). The graph-era layers (BatchNormalization,
 * DepthwiseConv2D, SeparableConv2D, Activation) are in test_layers_graph.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "layerref.h"

/* ---- Conv2D ---- */

static Layer conv_layer(int oc, int k, int s, Padding p, Activation a) {
    return layerfix_window_layer(LAYER_CONV2D, oc, k, s, p, a);
}

static void check_conv(int H, int W, int C, int oc, int k, int s, Padding p, Activation a, int N) {
    /* ReLU's kink: a smaller step makes crossing it while differencing rare */
    float eps = a == ACT_RELU ? 1e-3f : a == ACT_LEAKY ? 1e-4f : 1e-2f;
    Fixture f;
    fixture_init(&f, conv_layer(oc, k, s, p, a), (Shape){H, W, C, 0}, N);
    fixture_forward(&f);
    size_t no = N * shape_size(f.L.out);
    float *ref = calloc(no, 4);
    layerref_conv(&f, ref);
    double worst = 0;
    for (size_t i = 0; i < no; i++) worst = fmax(worst, fabs(ref[i] - f.out[i]));
    CU_ASSERT(worst < 1e-4);
    free(ref);
    check_gradients(&f, 2e-2, eps);
    fixture_free(&f);
}

static void test_conv_valid(void) { check_conv(7, 6, 3, 4, 3, 1, PAD_VALID, ACT_LINEAR, 2); }
static void test_conv_same_stride2_odd(void) {
    check_conv(7, 5, 2, 3, 3, 2, PAD_SAME, ACT_SIGMOID, 2);
}
static void test_conv_valid_stride2(void) {
    check_conv(9, 8, 2, 5, 3, 2, PAD_VALID, ACT_LINEAR, 3);
}
static void test_conv_same_5x5(void) { check_conv(6, 6, 3, 2, 5, 1, PAD_SAME, ACT_LINEAR, 2); }
static void test_conv_pointwise(void) { check_conv(4, 5, 6, 3, 1, 1, PAD_VALID, ACT_LINEAR, 2); }
static void test_conv_relu(void) { check_conv(8, 8, 1, 4, 3, 1, PAD_VALID, ACT_RELU, 2); }
static void test_conv_leaky(void) { check_conv(7, 6, 4, 5, 3, 1, PAD_SAME, ACT_LEAKY, 2); }
/* more channels, strides and 1x1 kernels */
static void test_conv_same_stride2_wide(void) {
    check_conv(6, 7, 8, 5, 3, 2, PAD_SAME, ACT_SIGMOID, 3);
}
static void test_conv_pointwise_wide(void) {
    check_conv(4, 3, 40, 6, 1, 1, PAD_VALID, ACT_LINEAR, 2);
}
static void test_conv_valid_wide(void) { check_conv(7, 7, 5, 16, 3, 1, PAD_VALID, ACT_LINEAR, 3); }

static void test_conv_shapes(void) {
    Err e = {0};
    Layer L = conv_layer(8, 3, 1, PAD_VALID, ACT_LINEAR);
    L.in = (Shape){2, 5, 3, 0};
    CU_ASSERT(layer_ops[LAYER_CONV2D]->plan(&L, &e) != 0); /* 2 rows < 3-row kernel */
    CU_ASSERT(strstr(e.msg, "smaller") != NULL);
    Err e2 = {0};
    L.in = (Shape){1, 1, 50, 1};
    CU_ASSERT(layer_ops[LAYER_CONV2D]->plan(&L, &e2) != 0); /* flat input */
    Layer S = conv_layer(8, 3, 2, PAD_SAME, ACT_LINEAR);
    S.in = (Shape){2, 2, 3, 0};
    Err e3 = {0};
    CU_ASSERT_FATAL(layer_ops[LAYER_CONV2D]->plan(&S, &e3) == 0);
    CU_ASSERT(S.out.h == 1 && S.out.w == 1 && S.out.c == 8);
    CU_ASSERT_EQUAL(S.param[0].n, 3 * 3 * 3 * 8);
    layer_ops[LAYER_CONV2D]->release(&S);
}

/* ---- Dense ---- */

static void test_dense(void) {
    Layer L;
    memset(&L, 0, sizeof L);
    L.kind = LAYER_DENSE;
    L.units = 5;
    L.use_bias = 1;
    L.trainable = 1;
    L.act = ACT_SIGMOID;
    Fixture f;
    fixture_init(&f, L, (Shape){1, 1, 7, 1}, 3);
    fixture_forward(&f);
    double worst = 0;
    for (int n = 0; n < 3; n++)
        for (int u = 0; u < 5; u++) {
            double s = f.b[u];
            for (int i = 0; i < 7; i++) s += (double)f.in[n * 7 + i] * f.w[i * 5 + u];
            worst = fmax(worst, fabs(1 / (1 + exp(-s)) - f.out[n * 5 + u]));
        }
    CU_ASSERT(worst < 1e-5);
    check_gradients(&f, 1e-2, 1e-2f);
    fixture_free(&f);
    Layer S = L;
    S.in = (Shape){3, 3, 2, 0};
    Err e = {0};
    CU_ASSERT(layer_ops[LAYER_DENSE]->plan(&S, &e) != 0); /* needs a Flatten first */
}

/* ---- MaxPooling2D ---- */

/* A k x k MaxPooling2D at stride s on a batch of 2 (H, W, C) inputs. */
static void pool_fixture(Fixture *f, int H, int W, int C, int k, int s, Padding p) {
    Layer L;
    memset(&L, 0, sizeof L);
    L.kind = LAYER_MAXPOOL2D;
    L.kh = L.kw = k;
    L.sh = L.sw = s;
    L.padding = p;
    fixture_init(f, L, (Shape){H, W, C, 0}, 2);
}

static void check_pool(int H, int W, int C, int k, int s, Padding p) {
    Fixture f;
    pool_fixture(&f, H, W, C, k, s, p);
    /* distinct values 0.05 apart, so differencing by 0.01 never changes a window's maximum */
    size_t ni = 2 * shape_size(f.L.in);
    for (size_t i = 0; i < ni; i++) f.in[i] = 0.05f * (float)((i * 7919) % ni) - 1.0f;
    fixture_forward(&f);
    int OH = f.L.out.h, OW = f.L.out.w;
    int expect_oh = p == PAD_VALID ? (H - k) / s + 1 : (H + s - 1) / s;
    CU_ASSERT_EQUAL(OH, expect_oh);
    int ph = (OH - 1) * s + k - H, pt = p == PAD_SAME && ph > 0 ? ph / 2 : 0;
    int pw = (OW - 1) * s + k - W, pl = p == PAD_SAME && pw > 0 ? pw / 2 : 0;
    int bad = 0;
    for (int n = 0; n < 2; n++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                for (int c = 0; c < C; c++) {
                    float m = -1e30f;
                    for (int kh = 0; kh < k; kh++)
                        for (int kw = 0; kw < k; kw++) {
                            int ih = oh * s + kh - pt, iw = ow * s + kw - pl;
                            if (ih < 0 || iw < 0 || ih >= H || iw >= W) continue;
                            m = fmaxf(m, f.in[((n * H + ih) * W + iw) * C + c]);
                        }
                    bad += m != f.out[((n * OH + oh) * OW + ow) * C + c];
                }
    CU_ASSERT_EQUAL(bad, 0);
    check_gradients(&f, 2e-2, 1e-2f);
    /* the backward overwrites every input gradient, those of pixels no window covers included:
     * from a NaN-filled din it must give the same gradient bit for bit */
    float *clean = malloc(ni * 4);
    memcpy(clean, f.din, ni * 4);
    for (size_t i = 0; i < ni; i++) f.din[i] = NAN;
    fixture_backward(&f);
    CU_ASSERT(memcmp(clean, f.din, ni * 4) == 0);
    free(clean);
    fixture_free(&f);
}

static void test_pool_valid(void) { check_pool(6, 7, 3, 2, 2, PAD_VALID); }
static void test_pool_same_odd(void) { check_pool(7, 5, 2, 3, 2, PAD_SAME); }
static void test_pool_overlap(void) { check_pool(8, 8, 2, 3, 1, PAD_VALID); }
/* C = 16, the nChw16c block: 2x2 windows (the fixed-tap forward) with a row and a column no
 * window reads (their gradient must be written 0, not left as it was), same padding at stride 2
 * (a window reaches past the input: the general path), and overlapping windows. */
static void test_pool_c16(void) {
    check_pool(7, 9, 16, 2, 2, PAD_VALID);
    check_pool(5, 5, 16, 2, 2, PAD_SAME);
    check_pool(9, 9, 16, 3, 2, PAD_SAME);
    check_pool(9, 8, 35, 3, 2, PAD_SAME); /* the general path's 16-channel blocks and a tail */
}

/* Ties (ReLU's zeros, saturated pixels): each output's gradient goes to one tap, the first in
 * row-major order holding the maximum, on the 2x2 path (argmax kept) and on the general path
 * (taps found again in the backward) alike; checked bit for bit against a reference. */
static void check_pool_ties(int H, int W, int C, int k, int s, Padding p) {
    Fixture f;
    pool_fixture(&f, H, W, C, k, s, p);
    size_t ni = 2 * shape_size(f.L.in);
    for (size_t i = 0; i < ni; i++) f.in[i] = (float)((i * 2654435761u >> 7) % 3 == 0); /* 0 or 1 */
    fixture_backward(&f);
    int OH = f.L.out.h, OW = f.L.out.w;
    int ph = (OH - 1) * s + k - H, pt = p == PAD_SAME && ph > 0 ? ph / 2 : 0;
    int pw = (OW - 1) * s + k - W, pl = p == PAD_SAME && pw > 0 ? pw / 2 : 0;
    float *ref = calloc(ni, 4);
    for (int n = 0; n < 2; n++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                for (int c = 0; c < C; c++) {
                    long best = -1;
                    for (int kh = 0; kh < k; kh++)
                        for (int kw = 0; kw < k; kw++) {
                            int ih = oh * s + kh - pt, iw = ow * s + kw - pl;
                            if (ih < 0 || iw < 0 || ih >= H || iw >= W) continue;
                            long at = ((long)(n * H + ih) * W + iw) * C + c;
                            if (best < 0 || f.in[at] > f.in[best]) best = at;
                        }
                    ref[best] += f.r[((n * OH + oh) * OW + ow) * C + c];
                }
    CU_ASSERT(memcmp(ref, f.din, ni * 4) == 0);
    free(ref);
    fixture_free(&f);
}

static void test_pool_ties(void) {
    check_pool_ties(8, 6, 16, 2, 2, PAD_VALID); /* argmax kept */
    check_pool_ties(9, 8, 35, 3, 2, PAD_SAME);  /* found again: blocks and a tail */
    check_pool_ties(6, 6, 3, 3, 1, PAD_VALID);  /* overlapping windows */
}

/* ---- Flatten, Rescaling, Dropout ---- */

static void test_flatten(void) {
    Layer L;
    memset(&L, 0, sizeof L);
    L.kind = LAYER_FLATTEN;
    Fixture f;
    fixture_init(&f, L, (Shape){3, 2, 4, 0}, 2);
    CU_ASSERT(f.L.out.flat && f.L.out.c == 24);
    fixture_forward(&f);
    CU_ASSERT(memcmp(f.in, f.out, 2 * 24 * 4) == 0); /* NHWC order is Keras's flatten order */
    check_gradients(&f, 1e-3, 1e-2f);
    fixture_free(&f);
}

static void test_global_avgpool(void) {
    Layer L;
    memset(&L, 0, sizeof L);
    L.kind = LAYER_GLOBAL_AVGPOOL;
    Fixture f;
    fixture_init(&f, L, (Shape){3, 5, 4, 0}, 2);
    CU_ASSERT(f.L.out.flat && f.L.out.c == 4);
    fixture_forward(&f);
    double worst = 0;
    for (int n = 0; n < 2; n++)
        for (int k = 0; k < 4; k++) {
            double s = 0;
            for (int p = 0; p < 15; p++) s += f.in[(n * 15 + p) * 4 + k];
            worst = fmax(worst, fabs(s / 15 - f.out[n * 4 + k]));
        }
    CU_ASSERT(worst < 1e-6);
    check_gradients(&f, 1e-3, 1e-2f);
    fixture_free(&f);
}

static void test_rescaling(void) {
    Layer L;
    memset(&L, 0, sizeof L);
    L.kind = LAYER_RESCALING;
    L.u.rescale.scale = 1.0f / 255;
    L.u.rescale.offset = -0.5f;
    Fixture f;
    fixture_init(&f, L, (Shape){3, 3, 3, 0}, 2);
    fixture_forward(&f);
    int bad = 0;
    for (int i = 0; i < 54; i++) bad += fabsf(f.out[i] - (f.in[i] / 255.0f - 0.5f)) > 1e-6f;
    CU_ASSERT_EQUAL(bad, 0);
    check_gradients(&f, 1e-3, 1e-2f);
    fixture_free(&f);
}

static void test_dropout(void) {
    Layer L;
    memset(&L, 0, sizeof L);
    L.kind = LAYER_DROPOUT;
    L.u.dropout.rate = 0.5f;
    Fixture f;
    fixture_init(&f, L, (Shape){1, 1, 4000, 1}, 2);
    /* inference: identity */
    fixture_forward(&f);
    CU_ASSERT(memcmp(f.in, f.out, 8000 * 4) == 0);
    /* training: about half dropped, the rest scaled by 1/(1-rate) */
    f.training = 1;
    fixture_forward(&f);
    int zeros = 0, bad = 0;
    for (int i = 0; i < 8000; i++) {
        if (f.out[i] == 0)
            zeros++;
        else
            bad += fabsf(f.out[i] - 2 * f.in[i]) > 1e-6f;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(zeros > 3700 && zeros < 4300);
    /* the mask depends on the sample id, not the batch position */
    float first[4000];
    memcpy(first, f.out + 4000, sizeof first);
    int64_t keep = f.ids[1];
    f.ids[0] = keep;
    fixture_forward(&f);
    int same_mask = 0;
    for (int i = 0; i < 4000; i++) same_mask += (f.out[i] == 0) == (first[i] == 0);
    CU_ASSERT_EQUAL(same_mask, 4000);
    check_gradients(&f, 1e-3, 1e-2f);
    fixture_free(&f);
}

TEST_SUITE(layers, {"conv2d valid 3x3", test_conv_valid},
           {"conv2d same stride 2 odd sizes sigmoid", test_conv_same_stride2_odd},
           {"conv2d valid stride 2", test_conv_valid_stride2},
           {"conv2d same 5x5", test_conv_same_5x5}, {"conv2d 1x1", test_conv_pointwise},
           {"conv2d relu", test_conv_relu},
           {"conv2d same stride 2, 8 channels", test_conv_same_stride2_wide},
           {"conv2d 1x1, 40 channels", test_conv_pointwise_wide},
           {"conv2d valid, 3 samples", test_conv_valid_wide},
           {"conv2d shape checks", test_conv_shapes}, {"dense", test_dense},
           {"maxpool valid 2x2", test_pool_valid},
           {"maxpool same 3x3 stride 2 odd", test_pool_same_odd},
           {"maxpool overlapping windows", test_pool_overlap},
           {"maxpool C=16: tiled, same, overlapping", test_pool_c16},
           {"maxpool ties: the first tap gets the gradient", test_pool_ties},
           {"flatten", test_flatten}, {"rescaling", test_rescaling},
           {"global average pooling", test_global_avgpool}, {"conv2d leaky relu", test_conv_leaky},
           {"dropout", test_dropout})
