/* test_darknet.c: the Darknet importer. A small network written by the test is checked against
 * Darknet's arithmetic computed here (NCHW convolution, batch normalisation with Darknet's
 * 1e-6, leaky ReLU 0.1); bad files are refused; and with ../shared the whole Tiny Darknet must
 * reproduce Debian's darknet binary's top-5 on two test images.
 *
 * How the reference figures below were made: each test JPEG was decoded and resized to 224x224
 * by convnet-dist's image_load_file (as predict does), the pixels written raw and turned into a
 * PNG with `convert -size 224x224 -depth 8 rgb:x.raw x.png` (lossless), then
 * `darknet classify tiny.cfg tiny.weights x.png` (Debian package darknet
 * 0.0.0+git20180914) printed the top-5 percentages copied here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "darknet.h"
#include "job.h"
#include "testutil.h"

/* ---- a small network: conv3x3(4, BN, leaky) -> maxpool 2 -> conv1x1(3, linear) -> avgpool ---- */

enum { H = 6, W = 6, C = 2, F1 = 4, F2 = 3 };

static const char *small_cfg =
    "[net]\nheight=6\nwidth=6\nchannels=2\n\n"
    "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n\n"
    "[maxpool]\nsize=2\nstride=2\n\n"
    "[convolutional]\nfilters=3\nsize=1\nstride=1\npad=1\nactivation=linear\n\n"
    "[avgpool]\n\n[softmax]\ngroups=1\n";

typedef struct {
    float b1[F1], scale[F1], mean[F1], var[F1], w1[F1][C][3][3]; /* Darknet order */
    float b2[F2], w2[F2][F1];
} SmallNet;

static void write_small(const char *dir, SmallNet *n, int truncate, int extra) {
    testutil_fill(&n->b1[0], sizeof *n / sizeof(float), 77, -0.5f, 0.5f);
    for (int o = 0; o < F1; o++) n->var[o] = 0.2f + 0.1f * o; /* variances > 0 */
    testutil_write_file(dir, "small.cfg", small_cfg, strlen(small_cfg));
    size_t nbytes = 16 + sizeof *n - (size_t)truncate + (size_t)extra;
    unsigned char *buf = calloc(1, nbytes + 64);
    int32_t head[4] = {0, 1, 0, 12345};
    memcpy(buf, head, 16);
    memcpy(buf + 16, n, sizeof *n - (size_t)truncate);
    testutil_write_file(dir, "small.weights", buf, nbytes);
    free(buf);
}

static Job load_small(const char *dir, int *rc, Err *e) {
    char text[1024];
    snprintf(text, sizeof text,
             "[data]\nformat = images\nroot = %s\ntrain_dir = .\ntest_dir = .\nimage_size = %d,%d\n"
             "color_mode = grayscale\n[darknet]\ncfg = small.cfg\nweights = small.weights\n"
             "[train]\nloss = sparse_categorical_crossentropy\n",
             dir, H, W);
    const char *path = testutil_write_file(dir, "small.job", text, strlen(text));
    Job j;
    *rc = job_load(&j, path, NULL, 0, e);
    return j;
}

/* The same network computed the way Darknet does, in NCHW, for one image x[C][H][W]. */
static void darknet_reference(const SmallNet *n, const float x[C][H][W], double out[F2]) {
    double a[F1][H][W], p[F1][H / 2][W / 2];
    for (int o = 0; o < F1; o++)
        for (int y = 0; y < H; y++)
            for (int xx = 0; xx < W; xx++) {
                double s = 0;
                for (int c = 0; c < C; c++)
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            int iy = y + ky - 1, ix = xx + kx - 1;
                            if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                                s += n->w1[o][c][ky][kx] * x[c][iy][ix];
                        }
                s = (s - n->mean[o]) / (sqrt(n->var[o]) + 1e-6) * n->scale[o] + n->b1[o];
                a[o][y][xx] = s > 0 ? s : 0.1 * s;
            }
    for (int o = 0; o < F1; o++)
        for (int y = 0; y < H / 2; y++)
            for (int xx = 0; xx < W / 2; xx++)
                p[o][y][xx] = fmax(fmax(a[o][2 * y][2 * xx], a[o][2 * y][2 * xx + 1]),
                                   fmax(a[o][2 * y + 1][2 * xx], a[o][2 * y + 1][2 * xx + 1]));
    for (int k = 0; k < F2; k++) {
        double s = 0;
        for (int y = 0; y < H / 2; y++)
            for (int xx = 0; xx < W / 2; xx++) {
                double z = n->b2[k];
                for (int o = 0; o < F1; o++) z += n->w2[k][o] * p[o][y][xx];
                s += z;
            }
        out[k] = s / ((H / 2) * (W / 2)); /* global average: the logits */
    }
}

static void test_small_network(void) {
    const char *dir = testutil_tmpdir();
    SmallNet n;
    write_small(dir, &n, 0, 0);
    Err e = {0};
    int rc;
    Job j = load_small(dir, &rc, &e);
    CU_ASSERT_FATAL(rc == 0);
    CU_ASSERT_EQUAL(j.n_layers, 4);
    Model m;
    CU_ASSERT_FATAL(model_plan(&m, j.layers, j.n_layers, (Shape){H, W, C, 0}, 1, &e) == 0);
    CU_ASSERT_FATAL(model_alloc(&m, NULL) == 0);
    model_init_params(&m, 1);
    CU_ASSERT_FATAL(darknet_load_weights(&j.darknet, &m, &e) == 0);
    float x[C][H][W];
    testutil_fill(&x[0][0][0], C * H * W, 5, 0, 1);
    float *in = model_input(&m); /* NHWC */
    for (int y = 0; y < H; y++)
        for (int xx = 0; xx < W; xx++)
            for (int c = 0; c < C; c++) in[(y * W + xx) * C + c] = x[c][y][xx];
    int64_t id = 0;
    PassCtx p = {.training = 0, .seed = 1, .epoch = 0, .sample_ids = &id};
    float *out = model_forward(&m, 1, &p);
    double ref[F2];
    darknet_reference(&n, (const float(*)[H][W])x, ref);
    double worst = 0;
    for (int k = 0; k < F2; k++) worst = fmax(worst, fabs(ref[k] - out[k]));
    CU_ASSERT(worst < 1e-4);
    if (worst >= 1e-4) printf("\n    max difference %g\n", worst);
    model_free(&m);
    job_free(&j);
}

static void test_bad_files(void) {
    const char *dir = testutil_tmpdir();
    SmallNet n;
    Err e = {0};
    int rc;
    /* truncated: the message names the file and the offset */
    write_small(dir, &n, 8, 0);
    Job j = load_small(dir, &rc, &e);
    CU_ASSERT_FATAL(rc == 0);
    Model m;
    CU_ASSERT_FATAL(model_plan(&m, j.layers, j.n_layers, (Shape){H, W, C, 0}, 1, &e) == 0);
    CU_ASSERT_FATAL(model_alloc(&m, NULL) == 0);
    Err e2 = {0};
    CU_ASSERT(darknet_load_weights(&j.darknet, &m, &e2) != 0);
    CU_ASSERT(strstr(e2.msg, "small.weights") && strstr(e2.msg, "truncated at offset"));
    /* trailing data after a complete import: the cfg does not describe the file */
    write_small(dir, &n, 0, 12);
    Err e3 = {0};
    CU_ASSERT(darknet_load_weights(&j.darknet, &m, &e3) != 0);
    CU_ASSERT(strstr(e3.msg, "left after the last layer") != NULL);
    model_free(&m);
    job_free(&j);
    /* an unsupported layer names the cfg line */
    const char *bad = "[net]\n[convolutional]\nfilters=2\nsize=3\n[shortcut]\nfrom=-3\n";
    testutil_write_file(dir, "small.cfg", bad, strlen(bad));
    char text[512];
    snprintf(text, sizeof text,
             "[data]\nformat = images\nroot = %s\ntrain_dir = .\ntest_dir = .\n[darknet]\ncfg = "
             "small.cfg\n"
             "weights = small.weights\n[train]\nloss = sparse_categorical_crossentropy\n",
             dir);
    const char *path = testutil_write_file(dir, "bad.job", text, strlen(text));
    Job b;
    Err e4 = {0};
    CU_ASSERT(job_load(&b, path, NULL, 0, &e4) != 0);
    CU_ASSERT(strstr(e4.msg, "small.cfg:5") != NULL && strstr(e4.msg, "shortcut") != NULL);
    job_free(&b);
}

/* Tiny Darknet against Debian's darknet binary (reference figures: see the header comment). */
typedef struct {
    const char *image;
    const char *names[5];
    double percent[5];
} DarknetRef;

static const DarknetRef refs[] = {
    {"dogs-vs-cats-small/test/cats/cat.1500.jpg",
     {"Siamese cat", "Egyptian cat", "Persian cat", "indri", "tabby"},
     {63.80, 9.38, 6.63, 4.41, 3.29}},
    {"dogs-vs-cats-small/test/dogs/dog.1501.jpg",
     {"bloodhound", "redbone", "Irish setter", "Rhodesian ridgeback", "black-and-tan coonhound"},
     {80.16, 8.87, 2.51, 2.39, 1.03}},
};

static void test_tiny_darknet(void) {
    const char *root = testutil_shared_data("Tiny Darknet against darknet's outputs");
    if (!root) return;
    for (size_t r = 0; r < sizeof refs / sizeof *refs; r++) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 "CONVNET_DATA=%s %s predict jobs/tiny-darknet-imagenet.job --top 5 --json %s/%s",
                 root, testutil_bin(), root, refs[r].image);
        char *out = NULL;
        CU_ASSERT_EQUAL(testutil_run(cmd, &out), 0);
        const char *top = strstr(out, "\"top\":[");
        CU_ASSERT_FATAL(top != NULL);
        for (int k = 0; k < 5; k++) {
            char want[128];
            snprintf(want, sizeof want, "{\"class\":\"%s\",\"probability\":", refs[r].names[k]);
            const char *at = strstr(top, want);
            CU_ASSERT(at != NULL);
            if (!at) {
                printf("\n    %s: %s is not in our top 5:\n%s", refs[r].image, refs[r].names[k],
                       out);
                continue;
            }
            /* same rank: exactly k entries before it */
            int before = 0;
            for (const char *q = top; q < at; q++) before += *q == '{';
            CU_ASSERT_EQUAL(before, k);
            double p = atof(at + strlen(want));
            CU_ASSERT(fabs(100 * p - refs[r].percent[k]) <= 0.1); /* 0.1 percentage points */
            if (fabs(100 * p - refs[r].percent[k]) > 0.1)
                printf("\n    %s: %s %.2f%%, darknet %.2f%%\n", refs[r].image, refs[r].names[k],
                       100 * p, refs[r].percent[k]);
        }
        free(out);
    }
}

TEST_SUITE(darknet, {"a small network against Darknet's arithmetic", test_small_network},
           {"truncated, oversized and unsupported files are refused", test_bad_files},
           {"Tiny Darknet reproduces darknet's top-5", test_tiny_darknet})
