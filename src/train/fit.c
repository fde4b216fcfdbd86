/* fit.c: trainer_fit, the epoch loop around train.c's steps: stop signals, checkpoints and
 * resume, fine-tuning phases, validation, best weights and early stopping, the CSV / step logs
 * and the final test (see train.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "callbacks.h"
#include "checkpoint.h"
#include "report.h"
#include "rundir.h"
#include "timeline.h"
#include "train/train_impl.h"
#include "weights.h"

/* The state a checkpoint needs beyond parameters and optimizer arrays. */
static CheckpointState fresh_state(const Trainer *t) {
    CheckpointState st;
    memset(&st, 0, sizeof st);
    st.job_hash = t->job->resume_hash;
    st.structure_hash = model_structure_hash(&t->model);
    st.best = NAN;
    st.best_epoch = -1;
    return st;
}

/* Rank 0: rotate and write the checkpoint; 0, or -1 after printing why. */
static int save_checkpoint(Trainer *t, CheckpointState *st) {
    const CheckpointCfg *c = &t->job->ckpt;
    Model *m = &t->model;
    Err e = {0};
    st->opt_iterations = t->opt.iterations;
    /* a diverged state never replaces the last good checkpoint (resume would refuse it anyway) */
    size_t bad = floats_first_nonfinite(m->params, m->n_params);
    if (bad < m->n_params) {
        fprintf(stderr,
                "convnet-dist: checkpoint not written: parameter %zu is %g (the run "
                "diverged); the previous checkpoint is kept\n",
                bad, (double)m->params[bad]);
        return -1;
    }
    double t0 = now_seconds();
    if (rundir_prepare(t->job, &e) || checkpoint_rotate(c->path, c->keep, &e) ||
        checkpoint_save(c->path, st, m->params, m->n_params, t->opt.s1, t->opt.s2, t->opt.n, &e)) {
        fprintf(stderr, "convnet-dist: checkpoint not written: %s\n", e.msg);
        return -1;
    }
    TIMELINE(TL_CHECKPOINT, t0, now_seconds(), (long)st->global_step, 0);
    return 0;
}

/* Resume from the job's checkpoint when there is one (mode: RESUME_*): rank 0 loads and checks
 * it, every rank receives the state, parameters and optimizer arrays. */
static void resume(Trainer *t, CheckpointState *st, ResumeMode mode) {
    const CheckpointCfg *c = &t->job->ckpt;
    Dist *dist = t->dist;
    Model *m = &t->model;
    if (!c->path[0] || mode == RESUME_NEVER) {
        if (mode == RESUME_REQUIRED) {
            Err e = {0};
            err_set(&e, "%s: --resume needs a [checkpoint] path", t->job->ini.path);
            trainer_fail(t, EXIT_BAD_INPUT, &e);
        }
        return;
    }
    /* 0: nothing to resume, 1: resumed, -1: a checkpoint exists but is unusable */
    int status = 0;
    Err e = {0};
    if (dist->rank == 0) {
        int which = 0;
        char probe[4200];
        int any = access(c->path, F_OK) == 0;
        for (int k = 1; k < c->keep && !any; k++) {
            snprintf(probe, sizeof probe, "%s.%d", c->path, k);
            any = access(probe, F_OK) == 0;
        }
        if (any)
            status = checkpoint_load_newest(c->path, c->keep, st, m->params, m->n_params, t->opt.s1,
                                            t->opt.s2, t->opt.n, t->job->resume_hash,
                                            model_structure_hash(m), &which, stderr, &e)
                         ? -1
                         : 1;
        if (status < 0)
            fprintf(stderr, "convnet-dist: cannot resume: %s (start afresh with --no-resume)\n",
                    e.msg);
        else if (status == 0 && mode == RESUME_REQUIRED)
            fprintf(stderr, "convnet-dist: --resume: no checkpoint at %s\n", c->path);
        else if (status > 0)
            printf("resuming from %s%s: epoch %d, step %lld (global step %lld)\n", c->path,
                   which ? " (an older copy: the newest was unreadable)" : "", st->epoch + 1,
                   (long long)st->step, (long long)st->global_step);
    }
    dist_bcast(dist, &status, sizeof status, 0);
    if (status < 0 || (status == 0 && mode == RESUME_REQUIRED)) dist_abort(dist, EXIT_BAD_INPUT);
    if (status == 0) return;
    dist_bcast(dist, st, sizeof *st, 0);
    dist_bcast(dist, m->params, m->n_params * sizeof(float), 0);
    dist_bcast(dist, t->opt.s1, t->opt.n * sizeof(float), 0);
    dist_bcast(dist, t->opt.s2, t->opt.n * sizeof(float), 0);
    t->opt.iterations = st->opt_iterations;
}

/* The phase that epoch `epoch` (0-based) belongs to: phases follow each other. */
static int phase_of_epoch(const Job *j, int epoch) {
    int end = 0;
    for (int p = 0; p < j->n_phases; p++) {
        end += j->phases[p].epochs;
        if (epoch < end) return p;
    }
    return j->n_phases - 1;
}

static void print_phase(const Trainer *t) {
    const PhaseCfg *ph = &t->job->phases[t->phase];
    const Model *m = &t->model;
    char lr[600];
    lr_schedule_describe(&ph->schedule, lr, sizeof lr);
    printf("phase %d/%d (%s:%d): %d epoch%s, lr %s, trainable from %s: %zu parameters (optimizer "
           "state reset at the start of the phase)\n",
           t->phase + 1, t->job->n_phases, t->job->ini.path, ph->line, ph->epochs,
           ph->epochs == 1 ? "" : "s", lr,
           m->lowest_trainable < m->n_layers ? m->layers[m->lowest_trainable].name : "(none)",
           model_trainable_count(m));
    fflush(stdout);
}

static const char *const monitor_names[] = {"val_loss", "val_accuracy", "loss", "accuracy"};

static double monitored(Monitor mon, double loss, double acc, const EvalResult *v) {
    switch (mon) {
    case MONITOR_VAL_LOSS: return v->count ? v->loss : NAN;
    case MONITOR_VAL_ACCURACY: return v->count ? v->accuracy : NAN;
    case MONITOR_LOSS: return loss;
    case MONITOR_ACCURACY: return acc;
    }
    return NAN;
}

/* The rate of the next optimizer step: ReduceLROnPlateau's once it has started, else the
 * phase's schedule at the optimizer's iteration count (Keras: schedule(optimizer.iterations)). */
static float current_lr(const Trainer *t, const CheckpointState *st) {
    if (t->job->plateau.enabled && st->plateau_lr > 0) return (float)st->plateau_lr;
    return (float)lr_schedule_at(&t->job->phases[t->phase].schedule, t->opt.iterations);
}

/* ReduceLROnPlateau's on_epoch_end: rank 0 decides, every rank takes its state. */
static void plateau_epoch_end(Trainer *t, CheckpointState *st, double loss, double acc,
                              const EvalResult *v, int epoch) {
    const PlateauCfg *pc = &t->job->plateau;
    if (!pc->enabled) return;
    PlateauState ps = {st->plateau_lr, st->plateau_best, st->plateau_wait, st->plateau_cooldown};
    if (t->dist->rank == 0) {
        if ((pc->monitor == MONITOR_VAL_LOSS || pc->monitor == MONITOR_VAL_ACCURACY) && !v->count)
            fprintf(stderr,
                    "convnet-dist: warning: reduce_lr_on_plateau monitors %s, but the job "
                    "has no validation data: the learning rate stays\n",
                    monitor_names[pc->monitor]);
        else if (plateau_update(pc, &ps, monitored((Monitor)pc->monitor, loss, acc, v)))
            printf("Epoch %d: ReduceLROnPlateau reducing learning rate to %g.\n", epoch + 1, ps.lr);
    }
    dist_bcast(t->dist, &ps, sizeof ps, 0);
    st->plateau_lr = ps.lr;
    st->plateau_best = ps.best;
    st->plateau_wait = ps.wait;
    st->plateau_cooldown = ps.cooldown_counter;
}

/* Keras's on_train_begin at a new phase (a new fit()): the callback starts over at its rate. */
static void plateau_start(Trainer *t, CheckpointState *st) {
    if (!t->job->plateau.enabled) return;
    PlateauState ps;
    plateau_reset(&t->job->plateau, &ps, t->job->phases[t->phase].lr);
    st->plateau_lr = ps.lr;
    st->plateau_best = ps.best;
    st->plateau_wait = ps.wait;
    st->plateau_cooldown = ps.cooldown_counter;
}

/* Rank 0's per-epoch outputs: CSV row and SVG chart. */
static void write_epoch_logs(const Trainer *t, const EpochRecord *r) {
    const TrainCfg *tc = &t->job->train;
    Err e = {0};
    if (tc->csv_log[0] && csvlog_append(tc->csv_log, r, &e))
        fprintf(stderr, "convnet-dist: warning: %s\n", e.msg);
    if (tc->chart[0] && tc->csv_log[0]) {
        EpochRecord *rows = NULL;
        int n = 0;
        Err e2 = {0};
        if (history_read_csv(tc->csv_log, &rows, &n, &e2) ||
            history_write_svg(tc->chart, rows, n, t->job->name, &e2))
            fprintf(stderr, "convnet-dist: warning: chart not written: %s\n", e2.msg);
        free(rows);
    }
}

/* Steps timed before the automatic watchdog takes their median. */
enum { AUTO_STEPS = 20 };

/* What one trainer_fit call carries from step to step and epoch to epoch. */
typedef struct {
    CheckpointState st;
    FILE *steplog;
    float *best; /* the best epoch's parameters (save_best / restore_best), or NULL */
    long steps;  /* per epoch */
    int root, tty;
    double step_secs[AUTO_STEPS]; /* the first steps' times, for the automatic watchdog */
    int timed;
    int status, stopped_early;
} FitRun;

/* The running epoch's sums (resumed mid-epoch from the checkpoint). */
typedef struct {
    StepTimes tm;
    double loss_sum, correct, seen, trained, t_start;
} EpochSums;

static void fit_open_logs(Trainer *t, FitRun *r) {
    const TrainCfg *tc = &t->job->train;
    if (r->root && tc->step_log[0]) {
        r->steplog = fopen(tc->step_log, r->st.global_step ? "a" : "w");
        if (!r->steplog) die(EXIT_RUNTIME, "cannot write step log %s", tc->step_log);
    }
    if (r->root && tc->csv_log[0]) {
        Err e = {0};
        if (csvlog_truncate_from(tc->csv_log, r->st.epoch, &e)) die(EXIT_RUNTIME, "%s", e.msg);
    }
}

/* Best weights: kept in memory to restore or test them at the end. On a resume they come back
 * from the best-weights file, which was written together with st.best. */
static void fit_init_best(Trainer *t, FitRun *r) {
    const CheckpointCfg *ck = &t->job->ckpt;
    Model *m = &t->model;
    if (!ck->save_best[0] && !ck->restore_best) return;
    r->best = xmalloc(m->n_params * sizeof *r->best);
    memcpy(r->best, m->params, m->n_params * sizeof *r->best);
    if (r->st.best_epoch >= 0 && ck->save_best[0]) {
        float *now = xmalloc(m->n_params * sizeof *now);
        memcpy(now, m->params, m->n_params * sizeof *now);
        Err e = {0};
        if (weights_load(ck->save_best, m, &e) == 0)
            memcpy(r->best, m->params, m->n_params * sizeof *r->best);
        memcpy(m->params, now, m->n_params * sizeof *now);
        free(now);
    }
}

/* A stop signal seen by every rank in the step's allreduce: rank 0 checkpoints, every rank
 * takes its exit status. */
static void fit_stop(Trainer *t, FitRun *r) {
    const CheckpointCfg *ck = &t->job->ckpt;
    if (r->root) {
        printf("\nstopping at step %lld on signal: ", (long long)r->st.global_step);
        int saved = ck->path[0] && save_checkpoint(t, &r->st) == 0;
        if (saved)
            printf("checkpoint written to %s; resume with the same command\n", ck->path);
        else
            printf("%s, so nothing was saved (exit status %d, not %d)\n",
                   ck->path[0] ? "the checkpoint could not be written" : "checkpoint = off",
                   EXIT_STOPPED_UNSAVED, EXIT_PREEMPTED);
        fflush(stdout);
        r->status = saved ? EXIT_PREEMPTED : EXIT_STOPPED_UNSAVED;
    }
    /* every rank exits with rank 0's status (it alone knows whether it saved) */
    dist_bcast(t->dist, &r->status, sizeof r->status, 0);
}

/* TerminateOnNaN: stop without a checkpoint, so that the last one written stays the last good
 * state (save_checkpoint also refuses non-finite parameters). */
static void fit_diverged(Trainer *t, FitRun *r, double loss_sum) {
    const CheckpointState *st = &r->st;
    if (r->root) {
        const char *ck = t->job->ckpt.path;
        printf("\nterminate_on_nan: the loss of global step %lld (epoch %d, step %lld) is %s: "
               "training stopped (exit status %d); %s%s\n",
               (long long)st->global_step, st->epoch + 1, (long long)st->step,
               isnan(loss_sum) ? "nan" : "infinite", EXIT_DIVERGED,
               ck[0] ? "the last checkpoint written before it is kept: " : "checkpoint = off",
               ck[0] ? ck : "");
        fflush(stdout);
    }
    r->status = EXIT_DIVERGED;
}

/* The steps of one epoch from st.step on; r->status set when a signal stopped them. */
static void fit_epoch_steps(Trainer *t, FitRun *r, EpochSums *es, int epoch) {
    const TrainCfg *tc = &t->job->train;
    const CheckpointCfg *ck = &t->job->ckpt;
    const int64_t n = t->train.n, B = tc->batch_size;
    double last_print = es->t_start;
    for (long s = (long)r->st.step; s < r->steps; s++) {
        int64_t g0 = s * B;
        int gB = (int)(n - g0 < B ? n - g0 : B);
        double step_start = now_seconds();
        int stop = 0;
        t->opt.cfg.lr = current_lr(t, &r->st);
        LossStats ls = train_step(t, t->perm + g0, gB, epoch, &es->tm, &stop);
        TIMELINE(TL_STEP, step_start, now_seconds(), t->dist->step, 0);
        if (tc->collective_timeout == 0 && r->timed < AUTO_STEPS) {
            r->step_secs[r->timed++] = now_seconds() - step_start;
            if (r->timed == AUTO_STEPS) train_set_auto_watchdog(t->dist, r->step_secs, AUTO_STEPS);
        }
        es->loss_sum += ls.loss_sum;
        es->correct += ls.correct;
        es->seen += gB;
        es->trained += gB;
        CheckpointState *st = &r->st;
        st->global_step++;
        st->step = s + 1;
        st->epoch = epoch;
        st->epoch_loss_sum = es->loss_sum;
        st->epoch_correct = es->correct;
        st->epoch_seen = es->seen;
        if (r->steplog) {
            fprintf(r->steplog, "%lld %d %.9g\n", (long long)st->global_step, epoch,
                    ls.loss_sum / gB);
            fflush(r->steplog); /* readable while training runs (tests watch it) */
        }
        if (stop) {
            fit_stop(t, r);
            return;
        }
        /* The loss sum came out of the step's allreduce: whether it is finite does not depend
         * on the order the ranks' parts were added in, so every rank takes this same decision. */
        if (tc->terminate_on_nan && !isfinite(ls.loss_sum)) {
            fit_diverged(t, r, ls.loss_sum);
            return;
        }
        if (r->root && ck->path[0] && ck->every_steps > 0 &&
            st->global_step % ck->every_steps == 0 && s + 1 < r->steps)
            save_checkpoint(t, st);
        double now = now_seconds();
        if (r->root && (r->tty ? now - last_print > 0.2 : now - last_print > 10.0) &&
            s + 1 < r->steps) {
            train_print_progress(r->tty, s + 1, r->steps, es->loss_sum / es->seen,
                                 es->correct / es->seen, es->trained / (now - es->t_start), 0);
            last_print = now;
        }
    }
}

/* After an epoch's steps: validation, the best epoch and early stopping, the logs, the next
 * phase, the epoch checkpoint. */
static void fit_end_epoch(Trainer *t, FitRun *r, const EpochSums *es, int epoch) {
    const Job *j = t->job;
    const CheckpointCfg *ck = &j->ckpt;
    Model *m = &t->model;
    CheckpointState *st = &r->st;
    double secs = now_seconds() - es->t_start;
    if (r->root)
        train_print_progress(r->tty, r->steps, r->steps, es->loss_sum / es->seen,
                             es->correct / es->seen, es->trained / secs, 1);
    double te = now_seconds();
    EvalResult v = trainer_evaluate(t, &t->val);
    TIMELINE(TL_EVALUATE, te, now_seconds(), (long)st->global_step, 0);
    double loss = es->loss_sum / es->seen, acc = es->correct / es->seen;
    /* best epoch and early stopping (every rank computes the same, from reduced values) */
    double mv = monitored(ck->monitor, loss, acc, &v);
    int improved = isfinite(mv) &&
                   (st->best_epoch < 0 || (ck->higher_is_better ? mv > st->best : mv < st->best));
    if (improved) {
        st->best = mv;
        st->best_epoch = epoch;
        st->epochs_since_best = 0;
        if (r->best) memcpy(r->best, m->params, m->n_params * sizeof *r->best);
    } else {
        st->epochs_since_best++;
    }
    r->stopped_early = ck->patience > 0 && st->epochs_since_best >= ck->patience;
    st->epoch = epoch + 1;
    st->step = 0;
    st->epoch_loss_sum = st->epoch_correct = st->epoch_seen = 0;
    if (r->root) {
        printf("epoch %d: %.1fs - %.0f img/s - loss: %.4f - accuracy: %.4f", epoch + 1, secs,
               es->trained / secs, loss, acc);
        if (v.count) printf(" - val_loss: %.4f - val_accuracy: %.4f", v.loss, v.accuracy);
        printf("%s\n", improved && (ck->save_best[0] || ck->patience) ? " (best so far)" : "");
        const StepTimes *tm = &es->tm;
        double total = tm->compute + tm->comm + tm->data;
        printf("  step time split: compute %.2f ms, gradient communication %.2f ms (%.1f%%), "
               "data %.2f ms (%.1f%%)\n",
               1e3 * tm->compute / r->steps, 1e3 * tm->comm / r->steps, 100 * tm->comm / total,
               1e3 * tm->data / r->steps, 100 * tm->data / total);
        model_print_profile(m, stdout);
        Err e = {0};
        if (improved && ck->save_best[0] && weights_save(ck->save_best, m, &e))
            fprintf(stderr, "convnet-dist: warning: best weights not saved: %s\n", e.msg);
        /* Keras logs the optimizer's rate before ReduceLROnPlateau changes it */
        EpochRecord rec = {epoch,
                           acc,
                           loss,
                           v.count ? v.accuracy : NAN,
                           v.count ? v.loss : NAN,
                           current_lr(t, st),
                           es->trained / secs,
                           secs};
        write_epoch_logs(t, &rec);
    }
    plateau_epoch_end(t, st, loss, acc, &v, epoch);
    /* Rank 0 drives the schedule: it decides the phase of the next epoch and every rank
     * follows; the checkpoint below then records the new phase and its fresh optimizer. */
    int next = t->phase;
    if (r->root) next = phase_of_epoch(j, epoch + 1);
    dist_bcast(t->dist, &next, sizeof next, 0);
    if (next != t->phase && epoch + 1 < j->train.epochs) {
        trainer_set_phase(t, next);
        optim_reset(&t->opt);
        st->phase = next;
        st->epochs_since_best = 0;
        plateau_start(t, st);
        if (r->root) print_phase(t);
        train_caches_update(t);
    }
    if (r->root) {
        if (ck->path[0] && ck->every_epoch) save_checkpoint(t, st);
        if (r->stopped_early)
            printf("early stopping: %s has not improved for %d epochs (best %.4f at epoch %d)\n",
                   monitor_names[ck->monitor], ck->patience, st->best, st->best_epoch + 1);
        fflush(stdout);
    }
}

/* After the last epoch: the test split (with the best epoch's weights when the job keeps
 * them, as the book tests its ModelCheckpoint(save_best_only) file), --save. */
static void fit_finish(Trainer *t, FitRun *r) {
    const Job *j = t->job;
    const CheckpointCfg *ck = &j->ckpt;
    Model *m = &t->model;
    const int use_best = r->best && r->st.best_epoch >= 0 && (ck->save_best[0] || ck->restore_best);
    float *final = NULL;
    if (use_best) {
        if (!ck->restore_best) {
            final = xmalloc(m->n_params * sizeof *final);
            memcpy(final, m->params, m->n_params * sizeof *final);
        }
        memcpy(m->params, r->best, m->n_params * sizeof *r->best);
    }
    EvalResult te = trainer_evaluate(t, &t->test);
    if (final) memcpy(m->params, final, m->n_params * sizeof *final);
    free(final);
    if (!r->root) return;
    printf("test%s: %lld samples - loss: %.4f - accuracy: %.4f\n",
           use_best ? " (best epoch's weights)" : "", (long long)te.count, te.loss, te.accuracy);
    /* beside the start-up's planned `buffers:`, what the run held at most (precision =
     * mixed_bfloat16 against float32, docs/mixed-precision.md) */
    struct rusage ru;
    if (!getrusage(RUSAGE_SELF, &ru))
        printf("peak resident memory: %.1f MB (rank 0)\n", ru.ru_maxrss / 1024.0);
    if (use_best)
        printf("best epoch: %d (monitored value %.4f)\n", r->st.best_epoch + 1, r->st.best);
    if (j->train.save[0]) {
        Err e = {0};
        if (weights_save(j->train.save, m, &e)) {
            fprintf(stderr, "convnet-dist: %s\n", e.msg);
            r->status = EXIT_RUNTIME;
        } else
            printf("weights saved to %s\n", j->train.save);
    }
    if (r->status == EXIT_OK) rundir_finish(j, stdout);
}

/* Seconds since this process started (/proc/self/stat's start time against /proc/uptime, to
 * the clock tick), or -1 where /proc does not say. */
static double process_age(void) {
    char buf[1024];
    double up = -1;
    unsigned long long start = 0;
    FILE *f = fopen("/proc/uptime", "r");
    if (f) {
        if (fscanf(f, "%lf", &up) != 1) up = -1;
        fclose(f);
    }
    f = fopen("/proc/self/stat", "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* field 22 (starttime) is the 20th after the name */
    for (int k = 0; p && k < 20; k++) p = strchr(p + 1, ' ');
    if (up < 0 || !p || sscanf(p + 1, "%llu", &start) != 1) return -1;
    return up - (double)start / (double)sysconf(_SC_CLK_TCK);
}

int trainer_fit(Trainer *t, ResumeMode resume_mode) {
    const Job *j = t->job;
    const TrainCfg *tc = &j->train;
    Dist *dist = t->dist;
    FitRun r;
    memset(&r, 0, sizeof r);
    r.root = dist->rank == 0;
    r.tty = r.root && isatty(STDOUT_FILENO);
    r.status = EXIT_OK;
    if (r.root) rundir_print(j, stdout);
    r.st = fresh_state(t);
    resume(t, &r.st, resume_mode);
    /* a resumed run continues in the checkpoint's phase, with its optimizer state */
    trainer_set_phase(t, r.st.phase);
    if (r.st.plateau_lr == 0) plateau_start(t, &r.st); /* a fresh run, or a version 1 checkpoint */
    if (r.root && j->n_phases > 1) print_phase(t);
    train_caches_update(t);
    fit_open_logs(t, &r);
    fit_init_best(t, &r);
    const int64_t n = t->train.n, B = tc->batch_size;
    r.steps = (long)((n + B - 1) / B);
    if (tc->steps_per_epoch > 0 && tc->steps_per_epoch < r.steps) r.steps = tc->steps_per_epoch;
    dist->step = (long)r.st.global_step;
    /* The watchdog starts at the configured timeout, or at 60 s until 20 steps give a median. */
    const double ct = tc->collective_timeout;
    dist_set_watchdog(dist, ct > 0 ? ct : ct == 0 ? 60.0 : 0.0);
    const double age = r.root ? process_age() : -1;
    if (age >= 0) /* what grows with the data set: the listing, if anything */
        printf("start-up: %.2f s from rank 0's start to training (listing %.2f s)\n", age,
               t->list_seconds);
    for (int epoch = r.st.epoch; epoch < tc->epochs && r.status == EXIT_OK && !r.stopped_early;
         epoch++) {
        train_epoch_permutation(t->perm, n, tc->seed, epoch, tc->shuffle);
        /* a resumed epoch continues its running sums */
        EpochSums es = {
            {0, 0, 0, 0, 0}, r.st.epoch_loss_sum, r.st.epoch_correct, r.st.epoch_seen, 0,
            now_seconds()};
        if (r.root) printf("Epoch %d/%d\n", epoch + 1, tc->epochs);
        train_stream_steps(t, (long)r.st.step, r.steps); /* streamed data: read ahead from here */
        fit_epoch_steps(t, &r, &es, epoch);
        train_stream_end(t);
        if (r.status != EXIT_OK) break;
        fit_end_epoch(t, &r, &es, epoch);
    }
    if (r.steplog) fclose(r.steplog);
    if (r.status == EXIT_OK) fit_finish(t, &r);
    free(r.best);
    return r.status;
}
