/* test_conv_algo.c: every convolution algorithm of conv_algo.h (im2col, oneDNN direct, oneDNN
 * Winograd) against a naive convolution written here and against each other, on odd shapes
 * (stride 2, same padding, C = 1 and 3, OC not a multiple of 16, batch 1, 1x1, 5x5), from NHWC
 * and nChw16c inputs; finite-difference gradient checks through each; repeated runs bitwise
 * equal; a batch shorter than the plan's; the layout reorders; pooling on nChw16c. Algorithms
 * this build (ONEDNN=0) or this CPU (oneDNN's Winograd needs AVX-512) lacks are skipped with a
 * counted message. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conv_algo.h"
#include "layer.h"
#include "layers/layer_impl.h"
#include "testutil.h"

typedef struct {
    int H, W, C, OC, K, S;
    Padding pad;
    int N;
} Case;

static const Case cases[] = {
    {7, 6, 3, 5, 3, 1, PAD_VALID, 2},    /* C = 3, OC odd */
    {9, 8, 1, 4, 3, 2, PAD_VALID, 1},    /* C = 1, stride 2, batch 1 */
    {7, 5, 2, 3, 3, 2, PAD_SAME, 2},     /* same, stride 2, odd sizes */
    {6, 6, 8, 17, 3, 1, PAD_SAME, 3},    /* OC = 17 */
    {5, 4, 6, 3, 1, 1, PAD_VALID, 2},    /* 1x1 */
    {10, 10, 16, 32, 3, 1, PAD_SAME, 2}, /* Winograd's favourite */
    {8, 8, 20, 24, 3, 1, PAD_VALID, 1},  {6, 7, 5, 6, 5, 1, PAD_SAME, 2}, /* 5x5 */
};
#define N_CASES (sizeof cases / sizeof *cases)

/* Tolerances relative to max(1, |reference|): Winograd's transforms round more than a direct
 * sum: up to 1.1e-6 here against 4.5e-7 for direct and im2col. */
static double tolerance(ConvAlgoId id) { return id == CONV_ALGO_WINOGRAD ? 1e-5 : 3e-6; }

static int skipped;

static WinGeom case_geom(const Case *c) {
    WinGeom g = {c->N, c->H, c->W, c->C, 0, 0, c->OC, c->K, c->K, c->S, c->S, 0, 0, 0};
    if (c->pad == PAD_VALID) {
        g.OH = (c->H - c->K) / c->S + 1;
        g.OW = (c->W - c->K) / c->S + 1;
    } else {
        g.OH = (c->H + c->S - 1) / c->S;
        g.OW = (c->W + c->S - 1) / c->S;
        int ph = (g.OH - 1) * c->S + c->K - c->H, pw = (g.OW - 1) * c->S + c->K - c->W;
        g.PT = ph > 0 ? ph / 2 : 0;
        g.PL = pw > 0 ? pw / 2 : 0;
    }
    return g;
}

/* ---- the naive reference, in NHWC ---- */

static void naive_forward(const WinGeom *g, const float *in, const float *w, const float *b,
                          float *out) {
    for (int n = 0; n < g->N; n++)
        for (int oh = 0; oh < g->OH; oh++)
            for (int ow = 0; ow < g->OW; ow++)
                for (int oc = 0; oc < g->OC; oc++) {
                    double s = b ? b[oc] : 0;
                    for (int kh = 0; kh < g->KH; kh++)
                        for (int kw = 0; kw < g->KW; kw++) {
                            int ih = oh * g->SH - g->PT + kh, iw = ow * g->SW - g->PL + kw;
                            if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) continue;
                            for (int c = 0; c < g->C; c++)
                                s += (double)in[(((size_t)n * g->H + ih) * g->W + iw) * g->C + c] *
                                     w[(((size_t)kh * g->KW + kw) * g->C + c) * g->OC + oc];
                        }
                    out[(((size_t)n * g->OH + oh) * g->OW + ow) * g->OC + oc] = (float)s;
                }
}

/* din, dw, db of the linear convolution for output gradient dout (all overwritten). */
static void naive_backward(const WinGeom *g, const float *in, const float *w, const float *dout,
                           float *din, float *dw, float *db) {
    size_t ni = (size_t)g->N * g->H * g->W * g->C, nw = (size_t)g->KH * g->KW * g->C * g->OC;
    memset(din, 0, ni * sizeof *din);
    memset(dw, 0, nw * sizeof *dw);
    memset(db, 0, (size_t)g->OC * sizeof *db);
    for (int n = 0; n < g->N; n++)
        for (int oh = 0; oh < g->OH; oh++)
            for (int ow = 0; ow < g->OW; ow++)
                for (int oc = 0; oc < g->OC; oc++) {
                    float d = dout[(((size_t)n * g->OH + oh) * g->OW + ow) * g->OC + oc];
                    db[oc] += d;
                    for (int kh = 0; kh < g->KH; kh++)
                        for (int kw = 0; kw < g->KW; kw++) {
                            int ih = oh * g->SH - g->PT + kh, iw = ow * g->SW - g->PL + kw;
                            if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) continue;
                            for (int c = 0; c < g->C; c++) {
                                size_t ii = (((size_t)n * g->H + ih) * g->W + iw) * g->C + c;
                                size_t wi = (((size_t)kh * g->KW + kw) * g->C + c) * g->OC + oc;
                                din[ii] += d * w[wi];
                                dw[wi] += d * in[ii];
                            }
                        }
                }
}

static double max_rel(const float *a, const float *ref, size_t n) {
    double worst = 0, scale = 1;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - ref[i]) / scale);
    return worst;
}

/* ---- one algorithm on one case: everything in NHWC on the outside ---- */

typedef struct {
    ConvPlan p;
    WinGeom g;
    Shape si, so;
    size_t ni, no, nw; /* NHWC floats */
    float *in, *w, *b, *out, *dout, *din, *dw, *db;
    float *in_l, *out_l, *dout_l, *din_l; /* in the plan's layouts */
    void *aux, *ws;
} Run;

/* in_fmt: the layout the producer writes; out_nhwc: the reader reads NHWC (ConvDesc) */
static int run_init(Run *r, ConvAlgoId id, const Case *c, TensorFormat in_fmt, Activation act,
                    int out_nhwc) {
    memset(r, 0, sizeof *r);
    r->g = case_geom(c);
    ConvDesc d = {r->g, act, 1, in_fmt, out_nhwc, 0};
    Err e = {0};
    if (conv_plan_init(&r->p, id, &d, &e)) return -1;
    r->si = (Shape){c->H, c->W, c->C, 0};
    r->so = (Shape){r->g.OH, r->g.OW, c->OC, 0};
    r->ni = (size_t)c->N * shape_size(r->si);
    r->no = (size_t)c->N * shape_size(r->so);
    r->nw = (size_t)c->K * c->K * c->C * c->OC;
    size_t nil = (size_t)c->N * format_floats(r->p.d.in_fmt, r->si),
           nol = (size_t)c->N * format_floats(r->p.out_fmt, r->so);
    float **bufs[] = {&r->in, &r->din, &r->out,  &r->dout,  &r->w,     &r->dw,
                      &r->b,  &r->db,  &r->in_l, &r->din_l, &r->out_l, &r->dout_l};
    size_t sizes[] = {r->ni,         r->ni,         r->no, r->no, r->nw, r->nw,
                      (size_t)c->OC, (size_t)c->OC, nil,   nil,   nol,   nol};
    for (int i = 0; i < 12; i++) *bufs[i] = calloc(sizes[i] + 16, sizeof(float));
    r->aux = aligned_alloc(64, (r->p.aux_bytes + 127) & ~(size_t)63);
    r->ws = aligned_alloc(64, (r->p.ws_bytes + 127) & ~(size_t)63);
    testutil_fill(r->in, r->ni, 11, -1, 1);
    testutil_fill(r->w, r->nw, 12, -0.5f, 0.5f);
    testutil_fill(r->b, (size_t)c->OC, 13, -0.5f, 0.5f);
    testutil_fill(r->dout, r->no, 14, -1, 1);
    return 0;
}

static void run_free(Run *r) {
    void *ps[] = {r->in, r->din,  r->out,   r->dout,  r->w,      r->dw,  r->b,
                  r->db, r->in_l, r->din_l, r->out_l, r->dout_l, r->aux, r->ws};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) free(ps[i]);
    conv_plan_free(&r->p);
}

static void run_forward(Run *r) {
    layout_reorder(r->in_l, r->p.d.in_fmt, r->in, FMT_NHWC, r->g.N, r->si);
    r->p.algo->forward(&r->p, r->out_l, r->in_l, r->w, r->b, r->aux, r->ws, r->g.N);
    layout_reorder(r->out, FMT_NHWC, r->out_l, r->p.out_fmt, r->g.N, r->so);
}

/* forward first (the backward reads its state), then dw, db (added to zero) and din */
static void run_backward(Run *r) {
    run_forward(r);
    memset(r->dw, 0, r->nw * sizeof *r->dw);
    memset(r->db, 0, (size_t)r->g.OC * sizeof *r->db);
    layout_reorder(r->dout_l, r->p.out_fmt, r->dout, FMT_NHWC, r->g.N, r->so);
    r->p.algo->backward_weights(&r->p, r->dw, r->db, r->dout_l, r->in_l, r->aux, r->ws, r->g.N);
    r->p.algo->backward_data(&r->p, r->din_l, r->dout_l, r->w, r->aux, r->ws, r->g.N);
    layout_reorder(r->din, FMT_NHWC, r->din_l, r->p.d.in_fmt, r->g.N, r->si);
}

/* Whether this build and CPU run the algorithm; else a counted skip saying why. The reason
 * comes from the CPU's ISA (conv_algo_unsupported), not from a plan failing, so a Winograd that
 * stops planning on an AVX-512 machine still fails here. */
static int available(ConvAlgoId id) {
    const char *why = conv_algo_unsupported(id);
    if (!why) return 1;
    skipped++;
    testutil_skip(conv_algo_name(id), why, 0);
    return 0;
}

/* Winograd is offered for 3x3 stride-1 convolutions; elsewhere oneDNN may refuse it. */
static int winograd_expected(const Case *c) { return c->K == 3 && c->S == 1; }

/* Forward and backward against the naive reference, from NHWC and from nChw16c inputs, and
 * for a reader that reads NHWC (oneDNN's 1x1 convolutions then run NHWC in and out). */
static void check_against_naive(ConvAlgoId id) {
    if (!available(id)) return;
    int planned = 0;
    for (size_t k = 0; k < N_CASES; k++)
        for (int f = 0; f < 3; f++) {
            const Case *c = &cases[k];
            Run r;
            if (run_init(&r, id, c, f == 1 ? FMT_BLK16 : FMT_NHWC, ACT_LINEAR, f == 2)) {
                /* only Winograd may refuse a shape */
                CU_ASSERT(id == CONV_ALGO_WINOGRAD && !winograd_expected(c));
                continue;
            }
            planned++;
            if (id == CONV_ALGO_DIRECT)
                CU_ASSERT_EQUAL(r.p.out_fmt, f == 2 && c->K == 1 ? FMT_NHWC : FMT_BLK16);
            run_backward(&r);
            float *ref = malloc((r.no + r.ni + r.nw + (size_t)c->OC) * sizeof *ref);
            float *rdin = ref + r.no, *rdw = rdin + r.ni, *rdb = rdw + r.nw;
            naive_forward(&r.g, r.in, r.w, r.b, ref);
            naive_backward(&r.g, r.in, r.w, r.dout, rdin, rdw, rdb);
            double ef = max_rel(r.out, ref, r.no), ed = max_rel(r.din, rdin, r.ni),
                   ew = max_rel(r.dw, rdw, r.nw), eb = max_rel(r.db, rdb, (size_t)c->OC),
                   tol = tolerance(id);
            CU_ASSERT(ef <= tol && ed <= tol && ew <= tol && eb <= tol);
            if (ef > tol || ed > tol || ew > tol || eb > tol)
                printf("\n    %s case %zu (%s input): forward %.2g, din %.2g, dw %.2g, db %.2g "
                       "(tol %.1g)",
                       conv_algo_name(id), k, format_name(r.p.d.in_fmt), ef, ed, ew, eb, tol);
            free(ref);
            run_free(&r);
        }
    CU_ASSERT(planned >= (int)N_CASES); /* every case from at least one input layout */
}

static void test_im2col_naive(void) { check_against_naive(CONV_ALGO_IM2COL); }
static void test_direct_naive(void) { check_against_naive(CONV_ALGO_DIRECT); }
static void test_winograd_naive(void) { check_against_naive(CONV_ALGO_WINOGRAD); }

/* The algorithms against each other, with a fused ReLU in the forward. */
static void test_algorithms_agree(void) {
    if (!available(CONV_ALGO_DIRECT)) return;
    for (size_t k = 0; k < N_CASES; k++) {
        Run ref;
        CU_ASSERT_FATAL(run_init(&ref, CONV_ALGO_IM2COL, &cases[k], FMT_NHWC, ACT_RELU, 0) == 0);
        run_backward(&ref);
        for (int id = CONV_ALGO_DIRECT; id < CONV_ALGO_COUNT; id++) {
            Run r;
            if (run_init(&r, (ConvAlgoId)id, &cases[k], FMT_BLK16, ACT_RELU, 0)) continue;
            run_backward(&r);
            double tol = tolerance((ConvAlgoId)id);
            double ef = max_rel(r.out, ref.out, r.no), ed = max_rel(r.din, ref.din, r.ni),
                   ew = max_rel(r.dw, ref.dw, r.nw);
            CU_ASSERT(ef <= tol && ed <= tol && ew <= tol);
            if (ef > tol || ed > tol || ew > tol)
                printf("\n    %s vs im2col, case %zu: %.2g %.2g %.2g",
                       conv_algo_name((ConvAlgoId)id), k, ef, ed, ew);
            run_free(&r);
        }
        run_free(&ref);
    }
}

/* ---- finite differences through each algorithm: loss = sum(out * dout) ---- */

typedef struct {
    Run *r;
} FdCtx;

static double fd_loss(void *ctx) {
    Run *r = ((FdCtx *)ctx)->r;
    run_forward(r);
    double s = 0;
    for (size_t i = 0; i < r->no; i++) s += (double)r->out[i] * r->dout[i];
    return s;
}

static void check_gradients(ConvAlgoId id) {
    if (!available(id)) return;
    const Case c = {6, 7, 3, 5, 3, 1, PAD_SAME, 2};
    Run r;
    CU_ASSERT_FATAL(run_init(&r, id, &c, FMT_NHWC, ACT_LINEAR, 0) == 0);
    run_backward(&r);
    float *din = malloc(r.ni * sizeof *din), *dw = malloc(r.nw * sizeof *dw),
          *db = malloc((size_t)c.OC * sizeof *db);
    memcpy(din, r.din, r.ni * sizeof *din);
    memcpy(dw, r.dw, r.nw * sizeof *dw);
    memcpy(db, r.db, (size_t)c.OC * sizeof *db);
    FdCtx ctx = {&r};
    double tol = id == CONV_ALGO_WINOGRAD ? 5e-3 : 2e-3;
    double ei = testutil_grad_error(fd_loss, &ctx, r.in, din, r.ni, 40, 1e-2f);
    double ew = testutil_grad_error(fd_loss, &ctx, r.w, dw, r.nw, 40, 1e-2f);
    double eb = testutil_grad_error(fd_loss, &ctx, r.b, db, (size_t)c.OC, 0, 1e-2f);
    CU_ASSERT(ei < tol && ew < tol && eb < tol);
    if (ei >= tol || ew >= tol || eb >= tol)
        printf("\n    %s: gradient errors input %.2g weights %.2g bias %.2g", conv_algo_name(id),
               ei, ew, eb);
    free(din), free(dw), free(db);
    run_free(&r);
}

static void test_im2col_gradients(void) { check_gradients(CONV_ALGO_IM2COL); }
static void test_direct_gradients(void) { check_gradients(CONV_ALGO_DIRECT); }
static void test_winograd_gradients(void) { check_gradients(CONV_ALGO_WINOGRAD); }

/* A fixed choice gives bitwise the same forward and gradients every time. */
static void test_repeatable(void) {
    const Case c = {12, 11, 16, 24, 3, 1, PAD_SAME, 4};
    for (int id = 0; id < CONV_ALGO_COUNT; id++) {
        if (!available((ConvAlgoId)id)) continue;
        Run a, b;
        CU_ASSERT_FATAL(run_init(&a, (ConvAlgoId)id, &c, FMT_BLK16, ACT_RELU, 0) == 0);
        CU_ASSERT_FATAL(run_init(&b, (ConvAlgoId)id, &c, FMT_BLK16, ACT_RELU, 0) == 0);
        run_backward(&a);
        run_backward(&b);
        run_backward(&b); /* and again on the same plan */
        CU_ASSERT(memcmp(a.out, b.out, a.no * sizeof(float)) == 0);
        CU_ASSERT(memcmp(a.din, b.din, a.ni * sizeof(float)) == 0);
        CU_ASSERT(memcmp(a.dw, b.dw, a.nw * sizeof(float)) == 0);
        CU_ASSERT(memcmp(a.db, b.db, (size_t)c.OC * sizeof(float)) == 0);
        run_free(&a);
        run_free(&b);
    }
}

/* The layer on a batch shorter than its plan: oneDNN's primitives run the whole planned batch,
 * the extra samples must change nothing (their gradients are zeroed, stale inputs stay). */
static void test_short_batch(void) {
    for (int id = 0; id < CONV_ALGO_COUNT; id++) {
        if (!available((ConvAlgoId)id)) continue;
        Layer L;
        memset(&L, 0, sizeof L);
        L.kind = LAYER_CONV2D;
        L.units = 6, L.kh = L.kw = 3, L.sh = L.sw = 1, L.padding = PAD_SAME, L.act = ACT_RELU;
        L.use_bias = L.trainable = 1;
        L.conv_algo = (ConvAlgoId)id;
        L.conv_algo_strict = 1;
        L.in = (Shape){5, 6, 4, 0};
        L.max_batch = 4;
        L.in_fmt = FMT_NHWC;
        snprintf(L.name, sizeof L.name, "short");
        Err e = {0};
        CU_ASSERT_FATAL(layer_ops[LAYER_CONV2D]->plan(&L, &e) == 0);
        const int N = 3;
        size_t ni = 4 * format_floats(L.in_fmt, L.in), no = 4 * format_floats(L.out_fmt, L.out);
        float *in = calloc(ni, 4), *out = calloc(no, 4), *dout = calloc(no, 4),
              *din = calloc(ni, 4);
        const size_t NW = L.param[0].n, NB = L.param[1].n; /* kernel, bias: contiguous here */
        float *w = calloc(NW + NB, 4), *dw = calloc(NW + NB, 4);
        void *aux = aligned_alloc(64, (4 * L.aux_per_sample + 127) & ~(size_t)63);
        void *ws = aligned_alloc(64, (L.ws_fixed * 4 + 127) & ~(size_t)63);
        testutil_fill(in, ni, 21, -1, 1); /* sample 4 is stale data, not zero */
        testutil_fill(w, NW + NB, 22, -0.5f, 0.5f);
        LayerCtx c = {.w = w,
                      .b = w + NW,
                      .dw = dw,
                      .db = dw + NW,
                      .aux = aux,
                      .ws = ws,
                      .training = 1,
                      .seed = 1,
                      .n_ins = 1};
        layer_ops[LAYER_CONV2D]->forward(&L, &c, out, in, N);
        testutil_fill(dout, no, 23, -1, 1);
        layer_ops[LAYER_CONV2D]->backward(&L, &c, din, dout, in, out, N);
        /* the reference: the naive convolution of the first N samples */
        WinGeom g = layer_window_geom(&L, N);
        size_t nin = (size_t)N * shape_size(L.in), non = (size_t)N * shape_size(L.out);
        float *in_n = malloc(nin * 4), *out_n = malloc(non * 4), *ref = malloc(non * 4),
              *dout_n = malloc(non * 4);
        float *rdin = malloc(nin * 4), *rdw = malloc(NW * 4), *rdb = malloc(NB * 4),
              *din_n = malloc(nin * 4);
        layout_reorder(in_n, FMT_NHWC, in, L.in_fmt, N, L.in);
        layout_reorder(out_n, FMT_NHWC, out, L.out_fmt, N, L.out);
        layout_reorder(dout_n, FMT_NHWC, dout, L.out_fmt, N,
                       L.out); /* relu' applied by the layer */
        layout_reorder(din_n, FMT_NHWC, din, L.in_fmt, N, L.in);
        naive_forward(&g, in_n, w, w + NW, ref);
        for (size_t i = 0; i < non; i++) ref[i] = ref[i] > 0 ? ref[i] : 0;
        naive_backward(&g, in_n, w, dout_n, rdin, rdw, rdb);
        double tol = tolerance((ConvAlgoId)id);
        CU_ASSERT(max_rel(out_n, ref, non) <= tol);
        CU_ASSERT(max_rel(dw, rdw, NW) <= tol);
        CU_ASSERT(max_rel(dw + NW, rdb, NB) <= tol);
        CU_ASSERT(max_rel(din_n, rdin, nin) <= tol);
        void *ps[] = {in,   out,   dout, din,    w,    dw,  aux, ws,
                      in_n, out_n, ref,  dout_n, rdin, rdw, rdb, din_n};
        for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) free(ps[i]);
        layer_ops[LAYER_CONV2D]->release(&L);
    }
}

/* NHWC -> nChw16c -> NHWC is the identity, the padding channels are zero, and pooling on
 * nChw16c equals pooling on NHWC. */
static void test_layouts_and_pooling(void) {
    const Shape s = {5, 7, 19, 0};
    const int N = 2;
    size_t n = N * shape_size(s), nb = N * format_floats(FMT_BLK16, s);
    CU_ASSERT_EQUAL(nb, (size_t)N * 5 * 7 * 32);
    float *x = malloc(n * 4), *blk = malloc(nb * 4), *back = malloc(n * 4);
    testutil_fill(x, n, 31, -1, 1);
    memset(blk, 0xff, nb * 4); /* NaN: every element must be written */
    layout_reorder(blk, FMT_BLK16, x, FMT_NHWC, N, s);
    layout_reorder(back, FMT_NHWC, blk, FMT_BLK16, N, s);
    CU_ASSERT(memcmp(x, back, n * 4) == 0);
    /* (n=1, block 1, h=2, w=3, channel 16 + 2) is x's (1, 2, 3, 18) */
    CU_ASSERT_EQUAL(blk[(((size_t)1 * 2 + 1) * 35 + 2 * 7 + 3) * 16 + 2],
                    x[((size_t)(1 * 5 + 2) * 7 + 3) * 19 + 18]);
    int pad_zero = 1;
    for (int p = 0; p < N * 35; p++)
        for (int c = 3; c < 16; c++)
            pad_zero &= blk[((size_t)(p / 35) * 2 * 35 + 35 + p % 35) * 16 + c] == 0.0f;
    CU_ASSERT(pad_zero);
    /* MaxPooling2D 3x3 stride 2 same on both layouts */
    Layer P[2];
    float *out[2], *din[2];
    for (int f = 0; f < 2; f++) {
        memset(&P[f], 0, sizeof P[f]);
        P[f].kind = LAYER_MAXPOOL2D;
        P[f].kh = P[f].kw = 3, P[f].sh = P[f].sw = 2, P[f].padding = PAD_SAME;
        P[f].in = s, P[f].max_batch = N, P[f].in_fmt = f ? FMT_BLK16 : FMT_NHWC;
        Err e = {0};
        CU_ASSERT_FATAL(layer_ops[LAYER_MAXPOOL2D]->plan(&P[f], &e) == 0);
        CU_ASSERT_EQUAL(P[f].out_fmt, P[f].in_fmt);
        size_t no = N * format_floats(P[f].out_fmt, P[f].out);
        float *o = malloc(no * 4), *d = malloc(no * 4);
        void *aux = malloc(N * P[f].aux_per_sample);
        din[f] = malloc(N * format_floats(P[f].in_fmt, s) * 4);
        LayerCtx c = {.aux = aux, .training = 1, .seed = 1, .n_ins = 1};
        layer_ops[LAYER_MAXPOOL2D]->forward(&P[f], &c, o, f ? blk : x, N);
        float *g = malloc(N * shape_size(P[f].out) * 4);
        testutil_fill(g, N * shape_size(P[f].out), 32, -1, 1);
        layout_reorder(d, P[f].out_fmt, g, FMT_NHWC, N, P[f].out);
        layer_ops[LAYER_MAXPOOL2D]->backward(&P[f], &c, din[f], d, f ? blk : x, o, N);
        out[f] = malloc(N * shape_size(P[f].out) * 4);
        layout_reorder(out[f], FMT_NHWC, o, P[f].out_fmt, N, P[f].out);
        float *dn = malloc(n * 4);
        layout_reorder(dn, FMT_NHWC, din[f], P[f].in_fmt, N, s);
        free(din[f]);
        din[f] = dn;
        free(o), free(d), free(aux), free(g);
    }
    CU_ASSERT(memcmp(out[0], out[1], N * shape_size(P[0].out) * 4) == 0);
    CU_ASSERT(memcmp(din[0], din[1], n * 4) == 0);
    for (int f = 0; f < 2; f++) free(out[f]), free(din[f]);
    free(x), free(blk), free(back);
}

/* auto's timing: every algorithm that can plan a shape is timed (> 0 s), in training and in
 * forward-only mode; one that cannot (Winograd at stride 2) reports < 0 and is never chosen. */
static void test_auto_timing(void) {
    const Case *pick[] = {&cases[5], &cases[1]}; /* 3x3 stride 1 same; stride 2 */
    for (size_t k = 0; k < 2; k++) {
        ConvDesc d = {case_geom(pick[k]), ACT_RELU, 1, FMT_NHWC, 0, 0};
        for (int forward_only = 0; forward_only <= 1; forward_only++) {
            double sec[CONV_BF16_VARIANTS][CONV_ALGO_COUNT];
            conv_algo_time_all(&d, 3, forward_only, sec); /* d.bf16 = 0: float32 alone */
            for (int id = 0; id < CONV_ALGO_COUNT; id++) {
                ConvPlan p;
                Err e = {0};
                int can = conv_algo_get((ConvAlgoId)id) &&
                          conv_plan_init(&p, (ConvAlgoId)id, &d, &e) == 0;
                if (can) conv_plan_free(&p);
                CU_ASSERT(can ? sec[0][id] > 0 : sec[0][id] < 0);
                CU_ASSERT(sec[1][id] < 0 && sec[2][id] < 0);
                if (can != (sec[0][id] > 0))
                    printf("\n    %s, case %zu: timed %g s, plannable %d",
                           conv_algo_name((ConvAlgoId)id), k, sec[0][id], can);
            }
        }
    }
}

static void test_skip_count(void) {
    /* CUnit has no skip status: say how many checks this build could not run */
    const char *why = conv_algo_unsupported(CONV_ALGO_WINOGRAD);
    printf("\n    conv_algo: %d algorithm checks skipped%s%s", skipped, skipped ? ": " : "",
           skipped ? why : "");
    /* a skip only where this build (ONEDNN=0) or this CPU (Winograd without AVX-512) lacks one */
    CU_ASSERT(skipped == 0 || why != NULL);
}

TEST_SUITE(conv_algo, {"im2col against the naive convolution", test_im2col_naive},
           {"direct (oneDNN) against the naive convolution", test_direct_naive},
           {"winograd (oneDNN) against the naive convolution", test_winograd_naive},
           {"the algorithms agree with each other", test_algorithms_agree},
           {"im2col: finite-difference gradients", test_im2col_gradients},
           {"direct: finite-difference gradients", test_direct_gradients},
           {"winograd: finite-difference gradients", test_winograd_gradients},
           {"a fixed choice is bitwise repeatable", test_repeatable},
           {"a batch shorter than the plan's", test_short_batch},
           {"NHWC <-> nChw16c reorders, pooling on nChw16c", test_layouts_and_pooling},
           {"auto times every algorithm that can plan a shape", test_auto_timing},
           {"skipped algorithm checks", test_skip_count})
