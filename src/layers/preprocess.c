/* preprocess.c: the [preprocess] layer, Keras's imagenet_utils.preprocess_input for pretrained
 * ImageNet bases on RGB pixels in 0..255: caffe (VGG16, ResNet50: RGB to BGR, then the ImageNet
 * BGR mean subtracted), tf (x / 127.5 - 1) and torch (x / 255, minus the ImageNet mean, over its
 * standard deviation). A fixed per-channel affine map with a channel permutation: no parameters;
 * backward applies its transpose so gradients can flow to the input. */
#include <string.h>

#include "layers/layer_impl.h"

static int preprocess_configure(Layer *L, IniFile *ini, Section *s, Err *e) {
    static const char *const modes[] = {"caffe", "tf", "torch", NULL};
    int mode;
    if (sec_get_enum(ini, s, "mode", 0, PREPROCESS_CAFFE, modes, &mode, e)) return -1;
    PreprocessCfg *p = &L->u.pre;
    p->mode = (PreprocessMode)mode;
    for (int c = 0; c < 3; c++) {
        p->src[c] = c;
        p->mean[c] = 0.0f;
        p->std[c] = 1.0f;
    }
    p->div = 1.0f;
    if (p->mode == PREPROCESS_CAFFE) {
        static const float bgr_mean[3] = {103.939f, 116.779f, 123.68f};
        for (int c = 0; c < 3; c++) {
            p->src[c] = 2 - c;
            p->mean[c] = bgr_mean[c];
        }
    } else if (p->mode == PREPROCESS_TF) {
        p->div = 127.5f;
        for (int c = 0; c < 3; c++) p->mean[c] = 1.0f;
    } else {
        static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
        p->div = 255.0f;
        memcpy(p->mean, mean, sizeof mean);
        memcpy(p->std, std, sizeof std);
    }
    L->trainable = 0;
    return 0;
}

static int preprocess_plan(Layer *L, Err *e) {
    if (L->in.flat || L->in.c != 3) {
        char w[320];
        err_set(e, "layer %s (%s): [preprocess] needs an RGB image input (H, W, 3), got %dx%dx%d%s",
                L->name, layer_where(L, w, sizeof w), L->in.h, L->in.w, L->in.c,
                L->in.flat ? " (a flat vector)" : ": set [data] color_mode = rgb");
        return -1;
    }
    L->out = L->in;
    return 0;
}

static void preprocess_forward(const Layer *L, const LayerCtx *c, float *out, const float *in,
                               int N) {
    const PreprocessCfg *p = &L->u.pre;
    const size_t pixels = (size_t)N * L->in.h * L->in.w;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < pixels; i++)
        for (int k = 0; k < 3; k++)
            out[3 * i + k] = (in[3 * i + p->src[k]] / p->div - p->mean[k]) / p->std[k];
}

/* The map is y[k] = x[src[k]] / (div * std[k]) + const: din[src[k]] = dout[k] / (div * std[k]). */
static void preprocess_backward(const Layer *L, const LayerCtx *c, float *din, float *dout,
                                const float *in, const float *out, int N) {
    if (!din) return;
    const PreprocessCfg *p = &L->u.pre;
    const size_t pixels = (size_t)N * L->in.h * L->in.w;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < pixels; i++)
        for (int k = 0; k < 3; k++) din[3 * i + p->src[k]] = dout[3 * i + k] / p->div / p->std[k];
}

/* Keras has no such layer (preprocess_input is a function): no Keras 3 key */
const LayerOps preprocess_ops = {
    .section = "preprocess",
    .keras_name = "Preprocess",
    .onnx = LAYER_ONNX_PREPROCESS,
    .configure = preprocess_configure,
    .plan = preprocess_plan,
    .forward = preprocess_forward,
    .backward = preprocess_backward,
    .flags = LAYER_F_NO_KERAS,
    .backward_reads = layer_reads_nothing,
};
