/* train.h: the trainer: data sets, model, optimizer and the distributed training loop.
 *
 * Every rank holds a replica. Each epoch's order is one permutation from (seed, epoch); each
 * step's global batch of `batch_size` samples is split into contiguous per-rank shards (sizes
 * differ by at most one, none dropped or duplicated); gradients are summed over ranks and
 * already divided by the global batch, so the update equals one process's on the same batch.
 */
#ifndef CONVNET_TRAIN_H
#define CONVNET_TRAIN_H

#include "data.h"
#include "dist.h"
#include "job.h"
#include "model.h"
#include "optim.h"
#include "source.h"

/* Feature cache of one split: the output of layers [0, from) for every sample, computed once
 * (each rank its shard, written into one file that every rank then maps read-only: one copy per
 * node, in the page cache), so that training and evaluation start at layer `from`. Only for a
 * prefix that is frozen and, for training, free of random layers (augmentation, dropout), so
 * the cached features are exactly what each epoch would compute. */
typedef struct {
    int from;       /* 0: no cache */
    size_t dim;     /* floats per sample: the size of layer `from`'s input */
    const float *x; /* (n, dim): the mapping, or `owned` */
    void *map;      /* the file's mapping (NULL: in memory) */
    size_t map_len;
    float *owned; /* the in-memory copy (when no file could be shared by every rank) */
} FeatureCache;

/* A pass's batch order for the prefetcher: this rank's shard of each global batch of `perm`
 * from step `first` (steps modulo `cycle` when cycle > 0: the bench), cut into `micro`
 * micro-batches as train_step cuts it (gradient_accumulation_steps), or, without perm, the
 * samples lo..hi in batches of B (evaluation, caches). */
typedef struct {
    const int64_t *perm;
    int64_t n, lo, hi;
    int B, rank, size;
    long first, cycle;
    int micro; /* micro-batches per step (>= 1) */
} BatchPlan;

typedef struct {
    const Job *job; /* read-only: the model has its own copy of the layers */
    Dist *dist;
    Model model;
    Optimizer opt;
    Source train, val, test; /* val.n == 0 when the job has no validation data */
    int n_classes;           /* model outputs (1 for binary) */
    /* per-step buffers, allocated once */
    int64_t *perm;                       /* train.n: this epoch's order */
    int64_t *ids;                        /* max_batch: global sample indices of this rank's shard */
    int32_t *labels;                     /* max_batch */
    float *dlogits;                      /* max_batch * outputs */
    int phase;                           /* index into job->phases */
    FeatureCache cache_train, cache_val; /* built by trainer_fit (test is evaluated once) */
    struct Prefetch *pf;     /* streaming sources' reader threads (NULL: every split direct) */
    const Source *streaming; /* the source the current pass streams (NULL: none) */
    BatchPlan plan;
    double list_seconds; /* the folders' listings at start-up (a pack's folder included) */
} Trainer;

typedef enum {
    TRAINER_NO_DATA,   /* plan and allocate only (summary) */
    TRAINER_LOAD_DATA, /* read the job's data sets */
    TRAINER_SYNTHETIC  /* random pixels and labels of the job's input shape (bench) */
} TrainerData;

/* Open the data (all ranks: listings, mappings; nothing decoded), plan the model and check the
 * plan, the labels and the memory, then (loading = memory) decode the data, allocate the model, initialise parameters on rank 0 and
 * broadcast them, check all ranks run the same job. Exits with a message on bad input. */
void trainer_init(Trainer *t, const Job *job, Dist *dist, TrainerData data);
void trainer_free(Trainer *t);
/* Make phase `phase` of the job's schedule current: the model's layers' trainable flags (the
 * job's, plus every layer from the phase's unfreeze_from up), hence the trainable parameter range
 * that is allreduced and updated, and the learning rate. The optimizer state is left alone. */
void trainer_set_phase(Trainer *t, int phase);

typedef struct {
    double loss, accuracy;
    int64_t count;
} EvalResult;

/* Loss and accuracy over a whole split, sharded across ranks; every sample counted once. */
EvalResult trainer_evaluate(Trainer *t, const Source *d);

typedef enum {
    RESUME_AUTO,     /* resume when the job's checkpoint exists (the default) */
    RESUME_REQUIRED, /* --resume: a checkpoint must exist */
    RESUME_NEVER     /* --no-resume: start afresh (the checkpoint is overwritten) */
} ResumeMode;

/* The full fit: epochs, validation, checkpoints, early stopping, final test. Returns the
 * process exit status (EXIT_PREEMPTED after a SIGTERM/SIGUSR1 stop). */
int trainer_fit(Trainer *t, ResumeMode resume);

/* Throughput: `reps` timed chunks of `steps` optimizer steps after `warmup` untimed ones.
 * img_s[r] receives chunk r's global images per second, times (if non-NULL) the step split
 * summed over the timed chunks. */
typedef struct {
    double data, compute, comm; /* seconds */
    double loss, optim;         /* parts of compute: the loss (with its gradient), the update */
} StepTimes;
void trainer_bench(Trainer *t, int warmup, int steps, int reps, double *img_s, StepTimes *times);
/* The same for inference: the forward pass alone over full batches (what a frozen base or
 * evaluation costs); times->compute receives its seconds. */
void trainer_bench_forward(Trainer *t, int warmup, int steps, int reps, double *img_s,
                           StepTimes *times);

/* Rank 0's start-up printout: resolved configuration, ranks x threads, model summary. */
void trainer_print_setup(const Trainer *t, FILE *f);

#endif
