/* test_transfer.c: the transfer-learning machinery on a small frozen "base": the feature cache
 * (training on cached features gives the run without the cache within 1e-5, on 1 and 2 ranks; a random
 * layer in front of the base keeps the training data uncached), fine-tuning phases (the
 * unfrozen layers train, the rest stay as they were; a run killed in phase 2 resumes in phase 2
 * and ends bitwise equal to the uninterrupted run) and the job-file errors of [phase] and layer
 * names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static const char *dir;
static const char *bin;

static void setup(void) {
    if (dir) return;
    dir = testutil_small_idx_dir("tl", 31);
    bin = testutil_bin_abs();
}

/* A frozen base (conv 6 = 60 parameters, pool, conv "top" 4 = 220 parameters), then Flatten,
 * Dropout and a Dense head (51). `front` goes before the base, `tail` after [train]. 192
 * training samples (validation_split 0.2) / batch 16 = 12 steps per epoch. */
static const char *write_job(const char *name, const char *front, const char *train_epochs,
                             const char *tail) {
    char text[4096];
    snprintf(
        text, sizeof text,
        "[data]\nroot = %s\ntrain_images = tl-train-images.idx\ntrain_labels = "
        "tl-train-labels.idx\n"
        "test_images = tl-test-images.idx\ntest_labels = tl-test-labels.idx\nscale = 1/255\n%s"
        "[conv2d]\nfilters = 6\nkernel_size = 3\nactivation = relu\ntrainable = false\n"
        "[maxpooling2d]\npool_size = 2\n"
        "[conv2d]\nname = top\nfilters = 4\nkernel_size = 3\nactivation = relu\ntrainable = false\n"
        "[flatten]\n[dropout]\nrate = 0.3\n[dense]\nunits = 3\nactivation = softmax\n"
        "[train]\nloss = sparse_categorical_crossentropy\noptimizer = rmsprop\nbatch_size = 16\n"
        "%sseed = 5\nvalidation_split = 0.2\n%s",
        dir, front, train_epochs, tail);
    return testutil_write_file(dir, name, text, strlen(text));
}

/* diff-weights A B --rtol R: 1 when within R; *identical receives the bitwise-identical count. */
static int compare(const char *a, const char *b, const char *rtol, long *identical) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' diff-weights '%s/%s' '%s/%s' --rtol %s", bin, dir, a, dir, b,
             rtol);
    char *out = NULL;
    int rc = testutil_run(cmd, &out);
    long total = 0, same = -1;
    if (sscanf(out, "%ld parameters, %ld bitwise identical", &total, &same) != 2) same = -1;
    if (identical) *identical = same;
    if (rc && !identical) printf("\n    %s", out);
    free(out);
    return rc == 0;
}

static void expect(const char *out, const char *what, int present) {
    int found = strstr(out, what) != NULL;
    CU_ASSERT_EQUAL(found, present);
    if (found != present)
        printf("\n    expected %s'%s' in:\n%s\n", present ? "" : "no ", what, out);
}

static void test_cache_same_result(void) {
    setup();
    const char *job = write_job("fc.job", "", "epochs = 3\n", "");
    char *out = NULL;
    CU_ASSERT_EQUAL(
        testutil_train(dir, "", job, "--set train.feature_cache=off --save fc-off.weights", &out),
        0);
    expect(out, "feature cache", 0);
    free(out);
    CU_ASSERT_EQUAL(testutil_train(dir, "", job, "--save fc-on.weights", &out), 0);
    /* the head starts after the frozen base at the dropout (a random layer) */
    expect(out, "feature cache: training data: layers conv2d..flatten", 1);
    expect(out, "feature cache: validation data: layers conv2d..dropout", 1);
    free(out);
    /* the same arithmetic on the same values, only done once (up to sgemm's rounding, which
     * depends on how many images one call convolves: docs/transfer-learning.md, feature cache) */
    CU_ASSERT(compare("fc-off.weights", "fc-on.weights", "1e-5", NULL));
    if (!testutil_have_mpi()) {
        testutil_skip("the cache on 2 ranks", "no MPI", 1);
        return;
    }
    char mp[256];
    testutil_mpirun(mp, sizeof mp, 2);
    CU_ASSERT_EQUAL(testutil_train(dir, mp, job, "--save fc-np2.weights", &out), 0);
    expect(out, "feature cache: training data", 1);
    free(out);
    CU_ASSERT(compare("fc-off.weights", "fc-np2.weights", "1e-5", NULL));
}

/* Augmentation in front of the base: the training data change every epoch, so only the
 * validation data (augmentation is off in evaluation) are cached. */
static void test_cache_not_for_augmented_training(void) {
    setup();
    const char *job = write_job("fa.job", "[random_flip]\nmode = horizontal\n", "epochs = 2\n", "");
    char *out = NULL;
    CU_ASSERT_EQUAL(
        testutil_train(dir, "", job, "--set train.feature_cache=off --save fa-off.weights", &out),
        0);
    free(out);
    CU_ASSERT_EQUAL(testutil_train(dir, "", job, "--save fa-on.weights", &out), 0);
    expect(out, "feature cache: training data", 0);
    expect(out, "feature cache: validation data: layers random_flip..dropout", 1);
    free(out);
    CU_ASSERT(compare("fa-off.weights", "fa-on.weights", "1e-5", NULL));
}

static const char *const two_phases =
    "[phase]\nepochs = 1\nlr = 0.001\n[phase]\nepochs = 2\nlr = 0.0001\nunfreeze_from = top\n";

static void test_phases_train_what_they_unfreeze(void) {
    setup();
    char tail[512];
    snprintf(tail, sizeof tail, "%s", two_phases);
    const char *job = write_job("ph.job", "", "", tail);
    char *out = NULL;
    CU_ASSERT_EQUAL(testutil_train(dir, "", job, "--save ph.weights", &out), 0);
    expect(out, "phase 1/2", 1);
    expect(out, "phase 2/2", 1);
    expect(out, "trainable from top: 271 parameters", 1);
    free(out);
    /* the same schedule without unfreezing: only "top" (220 parameters) and the head differ;
     * the frozen first convolution (60) is bitwise the same in both */
    const char *still = write_job(
        "ph-still.job", "", "",
        "[phase]\nepochs = 1\nlr = 0.001\n[phase]\nepochs = 2\nlr = 0.0001\n");
    CU_ASSERT_EQUAL(testutil_train(dir, "", still, "--save ph-still.weights", &out), 0);
    free(out);
    long identical = -1;
    CU_ASSERT(!compare("ph.weights", "ph-still.weights", "1e-3", &identical));
    CU_ASSERT(identical >= 60 && identical < 60 + 110);
    if (!(identical >= 60 && identical < 170))
        printf("\n    %ld parameters identical\n", identical);
}

/* SIGKILL in phase 2 (after step 18 of 36; phase 1 is steps 1-12), resume: the run continues
 * in phase 2 with its optimizer state and ends bitwise equal to the uninterrupted run. */
static void test_resume_stays_in_phase(void) {
    setup();
    char tail[1024];
    snprintf(tail, sizeof tail, "%s[checkpoint]\npath = %s/phk.ckpt\nevery_steps = 3\n", two_phases,
             dir);
    const char *job = write_job("phk.job", "", "", tail);
    char *out = NULL;
    CU_ASSERT_EQUAL(
        testutil_train(
            dir, "", job,
            "--no-resume --set checkpoint.path=phk-none.ckpt --save phk-straight.weights", &out),
        0);
    free(out);
    char script[8192];
    snprintf(script, sizeof script,
             "#!/bin/bash\ncd '%s' || exit 1\nrm -f phk.ckpt* phk.steps\n"
             "( '%s' train '%s' --set train.step_log=phk.steps > phk.first 2>&1 ) &\n"
             "for i in $(seq 1 1500); do n=$(wc -l < phk.steps 2>/dev/null || echo 0); [ \"$n\" "
             "-ge 19 ] && break; sleep 0.01; done\n"
             "pkill -9 -f '^%s train %s'; wait\n"
             "'%s' train '%s' --resume --save phk.weights > phk.second 2>&1; echo rc=$?\n"
             "cat phk.second\n",
             dir, bin, job, bin, job, bin, job);
    const char *path = testutil_write_file(dir, "phk.sh", script, strlen(script));
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "bash '%s'", path);
    testutil_run(cmd, &out);
    expect(out, "rc=0", 1);
    expect(out, "resuming from", 1);
    expect(out, "phase 2/2", 1);
    expect(out, "phase 1/2", 0);
    free(out);
    CU_ASSERT(compare("phk-straight.weights", "phk.weights", "0", NULL));
}

static void test_job_errors(void) {
    setup();
    struct {
        const char *front, *epochs, *tail, *message;
    } cases[] = {
        {"", "", "[phase]\nepochs = 1\nunfreeze_from = nosuch\n",
         "unfreeze_from = nosuch: the job has no layer"},
        {"", "epochs = 2\n", "[phase]\nepochs = 1\n", "epochs are set per phase"},
        {"", "", "[phase]\nlr = 0.1\n", "epochs"},
        {"", "", "[phase]\nepochs = 1\nunfreze_from = top\n", "unfreze_from"},
        {"[conv2d]\nname = top\nfilters = 2\nkernel_size = 1\n", "epochs = 1\n", "",
         "already taken"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu.job", i);
        const char *job = write_job(name, cases[i].front, cases[i].epochs, cases[i].tail);
        char *out = NULL;
        int rc = testutil_train(dir, "", job, "", &out);
        CU_ASSERT_EQUAL(rc, 2);
        expect(out, cases[i].message, 1);
        expect(out, name, 1); /* the message names the job file */
        expect(out, "Epoch", 0);
        free(out);
    }
}

TEST_SUITE(transfer,
           {"feature cache: same weights as without it, 1 and 2 ranks", test_cache_same_result},
           {"feature cache: augmented training data are not cached",
            test_cache_not_for_augmented_training},
           {"phases: only unfrozen layers train", test_phases_train_what_they_unfreeze},
           {"phases: killed in phase 2, resumed in phase 2, bitwise equal",
            test_resume_stays_in_phase},
           {"phases and layer names: job-file errors", test_job_errors})
