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
#include "job.h"
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
static void check_case(const Case *c, int variant, Ratio *fwd, Ratio *bwd_d, Ratio *bwd_w, Ratio *bias,
                       int *planned_bf16) {
    WinGeom g = geom(c);
    ConvDesc d = {g, ACT_LINEAR, 1, FMT_NHWC, c->K == 1, variant};
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
    for (int variant = 1; variant <= 2; variant++) /* oneDNN's layouts; channels-last */
        for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
            check_case(&cases[k], variant, &r[0], &r[1], &r[2], &r[3], &bf16);
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

/* ---- training through the binary ---- */

static const char *dir;

static const char *write_job(const char *name, const char *extra) {
    if (!dir) {
        dir = testutil_tmpdir();
        testutil_write_idx_dataset(dir, "b-train", 120, 10, 10, 31);
        testutil_write_idx_dataset(dir, "b-test", 30, 10, 10, 32);
    }
    char text[4096];
    snprintf(text, sizeof text,
             "[data]\nroot = %s\ntrain_images = b-train-images.idx\n"
             "train_labels = b-train-labels.idx\ntest_images = b-test-images.idx\n"
             "test_labels = b-test-labels.idx\nscale = 1/255\n"
             "[conv2d]\nfilters = 16\nkernel_size = 3\nactivation = relu\npadding = same\n"
             "[conv2d]\nfilters = 32\nkernel_size = 3\nactivation = relu\n"
             "[conv2d]\nfilters = 16\nkernel_size = 3\nstrides = 2\nactivation = relu\n"
             "[flatten]\n[dense]\nunits = 3\nactivation = softmax\n"
             "[train]\nloss = sparse_categorical_crossentropy\noptimizer = sgd\n"
             "lr = 0.01\nbatch_size = 12\nepochs = 1\nseed = 5\n"
             "conv_algorithm = direct\n%s",
             dir, extra);
    return testutil_write_file(dir, name, text, strlen(text));
}

/* `cd dir && ENV [mpirun -np NP] BIN train JOB` with a step log and saved weights TAG.*; its
 * exit status, its output in *out. np 0: no mpirun. */
static int train(const char *env, int np, const char *job, const char *tag, const char *sets,
                 char **out) {
    char mpirun[256] = "", cmd[4096];
    if (np) testutil_mpirun(mpirun, sizeof mpirun, np);
    snprintf(cmd, sizeof cmd,
             "cd %s && %s timeout 300 %s %s train %s --set train.step_log=%s.steps --save "
             "%s.weights %s",
             dir, env, mpirun, testutil_bin_abs(), job, tag, tag, sets);
    char *local = NULL, **o = out ? out : &local;
    int rc = testutil_run(cmd, o);
    if (rc) printf("\n    %s failed (%d):\n%s", cmd, rc, *o ? *o : "");
    free(local);
    return rc;
}

/* diff-weights a b within rtol: 1 when within */
static int same_weights(const char *a, const char *b, const char *rtol) {
    char wa[64], wb[64];
    snprintf(wa, sizeof wa, "%s.weights", a), snprintf(wb, sizeof wb, "%s.weights", b);
    return testutil_same_weights(dir, wa, wb, rtol);
}

/* The largest relative difference of two step logs (n steps each, equal counts asserted). */
static double loss_gap(const char *a, const char *b, int n) {
    double la[64], lb[64], worst = 0;
    int na = testutil_read_step_losses(dir, a, la, 64),
        nb = testutil_read_step_losses(dir, b, lb, 64);
    CU_ASSERT_EQUAL(na, n);
    CU_ASSERT_EQUAL(nb, n);
    for (int i = 0; i < na && i < nb; i++) worst = fmax(worst, fabs(la[i] - lb[i]) / fabs(lb[i]));
    return worst;
}

/* Two SGD steps in mixed_bfloat16 against the float32 steps on the same batches. Each loss is
 * one forward (the second after one update): its relative gap is a few u at most; stated:
 * 4u = 1.6e-2 (measured 2.7e-5 on the first step). The weights after the steps, w - lr g,
 * differ by lr times the gradients' error, which the kernel bound limits by the terms'
 * magnitudes, not by |g|: a bias starts at 0 and its gradient sums dout terms that cancel, so
 * relative to max(|w|, 1e-3) (diff-weights) the gap reaches 0.12 on such a bias after one step
 * (measured); stated: 0.25. And the mixed run did run bfloat16: the loss differs and its kernel
 * table says so. */
static void test_one_step(void) {
    if (!bf16_here("bf16 training step")) return;
    const char *job = write_job("step.job", "steps_per_epoch = 2\n");
    char *out = NULL;
    CU_ASSERT_EQUAL_FATAL(train("", 0, job, "f32", "", NULL), 0);
    CU_ASSERT_EQUAL_FATAL(train("", 0, job, "mixed", "--set train.precision=mixed_bfloat16", &out),
                          0);
    HAS(out ? out : "", "bfloat16");
    free(out);
    double gap = loss_gap("mixed", "f32", 2);
    printf("\n    step losses: mixed vs float32 %.2e relative", gap);
    CU_ASSERT(gap > 0); /* bfloat16 ran: not the float32 arithmetic */
    CU_ASSERT(gap <= 4 * U_BF16);
    CU_ASSERT(same_weights("mixed", "f32", "0.25"));
}

/* -np 1, 2, 3 in mixed_bfloat16 (conv_algorithm = direct: nothing timed). Each sample's
 * bfloat16 rounding does not depend on the split; the batch sums do, in float32, as in a
 * float32 run: the tolerance is the float32 runs' 1e-5 (test_mpi.c), measured below it. */
static void test_ranks(void) {
    if (!bf16_here("bf16 -np 1/2/3")) return;
    if (!testutil_have_mpi()) {
        testutil_skip("bf16 -np 1/2/3", "built with MPI=0 or no mpirun", 1);
        return;
    }
    const char *job = write_job("np.job", "steps_per_epoch = 10\nprecision = mixed_bfloat16\n");
    CU_ASSERT_EQUAL_FATAL(train("", 1, job, "np1", "", NULL), 0);
    for (int np = 2; np <= 3; np++) {
        char tag[16];
        snprintf(tag, sizeof tag, "np%d", np);
        CU_ASSERT_EQUAL(train("", np, job, tag, "", NULL), 0);
        double gap = loss_gap(tag, "np1", 10);
        printf("\n    -np %d against -np 1: step losses %.2e relative", np, gap);
        CU_ASSERT(gap <= 1e-5);
        CU_ASSERT(same_weights(tag, "np1", "1e-5"));
    }
}

/* A CPU without bfloat16 units, forced: mixed_bfloat16 runs float32, says so once, naming the
 * ISA, and computes exactly what float32 computes on that ISA. */
static void test_no_bf16_units(void) {
    if (!strcmp(conv_dnnl_isa(), "none")) {
        testutil_skip("bf16 fallback", "this build has no oneDNN (a fact of the build)", 0);
        return;
    }
    const char *job = write_job("isa.job", "steps_per_epoch = 2\n");
    const char *env = "ONEDNN_MAX_CPU_ISA=AVX512_CORE";
    char *out = NULL;
    CU_ASSERT_EQUAL_FATAL(train(env, 0, job, "isa-f32", "", NULL), 0);
    CU_ASSERT_EQUAL_FATAL(
        train(env, 0, job, "isa-mixed", "--set train.precision=mixed_bfloat16", &out), 0);
    const char *said = out ? strstr(out, "mixed_bfloat16 runs float32 here") : NULL;
    CU_ASSERT_PTR_NOT_NULL(said);
    if (said) CU_ASSERT_PTR_NULL(strstr(said + 1, "mixed_bfloat16 runs float32 here")); /* once */
    const char *table = out ? strstr(out, "Convolution algorithms") : NULL;
    CU_ASSERT(table && !strstr(table, "bfloat16"));
    if (table && !strstr(conv_dnnl_isa(), "avx512"))
        HAS(out, conv_dnnl_isa());
    else
        HAS(out ? out : "", "avx512_core here");
    free(out);
    CU_ASSERT(same_weights("isa-mixed", "isa-f32", "0"));
}

/* The key: float32 (the default) leaves both hashes where a job without it had them, so old
 * checkpoints resume; mixed_bfloat16 moves them and reaches every convolution; a bad value is
 * refused with the file and line. */
static void test_job_key(void) {
    const char *base = write_job("key.job", "steps_per_epoch = 1\n");
    char *const f32[] = {"train.precision=float32"}, *const mixed[] = {
                                                         "train.precision=mixed_bfloat16"};
    Job a, b, c;
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(job_load(&a, base, NULL, 0, &e), 0);
    CU_ASSERT_EQUAL_FATAL(job_load(&b, base, f32, 1, &e), 0);
    CU_ASSERT_EQUAL_FATAL(job_load(&c, base, mixed, 1, &e), 0);
    CU_ASSERT(a.hash == b.hash && a.resume_hash == b.resume_hash);
    CU_ASSERT(a.hash != c.hash && a.resume_hash != c.resume_hash);
    CU_ASSERT(!a.train.mixed_bf16 && c.train.mixed_bf16);
    int convs = 0;
    for (int l = 0; l < c.n_layers; l++) {
        CU_ASSERT_EQUAL(c.layers[l].mixed_bf16, c.layers[l].kind == LAYER_CONV2D);
        convs += c.layers[l].mixed_bf16 && !a.layers[l].mixed_bf16;
    }
    CU_ASSERT_EQUAL(convs, 3);
    job_free(&a), job_free(&b), job_free(&c);
    const char *bad = write_job("bad.job", "precision = float16\n");
    Job d;
    Err e2 = {0};
    CU_ASSERT_NOT_EQUAL(job_load(&d, bad, NULL, 0, &e2), 0);
    HAS(e2.msg, "bad.job:");
    HAS(e2.msg, "'precision' = 'float16' is not one of: float32, mixed_bfloat16");
    job_free(&d);
}

TEST_SUITE(bf16, {"bfloat16 direct convolution within the derived bound", test_kernel_bound},
           {"the bound rejects a result one rounding off", test_bound_rejects},
           {"one mixed_bfloat16 step against the float32 step", test_one_step},
           {"-np 1/2/3 in mixed_bfloat16 agree", test_ranks},
           {"without bfloat16 units: float32, said once", test_no_bf16_units},
           {"[train] precision: hashes, layers, bad values", test_job_key});
