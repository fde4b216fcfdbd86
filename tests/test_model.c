/* test_model.c: whole-model checks: planning errors, the output layer returning logits for a
 * fused sigmoid/softmax, a finite-difference check of every parameter's gradient through the
 * full model and loss, frozen layers receiving no gradient, and the backward pass reporting each
 * layer's gradient slice once it is final (what the overlapped allreduce sends). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loss.h"
#include "model.h"
#include "testutil.h"

static Layer mk(LayerKind kind, int units, int k, Activation act) {
    Layer L;
    memset(&L, 0, sizeof L);
    L.kind = kind;
    L.units = units;
    L.kh = L.kw = k;
    L.sh = L.sw = kind == LAYER_MAXPOOL2D ? k : 1;
    L.act = act;
    L.use_bias = 1;
    L.trainable = kind == LAYER_CONV2D || kind == LAYER_DENSE;
    snprintf(L.name, sizeof L.name, "l%d", (int)kind);
    return L;
}

typedef struct {
    Model m;
    LossKind loss;
    int N, K;
    int32_t y[4];
    float x[4 * 8 * 8 * 2];
} Net;

/* conv(8, relu) -> pool -> flatten -> dense(K, out_act) on 8x8x2 inputs */
static void net_init(Net *n, Layer *layers, Activation out_act, int K, LossKind loss) {
    layers[0] = mk(LAYER_CONV2D, 8, 3, ACT_SIGMOID); /* smooth, so differences are exact */
    layers[1] = mk(LAYER_MAXPOOL2D, 0, 2, ACT_LINEAR);
    layers[2] = mk(LAYER_FLATTEN, 0, 0, ACT_LINEAR);
    layers[3] = mk(LAYER_DENSE, K, 0, out_act);
    Err e = {0};
    CU_ASSERT_FATAL(model_plan(&n->m, layers, 4, (Shape){8, 8, 2, 0}, 4, &e) == 0);
    CU_ASSERT_FATAL(model_alloc(&n->m, NULL) == 0);
    model_init_params(&n->m, 7);
    testutil_fill(n->m.params, n->m.n_params, 5, -0.5f, 0.5f);
    n->loss = loss;
    n->N = 4;
    n->K = K;
    for (int i = 0; i < 4; i++) n->y[i] = i % (K == 1 ? 2 : K);
    testutil_fill(n->x, sizeof n->x / sizeof *n->x, 9, 0, 1);
}

static double net_loss(void *ctx) {
    Net *n = ctx;
    memcpy(model_input(&n->m), n->x, sizeof n->x);
    PassCtx p = {.training = 1, .seed = 1, .epoch = 0, .sample_ids = NULL};
    int64_t ids[4] = {0, 1, 2, 3};
    p.sample_ids = ids;
    float *logits = model_forward(&n->m, n->N, &p);
    LossStats st = {0, 0};
    loss_compute(n->loss, &st, NULL, logits, n->y, n->N, n->K, 0);
    return st.loss_sum / n->N;
}

static void net_grad(Net *n, float *grad_copy) {
    memcpy(model_input(&n->m), n->x, sizeof n->x);
    int64_t ids[4] = {0, 1, 2, 3};
    PassCtx p = {.training = 1, .seed = 1, .epoch = 0, .sample_ids = ids};
    float *logits = model_forward(&n->m, n->N, &p);
    float dlogits[16];
    LossStats st = {0, 0};
    loss_compute(n->loss, &st, dlogits, logits, n->y, n->N, n->K, 1.0f / n->N);
    model_zero_grad(&n->m);
    model_backward(&n->m, dlogits, n->N, &p);
    memcpy(grad_copy, n->m.grads, n->m.n_params * sizeof(float));
}

static void check_model_gradient(Activation out_act, int K, LossKind loss) {
    Layer layers[4];
    Net n;
    net_init(&n, layers, out_act, K, loss);
    float *g = malloc(n.m.n_params * sizeof *g);
    net_grad(&n, g);
    /* a small step: max pooling switches its argmax when perturbed too far */
    double err = testutil_grad_error(net_loss, &n, n.m.params, g, n.m.n_params, 200, 5e-4f);
    CU_ASSERT(err < 1e-2);
    if (err >= 1e-2) printf("\n    whole-model gradient error %g\n", err);
    free(g);
    model_free(&n.m);
}

static void test_gradient_softmax(void) {
    check_model_gradient(ACT_SOFTMAX, 3, LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
}
static void test_gradient_sigmoid(void) {
    check_model_gradient(ACT_SIGMOID, 1, LOSS_BINARY_CROSSENTROPY);
}

/* A sigmoid output layer returns logits: the loss applies the sigmoid exactly once. */
static void test_output_logits(void) {
    Layer layers[4];
    Net n;
    net_init(&n, layers, ACT_SIGMOID, 1, LOSS_BINARY_CROSSENTROPY);
    CU_ASSERT(n.m.layers[3].act_fused); /* the model's copy holds the plan */
    CU_ASSERT(!n.m.layers[0].act_fused);
    memcpy(model_input(&n.m), n.x, sizeof n.x);
    int64_t ids[4] = {0, 1, 2, 3};
    PassCtx p = {.training = 0, .seed = 1, .epoch = 0, .sample_ids = ids};
    float *out = model_forward(&n.m, 4, &p);
    /* recompute the dense layer by hand from the flattened pooled features */
    const Layer *D = &n.m.layers[3];
    const float *feat = n.m.acts + n.m.act_off[3], *w = n.m.params + D->param_off;
    int bad = 0, outside = 0;
    for (int s = 0; s < 4; s++) {
        double z = w[D->param[0].n];
        for (int i = 0; i < D->in.c; i++) z += (double)feat[s * D->in.c + i] * w[i];
        bad += fabs(z - out[s]) > 1e-4;
        outside += out[s] < 0 || out[s] > 1;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(outside > 0); /* with these weights some logits leave [0, 1]: not probabilities */
    model_free(&n.m);
}

/* Frozen layers get no gradient and backward stops at the lowest trainable layer. */
static void test_frozen(void) {
    Layer layers[4];
    Net n;
    net_init(&n, layers, ACT_SOFTMAX, 3, LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    n.m.layers[0].trainable = 0;
    model_update_trainable(&n.m);
    CU_ASSERT_EQUAL(n.m.lowest_trainable, 3);
    CU_ASSERT_EQUAL(n.m.train_lo, n.m.layers[3].param_off);
    float *g = malloc(n.m.n_params * sizeof *g);
    net_grad(&n, g);
    int nonzero_frozen = 0, nonzero_head = 0;
    for (size_t i = 0; i < n.m.layers[3].param_off; i++) nonzero_frozen += g[i] != 0;
    for (size_t i = n.m.layers[3].param_off; i < n.m.n_params; i++) nonzero_head += g[i] != 0;
    CU_ASSERT_EQUAL(nonzero_frozen, 0);
    CU_ASSERT(nonzero_head > 0);
    free(g);
    model_free(&n.m);
}

/* What the grads_ready hook saw: each call's slice, and the slice's contents at that moment. */
typedef struct {
    const Model *m;
    size_t lo[8], hi[8];
    int calls;
    float *seen; /* n_params: each slice copied when it was reported */
} ReadyLog;

static void record_ready(void *arg, size_t lo, size_t hi) {
    ReadyLog *r = arg;
    if (r->calls < 8) {
        r->lo[r->calls] = lo;
        r->hi[r->calls] = hi;
    }
    r->calls++;
    memcpy(r->seen + lo, r->m->grads + lo, (hi - lo) * sizeof *r->seen);
}

/* The hook is called once per layer from the top down to the lowest trainable one, the slices
 * tile [train_lo, n_params) and each held its final gradient when it was reported. */
static void check_grads_ready(Net *n, int expect_calls) {
    Model *m = &n->m;
    ReadyLog r = {m, {0}, {0}, 0, calloc(m->n_params, sizeof(float))};
    memcpy(model_input(m), n->x, sizeof n->x);
    int64_t ids[4] = {0, 1, 2, 3};
    PassCtx p = {.training = 1,
                 .seed = 1,
                 .epoch = 0,
                 .sample_ids = ids,
                 .grads_ready = record_ready,
                 .grads_arg = &r};
    float *logits = model_forward(m, n->N, &p);
    float dlogits[16];
    LossStats st = {0, 0};
    loss_compute(n->loss, &st, dlogits, logits, n->y, n->N, n->K, 1.0f / n->N);
    model_zero_grad(m);
    model_backward(m, dlogits, n->N, &p);
    CU_ASSERT_EQUAL(r.calls, expect_calls);
    CU_ASSERT_EQUAL(r.hi[0], m->n_params);
    for (int i = 1; i < r.calls && i < 8; i++) CU_ASSERT_EQUAL(r.hi[i], r.lo[i - 1]);
    if (r.calls >= 1 && r.calls <= 8) CU_ASSERT_EQUAL(r.lo[r.calls - 1], m->train_lo);
    size_t n_train = m->n_params - m->train_lo;
    CU_ASSERT(memcmp(r.seen + m->train_lo, m->grads + m->train_lo, n_train * sizeof(float)) == 0);
    free(r.seen);
}

static void test_grads_ready(void) {
    Layer layers[4];
    Net n;
    net_init(&n, layers, ACT_SOFTMAX, 3, LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    size_t starts[4];
    CU_ASSERT_EQUAL(model_param_starts(&n.m, starts), 2);
    CU_ASSERT_EQUAL(starts[0], 0);
    CU_ASSERT_EQUAL(starts[1], n.m.layers[3].param_off);
    check_grads_ready(&n, 4);
    /* a frozen base: the pass stops at the dense layer, the only slice reported */
    n.m.layers[0].trainable = 0;
    model_update_trainable(&n.m);
    check_grads_ready(&n, 1);
    model_free(&n.m);
}

static void test_plan_errors(void) {
    Layer layers[3];
    Model m;
    Err e = {0};
    layers[0] = mk(LAYER_FLATTEN, 0, 0, ACT_LINEAR);
    layers[1] = mk(LAYER_CONV2D, 4, 3, ACT_RELU);
    CU_ASSERT(model_plan(&m, layers, 2, (Shape){8, 8, 1, 0}, 2, &e) != 0);
    CU_ASSERT(strstr(e.msg, "flat") != NULL);
    free(m.act_off);
    Err e2 = {0};
    layers[0] = mk(LAYER_DENSE, 4, 0, ACT_SOFTMAX);
    layers[1] = mk(LAYER_DENSE, 2, 0, ACT_LINEAR);
    CU_ASSERT(model_plan(&m, layers, 2, (Shape){1, 1, 5, 1}, 2, &e2) != 0);
    CU_ASSERT(strstr(e2.msg, "softmax") != NULL);
    free(m.act_off);
}

/* Below the lowest layer a phase trains no backward runs: the plan keeps no tensor for one
 * there, gives them no gradient buffer and one shared forward-state region. Against a plan
 * for backward passes down to layer 0 (model_plan_backward(m, 0), as if a later phase trained
 * everything): less memory, and the same forward output and trainable gradients. */
static void test_share_frozen_aux(void) {
    Layer a[5], b[5];
    Model ma, mb;
    Err e = {0};
    a[0] = mk(LAYER_CONV2D, 4, 3, ACT_RELU);
    a[1] = mk(LAYER_MAXPOOL2D, 0, 2, ACT_LINEAR);
    a[2] = mk(LAYER_CONV2D, 5, 3, ACT_RELU);
    a[3] = mk(LAYER_FLATTEN, 0, 0, ACT_LINEAR);
    a[4] = mk(LAYER_DENSE, 3, 0, ACT_SOFTMAX);
    a[0].trainable = 0;
    for (int l = 0; l < 5; l++)
        a[l].conv_algo = CONV_ALGO_IM2COL; /* im2col keeps state per sample */
    memcpy(b, a, sizeof a);
    const int N = 4;
    CU_ASSERT_FATAL(model_plan(&ma, a, 5, (Shape){12, 12, 2, 0}, N, &e) == 0);
    CU_ASSERT_FATAL(model_plan(&mb, b, 5, (Shape){12, 12, 2, 0}, N, &e) == 0);
    CU_ASSERT_EQUAL(mb.first_backward, 2); /* from the flags: layers 0 and 1 never run backward */
    model_plan_backward(&ma, 0);
    CU_ASSERT_EQUAL(ma.first_backward, 0);
    CU_ASSERT_EQUAL(b[0].aux_off, 0);
    CU_ASSERT_EQUAL(b[1].aux_off, 0);
    size_t shared = N * b[0].aux_per_sample > N * b[1].aux_per_sample ? N * b[0].aux_per_sample
                                                                      : N * b[1].aux_per_sample;
    CU_ASSERT(b[2].aux_off >= shared); /* the trained layers' state is their own */
    CU_ASSERT(mb.aux_bytes < ma.aux_bytes);
    /* layer 0's output: kept for layer 1's backward in ma, in a shared region in mb */
    CU_ASSERT(ma.t_off[1] < ma.acts_kept_floats);
    CU_ASSERT(mb.t_off[1] >= mb.acts_kept_floats);
    CU_ASSERT(mb.acts_kept_floats < ma.acts_kept_floats);
    /* no gradient for the tensors below layer 2 */
    CU_ASSERT_EQUAL(mb.gslots[2 * LAYER_MAX_INPUTS].mode, GRAD_NONE);
    CU_ASSERT(ma.gslots[2 * LAYER_MAX_INPUTS].mode != GRAD_NONE);
    size_t ga = 0, gb = 0;
    for (int i = 0; i < ma.n_gbuf; i++) ga += ma.gbuf_floats[i];
    for (int i = 0; i < mb.n_gbuf; i++) gb += mb.gbuf_floats[i];
    CU_ASSERT(gb < ga);
    CU_ASSERT_FATAL(model_alloc(&ma, NULL) == 0);
    CU_ASSERT_FATAL(model_alloc(&mb, NULL) == 0);
    model_init_params(&ma, 7);
    memcpy(mb.params, ma.params, ma.n_params * sizeof *ma.params);
    testutil_fill(model_input(&ma), (size_t)N * 12 * 12 * 2, 8, 0, 1);
    memcpy(model_input(&mb), model_input(&ma), (size_t)N * 12 * 12 * 2 * sizeof(float));
    PassCtx p = {.training = 1, .seed = 1};
    const float *za = model_forward(&ma, N, &p), *zb = model_forward(&mb, N, &p);
    CU_ASSERT(memcmp(za, zb, (size_t)N * 3 * sizeof *za) == 0);
    float dz[4 * 3];
    testutil_fill(dz, sizeof dz / sizeof *dz, 9, -1, 1);
    model_zero_grad(&ma);
    model_zero_grad(&mb);
    model_backward(&ma, dz, N, &p);
    model_backward(&mb, dz, N, &p);
    CU_ASSERT(memcmp(ma.grads, mb.grads, ma.n_params * sizeof *ma.grads) == 0);
    model_free(&ma);
    model_free(&mb);
}

TEST_SUITE(model, {"whole-model gradient, softmax cross-entropy", test_gradient_softmax},
           {"whole-model gradient, sigmoid binary cross-entropy", test_gradient_sigmoid},
           {"a sigmoid output layer returns logits", test_output_logits},
           {"frozen layers get no gradient", test_frozen},
           {"backward reports each layer's final gradient slice, top down", test_grads_ready},
           {"planning errors", test_plan_errors},
           {"never-trained layers: no tensor kept, no gradient buffer, shared state",
            test_share_frozen_aux})
