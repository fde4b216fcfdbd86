/* test_checks.c: issue 35's input checks: a message is never cut before its reason (err_set
 * keeps its end, err_quote shortens a long value in the middle with its length); train refuses
 * a class_names file that is missing or short; a failed train leaves no empty run directory; a
 * corrupt gzip IDX file is named by its path; [train] conv_algorithm reaches SeparableConv2D. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common.h"
#include "data.h"
#include "job.h"
#include "testutil.h"

static const char *idx_dir;

/* A small IDX job in the shared small data set, `model` and `extra` appended. */
static const char *job_file(const char *name, const char *model, const char *extra) {
    if (!idx_dir) idx_dir = testutil_small_idx_dir("ck", 35);
    size_t cap = strlen(model) + strlen(extra) + 4096;
    char *text = malloc(cap);
    CU_ASSERT_FATAL(text != NULL);
    snprintf(text, cap,
             "%s[data]\nroot = %s\ntrain_images = ck-train-images.idx\n"
             "train_labels = ck-train-labels.idx\ntest_images = ck-test-images.idx\n"
             "test_labels = ck-test-labels.idx\nscale = 1/255\n%s"
             "[conv2d]\nfilters = 2\nkernel_size = 3\n[flatten]\n[dense]\nunits = 3\n"
             "activation = softmax\n[train]\nloss = sparse_categorical_crossentropy\n"
             "batch_size = 16\nepochs = 1\n",
             model, idx_dir, extra);
    const char *path = testutil_write_file(idx_dir, name, text, strlen(text));
    free(text);
    return path;
}

/* `cd idx_dir && CONVNET_RUNS=runs BIN train JOB`: its status and output. */
static int train(const char *job, char **out) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd '%s' && CONVNET_RUNS=runs OMP_NUM_THREADS=1 '%s' train '%s'",
             idx_dir, testutil_bin_abs(), job);
    return testutil_run(cmd, out);
}

static int ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), k = strlen(tail);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ')) n--;
    int ok = n >= k && !memcmp(s + n - k, tail, k);
    if (!ok)
        printf("\n    expected the message to end with '%s':\n%.600s ...\n", tail,
               s + (n > 600 ? n - 600 : 0));
    return ok;
}

/* ---------------------------------------------------------------- messages */

static void long_messages_keep_their_reason(void) {
    size_t n = 102400;
    char *v = malloc(n + 1);
    CU_ASSERT_FATAL(v != NULL);
    memset(v, 'a', n);
    v[n] = 0;
    char q[ERR_QUOTE_MAX];
    err_quote(v, q, sizeof q);
    HAS(q, "(102400 bytes)");
    HAS(q, "a\u2026a");
    CU_ASSERT(strlen(q) < sizeof q);
    CU_ASSERT_STRING_EQUAL(err_quote("short", q, sizeof q), "'short'");
    /* an unshortened value: the start and the end (the reason) are kept */
    Err e = {0};
    err_set(&e, "job.ini: value '%s' is bad: the reason", v);
    CU_ASSERT(ends_with(e.msg, "is bad: the reason"));
    HAS(e.msg, "job.ini: value 'aaa");
    HAS(e.msg, "bytes cut");
    CU_ASSERT(strlen(e.msg) < sizeof e.msg);
    free(v);
}

/* A 100 KB [model] name: refused (no directory can be named after it), the message ending
 * with why and what to do. */
static void long_job_name_message(void) {
    size_t n = 102400;
    char *model = malloc(n + 32);
    CU_ASSERT_FATAL(model != NULL);
    memcpy(model, "[model]\nname = ", 15);
    memset(model + 15, 'a', n);
    strcpy(model + 15 + n, "\n");
    const char *job = job_file("ck-longname.job", model, "");
    free(model);
    char *out = NULL;
    CU_ASSERT_EQUAL(train(job, &out), 2);
    HAS(out, "(102400 bytes)");
    CU_ASSERT(ends_with(out, "set [model] name or [checkpoint] path"));
    free(out);
}

/* ---------------------------------------------------------------- class_names */

static void class_names_checked_by_train(void) {
    char *out = NULL;
    /* missing: refused before the data are read (the images do not exist either) */
    const char *job = job_file("ck-nocn.job", "", "class_names = no-such-names.txt\n");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "sed -i 's/^train_images = .*/train_images = absent.idx/' '%s'", job);
    CU_ASSERT_EQUAL(testutil_run(cmd, NULL), 0);
    CU_ASSERT_EQUAL(train(job, &out), 2);
    HAS(out, "no-such-names.txt");
    HAS(out, "class_names");
    CU_ASSERT(strstr(out, "absent.idx") == NULL);
    free(out);
    /* short: two names for three classes */
    testutil_write_file(idx_dir, "ck-two.txt", "zero\none\n", 9);
    job = job_file("ck-shortcn.job", "", "class_names = ck-two.txt\n");
    CU_ASSERT_EQUAL(train(job, &out), 2);
    HAS(out, "ck-two.txt has 2 lines, the model has 3 classes");
    free(out);
    /* enough: trains */
    testutil_write_file(idx_dir, "ck-three.txt", "zero\none\ntwo\n", 14);
    job = job_file("ck-okcn.job", "", "class_names = ck-three.txt\n");
    CU_ASSERT_EQUAL(train(job, &out), 0);
    free(out);
}

/* ---------------------------------------------------------------- run directory */

static void failed_train_leaves_no_run_dir(void) {
    char *out = NULL;
    /* refused once the data are read (the directory made and checked at start-up), and once
     * the plan is known */
    const char *job = job_file("ck-failrun.job", "[model]\nname = ck-failrun\n", "");
    testutil_write_file(idx_dir, "ck-bad.idx", "not an IDX file!", 16);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "sed -i 's/^train_images = .*/train_images = ck-bad.idx/' '%s'", job);
    CU_ASSERT_EQUAL(testutil_run(cmd, NULL), 0);
    CU_ASSERT_EQUAL(train(job, &out), 2);
    HAS(out, "ck-bad.idx: bad IDX magic");
    free(out);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/runs/ck-failrun", idx_dir);
    struct stat st;
    CU_ASSERT(stat(dir, &st) != 0);
    testutil_write_file(idx_dir, "ck-one.txt", "zero\n", 5);
    job = job_file("ck-failrun2.job", "[model]\nname = ck-failrun2\n",
                   "class_names = ck-one.txt\n");
    CU_ASSERT_EQUAL(train(job, &out), 2);
    free(out);
    snprintf(dir, sizeof dir, "%s/runs/ck-failrun2", idx_dir);
    if (stat(dir, &st) == 0) printf("\n    %s was left behind\n", dir);
    CU_ASSERT(stat(dir, &st) != 0);
}

/* ---------------------------------------------------------------- gzip IDX */

static void corrupt_gzip_named_by_path(void) {
    const char *dir = testutil_tmpdir();
    /* a gzip'd IDX of 64 images whose deflate data are then overwritten */
    unsigned char idx[16 + 64 * 28 * 28];
    memset(idx, 0, sizeof idx);
    const unsigned char head[16] = {0, 0, 8, 3, 0, 0, 0, 64, 0, 0, 0, 28, 0, 0, 0, 28};
    memcpy(idx, head, sizeof head);
    for (size_t i = 16; i < sizeof idx; i++) idx[i] = (unsigned char)(i * 7919u >> 3);
    char path[1024], labels[1024];
    snprintf(path, sizeof path, "%s/corrupt-images.idx.gz", dir);
    gzFile g = gzopen(path, "wb");
    CU_ASSERT_FATAL(g != NULL);
    gzwrite(g, idx, sizeof idx);
    gzclose(g);
    FILE *f = fopen(path, "r+b");
    CU_ASSERT_FATAL(f != NULL);
    fseek(f, 40, SEEK_SET);
    for (int i = 0; i < 64; i++) fputc(0xff, f);
    fclose(f);
    unsigned char lab[8 + 64] = {0, 0, 8, 1, 0, 0, 0, 64};
    snprintf(labels, sizeof labels, "%s",
             testutil_write_file(dir, "corrupt-labels.idx", lab, sizeof lab));
    Dataset d;
    Err e = {0};
    CU_ASSERT_EQUAL(idx_load(&d, path, labels, &e), -1);
    HAS(e.msg, path);
    CU_ASSERT(strstr(e.msg, "<fd:") == NULL);
    if (strstr(e.msg, "<fd:")) printf("\n    %s\n", e.msg);
}

/* ---------------------------------------------------------------- conv_algorithm */

static void conv_algorithm_reaches_separable(void) {
    const char *job = job_file("ck-sep.job", "", "");
    /* the job's layers, with a SeparableConv2D first and [train] conv_algorithm = im2col */
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "sed -i 's/^\\[conv2d\\]$/[separable_conv2d]\\nname = sep\\nfilters = 2\\nkernel_size "
             "= 3\\n[conv2d]/; "
             "s/^epochs = 1$/epochs = 1\\nconv_algorithm = im2col/' '%s'",
             job);
    CU_ASSERT_EQUAL(testutil_run(cmd, NULL), 0);
    Job j;
    Err e = {0};
    int rc = job_load(&j, job, NULL, 0, &e);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_FATAL(rc == 0);
    int seen = 0;
    for (int l = 0; l < j.n_layers; l++)
        if (j.layers[l].kind == LAYER_SEPARABLE_CONV2D) {
            CU_ASSERT_EQUAL(j.layers[l].conv_algo, CONV_ALGO_IM2COL);
            seen++;
        }
    CU_ASSERT_EQUAL(seen, 1);
    job_free(&j);
    /* the summary shows it on the layer */
    char *out = NULL;
    CU_ASSERT_EQUAL(testutil_run_bin(&out, "summary '%s'", job), 0);
    const char *algos = out ? strstr(out, "Convolution algorithms") : NULL;
    const char *line = algos ? strstr(algos, " sep ") : NULL;
    CU_ASSERT_PTR_NOT_NULL(line);
    if (line) {
        const char *eol = strchr(line, '\n');
        int n = eol ? (int)(eol - line) : (int)strlen(line);
        char buf[512];
        snprintf(buf, sizeof buf, "%.*s", n, line);
        HAS(buf, "im2col");
    }
    free(out);
}

TEST_SUITE(checks,
           {"a long value is shortened in the middle, the reason kept",
            long_messages_keep_their_reason},
           {"a 100 KB [model] name: the message ends with its reason", long_job_name_message},
           {"class_names missing or short: train refuses (exit 2)", class_names_checked_by_train},
           {"a failed train leaves no empty run directory", failed_train_leaves_no_run_dir},
           {"a corrupt gzip IDX file is named by its path", corrupt_gzip_named_by_path},
           {"[train] conv_algorithm reaches SeparableConv2D", conv_algorithm_reaches_separable})
