/* preflight.h: checks made before a run commits memory or time to its inputs.
 *
 * Owns: the plan's memory against the node's (a message naming the biggest buffers, the
 * layer behind them and a hint), the output paths a training run will write (checked before
 * the first step, not after the last), degenerate class folders, and the naming of a
 * parameter (layer, tensor, index) for messages about non-finite weights.
 */
#ifndef CONVNET_PREFLIGHT_H
#define CONVNET_PREFLIGHT_H

#include "data.h"
#include "job.h"
#include "model.h"

/* "layer 'conv2d_1' kernel, value 17 of 864" for parameter index i of a planned model. */
void preflight_param_name(const Model *m, size_t i, char *buf, size_t n);

/* -1 with e naming path, the layer and tensor when params (m->n_params of them, the layout of
 * m) hold a NaN or an infinity; 0 otherwise. `what` is the file's role ("weights file"). */
int preflight_params_finite(const Model *m, const float *params, const char *path, const char *what,
                            Err *e);

/* The bytes model_alloc() and an optimizer with opt_floats floats of state will take, times
 * the ranks on this node, against the node's physical memory (and the process's
 * address-space limit): -1 with e naming the biggest buffers, the layer with the largest
 * output and a batch_size that fits. `node_bytes` 0: this machine's memory. */
int preflight_check_memory(const Model *m, size_t opt_floats, int batch_size, int ranks_on_node,
                           const char *job, unsigned long long node_bytes, Err *e);

/* Every file a training run of j writes (train.save, step_log, csv_log, chart, checkpoint
 * path and save_best): its folder must exist and be writable, and it must not be a
 * directory. 0, or -1 with e naming the key and the path. */
int preflight_check_outputs(const Job *j, Err *e);

/* [data] class_names (when set): a regular file naming at least `outputs` classes, one per
 * line (a 1-unit sigmoid output has two); outputs 0 checks only that the file can be read.
 * predict shows numbers for a short file; a training run refuses it. 0, or -1 with e naming
 * the file. */
int preflight_check_class_names(const Job *j, int outputs, Err *e);

/* Class folders of an image training set: at least two, and exactly two under binary
 * cross-entropy. 0, or -1 with e naming the folder. */
int preflight_check_classes(const Job *j, const Dataset *train, Err *e);

#endif
