/* data.h: in-memory data sets and the loaders that fill them.
 *
 * A Dataset is N samples of H x W x C uint8 pixels (NHWC) plus int32 labels. Pixels stay
 * uint8 in memory (4x smaller than float); a Dataset becomes a memory source (source.h), whose
 * source_gather_batch() converts a batch with the data section's scale.
 */
#ifndef CONVNET_DATA_H
#define CONVNET_DATA_H

#include <stdint.h>

#include "common.h"

typedef struct {
    int64_t n;          /* samples */
    int h, w, c;        /* per-sample shape */
    uint8_t *pixels;    /* n * h * w * c, NHWC */
    int32_t *labels;    /* n */
    int n_classes;      /* number of classes seen or declared (0 if unknown) */
    char **class_names; /* n_classes names for folder data sets, else NULL */
    int64_t skipped;    /* files skipped as unreadable (folder data sets) */
} Dataset;

void dataset_free(Dataset *d);

/* Read an IDX image file (magic 0x803, uint8, N x H x W) and label file (0x801, uint8, N),
 * gzip'd or not. Validates magic, dimensions and length; 0 or -1 with e set. */
int idx_load(Dataset *d, const char *images_path, const char *labels_path, Err *e);

/* An IDX file's bytes for the streaming source: an uncompressed file is mmapped read-only, a
 * gzip'd one is decompressed whole into memory (MNIST's training images: 47 MB). The header
 * and the length are checked as idx_load checks them. 0, or -1 with e naming the file. */
typedef struct {
    const unsigned char *data;    /* the whole file's bytes */
    const unsigned char *payload; /* after the header */
    uint32_t dims[3];
    int gzipped;
    void *map;
    size_t map_len;
    unsigned char *heap;
} IdxData;
int idx_data_open(IdxData *x, const char *path, int ndim, Err *e);
void idx_data_close(IdxData *x);

/* Check that every label is in [0, n_classes); 0 or -1 with e naming the file and the sample's
 * index in it (first_index + i: a validation split starts inside the training file). */
int dataset_check_labels(const Dataset *d, int n_classes, int64_t first_index, const char *what,
                         Err *e);

#endif
