/* schedule.h: learning-rate schedules with the names, arguments and formulas of
 * keras.optimizers.schedules (Keras 3): ExponentialDecay, PiecewiseConstantDecay, CosineDecay
 * (with its linear warm-up) and PolynomialDecay, plus the constant rate of a job without one.
 *
 * The step a schedule reads is the optimizer's iteration count, as Keras calls
 * schedule(optimizer.iterations): optimizer steps (one per global batch, at any rank count and
 * any gradient_accumulation_steps) since the phase began, because every [phase] starts a fresh
 * optimizer as a Keras fit() after compile() does. Without phases it is the global step.
 *
 * In a job: `lr_schedule = NAME` in [train] (and per [phase], which inherits [train]'s
 * schedule and keys), with Keras's argument names as keys beside it; `lr` is the schedule's
 * initial_learning_rate. */
#ifndef CONVNET_SCHEDULE_H
#define CONVNET_SCHEDULE_H

#include "ini.h"

typedef enum {
    LR_CONSTANT,
    LR_EXPONENTIAL_DECAY,
    LR_PIECEWISE_CONSTANT_DECAY,
    LR_COSINE_DECAY,
    LR_POLYNOMIAL_DECAY
} LrScheduleKind;

#define LR_MAX_BOUNDARIES 32

typedef struct {
    LrScheduleKind kind;
    double initial;     /* initial_learning_rate: the job's (or phase's) lr */
    double decay_steps; /* exponential, cosine, polynomial */
    double decay_rate;  /* exponential */
    int staircase;      /* exponential */
    int n_boundaries;   /* piecewise: boundaries[n], values[n + 1] */
    double boundaries[LR_MAX_BOUNDARIES], values[LR_MAX_BOUNDARIES + 1];
    double alpha;         /* cosine: the floor, a fraction of the decay's starting rate */
    int warmup;           /* cosine: warmup_target given (Keras: not None) */
    double warmup_target; /* cosine: the rate the warm-up reaches and the decay starts from */
    double warmup_steps;  /* cosine */
    double end_learning_rate, power; /* polynomial */
    int cycle;                       /* polynomial */
} LrSchedule;

/* The learning rate at optimizer step `step` (0 for the first update). */
double lr_schedule_at(const LrSchedule *s, long step);

/* Read `lr_schedule` and its keys from section s (file/line errors as the getters give them).
 * inherit: the values a key takes when absent (a [phase] inherits [train]'s schedule), or NULL
 * for Keras's defaults; lr: initial_learning_rate. 0, or -1 with e set. */
int lr_schedule_configure(IniFile *ini, Section *s, const LrSchedule *inherit, double lr,
                          LrSchedule *out, Err *e);

/* The linear scaling rule: every rate the schedule states times k, except a cosine warm-up's
 * starting rate (initial_learning_rate), from which Goyal et al.'s gradual warm-up climbs to
 * the scaled target. */
void lr_schedule_scale(LrSchedule *s, double k);

/* "cosine_decay(initial 0.001, decay_steps 1000, ...)" for the summary and phase lines. */
void lr_schedule_describe(const LrSchedule *s, char *buf, size_t n);

/* The summary's lines: phase 1's effective rate (after lr_scaling) and, with
 * gradient_accumulation_steps, the micro-batches (micro_batch: the model's planned batch). */
struct Job;
void schedule_print_effective(const struct Job *j, int micro_batch, FILE *f);

/* Keras's class name of a schedule kind (lr_schedule's value). */
const char *lr_schedule_name(LrScheduleKind k);

#endif
