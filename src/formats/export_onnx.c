/* export_onnx.c: the inference graph of a model as ONNX (opset 13), through the protobuf-c code
 * that the build generates from Debian's onnx.proto (libonnx-dev; Makefile: build/onnx/).
 *
 * The graph, in order:
 *   input "input": float32 (N, H, W, C), the pixels as `predict` decodes them (0..255, RGB or
 *     grayscale), NHWC as users feed them;
 *   Mul + Add: the job's [data] scale and offset (x * scale + offset), as predict applies them;
 *   Transpose perm (0, 3, 1, 2): NHWC to NCHW, the layout of ONNX's Conv and pools;
 *   the layers: Conv2D -> Conv (kernel (KH, KW, C, OC) transposed to (OC, C, KH, KW); explicit
 *     pads [top, left, bottom, right], Keras's "same" puts the extra row/column at the bottom/
 *     right), MaxPooling2D -> MaxPool, GlobalAveragePooling2D -> GlobalAveragePool + Flatten,
 *     Flatten -> Transpose back to NHWC (Keras flattens in H, W, C order) + Flatten, Dense ->
 *     Gemm (B: the kernel as (UNITS, IN), transB = 1), Rescaling -> Mul + Add, [preprocess] ->
 *     a 1x1 Conv (the channel swap and the per-channel (x / div - mean) / std), activations
 *     Relu, LeakyRelu
 *     (alpha 0.1, Darknet's), Sigmoid; Dropout and the augmentation layers are identities at
 *     inference and left out; Darknet bases are plain Conv/MaxPool layers here (batch norm is
 *     folded into their kernels at import), frozen or not;
 *   the output "probabilities": Softmax over the classes (N, K), or Sigmoid for a 1-unit model
 *     (N, 1): class 1's probability, as predict computes them from the last layer.
 * Every tensor and node is named after its layer (conv2d_1, conv2d_1_relu, ...). Which of the
 * translations above a layer takes is its kind's LayerOps.onnx (include/layer.h); a kind
 * without one is refused with a message naming the layer.
 */
#include "export.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "onnx.pb-c.h"

#define ONNX_OPSET 13
#define ONNX_IR_VERSION 7 /* the IR of opset 13 (ONNX 1.8) */

/* The graph under construction; every allocation is kept in `owned` and freed at the end. */
typedef struct {
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    void **owned;
    size_t n_owned, cap_owned;
    const char *cur; /* the tensor the next node reads */
    int layout;      /* of cur: 0 NHWC (the input), 1 NCHW, 2 flat (N, F) */
} Graph;

static void grow(void ***v, size_t *cap, size_t n) {
    if (n < *cap) return;
    size_t nc = *cap ? *cap * 2 : 64;
    void **nv = xmalloc(nc * sizeof *nv);
    if (n) memcpy(nv, *v, n * sizeof *nv);
    free(*v);
    *v = nv;
    *cap = nc;
}

static void *own(Graph *g, void *p) {
    grow(&g->owned, &g->cap_owned, g->n_owned);
    g->owned[g->n_owned++] = p;
    return p;
}

static void *galloc(Graph *g, size_t n) { return own(g, xcalloc(1, n)); }

static char *gstr(Graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *gstr(Graph *g, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return own(g, xstrdup(buf));
}

static Onnx__AttributeProto *attr_ints(Graph *g, const char *name, const int64_t *v, int n) {
    Onnx__AttributeProto *a = galloc(g, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = gstr(g, "%s", name);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->n_ints = (size_t)n;
    a->ints = galloc(g, (size_t)n * sizeof *a->ints);
    memcpy(a->ints, v, (size_t)n * sizeof *v);
    return a;
}

/* A scalar attribute (INT or FLOAT). */
static Onnx__AttributeProto *attr_scalar(Graph *g, const char *name, int is_float, int64_t i,
                                         float f) {
    Onnx__AttributeProto *a = galloc(g, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = gstr(g, "%s", name);
    a->has_type = 1;
    a->type = is_float ? ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT
                       : ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_f = is_float;
    a->f = f;
    a->has_i = !is_float;
    a->i = i;
    return a;
}

static Onnx__AttributeProto *attr_int(Graph *g, const char *name, int64_t v) {
    return attr_scalar(g, name, 0, v, 0.0f);
}

static Onnx__AttributeProto *attr_float(Graph *g, const char *name, float v) {
    return attr_scalar(g, name, 1, 0, v);
}

/* A float32 initializer `name` of the given dims holding data (copied, little-endian raw). */
static const char *add_tensor(Graph *g, const char *name, const int64_t *dims, int rank,
                              const float *data) {
    Onnx__TensorProto *t = galloc(g, sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = gstr(g, "%s", name);
    t->n_dims = (size_t)rank;
    t->dims = galloc(g, ((size_t)rank + 1) * sizeof *t->dims);
    size_t n = 1;
    for (int i = 0; i < rank; i++) {
        t->dims[i] = dims[i];
        n *= (size_t)dims[i];
    }
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->has_raw_data = 1;
    t->raw_data.len = n * sizeof(float);
    t->raw_data.data = galloc(g, t->raw_data.len + 1);
    memcpy(t->raw_data.data, data, t->raw_data.len); /* x86-64: already little-endian */
    grow((void ***)&g->inits, &g->cap_inits, g->n_inits);
    g->inits[g->n_inits++] = t;
    return t->name;
}

static const char *add_scalar(Graph *g, const char *name, float v) {
    return add_tensor(g, name, NULL, 0, &v);
}

/* Node op(inputs...) -> out, with n_attr attributes; out becomes the current tensor. */
static void add_node(Graph *g, const char *op, const char *out, const char *const *in, int n_in,
                     Onnx__AttributeProto **attrs, int n_attr) {
    Onnx__NodeProto *nd = galloc(g, sizeof *nd);
    onnx__node_proto__init(nd);
    nd->op_type = gstr(g, "%s", op);
    nd->name = gstr(g, "%s", out);
    nd->n_input = (size_t)n_in;
    nd->input = galloc(g, (size_t)n_in * sizeof *nd->input);
    for (int i = 0; i < n_in; i++) nd->input[i] = gstr(g, "%s", in[i]);
    nd->n_output = 1;
    nd->output = galloc(g, sizeof *nd->output);
    nd->output[0] = gstr(g, "%s", out);
    if (n_attr) {
        nd->n_attribute = (size_t)n_attr;
        nd->attribute = galloc(g, (size_t)n_attr * sizeof *nd->attribute);
        memcpy(nd->attribute, attrs, (size_t)n_attr * sizeof *attrs);
    }
    grow((void ***)&g->nodes, &g->cap_nodes, g->n_nodes);
    g->nodes[g->n_nodes++] = nd;
    g->cur = nd->output[0];
}

static void unary(Graph *g, const char *op, const char *out) {
    add_node(g, op, out, &g->cur, 1, NULL, 0);
}

static void transpose(Graph *g, const char *out, const int64_t perm[4]) {
    Onnx__AttributeProto *a = attr_ints(g, "perm", perm, 4);
    add_node(g, "Transpose", out, &g->cur, 1, &a, 1);
}

/* x * scale + offset (each node only when it changes something). */
static void affine(Graph *g, const char *base, float scale, float offset) {
    if (scale != 1.0f) {
        const char *in[2] = {g->cur, add_scalar(g, gstr(g, "%s_scale", base), scale)};
        add_node(g, "Mul", gstr(g, "%s_mul", base), in, 2, NULL, 0);
    }
    if (offset != 0.0f) {
        const char *in[2] = {g->cur, add_scalar(g, gstr(g, "%s_offset", base), offset)};
        add_node(g, "Add", gstr(g, "%s_add", base), in, 2, NULL, 0);
    }
}

static void activation(Graph *g, const Layer *L) {
    Activation a = layer_act(L); /* the last layer's softmax/sigmoid: once, at the output */
    if (a == ACT_RELU) unary(g, "Relu", gstr(g, "%s_relu", L->name));
    if (a == ACT_SIGMOID) unary(g, "Sigmoid", gstr(g, "%s_sigmoid", L->name));
    if (a == ACT_LEAKY) {
        Onnx__AttributeProto *at = attr_float(g, "alpha", LEAKY_SLOPE);
        add_node(g, "LeakyRelu", gstr(g, "%s_leaky", L->name), &g->cur, 1, &at, 1);
    }
}

/* kernel_shape, strides, pads of a windowed layer (Conv, MaxPool): Keras's output size with
 * explicit pads, the bottom/right ones making up the rest. -1 when ONNX cannot express it. */
static int window_attrs(Graph *g, const Layer *L, Onnx__AttributeProto **at) {
    int64_t pb = (int64_t)(L->out.h - 1) * L->sh + L->kh - L->in.h - L->pad_top;
    int64_t pr = (int64_t)(L->out.w - 1) * L->sw + L->kw - L->in.w - L->pad_left;
    if (pb < 0) pb = 0;
    if (pr < 0) pr = 0;
    if ((L->in.h + L->pad_top + pb - L->kh) / L->sh + 1 != L->out.h ||
        (L->in.w + L->pad_left + pr - L->kw) / L->sw + 1 != L->out.w)
        return -1;
    int64_t k[2] = {L->kh, L->kw}, s[2] = {L->sh, L->sw};
    int64_t p[4] = {L->pad_top, L->pad_left, pb, pr};
    at[0] = attr_ints(g, "kernel_shape", k, 2);
    at[1] = attr_ints(g, "strides", s, 2);
    at[2] = attr_ints(g, "pads", p, 4);
    return 0;
}

static int emit_conv(Graph *g, const Layer *L, const float *w, const float *b, Err *e) {
    const int KH = L->kh, KW = L->kw, C = L->in.c, OC = L->units;
    float *t = xmalloc((size_t)OC * C * KH * KW * sizeof *t);
    for (int kh = 0; kh < KH; kh++) /* (KH, KW, C, OC) -> (OC, C, KH, KW) */
        for (int kw = 0; kw < KW; kw++)
            for (int c = 0; c < C; c++)
                for (int oc = 0; oc < OC; oc++)
                    t[(((size_t)oc * C + c) * KH + kh) * KW + kw] =
                        w[(((size_t)kh * KW + kw) * C + c) * OC + oc];
    int64_t dims[4] = {OC, C, KH, KW}, bd[1] = {OC};
    const char *in[3] = {g->cur, add_tensor(g, gstr(g, "%s_kernel", L->name), dims, 4, t), NULL};
    free(t);
    if (b) in[2] = add_tensor(g, gstr(g, "%s_bias", L->name), bd, 1, b);
    Onnx__AttributeProto *at[3];
    if (window_attrs(g, L, at)) {
        err_set(e, "export onnx: layer '%s': its padding has no ONNX Conv equivalent", L->name);
        return -1;
    }
    add_node(g, "Conv", L->name, in, b ? 3 : 2, at, 3);
    activation(g, L);
    return 0;
}

/* Depthwise Conv (group = C) with L's window: kernel (KH, KW, C, 1) -> (C, 1, KH, KW). */
static int emit_depthwise(Graph *g, const Layer *L, const float *w, const float *b, const char *out,
                          Err *e) {
    const int KH = L->kh, KW = L->kw, C = L->in.c;
    float *t = xmalloc((size_t)C * KH * KW * sizeof *t);
    for (int kh = 0; kh < KH; kh++)
        for (int kw = 0; kw < KW; kw++)
            for (int c = 0; c < C; c++)
                t[((size_t)c * KH + kh) * KW + kw] = w[((size_t)kh * KW + kw) * C + c];
    int64_t dims[4] = {C, 1, KH, KW}, bd[1] = {C};
    const char *in[3] = {g->cur, add_tensor(g, gstr(g, "%s_depthwise_kernel", L->name), dims, 4, t),
                         NULL};
    free(t);
    if (b) in[2] = add_tensor(g, gstr(g, "%s_bias", L->name), bd, 1, b);
    Onnx__AttributeProto *at[4];
    if (window_attrs(g, L, at)) {
        err_set(e, "export onnx: layer '%s': its padding has no ONNX Conv equivalent", L->name);
        return -1;
    }
    at[3] = attr_int(g, "group", C);
    add_node(g, "Conv", out, in, b ? 3 : 2, at, 4);
    return 0;
}

/* SeparableConv2D: the depthwise Conv, then a 1x1 Conv with pointwise_kernel (1, 1, C, OC). */
static int emit_separable(Graph *g, const Layer *L, const float *const *p, Err *e) {
    if (emit_depthwise(g, L, p[0], NULL, gstr(g, "%s_depthwise", L->name), e)) return -1;
    const int C = L->in.c, OC = L->units;
    float *t = xmalloc((size_t)OC * C * sizeof *t);
    for (int c = 0; c < C; c++)
        for (int o = 0; o < OC; o++) t[(size_t)o * C + c] = p[1][(size_t)c * OC + o];
    int64_t dims[4] = {OC, C, 1, 1}, bd[1] = {OC}, one[2] = {1, 1};
    const char *in[3] = {g->cur, add_tensor(g, gstr(g, "%s_pointwise_kernel", L->name), dims, 4, t),
                         NULL};
    free(t);
    if (L->use_bias) in[2] = add_tensor(g, gstr(g, "%s_bias", L->name), bd, 1, p[2]);
    Onnx__AttributeProto *at = attr_ints(g, "kernel_shape", one, 2);
    add_node(g, "Conv", L->name, in, L->use_bias ? 3 : 2, &at, 1);
    activation(g, L);
    return 0;
}

/* BatchNormalization in inference mode: the moving statistics; gamma 1 / beta 0 when absent. */
static void emit_batchnorm(Graph *g, const Layer *L, const float *const *p) {
    const int C = L->in.c, has_g = L->u.bn.scale, has_b = L->u.bn.center, mi = has_g + has_b;
    float *ones = xmalloc((size_t)C * sizeof *ones), *zeros = xcalloc((size_t)C, sizeof *zeros);
    for (int c = 0; c < C; c++) ones[c] = 1.0f;
    int64_t d[1] = {C};
    const char *in[5] = {g->cur,
                         add_tensor(g, gstr(g, "%s_gamma", L->name), d, 1, has_g ? p[0] : ones),
                         add_tensor(g, gstr(g, "%s_beta", L->name), d, 1, has_b ? p[has_g] : zeros),
                         add_tensor(g, gstr(g, "%s_moving_mean", L->name), d, 1, p[mi]),
                         add_tensor(g, gstr(g, "%s_moving_variance", L->name), d, 1, p[mi + 1])};
    free(ones), free(zeros);
    Onnx__AttributeProto *at = attr_float(g, "epsilon", L->u.bn.epsilon);
    add_node(g, "BatchNormalization", L->name, in, 5, &at, 1);
}

/* Gemm with B = the kernel transposed to (UNITS, IN) and transB = 1: OpenCV 4.6's importer
 * reads a constant B as (outputs, inputs) whatever transB says. */
static void emit_dense(Graph *g, const Layer *L, const float *w, const float *b) {
    const int IN = L->in.c, U = L->units;
    float *t = xmalloc((size_t)IN * U * sizeof *t);
    for (int i = 0; i < IN; i++)
        for (int u = 0; u < U; u++) t[(size_t)u * IN + i] = w[(size_t)i * U + u];
    int64_t dims[2] = {U, IN}, bd[1] = {U};
    const char *in[3] = {g->cur, add_tensor(g, gstr(g, "%s_kernel", L->name), dims, 2, t), NULL};
    free(t);
    if (b) in[2] = add_tensor(g, gstr(g, "%s_bias", L->name), bd, 1, b);
    Onnx__AttributeProto *at = attr_int(g, "transB", 1);
    add_node(g, "Gemm", L->name, in, b ? 3 : 2, &at, 1);
    activation(g, L);
}

/* [preprocess]: y[k] = (x[src[k]] / div - mean[k]) / std[k] as a 1x1 Conv over the channels. */
static void emit_preprocess(Graph *g, const Layer *L) {
    const PreprocessCfg *p = &L->u.pre;
    float w[9] = {0}, b[3];
    for (int k = 0; k < 3; k++) {
        w[k * 3 + p->src[k]] = 1.0f / (p->div * p->std[k]);
        b[k] = -p->mean[k] / p->std[k];
    }
    int64_t dims[4] = {3, 3, 1, 1}, bd[1] = {3};
    const char *in[3] = {g->cur, add_tensor(g, gstr(g, "%s_kernel", L->name), dims, 4, w),
                         add_tensor(g, gstr(g, "%s_bias", L->name), bd, 1, b)};
    int64_t one[2] = {1, 1};
    Onnx__AttributeProto *at = attr_ints(g, "kernel_shape", one, 2);
    add_node(g, "Conv", L->name, in, 3, &at, 1);
}

static void flatten(Graph *g, const char *base) {
    static const int64_t to_nhwc[4] = {0, 2, 3, 1};
    if (g->layout == 2) return;
    if (g->layout == 1) transpose(g, gstr(g, "%s_nhwc", base), to_nhwc);
    Onnx__AttributeProto *a = attr_int(g, "axis", 1);
    add_node(g, "Flatten", base, &g->cur, 1, &a, 1);
    g->layout = 2;
}

/* names: the ONNX tensor of each of L's inputs (names[0] is g->cur). The kind's LayerOps entry
 * says which translation it takes. */
static int emit_layer(Graph *g, const Model *m, const Layer *L, const char *const *names, Err *e) {
    const float *p[LAYER_MAX_PARAMS] = {0};
    for (int i = 0; i < L->n_param; i++) p[i] = m->params + L->param[i].off;
    const float *w = p[0], *b = p[1];
    const LayerOps *ops = layer_ops[L->kind];
    switch (ops->onnx) {
    case LAYER_ONNX_CONV: return emit_conv(g, L, w, b, e);
    case LAYER_ONNX_DEPTHWISE:
        if (emit_depthwise(g, L, w, L->use_bias ? b : NULL, L->name, e)) return -1;
        activation(g, L);
        return 0;
    case LAYER_ONNX_SEPARABLE: return emit_separable(g, L, p, e);
    case LAYER_ONNX_BATCHNORM: emit_batchnorm(g, L, p); return 0;
    case LAYER_ONNX_ACTIVATION: activation(g, L); return 0;
    case LAYER_ONNX_ADD:
        for (int k = 1; k < graph_n_inputs(L); k++) {
            const char *in[2] = {g->cur, names[k]};
            add_node(g, "Add", k + 1 == graph_n_inputs(L) ? L->name : gstr(g, "%s_%d", L->name, k),
                     in, 2, NULL, 0);
        }
        return 0;
    case LAYER_ONNX_MAXPOOL: {
        Onnx__AttributeProto *at[3];
        if (window_attrs(g, L, at)) {
            err_set(e, "export onnx: layer '%s': its padding has no ONNX MaxPool equivalent",
                    L->name);
            return -1;
        }
        add_node(g, "MaxPool", L->name, &g->cur, 1, at, 3);
        return 0;
    }
    case LAYER_ONNX_GLOBAL_AVGPOOL:
        unary(g, "GlobalAveragePool", gstr(g, "%s_pool", L->name));
        g->layout = 1; /* (N, C, 1, 1): flattening it is the same in either order */
        flatten(g, L->name);
        return 0;
    case LAYER_ONNX_FLATTEN: flatten(g, L->name); return 0;
    case LAYER_ONNX_DENSE: emit_dense(g, L, w, b); return 0;
    case LAYER_ONNX_RESCALING:
        affine(g, L->name, L->u.rescale.scale, L->u.rescale.offset);
        return 0;
    case LAYER_ONNX_PREPROCESS: emit_preprocess(g, L); return 0;
    case LAYER_ONNX_IDENTITY: /* Dropout, augmentation: identities at inference */ return 0;
    case LAYER_ONNX_UNSET:
    case LAYER_ONNX_COUNT: break;
    }
    err_set(e,
            "export onnx: layer '%s' (kind %s) has no ONNX translation (its LayerOps.onnx is "
            "unset)",
            L->name, ops->keras_name ? ops->keras_name : "?");
    return -1;
}

static Onnx__ValueInfoProto *value_info(Graph *g, const char *name, const int64_t *dims, int rank) {
    Onnx__TensorShapeProto *shape = galloc(g, sizeof *shape);
    onnx__tensor_shape_proto__init(shape);
    shape->n_dim = (size_t)rank;
    shape->dim = galloc(g, (size_t)rank * sizeof *shape->dim);
    for (int i = 0; i < rank; i++) {
        Onnx__TensorShapeProto__Dimension *d = galloc(g, sizeof *d);
        onnx__tensor_shape_proto__dimension__init(d);
        if (dims[i] < 0) { /* the batch: any size */
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = gstr(g, "N");
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        shape->dim[i] = d;
    }
    Onnx__TypeProto__Tensor *tt = galloc(g, sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = shape;
    Onnx__TypeProto *tp = galloc(g, sizeof *tp);
    onnx__type_proto__init(tp);
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    Onnx__ValueInfoProto *v = galloc(g, sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = gstr(g, "%s", name);
    v->type = tp;
    return v;
}

/* The whole graph into g; 0 or -1 with e set. */
static int build_graph(Graph *g, const Model *m, const Job *job, Err *e) {
    static const int64_t to_nchw[4] = {0, 3, 1, 2};
    const Shape in = m->input, os = model_output_shape(m);
    if (in.flat || !os.flat) {
        err_set(e, "export onnx: the model must take an image (H, W, C) and give a vector of "
                   "class scores");
        return -1;
    }
    g->cur = "input";
    g->layout = 0;
    affine(g, "data", job ? job->data.scale : 1.0f, job ? job->data.offset : 0.0f);
    transpose(g, "input_nchw", to_nchw);
    g->layout = 1;
    /* each tensor's ONNX name and layout (t = 0 the input, t = l + 1 layer l's output) */
    const char **t_name = galloc(g, ((size_t)m->n_layers + 1) * sizeof *t_name);
    int *t_layout = galloc(g, ((size_t)m->n_layers + 1) * sizeof *t_layout);
    t_name[0] = g->cur;
    t_layout[0] = g->layout;
    for (int l = 0; l < m->n_layers; l++) {
        const Layer *L = &m->layers[l];
        const char *names[LAYER_MAX_INPUTS];
        for (int k = 0; k < graph_n_inputs(L); k++) {
            int t = graph_input(L, l, k) + 1;
            names[k] = t_name[t];
            if (t_layout[t] != t_layout[graph_input(L, l, 0) + 1]) {
                err_set(e, "export onnx: layer '%s' adds tensors of different ONNX layouts",
                        L->name);
                return -1;
            }
        }
        g->cur = names[0];
        g->layout = t_layout[graph_input(L, l, 0) + 1];
        if (emit_layer(g, m, L, names, e)) return -1;
        t_name[l + 1] = g->cur;
        t_layout[l + 1] = g->layout;
    }
    if (g->layout != 2) flatten(g, "output_flatten");
    if (os.c == 1)
        unary(g, "Sigmoid", "probabilities");
    else {
        Onnx__AttributeProto *a = attr_int(g, "axis", 1);
        add_node(g, "Softmax", "probabilities", &g->cur, 1, &a, 1);
    }
    return 0;
}

int export_onnx(const Model *m, const Job *job, const char *path, Err *e) {
    Graph g;
    memset(&g, 0, sizeof g);
    int rc = build_graph(&g, m, job, e);
    uint8_t *buf = NULL;
    size_t size = 0;
    if (rc == 0) {
        const Shape in = m->input;
        int64_t idims[4] = {-1, in.h, in.w, in.c}, odims[2] = {-1, model_output_shape(m).c};
        Onnx__ValueInfoProto *vi = value_info(&g, "input", idims, 4),
                             *vo = value_info(&g, "probabilities", odims, 2);
        Onnx__GraphProto graph;
        onnx__graph_proto__init(&graph);
        graph.name = gstr(&g, "%s", job && job->name ? job->name : "convnet");
        graph.n_node = g.n_nodes;
        graph.node = g.nodes;
        graph.n_initializer = g.n_inits;
        graph.initializer = g.inits;
        graph.n_input = 1;
        graph.input = &vi;
        graph.n_output = 1;
        graph.output = &vo;
        Onnx__OperatorSetIdProto opset;
        onnx__operator_set_id_proto__init(&opset);
        opset.domain = "";
        opset.has_version = 1;
        opset.version = ONNX_OPSET;
        Onnx__OperatorSetIdProto *ops = &opset;
        Onnx__ModelProto model;
        onnx__model_proto__init(&model);
        model.has_ir_version = 1;
        model.ir_version = ONNX_IR_VERSION;
        model.n_opset_import = 1;
        model.opset_import = &ops;
        model.producer_name = "convnet-dist";
        model.graph = &graph;
        size = onnx__model_proto__get_packed_size(&model);
        buf = xmalloc(size + 1);
        onnx__model_proto__pack(&model, buf);
        IoChunk c = {buf, size};
        rc = file_write_atomic(path, &c, 1, e);
    }
    free(buf);
    for (size_t i = 0; i < g.n_owned; i++) free(g.owned[i]);
    free(g.owned);
    free(g.nodes);
    free(g.inits);
    return rc;
}
