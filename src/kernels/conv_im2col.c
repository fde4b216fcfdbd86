/* conv_im2col.c: the portable convolution algorithm, im2col + OpenBLAS sgemm in NHWC (the
 * kernels conv2d_forward/conv2d_backward of kernels.h, and the "im2col" entry of the
 * conv_algo.h interface). Used without oneDNN (ONEDNN=0) and wherever it is chosen.
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

#include "conv_algo.h"

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
            if (act != ACT_LINEAR) activation_derivative(act, d, out + r0 * OC, rows * OC);
            if (db) bias_grad_add(pb, d, (long)rows, OC);
            /* this thread's share of dw (K, OC) = col^T (K, rows) x d (rows, OC); the forward's
             * im2col was kept for us */
            if (dw) {
                const float *a = pointwise ? in + r0 * K : col + r0 * K;
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, OC, (int)rows, 1.0f, a, K,
                            d, OC, 0.0f, pw, OC);
            }
            if (din) {
                /* dcol (rows, K) = d (rows, OC) x w^T (OC, K), then scattered back to din */
                float *dcol = pointwise ? din + r0 * K : col + r0 * K;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, K, OC, 1.0f, d, OC,
                            w, OC, 0.0f, dcol, K);
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

/* ---- the "im2col" algorithm of conv_algo.h ---- */

static int im2col_plan(ConvPlan *p, Err *e) {
    const WinGeom *g = &p->d.g;
    const size_t K = (size_t)g->KH * g->KW * g->C, P = (size_t)g->OH * g->OW;
    p->d.in_fmt = FMT_NHWC;
    p->out_fmt = FMT_NHWC;
    /* The im2col matrix is forward state: the forward builds it, backward_weights reuses it (no
     * second im2col), then backward_data overwrites it with dcol. */
    p->aux_bytes = is_pointwise(g) ? 0 : (size_t)g->N * P * K * sizeof(float);
    /* per-thread partial weight and bias gradients */
    p->ws_bytes = (size_t)omp_get_max_threads() * (K * g->OC + g->OC) * sizeof(float);
    snprintf(p->impl, sizeof p->impl, "im2col+sgemm");
    return 0;
}

static void im2col_free(ConvPlan *p) {}

static WinGeom im2col_geom(const ConvPlan *p, int N) {
    WinGeom g = p->d.g;
    g.N = N;
    const size_t K = (size_t)g.KH * g.KW * g.C;
    g.T = (int)(p->ws_bytes / sizeof(float) / (K * g.OC + g.OC));
    return g;
}

static void im2col_forward(ConvPlan *p, float *out, const float *in, const float *w, const float *b,
                           void *aux, void *ws, int N) {
    WinGeom g = im2col_geom(p, N);
    conv2d_forward(out, in, w, b, p->d.act, aux, &g);
}

/* conv2d_backward with the activation's derivative already applied (linear) and one of its two
 * halves switched off; dout is only read (linear act), hence the cast. */
static void im2col_backward_weights(ConvPlan *p, float *dw, float *db, const float *dout,
                                    const float *in, void *aux, void *ws, int N) {
    WinGeom g = im2col_geom(p, N);
    conv2d_backward(NULL, dw, db, (float *)dout, dout, ACT_LINEAR, in, NULL, aux, ws, &g);
}

static void im2col_backward_data(ConvPlan *p, float *din, const float *dout, const float *w,
                                 void *aux, void *ws, int N) {
    WinGeom g = im2col_geom(p, N);
    conv2d_backward(din, NULL, NULL, (float *)dout, dout, ACT_LINEAR, NULL, w, aux, ws, &g);
}

const ConvAlgo conv_algo_im2col = {"im2col",
                                   im2col_plan,
                                   im2col_free,
                                   im2col_forward,
                                   im2col_backward_weights,
                                   im2col_backward_data,
                                   NULL,
                                   0};
