/* layerfix.c: the layer-test fixture (layerfix.h). */
#include "layerfix.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

Layer layerfix_window_layer(LayerKind kind, int units, int k, int s, Padding p, Activation a) {
    Layer L;
    memset(&L, 0, sizeof L);
    L.kind = kind;
    L.units = units;
    L.kh = L.kw = k;
    L.sh = L.sw = s;
    L.padding = p;
    L.act = a;
    L.use_bias = 1;
    L.trainable = 1;
    return L;
}

void fixture_init(Fixture *f, Layer L, Shape in, int N) {
    memset(f, 0, sizeof *f);
    f->L = L;
    f->L.in = in;
    f->L.in_shapes[0] = in;
    f->L.max_batch = N;
    f->L.n_param = 0;
    f->n_ins = L.n_inputs > 1 ? L.n_inputs : 1;
    for (int k = 1; k < f->n_ins; k++) f->L.in_shapes[k] = in;
    snprintf(f->L.name, sizeof f->L.name, "test");
    Err e = {0};
    CU_ASSERT_FATAL(layer_ops[L.kind]->plan(&f->L, &e) == 0);
    f->N = N;
    size_t ni = N * shape_size(in), no = N * format_floats(f->L.out_fmt, f->L.out);
    f->in = calloc(ni, 4);
    f->din = calloc(ni, 4);
    f->ins[0] = f->in, f->dins[0] = f->din;
    for (int k = 1; k < f->n_ins; k++) {
        f->ins[k] = calloc(ni, 4);
        f->dins[k] = calloc(ni, 4);
        testutil_fill(f->ins[k], ni, 10 + (unsigned)k, -1, 1);
    }
    f->out = calloc(no, 4);
    f->dout = calloc(no, 4);
    f->r = calloc(no, 4);
    size_t most = 1;
    for (int i = 0; i < f->L.n_param; i++) {
        size_t n = f->L.param[i].n;
        most = n > most ? n : most;
        f->p[i] = calloc(n + 1, 4);
        f->dp[i] = calloc(n + 1, 4);
        testutil_fill(f->p[i], n, 2 + (unsigned)i, -0.5f, 0.5f);
    }
    /* w, b: what the older tests index; zeros where the layer has no such tensor */
    for (int i = f->L.n_param; i < 2; i++) {
        f->p[i] = calloc(most + 1, 4);
        f->dp[i] = calloc(most + 1, 4);
    }
    f->w = f->p[0], f->b = f->p[1], f->dw = f->dp[0], f->db = f->dp[1];
    f->ws = aligned_alloc(64,
                          ((N * f->L.ws_per_sample + f->L.ws_fixed + 16) * 4 + 63) & ~(size_t)63);
    memset(f->ws, 0, (N * f->L.ws_per_sample + f->L.ws_fixed + 16) * 4);
    f->aux = aligned_alloc(64, (N * f->L.aux_per_sample + 64 + 63) & ~(size_t)63);
    memset(f->aux, 0, N * f->L.aux_per_sample + 64);
    testutil_fill(f->in, ni, 1, -1, 1);
    testutil_fill(f->r, no, 4, -1, 1);
    for (int i = 0; i < 16; i++) f->ids[i] = 100 + 7 * i;
}

void fixture_free(Fixture *f) {
    if (layer_ops[f->L.kind]->release) layer_ops[f->L.kind]->release(&f->L);
    void *ps[] = {f->in, f->din, f->out, f->dout, f->r, f->ws, f->aux};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) free(ps[i]);
    for (int i = 0; i < LAYER_MAX_PARAMS; i++) free(f->p[i]), free(f->dp[i]);
    for (int k = 1; k < f->n_ins; k++) free(f->ins[k]), free(f->dins[k]);
}

LayerCtx fixture_ctx(Fixture *f) {
    LayerCtx c;
    memset(&c, 0, sizeof c);
    for (int i = 0; i < f->L.n_param; i++) {
        c.p[i] = f->p[i];
        if (f->L.param[i].role == PARAM_STATE)
            c.st[i] = f->p[i];
        else if (f->L.trainable)
            c.dp[i] = f->dp[i];
    }
    c.w = c.p[0], c.b = c.p[1], c.dw = c.dp[0], c.db = c.dp[1];
    c.aux = f->aux;
    c.ws = f->ws;
    c.training = f->training;
    c.seed = 42;
    c.epoch = 3;
    c.layer_index = 1;
    c.sample_ids = f->ids;
    c.ins = (const float *const *)f->ins;
    c.dins = f->dins;
    c.n_ins = f->n_ins;
    c.allreduce = f->allreduce;
    c.allreduce_arg = f->allreduce_arg;
    return c;
}

void fixture_forward(Fixture *f) {
    LayerCtx c = fixture_ctx(f);
    layer_ops[f->L.kind]->forward(&f->L, &c, f->out, f->in, f->N);
}

/* loss = sum(out * r): dloss/dout = r */
double fixture_loss(void *ctx) {
    Fixture *f = ctx;
    fixture_forward(f);
    double s = 0;
    size_t no = f->N * format_floats(f->L.out_fmt, f->L.out);
    for (size_t i = 0; i < no; i++) s += (double)f->out[i] * f->r[i];
    return s;
}

/* What the backward must not read, overwritten with NaN between the passes (a read would turn
 * the gradients NaN): the workspace, scratch within one call, which other layers' forwards use
 * in a model; and the input and output where the kind says its backward does not read them
 * (a model lets them die after the forward, graph.c). in_keep: where the input is saved. */
static void fixture_poison(Fixture *f, size_t ni, size_t no, float *in_keep) {
    unsigned reads = layer_backward_reads(&f->L);
    memcpy(in_keep, f->in, ni * 4);
    float *poisoned[3] = {f->ws, reads & LAYER_READS_INPUT ? NULL : f->in,
                          reads & LAYER_READS_OUTPUT ? NULL : f->out};
    size_t n[3] = {f->N * f->L.ws_per_sample + f->L.ws_fixed + 16, ni, no};
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; poisoned[k] && i < n[k]; i++) poisoned[k][i] = NAN;
}

void fixture_backward(Fixture *f) {
    fixture_forward(f);
    size_t ni = f->N * shape_size(f->L.in), no = f->N * format_floats(f->L.out_fmt, f->L.out);
    float *in_keep = malloc(ni * 4);
    fixture_poison(f, ni, no, in_keep);
    memcpy(f->dout, f->r, no * 4);
    for (int i = 0; i < f->L.n_param; i++) memset(f->dp[i], 0, (f->L.param[i].n + 1) * 4);
    LayerCtx c = fixture_ctx(f);
    layer_ops[f->L.kind]->backward(&f->L, &c, f->din, f->dout, f->in, f->out, f->N);
    memcpy(f->in, in_keep, ni * 4); /* the finite differences perturb the real input */
    free(in_keep);
}

void check_gradients(Fixture *f, double tol, float eps) {
    fixture_backward(f);
    size_t ni = f->N * shape_size(f->L.in);
    float *din = malloc(ni * 4), *dp[LAYER_MAX_PARAMS] = {0};
    memcpy(din, f->din, ni * 4);
    for (int i = 0; i < f->L.n_param; i++) {
        dp[i] = malloc((f->L.param[i].n + 1) * 4);
        memcpy(dp[i], f->dp[i], (f->L.param[i].n + 1) * 4);
    }
    double e_in = testutil_grad_error(fixture_loss, f, f->in, din, ni, 300, eps);
    CU_ASSERT(e_in < tol);
    if (e_in >= tol) printf("\n    input gradient error %g (tol %g)\n", e_in, tol);
    for (int k = 1; k < f->n_ins; k++) { /* the other inputs (Add) */
        memcpy(din, f->dins[k], ni * 4);
        double e_k = testutil_grad_error(fixture_loss, f, f->ins[k], din, ni, 300, eps);
        CU_ASSERT(e_k < tol);
        if (e_k >= tol) printf("\n    input %d gradient error %g (tol %g)\n", k + 1, e_k, tol);
    }
    for (int i = 0; i < f->L.n_param; i++) {
        if (f->L.param[i].role != PARAM_WEIGHT || !f->L.trainable) continue; /* frozen: none */
        /* state the forward updates (moving statistics) must not drift the loss: it does not,
         * since a training forward reads the batch's statistics, never the moving ones */
        double e = testutil_grad_error(fixture_loss, f, f->p[i], dp[i], f->L.param[i].n, 300, eps);
        CU_ASSERT(e < tol);
        if (e >= tol) printf("\n    %s gradient error %g (tol %g)\n", f->L.param[i].name, e, tol);
    }
    free(din);
    for (int i = 0; i < LAYER_MAX_PARAMS; i++) free(dp[i]);
}
