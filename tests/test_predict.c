/* test_predict.c: predict_images on a tiny hand-weighted model (Flatten + Dense) whose answer
 * is known: a bright image is class 1 ("beta"), a dark one class 0 ("alpha"). Checks class
 * names from the class folders (sorted, hidden entries and files skipped), probabilities
 * against a reference computed here from the decoded pixels, top-K lines, JSON lines, the
 * binary (1-unit sigmoid) reading, batching over more images than max_batch, and a bad or
 * missing image reported by name while the others are still classified. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "images.h"
#include "predict.h"
#include "testutil.h"

enum { H = 8, W = 8, C = 3, IN = H * W * C };
static const double A = 6.0; /* logit gap per unit of mean brightness */

typedef struct {
    Layer layers[2];
    Model m;
    Job job;
    char train_dir[512];
    char img[4][512]; /* bright, dark, not a JPEG, missing */
} Fix;

static void mkdirs(const char *base, const char *sub) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", base, sub);
    mkdir(p, 0755);
}

/* units = 2: softmax over (alpha, beta); units = 1: a linear logit read through a sigmoid. */
static void fix_init(Fix *f, int units, int max_batch) {
    memset(f, 0, sizeof *f);
    const char *tmp = testutil_tmpdir();
    snprintf(f->train_dir, sizeof f->train_dir, "%s/predict-train", tmp);
    mkdir(f->train_dir, 0755);
    mkdirs(f->train_dir, "beta");
    mkdirs(f->train_dir, "alpha");
    mkdirs(f->train_dir, ".hidden");
    testutil_write_file(f->train_dir, "README.txt", "not a class", 11);

    uint8_t pix[16 * 16 * 3];
    Err e = {0};
    const int level[2] = {225, 35};
    const char *name[2] = {"bright.jpg", "dark.jpg"};
    for (int i = 0; i < 2; i++) {
        memset(pix, level[i], sizeof pix);
        snprintf(f->img[i], sizeof f->img[i], "%s/%s", tmp, name[i]);
        CU_ASSERT_EQUAL_FATAL(image_write_jpeg(f->img[i], pix, 16, 16, 3, 95, &e), 0);
    }
    snprintf(f->img[2], sizeof f->img[2], "%s",
             testutil_write_file(tmp, "fake.jpg", "GIF89a....", 10));
    snprintf(f->img[3], sizeof f->img[3], "%s/missing.jpg", tmp);

    Layer *L = f->layers;
    L[0].kind = LAYER_FLATTEN;
    snprintf(L[0].name, sizeof L[0].name, "flatten");
    L[1].kind = LAYER_DENSE;
    snprintf(L[1].name, sizeof L[1].name, "dense");
    L[1].units = units;
    L[1].act = units == 1 ? ACT_LINEAR : ACT_SOFTMAX;
    L[1].use_bias = 1;
    L[1].trainable = 1;
    CU_ASSERT_EQUAL_FATAL(model_plan(&f->m, L, 2, (Shape){H, W, C, 0}, max_batch, &e), 0);
    CU_ASSERT_FATAL(model_alloc(&f->m, NULL) == 0);
    CU_ASSERT_EQUAL_FATAL(f->m.n_params, (size_t)IN * units + units);
    float *w = f->m.params + f->m.layers[1].param_off,
          *b = f->m.params + f->m.layers[1].param[1].off;
    /* Dense weights are (IN, UNITS): logit_1 - logit_0 = 2A (mean - 0.5) for softmax,
     * logit = A (mean - 0.5) for the sigmoid, mean = average pixel / 255 */
    for (int i = 0; i < IN; i++) {
        if (units == 2) {
            w[i * 2 + 0] = (float)(-A / IN);
            w[i * 2 + 1] = (float)(A / IN);
        } else {
            w[i] = (float)(A / IN);
        }
    }
    if (units == 2) {
        b[0] = (float)(A / 2);
        b[1] = (float)(-A / 2);
    } else {
        b[0] = (float)(-A / 2);
    }
    f->job.data.format = DATA_IMAGES;
    f->job.data.train_dir = f->train_dir;
    f->job.data.scale = 1.0f / 255;
    f->job.data.offset = 0;
}

/* The probability of class 1 for image i, from its decoded pixels. */
static double expected_p1(const Fix *f, int i, int units) {
    uint8_t pix[IN];
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(image_load_file(f->img[i], H, W, C, 0, pix, &e), 0);
    double mean = 0;
    for (int k = 0; k < IN; k++) mean += pix[k] * (1.0 / 255);
    mean /= IN;
    double gap = (units == 2 ? 2 * A : A) * (mean - 0.5);
    return 1.0 / (1.0 + exp(-gap));
}

/* Run predict_images; returns its status, output and stderr text (malloc'd). */
static int run_predict(Fix *f, char *const *paths, int n, int top, int json, char **out, char **err,
                       Err *e) {
    size_t on = 0, en = 0;
    FILE *fo = open_memstream(out, &on), *fe = open_memstream(err, &en);
    CU_ASSERT_FATAL(fo && fe);
    int rc = predict_images(&f->m, &f->job, paths, n, top, json, fo, fe, e);
    fclose(fo);
    fclose(fe);
    return rc;
}

/* The number after "key" in s (after *from), advancing *from past it; NAN when absent. */
static double num_after(const char **from, const char *key) {
    const char *p = strstr(*from, key);
    if (!p) return NAN;
    p += strlen(key);
    char *end;
    double v = strtod(p, &end);
    *from = end;
    return v;
}

static void test_text_and_bad_images(void) {
    Fix f;
    fix_init(&f, 2, 2);
    double pb = expected_p1(&f, 0, 2), pd = expected_p1(&f, 1, 2);
    CU_ASSERT(pb > 0.9 && pd < 0.1); /* the fixture does separate them */
    /* 5 paths, 2 per forward: the bad ones sit between good ones */
    char *paths[5] = {f.img[0], f.img[2], f.img[1], f.img[3], f.img[0]};
    char *out = NULL, *err = NULL;
    Err e = {0};
    int rc = run_predict(&f, paths, 5, 1, 0, &out, &err, &e);
    CU_ASSERT_EQUAL(rc, 2);
    char want[2048];
    snprintf(want, sizeof want, "%s: beta (p=%.4f)\n%s: alpha (p=%.4f)\n%s: beta (p=%.4f)\n",
             f.img[0], pb, f.img[1], 1 - pd, f.img[0], pb);
    if (strcmp(out, want) != 0) printf("\n  got:\n%s  want:\n%s", out, want);
    CU_ASSERT_STRING_EQUAL(out, want);
    /* both bad files are named on stderr, and the summary names the first */
    CU_ASSERT_PTR_NOT_NULL(strstr(err, f.img[2]));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, f.img[3]));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "2 of 5 images"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, f.img[2]));
    free(out);
    free(err);

    /* all good: 0, nothing on stderr */
    Err e2 = {0};
    rc = run_predict(&f, paths, 1, 1, 0, &out, &err, &e2);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_FALSE(e2.set);
    CU_ASSERT_STRING_EQUAL(err, "");
    free(out);
    free(err);
    model_free(&f.m);
}

static void test_top_k_and_json(void) {
    Fix f;
    fix_init(&f, 2, 4);
    double pb = expected_p1(&f, 0, 2), pd = expected_p1(&f, 1, 2);
    char *paths[3] = {f.img[1], f.img[0], f.img[2]};
    char *out = NULL, *err = NULL;
    Err e = {0};
    CU_ASSERT_EQUAL(run_predict(&f, paths, 2, 5, 0, &out, &err, &e), 0); /* top 5 -> 2 classes */
    char want[2048];
    snprintf(want, sizeof want,
             "%s: alpha (p=%.4f)\n  1. alpha (p=%.4f)\n  2. beta (p=%.4f)\n"
             "%s: beta (p=%.4f)\n  1. beta (p=%.4f)\n  2. alpha (p=%.4f)\n",
             f.img[1], 1 - pd, 1 - pd, pd, f.img[0], pb, pb, 1 - pb);
    CU_ASSERT_STRING_EQUAL(out, want);
    free(out);
    free(err);

    Err e2 = {0};
    CU_ASSERT_EQUAL(run_predict(&f, paths, 3, 2, 1, &out, &err, &e2), 1);
    /* line 1: the dark image */
    char head[1024];
    snprintf(head, sizeof head, "{\"path\":\"%s\",\"class\":\"alpha\",\"probability\":", f.img[1]);
    CU_ASSERT(strncmp(out, head, strlen(head)) == 0);
    const char *q = out;
    CU_ASSERT(fabs(num_after(&q, "\"probability\":") - (1 - pd)) < 1e-5);
    CU_ASSERT_PTR_NOT_NULL(strstr(q, ",\"top\":[{\"class\":\"alpha\",\"probability\":"));
    CU_ASSERT(fabs(num_after(&q, "\"probability\":") - (1 - pd)) < 1e-5);
    CU_ASSERT(strncmp(q, "},{\"class\":\"beta\",\"probability\":", 32) == 0);
    CU_ASSERT(fabs(num_after(&q, "\"probability\":") - pd) < 1e-5);
    CU_ASSERT(strncmp(q, "}]}\n", 4) == 0);
    /* line 2: the bright image; line 3: the bad one as an error object */
    snprintf(head, sizeof head, "\n{\"path\":\"%s\",\"class\":\"beta\",\"probability\":", f.img[0]);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, head));
    snprintf(head, sizeof head, "\n{\"path\":\"%s\",\"error\":\"", f.img[2]);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, head));
    int lines = 0;
    for (const char *c = out; *c; c++) lines += *c == '\n';
    CU_ASSERT_EQUAL(lines, 3);
    free(out);
    free(err);
    model_free(&f.m);
}

static void test_binary_and_names(void) {
    Fix f;
    fix_init(&f, 1, 3);
    double pb = expected_p1(&f, 0, 1), pd = expected_p1(&f, 1, 1);
    CU_ASSERT(pb > 0.5 && pd < 0.5);
    char *paths[2] = {f.img[0], f.img[1]};
    char *out = NULL, *err = NULL;
    Err e = {0};
    CU_ASSERT_EQUAL(run_predict(&f, paths, 2, 1, 0, &out, &err, &e), 0);
    char want[2048];
    snprintf(want, sizeof want, "%s: beta (p=%.4f)\n%s: alpha (p=%.4f)\n", f.img[0], pb, f.img[1],
             1 - pd);
    CU_ASSERT_STRING_EQUAL(out, want);
    free(out);
    free(err);

    /* IDX jobs: numbered classes */
    f.job.data.format = DATA_IDX;
    int k = 0;
    char **names = predict_class_names(&f.m, &f.job, &k, NULL);
    CU_ASSERT_EQUAL(k, 2);
    CU_ASSERT(k == 2 && strcmp(names[0], "0") == 0 && strcmp(names[1], "1") == 0);
    predict_free_class_names(names, k);

    /* a class-folder count that does not fit the model: numbers, and a note saying why */
    f.job.data.format = DATA_IMAGES;
    mkdirs(f.train_dir, "gamma");
    size_t en = 0;
    FILE *fe = open_memstream(&err, &en);
    names = predict_class_names(&f.m, &f.job, &k, fe);
    fclose(fe);
    CU_ASSERT(k == 2 && strcmp(names[1], "1") == 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "3 class folders but the model has 2 classes"));
    predict_free_class_names(names, k);
    free(err);
    char g[600];
    snprintf(g, sizeof g, "%s/gamma", f.train_dir);
    rmdir(g);
    model_free(&f.m);
}

TEST_SUITE(predict, {"text output, bad images named, others classified", test_text_and_bad_images},
           {"top-K lines and JSON lines", test_top_k_and_json},
           {"binary sigmoid output, class names", test_binary_and_names})
