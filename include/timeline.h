/* timeline.h: `train --timeline FILE`, a per-rank record of what each rank did during training
 * (data, forward, backward and each layer's backward, each gradient allreduce bucket and the wait
 * for them, optimizer, evaluation, checkpoints), written by
 * rank 0 at the end (also after a stop signal or terminate_on_nan) in the Chrome trace-event
 * format that Horovod's timeline uses: it opens in Perfetto (ui.perfetto.dev) and
 * chrome://tracing, one process per rank.
 *
 * Off (the default), recording is one predictable branch on a global flag per event site:
 * nothing is allocated, no clock is read. On, each rank buffers its events in an array made at
 * the start (TIMELINE_CAPACITY events; later ones are counted and dropped), so recording costs
 * no allocation in a step. Times are seconds since a barrier at the start, so the ranks of one
 * host line up exactly and those of other hosts to their clocks' offset. */
#ifndef CONVNET_TIMELINE_H
#define CONVNET_TIMELINE_H

#include "dist.h"
#include "model.h"

typedef enum {
    TL_STEP,       /* one optimizer step (fit.c), the parent of the five below */
    TL_DATA,       /* loading a micro-batch */
    TL_FORWARD,    /* forward pass and loss of a micro-batch */
    TL_BACKWARD,   /* backward pass of a micro-batch */
    TL_ALLREDUCE,  /* waiting for the gradient allreduce and the step's loss sums; bytes */
    TL_OPTIMIZER,  /* the update */
    TL_EVALUATE,   /* validation at an epoch's end */
    TL_CHECKPOINT, /* rank 0 writing a checkpoint */
    TL_LAYER,      /* one layer's backward (index: the layer), inside its BACKWARD */
    TL_BUCKET,     /* one gradient allreduce bucket (index: the bucket, 0 first sent) from
                    * posted to seen complete, with its bytes: a track of its own per bucket */
    TL_KINDS
} TimelineKind;

#define TIMELINE_CAPACITY (1L << 18)

extern int timeline_on;

/* Collective: every rank starts buffering (path is rank 0's output) the training of model m
 * (its layers' names name the TL_LAYER events; d->time_grads is set for the buckets' times). */
void timeline_start(Dist *d, const char *path, const Model *m);
/* Record an event [t0, t1) (now_seconds() clock) of optimizer step `step` (global, from 1);
 * index: the layer of a TL_LAYER, the bucket of a TL_BUCKET, else 0. */
void timeline_record(TimelineKind k, int index, double t0, double t1, long step, double bytes);
/* PassCtx.layer_timed: a TL_LAYER event of the Dist's current step (arg: the Dist). */
void timeline_layer_timed(void *dist, int layer, double t0, double t1);
/* After dist_grad_finish: a TL_BUCKET event per bucket of the step's overlapped allreduce. */
void timeline_record_buckets(const Dist *d);
/* Collective: rank 0 gathers every rank's events and writes the file (temp file + rename).
 * 0, or -1 with e set on rank 0. Stops recording and frees the buffers. */
int timeline_finish(Dist *d, Err *e);

/* The recording sites: nothing but the flag's test when off (the arguments, a clock read
 * among them, are evaluated only when on). */
#define TIMELINE(kind, t0, t1, step, bytes)                                       \
    do {                                                                          \
        if (timeline_on) timeline_record((kind), 0, (t0), (t1), (step), (bytes)); \
    } while (0)

#endif
