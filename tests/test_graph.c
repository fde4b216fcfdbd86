/* test_graph.c: the model as a graph (src/graph.c): a tensor read by two layers (a fan-out into
 * an [add]) gets the sum of their gradients, checked by finite differences of every parameter
 * and against a hand-written forward pass, with im2col and oneDNN convolutions (whose nChw16c
 * outputs are copied to NHWC for the Add, and whose gradients are reordered back and added;
 * without an activation, an nChw16c output only the Add reads is dropped once copied);
 * a chain still needs two gradient buffers; graph errors in job files exit 2 naming the file
 * and line; the summary's "Connected to" column. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conv_algo.h"
#include "model.h"
#include "testutil.h"

static Layer mk(LayerKind kind, const char *name, int units, int k, Activation act) {
    Layer L;
    memset(&L, 0, sizeof L);
    L.kind = kind;
    L.units = units;
    L.kh = L.kw = k;
    L.sh = L.sw = 1;
    L.padding = PAD_SAME;
    L.act = act;
    L.use_bias = 1;
    L.trainable = kind == LAYER_CONV2D || kind == LAYER_DENSE;
    snprintf(L.name, sizeof L.name, "%s", name);
    return L;
}

enum { N = 3, H = 6, W = 5, C = 2, F = 4, K = 3 };

/* x -> c1 = conv(x) -> c2 = conv(c1) -> a = add(c1, c2) -> flatten -> dense:
 * c1's output is read by c2 and by the add. */
typedef struct {
    Layer layers[5];
    Model m;
    float x[N * H * W * C], r[N * K];
} Graph;

/* act: sigmoid (smooth: exact differences) or linear */
static void graph_init(Graph *g, ConvAlgoId algo, Activation act) {
    g->layers[0] = mk(LAYER_CONV2D, "c1", F, 3, act);
    g->layers[1] = mk(LAYER_CONV2D, "c2", F, 3, act);
    g->layers[2] = mk(LAYER_ADD, "a", 0, 0, ACT_LINEAR);
    g->layers[2].n_inputs = 2;
    g->layers[2].inputs[0] = 0;
    g->layers[2].inputs[1] = 1;
    g->layers[3] = mk(LAYER_FLATTEN, "f", 0, 0, ACT_LINEAR);
    g->layers[4] = mk(LAYER_DENSE, "d", K, 0, ACT_LINEAR);
    for (int l = 0; l < 2; l++) g->layers[l].conv_algo = algo, g->layers[l].conv_algo_strict = 1;
    Err e = {0};
    CU_ASSERT_FATAL(model_plan(&g->m, g->layers, 5, (Shape){H, W, C, 0}, N, &e) == 0);
    CU_ASSERT_FATAL(model_alloc(&g->m, NULL) == 0);
    testutil_fill(g->m.params, g->m.n_params, 5, -0.5f, 0.5f);
    testutil_fill(g->x, sizeof g->x / sizeof *g->x, 6, -1, 1);
    testutil_fill(g->r, N * K, 7, -1, 1);
}

static float *graph_forward(Graph *g) {
    memcpy(model_input(&g->m), g->x, sizeof g->x);
    int64_t ids[N] = {0, 1, 2};
    PassCtx p = {.training = 1, .seed = 1, .sample_ids = ids};
    return model_forward(&g->m, N, &p);
}

/* loss = sum(logits * r) */
static double graph_loss(void *ctx) {
    Graph *g = ctx;
    const float *y = graph_forward(g);
    double s = 0;
    for (int i = 0; i < N * K; i++) s += (double)y[i] * g->r[i];
    return s;
}

/* The same network written out by hand, in double precision. */
static void conv_ref(const double *in, int cin, const float *w, const float *b, Activation act,
                     double *out) {
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++)
            for (int x = 0; x < W; x++)
                for (int f = 0; f < F; f++) {
                    double s = b[f];
                    for (int i = 0; i < 3; i++)
                        for (int j = 0; j < 3; j++) {
                            int ih = h - 1 + i, iw = x - 1 + j;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                            for (int c = 0; c < cin; c++)
                                s += in[((n * H + ih) * W + iw) * cin + c] *
                                     w[((i * 3 + j) * cin + c) * F + f];
                        }
                    out[((n * H + h) * W + x) * F + f] = act == ACT_SIGMOID ? 1 / (1 + exp(-s)) : s;
                }
}

static void graph_reference(const Graph *g, double *logits) {
    const Model *m = &g->m;
    const float *w1 = m->params + m->layers[0].param_off, *w2 = m->params + m->layers[1].param_off;
    const float *wd = m->params + m->layers[4].param_off;
    double x[N * H * W * C], c1[N * H * W * F], c2[N * H * W * F];
    for (int i = 0; i < N * H * W * C; i++) x[i] = g->x[i];
    const Activation act = g->layers[0].act;
    conv_ref(x, C, w1, w1 + 3 * 3 * C * F, act, c1);
    conv_ref(c1, F, w2, w2 + 3 * 3 * F * F, act, c2);
    const int D = H * W * F;
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            double s = wd[D * K + k];
            for (int i = 0; i < D; i++) s += (c1[n * D + i] + c2[n * D + i]) * wd[i * K + k];
            logits[n * K + k] = s;
        }
}

static void check_graph(ConvAlgoId algo, Activation act) {
    if (!conv_algo_get(algo)) {
        testutil_skip(conv_algo_name(algo), "this build has no oneDNN (ONEDNN=0)", 0);
        return;
    }
    Graph g;
    graph_init(&g, algo, act);
    if (algo == CONV_ALGO_DIRECT) {
        /* What a backward reads is kept; the rest lives in regions past acts_kept_floats.
         * c1 (tensor 1) is read blocked by c2 and, copied to NHWC, by the add; c2's blocked
         * output (tensor 2) only by its NHWC copy. The backward reads a sigmoid's output; c2's
         * reads its input unless oneDNN kept a reordered copy; the add's and the flatten's
         * read nothing; the dense's reads its input (tensor 4). */
        const Model *m = &g.m;
        const size_t kept = m->acts_kept_floats;
        CU_ASSERT(graph_has_copy(m, 1) && graph_has_copy(m, 2));
        CU_ASSERT(m->t_copy[1] >= kept && m->t_copy[2] >= kept);
        CU_ASSERT_EQUAL(m->t_off[1] < kept, act != ACT_LINEAR || !m->layers[1].conv->keeps_input);
        CU_ASSERT_EQUAL(m->t_off[2] < kept, act != ACT_LINEAR);
        CU_ASSERT(m->t_off[3] >= kept && m->t_off[4] < kept && m->t_off[5] < kept);
    }
    /* forward against the hand-written network */
    const float *y = graph_forward(&g);
    double ref[N * K], worst = 0;
    graph_reference(&g, ref);
    for (int i = 0; i < N * K; i++)
        worst = fmax(worst, fabs(y[i] - ref[i]) / fmax(1, fabs(ref[i])));
    CU_ASSERT(worst < 1e-5);
    if (worst >= 1e-5)
        printf("\n    %s: forward differs from the reference by %.2g", conv_algo_name(algo), worst);
    /* every parameter's gradient, c1's above all (it gets c2's and the add's gradients summed) */
    model_zero_grad(&g.m);
    graph_forward(&g);
    int64_t ids[N] = {0, 1, 2};
    PassCtx p = {.training = 1, .seed = 1, .sample_ids = ids};
    model_backward(&g.m, g.r, N, &p);
    float *analytic = malloc(g.m.n_params * sizeof *analytic);
    memcpy(analytic, g.m.grads, g.m.n_params * sizeof *analytic);
    double err = testutil_grad_error(graph_loss, &g, g.m.params, analytic, g.m.n_params, 0, 1e-2f);
    CU_ASSERT(err < 2e-3);
    if (err >= 2e-3) printf("\n    %s: gradient error %.2g", conv_algo_name(algo), err);
    /* the fan-out is what made c1's gradient: without the add's share it would differ */
    CU_ASSERT(g.m.gslots[2 * LAYER_MAX_INPUTS + 0].mode != GRAD_NONE);
    free(analytic);
    model_free(&g.m);
}

static void test_fanout_im2col(void) { check_graph(CONV_ALGO_IM2COL, ACT_SIGMOID); }
static void test_fanout_direct(void) { check_graph(CONV_ALGO_DIRECT, ACT_SIGMOID); }
static void test_fanout_direct_linear(void) { check_graph(CONV_ALGO_DIRECT, ACT_LINEAR); }

/* A chain alternates between two gradient buffers (plus one where layouts change), each as large
 * as the largest gradient that lands in it: no more than the old ping-pong pair. */
static void test_chain_buffers(void) {
    Layer L[5] = {mk(LAYER_CONV2D, "c1", 8, 3, ACT_RELU),
                  mk(LAYER_MAXPOOL2D, "p", 0, 2, ACT_LINEAR),
                  mk(LAYER_CONV2D, "c2", 16, 3, ACT_RELU), mk(LAYER_FLATTEN, "f", 0, 0, ACT_LINEAR),
                  mk(LAYER_DENSE, "d", 3, 0, ACT_LINEAR)};
    L[1].sh = L[1].sw = 2, L[1].padding = PAD_VALID;
    for (int l = 0; l < 5; l++) L[l].conv_algo = CONV_ALGO_IM2COL;
    Model m;
    Err e = {0};
    CU_ASSERT_FATAL(model_plan(&m, L, 5, (Shape){12, 12, 3, 0}, 4, &e) == 0);
    CU_ASSERT_EQUAL(m.n_gbuf, 2);
    size_t largest = 0, total = 0;
    for (int t = 0; t <= 5; t++) {
        Shape s = t ? m.layers[t - 1].out : m.input;
        if (shape_size(s) * 4 > largest) largest = shape_size(s) * 4;
    }
    for (int i = 0; i < m.n_gbuf; i++) total += m.gbuf_floats[i];
    CU_ASSERT(total <= 2 * largest);
    CU_ASSERT(m.gbuf_floats[0] != m.gbuf_floats[1]); /* sized by what lands in each */
    model_plan_free(&m);
}

/* Where the layout changes (c1 writes nChw16c, the ReLU reads its NHWC copy), the ReLU's input
 * gradient is written in NHWC and reordered into c1's: into the buffer of the ReLU's own output
 * gradient, dead once its backward has run, so the chain still needs only two buffers. */
static void test_layout_change_buffers(void) {
    if (!conv_algo_get(CONV_ALGO_DIRECT)) {
        testutil_skip("gradient buffers at a layout change", "this build has no oneDNN (ONEDNN=0)",
                      0);
        return;
    }
    Layer L[4] = {mk(LAYER_CONV2D, "c1", 16, 3, ACT_LINEAR),
                  mk(LAYER_ACTIVATION, "r", 0, 0, ACT_RELU),
                  mk(LAYER_FLATTEN, "f", 0, 0, ACT_LINEAR), mk(LAYER_DENSE, "d", 3, 0, ACT_LINEAR)};
    L[0].conv_algo = CONV_ALGO_DIRECT, L[0].conv_algo_strict = 1;
    Model m;
    Err e = {0};
    CU_ASSERT_FATAL(model_plan(&m, L, 4, (Shape){12, 12, 3, 0}, 4, &e) == 0);
    CU_ASSERT(graph_has_copy(&m, 1));
    CU_ASSERT_EQUAL(m.gslots[1 * LAYER_MAX_INPUTS].mode, GRAD_SET);
    CU_ASSERT_EQUAL(m.t_grad[1], m.t_grad[2]); /* c1's gradient lands where the ReLU's was */
    CU_ASSERT_EQUAL(m.n_gbuf, 2);
    model_plan_free(&m);
}

/* Job-file graph errors: exit 2, the message names the file and line. */
static void test_graph_errors(void) {
    const char *dir = testutil_small_idx_dir("graph", 3);
    static const struct {
        const char *layers, *expect;
        int line;
    } cases[] = {
        {"[conv2d]\nfilters = 4\nkernel_size = 3\ninputs = nowhere\n",
         "no earlier layer is named 'nowhere'", 10},
        {"[conv2d]\nname = self\nfilters = 4\nkernel_size = 3\ninputs = self\n",
         "no earlier layer is named 'self'", 11},
        {"[conv2d]\nname = a\nfilters = 4\nkernel_size = 3\n[conv2d]\nname = b\nfilters = "
         "4\nkernel_size = 3\n"
         "[add]\ninputs = a, b\n",
         "Add of unlike shapes", 15},
        {"[conv2d]\nname = a\nfilters = 4\nkernel_size = 3\n[conv2d]\nname = b\nfilters = "
         "4\nkernel_size = 3\n"
         "inputs = input\n",
         "no layer reads its output", 7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char text[2048], name[32], cmd[4096], where[64];
        snprintf(text, sizeof text,
                 "[data]\nroot = %s\ntrain_images = graph-train-images.idx\ntrain_labels = "
                 "graph-train-labels.idx\n"
                 "test_images = graph-test-images.idx\ntest_labels = graph-test-labels.idx\n%s"
                 "[flatten]\n[dense]\nunits = 10\nactivation = softmax\n"
                 "[train]\nloss = sparse_categorical_crossentropy\n",
                 dir, cases[i].layers);
        snprintf(name, sizeof name, "graph-err-%zu.job", i);
        const char *job = testutil_write_file(dir, name, text, strlen(text));
        snprintf(cmd, sizeof cmd, "%s summary %s", testutil_bin(), job);
        char *out = NULL;
        int rc = testutil_run(cmd, &out);
        snprintf(where, sizeof where, "%s:%d", name, cases[i].line);
        CU_ASSERT_EQUAL(rc, 2);
        CU_ASSERT(out && strstr(out, cases[i].expect) && strstr(out, where));
        if (rc != 2 || !out || !strstr(out, cases[i].expect) || !strstr(out, where))
            printf("\n    case %zu (exit %d, expected '%s' at %s):\n%s", i, rc, cases[i].expect,
                   where, out ? out : "");
        free(out);
    }
}

/* A residual job plans, trains a step, and its summary shows Keras's "Connected to". */
static void test_residual_job(void) {
    const char *dir = testutil_small_idx_dir("resid", 4);
    char text[2048];
    snprintf(
        text, sizeof text,
        "[data]\nroot = %s\ntrain_images = resid-train-images.idx\ntrain_labels = "
        "resid-train-labels.idx\n"
        "test_images = resid-test-images.idx\ntest_labels = resid-test-labels.idx\nscale = 1/255\n"
        "[conv2d]\nname = stem\nfilters = 8\nkernel_size = 3\npadding = same\nactivation = relu\n"
        "[conv2d]\nname = branch\nfilters = 8\nkernel_size = 3\npadding = same\nactivation = relu\n"
        "[add]\nname = sum\ninputs = stem, branch\n"
        "[flatten]\n[dense]\nunits = 10\nactivation = softmax\n"
        "[train]\nloss = sparse_categorical_crossentropy\nbatch_size = 16\nepochs = 1\n",
        dir);
    const char *job = testutil_write_file(dir, "resid.job", text, strlen(text));
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s summary %s", testutil_bin(), job);
    CU_ASSERT_EQUAL(testutil_run(cmd, &out), 0);
    CU_ASSERT(out && strstr(out, "Connected to") && strstr(out, "stem[0][0], branch[0][0]"));
    free(out);
    out = NULL;
    CU_ASSERT_EQUAL(testutil_train(dir, "", "resid.job", "--no-resume", &out), 0);
    CU_ASSERT(out && strstr(out, "test:"));
    free(out);
}

/* jobs/mini-xception.job is the book's code (9.3.5, use_bias=False on every convolution): its
 * summary's counts equal those of that code, counted here layer by layer as Keras would. */
static void test_mini_xception_counts(void) {
    long total = 5 * 5 * 3 * 32, state = 0; /* Conv2D(32, 5), no bias */
    long c = 32;
    const long sizes[] = {32, 64, 128, 256, 512};
    for (int b = 0; b < 5; b++) {
        long s = sizes[b];
        total += 4 * c + 9 * c + c * s; /* BN(c): gamma beta mean var; SeparableConv2D(c -> s) */
        total += 4 * s + 9 * s + s * s; /* BN(s); SeparableConv2D(s -> s) */
        total += c * s;                 /* the 1x1 residual Conv2D */
        state += 2 * c + 2 * s;         /* moving mean and variance */
        c = s;
    }
    total += 512 + 1; /* Dense(1) */
    char cmd[4096], want[128], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s summary jobs/mini-xception.job", testutil_bin());
    CU_ASSERT_EQUAL(testutil_run(cmd, &out), 0);
    snprintf(want, sizeof want, "Total params: %ld ", total);
    CU_ASSERT(out && strstr(out, want));
    snprintf(want, sizeof want, "Trainable params: %ld\n", total - state);
    CU_ASSERT(out && strstr(out, want));
    snprintf(want, sizeof want, "Non-trainable params: %ld\n", state);
    CU_ASSERT(out && strstr(out, want));
    if (!out || !strstr(out, want))
        printf("\n    expected %ld total, %ld state:\n%s", total, state, out ? out : "");
    free(out);
}

TEST_SUITE(graph, {"fan-out into add: summed gradients (im2col)", test_fanout_im2col},
           {"fan-out into add: summed gradients (oneDNN direct, nChw16c)", test_fanout_direct},
           {"fan-out into add, no activation: an output kept only to be reordered is dropped",
            test_fanout_direct_linear},
           {"a chain needs two gradient buffers", test_chain_buffers},
           {"a layout change needs no third gradient buffer", test_layout_change_buffers},
           {"graph errors in job files name the file and line", test_graph_errors},
           {"a residual job: summary and training", test_residual_job},
           {"jobs/mini-xception.job counts the book's parameters", test_mini_xception_counts})
