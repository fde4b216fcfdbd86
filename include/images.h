/* images.h: JPEG image folders as data sets, single-image decoding, JPEG writing, and the
 * augmentation preview.
 *
 * Owns the Keras image_dataset_from_directory equivalent: one sub-folder per class (classes
 * in alphabetical order, label = class index), every JPEG decoded once with TurboJPEG and
 * resized bilinearly (tf.image.resize semantics) into the Dataset's uint8 NHWC pixels, in
 * parallel over files. Unreadable images are skipped with one warning line each (or are a
 * hard error in strict mode). Implemented in src/data/images.c (decoding) and
 * src/data/image_list.c (listing); augment_preview_write lives in
 * src/augment.c beside the augmentation layers it runs.
 */
#ifndef CONVNET_IMAGES_H
#define CONVNET_IMAGES_H

#include <stdint.h>

#include "common.h"
#include "data.h"
#include "dist.h"
#include "layer.h"

/* Images whose JPEG header declares more pixels than this are refused (unless the options
 * say otherwise): decoding them would take gigabytes. */
#define IMAGES_DEFAULT_MAX_PIXELS 100000000LL

typedef struct {
    int height, width;  /* target size, Keras image_size = (height, width) */
    int channels;       /* 1 = grayscale, 3 = rgb (Keras color_mode) */
    int strict;         /* 1: an unreadable image is an error; 0: skip it with a warning */
    int64_t max_pixels; /* header width * height above this = bad image; 0 = the default */
    int exact;          /* 1: always decode at full size (bit-for-bit Keras' pipeline before
                         * rounding); 0: let libjpeg DCT-scale large images down first */
    int quiet;          /* 1: no warning lines for skipped files (ranks other than 0) */
} ImageDirOptions;

/* 180x180, rgb, not strict, default pixel guard, DCT scaling on. */
void image_dir_options_default(ImageDirOptions *o);

/* Load dir/<class>/...(*.jpg|*.jpeg, recursively inside each class folder, hidden class
 * folders ignored) into d: d->n images of height x width x channels uint8 (NHWC), labels =
 * class index in alphabetical class order, d->class_names / d->n_classes, d->skipped =
 * files skipped as unreadable. Files without an image extension are ignored silently;
 * .png/.gif/.bmp files are decoded if their content is JPEG, otherwise they count as
 * unreadable ("unsupported format"). 0, or -1 with e set (naming the directory or file);
 * on error d is left empty. */
int images_load_dir(Dataset *d, const char *dir, const ImageDirOptions *o, Err *e);

/* A folder of class folders, listed without opening an image: Keras' order (classes sorted,
 * then each file's folder, then its name), every relative path once in one arena. Files that
 * stat() shows to be unusable (not regular, empty, over 1 GiB) are left out with one warning
 * each (quiet: none; strict: an error naming the file) and counted in skipped. fingerprint:
 * FNV-1a over every listed file's relative path, size and mtime in listing order (skipped
 * ones included), the identity of the data a pack or a cache is made from. */
typedef struct {
    char *dir;
    int64_t n;
    char *names;     /* relative paths (class/.../file.jpg), NUL-terminated, one after another */
    int64_t *off;    /* n: where file i's path starts in names */
    int32_t *labels; /* n: class index */
    int n_classes;
    char **class_names;
    int64_t skipped;
    uint64_t fingerprint;
    double seconds; /* the listing's wall time */
} ImageList;
/* With dist (NULL: alone) the call is collective: rank 0 walks and sorts, the other ranks receive
 * its listing, and each rank stat()s its shard of the files (the table is gathered). */
int image_list_dir(ImageList *l, const char *dir, int strict, int quiet, Dist *dist, Err *e);
void image_list_free(ImageList *l);
/* dir/relative path of file i into buf. */
void image_list_path(const ImageList *l, int64_t i, char *buf, size_t n);
/* Bytes the index holds (paths, offsets, labels). */
size_t image_list_bytes(const ImageList *l);

/* One thread's decoding state for streaming: image_decoder_load decodes and resizes path to
 * h x w x c into out exactly as images_load_dir does (same decode, same resize: bitwise the
 * same pixels); 0, or -1 with the reason (not the path) in reason. */
typedef struct ImageDecoder ImageDecoder;
ImageDecoder *image_decoder_new(void); /* NULL when TurboJPEG cannot start */
void image_decoder_free(ImageDecoder *d);
int image_decoder_load(ImageDecoder *d, const char *path, int h, int w, int c, int exact,
                       uint8_t *out, char *reason, size_t reason_len);

/* Decode one JPEG file and resize it to h x w x c (c = 1 or 3) into out (h*w*c bytes), as
 * images_load_dir does with the same exact flag: exact = 1 decodes at full size (Keras' load +
 * resize, rounded), 0 lets libjpeg DCT-scale a large image first. 0, or -1 with e naming the
 * file and the reason. */
int image_load_file(const char *path, int h, int w, int c, int exact, uint8_t *out, Err *e);

/* Write h x w x c (c = 1 or 3) uint8 pixels as a baseline JPEG (4:4:4 chroma), quality
 * 1..100, atomically. 0, or -1 with e set. */
int image_write_jpeg(const char *path, const uint8_t *pix, int h, int w, int c, int quality,
                     Err *e);

/* tf.image.resize(method="bilinear", antialias=False) on uint8 HWC pixels: half-pixel
 * centres, src = (dst + 0.5) * in / out - 0.5, clamped to the image, computed in float as
 * TensorFlow does, then rounded to the nearest integer. src: (sh, sw, c), dst: (dh, dw, c). */
void image_resize_bilinear(const uint8_t *src, int sh, int sw, uint8_t *dst, int dh, int dw, int c);

/* Decode + resize every JPEG in dir's class folders to h x w rgb `repeats` times (in
 * parallel, as images_load_dir does, with DCT scaling) and return images per second; the
 * cache-less decode throughput. -1.0 after printing a message when dir cannot be listed. */
double images_bench_decode(const char *dir, int h, int w, int repeats);

/* Apply the model's augmentation layers (the LAYER_RANDOM_* ones among layers[0..n_layers),
 * in order, training mode) to one image img (h, w, c) nine times, with nine different
 * keyed draws (epoch 0, sample ids 0..8, layer index = position in layers), and write the
 * results as a 3x3 grid JPEG to out_jpg (the book's figure 8.10). 0, or -1 with e set. */
int augment_preview_write(const char *out_jpg, const uint8_t *img, int h, int w, int c,
                          const Layer *layers, int n_layers, uint64_t seed, Err *e);

/* Decode the JPEG in buf[0..n) to h x w x c into out, through the loader's own decoding and
 * resizing path (the fuzz target tests/fuzz/fuzz_jpeg.c). 0, or -1 with e set. */
int image_decode_memory(const unsigned char *buf, size_t n, int h, int w, int c, uint8_t *out,
                        Err *e);

#endif
