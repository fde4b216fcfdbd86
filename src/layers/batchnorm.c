/* batchnorm.c: the BatchNormalization layer (Keras semantics, axis -1), with SyncBatchNorm
 * statistics across ranks.
 *
 * Per channel c of an (N, H, W, C) tensor (or (N, C) flat), over the M = N*H*W values:
 *   training (a trainable layer in a training pass):
 *     mean = sum(x) / M, var = sum(x^2) / M - mean^2 (biased, as Keras normalises), over the GLOBAL batch:
 *     the per-rank sums are added across ranks (LayerCtx.allreduce), so a step gives the same
 *     numbers on any number of ranks;
 *     y = gamma * (x - mean) / sqrt(var + epsilon) + beta;
 *     moving_mean = moving_mean * momentum + mean * (1 - momentum), the same for moving_variance
 *     with var (Keras 3's update: ops.moments, no Bessel correction. Keras 2, the book's, runs
 *     TF's fused kernel, whose batch variance for the update is Bessel-corrected, M/(M-1) times
 *     ours, as PyTorch's running_var: at most 1.0003 in the mini-Xception, where M >= 32*11*11);
 *   inference (evaluation, predict, and a frozen layer, as Keras): the moving statistics instead.
 * Backward in training mode, with xhat = (x - mean) * inv, inv = 1 / sqrt(var + epsilon), and
 * the global sums Sdy = sum(dy), Sdyx = sum(dy * xhat) (allreduced as well):
 *     dx = gamma * inv / M * (M * dy - Sdy - xhat * Sdyx);
 *     dgamma += this rank's sum(dy * xhat), dbeta += this rank's sum(dy) (the gradient allreduce
 *     adds the ranks' parts, as for every weight).
 * Sums are taken per sample in double, then added in sample order: the result does not depend
 * on the thread count.
 *
 * Parameters, in Keras's order: gamma (scale = true), beta (center = true), moving_mean,
 * moving_variance (state). aux keeps the batch's mean and inv (2C doubles) for the backward.
 */
#include <math.h>
#include <string.h>

#include "layers/layer_impl.h"

static int bn_configure(Layer *L, IniFile *ini, Section *s, Err *e) {
    BatchNormCfg *b = &L->u.bn;
    int axis, trainable;
    if (sec_get_int(ini, s, "axis", 0, -1, -1, -1, &axis, e) ||
        sec_get_float(ini, s, "momentum", 0, 0.99, 0.0, 1.0, &b->momentum, e) ||
        sec_get_float(ini, s, "epsilon", 0, 1e-3, 1e-12, 1.0, &b->epsilon, e) ||
        sec_get_bool(ini, s, "center", 1, &b->center, e) ||
        sec_get_bool(ini, s, "scale", 1, &b->scale, e) ||
        sec_get_bool(ini, s, "trainable", 1, &trainable, e))
        return -1;
    L->trainable = trainable;
    L->act = ACT_LINEAR;
    return 0;
}

/* Indices of the tensors in L->param; -1 for an absent gamma or beta. */
typedef struct {
    int gamma, beta, mean, var;
} BnIdx;

static BnIdx bn_idx(const Layer *L) {
    BnIdx i;
    i.gamma = L->u.bn.scale ? 0 : -1;
    i.beta = L->u.bn.center ? L->u.bn.scale : -1;
    i.mean = L->u.bn.scale + L->u.bn.center;
    i.var = i.mean + 1;
    return i;
}

static int bn_plan(Layer *L, Err *e) {
    (void)e;
    const int C = L->in.c;
    L->out = L->in;
    if (L->u.bn.scale) layer_param_add(L, "gamma", PARAM_WEIGHT, 1, C, 0, 0, 0);
    if (L->u.bn.center) layer_param_add(L, "beta", PARAM_WEIGHT, 1, C, 0, 0, 0);
    layer_param_add(L, "moving_mean", PARAM_STATE, 1, C, 0, 0, 0);
    layer_param_add(L, "moving_variance", PARAM_STATE, 1, C, 0, 0, 0);
    size_t B = (size_t)(L->max_batch > 0 ? L->max_batch : 1);
    L->aux_per_sample = (2 * (size_t)C * sizeof(double) + B - 1) / B; /* mean, inv */
    L->ws_per_sample = 4 * (size_t)C;                                 /* 2C doubles per sample */
    /* the sums and M (2C + 1 doubles), then the per-channel factors (3C floats) */
    L->ws_fixed = 7 * (size_t)C + 4;
    return 0;
}

static void bn_init(const Layer *L, float *const *p, Rng *rng) {
    (void)rng;
    BnIdx i = bn_idx(L);
    const int C = L->in.c;
    for (int c = 0; c < C; c++) {
        if (i.gamma >= 0) p[i.gamma][c] = 1.0f;
        if (i.beta >= 0) p[i.beta][c] = 0.0f;
        p[i.mean][c] = 0.0f;
        p[i.var][c] = 1.0f;
    }
}

/* A training pass normalises with the batch's statistics. */
static int bn_batch_mode(const Layer *L, const LayerCtx *c) { return c->training && L->trainable; }

/* sums[0..2C) = per-channel sum over the N samples of a[i] and of a[i] * b[i] (b NULL: a[i]^2;
 * xm/xi given: b = (x - xm) * xi), summed per sample into part (N x 2C doubles), then in sample
 * order. */
static void channel_sums(double *sums, double *part, const float *a, const float *x,
                         const double *xm, const double *xi, int N, size_t HW, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        double *s = part + (size_t)n * 2 * C;
        memset(s, 0, 2 * (size_t)C * sizeof *s);
        const float *an = a + (size_t)n * HW * C;
        const float *xn = x ? x + (size_t)n * HW * C : NULL;
        for (size_t r = 0; r < HW; r++)
            for (int c = 0; c < C; c++) {
                double v = an[r * C + c];
                double w = xn ? (xn[r * C + c] - xm[c]) * xi[c] : v;
                s[c] += v;
                s[C + c] += v * w;
            }
    }
    memset(sums, 0, 2 * (size_t)C * sizeof *sums);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < 2 * C; c++) sums[c] += part[(size_t)n * 2 * C + c];
}

static void bn_forward(const Layer *L, const LayerCtx *c, float *out, const float *in, int N) {
    const BnIdx ix = bn_idx(L);
    const int C = L->in.c;
    const size_t HW = (size_t)L->in.h * L->in.w;
    double *mean = c->aux, *inv = mean + C;
    if (bn_batch_mode(L, c)) {
        double *part = (double *)c->ws, *sums = part + (size_t)(N > 0 ? N : 0) * 2 * C;
        if (N > 0)
            channel_sums(sums, part, in, NULL, NULL, NULL, N, HW, C);
        else
            memset(sums, 0, 2 * (size_t)C * sizeof *sums);
        sums[2 * C] = (double)N * (double)HW;
        /* the global batch's sums (a rank without samples still takes part) */
        if (c->allreduce) c->allreduce(c->allreduce_arg, sums, 2 * C + 1);
        const double M = sums[2 * C];
        const float mom = L->u.bn.momentum;
        for (int k = 0; k < C; k++) {
            double m = sums[k] / M, var = sums[C + k] / M - m * m;
            if (var < 0) var = 0; /* rounding */
            mean[k] = m;
            inv[k] = 1.0 / sqrt(var + (double)L->u.bn.epsilon);
            c->st[ix.mean][k] = c->st[ix.mean][k] * mom + (float)m * (1.0f - mom);
            c->st[ix.var][k] = c->st[ix.var][k] * mom + (float)var * (1.0f - mom);
        }
    } else {
        for (int k = 0; k < C; k++) {
            mean[k] = c->p[ix.mean][k];
            inv[k] = 1.0 / sqrt((double)c->p[ix.var][k] + (double)L->u.bn.epsilon);
        }
    }
    if (N <= 0) return;
    /* y = x * a + b per channel, a = gamma * inv, b = beta - mean * a; ws past the sums */
    float *a = (float *)((double *)c->ws + (size_t)N * 2 * C + 2 * (size_t)C + 1), *b = a + C;
    for (int k = 0; k < C; k++) {
        double g = ix.gamma >= 0 ? c->p[ix.gamma][k] : 1.0,
               be = ix.beta >= 0 ? c->p[ix.beta][k] : 0.0;
        a[k] = (float)(g * inv[k]);
        b[k] = (float)(be - mean[k] * g * inv[k]);
    }
    const size_t rows = (size_t)N * HW;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        const float *x = in + r * C;
        float *y = out + r * C;
#pragma omp simd
        for (int k = 0; k < C; k++) y[k] = x[k] * a[k] + b[k];
    }
}

/* x (the batch's statistics are in aux); y is never read */
static unsigned bn_backward_reads(const Layer *L) {
    (void)L;
    return LAYER_READS_INPUT;
}

static void bn_backward(const Layer *L, const LayerCtx *c, float *din, float *dout, const float *in,
                        const float *out, int N) {
    (void)out;
    const BnIdx ix = bn_idx(L);
    const int C = L->in.c;
    const size_t HW = (size_t)L->in.h * L->in.w, rows = (size_t)(N > 0 ? N : 0) * HW;
    const double *mean = c->aux, *inv = mean + C;
    if (!bn_batch_mode(L, c)) { /* moving statistics: y is affine in x */
        if ((ix.gamma >= 0 && c->dp[ix.gamma]) || (ix.beta >= 0 && c->dp[ix.beta])) {
            double *part = (double *)c->ws, *sums = part + (size_t)N * 2 * C;
            channel_sums(sums, part, dout, in, mean, inv, N, HW, C);
            for (int k = 0; k < C; k++) {
                if (ix.gamma >= 0 && c->dp[ix.gamma]) c->dp[ix.gamma][k] += (float)sums[C + k];
                if (ix.beta >= 0 && c->dp[ix.beta]) c->dp[ix.beta][k] += (float)sums[k];
            }
        }
        if (!din || N <= 0) return;
        float *a = (float *)c->ws;
        for (int k = 0; k < C; k++)
            a[k] = (float)((ix.gamma >= 0 ? c->p[ix.gamma][k] : 1.0) * inv[k]);
#pragma omp parallel for schedule(static)
        for (size_t r = 0; r < rows; r++)
            for (int k = 0; k < C; k++) din[r * C + k] = dout[r * C + k] * a[k];
        return;
    }
    double *part = (double *)c->ws, *sums = part + (size_t)(N > 0 ? N : 0) * 2 * C;
    if (N > 0)
        channel_sums(sums, part, dout, in, mean, inv, N, HW, C);
    else
        memset(sums, 0, 2 * (size_t)C * sizeof *sums);
    for (int k = 0; k < C; k++) { /* this rank's part of the weight gradients */
        if (ix.gamma >= 0 && c->dp[ix.gamma]) c->dp[ix.gamma][k] += (float)sums[C + k];
        if (ix.beta >= 0 && c->dp[ix.beta]) c->dp[ix.beta][k] += (float)sums[k];
    }
    sums[2 * C] = (double)rows;
    if (c->allreduce) c->allreduce(c->allreduce_arg, sums, 2 * C + 1);
    if (!din || N <= 0) return;
    const double M = sums[2 * C];
    /* dx = k1 * dy - k2 - k3 * x per channel: k1 = gamma inv, k2 = k1 (Sdy - mean inv Sdyx) / M,
     * k3 = k1 inv Sdyx / M */
    float *k1 = (float *)(sums + 2 * C + 1), *k2 = k1 + C, *k3 = k2 + C;
    for (int k = 0; k < C; k++) {
        double g = (ix.gamma >= 0 ? c->p[ix.gamma][k] : 1.0) * inv[k];
        double sdy = sums[k] / M, sdyx = sums[C + k] / M;
        k1[k] = (float)g;
        k3[k] = (float)(g * inv[k] * sdyx);
        k2[k] = (float)(g * (sdy - mean[k] * inv[k] * sdyx));
    }
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        const float *dy = dout + r * C, *x = in + r * C;
        float *dx = din + r * C;
#pragma omp simd
        for (int k = 0; k < C; k++) dx[k] = k1[k] * dy[k] - k2[k] - k3[k] * x[k];
    }
}

const LayerOps batchnorm_ops = {
    .section = "batch_normalization",
    .keras_name = "BatchNormalization",
    .keras3_key = "batch_normalization",
    .onnx = LAYER_ONNX_BATCHNORM,
    .configure = bn_configure,
    .plan = bn_plan,
    .init = bn_init,
    .forward = bn_forward,
    .backward = bn_backward,
    .flags = LAYER_F_BATCH | LAYER_F_STATE | LAYER_F_COLLECTIVE,
    .backward_reads = bn_backward_reads,
};
