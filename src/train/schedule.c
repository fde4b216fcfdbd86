/* schedule.c: the learning-rate schedules of keras.optimizers.schedules (Keras 3,
 * keras/src/optimizers/schedules/learning_rate_schedule.py), their job keys and the linear
 * scaling rule (see schedule.h). Computed in double; the optimizer then rounds the rate to
 * float, as Keras's float32 schedules deliver it. */
#include "schedule.h"
#include "job.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const NAMES[] = {"constant",     "exponential_decay", "piecewise_constant_decay",
                                    "cosine_decay", "polynomial_decay",  NULL};

const char *lr_schedule_name(LrScheduleKind k) { return NAMES[k]; }

/* CosineDecay: decay_from * ((1 - alpha) * 0.5 (1 + cos(pi step / decay_steps)) + alpha). */
static double cosine(double step, double decay_steps, double decay_from, double alpha) {
    double done = step / decay_steps;
    return decay_from * ((1 - alpha) * 0.5 * (1 + cos(M_PI * done)) + alpha);
}

double lr_schedule_at(const LrSchedule *s, long step_i) {
    const double step = (double)step_i;
    switch (s->kind) {
    case LR_CONSTANT: return s->initial;
    case LR_EXPONENTIAL_DECAY: {
        double p = step / s->decay_steps;
        if (s->staircase) p = floor(p);
        return s->initial * pow(s->decay_rate, p);
    }
    case LR_PIECEWISE_CONSTANT_DECAY: {
        /* values[0] while step <= boundaries[0], values[i] while boundaries[i-1] < step <=
         * boundaries[i], the last value after the last boundary */
        int i = 0;
        while (i < s->n_boundaries && step > s->boundaries[i]) i++;
        return s->values[i];
    }
    case LR_COSINE_DECAY: {
        if (!s->warmup)
            return cosine(fmin(step, s->decay_steps), s->decay_steps, s->initial, s->alpha);
        double g = fmin(step, s->decay_steps + s->warmup_steps);
        if (g < s->warmup_steps) /* linear from initial_learning_rate to warmup_target */
            return (s->warmup_target - s->initial) * (g / s->warmup_steps) + s->initial;
        return cosine(g - s->warmup_steps, s->decay_steps, s->warmup_target, s->alpha);
    }
    case LR_POLYNOMIAL_DECAY: {
        double g = step, d = s->decay_steps;
        if (s->cycle) /* the first multiple of decay_steps at or above step (1 at step 0) */
            d *= step == 0 ? 1.0 : ceil(step / s->decay_steps);
        else
            g = fmin(g, d);
        return (s->initial - s->end_learning_rate) * pow(1 - g / d, s->power) +
               s->end_learning_rate;
    }
    }
    return s->initial;
}

/* The line of key in s (for messages), else the section's. */
static int key_line(const Section *s, const char *key) {
    for (int k = 0; k < s->n_kv; k++)
        if (!strcmp(s->kv[k].key, key) && s->kv[k].line > 0) return s->kv[k].line;
    return s->line;
}

/* "a, b, c" into v[0..max): the count, or -1 with e set. */
static int read_list(IniFile *ini, Section *s, const char *key, const char *text, double *v,
                     int max, Err *e) {
    int n = 0;
    char buf[64];
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, ",");
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
        while (len && (*p == ' ' || *p == '\t')) p++, len--;
        if (n == max || len == 0 || len >= sizeof buf) goto bad;
        memcpy(buf, p, len);
        buf[len] = 0;
        if (parse_double(buf, &v[n]) || !isfinite(v[n])) goto bad;
        n++;
        p += strcspn(p, ",");
        if (*p == ',') p++;
    }
    if (n) return n;
bad:
    err_set(e, "%s:%d: %s: expected up to %d numbers separated by commas, got '%s'",
            ini_section_file(ini, s), key_line(s, key), key, max, text);
    return -1;
}

static int configure_piecewise(IniFile *ini, Section *s, const LrSchedule *inh, LrSchedule *o,
                               Err *e) {
    const char *file = ini_section_file(ini, s);
    const char *b = sec_get_str(ini, s, "boundaries", !inh, NULL, e);
    const char *v = sec_get_str(ini, s, "values", !inh, NULL, e);
    if (e->set) return -1;
    if (b) {
        o->n_boundaries = read_list(ini, s, "boundaries", b, o->boundaries, LR_MAX_BOUNDARIES, e);
        if (o->n_boundaries < 0) return -1;
    }
    int nv = v ? read_list(ini, s, "values", v, o->values, LR_MAX_BOUNDARIES + 1, e)
               : o->n_boundaries + 1;
    if (nv < 0) return -1;
    if (nv != o->n_boundaries + 1) {
        err_set(e,
                "%s:%d: piecewise_constant_decay needs one value more than boundaries (%d "
                "boundaries, %d values), as Keras's PiecewiseConstantDecay",
                file, key_line(s, "values"), o->n_boundaries, nv);
        return -1;
    }
    for (int i = 0; i < o->n_boundaries; i++)
        if (o->boundaries[i] < 0 || (i && o->boundaries[i] <= o->boundaries[i - 1])) {
            err_set(e, "%s:%d: boundaries must be steps >= 0 in strictly increasing order", file,
                    key_line(s, "boundaries"));
            return -1;
        }
    for (int i = 0; i < nv; i++)
        if (o->values[i] < 0) {
            err_set(e, "%s:%d: values are learning rates: >= 0", file, key_line(s, "values"));
            return -1;
        }
    return 0;
}

int lr_schedule_configure(IniFile *ini, Section *s, const LrSchedule *inherit, double lr,
                          LrSchedule *out, Err *e) {
    int kind;
    if (sec_get_enum(ini, s, "lr_schedule", 0, inherit ? (int)inherit->kind : LR_CONSTANT, NAMES,
                     &kind, e))
        return -1;
    /* keys a [phase] leaves out are [train]'s when it names the same schedule */
    const LrSchedule *inh = inherit && (int)inherit->kind == kind ? inherit : NULL;
    memset(out, 0, sizeof *out);
    if (inh) *out = *inh;
    out->kind = (LrScheduleKind)kind;
    out->initial = lr;
    int need = !inh; /* decay_steps and Keras's other required arguments */
    const double big = 1e15;
    switch (out->kind) {
    case LR_CONSTANT: return 0;
    case LR_EXPONENTIAL_DECAY:
        return sec_get_double(ini, s, "decay_steps", need, out->decay_steps, 1e-9, big,
                              &out->decay_steps, e) ||
                       sec_get_double(ini, s, "decay_rate", need, out->decay_rate, 0, big,
                                      &out->decay_rate, e) ||
                       sec_get_bool(ini, s, "staircase", out->staircase, &out->staircase, e)
                   ? -1
                   : 0;
    case LR_PIECEWISE_CONSTANT_DECAY: return configure_piecewise(ini, s, inh, out, e);
    case LR_COSINE_DECAY: {
        if (sec_get_double(ini, s, "decay_steps", need, out->decay_steps, 1e-9, big,
                           &out->decay_steps, e) ||
            sec_get_double(ini, s, "alpha", 0, inh ? out->alpha : 0.0, 0, 1, &out->alpha, e) ||
            sec_get_double(ini, s, "warmup_steps", 0, inh ? out->warmup_steps : 0.0, 0, big,
                           &out->warmup_steps, e))
            return -1;
        /* Keras's warmup_target=None (no warm-up) is the key's absence */
        const char *t = sec_get_str(ini, s, "warmup_target", 0, NULL, e);
        if (t) {
            out->warmup = 1;
            if (parse_double(t, &out->warmup_target) || !(out->warmup_target >= 0) ||
                !isfinite(out->warmup_target)) {
                err_set(e, "%s:%d: warmup_target must be a learning rate >= 0, got '%s'",
                        ini_section_file(ini, s), key_line(s, "warmup_target"), t);
                return -1;
            }
        }
        return 0;
    }
    case LR_POLYNOMIAL_DECAY:
        return sec_get_double(ini, s, "decay_steps", need, out->decay_steps, 1e-9, big,
                              &out->decay_steps, e) ||
                       sec_get_double(ini, s, "end_learning_rate", 0,
                                      inh ? out->end_learning_rate : 1e-4, 0, big,
                                      &out->end_learning_rate, e) ||
                       sec_get_double(ini, s, "power", 0, inh ? out->power : 1.0, 0, big,
                                      &out->power, e) ||
                       sec_get_bool(ini, s, "cycle", out->cycle, &out->cycle, e)
                   ? -1
                   : 0;
    }
    return 0;
}

void lr_schedule_scale(LrSchedule *s, double k) {
    if (!(s->kind == LR_COSINE_DECAY && s->warmup)) s->initial *= k;
    s->warmup_target *= k;
    s->end_learning_rate *= k;
    for (int i = 0; i <= s->n_boundaries && s->kind == LR_PIECEWISE_CONSTANT_DECAY; i++)
        s->values[i] *= k;
}

void lr_schedule_describe(const LrSchedule *s, char *buf, size_t n) {
    switch (s->kind) {
    case LR_CONSTANT: snprintf(buf, n, "%g", s->initial); break;
    case LR_EXPONENTIAL_DECAY:
        snprintf(buf, n, "exponential_decay(initial %g, decay_steps %g, decay_rate %g%s)",
                 s->initial, s->decay_steps, s->decay_rate, s->staircase ? ", staircase" : "");
        break;
    case LR_PIECEWISE_CONSTANT_DECAY: {
        int k = snprintf(buf, n, "piecewise_constant_decay(%g", s->values[0]);
        for (int i = 0; i < s->n_boundaries && k > 0 && (size_t)k < n; i++)
            k += snprintf(buf + k, n - (size_t)k, " until step %g, then %g", s->boundaries[i],
                          s->values[i + 1]);
        if (k > 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, ")");
        break;
    }
    case LR_COSINE_DECAY:
        if (s->warmup)
            snprintf(buf, n,
                     "cosine_decay(from %g, warm-up to %g over %g steps, then over %g steps "
                     "to alpha %g)",
                     s->initial, s->warmup_target, s->warmup_steps, s->decay_steps, s->alpha);
        else
            snprintf(buf, n, "cosine_decay(initial %g, decay_steps %g, alpha %g)", s->initial,
                     s->decay_steps, s->alpha);
        break;
    case LR_POLYNOMIAL_DECAY:
        snprintf(buf, n, "polynomial_decay(initial %g, decay_steps %g, end %g, power %g%s)",
                 s->initial, s->decay_steps, s->end_learning_rate, s->power,
                 s->cycle ? ", cycle" : "");
        break;
    }
}

void schedule_print_effective(const Job *j, int micro_batch, FILE *f) {
    const TrainCfg *tc = &j->train;
    char lr[600];
    lr_schedule_describe(&j->phases[0].schedule, lr, sizeof lr);
    fprintf(f, "effective learning rate: %s", lr);
    if (tc->lr_scaling_linear)
        fprintf(f,
                " (lr_scaling = linear: the job's rates x %g = global batch %d / "
                "lr_reference_batch %d)",
                tc->lr_scale, tc->batch_size, tc->lr_reference_batch);
    fprintf(f, "%s\n", j->n_phases > 1 ? " in phase 1" : "");
    if (tc->grad_accum > 1)
        fprintf(
            f,
            "gradient accumulation: %d micro-batches of up to %d samples per rank per optimizer "
            "step of %d\n",
            tc->grad_accum, micro_batch, tc->batch_size);
}
