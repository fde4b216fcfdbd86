/* test_kinds.c: every LayerKind, 0 to LAYER_KIND_COUNT - 1, through what the generic code asks
 * of a kind: its ops-table entry has every required hook; its forward matches the naive
 * reference of its case in layerref.c; it passes a central-difference check of every input and
 * every weight tensor; a model holding it round-trips through the weights file, Keras 2 and
 * Keras 3 .h5 files, and exports to ONNX. A kind without an entry, a hook or a case fails here,
 * naming the kind (docs/adding-a-layer-kind.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"
#include "ini.h"
#include "keras_h5.h"
#include "layerref.h"
#include "model.h"
#include "testutil.h"
#include "weights.h"

/* An assertion whose failure names the kind and what it lacks ("kind 16 (ReLU): no .onnx
 * translation"), printed at once and in CUnit's failure list. */
#define kind_ok(ok, k, what) kind_check((ok) != 0, k, what, __LINE__)
static int kind_check(int ok, int k, const char *what, int line) {
    char msg[256];
    const char *name = layer_ops[k] && layer_ops[k]->keras_name ? layer_ops[k]->keras_name : "?";
    snprintf(msg, sizeof msg, "kind %d (%s): %s", k, name, what);
    if (!ok) printf("\n    %s\n", msg);
    CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, (unsigned)line, msg, __FILE__, "", CU_FALSE);
    return ok;
}

/* The kind's case, when it has one and its ops-table entry can be used at all. */
static const KindCase *usable_case(int k) {
    const KindCase *kc = layerref_case((LayerKind)k);
    const LayerOps *ops = layer_ops[k];
    if (!ops || !ops->configure || !ops->plan || !ops->forward || !ops->backward || !kc->ref)
        return NULL;
    return kc;
}

/* L = the case's layer, configured by the kind from its section text; 0 or -1. */
static int case_layer(int k, const KindCase *kc, Layer *L) {
    IniFile ini;
    Err e = {0};
    memset(L, 0, sizeof *L);
    if (!kind_ok(ini_parse_string(&ini, "kinds.job", kc->section, &e) == 0, k,
                 "its case's section does not parse"))
        return -1;
    Section *s = ini.n_sec > 0 ? &ini.sec[0] : NULL;
    int rc = -1;
    if (kind_ok(s && layer_kind_from_section(s->name) == k, k,
                "its case's section is not the kind's")) {
        L->kind = (LayerKind)k;
        L->n_inputs = kc->n_inputs;
        snprintf(L->name, sizeof L->name, "kind");
        rc = layer_ops[k]->configure(L, &ini, s, &e);
        if (rc) printf("\n    kind %d: configure: %s\n", k, e.msg);
        kind_ok(rc == 0, k, "configure fails on its case's section");
    }
    ini_free(&ini);
    return rc;
}

/* A fixture of the case (training pass or not); 0, or -1 when its plan fails (reported). */
static int case_fixture(int k, const KindCase *kc, Fixture *f, int training) {
    Layer L;
    if (case_layer(k, kc, &L)) return -1;
    Layer T = L; /* plan a copy first: fixture_init would stop the whole walk on a failure */
    T.in = T.in_shapes[0] = T.in_shapes[1] = kc->in;
    T.max_batch = kc->N;
    Err e = {0};
    int rc = layer_ops[k]->plan(&T, &e);
    if (rc) printf("\n    kind %d: plan: %s\n", k, e.msg);
    if (layer_ops[k]->release) layer_ops[k]->release(&T);
    if (!kind_ok(rc == 0, k, "plan fails on its case")) return -1;
    fixture_init(f, L, kc->in, kc->N);
    f->training = training;
    if (kc->distinct_input) {
        size_t ni = (size_t)kc->N * shape_size(kc->in);
        for (size_t i = 0; i < ni; i++) f->in[i] = 0.05f * (float)((i * 7919) % ni) - 1.0f;
    }
    return 0;
}

static void test_hooks(void) {
    for (int k = 0; k < LAYER_KIND_COUNT; k++) {
        const LayerOps *ops = layer_ops[k];
        if (!kind_ok(ops != NULL, k, "no layer_ops entry (src/layers/layers.c)")) continue;
        kind_ok(ops->section && layer_kind_from_section(ops->section) == k, k,
                "no .section (or another kind's)");
        kind_ok(ops->keras_name != NULL, k, "no .keras_name");
        kind_ok(ops->configure && ops->plan && ops->forward && ops->backward, k,
                "no .configure, .plan, .forward or .backward");
        kind_ok(ops->keras3_key || (ops->flags & LAYER_F_NO_KERAS), k,
                "no .keras3_key (and not LAYER_F_NO_KERAS)");
        kind_ok(!(ops->keras3_key && (ops->flags & LAYER_F_NO_KERAS)), k,
                "both .keras3_key and LAYER_F_NO_KERAS");
        kind_ok(ops->onnx > LAYER_ONNX_UNSET && ops->onnx < LAYER_ONNX_COUNT, k,
                "no .onnx translation");
        const KindCase *kc = layerref_case((LayerKind)k);
        kind_ok(kc->ref != NULL, k, "no test case with a naive reference (tests/layerref.c)");
        /* only augmentation may go without an input gradient */
        kind_ok(!kc->no_gradient || (ops->flags & LAYER_F_AUGMENT), k,
                "its case skips the gradient check but the kind is not LAYER_F_AUGMENT");
    }
}

static void test_forward(void) {
    for (int k = 0; k < LAYER_KIND_COUNT; k++) {
        const KindCase *kc = usable_case(k);
        Fixture f;
        if (!kc || case_fixture(k, kc, &f, kc->ref_training)) continue;
        kind_ok(f.L.out_fmt == FMT_NHWC, k, "its case's output is not NHWC");
        kind_ok(f.L.n_param == 0 || layer_ops[k]->init, k, "parameters but no .init");
        fixture_forward(&f);
        const size_t no = (size_t)f.N * shape_size(f.L.out);
        float *ref = malloc(no * sizeof *ref);
        kc->ref(&f, ref);
        double worst = 0;
        for (size_t i = 0; i < no; i++) worst = fmax(worst, fabs((double)ref[i] - f.out[i]));
        if (!kind_ok(worst <= kc->tol, k, "forward differs from the naive reference"))
            printf("    worst |forward - reference| %g (tol %g)\n", worst, kc->tol);
        free(ref);
        fixture_free(&f);
    }
}

static void test_gradients(void) {
    for (int k = 0; k < LAYER_KIND_COUNT; k++) {
        const KindCase *kc = usable_case(k);
        Fixture f;
        if (!kc || kc->no_gradient || case_fixture(k, kc, &f, kc->training)) continue;
        int failed = CU_get_number_of_failures();
        check_gradients(&f, kc->grad_tol, kc->eps);
        kind_ok(CU_get_number_of_failures() == (unsigned)failed, k,
                "finite differences disagree with backward");
        fixture_free(&f);
    }
}

/* layers[0..n): [flatten] when the case's input is flat (the model takes an image), the kind,
 * then [flatten] (ONNX's output is a vector); the model input into *in. */
static int case_model_layers(int k, const KindCase *kc, Layer *layers, Shape *in) {
    int n = 0;
    *in = kc->in;
    if (kc->in.flat) {
        memset(&layers[n], 0, sizeof layers[n]);
        layers[n].kind = LAYER_FLATTEN;
        snprintf(layers[n++].name, sizeof layers[0].name, "lead");
        *in = (Shape){1, 1, kc->in.c, 0};
    }
    if (case_layer(k, kc, &layers[n])) return -1;
    for (int i = 0; i < kc->n_inputs; i++) layers[n].inputs[i] = n - 1; /* LAYER_INPUT when first */
    n++;
    memset(&layers[n], 0, sizeof layers[n]);
    layers[n].kind = LAYER_FLATTEN;
    snprintf(layers[n++].name, sizeof layers[0].name, "tail");
    return n;
}

/* path written by save from a, read by load into b (NULL: none), then b's parameters == a's */
static void round_trip(int k, const Model *a, Model *b, const char *path, const char *what,
                       int (*save)(const char *, const Model *, int, Err *), int arg,
                       int (*load)(const char *, Model *, Err *)) {
    Err e = {0};
    memset(b->params, 0, b->n_params * sizeof *b->params);
    int rc = save(path, a, arg, &e);
    if (rc == 0 && load) rc = load(path, b, &e);
    char msg[160];
    snprintf(msg, sizeof msg, "%s round trip fails", what);
    if (!kind_ok(rc == 0, k, msg)) printf("    %s\n", e.msg);
    if (load && rc == 0) {
        snprintf(msg, sizeof msg, "%s round trip changes the parameters", what);
        kind_ok(memcmp(a->params, b->params, a->n_params * sizeof *a->params) == 0, k, msg);
    }
}

static int save_weights(const char *path, const Model *m, int arg, Err *e) {
    return weights_save(path, m, e);
}
#if CONVNET_HDF5
static int save_keras(const char *path, const Model *m, int keras3, Err *e) {
    return export_keras_h5(m, path, keras3, e);
}
/* a model without weights has nothing for an importer to read */
static int load_keras(const char *path, Model *m, Err *e) {
    return m->n_params ? keras_h5_load_weights(path, m, e) : 0;
}
#endif
#if CONVNET_ONNX
static int save_onnx(const char *path, const Model *m, int arg, Err *e) {
    return export_onnx(m, NULL, path, e);
}
#endif

static void test_round_trips(void) {
    const char *dir = testutil_tmpdir();
    for (int k = 0; k < LAYER_KIND_COUNT; k++) {
        const KindCase *kc = usable_case(k);
        Layer la[4], lb[4];
        Shape in;
        int n = kc ? case_model_layers(k, kc, la, &in) : -1;
        if (n < 0) continue;
        memcpy(lb, la, sizeof la);
        Model a, b;
        Err e = {0};
        int rc = model_plan(&a, la, n, in, 2, &e);
        if (rc) printf("\n    kind %d: model_plan: %s\n", k, e.msg);
        if (!kind_ok(rc == 0, k, "a model of it does not plan")) continue;
        CU_ASSERT_FATAL(model_plan(&b, lb, n, in, 2, &e) == 0);
        CU_ASSERT_FATAL(model_alloc(&a, NULL) == 0);
        CU_ASSERT_FATAL(model_alloc(&b, NULL) == 0);
        model_init_params(&a, 3); /* the kind's init: finite */
        int finite = 1;
        for (size_t i = 0; i < a.n_params; i++) finite &= isfinite(a.params[i]) != 0;
        kind_ok(finite, k, "its .init leaves parameters that are not finite");
        testutil_fill(a.params, a.n_params, 9, 0.1f, 0.9f); /* variances must be > 0 */
        char path[1024];
        snprintf(path, sizeof path, "%s/k%d.weights", dir, k);
        round_trip(k, &a, &b, path, "weights file", save_weights, 0, weights_load);
#if CONVNET_HDF5
        snprintf(path, sizeof path, "%s/k%d.h5", dir, k);
        round_trip(k, &a, &b, path, "Keras 2 .h5", save_keras, 0, load_keras);
        snprintf(path, sizeof path, "%s/k%d.weights.h5", dir, k);
        round_trip(k, &a, &b, path, "Keras 3 .weights.h5", save_keras, 1, load_keras);
#else
        if (k == 0) testutil_skip("Keras .h5 round trips of every kind", "built with HDF5=0", 0);
#endif
#if CONVNET_ONNX
        snprintf(path, sizeof path, "%s/k%d.onnx", dir, k);
        round_trip(k, &a, &b, path, "ONNX export", save_onnx, 0, NULL);
#else
        if (k == 0) testutil_skip("ONNX export of every kind", "built with ONNX=0", 0);
#endif
        model_free(&a);
        model_free(&b);
    }
}

TEST_SUITE(kinds, {"every kind has its ops-table entry, hooks and test case", test_hooks},
           {"every kind's forward matches its naive reference", test_forward},
           {"every kind passes finite differences of its inputs and weights", test_gradients},
           {"every kind round-trips through weights, Keras 2/3 .h5 and exports to ONNX",
            test_round_trips})
