/* keras3_h5.h: the Keras 3 weights layout (`model.save_weights("x.weights.h5")`, keras
 * saving_lib's H5IOStore), shared by the importer (keras3_h5.c) and the exporter
 * (export_keras.c).
 *
 * Layout of a Sequential model's file: a group per saveable object, each with a `vars` group
 * whose datasets are named "0", "1", ... in the layer's variable order (Conv2D and Dense:
 * kernel, then bias). The model itself is `/vars` (empty for Sequential); its layers are
 * `/layers/<key>/vars`, where <key> is NOT the layer's name but the snake-case class name,
 * numbered per class in layer order: conv2d, conv2d_1, max_pooling2d, flatten, dense, dense_1.
 * Every layer has its group, also those without weights (empty `vars`); Sequential's input
 * layer is not among its layers. A nested model (a functional base inside a Sequential) would
 * be `/layers/functional/layers/<key>/vars`: not supported here (our models are flat).
 * Conv2D kernels are (KH, KW, C, OC), Dense kernels (IN, UNITS), biases (UNITS,), float32.
 * [preprocess] has no Keras layer (preprocess_input is a function): it has no key.
 */
#ifndef CONVNET_KERAS3_H5_H
#define CONVNET_KERAS3_H5_H

#include "common.h"
#include "model.h"

/* Keras's snake-case class name of a layer kind ("max_pooling2d"): its LayerOps.keras3_key;
 * NULL when Keras has no such layer ([preprocess], LAYER_F_NO_KERAS) or the kind lacks it. */
const char *keras3_class_key(LayerKind kind);

/* The Keras 3 key of every model layer into keys[l] ("conv2d_1"; "" for a layer without
 * one). */
void keras3_layer_keys(const Model *m, char (*keys)[64]);

/* The Keras shape of weight `which` (0 kernel, 1 bias) of L into dims; its rank, 0 when the
 * kind has no weights in Keras's layout. */
int keras_weight_dims(const Layer *L, int which, unsigned long long *dims);
/* L's weight names in Keras's order, comma-separated, into buf. */
void keras_weight_list(const Layer *L, char *buf, size_t n);
/* "; use_bias = false" for a layer without a bias (nor BatchNormalization's gamma), else "": the
 * likely reason a Keras file's weight count differs from the job's (both importers say it). */
const char *keras_use_bias_hint(const Layer *L);

#if CONVNET_HDF5
#include <hdf5.h>
/* Fill the model from the open Keras 3 file f (path for messages): as keras_h5_load_weights.
 * 0, or -1 with e set. */
int keras3_h5_load_file(hid_t f, const char *path, Model *m, Err *e);
/* 1 when the open file's root looks like Keras 3's layout (a `layers` group, no
 * `layer_names` attribute). */
int keras3_h5_detect(hid_t root);
#endif

#endif
