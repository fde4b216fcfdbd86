/* conv2d.c: the Conv2D layer (Keras semantics: valid/same padding, strides, fused
 * activation, glorot-uniform kernel, zero bias) as im2col + OpenBLAS sgemm in NHWC.
 *
 * NHWC makes the im2col row of an output pixel a run of KH*KW contiguous C-vectors, the
 * weights (KH, KW, C, OC) are Keras's order unchanged, and a 1x1 stride-1 convolution is a
 * plain GEMM on the input with no copy.
 */
#include <cblas.h>
#include <string.h>

#include "layer_impl.h"

static int is_pointwise(const WinGeom *g) {
    return g->KH == 1 && g->KW == 1 && g->SH == 1 && g->SW == 1 && g->PT == 0 && g->PL == 0;
}

/* col (N*OH*OW, KH*KW*C): each row gathers one output pixel's receptive field, zeros where
 * the window hangs over the padding. */
static void im2col(float *col, const float *in, const WinGeom *g) {
    const long K = (long)g->KH * g->KW * g->C;
    const size_t cbytes = (size_t)g->C * sizeof(float);
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < g->N; n++)
        for (int oh = 0; oh < g->OH; oh++) {
            const float *img = in + (size_t)n * g->H * g->W * g->C;
            float *row = col + (((size_t)n * g->OH + oh) * g->OW) * K;
            for (int ow = 0; ow < g->OW; ow++, row += K) {
                float *dst = row;
                for (int kh = 0; kh < g->KH; kh++) {
                    int ih = oh * g->SH - g->PT + kh;
                    if (ih < 0 || ih >= g->H) {
                        memset(dst, 0, (size_t)g->KW * cbytes);
                        dst += (size_t)g->KW * g->C;
                        continue;
                    }
                    int iw0 = ow * g->SW - g->PL;
                    if (iw0 >= 0 && iw0 + g->KW <= g->W) { /* whole kernel row inside: one copy */
                        memcpy(dst, img + ((size_t)ih * g->W + iw0) * g->C, (size_t)g->KW * cbytes);
                        dst += (size_t)g->KW * g->C;
                        continue;
                    }
                    for (int kw = 0; kw < g->KW; kw++, dst += g->C) {
                        int iw = iw0 + kw;
                        if (iw < 0 || iw >= g->W)
                            memset(dst, 0, cbytes);
                        else
                            memcpy(dst, img + ((size_t)ih * g->W + iw) * g->C, cbytes);
                    }
                }
            }
        }
}

/* din = col2im(dcol): scatter-add every row of dcol back onto its receptive field. Images are
 * independent, so the batch is split across threads with no write conflicts. */
static void col2im(float *din, const float *dcol, const WinGeom *g) {
    const long K = (long)g->KH * g->KW * g->C;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < g->N; n++) {
        float *img = din + (size_t)n * g->H * g->W * g->C;
        memset(img, 0, (size_t)g->H * g->W * g->C * sizeof(float));
        const float *row = dcol + (size_t)n * g->OH * g->OW * K;
        for (int oh = 0; oh < g->OH; oh++)
            for (int ow = 0; ow < g->OW; ow++, row += K) {
                const float *src = row;
                for (int kh = 0; kh < g->KH; kh++) {
                    int ih = oh * g->SH - g->PT + kh;
                    for (int kw = 0; kw < g->KW; kw++, src += g->C) {
                        int iw = ow * g->SW - g->PL + kw;
                        if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) continue;
                        float *dst = img + ((size_t)ih * g->W + iw) * g->C;
                        for (int c = 0; c < g->C; c++) dst[c] += src[c];
                    }
                }
            }
    }
}

void conv2d_forward(float *out, const float *in, const float *w, const float *b, float *col,
                    const WinGeom *g) {
    const int M = g->N * g->OH * g->OW, K = g->KH * g->KW * g->C;
    const float *a = in;
    if (!is_pointwise(g)) {
        im2col(col, in, g);
        a = col;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, g->OC, K, 1.0f, a, K, w, g->OC, 0.0f,
                out, g->OC);
    if (b) {
#pragma omp parallel for schedule(static)
        for (int m = 0; m < M; m++) {
            float *o = out + (size_t)m * g->OC;
            for (int c = 0; c < g->OC; c++) o[c] += b[c];
        }
    }
}

void bias_grad_add(float *db, const float *d, long rows, int U) {
    /* Sequential over rows so the sum's order, and hence the result, never depends on the
     * thread count: bitwise-reproducible runs need that. The inner loop vectorises. */
    for (long r = 0; r < rows; r++) {
        const float *row = d + (size_t)r * U;
        for (int u = 0; u < U; u++) db[u] += row[u];
    }
}

void conv2d_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                     const float *w, float *col, const WinGeom *g) {
    const int M = g->N * g->OH * g->OW, K = g->KH * g->KW * g->C;
    if (db) bias_grad_add(db, dout, M, g->OC);
    if (dw) {
        const float *a = in;
        if (!is_pointwise(g)) {
            im2col(col, in, g); /* the forward's col was overwritten by later layers */
            a = col;
        }
        /* dw (K, OC) += col^T (K, M) x dout (M, OC) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, g->OC, M, 1.0f, a, K, dout, g->OC,
                    1.0f, dw, g->OC);
    }
    if (din) {
        if (is_pointwise(g)) { /* din (M, C) = dout (M, OC) x w^T (OC, C) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, K, g->OC, 1.0f, dout, g->OC, w,
                        g->OC, 0.0f, din, K);
            return;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, K, g->OC, 1.0f, dout, g->OC, w,
                    g->OC, 0.0f, col, K);
        col2im(din, col, g);
    }
}

/* ---- layer glue ---- */

static const char *const padding_names[] = {"valid", "same", NULL};
static const char *const act_names[] = {"linear", "relu", "sigmoid", "softmax", NULL};

/* Keys shared by Conv2D and Dense. */
int layer_configure_common(Layer *L, IniFile *ini, Section *s, Err *e) {
    int act, bias, trainable;
    if (sec_get_enum(ini, s, "activation", 0, ACT_LINEAR, act_names, &act, e) ||
        sec_get_bool(ini, s, "use_bias", 1, &bias, e) ||
        sec_get_bool(ini, s, "trainable", 1, &trainable, e))
        return -1;
    L->act = (Activation)act;
    L->use_bias = bias;
    L->trainable = trainable;
    return 0;
}

int layer_configure_window(Layer *L, IniFile *ini, Section *s, const char *window_key,
                           int strides_default_is_window, Err *e) {
    int pad;
    if (sec_get_pair(ini, s, window_key, !strides_default_is_window, 2, 1, 4096, &L->kh, &L->kw, e))
        return -1;
    int dh = strides_default_is_window ? L->kh : 1, dw = strides_default_is_window ? L->kw : 1;
    /* strides default to the window for pooling (Keras pool strides=None), to 1 for conv */
    if (dh == dw) {
        if (sec_get_pair(ini, s, "strides", 0, dh, 1, 4096, &L->sh, &L->sw, e)) return -1;
    } else if (!sec_get_str(ini, s, "strides", 0, NULL, e)) {
        L->sh = dh;
        L->sw = dw;
    } else if (sec_get_pair(ini, s, "strides", 0, 1, 1, 4096, &L->sh, &L->sw, e))
        return -1;
    if (sec_get_enum(ini, s, "padding", 0, PAD_VALID, padding_names, &pad, e)) return -1;
    L->padding = (Padding)pad;
    return 0;
}

/* Keras/TF output size and padding: valid: floor((H-K)/S)+1; same: ceil(H/S), with the odd
 * padding pixel at the bottom/right. Returns -1 when the window does not fit. */
int layer_plan_window(Layer *L, int out_c, Err *e) {
    if (L->in.flat) {
        err_set(e, "layer %s (line %d): %s needs a spatial (H, W, C) input, but its input is a flat "
                   "vector of %d values (is it after a Flatten or Dense?)",
                L->name, L->line, layer_ops[L->kind]->keras_name, L->in.c);
        return -1;
    }
    int H = L->in.h, W = L->in.w, oh, ow;
    if (L->padding == PAD_VALID) {
        if (H < L->kh || W < L->kw) {
            err_set(e, "layer %s (line %d): input %dx%dx%d is smaller than its %dx%d window; the "
                       "output would be empty",
                    L->name, L->line, H, W, L->in.c, L->kh, L->kw);
            return -1;
        }
        oh = (H - L->kh) / L->sh + 1;
        ow = (W - L->kw) / L->sw + 1;
        L->pad_top = L->pad_left = 0;
    } else {
        oh = (H + L->sh - 1) / L->sh;
        ow = (W + L->sw - 1) / L->sw;
        int ph = (oh - 1) * L->sh + L->kh - H, pw = (ow - 1) * L->sw + L->kw - W;
        L->pad_top = ph > 0 ? ph / 2 : 0;
        L->pad_left = pw > 0 ? pw / 2 : 0;
    }
    L->out = (Shape){oh, ow, out_c, 0};
    return 0;
}

WinGeom layer_window_geom(const Layer *L, int N) {
    WinGeom g = {N, L->in.h, L->in.w, L->in.c, L->out.h, L->out.w, L->out.c,
                 L->kh, L->kw, L->sh, L->sw, L->pad_top, L->pad_left};
    return g;
}

static int conv2d_configure(Layer *L, IniFile *ini, Section *s, Err *e) {
    if (sec_get_int(ini, s, "filters", 1, 0, 1, 1 << 16, &L->units, e)) return -1;
    if (layer_configure_window(L, ini, s, "kernel_size", 0, e)) return -1;
    return layer_configure_common(L, ini, s, e);
}

static int conv2d_plan(Layer *L, Err *e) {
    if (layer_plan_window(L, L->units, e)) return -1;
    L->n_weight = (size_t)L->kh * L->kw * L->in.c * L->units;
    L->n_bias = L->use_bias ? (size_t)L->units : 0;
    int pointwise = L->kh == 1 && L->kw == 1 && L->sh == 1 && L->sw == 1;
    L->ws_per_sample = pointwise ? 0 : (size_t)L->out.h * L->out.w * L->kh * L->kw * L->in.c;
    return 0;
}

static void conv2d_init(const Layer *L, float *w, float *b, Rng *rng) {
    int rf = L->kh * L->kw;
    init_glorot_uniform(w, L->n_weight, rf * L->in.c, rf * L->units, rng);
    if (b) memset(b, 0, L->n_bias * sizeof *b);
}

static void conv2d_layer_forward(const Layer *L, const LayerCtx *c, float *out, const float *in,
                                 int N) {
    WinGeom g = layer_window_geom(L, N);
    conv2d_forward(out, in, c->w, c->b, c->ws, &g);
    activation_forward(L->act, out, (size_t)N * shape_size(L->out));
}

static void conv2d_layer_backward(const Layer *L, const LayerCtx *c, float *din, float *dout,
                                  const float *in, const float *out, int N) {
    WinGeom g = layer_window_geom(L, N);
    activation_backward(L->act, dout, out, (size_t)N * shape_size(L->out));
    conv2d_backward(din, c->dw, c->db, dout, in, c->w, c->ws, &g);
}

const LayerOps conv2d_ops = {"conv2d", "Conv2D", conv2d_configure, conv2d_plan, conv2d_init,
                             conv2d_layer_forward, conv2d_layer_backward};
