/* test_rundir.c: checkpoints by default. A job without a [checkpoint] section checkpoints into
 * its run directory ($CONVNET_RUNS, default runs/, then the job's name) and says so at start-up;
 * SIGUSR1 writes it and exits 3, the same command resumes from it to the uninterrupted run's
 * weights, a finished run removes it; `path = off` stops with status 5 and saves nothing; a
 * checkpoint of another configuration of the same job name is refused (exit 2), not resumed.
 *
 * The harness runs every other suite with CONVNET_RUNS=off (test_main.c), so that their runs
 * start afresh whatever an earlier, killed run left; the commands here choose their own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static const char *dir;
static const char *bin;

static void setup(void) {
    if (dir) return;
    dir = testutil_small_idx_dir("rd", 31);
    bin = testutil_bin_abs();
}

/* 240 samples / batch 16 = 15 steps per epoch; no [checkpoint] section at all. */
static const char *write_job(const char *name, int epochs) {
    char text[4096];
    snprintf(
        text, sizeof text,
        "[data]\nroot = %s\ntrain_images = rd-train-images.idx\ntrain_labels = "
        "rd-train-labels.idx\n"
        "test_images = rd-test-images.idx\ntest_labels = rd-test-labels.idx\nscale = 1/255\n"
        "[conv2d]\nfilters = 4\nkernel_size = 3\nactivation = relu\n[maxpooling2d]\npool_size = 2\n"
        "[flatten]\n[dropout]\nrate = 0.2\n[dense]\nunits = 3\nactivation = softmax\n"
        "[train]\nloss = sparse_categorical_crossentropy\noptimizer = adam\nbatch_size = 16\n"
        "epochs = %d\nseed = 5\n",
        dir, epochs);
    return testutil_write_file(dir, name, text, strlen(text));
}

/* Run a shell script in dir (CONVNET_RUNS as `runs`, or unset when NULL); its output in *out. */
static int script(const char *runs, const char *body, char **out) {
    char text[8192];
    snprintf(text, sizeof text, "#!/bin/bash\ncd '%s' || exit 99\n%s%s%s\n%s\n", dir,
             runs ? "export CONVNET_RUNS='" : "unset CONVNET_RUNS", runs ? runs : "",
             runs ? "'" : "", body);
    const char *path = testutil_write_file(dir, "rundir.sh", text, strlen(text));
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "bash '%s'", path);
    return testutil_run(cmd, out);
}

static int has(const char *out, const char *what) {
    if (strstr(out, what)) return 1;
    printf("\n    expected \"%s\" in:\n%s\n", what, out);
    return 0;
}

/* Train in the background, SIGUSR1 once the step log shows 20 steps, report its status. */
#define STOP_AT_20(JOB, EXTRA, TAG)                                                \
    "rm -f " TAG ".steps\n"                                                        \
    "\"$BIN\" train \"$JOB\" --set train.step_log=" TAG ".steps " EXTRA " > " TAG  \
    ".first 2>&1 &\n"                                                              \
    "pid=$!\n"                                                                     \
    "for i in $(seq 1 600); do n=$(wc -l < " TAG ".steps 2>/dev/null || echo 0); " \
    "[ \"$n\" -ge 20 ] && break; sleep 0.02; done\n"                               \
    "kill -USR1 $pid; wait $pid; echo first_rc=$?\ncat " TAG ".first\n"

static void test_default_checkpoint_resume(void) {
    setup();
    const char *job = write_job("rdjob.job", 1000); /* long enough that USR1 lands mid-run */
    char body[6000], *out = NULL;
    /* the uninterrupted reference, without checkpoints */
    snprintf(body, sizeof body,
             "'%s' train '%s' --set checkpoint.path=off --save straight.weights; echo rc=$?", bin,
             job);
    CU_ASSERT_EQUAL(script(NULL, body, &out), 0);
    CU_ASSERT(has(out, "rc=0") && has(out, "checkpoints: off"));
    free(out);
    /* stopped by SIGUSR1: exit 3, the checkpoint in runs/rdjob/, a valid one: the same command
     * resumes from it to the reference's weights, then removes it */
    snprintf(
        body, sizeof body,
        "BIN='%s'; JOB='%s'\nrm -rf runs\n" STOP_AT_20(
            "$JOB", "", "d1") "ls runs/rdjob/checkpoint && echo ckpt_there\n"
                              "\"$BIN\" train \"$JOB\" --save resumed.weights; echo second_rc=$?\n"
                              "[ -e runs/rdjob/checkpoint ] || echo ckpt_removed\n"
                              "[ -d runs/rdjob ] || echo dir_removed\n"
                              "\"$BIN\" diff-weights straight.weights resumed.weights --rtol 0 && "
                              "echo same_weights\n",
        bin, job);
    script(NULL, body, &out);
    CU_ASSERT(has(out, "checkpoints: runs/rdjob/checkpoint (the job's run directory"));
    CU_ASSERT(has(out, "first_rc=3"));
    CU_ASSERT(has(out, "checkpoint written to runs/rdjob/checkpoint"));
    CU_ASSERT(has(out, "ckpt_there"));
    CU_ASSERT(has(out, "resuming from runs/rdjob/checkpoint"));
    CU_ASSERT(has(out, "second_rc=0"));
    CU_ASSERT(has(out, "run finished: removed its checkpoint runs/rdjob/checkpoint"));
    CU_ASSERT(has(out, "ckpt_removed") && has(out, "dir_removed"));
    CU_ASSERT(has(out, "same_weights"));
    free(out);
}

static void test_checkpoint_off_exit5(void) {
    setup();
    const char *job = write_job("rdoff.job", 3000); /* long enough that USR1 lands mid-run */
    char body[6000], *out = NULL;
    snprintf(body, sizeof body,
             "BIN='%s'; JOB='%s'\nrm -rf runs\n" STOP_AT_20(
                 "$JOB", "--set checkpoint.path=off", "d2") "[ -e runs ] || echo nothing_written\n",
             bin, job);
    script(NULL, body, &out);
    CU_ASSERT(has(out, "first_rc=5"));
    CU_ASSERT(has(out, "checkpoint = off, so nothing was saved (exit status 5, not 3)"));
    CU_ASSERT(has(out, "nothing_written"));
    free(out);
    /* CONVNET_RUNS=off turns the default off too; --resume then says there is nothing */
    snprintf(body, sizeof body, "'%s' train '%s' --resume; echo rc=$?", bin, job);
    script("off", body, &out);
    CU_ASSERT(has(out, "rc=2"));
    free(out);
}

/* A stale checkpoint of the same job name but another configuration is never resumed
 * silently: exit 2 naming it; --no-resume starts afresh. CONVNET_RUNS chooses the root. */
static void test_other_configuration_refused(void) {
    setup();
    const char *job = write_job("rdcfg.job", 30);
    char body[6000], *out = NULL;
    snprintf(body, sizeof body,
             "BIN='%s'; JOB='%s'\nrm -rf myruns\n" STOP_AT_20(
                 "$JOB", "", "d3") "\"$BIN\" train \"$JOB\" --set train.lr=0.01 --set "
                                   "train.epochs=1; echo lr_rc=$?\n"
                                   "\"$BIN\" train \"$JOB\" --set train.lr=0.01 --set "
                                   "train.epochs=1 --no-resume; echo fresh_rc=$?\n"
                                   "\"$BIN\" summary \"$JOB\" --set train.epochs=1 > /dev/null; "
                                   "echo summary_rc=$?\n",
             bin, job);
    script("myruns", body, &out);
    CU_ASSERT(has(out, "first_rc=3"));
    CU_ASSERT(has(out, "checkpoint written to myruns/rdcfg/checkpoint"));
    CU_ASSERT(has(
        out, "cannot resume: myruns/rdcfg/checkpoint: written by a different job configuration"));
    CU_ASSERT(has(out, "lr_rc=2"));
    CU_ASSERT(has(out, "fresh_rc=0"));
    CU_ASSERT(has(out, "summary_rc=0"));
    free(out);
}

/* A job name that cannot name a directory is bad input, before anything runs. */
static void test_bad_job_name(void) {
    setup();
    char text[4096];
    const char *job = write_job("rdname.job", 1);
    snprintf(text, sizeof text,
             "cp '%s' '%s/rdname2.job' && sed -i '1i [model]\\nname = ..' '%s/rdname2.job' && "
             "cd '%s' && CONVNET_RUNS= '%s' train rdname2.job; echo rc=$?",
             job, dir, dir, dir, bin);
    char *out = NULL;
    testutil_run(text, &out);
    CU_ASSERT(has(out, "rc=2"));
    CU_ASSERT(has(out, "rdname2.job: the job's name '..' cannot name its run directory"));
    free(out);
    /* an explicit path is used as given */
    snprintf(text, sizeof text,
             "cd '%s' && CONVNET_RUNS= '%s' summary rdname2.job --set checkpoint.path=x.ckpt; echo "
             "rc=$?",
             dir, bin);
    testutil_run(text, &out);
    CU_ASSERT(has(out, "rc=0"));
    free(out);
}

TEST_SUITE(rundir,
           {"default checkpoint: SIGUSR1, exit 3, resume, removed at the end",
            test_default_checkpoint_resume},
           {"checkpoint = off: SIGUSR1 exits 5, nothing written", test_checkpoint_off_exit5},
           {"another configuration's checkpoint is refused", test_other_configuration_refused},
           {"a job name unfit for a directory", test_bad_job_name})
