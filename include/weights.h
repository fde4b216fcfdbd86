/* weights.h: the weights file: a header naming the model structure, every parameter, a CRC.
 *
 * Layout (little-endian): magic "CNDWGT01" (8 bytes), u32 format version, u32 layer count,
 * u64 parameter count, u64 structure hash (layer kinds, shapes, parameter counts), then
 * n_params float32, then u32 CRC-32 of everything before it. Written atomically.
 */
#ifndef CONVNET_WEIGHTS_H
#define CONVNET_WEIGHTS_H

#include "model.h"

#define WEIGHTS_VERSION 1u

/* Hash of what a weights file must match: each layer's kind, shapes and parameter counts. */
uint64_t model_structure_hash(const Model *m);

int weights_save(const char *path, const Model *m, Err *e);
/* Loads into m->params only when the whole file checks out; otherwise m is untouched. */
int weights_load(const char *path, Model *m, Err *e);
/* Read a weights file's parameters without a model (for diff-weights); malloc'd. */
float *weights_read_raw(const char *path, uint64_t *n_params, Err *e);

#endif
