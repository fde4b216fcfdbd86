/* job.h: a resolved job: data, model layers and training settings read from a job file
 * (plus --set overrides), every value checked, every default filled in. */
#ifndef CONVNET_JOB_H
#define CONVNET_JOB_H

#include "callbacks.h"
#include "darknet.h"
#include "ini.h"
#include "layer.h"
#include "loss.h"
#include "optim.h"
#include "schedule.h"

typedef enum { DATA_IDX, DATA_IMAGES } DataFormat;

typedef struct {
    DataFormat format;
    char *root; /* directory that relative data paths are resolved against */
    /* idx: resolved paths (validation_* optional) */
    char *train_images, *train_labels, *test_images, *test_labels;
    char *val_images, *val_labels;
    /* images: class-folder directories (validation_dir optional) */
    char *train_dir, *val_dir, *test_dir;
    int image_h, image_w, channels;
    int binary_labels;   /* label_mode = binary */
    int strict;          /* a bad image is an error, not a skipped file */
    int decode_full;     /* decode = full: every JPEG at full size, then resized (Keras's pipeline);
                        * scaled (0): large ones DCT-scaled by libjpeg first (2-4x faster) */
    float scale, offset; /* pixel -> float: x * scale + offset */
    char *class_names;   /* optional file of class names, one per line in output order */
    /* docs/data.md: loading = stream (0: samples read and decoded per step by prefetch worker
     * threads, `prefetch` batches ahead) or memory (1: every split decoded up front); pack_dir:
     * each split read from DIR/train.pack, DIR/validation.pack, DIR/test.pack (images only) */
    int loading_memory;
    int prefetch;
    char *pack_dir;
} DataCfg;

#define DATA_PREFETCH_DEFAULT 3

typedef struct {
    LossKind loss;
    OptConfig opt;
    int batch_size; /* the global batch, over all ranks */
    int epochs;
    uint64_t seed;
    double validation_split;
    long steps_per_epoch; /* 0: the whole training set each epoch */
    int shuffle;
    /* Watchdog on the training loop's collectives, seconds; 0 = auto (at least 60 s, 10x the
     * median step once 20 steps are measured), < 0 = off. */
    double collective_timeout;
    /* Sum gradients over ranks during the backward pass, in buckets of about bucket_mb MB cut
     * at layer boundaries, instead of in one allreduce after it. */
    int overlap_allreduce;
    double bucket_mb;
    char *save;           /* final weights, written by rank 0 ("" = none) */
    char *step_log;       /* per-step losses, for equivalence tests ("" = none) */
    char *csv_log;        /* per-epoch CSV, Keras CSVLogger's columns ("" = none) */
    char *chart;          /* per-epoch SVG chart of loss and accuracy ("" = none) */
    ConvAlgoId conv_algo; /* conv_algorithm: CONV_ALGO_DEFAULT, _AUTO or a fixed one; layers
                           * without their own `algorithm` key get it */
    int mixed_bf16;       /* precision = mixed_bfloat16 (1) or float32 (0): convolutions may
                           * compute in bfloat16 (docs/mixed-precision.md) */
    int feature_cache;    /* 1 (auto): run a frozen, deterministic prefix of the model once per
                           * split and train on its cached output; 0 (off) */
    LrSchedule schedule;  /* lr_schedule and its keys (schedule.h); phases inherit it */
    int terminate_on_nan; /* Keras's TerminateOnNaN: stop when a step's loss is not finite */
    /* Each rank's share of the global batch runs as this many micro-batches whose gradients
     * add up before the one allreduce and update of the optimizer step. */
    int grad_accum;
    /* lr_scaling = linear: every learning rate the job states is multiplied by lr_scale =
     * batch_size / lr_reference_batch (Goyal et al. 2017); 1 otherwise */
    int lr_scaling_linear, lr_reference_batch;
    double lr_scale;
} TrainCfg;

/* A fine-tuning schedule: [phase] sections in order (Keras: a fit() per phase, after setting
 * layers' trainable flags and compiling a fresh optimizer). A job without [phase] sections has
 * one phase from [train]. Epochs count across phases: phase p runs after the epochs of all
 * earlier ones. */
typedef struct {
    int epochs;
    float lr;
    int unfreeze_from;   /* every layer from this index up trains as well; -1: the layers'
                        * own trainable flags only */
    int line;            /* of the [phase] header, 0 for the implicit phase */
    LrSchedule schedule; /* initial_learning_rate = lr; after lr_scaling */
} PhaseCfg;

typedef enum { MONITOR_VAL_LOSS, MONITOR_VAL_ACCURACY, MONITOR_LOSS, MONITOR_ACCURACY } Monitor;

/* [checkpoint]: crash-safe checkpoints, best weights (Keras ModelCheckpoint save_best_only) and
 * early stopping (Keras EarlyStopping). */
typedef struct {
    char *path;       /* checkpoint file ("" = no checkpoints, no resume) */
    int in_run_dir;   /* path is the default, the job's run directory (rundir.h) */
    long every_steps; /* also every N optimizer steps (0 = only at epoch ends) */
    int every_epoch;  /* at the end of each epoch */
    int keep;         /* keep the last K checkpoints: path, path.1, ... */
    char *save_best;  /* weights file of the best epoch so far ("" = none); the final test then
                         * evaluates these weights, as the book does */
    Monitor monitor;
    int higher_is_better; /* from mode (auto: accuracy max, loss min) */
    int patience;         /* early stopping after this many epochs without improvement (0 = off) */
    int restore_best;     /* end training with the best weights in the model */
} CheckpointCfg;

typedef struct Job {
    IniFile ini;
    char *name;
    DataCfg data;
    TrainCfg train;
    CheckpointCfg ckpt;
    PlateauCfg plateau; /* [reduce_lr_on_plateau] */
    Layer *layers;
    int n_layers;
    int has_darknet; /* a [darknet] section imported a pretrained base */
    DarknetImport darknet;
    char *keras_h5;   /* [keras_h5] file: Keras HDF5 weights loaded by layer name (NULL: none) */
    PhaseCfg *phases; /* n_phases >= 1 */
    int n_phases;
    uint64_t hash;        /* of the whole resolved configuration: every rank must agree */
    uint64_t resume_hash; /* of what a checkpoint must match to be resumed (not epochs, paths) */
} Job;

/* Parse, apply overrides ("label.key=value"), resolve and check everything that can be checked
 * without data. 0, or -1 with e naming the file and line. */
int job_load(Job *j, const char *path, char *const *overrides, int n_overrides, Err *e);
void job_free(Job *j);

#endif
