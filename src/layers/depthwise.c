/* depthwise.c: DepthwiseConv2D and SeparableConv2D (Keras semantics, depth_multiplier 1).
 *
 * DepthwiseConv2D: each channel convolved with its own KH x KW filter,
 *   out[n, oh, ow, c] = act(sum_{kh, kw} in[n, oh*SH - PT + kh, ow*SW - PL + kw, c]
 *                            * depthwise_kernel[kh, kw, c, 0] + bias[c]),
 * with Conv2D's strides and padding (implicit zeros). NHWC in and out; the kernels run over the
 * channels of a pixel, which are contiguous, so they vectorise.
 *
 * SeparableConv2D: the depthwise convolution (no bias, no activation) into an (N, OH, OW, C)
 * intermediate kept in aux, then a 1x1 convolution with pointwise_kernel (1, 1, C, OC), bias and
 * the activation, run by the Conv2D kernel seam (include/conv_algo.h: im2col, oneDNN direct) so
 * it gets the same algorithm choice, `auto` included, and may write oneDNN's blocked layout.
 *
 * Parameters, in Keras's order: DepthwiseConv2D depthwise_kernel (KH, KW, C, 1) [, bias (C)];
 * SeparableConv2D depthwise_kernel (KH, KW, C, 1), pointwise_kernel (1, 1, C, OC) [, bias (OC)].
 * Initialisers as Keras: glorot_uniform with fans from those shapes, zero bias.
 *
 * The weight gradient is summed per sample into the workspace, then over samples in order, so
 * it does not depend on the thread count. At stride 1 the input gradient is gathered (each
 * input pixel summed over its transposed window, in registers) rather than scattered.
 */
#include <string.h>

#include "conv_algo.h"
#include "layers/layer_impl.h"

/* ---- kernels (shared with the tests through kernels.h) ----
 *
 * Channels go in blocks of DW_CB, summed in a local array the compiler keeps in registers
 * (two AVX2 vectors, one AVX-512) across all taps, then stored once: summing in the output
 * itself costs a load and a store per tap and ran at a third to a quarter of the memory speed
 * (2 Zen 1 cores, N 32, 176 x 176 x 32: forward 55 ms, backward 106 ms before). Channels past
 * the last whole block take the plain loop. */

#define DW_CB 16

/* y[c] = sum over taps of x_tap[c] * k_tap[c] for c in [c0, c0 + cb): the taps of one window;
 * xs: the window's first pixel (tap (kh0, kw0)), ks: its kernel tap. */
static inline void dw_window(float *y, const float *xs, const float *ks, int rows, int cols,
                             size_t x_row, size_t k_row, int C, int c0, int cb) {
    if (cb == DW_CB) {
        float acc[DW_CB] = {0};
        for (int r = 0; r < rows; r++)
            for (int q = 0; q < cols; q++) {
                const float *x = xs + r * x_row + (size_t)q * C + c0;
                const float *k = ks + r * k_row + (size_t)q * C + c0;
#pragma omp simd
                for (int c = 0; c < DW_CB; c++) acc[c] += x[c] * k[c];
            }
        for (int c = 0; c < DW_CB; c++) y[c0 + c] = acc[c];
        return;
    }
    for (int c = c0; c < c0 + cb; c++) {
        float a = 0.0f;
        for (int r = 0; r < rows; r++)
            for (int q = 0; q < cols; q++)
                a += xs[r * x_row + (size_t)q * C + c] * ks[r * k_row + (size_t)q * C + c];
        y[c] = a;
    }
}

/* y (C) = the window of output pixel (oh, ow) of the NHWC image img under kernel w. */
static inline void dw_pixel(float *y, const float *img, const float *w, const WinGeom *g, int oh,
                            int ow) {
    const int C = g->C;
    const WinTaps t = win_taps(g, oh, ow);
    const float *xs = img + ((size_t)(t.ih0 + t.kh0) * g->W + t.iw0 + t.kw0) * C;
    const float *ks = w + ((size_t)t.kh0 * g->KW + t.kw0) * C;
    for (int c0 = 0; c0 < C; c0 += DW_CB)
        dw_window(y, xs, ks, t.kh1 - t.kh0, t.kw1 - t.kw0, (size_t)g->W * C, (size_t)g->KW * C, C,
                  c0, C - c0 < DW_CB ? C - c0 : DW_CB);
}

void depthwise_forward(float *out, const float *in, const float *w, const WinGeom *g) {
    const int C = g->C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < g->N; n++)
        for (int oh = 0; oh < g->OH; oh++) {
            const float *img = in + (size_t)n * g->H * g->W * C;
            for (int ow = 0; ow < g->OW; ow++)
                dw_pixel(out + (((size_t)n * g->OH + oh) * g->OW + ow) * C, img, w, g, oh, ow);
        }
}

/* Stride 1: din[ih, iw] = sum over taps (kh, kw) of dout[ih + PT - kh, iw + PL - kw] * w[kh, kw]
 * (the transposed window), gathered, so each input pixel is written once. The taps run
 * backwards through dout, forwards through w: so the kernel is read mirrored, through wr. */
static void depthwise_backward_data_s1(float *dimg, const float *dy_img, const float *wr,
                                       const WinGeom *g) {
    /* the transposed window over dout: a KH x KW window with padding KH - 1 - PT, KW - 1 - PL */
    WinGeom t = *g;
    t.H = g->OH, t.W = g->OW, t.OH = g->H, t.OW = g->W;
    t.PT = g->KH - 1 - g->PT, t.PL = g->KW - 1 - g->PL;
    for (int ih = 0; ih < g->H; ih++)
        for (int iw = 0; iw < g->W; iw++)
            dw_pixel(dimg + ((size_t)ih * g->W + iw) * g->C, dy_img, wr, &t, ih, iw);
}

/* Any stride: din overwritten by scattering each output's gradient over its window. */
static void depthwise_backward_data_scatter(float *dimg, const float *dy_img, const float *w,
                                            const WinGeom *g) {
    const int C = g->C;
    memset(dimg, 0, (size_t)g->H * g->W * C * sizeof *dimg);
    for (int oh = 0; oh < g->OH; oh++)
        for (int ow = 0; ow < g->OW; ow++) {
            const float *dy = dy_img + ((size_t)oh * g->OW + ow) * C;
            const WinTaps t = win_taps(g, oh, ow);
            for (int kh = t.kh0; kh < t.kh1; kh++)
                for (int kw = t.kw0; kw < t.kw1; kw++) {
                    float *dx = dimg + ((size_t)(t.ih0 + kh) * g->W + t.iw0 + kw) * C;
                    const float *k = w + ((size_t)kh * g->KW + kw) * C;
#pragma omp simd
                    for (int c = 0; c < C; c++) dx[c] += dy[c] * k[c];
                }
        }
}

/* pw (KH, KW, C) = this sample's kernel gradient: for each output row and tap, the products
 * dy * x along the row are summed in registers, then added to pw once. */
static void depthwise_backward_weights(float *pw, const float *dy_img, const float *img,
                                       const WinGeom *g) {
    const int C = g->C;
    memset(pw, 0, (size_t)g->KH * g->KW * C * sizeof *pw);
    for (int oh = 0; oh < g->OH; oh++) {
        const int ih0 = oh * g->SH - g->PT;
        for (int kh = 0; kh < g->KH; kh++) {
            const int ih = ih0 + kh;
            if (ih < 0 || ih >= g->H) continue;
            for (int kw = 0; kw < g->KW; kw++) {
                /* the outputs ow whose tap kw is inside the row: 0 <= ow*SW - PL + kw < W */
                int lo = 0, hi = g->OW;
                while (lo < hi && lo * g->SW - g->PL + kw < 0) lo++;
                while (hi > lo && (hi - 1) * g->SW - g->PL + kw >= g->W) hi--;
                if (lo == hi) continue;
                /* dy and x at output lo (x never points before the image: -PL + kw may be < 0) */
                const float *dy = dy_img + ((size_t)oh * g->OW + lo) * C;
                const float *x = img + ((size_t)ih * g->W + lo * g->SW - g->PL + kw) * C;
                float *d = pw + ((size_t)kh * g->KW + kw) * C;
                const size_t x_step = (size_t)g->SW * C, n_ow = (size_t)(hi - lo);
                int c0 = 0;
                for (; c0 + DW_CB <= C; c0 += DW_CB) {
                    float acc[DW_CB] = {0};
                    for (size_t o = 0; o < n_ow; o++) {
                        const float *a = dy + o * C + c0, *b = x + o * x_step + c0;
#pragma omp simd
                        for (int c = 0; c < DW_CB; c++) acc[c] += a[c] * b[c];
                    }
                    for (int c = 0; c < DW_CB; c++) d[c0 + c] += acc[c];
                }
                for (int c = c0; c < C; c++)
                    for (size_t o = 0; o < n_ow; o++) d[c] += dy[o * C + c] * x[o * x_step + c];
            }
        }
    }
}

/* din (N, H, W, C) overwritten; dw (KH, KW, C) ADDED to, via part (N x KH*KW*C floats of
 * scratch; at stride 1 also the mirrored kernel, in the last KH*KW*C floats past them: the
 * layer plans N + 1 samples' worth); either may be NULL. */
void depthwise_backward(float *din, float *dw, float *part, const float *dout, const float *in,
                        const float *w, const WinGeom *g) {
    const int C = g->C;
    const size_t K = (size_t)g->KH * g->KW * C;
    const int gather = g->SH == 1 && g->SW == 1;
    float *wr = part + (size_t)g->N * K;
    if (din && gather)
        for (int kh = 0; kh < g->KH; kh++)
            for (int kw = 0; kw < g->KW; kw++)
                memcpy(wr + ((size_t)kh * g->KW + kw) * C,
                       w + ((size_t)(g->KH - 1 - kh) * g->KW + (g->KW - 1 - kw)) * C,
                       C * sizeof *w);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < g->N; n++) {
        const float *img = in + (size_t)n * g->H * g->W * C;
        const float *dy_img = dout + (size_t)n * g->OH * g->OW * C;
        if (din) {
            float *dimg = din + (size_t)n * g->H * g->W * C;
            if (gather)
                depthwise_backward_data_s1(dimg, dy_img, wr, g);
            else
                depthwise_backward_data_scatter(dimg, dy_img, w, g);
        }
        if (dw) depthwise_backward_weights(part + (size_t)n * K, dy_img, img, g);
    }
    if (!dw) return;
    for (int n = 0; n < g->N; n++) {
        const float *pw = part + (size_t)n * K;
        for (size_t i = 0; i < K; i++) dw[i] += pw[i];
    }
}

/* ---- configuration shared by both kinds ---- */

static int depthwise_configure_window(Layer *L, IniFile *ini, Section *s, Err *e) {
    int dm;
    if (layer_configure_window(L, ini, s, "kernel_size", 0, e)) return -1;
    if (sec_get_int(ini, s, "depth_multiplier", 0, 1, 1, 1, &dm, e)) return -1; /* only 1 */
    return layer_configure_common(L, ini, s, e);
}

static void depthwise_init_kernel(const Layer *L, float *k, Rng *rng) {
    /* Keras's fans of a (KH, KW, C, 1) kernel: fan_in = KH KW C, fan_out = KH KW */
    int rf = L->kh * L->kw;
    init_glorot_uniform(k, (size_t)rf * L->in.c, rf * L->in.c, rf, rng);
}

/* ---- DepthwiseConv2D ---- */

static int dw_configure(Layer *L, IniFile *ini, Section *s, Err *e) {
    return depthwise_configure_window(L, ini, s, e);
}

static int dw_plan(Layer *L, Err *e) {
    if (layer_plan_window(L, L->in.c, e)) return -1;
    layer_param_add(L, "depthwise_kernel", PARAM_WEIGHT, 4, L->kh, L->kw, L->in.c, 1);
    if (L->use_bias) layer_param_add(L, "bias", PARAM_WEIGHT, 1, L->in.c, 0, 0, 0);
    L->ws_per_sample = (size_t)L->kh * L->kw * L->in.c; /* per-sample weight gradients */
    L->ws_fixed = L->ws_per_sample;                     /* the mirrored kernel */
    return 0;
}

static void dw_init(const Layer *L, float *const *p, Rng *rng) {
    depthwise_init_kernel(L, p[0], rng);
    if (L->use_bias) memset(p[1], 0, (size_t)L->in.c * sizeof *p[1]);
}

static void dw_forward(const Layer *L, const LayerCtx *c, float *out, const float *in, int N) {
    WinGeom g = layer_window_geom(L, N);
    depthwise_forward(out, in, c->p[0], &g);
    const size_t n = (size_t)N * shape_size(L->out);
    if (L->use_bias) {
        const size_t rows = (size_t)N * L->out.h * L->out.w;
        const int C = L->out.c;
        const float *b = c->p[1];
#pragma omp parallel for schedule(static)
        for (size_t r = 0; r < rows; r++)
            for (int k = 0; k < C; k++) out[r * C + k] += b[k];
    }
    activation_forward(layer_act(L), out, out, n);
}

static void dw_backward(const Layer *L, const LayerCtx *c, float *din, float *dout, const float *in,
                        const float *out, int N) {
    WinGeom g = layer_window_geom(L, N);
    activation_backward(layer_act(L), dout, dout, out, (size_t)N * shape_size(L->out));
    if (L->use_bias && c->dp[1]) bias_grad_add(c->dp[1], dout, N * L->out.h * L->out.w, L->out.c);
    depthwise_backward(din, c->dp[0], c->ws, dout, in, c->p[0], &g);
}

const LayerOps depthwise_conv2d_ops = {
    .section = "depthwise_conv2d",
    .keras_name = "DepthwiseConv2D",
    .keras3_key = "depthwise_conv2d",
    .onnx = LAYER_ONNX_DEPTHWISE,
    .configure = dw_configure,
    .plan = dw_plan,
    .init = dw_init,
    .forward = dw_forward,
    .backward = dw_backward,
    .backward_reads = layer_reads_input_and_act,
};

/* ---- SeparableConv2D ---- */

static int sep_configure(Layer *L, IniFile *ini, Section *s, Err *e) {
    if (sec_get_int(ini, s, "filters", 1, 0, 1, 1 << 16, &L->units, e)) return -1;
    if (layer_configure_algorithm(L, ini, s, e)) return -1;
    return depthwise_configure_window(L, ini, s, e);
}

/* floats of the depthwise intermediate per sample */
static size_t sep_mid(const Layer *L) { return (size_t)L->out.h * L->out.w * L->in.c; }

/* Bytes of aux the intermediate takes (64-byte aligned). None when the pointwise plan keeps its
 * own copy for the backward (oneDNN's reordered input): the intermediate is then scratch that
 * dies with the forward, in the workspace where the backward later puts its gradient. */
static size_t sep_mid_aux_bytes(const Layer *L, size_t B) {
    if (L->conv->keeps_input) return 0;
    return (B * sep_mid(L) * sizeof(float) + 63) & ~(size_t)63;
}

static int sep_plan(Layer *L, Err *e) {
    if (layer_plan_window(L, L->units, e)) return -1;
    const int C = L->in.c;
    layer_param_add(L, "depthwise_kernel", PARAM_WEIGHT, 4, L->kh, L->kw, C, 1);
    layer_param_add(L, "pointwise_kernel", PARAM_WEIGHT, 4, 1, 1, C, L->units);
    if (L->use_bias) layer_param_add(L, "bias", PARAM_WEIGHT, 1, L->units, 0, 0, 0);
    const int B = L->max_batch > 0 ? L->max_batch : 1;
    /* the pointwise 1x1 convolution over the (B, OH, OW, C) intermediate */
    ConvDesc d = {{B, L->out.h, L->out.w, C, L->out.h, L->out.w, L->units, 1, 1, 1, 1, 0, 0, 0},
                  layer_act(L),
                  L->use_bias,
                  FMT_NHWC,
                  L->out_read_as_nhwc,
                  0};
    if (layer_conv_plan(L, &d, e)) return -1;
    if (L->conv->d.in_fmt != FMT_NHWC) { /* our depthwise kernel writes NHWC */
        char w[320];
        err_set(e, "layer %s (%s): the pointwise convolution's algorithm (%s) cannot read NHWC",
                L->name, layer_where(L, w, sizeof w), conv_algo_name(L->conv_algo));
        conv2d_release(L);
        return -1;
    }
    L->in_fmt = FMT_NHWC;
    L->out_fmt = L->conv->out_fmt;
    /* aux: the intermediate (unless it lives in ws), then the pointwise plan's state */
    L->aux_per_sample = (sep_mid_aux_bytes(L, (size_t)B) + L->conv->aux_bytes + (size_t)B - 1) /
                        (size_t)B;
    /* ws: the intermediate's gradient (or in the forward, the intermediate), then the larger of
     * the pointwise scratch and the per-sample depthwise weight gradients and the mirrored kernel */
    size_t scratch = (L->conv->ws_bytes + sizeof(float) - 1) / sizeof(float);
    size_t part = ((size_t)B + 1) * L->kh * L->kw * C;
    L->ws_per_sample = sep_mid(L);
    L->ws_fixed = (scratch > part ? scratch : part) + 16;
    return 0;
}

static void sep_init(const Layer *L, float *const *p, Rng *rng) {
    depthwise_init_kernel(L, p[0], rng);
    init_glorot_uniform(p[1], (size_t)L->in.c * L->units, L->in.c, L->units, rng);
    if (L->use_bias) memset(p[2], 0, (size_t)L->units * sizeof *p[2]);
}

/* The geometry of the depthwise step: C in, C out. */
static WinGeom sep_depthwise_geom(const Layer *L, int N) {
    WinGeom g = layer_window_geom(L, N);
    g.OC = g.C;
    return g;
}

static float *sep_mid_buf(const Layer *L, const LayerCtx *c) {
    return L->conv->keeps_input ? c->ws : c->aux;
}
static void *sep_conv_aux(const Layer *L, const LayerCtx *c) {
    return (unsigned char *)c->aux + sep_mid_aux_bytes(L, (size_t)L->conv->d.g.N);
}
/* ws after the intermediate's gradient, 64-byte aligned for oneDNN */
static float *sep_scratch(const Layer *L, const LayerCtx *c) {
    size_t off = ((size_t)L->conv->d.g.N * sep_mid(L) + 15) & ~(size_t)15;
    return c->ws + off;
}

static void sep_forward(const Layer *L, const LayerCtx *c, float *out, const float *in, int N) {
    ConvPlan *p = L->conv;
    WinGeom g = sep_depthwise_geom(L, N);
    float *mid = sep_mid_buf(L, c);
    depthwise_forward(mid, in, c->p[0], &g);
    /* a full-batch algorithm reads every sample: the ones past N must be finite (zero) */
    if (p->full_batch && N < p->d.g.N)
        memset(mid + (size_t)N * sep_mid(L), 0, (size_t)(p->d.g.N - N) * sep_mid(L) * sizeof *mid);
    p->algo->forward(p, out, mid, c->p[1], L->use_bias ? c->p[2] : NULL, sep_conv_aux(L, c),
                     sep_scratch(L, c), N);
}

static void sep_backward(const Layer *L, const LayerCtx *c, float *din, float *dout,
                         const float *in, const float *out, int N) {
    ConvPlan *p = L->conv;
    layer_conv_prepare_dout(L, dout, out, N);
    /* the intermediate, when the pointwise plan reads it here (else gone: ws is dmid now) */
    const float *mid = p->keeps_input ? NULL : sep_mid_buf(L, c);
    float *dmid = c->ws, *scratch = sep_scratch(L, c);
    void *caux = sep_conv_aux(L, c);
    if (c->dp[1] || (L->use_bias && c->dp[2])) {
        double t0 = c->prof_weights ? now_seconds() : 0;
        p->algo->backward_weights(p, c->dp[1], L->use_bias ? c->dp[2] : NULL, dout, mid, caux,
                                  scratch, N);
        if (c->prof_weights) *c->prof_weights += now_seconds() - t0;
    }
    if (!din && !c->dp[0]) return;
    p->algo->backward_data(p, dmid, dout, c->p[1], caux, scratch, N);
    WinGeom g = sep_depthwise_geom(L, N);
    depthwise_backward(din, c->dp[0], scratch, dmid, in, c->p[0], &g);
}

const LayerOps separable_conv2d_ops = {
    .section = "separable_conv2d",
    .keras_name = "SeparableConv2D",
    .keras3_key = "separable_conv2d",
    .onnx = LAYER_ONNX_SEPARABLE,
    .configure = sep_configure,
    .plan = sep_plan,
    .init = sep_init,
    .forward = sep_forward,
    .backward = sep_backward,
    .release = conv2d_release,
    .own_layout = 1,
    .backward_reads = layer_reads_input_and_act,
};
