/* export.h: a trained model out of convnet-dist (`convnet-dist export JOB --weights FILE
 * --format keras2|keras3|onnx --out PATH`).
 *
 * keras2: Keras 2 / tf.keras `save_weights` HDF5, as Keras writes it for the same Sequential
 *   model: root attributes layer_names (every Keras layer, fixed-length strings), backend
 *   ("tensorflow") and keras_version; a group per layer with attribute weight_names
 *   ("conv2d/kernel:0", "conv2d/bias:0"; an empty float64 array for layers without weights) and
 *   the float32 datasets at <layer>/<layer>/kernel:0. This is also what [keras_h5] imports.
 * keras3: Keras 3 `.weights.h5` (layout in keras3_h5.h): /vars, /layers/<key>/vars/0, 1.
 * onnx: the inference graph, opset 13 (export_onnx.c).
 * Layers without a Keras counterpart ([preprocess]) are left out of the Keras files (they have
 * no weights). Every file is built in memory and written atomically (temp file, fsync, rename).
 */
#ifndef CONVNET_EXPORT_H
#define CONVNET_EXPORT_H

#include "common.h"
#include "job.h"
#include "model.h"

typedef enum { EXPORT_KERAS2, EXPORT_KERAS3, EXPORT_ONNX } ExportFormat;

/* "keras2" | "keras3" | "onnx"; 0, or -1 with e set (listing the formats). */
int export_format_parse(const char *s, ExportFormat *f, Err *e);

/* The model's parameters as a Keras weights file (keras3 = 0: Keras 2 layout, 1: Keras 3).
 * 0, or -1 with e set (nothing written at path). */
int export_keras_h5(const Model *m, const char *path, int keras3, Err *e);

/* The inference graph as ONNX: input "input" float32 (N, H, W, C) pixels as `predict` decodes
 * them (0..255), output "probabilities" (N, K). 0, or -1 with e set. */
int export_onnx(const Model *m, const Job *job, const char *path, Err *e);

/* Dispatch on the format. */
int export_model(const Model *m, const Job *job, ExportFormat f, const char *path, Err *e);

#endif
