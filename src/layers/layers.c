/* layers.c: the layer_ops table, and the small layers: Dense, Flatten, Dropout (inverted, keyed
 * masks), Rescaling, GlobalAveragePooling2D, Add, Activation. What the kinds share is in
 * layer_common.c; MaxPooling2D is in maxpool.c. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "layers/layer_impl.h"

/* The kinds' operations, each defined in its kind's file (only this table names them). */
extern const LayerOps conv2d_ops, maxpool2d_ops, flatten_ops, dense_ops, dropout_ops, rescaling_ops,
    random_flip_ops, random_rotation_ops, random_zoom_ops, global_avgpool_ops, preprocess_ops,
    add_ops, batchnorm_ops, depthwise_conv2d_ops, separable_conv2d_ops, activation_ops;

/* One entry per kind, in LayerKind's order. A kind missing at the end changes the table's length
 * (the assertion below); one missing in between is NULL, which tests/test_kinds.c reports. */
const LayerOps *const layer_ops[] = {
    [LAYER_CONV2D] = &conv2d_ops,
    [LAYER_MAXPOOL2D] = &maxpool2d_ops,
    [LAYER_FLATTEN] = &flatten_ops,
    [LAYER_DENSE] = &dense_ops,
    [LAYER_DROPOUT] = &dropout_ops,
    [LAYER_RESCALING] = &rescaling_ops,
    [LAYER_RANDOM_FLIP] = &random_flip_ops,
    [LAYER_RANDOM_ROTATION] = &random_rotation_ops,
    [LAYER_RANDOM_ZOOM] = &random_zoom_ops,
    [LAYER_GLOBAL_AVGPOOL] = &global_avgpool_ops,
    [LAYER_PREPROCESS] = &preprocess_ops,
    [LAYER_ADD] = &add_ops,
    [LAYER_BATCHNORM] = &batchnorm_ops,
    [LAYER_DEPTHWISE_CONV2D] = &depthwise_conv2d_ops,
    [LAYER_SEPARABLE_CONV2D] = &separable_conv2d_ops,
    [LAYER_ACTIVATION] = &activation_ops,
};
_Static_assert(sizeof layer_ops / sizeof layer_ops[0] == LAYER_KIND_COUNT,
               "layer_ops needs one entry per LayerKind (docs/adding-a-layer-kind.md)");

/* ---- Dense ---- */

void dense_forward(float *out, const float *in, const float *w, const float *b, int N, int IN,
                   int U) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, U, IN, 1.0f, in, IN, w, U, 0.0f, out,
                U);
    if (b)
        for (int n = 0; n < N; n++)
            for (int u = 0; u < U; u++) out[(size_t)n * U + u] += b[u];
}

void dense_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                    const float *w, int N, int IN, int U) {
    if (db) bias_grad_add(db, dout, N, U);
    if (dw) /* dw (IN, U) += in^T (IN, N) x dout (N, U) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, IN, U, N, 1.0f, in, IN, dout, U, 1.0f,
                    dw, U);
    if (din) /* din (N, IN) = dout (N, U) x w^T (U, IN) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, IN, U, 1.0f, dout, U, w, U, 0.0f,
                    din, IN);
}

static int dense_configure(Layer *L, IniFile *ini, Section *s, Err *e) {
    if (sec_get_int(ini, s, "units", 1, 0, 1, 1 << 24, &L->units, e)) return -1;
    return layer_configure_common(L, ini, s, e);
}

static int dense_plan(Layer *L, Err *e) {
    if (!L->in.flat) {
        /* Keras applies Dense to the last axis of a spatial tensor; we require a Flatten first,
         * which is what every model of the book does. */
        char w[320];
        err_set(e,
                "layer %s (%s): Dense needs a flat input, but gets %dx%dx%d: add a "
                "[flatten] before it",
                L->name, layer_where(L, w, sizeof w), L->in.h, L->in.w, L->in.c);
        return -1;
    }
    L->out = (Shape){1, 1, L->units, 1};
    layer_param_add(L, "kernel", PARAM_WEIGHT, 2, L->in.c, L->units, 0, 0);
    if (L->use_bias) layer_param_add(L, "bias", PARAM_WEIGHT, 1, L->units, 0, 0, 0);
    return 0;
}

static void dense_init(const Layer *L, float *const *p, Rng *rng) {
    init_glorot_uniform(p[0], L->param[0].n, L->in.c, L->units, rng);
    if (L->use_bias) memset(p[1], 0, L->param[1].n * sizeof *p[1]);
}

static void dense_layer_forward(const Layer *L, const LayerCtx *c, float *out, const float *in,
                                int N) {
    dense_forward(out, in, c->w, c->b, N, L->in.c, L->units);
    activation_forward(layer_act(L), out, out, (size_t)N * L->units);
}

static void dense_layer_backward(const Layer *L, const LayerCtx *c, float *din, float *dout,
                                 const float *in, const float *out, int N) {
    activation_backward(layer_act(L), dout, dout, out, (size_t)N * L->units);
    dense_backward(din, c->dw, c->db, dout, in, c->w, N, L->in.c, L->units);
}

const LayerOps dense_ops = {
    .section = "dense",
    .keras_name = "Dense",
    .keras3_key = "dense",
    .onnx = LAYER_ONNX_DENSE,
    .configure = dense_configure,
    .plan = dense_plan,
    .init = dense_init,
    .forward = dense_layer_forward,
    .backward = dense_layer_backward,
    .backward_reads = layer_reads_input_and_act,
};

/* ---- Flatten and other shape-preserving layers ---- */

static int no_keys(Layer *L, IniFile *ini, Section *s, Err *e) {
    L->trainable = 0;
    return 0;
}

static int flatten_plan(Layer *L, Err *e) {
    L->out = (Shape){1, 1, (int)shape_size(L->in), 1};
    return 0;
}

static int same_shape_plan(Layer *L, Err *e) {
    L->out = L->in;
    return 0;
}

static void copy_forward(const Layer *L, const LayerCtx *c, float *out, const float *in, int N) {
    memcpy(out, in, (size_t)N * shape_size(L->in) * sizeof *out);
}

static void copy_backward(const Layer *L, const LayerCtx *c, float *din, float *dout,
                          const float *in, const float *out, int N) {
    if (din) memcpy(din, dout, (size_t)N * shape_size(L->in) * sizeof *din);
}

const LayerOps flatten_ops = {
    .section = "flatten",
    .keras_name = "Flatten",
    .keras3_key = "flatten",
    .onnx = LAYER_ONNX_FLATTEN,
    .configure = no_keys,
    .plan = flatten_plan,
    .forward = copy_forward,
    .backward = copy_backward,
    .backward_reads = layer_reads_nothing,
};

/* ---- Dropout: inverted dropout, the mask keyed on (seed, epoch, layer, sample) ---- */

static int dropout_configure(Layer *L, IniFile *ini, Section *s, Err *e) {
    L->trainable = 0;
    return sec_get_float(ini, s, "rate", 1, 0, 0.0, 0.999, &L->u.dropout.rate, e);
}

static int dropout_plan(Layer *L, Err *e) {
    L->out = L->in;
    L->aux_per_sample = shape_size(L->in); /* one byte per unit: kept or dropped */
    return 0;
}

static void dropout_forward(const Layer *L, const LayerCtx *c, float *out, const float *in, int N) {
    const size_t S = shape_size(L->in);
    const float rate = L->u.dropout.rate, keep_scale = 1.0f / (1.0f - rate);
    if (!c->training || rate == 0.0f) {
        copy_forward(L, c, out, in, N);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        Rng r = rng_keyed(c->seed, RNG_DROPOUT,
                          ((uint64_t)c->epoch << 20) + (uint64_t)c->layer_index,
                          (uint64_t)c->sample_ids[n]);
        uint8_t *mask = (uint8_t *)c->aux + (size_t)n * S;
        const float *x = in + (size_t)n * S;
        float *y = out + (size_t)n * S;
        for (size_t i = 0; i < S; i++) {
            mask[i] = rng_uniform(&r) >= rate;
            y[i] = mask[i] ? x[i] * keep_scale : 0.0f;
        }
    }
}

static void dropout_backward(const Layer *L, const LayerCtx *c, float *din, float *dout,
                             const float *in, const float *out, int N) {
    if (!din) return;
    const size_t total = (size_t)N * shape_size(L->in);
    const float rate = L->u.dropout.rate, keep_scale = 1.0f / (1.0f - rate);
    if (!c->training || rate == 0.0f) {
        memcpy(din, dout, total * sizeof *din);
        return;
    }
    const uint8_t *mask = c->aux;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < total; i++) din[i] = mask[i] ? dout[i] * keep_scale : 0.0f;
}

/* rate 0 is the identity: not random */
static int dropout_is_random(const Layer *L) { return L->u.dropout.rate > 0; }

const LayerOps dropout_ops = {
    .section = "dropout",
    .keras_name = "Dropout",
    .keras3_key = "dropout",
    .onnx = LAYER_ONNX_IDENTITY,
    .configure = dropout_configure,
    .plan = dropout_plan,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .flags = LAYER_F_RANDOM,
    .backward_reads = layer_reads_nothing,
    .is_random = dropout_is_random,
};

/* ---- Rescaling: y = x * scale + offset ---- */

static int rescaling_configure(Layer *L, IniFile *ini, Section *s, Err *e) {
    L->trainable = 0;
    if (sec_get_float(ini, s, "scale", 1, 1.0, -1e30, 1e30, &L->u.rescale.scale, e)) return -1;
    return sec_get_float(ini, s, "offset", 0, 0.0, -1e30, 1e30, &L->u.rescale.offset, e);
}

static void rescaling_forward(const Layer *L, const LayerCtx *c, float *out, const float *in,
                              int N) {
    const size_t total = (size_t)N * shape_size(L->in);
    const float s = L->u.rescale.scale, o = L->u.rescale.offset;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < total; i++) out[i] = in[i] * s + o;
}

static void rescaling_backward(const Layer *L, const LayerCtx *c, float *din, float *dout,
                               const float *in, const float *out, int N) {
    if (!din) return;
    const size_t total = (size_t)N * shape_size(L->in);
    const float s = L->u.rescale.scale;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < total; i++) din[i] = dout[i] * s;
}

const LayerOps rescaling_ops = {
    .section = "rescaling",
    .keras_name = "Rescaling",
    .keras3_key = "rescaling",
    .onnx = LAYER_ONNX_RESCALING,
    .configure = rescaling_configure,
    .plan = same_shape_plan,
    .forward = rescaling_forward,
    .backward = rescaling_backward,
    .backward_reads = layer_reads_nothing,
};

/* ---- GlobalAveragePooling2D: (N, H, W, C) -> (N, C), the mean over H x W ---- */

static int global_avgpool_plan(Layer *L, Err *e) {
    if (L->in.flat) {
        char w[320];
        err_set(e, "layer %s (%s): GlobalAveragePooling2D needs a spatial (H, W, C) input", L->name,
                layer_where(L, w, sizeof w));
        return -1;
    }
    L->out = (Shape){1, 1, L->in.c, 1};
    return 0;
}

static void global_avgpool_forward(const Layer *L, const LayerCtx *c, float *out, const float *in,
                                   int N) {
    const size_t P = (size_t)L->in.h * L->in.w;
    const int C = L->in.c;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = in + (size_t)n * P * C;
        float *y = out + (size_t)n * C;
        for (int k = 0; k < C; k++) y[k] = 0.0f;
        for (size_t p = 0; p < P; p++)
            for (int k = 0; k < C; k++) y[k] += x[p * C + k];
        for (int k = 0; k < C; k++) y[k] /= (float)P;
    }
}

static void global_avgpool_backward(const Layer *L, const LayerCtx *c, float *din, float *dout,
                                    const float *in, const float *out, int N) {
    if (!din) return;
    const size_t P = (size_t)L->in.h * L->in.w;
    const int C = L->in.c;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (size_t p = 0; p < P; p++)
            for (int k = 0; k < C; k++)
                din[((size_t)n * P + p) * C + k] = dout[(size_t)n * C + k] / (float)P;
}

const LayerOps global_avgpool_ops = {
    .section = "global_average_pooling2d",
    .keras_name = "GlobalAveragePooling2D",
    .keras3_key = "global_average_pooling2d",
    .onnx = LAYER_ONNX_GLOBAL_AVGPOOL,
    .configure = no_keys,
    .plan = global_avgpool_plan,
    .forward = global_avgpool_forward,
    .backward = global_avgpool_backward,
    .backward_reads = layer_reads_nothing,
};

/* ---- Add: the element-wise sum of same-shape inputs (Keras layers.add) ---- */

static int add_plan(Layer *L, Err *e) {
    char w[320];
    const int n = L->n_inputs;
    if (n < 2) {
        err_set(e, "layer %s (%s): Add needs at least two inputs (inputs = a, b)", L->name,
                layer_where(L, w, sizeof w));
        return -1;
    }
    for (int k = 1; k < n; k++) {
        Shape a = L->in_shapes[0], b = L->in_shapes[k];
        if (a.h != b.h || a.w != b.w || a.c != b.c || a.flat != b.flat) {
            err_set(
                e, "layer %s (%s): Add of unlike shapes: input 1 is %dx%dx%d, input %d is %dx%dx%d",
                L->name, layer_where(L, w, sizeof w), a.h, a.w, a.c, k + 1, b.h, b.w, b.c);
            return -1;
        }
    }
    L->out = L->in;
    return 0;
}

static void add_forward(const Layer *L, const LayerCtx *c, float *out, const float *in, int N) {
    const size_t total = (size_t)N * shape_size(L->in);
    memcpy(out, c->ins[0], total * sizeof *out);
    for (int k = 1; k < c->n_ins; k++) {
        const float *x = c->ins[k];
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < total; i++) out[i] += x[i];
    }
}

static void add_backward(const Layer *L, const LayerCtx *c, float *din, float *dout,
                         const float *in, const float *out, int N) {
    const size_t total = (size_t)N * shape_size(L->in);
    for (int k = 0; k < c->n_ins; k++)
        if (c->dins[k]) memcpy(c->dins[k], dout, total * sizeof *dout);
}

const LayerOps add_ops = {
    .section = "add",
    .keras_name = "Add",
    .keras3_key = "add",
    .onnx = LAYER_ONNX_ADD,
    .configure = no_keys,
    .plan = add_plan,
    .forward = add_forward,
    .backward = add_backward,
    .flags = LAYER_F_MULTI_INPUT,
    .backward_reads = layer_reads_nothing,
};

/* ---- Activation: y = act(x) (Keras's layers.Activation; softmax only as the last layer) ---- */

static int activation_configure(Layer *L, IniFile *ini, Section *s, Err *e) {
    return layer_configure_activation(L, ini, s, 1, e);
}

/* One parallel pass each way (a serial memcpy, then the activation in place, took 55 ms per
 * step for one 176 x 176 x 32 batch-32 Activation on 2 Zen 1 cores). */
static void activation_layer_forward(const Layer *L, const LayerCtx *c, float *out, const float *in,
                                     int N) {
    (void)c;
    activation_forward(layer_act(L), out, in, (size_t)N * shape_size(L->out));
}

static void activation_layer_backward(const Layer *L, const LayerCtx *c, float *din, float *dout,
                                      const float *in, const float *out, int N) {
    (void)c, (void)in;
    if (din) activation_backward(layer_act(L), din, dout, out, (size_t)N * shape_size(L->out));
}

const LayerOps activation_ops = {
    .section = "activation",
    .keras_name = "Activation",
    .keras3_key = "activation",
    .onnx = LAYER_ONNX_ACTIVATION,
    .configure = activation_configure,
    .plan = same_shape_plan,
    .forward = activation_layer_forward,
    .backward = activation_layer_backward,
    .backward_reads = layer_act_reads,
};
