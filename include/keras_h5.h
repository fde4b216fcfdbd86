/* keras_h5.h: pretrained weights from a Keras HDF5 weights file (Keras 2 `save_weights`, the
 * keras-applications files such as vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5, or the
 * `model_weights` group of a whole-model .h5), read through the HDF5 C library.
 *
 * Layout: the root (or /model_weights) has the attribute `layer_names`, a list of strings (long
 * lists are split by Keras into layer_names0, layer_names1, ...); each name is a group whose
 * attribute `weight_names` lists its weights in the layer's order (kernel, then bias), each a
 * dataset at group/weight_name ("block1_conv1/kernel:0", or "block1_conv1_W_1:0" in the 2016
 * files). Conv2D kernels are (KH, KW, C, OC) and Dense kernels (IN, UNITS): our layouts, so the
 * values are copied as they are. Layers without weights (input, pooling) have an empty list.
 *
 * A Keras 3 `.weights.h5` (no layer_names; groups /layers/<key>/vars) goes to keras3_h5.c,
 * which matches layers by their Keras 3 keys (layout in keras3_h5.h). Anything else is refused
 * as an unsupported layout, the message listing the supported ones.
 *
 * Built with HDF5=0 the loader only returns an error saying how to get HDF5.
 */
#ifndef CONVNET_KERAS_H5_H
#define CONVNET_KERAS_H5_H

#include "common.h"
#include "isolate.h"
#include "model.h"

/* Fill the planned, allocated model's parameters from the file at path. Every layer of the file
 * that has weights must match, by name (Layer.name), a model layer with parameters of exactly
 * the file's shapes; model layers the file does not name are left as they are (a new head).
 * 0, or -1 with e naming the file (and the layer, dataset and shapes where they apply); on an
 * error, layers before the faulty one may already have been loaded. */
int keras_h5_load_weights(const char *path, Model *m, Err *e);

/* The same from a file image in memory (buf[0..n), `name` in messages), in this process. */
int keras_h5_load_weights_image(const void *buf, size_t n, const char *name, Model *m, Err *e);

/* The same in the sandboxed child process (isolate.h) that keras_h5_load_weights uses: the
 * fuzz target's way in. opts->ended says how the child ended. */
int keras_h5_load_isolated(const void *image, size_t n, const char *path, Model *m,
                           IsolateOpts *opts, Err *e);

#endif
