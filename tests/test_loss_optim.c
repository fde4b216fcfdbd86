/* test_loss_optim.c: losses and optimizers against values worked out by hand from Keras's
 * formulas, and the losses' gradients by central differences. */
#include <math.h>
#include <string.h>

#include "loss.h"
#include "optim.h"
#include "testutil.h"

static void test_softmax_xent_values(void) {
    float logits[6] = {1, 2, 3, 0.5f, 0.5f, -1};
    int32_t y[2] = {2, 0};
    float d[6];
    LossStats st = {0, 0};
    loss_softmax_xent(&st, d, logits, y, 2, 3, 0.5f);
    /* sample 0: -log(e^3 / (e^1 + e^2 + e^3)) = 0.4076059644
     * sample 1: -log(e^0.5 / (2 e^0.5 + e^-1)) = log(2 + e^-1.5) = 0.7989161848 */
    CU_ASSERT_DOUBLE_EQUAL(st.loss_sum, 0.4076059644 + 0.7989161848, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(st.correct, 2.0, 0); /* sample 1's argmax is 0 (a tie: the first) */
    /* gradient: (softmax - onehot) * 0.5; softmax of (1,2,3) = (0.0900306, 0.2447285, 0.6652410) */
    CU_ASSERT_DOUBLE_EQUAL(d[0], 0.5 * 0.0900306, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(d[1], 0.5 * 0.2447285, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(d[2], 0.5 * (0.6652410 - 1), 1e-6);
}

static void test_bce_values(void) {
    float logits[3] = {0.5f, -2.0f, 40.0f};
    int32_t y[3] = {1, 1, 0};
    float d[3];
    LossStats st = {0, 0};
    loss_sigmoid_bce(&st, d, logits, y, 3, 1.0f);
    /* log(1+e^-0.5) = 0.4740769842; log(1+e^2) = 2.1269280110; 40 + log(1+e^-40) = 40 (stable) */
    CU_ASSERT_DOUBLE_EQUAL(st.loss_sum, 0.4740769842 + 2.1269280110 + 40.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(st.correct, 1.0, 0);
    CU_ASSERT_DOUBLE_EQUAL(d[0], 1 / (1 + exp(-0.5)) - 1, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(d[2], 1.0, 1e-6);
    CU_ASSERT(isfinite(st.loss_sum));
}

typedef struct {
    float *z;
    int32_t *y;
    int N, K;
    LossKind kind;
} LossCtx;

static double loss_value(void *p) {
    LossCtx *c = p;
    LossStats st = {0, 0};
    loss_compute(c->kind, &st, NULL, c->z, c->y, c->N, c->K, 1);
    return st.loss_sum;
}

static void test_loss_gradients(void) {
    float z[12], d[12];
    int32_t y[4] = {0, 2, 1, 2};
    testutil_fill(z, 12, 7, -2, 2);
    LossCtx c = {z, y, 4, 3, LOSS_SPARSE_CATEGORICAL_CROSSENTROPY};
    LossStats st = {0, 0};
    loss_compute(c.kind, &st, d, z, y, 4, 3, 1);
    CU_ASSERT(testutil_grad_error(loss_value, &c, z, d, 12, 0, 1e-2f) < 1e-3);
    int32_t yb[4] = {0, 1, 1, 0};
    LossCtx cb = {z, yb, 4, 1, LOSS_BINARY_CROSSENTROPY};
    LossStats sb = {0, 0};
    loss_compute(cb.kind, &sb, d, z, yb, 4, 1, 1);
    CU_ASSERT(testutil_grad_error(loss_value, &cb, z, d, 4, 0, 1e-2f) < 1e-3);
}

static void test_probabilities(void) {
    float z[4] = {1, 2, 3, 0};
    loss_probabilities(z, 1, 3);
    CU_ASSERT_DOUBLE_EQUAL(z[0] + z[1] + z[2], 1.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(z[2], 0.6652410, 1e-6);
    loss_probabilities(z + 3, 1, 1);
    CU_ASSERT_DOUBLE_EQUAL(z[3], 0.5, 1e-7);
}

static void run_steps(OptConfig cfg, float *p, const float *g, int steps) {
    Optimizer o;
    optim_init(&o, &cfg, 1);
    for (int i = 0; i < steps; i++) optim_step(&o, p, g + i, 0);
    optim_free(&o);
}

static void test_rmsprop(void) {
    OptConfig c = {OPT_RMSPROP, 0.001f, 0.9f, 0, 0.9f, 0.999f, 1e-7f, 0, 0};
    float p = 1.0f, g[2] = {0.5f, -0.25f};
    run_steps(c, &p, g, 2);
    /* step 1: v = 0.1*0.25 = 0.025;   p = 1 - 0.001*0.5/sqrt(0.0250001)      = 0.99683772
     * step 2: v = 0.9*0.025 + 0.1*0.0625 = 0.02875;
     *         p = 0.99683772 + 0.001*0.25/sqrt(0.0287501) = 0.99683772 + 0.00147442 = 0.99831214 */
    CU_ASSERT_DOUBLE_EQUAL(p, 0.99831214, 2e-7);
    c.momentum = 0.5f;
    p = 1.0f;
    run_steps(c, &p, g, 2);
    /* m1 = 0.00316228, p = 0.99683772; m2 = 0.5*0.00316228 - 0.00147442 = 0.00010672,
     * p = 0.99673100 */
    CU_ASSERT_DOUBLE_EQUAL(p, 0.99673100, 2e-7);
}

/* epsilon_placement = outside_sqrt: p -= lr g / (sqrt(v) + eps) (tf.keras 2's optimizer_v2),
 * against a float64 loop over both formulas. Gradients of 1e-4 put sqrt(v) below the root's
 * floor sqrt(eps) = 3.2e-4, where the two placements take steps about 10x apart. */
static void test_rmsprop_epsilon_outside(void) {
    const double lr = 0.001, rho = 0.9, eps = 1e-7;
    const float g[3] = {1e-4f, 2e-4f, 5e-5f};
    for (int outside = 0; outside <= 1; outside++) {
        OptConfig c = {.kind = OPT_RMSPROP,
                       .lr = (float)lr,
                       .rho = (float)rho,
                       .epsilon = (float)eps,
                       .epsilon_outside_sqrt = outside};
        float p = 1.0f;
        run_steps(c, &p, g, 3);
        double v = 0, ref = 1.0;
        for (int i = 0; i < 3; i++) {
            v = rho * v + (1 - rho) * (double)g[i] * g[i];
            ref -= lr * g[i] / (outside ? sqrt(v) + eps : sqrt(v + eps));
        }
        CU_ASSERT_DOUBLE_EQUAL(p, ref, 5e-7); /* float32 p near 1: a few ulps of 6e-8 */
        /* the outside steps are the larger: 1 - p is 6.7e-3 against 1.1e-3 inside */
        if (outside) {
            CU_ASSERT_TRUE(1.0 - p > 5e-3);
        } else {
            CU_ASSERT_TRUE(1.0 - p < 1.5e-3);
        }
    }
}

static void test_adam(void) {
    OptConfig c = {OPT_ADAM, 0.001f, 0, 0, 0.9f, 0.999f, 1e-7f, 0, 0};
    float p = 1.0f, g[2] = {0.5f, -0.25f};
    run_steps(c, &p, g, 2);
    /* t=1: m=0.05, v=0.00025, alpha=0.001*sqrt(0.001)/0.1=3.16228e-4,
     *      p -= 3.16228e-4*0.05/(0.0158114+1e-7) = 0.00099999 -> 0.99900001
     * t=2: m=0.045-0.025=0.02, v=0.00024975+0.0000625=0.00031225,
     *      alpha=0.001*sqrt(1-0.998001)/(1-0.81)=0.001*0.0447102/0.19=2.35317e-4,
     *      p -= 2.35317e-4*0.02/(0.0176706+1e-7) = 0.00026633 -> 0.99873368 */
    CU_ASSERT_DOUBLE_EQUAL(p, 0.99873368, 3e-7);
}

static void test_sgd(void) {
    OptConfig c = {OPT_SGD, 0.1f, 0, 0.9f, 0, 0, 1e-7f, 0, 0};
    float p = 1.0f, g[2] = {0.5f, -0.25f};
    run_steps(c, &p, g, 2);
    /* m1 = -0.05, p = 0.95; m2 = -0.045 + 0.025 = -0.02, p = 0.93 */
    CU_ASSERT_DOUBLE_EQUAL(p, 0.93, 1e-6);
    c.nesterov = 1;
    p = 1.0f;
    run_steps(c, &p, g, 2);
    /* m1 = -0.05, p = 1 + 0.9*-0.05 - 0.05 = 0.905; m2 = -0.02, p = 0.905 - 0.018 + 0.025 = 0.912 */
    CU_ASSERT_DOUBLE_EQUAL(p, 0.912, 1e-6);
    c.momentum = 0;
    c.nesterov = 0;
    p = 1.0f;
    run_steps(c, &p, g, 2);
    CU_ASSERT_DOUBLE_EQUAL(p, 1 - 0.05 + 0.025, 1e-6);
}

/* Parameters below lo are frozen: untouched, their state stays zero; the rest follow the formula
 * exactly as an optimizer over only them would. */
static void test_frozen_range(void) {
    OptConfig c = {OPT_RMSPROP, 0.001f, 0.9f, 0, 0.9f, 0.999f, 1e-7f, 0, 0};
    Optimizer o;
    optim_init(&o, &c, 4);
    float p[4] = {1, 1, 1, 1}, g[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    optim_step(&o, p, g, 2);
    CU_ASSERT_EQUAL(p[0], 1.0f);
    CU_ASSERT_EQUAL(p[1], 1.0f);
    CU_ASSERT_EQUAL(o.s1[1], 0.0f);
    CU_ASSERT_DOUBLE_EQUAL(p[2], 0.99683772, 2e-7);
    CU_ASSERT_DOUBLE_EQUAL(p[3], 0.99683772, 2e-7);
    optim_reset(&o);
    CU_ASSERT_EQUAL(o.s1[3], 0.0f);
    CU_ASSERT_EQUAL(o.iterations, 0);
    optim_free(&o);
}

TEST_SUITE(loss_optim, {"optimizer leaves frozen parameters (below lo) alone", test_frozen_range},
           {"softmax cross-entropy values", test_softmax_xent_values},
           {"binary cross-entropy values, stable at large logits", test_bce_values},
           {"loss gradients by central differences", test_loss_gradients},
           {"probabilities", test_probabilities}, {"rmsprop (Keras formula)", test_rmsprop},
           {"rmsprop, epsilon outside the root (tf.keras 2)", test_rmsprop_epsilon_outside},
           {"adam (Keras formula)", test_adam}, {"sgd momentum and nesterov", test_sgd})
