/* test_recipes.c: training recipes through the built binary: a run stopped after two epochs and
 * resumed logs the learning rates (schedule, ReduceLROnPlateau) and reaches the weights of an
 * uninterrupted run; TerminateOnNaN stops a diverging job with exit status 6 and keeps the last
 * good checkpoint; gradient accumulation under real mpirun gives the weights of the same global
 * batch on more ranks; `train --timeline` writes JSON with every rank, its events nested. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "testutil.h"

static const char *dir;
static const char *bin;

static void setup(void) {
    if (dir) return;
    dir = testutil_small_idx_dir("rc", 31);
    bin = testutil_bin_abs();
}

/* 240 samples, validation_split 0.2: 192 training samples, batch 16: 12 steps per epoch. */
static const char *write_job(const char *name, const char *train_extra, const char *sections) {
    char text[4096];
    snprintf(
        text, sizeof text,
        "[data]\nroot = %s\ntrain_images = rc-train-images.idx\ntrain_labels = "
        "rc-train-labels.idx\n"
        "test_images = rc-test-images.idx\ntest_labels = rc-test-labels.idx\nscale = 1/255\n"
        "[conv2d]\nfilters = 4\nkernel_size = 3\nactivation = relu\n[maxpooling2d]\npool_size = 2\n"
        "[flatten]\n[dropout]\nrate = 0.2\n[dense]\nunits = 3\nactivation = softmax\n"
        "[train]\nloss = sparse_categorical_crossentropy\nbatch_size = 16\n"
        "epochs = 4\nseed = 7\nvalidation_split = 0.2\n%s"
        "[checkpoint]\npath = %s/%s.ckpt\n%s",
        dir, train_extra, dir, name, sections);
    return testutil_write_file(dir, name, text, strlen(text));
}

/* The CSV log's first six columns (epoch .. learning_rate), rows joined: what two runs that
 * trained the same must agree on (the last two columns are timings). */
static char *csv_results(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char line[1024], *out = xcalloc(1, 1 << 16);
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        for (int k = 0; k < 6 && p; k++) p = strchr(p + 1, ',');
        if (p) *p = 0;
        n += (size_t)snprintf(out + n, (1 << 16) - n, "%s\n", line);
    }
    fclose(f);
    return out;
}

/* Uninterrupted 4 epochs against 2 epochs then a resume to 4: the same learning_rate column,
 * the same losses, bitwise the same weights. */
static void straight_vs_resumed(const char *job, const char *tag) {
    char extra[1024], *out = NULL;
    snprintf(extra, sizeof extra,
             "--no-resume --set checkpoint.path=%s-none.ckpt --set train.csv_log=%s-a.csv "
             "--save %s-a.weights",
             tag, tag, tag);
    int rc = testutil_train(dir, "", job, extra, &out);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) printf("\n    %s\n", out);
    free(out);
    snprintf(extra, sizeof extra, "--no-resume --set train.epochs=2 --set train.csv_log=%s-b.csv",
             tag);
    rc = testutil_train(dir, "", job, extra, &out);
    CU_ASSERT_EQUAL(rc, 0);
    free(out);
    snprintf(extra, sizeof extra, "--resume --set train.csv_log=%s-b.csv --save %s-b.weights", tag,
             tag);
    rc = testutil_train(dir, "", job, extra, &out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "resuming from"));
    if (rc || !strstr(out, "resuming from")) printf("\n    %s\n", out);
    free(out);
    char a[64], b[64];
    snprintf(a, sizeof a, "%s-a.csv", tag);
    snprintf(b, sizeof b, "%s-b.csv", tag);
    char *ca = csv_results(a), *cb = csv_results(b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ca);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cb);
    CU_ASSERT_STRING_EQUAL(ca, cb);
    if (strcmp(ca, cb)) printf("\n    uninterrupted:\n%s    resumed:\n%s", ca, cb);
    printf("\n    %s", ca);
    free(ca);
    free(cb);
    snprintf(a, sizeof a, "%s-a.weights", tag);
    snprintf(b, sizeof b, "%s-b.weights", tag);
    CU_ASSERT(testutil_same_weights(dir, a, b, "0"));
}

static void test_resume_schedule(void) {
    setup();
    /* SGD with momentum; a warm-up over the first 15 steps (across the first epoch's end), then
     * a cosine over 30 steps: the resumed half starts at step 24, inside the decay */
    const char *job = write_job(
        "sched.job",
        "optimizer = sgd\nmomentum = 0.9\nlr = 0.001\nlr_schedule = cosine_decay\n"
        "warmup_target = 0.05\nwarmup_steps = 15\ndecay_steps = 30\nalpha = 0.1\n",
        "");
    straight_vs_resumed(job, "sched");
}

static void test_resume_plateau(void) {
    setup();
    /* monitor the training loss with mode = max: a falling loss never "improves", so the rate
     * halves every other epoch (patience 1, cooldown 1); a resume that lost the callback's state
     * would start over with best = -inf and log other rates */
    const char *job = write_job("plateau.job", "optimizer = adam\nlr = 0.01\n",
                                "[reduce_lr_on_plateau]\nmonitor = loss\nmode = max\nfactor = 0.5\n"
                                "patience = 1\ncooldown = 1\nmin_delta = 0\n");
    straight_vs_resumed(job, "plateau");
    char *rows = csv_results("plateau-a.csv");
    CU_ASSERT_PTR_NOT_NULL_FATAL(rows);
    /* logged before each epoch's decision, as Keras's logs["learning_rate"]: epoch 1 sets best;
     * epoch 2 does not improve: wait 1 = patience: 0.01 -> 0.005, cooldown 1; epoch 3: Keras
     * counts the cooldown down to 0 first, so this epoch already counts: 0.005 -> 0.0025 */
    int n = 0;
    double lr[8];
    char *save = NULL;
    strtok_r(rows, "\n", &save); /* the header */
    for (char *line; (line = strtok_r(NULL, "\n", &save)) && n < 8;)
        lr[n++] = atof(strrchr(line, ',') + 1);
    free(rows);
    CU_ASSERT_EQUAL_FATAL(n, 4);
    CU_ASSERT_DOUBLE_EQUAL(lr[0], 0.01, 1e-8);
    CU_ASSERT_DOUBLE_EQUAL(lr[1], 0.01, 1e-8);
    CU_ASSERT_DOUBLE_EQUAL(lr[2], 0.005, 1e-8);
    CU_ASSERT_DOUBLE_EQUAL(lr[3], 0.0025, 1e-8);
}

/* Pixels scaled to ~1e27 (lr stays within the job's range of [0, 1000]): the first step's
 * loss is finite and its update throws the weights to ~1e25; the second step's logits overflow.
 * Exit 6, a message naming the step, the checkpoint of step 1 kept and resumable. */
static void test_terminate_on_nan(void) {
    setup();
    const char *job = write_job("nan.job", "optimizer = sgd\n", "every_steps = 1\n");
    char *out = NULL;
    int rc = testutil_train(dir, "", job, "--no-resume --set data.scale=1e25", &out);
    CU_ASSERT_EQUAL(rc, EXIT_DIVERGED);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "terminate_on_nan: the loss of global step"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "the last checkpoint written before it is kept"));
    if (rc != EXIT_DIVERGED || !strstr(out, "terminate_on_nan"))
        printf("\n    rc %d\n%s\n", rc, out);
    const char *at = strstr(out, "global step ");
    long step = at ? atol(at + 12) : -1;
    printf("\n    diverged at global step %ld", step);
    CU_ASSERT(step >= 2);
    free(out);
    /* the kept checkpoint is the step before: finite, so it loads (a resume refuses NaN) */
    char extra[256];
    snprintf(
        extra, sizeof extra,
        "--resume --set data.scale=1e25 --set train.terminate_on_nan=false --set train.epochs=1");
    rc = testutil_train(dir, "", job, extra, &out);
    char want[64];
    snprintf(want, sizeof want, "(global step %ld)", step - 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, want));
    /* without TerminateOnNaN the run goes on to its end, as Keras's does */
    CU_ASSERT_EQUAL(rc, 0);
    if (rc || !strstr(out, want)) printf("\n    rc %d, wanted %s:\n%s\n", rc, want, out);
    free(out);
}

/* The global batch of 12 on np ranks with K micro-batches each (3 samples per micro-batch in
 * every case below), 20 RMSprop steps as tests/test_mpi.c's rank-count equivalence takes;
 * weights to TAG.weights, per-step losses to TAG.steps. */
static int run_accum(const char *job, int np, int K, const char *extra, const char *tag) {
    char mpirun[256], cmd[4096];
    testutil_mpirun(mpirun, sizeof mpirun, np);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && timeout 300 %s '%s' train '%s' --no-resume --set "
             "train.gradient_accumulation_steps=%d "
             "--set train.step_log=%s.steps --save %s.weights %s",
             dir, mpirun, bin, job, K, tag, tag, extra);
    char *out = NULL;
    int rc = testutil_run(cmd, &out);
    if (rc) printf("\n    -np %d K=%d failed (%d):\n%s", np, K, rc, out);
    free(out);
    return rc;
}

/* -np 4 K=1, -np 2 K=2 (plain and overlapped allreduce), -np 1 K=4: the same optimizer steps on
 * the same global batches, so the same losses and weights (1e-5), dropout included (keyed by
 * sample). No BatchNormalization: it normalises per micro-batch, which K changes. */
static void test_accumulation_mpi(void) {
    setup();
    if (!testutil_have_mpi()) {
        testutil_skip("gradient accumulation under mpirun", "built with MPI=0 or no mpirun", 1);
        return;
    }
    const char *job = write_job("accum.job", "optimizer = rmsprop\nsteps_per_epoch = 5\n", "");
    const struct {
        int np, K;
        const char *extra, *tag;
    } runs[] = {
        {4, 1, "", "acc4x1"},
        {2, 2, "", "acc2x2"},
        {2, 2, "--set train.overlap_allreduce=true --set train.bucket_mb=0.0001", "acc2x2o"},
        {1, 4, "", "acc1x4"}};
    double ref[64], got[64];
    int nref = 0;
    for (size_t r = 0; r < sizeof runs / sizeof *runs; r++) {
        char extra[256];
        snprintf(extra, sizeof extra, "--set train.batch_size=12 --set checkpoint.path=off %s",
                 runs[r].extra);
        CU_ASSERT_EQUAL_FATAL(run_accum(job, runs[r].np, runs[r].K, extra, runs[r].tag), 0);
        if (r == 0) {
            nref = testutil_read_step_losses(dir, runs[r].tag, ref, 64);
            CU_ASSERT_EQUAL(nref, 20);
            continue;
        }
        int n = testutil_read_step_losses(dir, runs[r].tag, got, 64);
        CU_ASSERT_EQUAL(n, nref);
        double worst = 0;
        for (int i = 0; i < n && i < nref; i++)
            worst = fmax(worst, fabs(got[i] - ref[i]) / fabs(ref[i]));
        printf("\n    -np %d K=%d%s: step losses within %.1e of -np 4 K=1", runs[r].np, runs[r].K,
               runs[r].extra[0] ? " (overlapped)" : "", worst);
        CU_ASSERT(worst <= 1e-5);
        char w[64];
        snprintf(w, sizeof w, "%s.weights", runs[r].tag);
        CU_ASSERT(testutil_same_weights(dir, "acc4x1.weights", w, "1e-5"));
    }
}

/* What the timeline must hold, checked by Python's json module: every rank present, as many
 * steps as trained, each data/forward/backward/allreduce/optimizer event inside its own rank's
 * step of the same number, steps and evaluations never overlapping on a rank. */
static const char *TIMELINE_CHECK =
    "import json, sys\n"
    "d = json.load(open(sys.argv[1]))\n"
    "ranks, steps = int(sys.argv[2]), int(sys.argv[3])\n"
    "ev = [e for e in d['traceEvents'] if e['ph'] == 'X']\n"
    "assert {e['pid'] for e in ev} == set(range(ranks)), 'ranks'\n"
    "for r in range(ranks):\n"
    "    mine = [e for e in ev if e['pid'] == r]\n"
    "    st = {e['args']['step']: e for e in mine if e['name'] == 'step'}\n"
    "    assert len(st) == steps, ('steps', r, len(st))\n"
    "    for e in mine:\n"
    "        if e['name'] in ('data', 'forward', 'backward', 'allreduce', 'optimizer'):\n"
    "            p = st[e['args']['step']]\n"
    "            assert p['ts'] <= e['ts'] and e['ts'] + e['dur'] <= p['ts'] + p['dur'], "
    "('nesting', e, p)\n"
    "    top = sorted((e for e in mine if e['name'] in ('step', 'evaluate')), key=lambda e: "
    "e['ts'])\n"
    "    for a, b in zip(top, top[1:]):\n"
    "        assert a['ts'] + a['dur'] <= b['ts'], ('overlap', a, b)\n"
    "    assert any(e['name'] == 'allreduce' and e['args']['bytes'] > 0 for e in mine)\n"
    "print('timeline ok:', len(ev), 'events')\n";

static void test_timeline(void) {
    setup();
    if (!testutil_have_mpi()) {
        testutil_skip("train --timeline under mpirun", "built with MPI=0 or no mpirun", 1);
        return;
    }
    if (system("python3 -c 'import json' >/dev/null 2>&1") != 0) {
        testutil_skip("train --timeline", "no python3 to parse the JSON", 0);
        return;
    }
    const char *job = write_job("tl.job", "steps_per_epoch = 5\n", "");
    char mpirun[256], cmd[4096], *out = NULL;
    testutil_mpirun(mpirun, sizeof mpirun, 2);
    /* 2 epochs of 5 steps, 2 micro-batches each, checkpoints at the epoch ends */
    snprintf(cmd, sizeof cmd,
             "cd '%s' && timeout 300 %s '%s' train '%s' --no-resume --set train.epochs=2 "
             "--set train.gradient_accumulation_steps=2 --timeline tl.json",
             dir, mpirun, bin, job);
    int rc = testutil_run(cmd, &out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "timeline: tl.json (2 ranks"));
    if (rc) printf("\n    %s\n", out);
    free(out);
    const char *py = testutil_write_file(dir, "tl_check.py", TIMELINE_CHECK,
                                         strlen(TIMELINE_CHECK));
    snprintf(cmd, sizeof cmd, "python3 '%s' '%s/tl.json' 2 10", py, dir);
    rc = testutil_run(cmd, &out);
    CU_ASSERT_EQUAL(rc, 0);
    printf("\n    %s", out);
    free(out);
}

TEST_SUITE(
    recipes, {"cosine warm-up schedule: resumed run == uninterrupted run", test_resume_schedule},
    {"ReduceLROnPlateau: resumed run == uninterrupted run", test_resume_plateau},
    {"terminate_on_nan: exit 6, the step named, last good checkpoint kept", test_terminate_on_nan},
    {"gradient accumulation: -np 4 K=1 == -np 2 K=2 == -np 1 K=4 (mpirun)", test_accumulation_mpi},
    {"train --timeline: JSON, every rank, events nested in their steps", test_timeline});
