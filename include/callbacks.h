/* callbacks.h: Keras's ReduceLROnPlateau as a job section, its decisions as a pure function of
 * the monitored series (keras/src/callbacks/reduce_lr_on_plateau.py), so that a scripted series
 * tests them and rank 0 alone takes them during training (fit.c broadcasts the state).
 *
 *   [reduce_lr_on_plateau]
 *   monitor = val_loss   factor = 0.1   patience = 10   mode = auto   min_delta = 1e-4
 *   cooldown = 0   min_lr = 0          (Keras's defaults)
 */
#ifndef CONVNET_CALLBACKS_H
#define CONVNET_CALLBACKS_H

#include "ini.h"

typedef struct {
    int enabled; /* the job has the section */
    int monitor; /* Monitor (job.h): val_loss, val_accuracy, loss, accuracy */
    int higher;  /* mode max, or auto on an accuracy */
    double factor, min_delta, min_lr;
    int patience, cooldown;
} PlateauCfg;

/* The callback's state, carried in the checkpoint. lr == 0: not started (the phase's rate). */
typedef struct {
    double lr;   /* the optimizer's rate as the callback set it, float32-rounded as Keras's */
    double best; /* +-inf at the start, as Keras's _reset */
    int wait, cooldown_counter;
} PlateauState;

/* Read [reduce_lr_on_plateau] (s may be NULL: disabled). 0, or -1 with e set. */
int plateau_configure(IniFile *ini, Section *s, PlateauCfg *c, Err *e);
/* Keras's _reset (on_train_begin: at the start and at each new phase), with rate lr. */
void plateau_reset(const PlateauCfg *c, PlateauState *st, double lr);
/* on_epoch_end with the monitored value `current`: 1 when it reduced st->lr. */
int plateau_update(const PlateauCfg *c, PlateauState *st, double current);

#endif
