/* conv2d.c: the Conv2D layer (Keras semantics: valid/same padding, strides, fused
 * activation, glorot-uniform kernel, zero bias) as im2col + OpenBLAS sgemm in NHWC.
 *
 * NHWC makes the im2col row of an output pixel a run of KH*KW contiguous C-vectors, the
 * weights (KH, KW, C, OC) are Keras's order unchanged, and a 1x1 stride-1 convolution is a
 * plain GEMM on the input with no copy.
 */
#include <cblas.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_thread_num(void) { return 0; }
static int omp_get_num_threads(void) { return 1; }
static int omp_get_max_threads(void) { return 1; }
#endif

#include "layer_impl.h"

static int is_pointwise(const WinGeom *g) {
    return g->KH == 1 && g->KW == 1 && g->SH == 1 && g->SW == 1 && g->PT == 0 && g->PL == 0;
}

/* col rows of images [n0, n1): each row gathers one output pixel's receptive field (KH*KW runs
 * of C floats), zeros where the window hangs over the padding. */
static void im2col(float *col, const float *in, const WinGeom *g, int n0, int n1) {
    const long K = (long)g->KH * g->KW * g->C;
    const int C = g->C;
    for (int n = n0; n < n1; n++) {
        const float *img = in + (size_t)n * g->H * g->W * C;
        float *row = col + (size_t)n * g->OH * g->OW * K;
        for (int oh = 0; oh < g->OH; oh++)
            for (int ow = 0; ow < g->OW; ow++, row += K) {
                float *dst = row;
                for (int kh = 0; kh < g->KH; kh++) {
                    int ih = oh * g->SH - g->PT + kh;
                    for (int kw = 0; kw < g->KW; kw++, dst += C) {
                        int iw = ow * g->SW - g->PL + kw;
                        if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) {
                            for (int c = 0; c < C; c++) dst[c] = 0.0f;
                        } else {
                            const float *src = img + ((size_t)ih * g->W + iw) * C;
                            for (int c = 0; c < C; c++) dst[c] = src[c];
                        }
                    }
                }
            }
    }
}

/* din images [n0, n1) = col2im(dcol): scatter-add each row back onto its receptive field. */
static void col2im(float *din, const float *dcol, const WinGeom *g, int n0, int n1) {
    const long K = (long)g->KH * g->KW * g->C;
    const int C = g->C;
    for (int n = n0; n < n1; n++) {
        float *img = din + (size_t)n * g->H * g->W * C;
        memset(img, 0, (size_t)g->H * g->W * C * sizeof(float));
        const float *row = dcol + (size_t)n * g->OH * g->OW * K;
        for (int oh = 0; oh < g->OH; oh++)
            for (int ow = 0; ow < g->OW; ow++, row += K) {
                const float *src = row;
                for (int kh = 0; kh < g->KH; kh++) {
                    int ih = oh * g->SH - g->PT + kh;
                    for (int kw = 0; kw < g->KW; kw++, src += C) {
                        int iw = ow * g->SW - g->PL + kw;
                        if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) continue;
                        float *dst = img + ((size_t)ih * g->W + iw) * C;
                        for (int c = 0; c < C; c++) dst[c] += src[c];
                    }
                }
            }
    }
}

/* This thread's block of images [*n0, *n1) out of N. */
static void thread_images(int N, int *n0, int *n1) {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    *n0 = (int)((long)N * t / T);
    *n1 = (int)((long)N * (t + 1) / T);
}

/* Parallel over images rather than inside the GEMMs: each thread im2cols its own images and runs
 * a single-threaded sgemm on them (OpenBLAS stays on one thread inside an OpenMP region). The
 * thread's rows stay in its cache from im2col to GEMM to activation, and the GEMMs are tall
 * enough to run at one core's full speed; splitting each GEMM across threads scaled worse here
 * (bench/README.md). */
void conv2d_forward(float *out, const float *in, const float *w, const float *b, Activation act,
                    float *col, const WinGeom *g) {
    const int P = g->OH * g->OW, K = g->KH * g->KW * g->C, OC = g->OC;
    const int pointwise = is_pointwise(g);
#pragma omp parallel
    {
        int n0, n1;
        thread_images(g->N, &n0, &n1);
        if (n1 > n0) {
            const size_t rows = (size_t)(n1 - n0) * P, r0 = (size_t)n0 * P;
            const float *a = in + r0 * K; /* pointwise: the input rows are the GEMM's rows */
            if (!pointwise) {
                im2col(col, in, g, n0, n1);
                a = col + r0 * K;
            }
            float *o = out + r0 * OC;
            if (b)
                for (size_t r = 0; r < rows; r++) memcpy(o + r * OC, b, (size_t)OC * sizeof *o);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, OC, K, 1.0f, a, K, w,
                        OC, b ? 1.0f : 0.0f, o, OC);
            activation_apply(act, o, rows * OC);
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

void conv2d_backward(float *din, float *dw, float *db, float *dout, const float *out,
                     Activation act, const float *in, const float *w, float *col, float *partial,
                     const WinGeom *g) {
    const int P = g->OH * g->OW, K = g->KH * g->KW * g->C, OC = g->OC;
    const int pointwise = is_pointwise(g);
    const size_t KOC = (size_t)K * OC, per_thread = KOC + OC;
    const int T_max = omp_get_max_threads();
    CHECK(T_max <= g->T); /* the partial-gradient scratch was planned for this many threads */
#pragma omp parallel num_threads(T_max)
    {
        const int t = omp_get_thread_num(), T_used = omp_get_num_threads();
        int n0, n1;
        thread_images(g->N, &n0, &n1);
        float *pw = partial + (size_t)t * per_thread, *pb = pw + KOC;
        memset(pw, 0, per_thread * sizeof *pw);
        if (n1 > n0) {
            const size_t rows = (size_t)(n1 - n0) * P, r0 = (size_t)n0 * P;
            float *d = dout + r0 * OC;
            activation_derivative(act, d, out + r0 * OC, rows * OC);
            if (db) bias_grad_add(pb, d, (long)rows, OC);
            const float *a = in + r0 * K;
            if (!pointwise) a = col + r0 * K; /* the forward's im2col, kept for us */
            /* this thread's share of dw (K, OC) = col^T (K, rows) x d (rows, OC) */
            if (dw)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, OC, (int)rows, 1.0f, a, K, d,
                            OC, 0.0f, pw, OC);
            if (din) {
                /* dcol (rows, K) = d (rows, OC) x w^T (OC, K), then scattered back to din */
                float *dcol = pointwise ? din + r0 * K : col + r0 * K;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, K, OC, 1.0f, d, OC, w,
                            OC, 0.0f, dcol, K);
                if (!pointwise) col2im(din, dcol - r0 * K, g, n0, n1);
            }
        }
#pragma omp barrier
        /* Sum the threads' partials in thread order, each element by one thread: the result
         * depends on the thread count but not on scheduling, so repeated runs are bitwise equal. */
        if (dw) {
#pragma omp for schedule(static)
            for (size_t i = 0; i < KOC; i++) {
                float s = 0.0f;
                for (int u = 0; u < T_used; u++) s += partial[(size_t)u * per_thread + i];
                dw[i] += s;
            }
        }
        if (db) {
#pragma omp for schedule(static)
            for (int i = 0; i < OC; i++) {
                float s = 0.0f;
                for (int u = 0; u < T_used; u++) s += partial[(size_t)u * per_thread + KOC + i];
                db[i] += s;
            }
        }
    }
}

/* ---- layer glue ---- */

static const char *const padding_names[] = {"valid", "same", NULL};
static const char *const act_names[] = {"linear", "relu", "sigmoid", "softmax", "leaky", NULL};

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
    if (sec_get_pair(ini, s, window_key, !strides_default_is_window, 2, 2, 1, 4096, &L->kh, &L->kw, e))
        return -1;
    /* strides default to the window for pooling (Keras pool strides=None), to 1 for conv */
    int dh = strides_default_is_window ? L->kh : 1, dw = strides_default_is_window ? L->kw : 1;
    if (sec_get_pair(ini, s, "strides", 0, dh, dw, 1, 4096, &L->sh, &L->sw, e)) return -1;
    if (sec_get_enum(ini, s, "padding", 0, PAD_VALID, padding_names, &pad, e)) return -1;
    L->padding = (Padding)pad;
    return 0;
}

/* Keras/TF output size and padding: valid: floor((H-K)/S)+1; same: ceil(H/S), with the odd
 * padding pixel at the bottom/right. Returns -1 when the window does not fit. */
int layer_plan_window(Layer *L, int out_c, Err *e) {
    char w[320];
    if (L->in.flat) {
        err_set(e, "layer %s (%s): %s needs a spatial (H, W, C) input, but its input is a flat "
                   "vector of %d values (is it after a Flatten or Dense?)",
                L->name, layer_where(L, w, sizeof w), layer_ops[L->kind]->keras_name, L->in.c);
        return -1;
    }
    int H = L->in.h, W = L->in.w, oh, ow;
    if (L->padding == PAD_VALID) {
        if (H < L->kh || W < L->kw) {
            err_set(e, "layer %s (%s): input %dx%dx%d is smaller than its %dx%d window; the "
                       "output would be empty",
                    L->name, layer_where(L, w, sizeof w), H, W, L->in.c, L->kh, L->kw);
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
                 L->kh, L->kw, L->sh, L->sw, L->pad_top, L->pad_left, 0};
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
    size_t K = (size_t)L->kh * L->kw * L->in.c;
    /* The im2col matrix lives in the layer's aux state: the forward builds it, the backward
     * reuses it for the weight gradient (no second im2col) and then overwrites it with dcol. */
    L->aux_per_sample = pointwise ? 0 : (size_t)L->out.h * L->out.w * K * sizeof(float);
    /* per-thread partial weight and bias gradients of the backward pass */
    L->ws_fixed = (size_t)omp_get_max_threads() * (K * L->units + L->units);
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
    conv2d_forward(out, in, c->w, c->b, layer_act(L), c->aux, &g);
}

static void conv2d_layer_backward(const Layer *L, const LayerCtx *c, float *din, float *dout,
                                  const float *in, const float *out, int N) {
    WinGeom g = layer_window_geom(L, N);
    size_t K = (size_t)L->kh * L->kw * L->in.c;
    g.T = (int)(L->ws_fixed / (K * L->units + L->units));
    conv2d_backward(din, c->dw, c->db, dout, out, layer_act(L), in, c->w, c->aux, c->ws, &g);
}

const LayerOps conv2d_ops = {"conv2d", "Conv2D", conv2d_configure, conv2d_plan, conv2d_init,
                             conv2d_layer_forward, conv2d_layer_backward};
