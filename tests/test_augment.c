/* test_augment.c: RandomFlip / RandomRotation / RandomZoom: identities (flip twice, factor 0,
 * eval mode), Keras' direction conventions (rotation counter-clockwise for a positive factor,
 * negative zoom factor zooms in), keyed determinism independent of the batch, configuration
 * from a job section, and the 3x3 preview grid. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "images.h"
#include "ini.h"
#include "layer.h"
#include "testutil.h"

static Layer make_layer(LayerKind kind, int h, int w, int c) {
    Layer L;
    memset(&L, 0, sizeof L);
    L.kind = kind;
    snprintf(L.name, sizeof L.name, "aug");
    L.in.h = h;
    L.in.w = w;
    L.in.c = c;
    Err e = {0};
    const LayerOps *ops = layer_ops[kind];
    CU_ASSERT_EQUAL(ops->plan(&L, &e), 0);
    return L;
}

static const LayerOps *ops_of(const Layer *L) { return layer_ops[L->kind]; }

static LayerCtx train_ctx(const int64_t *ids) {
    LayerCtx c;
    memset(&c, 0, sizeof c);
    c.training = 1;
    c.seed = 42;
    c.epoch = 3;
    c.layer_index = 1;
    c.sample_ids = ids;
    return c;
}

static float max_diff(const float *a, const float *b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabsf(a[i] - b[i]) > m) m = fabsf(a[i] - b[i]);
    return m;
}

static void test_flip_twice_identity(void) {
    const int N = 6, H = 5, W = 7, C = 3;
    const size_t n = (size_t)N * H * W * C;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *z = malloc(n * sizeof *z);
    testutil_fill(x, n, 1, 0, 255);
    int64_t ids[6] = {0, 1, 2, 3, 4, 5};
    LayerCtx c = train_ctx(ids);
    for (int mode = 0; mode < 3; mode++) {
        Layer L = make_layer(LAYER_RANDOM_FLIP, H, W, C);
        L.u.flip.horizontal = mode != 1;
        L.u.flip.vertical = mode != 0;
        layer_ops[LAYER_RANDOM_FLIP]->forward(&L, &c, y, x, N);
        layer_ops[LAYER_RANDOM_FLIP]->forward(&L, &c, z, y, N);
        CU_ASSERT_EQUAL(memcmp(x, z, n * sizeof *x), 0);
        /* at least one of six samples was flipped */
        CU_ASSERT(memcmp(x, y, n * sizeof *x) != 0);
    }
    /* a horizontal flip that happened is a left-right mirror */
    Layer L = make_layer(LAYER_RANDOM_FLIP, H, W, C);
    L.u.flip.horizontal = 1;
    layer_ops[LAYER_RANDOM_FLIP]->forward(&L, &c, y, x, N);
    for (int i = 0; i < N; i++) {
        const float *a = x + (size_t)i * H * W * C, *b = y + (size_t)i * H * W * C;
        if (memcmp(a, b, (size_t)H * W * C * sizeof *a) == 0) continue;
        CU_ASSERT_EQUAL(b[0], a[(W - 1) * C]);
        CU_ASSERT_EQUAL(b[(2 * W + 1) * C + 2], a[(2 * W + W - 2) * C + 2]);
    }
    free(x);
    free(y);
    free(z);
}

static void test_zero_factor_identity(void) {
    const int N = 3, H = 6, W = 9, C = 2;
    const size_t n = (size_t)N * H * W * C;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    testutil_fill(x, n, 2, -1, 1);
    int64_t ids[3] = {10, 11, 12};
    LayerCtx c = train_ctx(ids);
    Layer r = make_layer(LAYER_RANDOM_ROTATION, H, W, C);
    r.u.rotation.lo = r.u.rotation.hi = 0;
    layer_ops[LAYER_RANDOM_ROTATION]->forward(&r, &c, y, x, N);
    CU_ASSERT(max_diff(x, y, n) <= 1e-5f);
    Layer z = make_layer(LAYER_RANDOM_ZOOM, H, W, C);
    z.u.zoom.h_lo = z.u.zoom.h_hi = 0;
    z.u.zoom.w_lo = z.u.zoom.w_hi = NAN;
    layer_ops[LAYER_RANDOM_ZOOM]->forward(&z, &c, y, x, N);
    CU_ASSERT(max_diff(x, y, n) <= 1e-5f);
    z.u.zoom.w_lo = z.u.zoom.w_hi = 0;
    layer_ops[LAYER_RANDOM_ZOOM]->forward(&z, &c, y, x, N);
    CU_ASSERT(max_diff(x, y, n) <= 1e-5f);
    free(x);
    free(y);
}

/* factor "0.25,0.25" = +90 degrees: Keras shows the image turned counter-clockwise, so
 * out[y][x] = in[x][n-1-y] and the top-right corner moves to the top-left. */
static void test_rotation_90_counter_clockwise(void) {
    enum { S = 9, C = 2 };
    float x[S * S * C], y[S * S * C];
    for (int r = 0; r < S; r++)
        for (int q = 0; q < S; q++)
            for (int k = 0; k < C; k++) x[(r * S + q) * C + k] = (float)(r * 100 + q * 10 + k);
    int64_t id = 7;
    LayerCtx c = train_ctx(&id);
    Layer L = make_layer(LAYER_RANDOM_ROTATION, S, S, C);
    L.u.rotation.lo = L.u.rotation.hi = 0.25f;
    layer_ops[LAYER_RANDOM_ROTATION]->forward(&L, &c, y, x, 1);
    float worst = 0;
    for (int r = 0; r < S; r++)
        for (int q = 0; q < S; q++)
            for (int k = 0; k < C; k++) {
                float want = x[(q * S + (S - 1 - r)) * C + k];
                float d = fabsf(y[(r * S + q) * C + k] - want);
                if (d > worst) worst = d;
            }
    CU_ASSERT(worst < 0.05f);
    /* top-right (row 0, col S-1) = 80 is now at the top-left */
    CU_ASSERT(fabsf(y[0] - 80.0f) < 0.05f);
    /* -90 degrees: clockwise, top-left moves to the top-right */
    L.u.rotation.lo = L.u.rotation.hi = -0.25f;
    layer_ops[LAYER_RANDOM_ROTATION]->forward(&L, &c, y, x, 1);
    CU_ASSERT(fabsf(y[(S - 1) * C] - 0.0f) < 0.05f);
    CU_ASSERT(fabsf(y[0] - 800.0f) < 0.05f); /* bottom-left came up to the top-left */
}

/* height_factor -0.5 (width follows): 2x zoom in about the centre. */
static void test_zoom_in_direction(void) {
    enum { S = 9 };
    float x[S * S], y[S * S];
    for (int r = 0; r < S; r++)
        for (int q = 0; q < S; q++) x[r * S + q] = (float)(r * 100 + q);
    int64_t id = 3;
    LayerCtx c = train_ctx(&id);
    Layer L = make_layer(LAYER_RANDOM_ZOOM, S, S, 1);
    L.u.zoom.h_lo = L.u.zoom.h_hi = -0.5f;
    L.u.zoom.w_lo = L.u.zoom.w_hi = NAN;
    layer_ops[LAYER_RANDOM_ZOOM]->forward(&L, &c, y, x, 1);
    /* out(r, q) = in(4 + (r - 4) / 2, 4 + (q - 4) / 2): corners show (2, 2) and (6, 6) */
    CU_ASSERT(fabsf(y[4 * S + 4] - 404.0f) < 1e-3f);
    CU_ASSERT(fabsf(y[0] - 202.0f) < 1e-3f);
    CU_ASSERT(fabsf(y[S * S - 1] - 606.0f) < 1e-3f);
    CU_ASSERT(fabsf(y[1] - 202.5f) < 1e-3f);
    /* zoom out 2x with reflect fill: out(0, 0) samples in(-4, -4) -> reflected to (3, 3) */
    L.u.zoom.h_lo = L.u.zoom.h_hi = 1.0f;
    layer_ops[LAYER_RANDOM_ZOOM]->forward(&L, &c, y, x, 1);
    CU_ASSERT(fabsf(y[0] - 303.0f) < 1e-3f);
    CU_ASSERT(fabsf(y[4 * S + 4] - 404.0f) < 1e-3f);
}

/* The same (seed, epoch, layer, sample id) gives the same image in any batch. */
static void test_keyed_determinism(void) {
    enum { H = 12, W = 10, C = 3, P = H * W * C };
    float x[4 * P], y4[4 * P], y1[P];
    testutil_fill(x, 4 * P, 5, 0, 1);
    for (int i = 0; i < 4; i++) memcpy(x + i * P, x, sizeof(float) * P); /* same image */
    int64_t ids4[4] = {5, 7, 9, 11}, ids1[1] = {9};
    LayerKind kinds[3] = {LAYER_RANDOM_FLIP, LAYER_RANDOM_ROTATION, LAYER_RANDOM_ZOOM};
    for (int k = 0; k < 3; k++) {
        Layer L = make_layer(kinds[k], H, W, C);
        L.u.flip.horizontal = L.u.flip.vertical = 1;
        if (kinds[k] == LAYER_RANDOM_ROTATION) L.u.rotation.lo = -0.2f, L.u.rotation.hi = 0.2f;
        if (kinds[k] == LAYER_RANDOM_ZOOM) {
            L.u.zoom.h_lo = -0.3f, L.u.zoom.h_hi = 0.3f;
            L.u.zoom.w_lo = -0.2f, L.u.zoom.w_hi = 0.2f;
        }
        LayerCtx c4 = train_ctx(ids4), c1 = train_ctx(ids1);
        ops_of(&L)->forward(&L, &c4, y4, x, 4);
        ops_of(&L)->forward(&L, &c1, y1, x, 1);
        CU_ASSERT_EQUAL(memcmp(y4 + 2 * P, y1, sizeof y1), 0);
        if (kinds[k] != LAYER_RANDOM_FLIP) {
            /* different ids draw different transforms */
            CU_ASSERT(memcmp(y4, y4 + P, sizeof(float) * P) != 0);
            CU_ASSERT(memcmp(y4 + P, y4 + 2 * P, sizeof(float) * P) != 0);
            /* a different epoch too */
            c1.epoch = 4;
            float y1b[P];
            ops_of(&L)->forward(&L, &c1, y1b, x, 1);
            CU_ASSERT(memcmp(y1b, y1, sizeof y1) != 0);
        }
        /* in place gives the same result */
        float xin[P];
        memcpy(xin, x, sizeof xin);
        c1.epoch = 3;
        ops_of(&L)->forward(&L, &c1, xin, xin, 1);
        CU_ASSERT_EQUAL(memcmp(xin, y1, sizeof y1), 0);
    }
    /* flips: over many ids both outcomes happen */
    enum { M = 64 };
    static float xs[M * P], ys[M * P];
    int64_t ids[M];
    for (int i = 0; i < M; i++) {
        memcpy(xs + i * P, x, sizeof(float) * P);
        ids[i] = 1000 + i;
    }
    Layer F = make_layer(LAYER_RANDOM_FLIP, H, W, C);
    F.u.flip.horizontal = 1;
    LayerCtx cf = train_ctx(ids);
    layer_ops[LAYER_RANDOM_FLIP]->forward(&F, &cf, ys, xs, M);
    int flipped = 0;
    for (int i = 0; i < M; i++) flipped += memcmp(ys + i * P, xs + i * P, sizeof(float) * P) != 0;
    CU_ASSERT(flipped > 16 && flipped < 48);
}

static void test_eval_identity(void) {
    enum { H = 8, W = 8, C = 3, P = H * W * C };
    float x[2 * P], y[2 * P];
    testutil_fill(x, 2 * P, 9, 0, 255);
    int64_t ids[2] = {1, 2};
    LayerCtx c = train_ctx(ids);
    c.training = 0;
    LayerKind kinds[3] = {LAYER_RANDOM_FLIP, LAYER_RANDOM_ROTATION, LAYER_RANDOM_ZOOM};
    for (int k = 0; k < 3; k++) {
        Layer L = make_layer(kinds[k], H, W, C);
        L.u.flip.horizontal = L.u.flip.vertical = 1;
        L.u.rotation.lo = -0.3f, L.u.rotation.hi = 0.3f;
        ops_of(&L)->forward(&L, &c, y, x, 2);
        CU_ASSERT_EQUAL(memcmp(x, y, sizeof x), 0);
    }
}

static int configure(Layer *L, LayerKind kind, const char *text, Err *e) {
    IniFile ini;
    memset(&ini, 0, sizeof ini);
    memset(L, 0, sizeof *L);
    L->kind = kind;
    L->line = 1;
    int rc = ini_parse_string(&ini, "aug.job", text, e);
    if (rc == 0) rc = ops_of(L)->configure(L, &ini, &ini.sec[0], e);
    if (rc == 0) rc = sec_check_unused(&ini, &ini.sec[0], e);
    ini_free(&ini);
    return rc;
}

static void test_configure(void) {
    Layer L;
    Err e = {0};
    CU_ASSERT_EQUAL(configure(&L, LAYER_RANDOM_FLIP, "[random_flip]\nmode = horizontal\n", &e), 0);
    CU_ASSERT(L.u.flip.horizontal && !L.u.flip.vertical && !L.trainable);
    CU_ASSERT_EQUAL(configure(&L, LAYER_RANDOM_FLIP, "[random_flip]\n", &e), 0);
    CU_ASSERT(L.u.flip.horizontal && L.u.flip.vertical);
    Err e1 = {0};
    CU_ASSERT_EQUAL(configure(&L, LAYER_RANDOM_FLIP, "[random_flip]\nmode = diagonal\n", &e1), -1);
    CU_ASSERT(e1.set);

    CU_ASSERT_EQUAL(configure(&L, LAYER_RANDOM_ROTATION, "[random_rotation]\nfactor = 0.1\n", &e),
                    0);
    CU_ASSERT(fabsf(L.u.rotation.lo + 0.1f) < 1e-7f && fabsf(L.u.rotation.hi - 0.1f) < 1e-7f);
    CU_ASSERT_EQUAL(
        configure(&L, LAYER_RANDOM_ROTATION, "[random_rotation]\nfactor = -0.2, 0.3\n", &e), 0);
    CU_ASSERT(fabsf(L.u.rotation.lo + 0.2f) < 1e-7f && fabsf(L.u.rotation.hi - 0.3f) < 1e-7f);
    Err e2 = {0};
    CU_ASSERT_EQUAL(configure(&L, LAYER_RANDOM_ROTATION, "[random_rotation]\n", &e2), -1);
    Err e3 = {0};
    CU_ASSERT_EQUAL(configure(&L, LAYER_RANDOM_ROTATION,
                              "[random_rotation]\nfactor = 0.1\nfill_mode = nearest\n", &e3),
                    -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e3.msg, "fill_mode"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e3.msg, "aug.job:1"));

    CU_ASSERT_EQUAL(configure(&L, LAYER_RANDOM_ZOOM, "[random_zoom]\nheight_factor = 0.2\n", &e),
                    0);
    CU_ASSERT(fabsf(L.u.zoom.h_lo + 0.2f) < 1e-7f && isnan(L.u.zoom.w_lo));
    CU_ASSERT_EQUAL(configure(&L, LAYER_RANDOM_ZOOM,
                              "[random_zoom]\nheight_factor = -0.3,-0.2\nwidth_factor = 0.1\n"
                              "interpolation = bilinear\nfill_mode = reflect\n",
                              &e),
                    0);
    CU_ASSERT(fabsf(L.u.zoom.w_hi - 0.1f) < 1e-7f && fabsf(L.u.zoom.h_hi + 0.2f) < 1e-7f);
    Err e4 = {0};
    CU_ASSERT_EQUAL(
        configure(&L, LAYER_RANDOM_ZOOM, "[random_zoom]\nheight_factor = -1.5,0\n", &e4), -1);
    Err e5 = {0};
    CU_ASSERT_EQUAL(configure(&L, LAYER_RANDOM_ZOOM, "[random_zoom]\nwidth_factor = 0.2\n", &e5),
                    -1);
    Err e6 = {0};
    CU_ASSERT_EQUAL(configure(&L, LAYER_RANDOM_ZOOM,
                              "[random_zoom]\nheight_factor = 0.2\ninterpolation = nearest\n", &e6),
                    -1);
    /* a flat input is refused by plan */
    Layer P;
    memset(&P, 0, sizeof P);
    P.kind = LAYER_RANDOM_FLIP;
    P.in.h = P.in.w = 1;
    P.in.c = 10;
    P.in.flat = 1;
    Err e7 = {0};
    CU_ASSERT_EQUAL(layer_ops[LAYER_RANDOM_FLIP]->plan(&P, &e7), -1);
}

static void test_preview_grid(void) {
    enum { H = 24, W = 20 };
    uint8_t img[H * W * 3];
    for (int i = 0; i < H * W; i++) {
        img[i * 3] = (uint8_t)(i % W * 12);
        img[i * 3 + 1] = (uint8_t)(i / W * 10);
        img[i * 3 + 2] = 90;
    }
    Layer layers[4];
    layers[0] = make_layer(LAYER_RANDOM_FLIP, H, W, 3);
    layers[0].u.flip.horizontal = 1;
    layers[1] = make_layer(LAYER_RANDOM_ROTATION, H, W, 3);
    layers[1].u.rotation.lo = -0.1f, layers[1].u.rotation.hi = 0.1f;
    layers[2] = make_layer(LAYER_RANDOM_ZOOM, H, W, 3);
    layers[2].u.zoom.h_lo = -0.2f, layers[2].u.zoom.h_hi = 0.2f;
    layers[2].u.zoom.w_lo = layers[2].u.zoom.w_hi = NAN;
    memset(&layers[3], 0, sizeof layers[3]);
    layers[3].kind = LAYER_RESCALING; /* ignored by the preview */
    char p[600];
    snprintf(p, sizeof p, "%s/aug_preview.jpg", testutil_tmpdir());
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(augment_preview_write(p, img, H, W, 3, layers, 4, 1, &e), 0);
    uint8_t *grid = malloc((3 * H + 8) * (3 * W + 8) * 3);
    CU_ASSERT_EQUAL(image_load_file(p, 3 * H + 8, 3 * W + 8, 3, 0, grid, &e), 0);
    free(grid);
    Err e2 = {0};
    CU_ASSERT_EQUAL(augment_preview_write(p, img, H + 1, W, 3, layers, 4, 1, &e2), -1);
}

TEST_SUITE(augment, {"flip twice is identity", test_flip_twice_identity},
           {"rotation 0 and zoom 0 are identities", test_zero_factor_identity},
           {"rotation +90 is counter-clockwise", test_rotation_90_counter_clockwise},
           {"negative zoom factor zooms in", test_zoom_in_direction},
           {"keyed draws independent of the batch", test_keyed_determinism},
           {"eval mode is identity", test_eval_identity},
           {"configure from job sections", test_configure},
           {"preview grid JPEG", test_preview_grid})
