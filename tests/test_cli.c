/* test_cli.c: the convnet-dist command line, run as a program ($CONVNET_BIN): bad input of every
 * kind exits with status 2 and one message naming the file (and line) before any training; and
 * summary, train, eval and diff-weights on a tiny synthetic IDX data set written here. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define LACKS(msg, sub) CU_ASSERT_PTR_NULL(strstr((msg), (sub)))

enum { TRAIN_N = 192, TEST_N = 60, SIDE = 8, CLASSES = 3 };

static char dir[512]; /* the temp dir holding data and jobs */

/* ---- data ---- */

static void write_file(const char *name, const void *p, size_t n) {
    testutil_write_file(dir, name, p, n);
}

/* n images of SIDE x SIDE: class 0 bright top half, class 1 bright left half, class 2 bright
 * centre; noisy. Labels i % 3; `flip_every` > 0 gives every flip_every-th sample a wrong label. */
static void write_idx(const char *img, const char *lbl, int n, unsigned seed, int flip_every) {
    size_t il = 16 + (size_t)n * SIDE * SIDE, ll = 8 + (size_t)n;
    unsigned char *im = malloc(il), *lb = malloc(ll);
    testutil_idx_header(im, 3, (const unsigned[]){(unsigned)n, SIDE, SIDE});
    testutil_idx_header(lb, 1, (const unsigned[]){(unsigned)n});
    unsigned s = seed;
    for (int i = 0; i < n; i++) {
        int c = i % CLASSES;
        for (int r = 0; r < SIDE; r++)
            for (int q = 0; q < SIDE; q++) {
                int on = (c == 0 && r < 4) || (c == 1 && q < 4) ||
                         (c == 2 && r >= 2 && r < 6 && q >= 2 && q < 6);
                s = s * 1103515245u + 12345u;
                int noise = (int)((s >> 16) % 61);
                im[16 + (size_t)i * SIDE * SIDE + r * SIDE + q] = (unsigned char)(on ? 195 + noise
                                                                                     : noise);
            }
        lb[8 + i] = (unsigned char)(flip_every > 0 && i % flip_every == 0 ? (c + 1) % CLASSES : c);
    }
    write_file(img, im, il);
    write_file(lbl, lb, ll);
    free(im);
    free(lb);
}

static void setup_data(void) {
    if (dir[0]) return;
    snprintf(dir, sizeof dir, "%s/cli", testutil_tmpdir());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    write_idx("train-img", "train-lbl", TRAIN_N, 1, 0);
    /* every 6th test label wrong: a perfect model scores 50/60, so accuracy is not trivially 1 */
    write_idx("test-img", "test-lbl", TEST_N, 2, 6);
    /* a training label of 12 at sample 33; another at sample 190 (in a 25% validation tail) */
    write_idx("x-img", "lbl12", TRAIN_N, 1, 0);
    unsigned char *b = malloc(8 + TRAIN_N);
    char p[700];
    snprintf(p, sizeof p, "%s/lbl12", dir);
    FILE *f = fopen(p, "rb");
    CU_ASSERT_EQUAL_FATAL(fread(b, 1, 8 + TRAIN_N, f), 8 + TRAIN_N);
    fclose(f);
    b[8 + 33] = 12;
    write_file("lbl12", b, 8 + TRAIN_N);
    b[8 + 33] = 0;
    b[8 + 190] = 12;
    write_file("lbl12-tail", b, 8 + TRAIN_N);
    free(b);
    /* truncated images: header for TRAIN_N, data for fewer */
    snprintf(p, sizeof p, "%s/train-img", dir);
    f = fopen(p, "rb");
    size_t cut = 16 + 100 * SIDE * SIDE + 7;
    unsigned char *im = malloc(cut);
    CU_ASSERT_EQUAL_FATAL(fread(im, 1, cut, f), cut);
    fclose(f);
    write_file("trunc-img", im, cut);
    free(im);
}

/* ---- jobs ---- */

static const char *MODEL = "[conv2d]\nfilters = 4\nkernel_size = 3\nactivation = relu\n"
                           "[flatten]\n"
                           "[dense]\nunits = 3\nactivation = softmax\n";
static const char *TRAIN = "[train]\nloss = sparse_categorical_crossentropy\nbatch_size = 16\n"
                           "epochs = 4\nlr = 0.005\n";

/* Write dir/name with [data] (10 lines, so layer sections start at line 11), then the model
 * and train text. Returns the path (static, rotated). */
static const char *job(const char *name, const char *model, const char *train) {
    setup_data();
    char text[8192];
    snprintf(text, sizeof text,
             "# test job\n"
             "[model]\n"
             "name = tiny\n"
             "[data]\n"
             "root = %s\n"
             "train_images = train-img\n"
             "train_labels = train-lbl\n"
             "test_images = test-img\n"
             "test_labels = test-lbl\n"
             "scale = 1/255\n"
             "%s%s",
             dir, model, train);
    static char paths[4][700];
    static int slot;
    char *p = paths[slot++ % 4];
    snprintf(p, 700, "%s", testutil_write_file(dir, name, text, strlen(text)));
    return p;
}

static int count(const char *s, const char *sub) {
    int n = 0;
    for (const char *p = strstr(s, sub); p; p = strstr(p + 1, sub)) n++;
    return n;
}

/* Run `convnet-dist ARGS`; returns status, *out is the output (caller frees). */
#define run testutil_run_bin

/* Status 2, exactly one "convnet-dist: " message containing every fragment, no training. */
static void expect_bad(int st, char *out, const char *const *frags) {
    CU_ASSERT_EQUAL(st, 2);
    CU_ASSERT_EQUAL(count(out, "convnet-dist: "), 1);
    LACKS(out, "Epoch");
    const char *msg = strstr(out, "convnet-dist: ");
    if (!msg) msg = out;
    const char *eol = strchr(msg, '\n');
    size_t len = eol ? (size_t)(eol - msg) : strlen(msg);
    char *line = strndup(msg, len);
    for (int i = 0; frags[i]; i++) {
        if (!strstr(line, frags[i])) printf("\n    message '%s' lacks '%s'\n", line, frags[i]);
        HAS(line, frags[i]);
    }
    if (st != 2) printf("\n    status %d, output:\n%s\n", st, out);
    free(line);
    free(out);
}

static char *data_path(const char *name) {
    static char p[4][700];
    static int slot;
    char *s = p[slot++ % 4];
    snprintf(s, sizeof p[0], "%s/%s", dir, name);
    return s;
}

/* ---- bad input ---- */

static void missing_idx(void) {
    const char *j = job("missing.job", MODEL, TRAIN);
    char *out;
    int st = run(&out, "train %s --set data.test_labels=no-such-labels", j);
    expect_bad(st, out, (const char *[]){data_path("no-such-labels"), NULL});
}

static void truncated_idx(void) {
    const char *j = job("trunc.job", MODEL, TRAIN);
    char *out;
    int st = run(&out, "train %s --set data.train_images=trunc-img", j);
    expect_bad(st, out, (const char *[]){data_path("trunc-img"), "truncated", NULL});
}

static void typo_key(void) {
    /* line 11 [conv2d], 12 filters, 13 the typo */
    const char *j = job("typo.job",
                        "[conv2d]\nfilters = 4\nkernal_size = 3\nkernel_size = 3\n[flatten]\n"
                        "[dense]\nunits = 3\nactivation = softmax\n",
                        TRAIN);
    char where[800];
    snprintf(where, sizeof where, "%s:13:", j);
    char *out;
    int st = run(&out, "train %s", j);
    expect_bad(st, out, (const char *[]){where, "kernal_size", NULL});
    /* the same from summary */
    st = run(&out, "summary %s", j);
    expect_bad(st, out, (const char *[]){where, "kernal_size", NULL});
}

static void unknown_section(void) {
    char model[512];
    snprintf(model, sizeof model, "%s[batchnorm]\n", MODEL); /* line 19 */
    const char *j = job("unksec.job", model, TRAIN);
    char where[800];
    snprintf(where, sizeof where, "%s:19:", j);
    char *out;
    int st = run(&out, "train %s", j);
    expect_bad(st, out, (const char *[]){where, "[batchnorm]", NULL});
}

static void impossible_shapes(void) {
    /* 5 conv layers of kernel 3 on 8x8: 6, 4, 2, then the 4th (conv2d_3, line 11 + 3*3 = 20)
     * cannot fit its window */
    char model[2048] = "";
    for (int i = 0; i < 5; i++) strcat(model, "[conv2d]\nfilters = 2\nkernel_size = 3\n");
    strcat(model, "[flatten]\n[dense]\nunits = 3\nactivation = softmax\n");
    const char *j = job("shrink.job", model, TRAIN);
    char *out;
    int st = run(&out, "train %s", j);
    expect_bad(st, out, (const char *[]){j, "conv2d_3", "shrink.job:20", NULL});
    st = run(&out, "summary %s", j);
    expect_bad(st, out, (const char *[]){j, "conv2d_3", "shrink.job:20", NULL});

    /* pooling: 8 -> 4 -> 2 -> 1, the 4th pool (max_pooling2d_3, line 14) has nothing to pool */
    j = job("pool.job",
            "[maxpooling2d]\n[maxpooling2d]\n[maxpooling2d]\n[maxpooling2d]\n"
            "[flatten]\n[dense]\nunits = 3\nactivation = softmax\n",
            TRAIN);
    st = run(&out, "train %s", j);
    expect_bad(st, out, (const char *[]){j, "max_pooling2d_3", "pool.job:14", NULL});

    /* Conv2D after Flatten (conv2d at line 12) */
    j = job("flat.job",
            "[flatten]\n[conv2d]\nfilters = 2\nkernel_size = 3\n"
            "[flatten]\n[dense]\nunits = 3\nactivation = softmax\n",
            TRAIN);
    st = run(&out, "train %s", j);
    expect_bad(st, out, (const char *[]){j, "conv2d", "flat.job:12", "Flatten", NULL});
}

static void label_outside_classes(void) {
    const char *model10 = "[conv2d]\nfilters = 4\nkernel_size = 3\nactivation = relu\n"
                          "[flatten]\n[dense]\nunits = 10\nactivation = softmax\n";
    const char *j = job("lbl.job", model10, TRAIN);
    char *out;
    int st = run(&out, "train %s --set data.train_labels=lbl12", j);
    expect_bad(st, out, (const char *[]){data_path("lbl12"), "label 12", "sample 33", NULL});
}

/* A bad label in the part of the training file that validation_split moves into the
 * validation set: the message must still give the sample's index in the labels file (190),
 * not its index within the validation split (190 - 144 = 46). */
static void label_outside_classes_in_validation_split(void) {
    const char *model10 = "[conv2d]\nfilters = 4\nkernel_size = 3\nactivation = relu\n"
                          "[flatten]\n[dense]\nunits = 10\nactivation = softmax\n";
    const char *j = job("lblval.job", model10, TRAIN);
    char *out;
    int st = run(
        &out, "train %s --set data.train_labels=lbl12-tail --set train.validation_split=0.25", j);
    expect_bad(st, out, (const char *[]){data_path("lbl12-tail"), "label 12", "sample 190", NULL});
}

static void bad_command_lines(void) {
    const char *j = job("cl.job", MODEL, TRAIN);
    char *out;
    int st = run(&out, "train %s --epochs 3", j);
    expect_bad(st, out, (const char *[]){"unknown option", "--epochs", NULL});
    st = run(&out, "frobnicate %s", j);
    expect_bad(st, out, (const char *[]){"unknown command", "frobnicate", NULL});
    st = run(&out, "train %s --set", j);
    expect_bad(st, out, (const char *[]){"--set", NULL});
    st = run(&out, "train");
    expect_bad(st, out, (const char *[]){"JOB", NULL});
    st = run(&out, "train %s", data_path("no-such.job"));
    expect_bad(st, out, (const char *[]){data_path("no-such.job"), NULL});
    st = run(&out, "train %s --set train.epochs=abc", j);
    expect_bad(st, out, (const char *[]){"--set train.epochs", "abc", NULL});
    st = run(&out, "train %s --set nosuch.key=1", j);
    expect_bad(st, out, (const char *[]){"nosuch", NULL});
    st = run(&out, "train %s --set train.epochs", j);
    expect_bad(st, out, (const char *[]){"train.epochs", NULL});
    st = run(&out, "train %s --set conv2d_1.filters=3", j);
    expect_bad(st, out, (const char *[]){"conv2d_1", NULL});
    st = run(&out, "eval %s", j);
    expect_bad(st, out, (const char *[]){"--weights", NULL});
    /* a bad --split is reported before the data are read: the missing labels file is not */
    st = run(&out, "eval %s --weights w.bin --split tset --set data.test_labels=no-such-labels", j);
    expect_bad(st, out, (const char *[]){"--split", "'tset'", NULL});
}

/* ---- positive runs ---- */

static void summary_total_params(void) {
    /* conv(4, 3x3) -> pool 2 -> conv(6, 2x2) -> flatten -> dense 3 on 8x8x1 */
    const int f1 = 4, k1 = 3, f2 = 6, k2 = 2, units = 3;
    const char *j = job("sum.job",
                        "[conv2d]\nfilters = 4\nkernel_size = 3\nactivation = relu\n"
                        "[maxpooling2d]\n"
                        "[conv2d]\nfilters = 6\nkernel_size = 2\nactivation = relu\n"
                        "[flatten]\n[dense]\nunits = 3\nactivation = softmax\n",
                        TRAIN);
    int h1 = SIDE - k1 + 1, h2 = h1 / 2, h3 = h2 - k2 + 1;
    long p1 = (long)k1 * k1 * 1 * f1 + f1, p2 = (long)k2 * k2 * f1 * f2 + f2;
    long p3 = (long)h3 * h3 * f2 * units + units;
    char *out;
    int st = run(&out, "summary %s", j);
    CU_ASSERT_EQUAL(st, 0);
    char want[128];
    snprintf(want, sizeof want, "Total params: %ld ", p1 + p2 + p3);
    HAS(out, want);
    snprintf(want, sizeof want, "Trainable params: %ld\n", p1 + p2 + p3);
    HAS(out, want);
    HAS(out, "Model: \"tiny\"");
    HAS(out, "conv2d_1 (Conv2D)");
    snprintf(want, sizeof want, "(None, %d, %d, %d)", h3, h3, f2);
    HAS(out, want);
    snprintf(want, sizeof want, "(None, %d)", h3 * h3 * f2);
    HAS(out, want);
    LACKS(out, "Epoch");
    if (st) printf("\n%s\n", out);
    free(out);
}

static int read_steps(const char *path, double *loss, int cap) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0;
    long step;
    int epoch;
    double l;
    while (n < cap && fscanf(f, "%ld %d %lf", &step, &epoch, &l) == 3) {
        if (step != n + 1) {
            fclose(f);
            return -2;
        }
        loss[n++] = l;
    }
    fclose(f);
    return n;
}


/* the "test: ..." line of an output, malloc'd */
static char *test_line(const char *out) {
    const char *p = strncmp(out, "test: ", 6) == 0 ? out : strstr(out, "\ntest: ");
    if (!p) return strdup("(none)");
    if (*p == '\n') p++;
    const char *e = strchr(p, '\n');
    return strndup(p, e ? (size_t)(e - p) : strlen(p));
}

static void train_eval_diff(void) {
    const char *j = job("train.job", MODEL, TRAIN);
    char jp[700];
    snprintf(jp, sizeof jp, "%s", j);
    const char *steplog = data_path("steps.log");
    char w1[700], w2[700];
    snprintf(w1, sizeof w1, "%s", data_path("w1.bin"));
    snprintf(w2, sizeof w2, "%s", data_path("w2.bin"));
    char *out;
    int st = run(&out, "train %s --set train.step_log=%s --save %s", jp, steplog, w1);
    CU_ASSERT_EQUAL_FATAL(st, 0);
    HAS(out, "Epoch 4/4");
    char *train_test = test_line(out);
    free(out);

    /* the loss falls: 4 epochs of ceil(192/16) steps */
    const int steps = 4 * ((TRAIN_N + 15) / 16);
    double loss[256];
    int n = read_steps(steplog, loss, 256);
    CU_ASSERT_EQUAL_FATAL(n, steps);
    double first = 0, last = 0;
    for (int i = 0; i < 5; i++) {
        first += loss[i] / 5;
        last += loss[n - 1 - i] / 5;
    }
    CU_ASSERT(first > 0.5); /* 3 classes from scratch: about ln 3 */
    CU_ASSERT(last < 0.7 * first);
    if (!(last < 0.7 * first)) printf("\n    loss first %.4f last %.4f\n", first, last);

    /* the weights file: header 32 bytes + 4 per parameter + CRC */
    const long n_params = (3 * 3 * 1 * 4 + 4) + ((SIDE - 2) * (SIDE - 2) * 4 * 3 + 3);
    CU_ASSERT_EQUAL(testutil_file_size(w1), 32 + 4 * n_params + 4);

    /* eval on the saved weights reproduces training's test line */
    st = run(&out, "eval %s --weights %s", jp, w1);
    CU_ASSERT_EQUAL(st, 0);
    char *eval_test = test_line(out);
    CU_ASSERT_STRING_EQUAL(eval_test, train_test);
    char want[64];
    snprintf(want, sizeof want, "test: %d samples", TEST_N);
    HAS(eval_test, want);
    /* a perfect model gets 50 of 60 (every 6th label is wrong): accuracy in [0.5, 0.8334] */
    const char *acc = strstr(eval_test, "accuracy: ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(acc);
    double a = atof(acc + 10);
    CU_ASSERT(a >= 0.5 && a <= 50.0 / 60.0 + 1e-4);
    LACKS(out, "Epoch");
    free(out);
    free(eval_test);
    free(train_test);

    /* diff-weights: identical with itself; another seed differs */
    st = run(&out, "diff-weights %s %s", w1, w1);
    CU_ASSERT_EQUAL(st, 0);
    snprintf(want, sizeof want, "%ld parameters, %ld bitwise identical", n_params, n_params);
    HAS(out, want);
    free(out);
    st = run(&out, "train %s --set train.seed=2 --set train.epochs=1 --save %s", jp, w2);
    CU_ASSERT_EQUAL_FATAL(st, 0);
    free(out);
    st = run(&out, "diff-weights %s %s", w1, w2);
    CU_ASSERT_EQUAL(st, 1);
    free(out);
}

/* eval given broken weights files, or another model's: exit 2 naming the file; diff-weights of
 * two models. The weights are the initial ones (epochs = 0 saves them without training). */
static void eval_bad_weights(void) {
    const char *j = job("evalbad.job", MODEL, TRAIN);
    char jp[700], w1[700], w3[700];
    snprintf(jp, sizeof jp, "%s", j);
    snprintf(w1, sizeof w1, "%s", data_path("init4.bin"));
    snprintf(w3, sizeof w3, "%s", data_path("init5.bin"));
    char *out;
    int st = run(&out, "train %s --set train.epochs=0 --save %s", jp, w1);
    CU_ASSERT_EQUAL_FATAL(st, 0);
    free(out);

    /* broken weights files passed to eval */
    long sz = testutil_file_size(w1);
    unsigned char *b = malloc((size_t)sz);
    FILE *f = fopen(w1, "rb");
    CU_ASSERT_EQUAL_FATAL(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    b[100] ^= 0x10; /* a parameter byte */
    const char *flip = testutil_write_file(dir, "flip.bin", b, (size_t)sz);
    st = run(&out, "eval %s --weights %s", jp, flip);
    expect_bad(st, out, (const char *[]){flip, "checksum", NULL});
    b[100] ^= 0x10;
    const char *cut = testutil_write_file(dir, "cut.bin", b, (size_t)sz - 9);
    st = run(&out, "eval %s --weights %s", jp, cut);
    expect_bad(st, out, (const char *[]){cut, "truncated", NULL});
    const char *hdr = testutil_write_file(dir, "hdr.bin", b, 20);
    st = run(&out, "eval %s --weights %s", jp, hdr);
    expect_bad(st, out, (const char *[]){hdr, "truncated", NULL});
    free(b);
    const char *nowt = data_path("no-such-weights.bin");
    st = run(&out, "eval %s --weights %s", jp, nowt);
    expect_bad(st, out, (const char *[]){nowt, NULL});
    /* the job file itself is not a weights file */
    st = run(&out, "eval %s --weights %s", jp, jp);
    expect_bad(st, out, (const char *[]){jp, "magic", NULL});

    /* weights of another model: 5 filters instead of 4 */
    st = run(&out, "train %s --set conv2d.filters=5 --set train.epochs=0 --save %s", jp, w3);
    CU_ASSERT_EQUAL_FATAL(st, 0);
    free(out);
    st = run(&out, "eval %s --weights %s", jp, w3);
    expect_bad(st, out, (const char *[]){w3, "another model", NULL});
    /* and the other way round: this job with 5 filters given the 4-filter weights */
    st = run(&out, "eval %s --set conv2d.filters=5 --weights %s", jp, w1);
    expect_bad(st, out, (const char *[]){w1, "another model", NULL});
    /* diff-weights between different parameter counts is not "identical" */
    st = run(&out, "diff-weights %s %s", w1, w3);
    CU_ASSERT_NOT_EQUAL(st, 0);
    free(out);
}

TEST_SUITE(cli, {"missing IDX file", missing_idx}, {"truncated IDX file", truncated_idx},
           {"typo'd key names file:line", typo_key}, {"unknown section", unknown_section},
           {"impossible shapes", impossible_shapes},
           {"label outside the class count", label_outside_classes},
           {"label outside the class count in the validation_split tail",
            label_outside_classes_in_validation_split},
           {"bad command lines", bad_command_lines},
           {"summary: Total params", summary_total_params},
           {"train, eval, diff-weights", train_eval_diff},
           {"eval with broken or foreign weights files", eval_bad_weights})
