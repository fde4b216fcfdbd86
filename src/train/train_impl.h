/* train_impl.h: what src/train.c (data, caches, one step, bench) shares with src/fit.c (the
 * epoch loop, checkpoints, logs, early stopping). Private to those two files. */
#ifndef CONVNET_TRAIN_IMPL_H
#define CONVNET_TRAIN_IMPL_H

#include "loss.h"
#include "train.h"

/* (Re)build the feature caches the current phase allows (start, and after a phase switch). */
void train_caches_update(Trainer *t);
/* perm[0..n): the epoch's order, Fisher-Yates from the keyed stream (seed, shuffle, epoch). */
void train_epoch_permutation(int64_t *perm, int64_t n, uint64_t seed, int epoch, int shuffle);
/* One optimizer step on the global batch batch[0..gB): returns its (loss sum, correct) summed
 * over ranks; *stop is set when any rank saw a stop signal. */
LossStats train_step(Trainer *t, const int64_t *batch, int gB, int epoch, StepTimes *tm, int *stop);
/* The progress line: rewritten in place on a terminal, one line per call otherwise. */
void train_print_progress(int tty, long step, long steps, double loss, double acc, double ips,
                          int final);
/* collective_timeout = auto: 10x the median of the first n step times, at least 60 s. */
void train_set_auto_watchdog(Dist *d, double *secs, int n);

#endif
