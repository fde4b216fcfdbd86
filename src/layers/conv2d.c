/* conv2d.c: the Conv2D layer (Keras semantics: valid/same padding, strides, fused
 * activation, glorot-uniform kernel, zero bias) over the algorithm interface of conv_algo.h:
 * the choice of algorithm per layer at plan time (fixed, or timed at start-up for `auto`),
 * shared with SeparableConv2D's pointwise step (layer_impl.h). The keys and window planning
 * every windowed kind shares are in layer_common.c.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conv_algo.h"
#include "layers/layer_impl.h"

/* ---- algorithm names and plans ---- */

static const char *const algo_names[] = {"im2col", "direct", "winograd", NULL};

const char *conv_algo_name(ConvAlgoId id) {
    if (id == CONV_ALGO_AUTO) return "auto";
    return id >= 0 && id < CONV_ALGO_COUNT ? algo_names[id] : "default";
}

const char *format_name(TensorFormat f) { return f == FMT_BLK16 ? "nChw16c" : "nhwc"; }

/* NULL when algorithm id (which this build and CPU can run) has a bfloat16 variant here, else
 * why not: the one check of conv_plan_init and layer_conv_bf16. */
static const char *conv_bf16_unsupported(ConvAlgoId id) {
    if (!conv_algo_get(id)->bf16) return "oneDNN has no bfloat16 variant of it";
    return conv_dnnl_bf16_unsupported();
}

int conv_plan_init(ConvPlan *p, ConvAlgoId id, const ConvDesc *d, Err *e) {
    memset(p, 0, sizeof *p);
    p->asked = p->d = *d;
    const char *no = conv_algo_unsupported(id); /* not in this build, or not on this CPU */
    if (no) {
        err_set(e, "%s", no); /* callers name the layer and the algorithm */
        return -1;
    }
    if (d->bf16) { /* bfloat16 only where the algorithm has it and the CPU has its units */
        if ((no = conv_bf16_unsupported(id))) {
            err_set(e, "bfloat16: %s", no);
            return -1;
        }
    }
    p->algo = conv_algo_get(id);
    if (p->algo->plan(p, e)) {
        p->algo = NULL;
        return -1;
    }
    return 0;
}

void conv_plan_free(ConvPlan *p) {
    if (p->algo) p->algo->free(p);
    memset(p, 0, sizeof *p);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The buffers of one timed pass, shared by all candidates (each sized for the largest): the
 * candidates run one at a time, each forward writing the aux its backward reads, so one set
 * serves them all and auto's peak memory is that of its largest candidate, not of their sum. */
typedef struct {
    float *in, *din, *out, *dout, *w, *dw; /* input and output floats x 2 in the candidates'
                                            * layouts, HWIO kernel + bias x 2 */
    void *aux, *ws;
    size_t ni, no, aux_bytes, ws_bytes;
    size_t nk, nb; /* kernel and bias floats: w + nk is the bias */
} ConvTimingBufs;

/* Floats of the input and output of plan p, in its layouts. */
static void conv_plan_floats(const ConvPlan *p, size_t *ni, size_t *no) {
    const WinGeom *g = &p->d.g;
    Shape si = {g->H, g->W, g->C, 0}, so = {g->OH, g->OW, g->OC, 0};
    *ni = (size_t)g->N * format_floats(p->d.in_fmt, si);
    *no = (size_t)g->N * format_floats(p->out_fmt, so);
}

/* Timing allocates before the plan's memory check: a candidate needing over a quarter of the
 * node is not timed (a batch that does not fit is then refused by the check, not by running
 * out here). */
static int conv_plan_too_big(const ConvPlan *p) {
    size_t ni, no;
    conv_plan_floats(p, &ni, &no);
    double nw = (double)conv_kernel_floats(&p->d.g);
    double bytes = 4.0 * (2.0 * (double)ni + 2.0 * (double)no + 2.0 * nw) + (double)p->aux_bytes +
                   (double)p->ws_bytes;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 && bytes > (double)pages * (double)page / 4;
}

static void conv_timing_bufs_init(ConvTimingBufs *b) {
    b->in = xcalloc(b->ni, sizeof *b->in), b->din = xmalloc(b->ni * sizeof *b->din);
    b->out = xmalloc(b->no * sizeof *b->out), b->dout = xcalloc(b->no, sizeof *b->dout);
    b->w = xcalloc(b->nk + b->nb, sizeof *b->w), b->dw = xcalloc(b->nk + b->nb, sizeof *b->dw);
    b->aux = aligned_alloc(64, (b->aux_bytes + 64) & ~(size_t)63);
    b->ws = aligned_alloc(64, (b->ws_bytes + 64) & ~(size_t)63);
    for (size_t i = 0; i < b->ni; i += 7) b->in[i] = 0.5f;
    for (size_t i = 0; i < b->no; i += 5) b->dout[i] = 0.25f;
    for (size_t i = 0; i < b->nk; i += 3) b->w[i] = 0.1f;
}

static void conv_timing_bufs_free(ConvTimingBufs *b) {
    free(b->in), free(b->din), free(b->out), free(b->dout), free(b->w), free(b->dw);
    free(b->aux), free(b->ws);
}

/* Seconds of one forward + backward_weights + backward_data (forward_only: the forward). */
static double conv_timing_run(ConvPlan *p, ConvTimingBufs *b, int forward_only) {
    const int N = p->d.g.N, bias = p->d.has_bias;
    double t0 = now_seconds();
    p->algo->forward(p, b->out, b->in, b->w, bias ? b->w + b->nk : NULL, b->aux, b->ws, N);
    if (!forward_only) {
        p->algo->backward_weights(p, b->dw, bias ? b->dw + b->nk : NULL, b->dout, b->in, b->aux,
                                  b->ws, N);
        p->algo->backward_data(p, b->din, b->dout, b->w, b->aux, b->ws, N);
    }
    return now_seconds() - t0;
}

/* The candidates: every algorithm in float32, then (where d->bf16 asks) in both bfloat16
 * variants; candidate k is algorithm k % CONV_ALGO_COUNT with ConvDesc.bf16 = k /
 * CONV_ALGO_COUNT. */
#define N_CAND (CONV_BF16_VARIANTS * CONV_ALGO_COUNT)

void conv_algo_time_all(const ConvDesc *d, int reps, int forward_only,
                        double sec[CONV_BF16_VARIANTS][CONV_ALGO_COUNT]) {
    ConvPlan p[N_CAND];
    int ok[N_CAND], any = 0;
    ConvTimingBufs b;
    memset(&b, 0, sizeof b);
    b.nk = conv_kernel_floats(&d->g), b.nb = (size_t)d->g.OC;
    if (reps > 15) reps = 15;
    if (reps < 1) reps = 1;
    for (int k = 0; k < N_CAND; k++) {
        Err e = {0};
        ConvDesc dk = *d;
        dk.bf16 = k / CONV_ALGO_COUNT;
        sec[k / CONV_ALGO_COUNT][k % CONV_ALGO_COUNT] = -1;
        ok[k] = (!dk.bf16 || d->bf16) &&
                conv_plan_init(&p[k], (ConvAlgoId)(k % CONV_ALGO_COUNT), &dk, &e) == 0;
        if (ok[k] && conv_plan_too_big(&p[k])) conv_plan_free(&p[k]), ok[k] = 0;
        if (!ok[k]) continue;
        size_t ni, no;
        conv_plan_floats(&p[k], &ni, &no);
        b.ni = ni > b.ni ? ni : b.ni, b.no = no > b.no ? no : b.no;
        b.aux_bytes = p[k].aux_bytes > b.aux_bytes ? p[k].aux_bytes : b.aux_bytes;
        b.ws_bytes = p[k].ws_bytes > b.ws_bytes ? p[k].ws_bytes : b.ws_bytes;
        any = 1;
    }
    if (!any) return;
    conv_timing_bufs_init(&b);
    double run[N_CAND][16];
    for (int k = 0; k < N_CAND; k++)
        if (ok[k]) conv_timing_run(&p[k], &b, forward_only); /* warm-up: JIT, first touch */
    /* Round r times every candidate once, so that the machine's drift (another process, a
     * neighbour on the host) hits all of them alike rather than whichever ran during it. */
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < N_CAND; k++)
            if (ok[k]) run[k][r] = conv_timing_run(&p[k], &b, forward_only);
    for (int k = 0; k < N_CAND; k++) {
        if (!ok[k]) continue;
        qsort(run[k], (size_t)reps, sizeof run[k][0], cmp_double);
        sec[k / CONV_ALGO_COUNT][k % CONV_ALGO_COUNT] = run[k][reps / 2];
        conv_plan_free(&p[k]);
    }
    conv_timing_bufs_free(&b);
}

/* ---- the layer ---- */

int layer_configure_algorithm(Layer *L, IniFile *ini, Section *s, Err *e) {
    static const char *const names[] = {"default", "auto", "im2col", "direct", "winograd", NULL};
    int algo;
    if (sec_get_enum(ini, s, "algorithm", 0, 0, names, &algo, e)) return -1;
    /* names[i] is ConvAlgoId i - 2 */
    L->conv_algo = (ConvAlgoId)(algo - 2);
    L->conv_algo_strict = algo >= 2;
    return 0;
}

static int conv2d_configure(Layer *L, IniFile *ini, Section *s, Err *e) {
    if (sec_get_int(ini, s, "filters", 1, 0, 1, 1 << 16, &L->units, e)) return -1;
    if (layer_configure_window(L, ini, s, "kernel_size", 0, e)) return -1;
    if (layer_configure_algorithm(L, ini, s, e)) return -1;
    return layer_configure_common(L, ini, s, e);
}

/* auto: the fastest candidate on this layer's shapes: forward + both backward passes, or the
 * forward alone for a layer the job freezes (a phase that unfreezes it keeps that choice). */
ConvChoice conv_algo_tune(const ConvDesc *d, int forward_only) {
    /* nothing timed (too large to try): the default */
    ConvChoice best = {conv_algo_get(CONV_ALGO_DIRECT) ? CONV_ALGO_DIRECT : CONV_ALGO_IM2COL,
                       CONV_PREC_POLICY};
    static const ConvPrecision prec[CONV_BF16_VARIANTS] = {CONV_PREC_F32, CONV_PREC_BF16,
                                                           CONV_PREC_BF16_NHWC};
    double sec[CONV_BF16_VARIANTS][CONV_ALGO_COUNT], best_t = -1;
    conv_algo_time_all(d, CONV_TUNE_ROUNDS, forward_only, sec);
    for (int b = 0; b < CONV_BF16_VARIANTS; b++)
        for (int id = 0; id < CONV_ALGO_COUNT; id++)
            if (sec[b][id] >= 0 && (best_t < 0 || sec[b][id] < best_t)) {
                best = (ConvChoice){(ConvAlgoId)id, prec[b]};
                best_t = sec[b][id];
            }
    return best;
}

/* ConvDesc.bf16 for layer L's convolution with algorithm id: bfloat16 where asked for (by
 * the policy: oneDNN's layouts; or by auto's choice, either variant) and the algorithm and
 * the CPU have it; else 0. */
static int layer_conv_bf16(const Layer *L, ConvAlgoId id) {
    int want = L->conv_prec == CONV_PREC_BF16_NHWC                 ? 2
               : L->conv_prec == CONV_PREC_BF16                    ? 1
               : L->conv_prec == CONV_PREC_POLICY && L->mixed_bf16 ? 1
                                                                   : 0;
    return want && conv_algo_get(id) && !conv_bf16_unsupported(id) ? want : 0;
}

void conv2d_release(Layer *L) {
    if (!L->conv) return;
    conv_plan_free(L->conv);
    free(L->conv);
    L->conv = NULL;
}

int layer_conv_plan(Layer *L, const ConvDesc *dp, Err *e) {
    ConvDesc d = *dp;
    conv2d_release(L);
    ConvAlgoId id = L->conv_algo;
    /* auto is timed after planning (model_tune_algorithms): the default until then */
    if (id == CONV_ALGO_DEFAULT || id == CONV_ALGO_AUTO)
        id = conv_algo_get(CONV_ALGO_DIRECT) ? CONV_ALGO_DIRECT : CONV_ALGO_IM2COL;
    L->conv = xmalloc(sizeof *L->conv);
    Err why = {0};
    /* A [train]-wide choice falls back (winograd -> direct -> im2col) where it cannot run; a
     * layer's own `algorithm` does not. The plan's request (ConvPlan.asked) keeps the policy's
     * bfloat16, so that auto times it. */
    for (;;) {
        d.bf16 = layer_conv_bf16(L, id);
        if (!conv_plan_init(L->conv, id, &d, &why)) break;
        if (d.bf16) { /* no bfloat16 kernel for this shape: the same algorithm in float32 */
            d.bf16 = 0;
            why.msg[0] = 0;
            if (!conv_plan_init(L->conv, id, &d, &why)) break;
        }
        if (L->conv_algo_strict || id == CONV_ALGO_IM2COL) {
            char w[320];
            err_set(e, "layer %s (%s): algorithm = %s: %s", L->name, layer_where(L, w, sizeof w),
                    conv_algo_name(id), why.msg);
            free(L->conv);
            L->conv = NULL;
            return -1;
        }
        id = id == CONV_ALGO_WINOGRAD && conv_algo_get(CONV_ALGO_DIRECT) ? CONV_ALGO_DIRECT
                                                                         : CONV_ALGO_IM2COL;
        why.msg[0] = 0;
    }
    L->conv_algo = id;
    L->conv->asked.bf16 = L->mixed_bf16 && !conv_dnnl_bf16_unsupported();
    return 0;
}

static int conv2d_plan(Layer *L, Err *e) {
    if (layer_plan_window(L, L->units, e)) return -1;
    layer_param_add(L, "kernel", PARAM_WEIGHT, 4, L->kh, L->kw, L->in.c, L->units);
    if (L->use_bias) layer_param_add(L, "bias", PARAM_WEIGHT, 1, L->units, 0, 0, 0);
    ConvDesc d = {layer_window_geom(L, L->max_batch > 0 ? L->max_batch : 1),
                  layer_act(L),
                  L->use_bias,
                  L->in_fmt,
                  L->out_read_as_nhwc,
                  0};
    if (layer_conv_plan(L, &d, e)) return -1;
    L->in_fmt = L->conv->d.in_fmt;
    L->out_fmt = L->conv->out_fmt;
    size_t B = (size_t)(L->max_batch > 0 ? L->max_batch : 1);
    L->aux_per_sample = (L->conv->aux_bytes + B - 1) / B;
    L->ws_fixed = (L->conv->ws_bytes + sizeof(float) - 1) / sizeof(float);
    return 0;
}

static void conv2d_init(const Layer *L, float *const *p, Rng *rng) {
    int rf = L->kh * L->kw;
    init_glorot_uniform(p[0], L->param[0].n, rf * L->in.c, rf * L->units, rng);
    if (L->use_bias) memset(p[1], 0, L->param[1].n * sizeof *p[1]);
}

static void conv2d_layer_forward(const Layer *L, const LayerCtx *c, float *out, const float *in,
                                 int N) {
    L->conv->algo->forward(L->conv, out, in, c->w, c->b, c->aux, c->ws, N);
}

void layer_conv_prepare_dout(const Layer *L, float *dout, const float *out, int N) {
    const ConvPlan *p = L->conv;
    const size_t per = format_floats(L->out_fmt, L->out);
    activation_backward(layer_act(L), dout, dout, out, (size_t)N * per);
    if (p->full_batch && N < p->d.g.N) /* the extra samples must add nothing */
        memset(dout + (size_t)N * per, 0, (size_t)(p->d.g.N - N) * per * sizeof *dout);
}

/* backward_weights reads the input unless the algorithm kept its own copy of it */
static unsigned conv2d_backward_reads(const Layer *L) {
    return layer_act_reads(L) | (L->conv->keeps_input ? 0 : LAYER_READS_INPUT);
}

static void conv2d_layer_backward(const Layer *L, const LayerCtx *c, float *din, float *dout,
                                  const float *in, const float *out, int N) {
    ConvPlan *p = L->conv;
    layer_conv_prepare_dout(L, dout, out, N);
    if (c->dw || c->db) {
        double t0 = c->prof_weights ? now_seconds() : 0;
        p->algo->backward_weights(p, c->dw, c->db, dout, in, c->aux, c->ws, N);
        if (c->prof_weights) *c->prof_weights += now_seconds() - t0;
    }
    if (din) p->algo->backward_data(p, din, dout, c->w, c->aux, c->ws, N);
}

const LayerOps conv2d_ops = {
    .section = "conv2d",
    .keras_name = "Conv2D",
    .keras3_key = "conv2d",
    .onnx = LAYER_ONNX_CONV,
    .configure = conv2d_configure,
    .plan = conv2d_plan,
    .init = conv2d_init,
    .forward = conv2d_layer_forward,
    .backward = conv2d_layer_backward,
    .release = conv2d_release,
    .own_layout = 1,
    .backward_reads = conv2d_backward_reads,
};
