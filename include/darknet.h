/* darknet.h: Darknet networks as pretrained bases: a `[darknet]` job section expands a Darknet
 * .cfg into our layers (Conv2D with its batch normalisation folded in, LeakyReLU 0.1,
 * MaxPooling2D, GlobalAveragePooling2D), and the .weights file fills their parameters.
 *
 * Darknet's weights file: int32 major, minor, revision, then the images seen (int32 when
 * major*10+minor < 2, else int64), then per convolutional layer: biases[n], and when
 * batch_normalize=1 scales[n], rolling_mean[n], rolling_variance[n]; then weights[n][c][k][k].
 * Batch normalisation in inference form, (x - mean) / (sqrt(var) + 1e-6) * scale + bias as
 * Darknet computes it, is folded into the kernel and bias, exactly (up to rounding).
 */
#ifndef CONVNET_DARKNET_H
#define CONVNET_DARKNET_H

#include "ini.h"
#include "layer.h"
#include "model.h"


typedef struct {
    char *weights; /* .weights path */
    int first;     /* index of the first imported layer in the job's layers */
    int count;     /* layers imported */
    int *has_bn;   /* per imported layer: 1 for a convolution with batch_normalize */
    int *is_conv;  /* per imported layer: 1 for a convolution (which owns weights) */
    int complete;  /* every layer of the cfg was imported: the file must hold exactly them */
} DarknetImport;

/* Expand the [darknet] section s (keys: cfg, weights, layers = how many of the cfg's layers to
 * import (default all), trainable) into layers appended at layers[*n_layers...]; at most
 * `capacity` layers in all. Paths are resolved against root. 0, or -1 with e naming the file
 * and line. */
int darknet_expand(IniFile *ini, Section *s, const char *root, Layer *layers, int *n_layers,
                   int capacity, DarknetImport *imp, Err *e);

/* Read the weights into the planned model's parameters (BN folded, OIHW -> HWIO). Validates
 * the header and that the file holds exactly the imported layers' values (more is allowed only
 * when fewer layers than the cfg's were imported). 0, or -1 with e naming the file and offset. */
int darknet_load_weights(const DarknetImport *imp, Model *m, Err *e);

void darknet_import_free(DarknetImport *imp);

#endif
