/* test_hardening_cli.c: issue 16's regression tests through the command line (output paths
 * checked before training, the plan's memory explained, --index 0, diff-weights of files of
 * different sizes, --weights naming a directory) and the reader run in a child process
 * (isolate.c) that contains what libhdf5 does with a damaged file. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isolate.h"
#include "keras_h5.h"
#include "test_hardening.h"
#include "testutil.h"
#include "weights.h"

/* ---------------------------------------------------------------- isolation */

static int child_fills(void *ctx, void *buf, Err *e) {
    memset(buf, 7, 16);
    return 0;
}

static int child_crashes(void *ctx, void *buf, Err *e) {
    memset(buf, 9, 16);
    *(volatile int *)ctx = 1; /* a wild write: SIGSEGV (ctx is NULL) */
    return 0;
}

static int child_refuses(void *ctx, void *buf, Err *e) {
    memset(buf, 5, 16);
    err_set(e, "refused: %s", (const char *)ctx);
    return -1;
}

/* A reader run by isolate_run(): its buffer comes back only on success; a crash is an error
 * message and leaves the caller's buffer and process as they were. */
static void isolated_reader(void) {
    unsigned char out[16];
    memset(out, 1, sizeof out);
    Err e = {0};
    IsolateOpts x = {.what = "x.h5"}, bad = {.what = "bad.h5"}, r = {.what = "r.h5"};
    CU_ASSERT_EQUAL(isolate_run(child_fills, NULL, out, sizeof out, &x, &e), 0);
    CU_ASSERT_EQUAL(x.ended, ISOLATE_OK);
    CU_ASSERT_EQUAL(out[15], 7);
    memset(out, 1, sizeof out);
    Err e2 = {0};
    CU_ASSERT_EQUAL(isolate_run(child_crashes, NULL, out, sizeof out, &bad, &e2), -1);
    /* signal 11; under ASan the child's report of the SEGV is stopped by the sandbox (write) */
    HAS(e2.msg, "bad.h5: the reader ");
    HAS(e2.msg, "damaged");
    CU_ASSERT(bad.ended == ISOLATE_CRASHED || bad.ended == ISOLATE_SANDBOX);
    CU_ASSERT_EQUAL(out[0], 1);
    Err e3 = {0};
    CU_ASSERT_EQUAL(isolate_run(child_refuses, "why", out, sizeof out, &r, &e3), -1);
    CU_ASSERT_EQUAL(r.ended, ISOLATE_REFUSED);
    HAS(e3.msg, "refused: why");
    CU_ASSERT_EQUAL(out[0], 1);
}

/* fuzz_h5's model (tests/fuzz/fuzz_h5.c): conv2d "conv" (2 filters, 1x1), flatten, dense
 * "dense" (2 units) on 2x2x1, whose layer and weight names the findings' files carry, so
 * that each one gets as far into libhdf5 as it did under the fuzzer. */
void hard_h5_model(Job *j, Model *m) {
    const char *dir = hard_subdir("h5fuzz");
    const char *text = "[data]\nroot = /nonexistent\ntrain_images = a\ntrain_labels = b\n"
                       "test_images = c\ntest_labels = d\n"
                       "[conv2d]\nname = conv\nfilters = 2\nkernel_size = 1\n[flatten]\n"
                       "[dense]\nname = dense\nunits = 2\nactivation = softmax\n"
                       "[train]\nloss = sparse_categorical_crossentropy\n";
    Err e = {0};
    int rc = job_load(j, testutil_write_file(dir, "h5fuzz.job", text, strlen(text)), NULL, 0, &e);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_FATAL(rc == 0);
    CU_ASSERT_FATAL(model_plan(m, j->layers, j->n_layers, (Shape){2, 2, 1, 0}, 1, &e) == 0);
    CU_ASSERT_FATAL(model_alloc(m, NULL) == 0);
    model_init_params(m, 1);
}

/* Every file on which fuzz_h5 found a memory error inside libhdf5 (tests/fuzz/findings/h5-*:
 * heap overflows decoding attributes (a use after free too, by heap state), NULL reads in dataset and local
 * heap reads, an object header whose size from the file is allocated as is): refused with
 * a message naming it, by a child process, whatever libhdf5 does with it, and the model's
 * parameters left as they were. */
static void libhdf5_findings_contained(void) {
    const char *dir = "tests/fuzz/findings";
    DIR *d = opendir(dir);
    if (!d) {
        printf("\n    SKIP: %s absent (run from the repository root)\n", dir);
        return;
    }
    Job j;
    Model m;
    hard_h5_model(&j, &m);
    size_t bytes = m.n_params * sizeof(float);
    float *keep = malloc(bytes);
    CU_ASSERT_FATAL(keep != NULL);
    memcpy(keep, m.params, bytes);
#ifdef __SANITIZE_ADDRESS__
    printf(
        "\n    (AddressSanitizer's reports of libhdf5's memory errors in the child processes are "
        "stopped by the sandbox: their write is the call it names)\n");
#endif
    int files = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        if (strncmp(ent->d_name, "h5-", 3) != 0) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        Err e = {0};
        int rc = keras_h5_load_weights(path, &m, &e);
        if (rc != -1 || !strstr(e.msg, path)) printf("\n    %s: rc %d: %s\n", path, rc, e.msg);
        CU_ASSERT_EQUAL(rc, -1);
        HAS(e.msg, path);
        CU_ASSERT(memcmp(keep, m.params, bytes) == 0);
        files++;
    }
    closedir(d);
    CU_ASSERT(files >= 6); /* one file per class of finding */
    free(keep);
    model_free(&m);
    job_free(&j);
}

/* ---------------------------------------------------------------- the command line */

#define run testutil_run_bin

/* An IDX job on testutil_small_idx_dir's data with `extra` appended to [train]. */
static const char *idx_job(const char *name, const char *model, const char *extra) {
    const char *dir = testutil_small_idx_dir("hard", 5);
    char text[4096];
    snprintf(text, sizeof text,
             "[data]\nroot = %s\ntrain_images = hard-train-images.idx\n"
             "train_labels = hard-train-labels.idx\ntest_images = hard-test-images.idx\n"
             "test_labels = hard-test-labels.idx\nscale = 1/255\n%s"
             "[train]\nloss = sparse_categorical_crossentropy\nepochs = 1\nbatch_size = 32\n%s",
             dir, model, extra);
    static char p[4][800];
    static int slot;
    char *r = p[slot++ % 4];
    snprintf(r, 800, "%s", testutil_write_file(dir, name, text, strlen(text)));
    return r;
}

static const char *DENSE = "[flatten]\n[dense]\nunits = 3\nactivation = softmax\n";

static void cli_outputs_checked_first(void) {
    char *out = NULL;
    const char *job = idx_job("out.job", DENSE, "");
    int rc = run(&out, "train '%s' --save /nonexistent-dir/w.weights", job);
    CU_ASSERT_EQUAL(rc, 2);
    HAS(out,
        "train.save (--save) = /nonexistent-dir/w.weights: folder /nonexistent-dir does not exist");
    CU_ASSERT_PTR_NULL(strstr(out, "Epoch"));
    free(out);
    char extra[1200];
    snprintf(extra, sizeof extra, "csv_log = %s\n", testutil_tmpdir());
    job = idx_job("csvdir.job", DENSE, extra);
    rc = run(&out, "train '%s'", job);
    CU_ASSERT_EQUAL(rc, 2);
    HAS(out, "train.csv_log");
    HAS(out, "is a directory");
    CU_ASSERT_PTR_NULL(strstr(out, "Epoch"));
    free(out);
}

static void cli_plan_memory(void) {
    char *out = NULL;
    const char *job = idx_job("oom.job",
                              "[conv2d]\nfilters = 512\nkernel_size = 3\npadding = same\n"
                              "[flatten]\n[dense]\nunits = 3\nactivation = softmax\n",
                              "");
    int rc = run(&out, "summary '%s' --set train.batch_size=1000000", job);
    CU_ASSERT_EQUAL(rc, 2);
    HAS(out, "the model needs");
    HAS(out, "batch_size 1000000");
    HAS(out, "activations");
    HAS(out, "conv2d");
    HAS(out, "lower train.batch_size");
    free(out);
}

static void cli_small_fixes(void) {
    char *out = NULL;
    /* augment-preview --index 0 (the default) is accepted */
    const char *job = idx_job("prev.job", DENSE, "");
    char img[900];
    snprintf(img, sizeof img, "%s/hard-preview.jpg", testutil_tmpdir());
    int rc = run(&out, "augment-preview '%s' --out '%s' --index 0", job, img);
    if (rc) printf("\n    %s\n", out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(testutil_file_size(img) > 0);
    free(out);
    /* diff-weights of files of different sizes: exit 2 (and no leak under SANITIZE=1) */
    Job j1, j2;
    Model m1, m2;
    hard_small_model(&j1, &m1);
    const char *dir = hard_subdir("diff");
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(weights_save(hard_join(dir, "a.weights"), &m1, &e), 0);
    model_free(&m1);
    job_free(&j1);
    hard_small_model(&j2, &m2);
    Model m3;
    Err e3 = {0};
    CU_ASSERT_FATAL(model_plan(&m3, j2.layers, j2.n_layers, (Shape){5, 5, 1, 0}, 1, &e3) == 0);
    CU_ASSERT_FATAL(model_alloc(&m3, NULL) == 0);
    model_init_params(&m3, 2);
    CU_ASSERT_EQUAL_FATAL(weights_save(hard_join(dir, "b.weights"), &m3, &e), 0);
    model_free(&m3);
    model_free(&m2);
    job_free(&j2);
    rc = run(&out, "diff-weights '%s/a.weights' '%s/b.weights'", dir, dir);
    CU_ASSERT_EQUAL(rc, 2);
    HAS(out, "parameters");
    free(out);
    /* --weights naming a directory */
    rc = run(&out, "eval '%s' --weights '%s'", job, dir);
    CU_ASSERT_EQUAL(rc, 2);
    HAS(out, "is a directory");
    free(out);
}

TEST_SUITE(hardening_cli, {"a reader in a child process: crash contained", isolated_reader},
           {"libhdf5 memory errors fuzz_h5 found are contained", libhdf5_findings_contained},
           {"CLI: output paths checked before training", cli_outputs_checked_first},
           {"CLI: plan-time out of memory explained", cli_plan_memory},
           {"CLI: --index 0, diff-weights sizes, --weights DIR", cli_small_fixes})
