/* test_schedule.c: the learning-rate schedules against Keras 3's formulas
 * (keras/src/optimizers/schedules/learning_rate_schedule.py) at chosen steps, worked out by
 * hand below; their job keys ([train], [phase] inheritance, lr_scaling = linear, errors); and
 * ReduceLROnPlateau's decisions on scripted metric series, as Keras's on_epoch_end takes them
 * (keras/src/callbacks/reduce_lr_on_plateau.py), each expected step reasoned out in comments. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "callbacks.h"
#include "job.h"
#include "schedule.h"
#include "testutil.h"

#define NEAR(a, b) CU_ASSERT_DOUBLE_EQUAL((a), (b), 1e-9 + 1e-7 * fabs(b))

static void test_exponential(void) {
    LrSchedule s = {
        .kind = LR_EXPONENTIAL_DECAY, .initial = 0.1, .decay_steps = 10, .decay_rate = 0.5};
    NEAR(lr_schedule_at(&s, 0), 0.1);
    NEAR(lr_schedule_at(&s, 5), 0.1 * 0.70710678118654752); /* 0.5^(5/10) */
    NEAR(lr_schedule_at(&s, 20), 0.025);
    s.staircase = 1; /* floor(15/10) = 1 */
    NEAR(lr_schedule_at(&s, 15), 0.05);
    NEAR(lr_schedule_at(&s, 9), 0.1);
}

static void test_piecewise(void) {
    /* Keras's docstring example: 1.0 up to step 100000 inclusive, 0.5 to 110000, then 0.1 */
    LrSchedule s = {.kind = LR_PIECEWISE_CONSTANT_DECAY,
                    .n_boundaries = 2,
                    .boundaries = {100000, 110000},
                    .values = {1.0, 0.5, 0.1}};
    NEAR(lr_schedule_at(&s, 0), 1.0);
    NEAR(lr_schedule_at(&s, 100000), 1.0);
    NEAR(lr_schedule_at(&s, 100001), 0.5);
    NEAR(lr_schedule_at(&s, 110000), 0.5);
    NEAR(lr_schedule_at(&s, 110001), 0.1);
}

static void test_cosine(void) {
    LrSchedule s = {.kind = LR_COSINE_DECAY, .initial = 0.1, .decay_steps = 100, .alpha = 0.1};
    NEAR(lr_schedule_at(&s, 0), 0.1);
    /* step 25: 0.5 (1 + cos(pi/4)) = 0.85355339; (1 - 0.1) x that + 0.1 = 0.86819805 */
    NEAR(lr_schedule_at(&s, 25), 0.086819805);
    NEAR(lr_schedule_at(&s, 50), 0.1 * (0.9 * 0.5 + 0.1));
    NEAR(lr_schedule_at(&s, 100), 0.01); /* alpha x initial, and it stays there */
    NEAR(lr_schedule_at(&s, 1000), 0.01);
}

static void test_cosine_warmup(void) {
    /* Keras 3: linear from initial_learning_rate (0) to warmup_target (0.1) over 10 steps, then
     * the cosine from warmup_target over decay_steps (100) */
    LrSchedule s = {.kind = LR_COSINE_DECAY,
                    .initial = 0.0,
                    .decay_steps = 100,
                    .warmup = 1,
                    .warmup_target = 0.1,
                    .warmup_steps = 10};
    NEAR(lr_schedule_at(&s, 0), 0.0);
    NEAR(lr_schedule_at(&s, 3), 0.03);
    NEAR(lr_schedule_at(&s, 10), 0.1);
    NEAR(lr_schedule_at(&s, 60), 0.05); /* half-way down: 0.5 (1 + cos(pi/2)) */
    NEAR(lr_schedule_at(&s, 110), 0.0);
    NEAR(lr_schedule_at(&s, 5000), 0.0);
    /* a warm-up from a non-zero start: (0.4 - 0.1) x 5/20 + 0.1 */
    s.initial = 0.1;
    s.warmup_target = 0.4;
    s.warmup_steps = 20;
    NEAR(lr_schedule_at(&s, 5), 0.175);
}

static void test_polynomial(void) {
    LrSchedule s = {.kind = LR_POLYNOMIAL_DECAY,
                    .initial = 0.1,
                    .decay_steps = 100,
                    .end_learning_rate = 0.01,
                    .power = 2};
    NEAR(lr_schedule_at(&s, 50), 0.09 * 0.25 + 0.01); /* (1 - 1/2)^2 */
    NEAR(lr_schedule_at(&s, 150), 0.01);              /* held at decay_steps */
    s.cycle = 1;
    NEAR(lr_schedule_at(&s, 0), 0.1);                    /* multiplier 1 at step 0 */
    NEAR(lr_schedule_at(&s, 100), 0.01);                 /* ceil(1) = 1 */
    NEAR(lr_schedule_at(&s, 150), 0.09 * 0.0625 + 0.01); /* decay_steps 200: (1 - 0.75)^2 */
}

static const char *JOB_HEAD = "[data]\nroot = /nonexistent\ntrain_images = a\ntrain_labels = b\n"
                              "test_images = c\ntest_labels = d\n"
                              "[flatten]\n[dense]\nunits = 3\nactivation = softmax\n";

/* job_load on JOB_HEAD + tail: 0 or -1 (message in e). */
static int load(Job *j, const char *tail, Err *e) {
    char text[4096];
    snprintf(text, sizeof text, "%s%s", JOB_HEAD, tail);
    const char *path = testutil_write_file(testutil_tmpdir(), "sched.job", text, strlen(text));
    memset(e, 0, sizeof *e);
    return job_load(j, path, NULL, 0, e);
}

static void test_job_keys(void) {
    Job j;
    Err e;
    /* [train]'s schedule, inherited by the first phase, replaced by the second's */
    int rc = load(
        &j,
        "[train]\nloss = sparse_categorical_crossentropy\noptimizer = sgd\nlr = 0.2\n"
        "lr_schedule = cosine_decay\ndecay_steps = 100\nalpha = 0.1\n"
        "[phase]\nepochs = 1\n"
        "[phase]\nepochs = 1\nlr = 0.01\nlr_schedule = exponential_decay\ndecay_steps = 10\n"
        "decay_rate = 0.5\nstaircase = true\n",
        &e);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(j.phases[0].schedule.kind, LR_COSINE_DECAY);
    NEAR(lr_schedule_at(&j.phases[0].schedule, 50), 0.2 * 0.55);
    CU_ASSERT_EQUAL(j.phases[1].schedule.kind, LR_EXPONENTIAL_DECAY);
    NEAR(lr_schedule_at(&j.phases[1].schedule, 25), 0.0025);
    job_free(&j);

    /* lr_scaling = linear: batch 128 / reference 32 = 4x; a cosine warm-up starts unscaled
     * (Goyal's gradual warm-up from the reference rate) and reaches 4x its target */
    rc = load(&j,
              "[train]\nloss = sparse_categorical_crossentropy\nbatch_size = 128\nlr = 0.1\n"
              "lr_scaling = linear\nlr_reference_batch = 32\nlr_schedule = cosine_decay\n"
              "decay_steps = 1000\nwarmup_target = 0.1\nwarmup_steps = 50\n",
              &e);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    NEAR(j.train.lr_scale, 4.0);
    NEAR(lr_schedule_at(&j.phases[0].schedule, 0), 0.1);
    NEAR(lr_schedule_at(&j.phases[0].schedule, 25), 0.25);
    NEAR(lr_schedule_at(&j.phases[0].schedule, 50), 0.4);
    job_free(&j);

    /* a constant rate is scaled; the phase's lr then holds the effective rate */
    rc = load(&j,
              "[train]\nloss = sparse_categorical_crossentropy\nbatch_size = 64\nlr = 0.001\n"
              "lr_scaling = linear\nlr_reference_batch = 32\n",
              &e);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    NEAR(j.phases[0].lr, 0.002);
    job_free(&j);
}

static void expect_error(const char *tail, const char *needle) {
    Job j;
    Err e;
    int rc = load(&j, tail, &e);
    CU_ASSERT_EQUAL(rc, -1);
    if (rc == 0) {
        job_free(&j);
        return;
    }
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, needle));
    if (!strstr(e.msg, needle)) printf("\n    wanted '%s' in: %s\n", needle, e.msg);
    job_free(&j);
}

static void test_job_errors(void) {
    expect_error("[train]\nloss = sparse_categorical_crossentropy\nlr_schedule = cosine_decay\n",
                 "decay_steps");
    expect_error(
        "[train]\nloss = sparse_categorical_crossentropy\nlr_schedule = piecewise_constant_decay\n"
        "boundaries = 10, 20\nvalues = 0.1, 0.01\n",
        "one value more than boundaries");
    expect_error(
        "[train]\nloss = sparse_categorical_crossentropy\nlr_schedule = piecewise_constant_decay\n"
        "boundaries = 20, 10\nvalues = 0.1, 0.01, 0.001\n",
        "strictly increasing");
    expect_error(
        "[train]\nloss = sparse_categorical_crossentropy\nlr_schedule = exponential_decay\n"
        "decay_steps = 0\ndecay_rate = 0.5\n",
        "decay_steps");
    expect_error("[train]\nloss = sparse_categorical_crossentropy\nlr_scaling = linear\n",
                 "lr_reference_batch");
    expect_error("[train]\nloss = sparse_categorical_crossentropy\nlr_schedule = cosine_decay\n"
                 "decay_steps = 10\n[reduce_lr_on_plateau]\nfactor = 0.5\n",
                 "needs a constant learning rate");
    expect_error(
        "[train]\nloss = sparse_categorical_crossentropy\n[reduce_lr_on_plateau]\nfactor = 1\n",
        "factor must be < 1");
    expect_error("[train]\nloss = sparse_categorical_crossentropy\nlr_schedule = cosine\n",
                 "lr_schedule");
}

/* The keys added for the recipes, at the values that compute what their absence did, leave
 * both hashes alone (checkpoints of earlier versions resume: KEYS_ADDED_LATER in job.c); other
 * values move them. terminate_on_nan changes no computation: never in the resume hash. */
static void test_keys_keep_hashes(void) {
    const char *base = "[train]\nloss = sparse_categorical_crossentropy\n[phase]\nepochs = 1\n";
    const char *neutral[] = {"lr_schedule = constant\n", "gradient_accumulation_steps = 1\n",
                             "lr_scaling = none\n", "terminate_on_nan = true\n"};
    const char *other[] = {"lr_schedule = cosine_decay\ndecay_steps = 5\n",
                           "gradient_accumulation_steps = 2\n",
                           "lr_scaling = linear\nlr_reference_batch = 8\n"};
    Job ref, j;
    Err e;
    CU_ASSERT_EQUAL_FATAL(load(&ref, base, &e), 0);
    char text[1024];
    for (int i = 0; i < 4; i++) {
        snprintf(text, sizeof text,
                 "[train]\nloss = sparse_categorical_crossentropy\n%s[phase]\nepochs = 1\n%s",
                 neutral[i], i == 0 ? neutral[0] : "");
        CU_ASSERT_EQUAL_FATAL(load(&j, text, &e), 0);
        CU_ASSERT_EQUAL(j.resume_hash, ref.resume_hash);
        CU_ASSERT_EQUAL(j.hash, ref.hash);
        job_free(&j);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(text, sizeof text,
                 "[train]\nloss = sparse_categorical_crossentropy\n%s[phase]\nepochs = 1\n",
                 other[i]);
        CU_ASSERT_EQUAL_FATAL(load(&j, text, &e), 0);
        CU_ASSERT_NOT_EQUAL(j.resume_hash, ref.resume_hash);
        job_free(&j);
    }
    CU_ASSERT_EQUAL_FATAL(
        load(&j,
             "[train]\nloss = sparse_categorical_crossentropy\nterminate_on_nan = false\n"
             "[phase]\nepochs = 1\n",
             &e),
        0);
    CU_ASSERT_EQUAL(j.resume_hash, ref.resume_hash);
    job_free(&j);
    job_free(&ref);
}

/* Run cfg over series[0..n): the rate after each epoch in lr[], 1 in reduced[] when it fell. */
static void run_series(const PlateauCfg *c, double lr0, const double *series, int n, double *lr,
                       int *reduced, PlateauState *st) {
    plateau_reset(c, st, lr0);
    for (int i = 0; i < n; i++) {
        reduced[i] = plateau_update(c, st, series[i]);
        lr[i] = st->lr;
    }
}

static void test_plateau_min(void) {
    /* val_loss (auto: min), factor 0.5, patience 2, cooldown 1, min_delta 0.01, min_lr 0.02 */
    PlateauCfg c = {.enabled = 1,
                    .monitor = 0,
                    .factor = 0.5,
                    .patience = 2,
                    .cooldown = 1,
                    .min_delta = 0.01,
                    .min_lr = 0.02};
    const double series[] = {1.0, 0.995, 0.98, 0.98, 0.975, 0.99, 0.99,
                             0.5, 0.6,   0.6,  0.6,  0.6,   0.6};
    /* e0 1.0 < inf: best 1.0.  e1 0.995 is not below 1.0 - 0.01: wait 1.  e2 0.98 < 0.99: best,
     * wait 0.  e3: wait 1.  e4 0.975 is not below 0.97: wait 2 = patience: 0.1 -> 0.05,
     * cooldown 1, wait 0.  e5: the cooldown counts down to 0 (wait 0), and since it is now over
     * the same epoch counts: wait 1.  e6: wait 2: 0.05 -> 0.025.  e7 0.5: cooldown over, best.
     * e8: wait 1.  e9: wait 2: 0.025 x 0.5 = 0.0125, raised to min_lr 0.02.  e10: cooldown over,
     * wait 1.  e11: wait 2, but 0.02 is not above float32(min_lr): no change, wait stays.
     * e12: wait 3, still nothing. */
    const double want_lr[] = {0.1,   0.1,   0.1,  0.1,  0.05, 0.05, 0.025,
                              0.025, 0.025, 0.02, 0.02, 0.02, 0.02};
    const int want_reduced[] = {0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0};
    const int n = (int)(sizeof series / sizeof *series);
    double lr[16];
    int reduced[16];
    PlateauState st;
    run_series(&c, 0.1, series, n, lr, reduced, &st);
    for (int i = 0; i < n; i++) {
        CU_ASSERT_DOUBLE_EQUAL(lr[i], want_lr[i], 1e-8);
        CU_ASSERT_EQUAL(reduced[i], want_reduced[i]);
        if (reduced[i] != want_reduced[i] || fabs(lr[i] - want_lr[i]) > 1e-8)
            printf("\n    epoch %d: lr %g (want %g), reduced %d (want %d)\n", i, lr[i], want_lr[i],
                   reduced[i], want_reduced[i]);
    }
    CU_ASSERT_EQUAL(st.wait, 3);
    CU_ASSERT_DOUBLE_EQUAL(st.best, 0.5, 0);
}

static void test_plateau_max(void) {
    /* val_accuracy (auto: max), factor 0.1, patience 1, cooldown 2, min_delta 0 */
    PlateauCfg c = {.enabled = 1,
                    .monitor = 1,
                    .higher = 1,
                    .factor = 0.1,
                    .patience = 1,
                    .cooldown = 2,
                    .min_delta = 0,
                    .min_lr = 0};
    const double series[] = {0.5, 0.5, 0.4, 0.4, 0.6, 0.6, NAN};
    /* e0 best 0.5.  e1 0.5 is not above 0.5: wait 1: 1 -> 0.1, cooldown 2.  e2: cooldown 1,
     * still cooling: nothing.  e3: cooldown 0, no improvement: wait 1: 0.1 -> 0.01, cooldown 2.
     * e4 0.6: cooldown 1, a new best.  e5: cooldown 0, wait 1: 0.01 -> 0.001, cooldown 2.
     * e6 NaN: never an improvement (np.greater is false), but the cooldown holds it. */
    const double want_lr[] = {1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001};
    const int want_reduced[] = {0, 1, 0, 1, 0, 1, 0};
    const int n = (int)(sizeof series / sizeof *series);
    double lr[8];
    int reduced[8];
    PlateauState st;
    run_series(&c, 1.0, series, n, lr, reduced, &st);
    for (int i = 0; i < n; i++) {
        CU_ASSERT_DOUBLE_EQUAL(lr[i], want_lr[i], 1e-7 * want_lr[i]);
        CU_ASSERT_EQUAL(reduced[i], want_reduced[i]);
    }
    CU_ASSERT_DOUBLE_EQUAL(st.best, 0.6, 0);
}

TEST_SUITE(schedule, {"exponential_decay at chosen steps, staircase", test_exponential},
           {"piecewise_constant_decay: boundaries inclusive, as Keras", test_piecewise},
           {"cosine_decay with alpha", test_cosine},
           {"cosine_decay warm-up (Keras 3's warmup_target, warmup_steps)", test_cosine_warmup},
           {"polynomial_decay, with and without cycle", test_polynomial},
           {"job keys: [train], [phase] inheritance, lr_scaling = linear", test_job_keys},
           {"job errors name the key", test_job_errors},
           {"new keys at their neutral values keep both hashes", test_keys_keep_hashes},
           {"ReduceLROnPlateau (min): patience, cooldown, min_delta, min_lr", test_plateau_min},
           {"ReduceLROnPlateau (max): cooldown holds, NaN never improves", test_plateau_max});
