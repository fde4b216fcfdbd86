/* layerref.c: the per-kind test cases of layerref.h, each with a naive reference of the kind's
 * forward: direct loops in double, Keras's formulas and TF's padding rule, sharing no code with
 * src/layers/. */
#include "layerref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* TF's window rule: output size and the padding before the first row (valid: none). */
static void tf_window(int H, int K, int S, Padding p, int *OH, int *pt) {
    if (p == PAD_VALID) {
        *OH = (H - K) / S + 1;
        *pt = 0;
        return;
    }
    *OH = (H + S - 1) / S;
    int ph = (*OH - 1) * S + K - H;
    *pt = ph > 0 ? ph / 2 : 0;
}

static double act_ref(Activation a, double x) {
    return a == ACT_RELU      ? (x > 0 ? x : 0)
           : a == ACT_SIGMOID ? 1 / (1 + exp(-x))
           : a == ACT_LEAKY   ? (x > 0 ? x : 0.1 * x)
                              : x;
}

/* sum over the window of output (oh, ow) of in[n] * w, per (c, oc): w (KH, KW, C, OC) */
void layerref_conv(const Fixture *f, float *ref) {
    const Layer *L = &f->L;
    int H = L->in.h, W = L->in.w, C = L->in.c, OH, OW, pt, pl;
    tf_window(H, L->kh, L->sh, L->padding, &OH, &pt);
    tf_window(W, L->kw, L->sw, L->padding, &OW, &pl);
    CU_ASSERT_EQUAL(OH, L->out.h);
    CU_ASSERT_EQUAL(OW, L->out.w);
    for (int n = 0; n < f->N; n++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                for (int oc = 0; oc < L->units; oc++) {
                    double s = L->use_bias ? f->b[oc] : 0;
                    for (int kh = 0; kh < L->kh; kh++)
                        for (int kw = 0; kw < L->kw; kw++)
                            for (int c = 0; c < C; c++) {
                                int ih = oh * L->sh + kh - pt, iw = ow * L->sw + kw - pl;
                                if (ih < 0 || iw < 0 || ih >= H || iw >= W) continue;
                                s += (double)f->in[((n * H + ih) * W + iw) * C + c] *
                                     f->w[((kh * L->kw + kw) * C + c) * L->units + oc];
                            }
                    ref[((n * OH + oh) * OW + ow) * L->units + oc] = (float)act_ref(L->act, s);
                }
}

void layerref_depthwise(const Layer *L, const float *in, const float *w, int N, double *mid) {
    const int H = L->in.h, W = L->in.w, C = L->in.c;
    int OH, OW, pt, pl;
    tf_window(H, L->kh, L->sh, L->padding, &OH, &pt);
    tf_window(W, L->kw, L->sw, L->padding, &OW, &pl);
    for (int n = 0; n < N; n++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                for (int c = 0; c < C; c++) {
                    double s = 0;
                    for (int kh = 0; kh < L->kh; kh++)
                        for (int kw = 0; kw < L->kw; kw++) {
                            int ih = oh * L->sh - pt + kh, iw = ow * L->sw - pl + kw;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                            s += (double)in[(((size_t)n * H + ih) * W + iw) * C + c] *
                                 w[(kh * L->kw + kw) * C + c];
                        }
                    mid[(((size_t)n * OH + oh) * OW + ow) * C + c] = s;
                }
}

static size_t n_in(const Fixture *f) { return (size_t)f->N * f->L.in.h * f->L.in.w * f->L.in.c; }

/* Flatten, Dropout at inference, the augmentation layers at inference: the identity */
static void ref_identity(const Fixture *f, float *ref) {
    memcpy(ref, f->in, n_in(f) * sizeof *ref);
}

static void ref_maxpool(const Fixture *f, float *ref) {
    const Layer *L = &f->L;
    int H = L->in.h, W = L->in.w, C = L->in.c, OH, OW, pt, pl;
    tf_window(H, L->kh, L->sh, L->padding, &OH, &pt);
    tf_window(W, L->kw, L->sw, L->padding, &OW, &pl);
    for (int n = 0; n < f->N; n++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                for (int c = 0; c < C; c++) {
                    float m = -INFINITY;
                    for (int kh = 0; kh < L->kh; kh++)
                        for (int kw = 0; kw < L->kw; kw++) {
                            int ih = oh * L->sh + kh - pt, iw = ow * L->sw + kw - pl;
                            if (ih >= 0 && iw >= 0 && ih < H && iw < W)
                                m = fmaxf(m, f->in[((n * H + ih) * W + iw) * C + c]);
                        }
                    ref[((n * OH + oh) * OW + ow) * C + c] = m;
                }
}

static void ref_dense(const Fixture *f, float *ref) {
    const int IN = f->L.in.c, U = f->L.units;
    for (int n = 0; n < f->N; n++)
        for (int u = 0; u < U; u++) {
            double s = f->L.use_bias ? f->b[u] : 0;
            for (int i = 0; i < IN; i++) s += (double)f->in[n * IN + i] * f->w[i * U + u];
            ref[n * U + u] = (float)act_ref(f->L.act, s);
        }
}

static void ref_rescaling(const Fixture *f, float *ref) {
    for (size_t i = 0; i < n_in(f); i++)
        ref[i] = (float)((double)f->in[i] * f->L.u.rescale.scale + f->L.u.rescale.offset);
}

static void ref_global_avgpool(const Fixture *f, float *ref) {
    const int P = f->L.in.h * f->L.in.w, C = f->L.in.c;
    for (int n = 0; n < f->N; n++)
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int p = 0; p < P; p++) s += f->in[((size_t)n * P + p) * C + c];
            ref[n * C + c] = (float)(s / P);
        }
}

/* Keras's preprocess_input(mode="caffe"): RGB to BGR, minus the ImageNet BGR mean */
static void ref_preprocess_caffe(const Fixture *f, float *ref) {
    static const double mean[3] = {103.939, 116.779, 123.68};
    for (size_t p = 0; p < n_in(f) / 3; p++)
        for (int k = 0; k < 3; k++) ref[3 * p + k] = (float)(f->in[3 * p + 2 - k] - mean[k]);
}

static void ref_add(const Fixture *f, float *ref) {
    for (size_t i = 0; i < n_in(f); i++) {
        double s = 0;
        for (int k = 0; k < f->n_ins; k++) s += f->ins[k][i];
        ref[i] = (float)s;
    }
}

/* training: the batch's mean and biased variance per channel; gamma p[0], beta p[1] */
static void ref_batchnorm(const Fixture *f, float *ref) {
    const int C = f->L.in.c;
    const size_t M = n_in(f) / C;
    for (int c = 0; c < C; c++) {
        double s = 0, s2 = 0;
        for (size_t r = 0; r < M; r++) s += f->in[r * C + c];
        const double mean = s / (double)M;
        for (size_t r = 0; r < M; r++) s2 += pow(f->in[r * C + c] - mean, 2);
        const double inv = 1 / sqrt(s2 / (double)M + f->L.u.bn.epsilon);
        for (size_t r = 0; r < M; r++)
            ref[r * C + c] = (float)(f->p[0][c] * (f->in[r * C + c] - mean) * inv + f->p[1][c]);
    }
}

static void ref_depthwise(const Fixture *f, float *ref) {
    const Layer *L = &f->L;
    const size_t no = (size_t)f->N * shape_size(L->out);
    double *mid = malloc(no * sizeof *mid);
    layerref_depthwise(L, f->in, f->p[0], f->N, mid);
    for (size_t i = 0; i < no; i++)
        ref[i] = (float)act_ref(L->act, mid[i] + (L->use_bias ? f->p[1][i % L->in.c] : 0));
    free(mid);
}

/* the depthwise step, then the 1x1 pointwise_kernel (C, OC), bias, activation */
static void ref_separable(const Fixture *f, float *ref) {
    const Layer *L = &f->L;
    const int C = L->in.c, OC = L->units;
    const size_t pixels = (size_t)f->N * L->out.h * L->out.w;
    double *mid = malloc(pixels * C * sizeof *mid);
    layerref_depthwise(L, f->in, f->p[0], f->N, mid);
    for (size_t r = 0; r < pixels; r++)
        for (int o = 0; o < OC; o++) {
            double y = L->use_bias ? f->p[2][o] : 0;
            for (int c = 0; c < C; c++) y += mid[r * C + c] * f->p[1][c * OC + o];
            ref[r * OC + o] = (float)act_ref(L->act, y);
        }
    free(mid);
}

static void ref_activation(const Fixture *f, float *ref) {
    for (size_t i = 0; i < n_in(f); i++) ref[i] = (float)act_ref(f->L.act, f->in[i]);
}

/* Smooth activations (sigmoid) where there is one, so that the differences are exact enough. */
static const KindCase cases[LAYER_KIND_COUNT] = {
    [LAYER_CONV2D] = {"[conv2d]\nfilters = 3\nkernel_size = 3\nstrides = 2\npadding = same\n"
                      "activation = sigmoid\nalgorithm = im2col\n",
                      {7, 6, 2, 0},
                      2,
                      .tol = 1e-5,
                      .grad_tol = 2e-2,
                      .eps = 1e-2f,
                      .ref = layerref_conv},
    [LAYER_MAXPOOL2D] = {"[maxpooling2d]\npool_size = 3\nstrides = 2\npadding = same\n",
                         {7, 5, 3, 0},
                         2,
                         .distinct_input = 1,
                         .tol = 0,
                         .grad_tol = 2e-2,
                         .eps = 1e-2f,
                         .ref = ref_maxpool},
    [LAYER_FLATTEN] = {"[flatten]\n",
                       {3, 2, 4, 0},
                       2,
                       .tol = 0,
                       .grad_tol = 1e-3,
                       .eps = 1e-2f,
                       .ref = ref_identity},
    [LAYER_DENSE] = {"[dense]\nunits = 4\nactivation = sigmoid\n",
                     {1, 1, 6, 1},
                     3,
                     .tol = 1e-5,
                     .grad_tol = 1e-2,
                     .eps = 1e-2f,
                     .ref = ref_dense},
    /* the reference at inference; the differences through a training pass's mask */
    [LAYER_DROPOUT] = {"[dropout]\nrate = 0.5\n",
                       {1, 1, 40, 1},
                       2,
                       .training = 1,
                       .tol = 0,
                       .grad_tol = 1e-3,
                       .eps = 1e-2f,
                       .ref = ref_identity},
    [LAYER_RESCALING] = {"[rescaling]\nscale = 0.5\noffset = -0.25\n",
                         {3, 3, 2, 0},
                         2,
                         .tol = 1e-6,
                         .grad_tol = 1e-3,
                         .eps = 1e-2f,
                         .ref = ref_rescaling},
    [LAYER_RANDOM_FLIP] =
        {"[random_flip]\n", {4, 5, 3, 0}, 2, .no_gradient = 1, .ref = ref_identity},
    [LAYER_RANDOM_ROTATION] = {"[random_rotation]\nfactor = 0.1\n",
                               {4, 5, 3, 0},
                               2,
                               .no_gradient = 1,
                               .ref = ref_identity},
    [LAYER_RANDOM_ZOOM] = {"[random_zoom]\nheight_factor = 0.2\n",
                           {4, 5, 3, 0},
                           2,
                           .no_gradient = 1,
                           .ref = ref_identity},
    [LAYER_GLOBAL_AVGPOOL] = {"[global_average_pooling2d]\n",
                              {3, 5, 4, 0},
                              2,
                              .tol = 1e-6,
                              .grad_tol = 1e-3,
                              .eps = 1e-2f,
                              .ref = ref_global_avgpool},
    [LAYER_PREPROCESS] = {"[preprocess]\nmode = caffe\n",
                          {3, 4, 3, 0},
                          2,
                          .tol = 1e-5,
                          .grad_tol = 1e-3,
                          .eps = 1e-2f,
                          .ref = ref_preprocess_caffe},
    [LAYER_ADD] = {"[add]\n",
                   {3, 2, 5, 0},
                   2,
                   .n_inputs = 2,
                   .tol = 1e-6,
                   .grad_tol = 1e-3,
                   .eps = 1e-2f,
                   .ref = ref_add},
    [LAYER_BATCHNORM] = {"[batch_normalization]\n",
                         {3, 4, 5, 0},
                         3,
                         .training = 1,
                         .ref_training = 1,
                         .tol = 1e-5,
                         .grad_tol = 1e-2,
                         .eps = 1e-2f,
                         .ref = ref_batchnorm},
    [LAYER_DEPTHWISE_CONV2D] =
        {"[depthwise_conv2d]\nkernel_size = 3\npadding = same\nactivation = sigmoid\n",
         {6, 5, 4, 0},
         2,
         .tol = 1e-5,
         .grad_tol = 1e-2,
         .eps = 1e-2f,
         .ref = ref_depthwise},
    [LAYER_SEPARABLE_CONV2D] = {"[separable_conv2d]\nfilters = 3\nkernel_size = 3\nstrides = 2\n"
                                "activation = sigmoid\nalgorithm = im2col\n",
                                {7, 7, 3, 0},
                                2,
                                .tol = 1e-5,
                                .grad_tol = 1e-2,
                                .eps = 1e-2f,
                                .ref = ref_separable},
    [LAYER_ACTIVATION] = {"[activation]\nactivation = sigmoid\n",
                          {3, 2, 5, 0},
                          2,
                          .tol = 1e-6,
                          .grad_tol = 1e-2,
                          .eps = 1e-2f,
                          .ref = ref_activation},
};

const KindCase *layerref_case(LayerKind k) { return &cases[k]; }
