/* test_onnx.c: `convnet-dist export --format onnx` checked by independent runtimes from Debian
 * (tests/onnx_check.py): python3-onnx's checker accepts the file, and OpenCV's DNN module
 * (python3-opencv) running it gives `convnet-dist predict`'s class probabilities to 1e-4 on
 * the same JPEGs, for a small model and the book's models (MNIST, dogs-vs-cats, Tiny Darknet
 * features, fine-tuning and the ImageNet classifier) after a small training on 4 images; the
 * checker also runs on an export of every job in jobs/ (VGG16's with a stand-in Keras file,
 * the real one not being in ../shared/data). Missing Python packages or ../shared/data skip
 * (testutil_skip: counted; under CI=true a missing package is a failure, make deps installs
 * them). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

/* the shell commands below are built from paths of unknown length into large buffers */
#pragma GCC diagnostic ignored "-Wformat-truncation"

/* Run cmd; 77 (a package missing) counts a skip and gives 0; otherwise 1 with *st its status
 * and its output printed when it failed. */
static int run(const char *cmd, int *st, char **out) {
    char *o = NULL;
    *st = testutil_run(cmd, &o);
    if (*st == 77) {
        char *nl = strchr(o, '\n');
        if (nl) *nl = 0;
        testutil_skip("onnx (independent runtimes)", o, 1);
        free(o);
        return 0;
    }
    if (*st) printf("\n    command failed (%d): %s\n%s\n", *st, cmd, o);
    if (out)
        *out = o;
    else
        free(o);
    return 1;
}

/* One model: images at its input size into dir/img, train (extra_train: how few epochs; NULL:
 * no training, the job's initial weights), export, predict, compare in OpenCV. */
typedef struct {
    const char *job; /* under jobs/ */
    int h, w, gray;
    const char *images; /* onnx_check.py images arguments giving the sources */
    const char *train;  /* --set for a short training, NULL: the initial weights */
    int classes;        /* --top */
} BookModel;

static void check_model(const BookModel *b, const char *shared) {
    char cwd[PATH_MAX], dir[PATH_MAX + 64], cmd[16384], sets[8192], weights[PATH_MAX + 100];
    CU_ASSERT_FATAL(getcwd(cwd, sizeof cwd) != NULL);
    char sh[PATH_MAX];
    CU_ASSERT_FATAL(realpath(shared, sh) != NULL);
    snprintf(dir, sizeof dir, "%s/%s", testutil_tmpdir(), b->job);
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && /usr/bin/python3 %s/tests/onnx_check.py images --size %d,%d %s "
             "--out '%s/img' %s >/dev/null",
             dir, cwd, b->h, b->w, b->gray ? "--gray" : "", dir, b->images);
    int st;
    if (!run(cmd, &st, NULL)) return;
    CU_ASSERT_EQUAL_FATAL(st, 0);
    snprintf(sets, sizeof sets, "--set data.root=%s --set train.batch_size=2%s%s%s%s%s%s", sh,
             strstr(b->images, "--idx") ? "" : " --set data.train_dir=",
             strstr(b->images, "--idx") ? "" : dir,
             strstr(b->images, "--idx") ? "" : "/img --set data.test_dir=",
             strstr(b->images, "--idx") ? "" : dir, strstr(b->images, "--idx") ? "" : "/img", "");
    if (!strstr(b->images, "--idx") && strcmp(b->job, "tiny-darknet-imagenet")) {
        size_t n = strlen(sets);
        snprintf(sets + n, sizeof sets - n, " --set data.validation_dir=%s/img", dir);
    }
    weights[0] = 0;
    if (b->train) {
        snprintf(weights, sizeof weights, "--weights %s/w.weights", dir);
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && '%s' train '%s/jobs/%s.job' %s %s --save w.weights --no-resume", dir,
                 testutil_bin_abs(), cwd, b->job, sets, b->train);
        CU_ASSERT_EQUAL(run(cmd, &st, NULL) && st == 0, 1);
    }
    snprintf(cmd, sizeof cmd,
             "cd '%s' && '%s' export '%s/jobs/%s.job' %s %s --format onnx --out m.onnx && "
             "'%s' predict '%s/jobs/%s.job' %s %s --top %d --json img/*/*.jpg > p.json && "
             "/usr/bin/python3 %s/tests/onnx_check.py check m.onnx && "
             "/usr/bin/python3 %s/tests/onnx_check.py compare m.onnx p.json %s img/*/*.jpg",
             dir, testutil_bin_abs(), cwd, b->job, sets, weights, testutil_bin_abs(), cwd, b->job,
             sets, weights, b->classes, cwd, cwd, b->gray ? "--gray" : "");
    char *out = NULL;
    if (!run(cmd, &st, &out)) return;
    CU_ASSERT_EQUAL(st, 0);
    const char *line = out ? strstr(out, "OpenCV DNN vs") : NULL;
    CU_ASSERT_PTR_NOT_NULL(line);
    if (line) {
        const char *end = strchr(line, '\n');
        printf("\n    %s: %.*s", b->job, end ? (int)(end - line) : (int)strlen(line), line);
    }
    free(out);
}

/* 1 when the binary can export ONNX (else a counted skip). */
static int have_onnx(void) {
#if CONVNET_ONNX
    return 1;
#else
    testutil_skip("onnx", "built with ONNX=0", 0);
    return 0;
#endif
}

/* A small model, no shared data needed: noise images; layers: the model's sections; tag: an ONNX
 * operator its export must hold. Trained 2 epochs, exported, and OpenCV's output compared with
 * predict's. */
static void check_small(const char *name, const char *layers, const char *tag) {
    if (!have_onnx()) return;
    const char *dir = testutil_tmpdir();
    char text[4096], cmd[8192], cwd[PATH_MAX];
    CU_ASSERT_FATAL(getcwd(cwd, sizeof cwd) != NULL);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 tests/onnx_check.py images --size 16,16 --random 6 --out '%s/small' "
             ">/dev/null",
             dir);
    int st;
    if (!run(cmd, &st, NULL)) return;
    CU_ASSERT_EQUAL_FATAL(st, 0);
    snprintf(
        text, sizeof text,
        "[data]\nformat = images\ntrain_dir = %s/small\ntest_dir = %s/small\nimage_size = 16,16\n"
        "color_mode = rgb\nscale = 1/127.5\noffset = -1\n%s"
        "[train]\nloss = sparse_categorical_crossentropy\n",
        dir, dir, layers);
    char jname[64];
    snprintf(jname, sizeof jname, "%s.job", name);
    const char *job = testutil_write_file(dir, jname, text, strlen(text));
    snprintf(cmd, sizeof cmd,
             "cd '%s' && '%s' train '%s' --set train.epochs=2 --set train.batch_size=3 --save "
             "s.weights >/dev/null && "
             "'%s' export '%s' --weights s.weights --format onnx --out s.onnx && "
             "'%s' predict '%s' --weights s.weights --top 2 --json small/*/*.jpg > s.json && "
             "/usr/bin/python3 %s/tests/onnx_check.py check s.onnx && "
             "/usr/bin/python3 %s/tests/onnx_check.py compare s.onnx s.json small/*/*.jpg",
             dir, testutil_bin_abs(), job, testutil_bin_abs(), job, testutil_bin_abs(), job, cwd,
             cwd);
    char *out = NULL;
    if (!run(cmd, &st, &out)) return;
    CU_ASSERT_EQUAL(st, 0);
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "OpenCV DNN vs convnet-dist predict"));
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, tag));
    if (st || !out || !strstr(out, tag)) printf("\n    %s:\n%s\n", name, out ? out : "");
    free(out);
}

static void small_model(void) {
    check_small(
        "small",
        "[rescaling]\nscale = 2\noffset = 0.5\n[random_flip]\nmode = horizontal\n"
        "[conv2d]\nfilters = 5\nkernel_size = 3\npadding = same\nstrides = 2\nactivation = leaky\n"
        "[maxpooling2d]\npool_size = 3\nstrides = 2\npadding = same\n"
        "[conv2d]\nfilters = 4\nkernel_size = 1\nactivation = relu\n"
        "[flatten]\n[dropout]\nrate = 0.3\n[dense]\nunits = 6\nactivation = sigmoid\nuse_bias = "
        "false\n"
        "[dense]\nunits = 2\nactivation = softmax\n",
        "LeakyRelu");
    if (!have_onnx()) return;
    const char *dir = testutil_tmpdir();
    char cmd[8192];
    char *out = NULL;
    /* a damaged weights argument: bad input, no file written */
    snprintf(cmd, sizeof cmd,
             "cd '%s' && '%s' export small.job --weights small.job --format onnx --out bad.onnx; "
             "echo rc=$?; ls bad.onnx* 2>&1",
             dir, testutil_bin_abs());
    testutil_run(cmd, &out);
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "rc=2"));
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "No such file"));
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' export '%s/small.job' --format tflite --out x", testutil_bin(),
             dir);
    CU_ASSERT_EQUAL(testutil_run(cmd, &out), 2);
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "expected keras2"));
    free(out);
}

/* A graph with BatchNormalization, separable and depthwise convolutions and an Add. */
static void small_graph_model(void) {
    check_small("small-graph",
                "[conv2d]\nfilters = 4\nkernel_size = 3\npadding = same\n"
                "[batch_normalization]\n[activation]\nactivation = relu\n"
                "[separable_conv2d]\nfilters = 4\nkernel_size = 3\npadding = same\n"
                "[add]\ninputs = conv2d, separable_conv2d\n"
                "[maxpooling2d]\npool_size = 3\nstrides = 2\npadding = same\n"
                "[depthwise_conv2d]\nkernel_size = 3\nactivation = relu\n[batch_normalization]\n"
                "[global_average_pooling2d]\n[dense]\nunits = 2\nactivation = softmax\n",
                "BatchNormalization");
}

static void book_models(void) {
    if (!have_onnx()) return;
    const char *shared = testutil_shared_data("onnx book models");
    if (!shared) return;
    char dc[2048], idx[1024];
    snprintf(dc, sizeof dc,
             "$(ls %s/dogs-vs-cats-small/test/cats/*.jpg | head -2) $(ls "
             "%s/dogs-vs-cats-small/test/dogs/*.jpg | head -2)",
             shared, shared);
    snprintf(idx, sizeof idx, "--idx %s/mnist/t10k-images-idx3-ubyte.gz --count 6", shared);
    const BookModel models[] = {
        {"mnist-digits", 28, 28, 1, idx,
         "--set train.epochs=1 --set train.steps_per_epoch=20 --set train.batch_size=32", 10},
        {"dogs-vs-cats-scratch", 180, 180, 0, dc, "--set train.epochs=1", 2},
        {"dogs-vs-cats-augment", 180, 180, 0, dc, "--set train.epochs=1", 2},
        {"tiny-darknet-features", 224, 224, 0, dc, "--set train.epochs=1 --set train.lr=1e-6", 2},
        {"tiny-darknet-finetune", 224, 224, 0, dc,
         "--set phase.epochs=1 --set phase.lr=1e-6 --set phase_1.epochs=1 --set phase_1.lr=1e-6 "
         "--set train.seed=3",
         2},
        {"tiny-darknet-imagenet", 224, 224, 0, dc, NULL, 1000},
    };
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) check_model(&models[i], shared);
}

/* The checker on an export of every job in jobs/, with its initial weights. */
static void every_job(void) {
    if (!have_onnx()) return;
    const char *shared = testutil_shared_data("onnx: every job in jobs/");
    if (!shared) return;
    const char *dir = testutil_tmpdir();
    char cmd[16384], sh[PATH_MAX];
    CU_ASSERT_FATAL(realpath(shared, sh) != NULL);
    /* VGG16's Keras file is not in the shared data: a stand-in with block1_conv1 only (the other
     * layers keep their initialisation); the graph is the same */
    snprintf(
        cmd, sizeof cmd,
        "/usr/bin/python3 tests/keras_h5_tool.py write block1_conv1:conv2d:3x3x3x64:b %s/vgg.h5 "
        "%s/vgg3.weights.h5 1 && "
        "/usr/bin/python3 tests/onnx_check.py images --size 8,8 --random 2 --out %s/any >/dev/null",
        dir, dir, dir);
    int st;
    if (!run(cmd, &st, NULL)) return;
    CU_ASSERT_EQUAL_FATAL(st, 0);
    snprintf(cmd, sizeof cmd,
             "set -e; files=''; for j in jobs/*.job; do n=$(basename $j .job); extra=''; "
             "if grep -q '^.keras_h5.' $j; then extra=\"--set keras_h5.file=%s/vgg.h5\"; fi; "
             "if ! grep -q '^root' $j; then extra=\"$extra --set data.root=%s\"; fi; "
             "if grep -q '^format = images' $j; then extra=\"$extra --set data.train_dir=%s/any "
             "--set data.test_dir=%s/any\"; fi; "
             "if grep -q '^validation_dir' $j; then extra=\"$extra --set "
             "data.validation_dir=%s/any\"; fi; "
             "'%s' export $j --set train.batch_size=1 $extra --format onnx --out %s/$n.onnx 2>&1 | "
             "grep -v 'note: no --weights' || true; "
             "files=\"$files %s/$n.onnx\"; done; /usr/bin/python3 tests/onnx_check.py check $files",
             dir, sh, dir, dir, dir, testutil_bin(), dir, dir);
    char *out = NULL;
    if (!run(cmd, &st, &out)) return;
    CU_ASSERT_EQUAL(st, 0);
    int valid = 0;
    for (const char *p = out; p && (p = strstr(p, ": valid, opset 13")); p++) valid++;
    char ls[4096];
    snprintf(ls, sizeof ls, "ls jobs/*.job | wc -l");
    char *n = NULL;
    testutil_run(ls, &n);
    CU_ASSERT_EQUAL(valid, n ? atoi(n) : -1);
    printf("\n    onnx checker: %d of %d jobs in jobs/ valid", valid, n ? atoi(n) : -1);
    if (st == 0 && out) printf("\n%s", out);
    free(n);
    free(out);
}

TEST_SUITE(onnx, {"a small model: checker, OpenCV == predict, bad input", small_model},
           {"a small graph with BN, separable, depthwise, add: OpenCV == predict",
            small_graph_model},
           {"the book's models: OpenCV == predict to 1e-4", book_models},
           {"the checker accepts an export of every job in jobs/", every_job})
