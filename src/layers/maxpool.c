/* maxpool.c: MaxPooling2D (Keras semantics: padding never wins, ties to the first tap in
 * row-major order), on NHWC or oneDNN's nChw16c blocks alike. Two kernels: 2x2 windows at
 * stride 2 (Keras's default) with fixed taps and a kept argmax; every other window with no
 * argmax, the backward finding the taps again from the forward's tensors. */
#include <string.h>

#include "layers/layer_impl.h"

/* ---- MaxPooling2D ---- */

/* The windows of Keras's default MaxPooling2D(2): 2x2 at stride 2, no padding, always inside
 * the input. The forward reads the four taps at fixed offsets, with no per-window tap ranges:
 * 2.6x faster on the MNIST model's first pooling (batch 64, 26x26x32 in nChw16c: 470 -> 180 us,
 * 2 threads). The backward stays the general memset + scatter, which measured faster (160 us)
 * than writing each input gradient once from the four taps (210 us). */
static int pool_is_2x2(const WinGeom *g) {
    return g->KH == 2 && g->KW == 2 && g->SH == 2 && g->SW == 2 && g->PT == 0 && g->PL == 0 &&
           2 * g->OH <= g->H && 2 * g->OW <= g->W; /* same padding may add a row or column */
}

/* The first of the four taps to hold the maximum, in the general kernel's tap order
 * (row-major, strict >), so both paths pick the same argmax on ties. */
static void maxpool_forward_2x2(float *out, int32_t *argmax, const float *in, const WinGeom *g) {
    const int C = g->C;
    const size_t rowf = (size_t)g->W * C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < g->N; n++)
        for (int oh = 0; oh < g->OH; oh++) {
            const float *img = in + (size_t)n * g->H * rowf;
            size_t o = ((size_t)n * g->OH + oh) * g->OW * C;
            for (int ow = 0; ow < g->OW; ow++, o += C) {
                const int32_t b0 = (int32_t)(2 * oh * rowf + (size_t)2 * ow * C);
                const int32_t b1 = b0 + C, b2 = b0 + (int32_t)rowf, b3 = b2 + C;
                for (int c = 0; c < C; c++) {
                    float m = img[b0 + c];
                    int32_t a = b0 + c;
                    const float v1 = img[b1 + c], v2 = img[b2 + c], v3 = img[b3 + c];
                    a = v1 > m ? b1 + c : a;
                    m = v1 > m ? v1 : m;
                    a = v2 > m ? b2 + c : a;
                    m = v2 > m ? v2 : m;
                    a = v3 > m ? b3 + c : a;
                    m = v3 > m ? v3 : m;
                    out[o + c] = m;
                    argmax[o + c] = a;
                }
            }
        }
}

int maxpool2d_keeps_argmax(const WinGeom *g) { return pool_is_2x2(g); }

/* Other windows (the mini-Xception's 3x3 at stride 2) keep no argmax: the forward takes the
 * maximum alone, in registers over channel blocks of 16, and the backward finds each output's
 * first tap holding it again, as TensorFlow's MaxPoolGrad does. Writing the argmax in the
 * forward ran at a fifth of this speed (N 64 x 176 x 176 x 16, 2 Zen 1 cores: 118 ms; GCC
 * turned its index selects into branches), and the 4 bytes per output are not kept. */
#define POOL_CB 16

static inline void pool_max_block(float *best, const float *img, const WinTaps *t, const WinGeom *g,
                                  int c0) {
    const int C = g->C;
    float m[POOL_CB];
    const float *src0 = img + ((size_t)(t->ih0 + t->kh0) * g->W + t->iw0 + t->kw0) * C + c0;
    for (int c = 0; c < POOL_CB; c++) m[c] = src0[c];
    for (int kh = t->kh0; kh < t->kh1; kh++)
        for (int kw = t->kw0; kw < t->kw1; kw++) {
            const float *src = img + ((size_t)(t->ih0 + kh) * g->W + t->iw0 + kw) * C + c0;
#pragma omp simd
            for (int c = 0; c < POOL_CB; c++) m[c] = src[c] > m[c] ? src[c] : m[c];
        }
    for (int c = 0; c < POOL_CB; c++) best[c0 + c] = m[c];
}

void maxpool2d_forward(float *out, int32_t *argmax, const float *in, const WinGeom *g) {
    if (pool_is_2x2(g)) {
        maxpool_forward_2x2(out, argmax, in, g);
        return;
    }
    const int C = g->C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < g->N; n++)
        for (int oh = 0; oh < g->OH; oh++) {
            const float *img = in + (size_t)n * g->H * g->W * C;
            for (int ow = 0; ow < g->OW; ow++) {
                float *best = out + (((size_t)n * g->OH + oh) * g->OW + ow) * C;
                /* each window pixel is a contiguous C-vector: the compares run across channels;
                 * padding is skipped, never wins */
                const WinTaps t = win_taps(g, oh, ow);
                int c0 = 0;
                for (; c0 + POOL_CB <= C; c0 += POOL_CB) pool_max_block(best, img, &t, g, c0);
                for (int c = c0; c < C; c++) {
                    float m = img[((size_t)(t.ih0 + t.kh0) * g->W + t.iw0 + t.kw0) * C + c];
                    for (int kh = t.kh0; kh < t.kh1; kh++)
                        for (int kw = t.kw0; kw < t.kw1; kw++) {
                            const float v = img[((size_t)(t.ih0 + kh) * g->W + t.iw0 + kw) * C + c];
                            m = v > m ? v : m;
                        }
                    best[c] = m;
                }
            }
        }
}

/* Channels [c0, c0 + cb) of one window: the gradient still to give (left) goes to the first tap
 * equal to the output, then is 0 (adding 0 elsewhere changes no sum's value). */
static inline void pool_give_block(float *d, const float *img, const float *dy, const float *y,
                                   const WinTaps *t, const WinGeom *g, int c0) {
    const int C = g->C;
    float left[POOL_CB];
    for (int c = 0; c < POOL_CB; c++) left[c] = dy[c0 + c];
    for (int kh = t->kh0; kh < t->kh1; kh++)
        for (int kw = t->kw0; kw < t->kw1; kw++) {
            const size_t p = ((size_t)(t->ih0 + kh) * g->W + t->iw0 + kw) * C + c0;
            const float *x = img + p;
            float *dx = d + p;
#pragma omp simd
            for (int c = 0; c < POOL_CB; c++) {
                const float give = x[c] == y[c0 + c] ? left[c] : 0.0f;
                dx[c] += give;
                left[c] = x[c] == y[c0 + c] ? 0.0f : left[c];
            }
        }
}

/* One sample's input gradient from its windows: each output's gradient goes to the first tap
 * (row-major) equal to the output, the tap the forward's strict > kept. A NaN output matches
 * no tap: its gradient is dropped. */
static void maxpool_backward_recompute(float *d, const float *go, const float *img, const float *o,
                                       const WinGeom *g) {
    const int C = g->C;
    memset(d, 0, (size_t)g->H * g->W * C * sizeof *d);
    for (int oh = 0; oh < g->OH; oh++)
        for (int ow = 0; ow < g->OW; ow++) {
            const size_t at = ((size_t)oh * g->OW + ow) * C;
            const float *dy = go + at, *y = o + at;
            const WinTaps t = win_taps(g, oh, ow);
            int c0 = 0;
            for (; c0 + POOL_CB <= C; c0 += POOL_CB) pool_give_block(d, img, dy, y, &t, g, c0);
            for (int c = c0; c < C; c++) {
                int done = 0;
                for (int kh = t.kh0; kh < t.kh1 && !done; kh++)
                    for (int kw = t.kw0; kw < t.kw1 && !done; kw++) {
                        const size_t p = ((size_t)(t.ih0 + kh) * g->W + t.iw0 + kw) * C + c;
                        if (img[p] == y[c]) {
                            d[p] += dy[c];
                            done = 1;
                        }
                    }
            }
        }
}

void maxpool2d_backward(float *din, const float *dout, const int32_t *argmax, const float *in,
                        const float *out, const WinGeom *g) {
    const size_t in_size = (size_t)g->H * g->W * g->C, out_size = (size_t)g->OH * g->OW * g->C;
    const int scatter = pool_is_2x2(g);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < g->N; n++) {
        float *d = din + (size_t)n * in_size;
        const float *go = dout + (size_t)n * out_size;
        if (!scatter) {
            maxpool_backward_recompute(d, go, in + (size_t)n * in_size, out + (size_t)n * out_size,
                                       g);
            continue;
        }
        memset(d, 0, in_size * sizeof *d);
        const int32_t *am = argmax + (size_t)n * out_size;
        for (size_t o = 0; o < out_size; o++) d[am[o]] += go[o];
    }
}

static int maxpool2d_configure(Layer *L, IniFile *ini, Section *s, Err *e) {
    L->trainable = 0;
    return layer_configure_window(L, ini, s, "pool_size", 1, e);
}

/* Pooling reads NHWC or nChw16c alike and writes its input's layout: nChw16c is an NHWC batch
 * of N * ceil(C/16) images of 16 channels each, and pooling treats each channel alone. */
static int maxpool2d_plan(Layer *L, Err *e) {
    if (layer_plan_window(L, L->in.c, e)) return -1;
    L->out_fmt = L->in_fmt;
    WinGeom g = layer_window_geom(L, 1);
    L->aux_per_sample = maxpool2d_keeps_argmax(&g)
                            ? format_floats(L->out_fmt, L->out) * sizeof(int32_t)
                            : 0;
    return 0;
}

static WinGeom maxpool2d_geom(const Layer *L, int N) {
    WinGeom g = layer_window_geom(L, N);
    if (L->in_fmt == FMT_BLK16) {
        g.N = N * ((g.C + 15) / 16);
        g.C = g.OC = 16;
    }
    return g;
}

static void maxpool2d_layer_forward(const Layer *L, const LayerCtx *c, float *out, const float *in,
                                    int N) {
    WinGeom g = maxpool2d_geom(L, N);
    maxpool2d_forward(out, c->aux, in, &g);
}

/* An argmax needs neither tensor; without one the backward finds each window's maximum again. */
static unsigned maxpool2d_backward_reads(const Layer *L) {
    WinGeom g = layer_window_geom(L, 1);
    return maxpool2d_keeps_argmax(&g) ? 0 : LAYER_READS_INPUT | LAYER_READS_OUTPUT;
}

static void maxpool2d_layer_backward(const Layer *L, const LayerCtx *c, float *din, float *dout,
                                     const float *in, const float *out, int N) {
    if (!din) return;
    WinGeom g = maxpool2d_geom(L, N);
    maxpool2d_backward(din, dout, c->aux, in, out, &g);
}

const LayerOps maxpool2d_ops = {
    .section = "maxpooling2d",
    .keras_name = "MaxPooling2D",
    .keras3_key = "max_pooling2d",
    .onnx = LAYER_ONNX_MAXPOOL,
    .configure = maxpool2d_configure,
    .plan = maxpool2d_plan,
    .forward = maxpool2d_layer_forward,
    .backward = maxpool2d_layer_backward,
    .own_layout = 1,
    .flags = LAYER_F_SAME_LAYOUT,
    .backward_reads = maxpool2d_backward_reads,
};
