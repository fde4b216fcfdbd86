/* test_resume.c: killed and resumed training gives the run it would have had: SIGKILL at a
 * random step then resume (bitwise equal on the same rank count, 1e-5 on another), SIGUSR1 to
 * mpirun (checkpoint, exit 3, resume), and damaged checkpoints refused with a message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "testutil.h"

static const char *dir;
static const char *bin;

static void setup(void) {
    if (dir) return;
    dir = testutil_small_idx_dir("rs", 21);
    bin = testutil_bin_abs();
}

/* 240 samples / batch 16 = 15 steps per epoch, 4 epochs = 60 steps; dropout so that resumed
 * random draws matter; a checkpoint every 3 steps. */
static const char *write_job(const char *name) {
    char text[4096];
    snprintf(
        text, sizeof text,
        "[data]\nroot = %s\ntrain_images = rs-train-images.idx\ntrain_labels = "
        "rs-train-labels.idx\n"
        "test_images = rs-test-images.idx\ntest_labels = rs-test-labels.idx\nscale = 1/255\n"
        "[conv2d]\nfilters = 6\nkernel_size = 3\nactivation = relu\n[maxpooling2d]\npool_size = 2\n"
        "[flatten]\n[dropout]\nrate = 0.3\n[dense]\nunits = 3\nactivation = softmax\n"
        "[train]\nloss = sparse_categorical_crossentropy\noptimizer = adam\nbatch_size = 16\n"
        "epochs = 4\nseed = 3\nvalidation_split = 0.2\n"
        "[checkpoint]\npath = %s/%s.ckpt\nevery_steps = 3\nkeep = 2\n",
        dir, dir, name);
    return testutil_write_file(dir, name, text, strlen(text));
}

/* Start a run in the background, SIGKILL it once its step log shows `at` steps, then resume it
 * (possibly with another launcher). */
static void kill_and_resume(const char *job, const char *launcher, const char *resumer, int at,
                            const char *tag) {
    char script[8192];
    snprintf(script, sizeof script,
             "#!/bin/bash\ncd '%s' || exit 1\n"
             "( %s '%s' train '%s' --set train.step_log=%s.steps > %s.first 2>&1 ) &\n"
             "for i in $(seq 1 600); do n=$(wc -l < %s.steps 2>/dev/null || echo 0); [ \"$n\" -ge "
             "%d ] && break; sleep 0.02; done\n"
             "pkill -9 -f '^%s train %s'; wait\n"
             "%s '%s' train '%s' --resume --save %s.weights > %s.second 2>&1; echo rc=$?\n",
             dir, launcher, bin, job, tag, tag, tag, at, bin, job, resumer, bin, job, tag, tag);
    const char *path = testutil_write_file(dir, "kill-resume.sh", script, strlen(script));
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "bash '%s'; cat '%s/%s.second'", path, dir, tag);
    char *out = NULL;
    testutil_run(cmd, &out);
    CU_ASSERT(strstr(out, "rc=0") != NULL);
    CU_ASSERT(strstr(out, "resuming from") != NULL);
    if (!strstr(out, "rc=0") || !strstr(out, "resuming from")) printf("\n    %s\n", out);
    free(out);
}

static void test_kill_resume_same_ranks(void) {
    setup();
    const char *job = write_job("kr.job");
    char *out = NULL;
    /* the uninterrupted reference, without checkpoints */
    CU_ASSERT_EQUAL(
        testutil_train(dir, "", job,
                       "--no-resume --set checkpoint.path=none.ckpt --save straight.weights", &out),
        0);
    free(out);
    unsigned seed = (unsigned)getpid();
    int at = 5 + (int)(seed % 40); /* a random step between 5 and 44 of 60 */
    printf("\n    killed after step %d\n", at);
    kill_and_resume(job, "", "", at, "kr1");
    CU_ASSERT(testutil_same_weights(dir, "straight.weights", "kr1.weights", "0"));
}

static void test_kill_resume_other_ranks(void) {
    setup();
    if (!testutil_have_mpi()) {
        testutil_skip("resume on another rank count", "no MPI", 1);
        return;
    }
    const char *job = write_job("kr2.job");
    char *out = NULL;
    CU_ASSERT_EQUAL(
        testutil_train(dir, "", job,
                       "--no-resume --set checkpoint.path=none2.ckpt --save straight2.weights",
                       &out),
        0);
    free(out);
    char launcher[256], resumer[256];
    testutil_mpirun(launcher, sizeof launcher, 2);
    testutil_mpirun(resumer, sizeof resumer, 3);
    kill_and_resume(job, launcher, resumer, 23, "kr2");
    CU_ASSERT(testutil_same_weights(dir, "straight2.weights", "kr2.weights", "1e-5"));
}

/* SIGUSR1 to mpirun: every rank stops at the same step, rank 0 checkpoints, exit status 3,
 * carried by rank 0 alone (the others exit 0: see dist_finalize); the resumed run ends with the
 * uninterrupted run's parameters. */
static void test_sigusr1(void) {
    setup();
    if (!testutil_have_mpi()) {
        testutil_skip("SIGUSR1 via mpirun", "no MPI", 1);
        return;
    }
    const char *job = write_job("usr1.job");
    char mp[256], script[8192];
    testutil_mpirun(mp, sizeof mp, 2);
    char *out = NULL;
    CU_ASSERT_EQUAL(testutil_train(dir, mp, job,
                                   "--no-resume --set train.epochs=40 --set "
                                   "checkpoint.path=none3.ckpt --save straight3.weights",
                                   &out),
                    0);
    free(out);
    snprintf(
        script, sizeof script,
        "#!/bin/bash\ncd '%s' || exit 1\nrm -f usr1.steps usr1.ckpt*\n"
        "%s '%s' train '%s' --set train.step_log=usr1.steps --set train.epochs=40 > usr1.first "
        "2>&1 &\n"
        "pid=$!\n"
        "for i in $(seq 1 600); do n=$(wc -l < usr1.steps 2>/dev/null || echo 0); [ \"$n\" -ge 20 "
        "] && break; sleep 0.02; done\n"
        "kill -USR1 $pid; wait $pid; echo first_rc=$?\n"
        "grep -h 'stopping at step' usr1.first\n"
        /* mpirun names the first rank to exit non-zero: rank 0 alone (dist_finalize) */
        "grep -Eq 'Process name: \\[\\[[0-9]+,[0-9]+\\],0\\]' usr1.first && echo status_rank=0\n"
        "%s '%s' train '%s' --set train.epochs=40 --save usr1.weights > usr1.second 2>&1; echo "
        "second_rc=$?\n",
        dir, mp, bin, job, mp, bin, job);
    const char *path = testutil_write_file(dir, "usr1.sh", script, strlen(script));
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "bash '%s'", path);
    testutil_run(cmd, &out);
    CU_ASSERT(strstr(out, "first_rc=3") != NULL);
    CU_ASSERT(strstr(out, "status_rank=0") != NULL);
    CU_ASSERT(strstr(out, "checkpoint written") != NULL);
    CU_ASSERT(strstr(out, "second_rc=0") != NULL);
    if (!strstr(out, "first_rc=3") || !strstr(out, "second_rc=0")) printf("\n    %s\n", out);
    free(out);
    /* 40 epochs (480 steps) in all, long enough for the signal, sent after step 20, to arrive
     * before the end (first_rc=3 above): the resumed run finishes them like the straight one */
    CU_ASSERT(testutil_same_weights(dir, "straight3.weights", "usr1.weights", "1e-5"));
}

/* A damaged checkpoint: exit 2, a message naming the file and the damage, nothing trained. */
static void test_bad_checkpoint(void) {
    setup();
    const char *job = write_job("bad.job");
    char *out = NULL;
    CU_ASSERT_EQUAL(testutil_train(dir, "", job, "--set train.epochs=1", &out), 0);
    free(out);
    /* keep = 2: the previous checkpoint (step 9) is the fallback for a damaged newest one */
    char ck[1024];
    snprintf(ck, sizeof ck, "%s/bad.job.ckpt", dir);
    FILE *f = fopen(ck, "r+b");
    CU_ASSERT_FATAL(f != NULL);
    fseek(f, 400, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 400, SEEK_SET);
    fputc(c ^ 0x10, f);
    fclose(f);
    int rc = testutil_train(dir, "", job, "--resume --set train.epochs=1", &out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(strstr(out, "an older copy: the newest was unreadable") != NULL);
    free(out);
    /* keep = 1: nothing to fall back to */
    CU_ASSERT_EQUAL(testutil_train(dir, "", job,
                                   "--no-resume --set train.epochs=1 --set checkpoint.keep=1",
                                   &out),
                    0);
    free(out);
    f = fopen(ck, "r+b");
    CU_ASSERT_FATAL(f != NULL);
    fseek(f, 400, SEEK_SET);
    c = fgetc(f);
    fseek(f, 400, SEEK_SET);
    fputc(c ^ 0x10, f);
    fclose(f);
    rc = testutil_train(dir, "", job, "--resume --set checkpoint.keep=1", &out);
    CU_ASSERT_EQUAL(rc, 2);
    CU_ASSERT(strstr(out, "bad.job.ckpt") != NULL);
    CU_ASSERT(strstr(out, "corrupt") != NULL || strstr(out, "CRC") != NULL);
    CU_ASSERT(strstr(out, "Epoch") == NULL);
    if (rc != 2) printf("\n    %s\n", out);
    free(out);
    /* another model's checkpoint */
    rc = testutil_train(dir, "", job, "--resume --set conv2d.filters=7", &out);
    CU_ASSERT_EQUAL(rc, 2);
    CU_ASSERT(strstr(out, "cannot resume") != NULL);
    free(out);
    /* --resume without any checkpoint */
    rc = testutil_train(dir, "", job, "--resume --set checkpoint.path=missing.ckpt", &out);
    CU_ASSERT_EQUAL(rc, 2);
    CU_ASSERT(strstr(out, "no checkpoint") != NULL);
    free(out);
}

TEST_SUITE(resume, {"SIGKILL at a random step, resume: bitwise equal", test_kill_resume_same_ranks},
           {"resume on another rank count: within 1e-5", test_kill_resume_other_ranks},
           {"SIGUSR1 to mpirun: checkpoint, exit 3, resume", test_sigusr1},
           {"damaged or foreign checkpoints are refused", test_bad_checkpoint})
