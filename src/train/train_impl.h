/* train_impl.h: what src/train.c (data, caches, one step, bench) shares with src/fit.c (the
 * epoch loop, checkpoints, logs, early stopping). Private to those two files. */
#ifndef CONVNET_TRAIN_IMPL_H
#define CONVNET_TRAIN_IMPL_H

#include "loss.h"
#include "train.h"

/* Rank 0 prints "convnet-dist: <e->msg>", then every rank stops with `status`: for failures
 * that every rank meets alike (a rank-local failure prints on its own rank: rank_fail). */
void trainer_fail(const Trainer *t, int status, const Err *e) __attribute__((noreturn));
/* A failure this rank met alone (its memory, its sample, what rank 0 alone reads): it says so
 * itself, naming its rank, and ends the job. */
void trainer_fail_local(const Trainer *t, int status, const Err *e) __attribute__((noreturn));
/* The steps [first, steps) of an epoch (t->perm) are read ahead from a streaming training
 * source; train_stream_end ends any pass (early, or at its end). */
void train_stream_steps(Trainer *t, long first, long steps);
void train_stream_end(Trainer *t);
/* trainer_data.c, in trainer_init's order: open every split (listings, mappings, packs;
 * nothing decoded), ... plan and checks ..., decode (loading = memory only), the labels against
 * the model, the prefetcher; train_data_free undoes them all. */
void train_data_open(Trainer *t);
void train_data_load(Trainer *t);
void train_data_check_labels(Trainer *t);
void train_data_start(Trainer *t);
void train_data_free(Trainer *t);
/* A pass over samples [lo, hi) of d in batches of max_batch (evaluation, caches); any pass of
 * a streamed source (not cached by c) goes through the prefetcher. */
void train_stream_range(Trainer *t, const Source *d, const FeatureCache *c, int64_t lo, int64_t hi);
void train_stream_begin(Trainer *t, const Source *d, const FeatureCache *c, long batches);
/* Samples t->ids[0..n) of d (or their cached features) where the forward pass starts, labels
 * into t->labels; returns the layer to start at. */
int train_load_batch(Trainer *t, const Source *d, const FeatureCache *c, int n);
/* Unmap or free a feature cache. */
void train_cache_free(FeatureCache *c);
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
