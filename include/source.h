/* source.h: where a split's samples come from, and the prefetcher that streams them.
 *
 * A Source is N samples of H x W x C uint8 pixels (NHWC) and int32 labels. What it holds in
 * memory is the labels (4 bytes a sample), the class names and, for a folder, the listing;
 * pixels are held for a whole split only by the memory backend (`[data] loading = memory`, the
 * old path, and synthetic bench data). The backends:
 *  - memory: a Dataset, decoded up front (images_load_dir / idx_load);
 *  - IDX: an uncompressed file is mapped read-only, a gzip'd one decompressed into memory;
 *  - folder: the listing only; sample i is decoded on demand by image_decoder_load, the same
 *    decode and resize as images_load_dir (bitwise the same pixels);
 *  - pack: a packed file (pack.h) mapped read-only, each record's checksum verified on read.
 * A view (source_split_tail) is (offset, count) of another source's samples.
 *
 * "Direct" sources (memory, IDX) have every sample's pixels at a fixed address and are gathered
 * on the step's thread; folder and pack sources are read by the prefetcher's threads.
 *
 * Bad data while streaming (docs/data.md): files that stat() shows to be unusable are left out
 * at listing time, deterministically on every rank. A listed JPEG that then fails to decode is
 * trained on as a black image (all zeros) with its label, and reported with its path: the
 * sample count never changes mid-run, and since the substitute depends on nothing but the
 * sample, every rank count and input path gives the same result. In strict mode it stops the
 * run (exit 2) instead. A pack record whose checksum fails always stops the run.
 */
#ifndef CONVNET_SOURCE_H
#define CONVNET_SOURCE_H

#include <stdint.h>

#include "common.h"
#include "data.h"
#include "dist.h"

typedef enum { SOURCE_MEMORY, SOURCE_IDX, SOURCE_FOLDER, SOURCE_PACK } SourceKind;

typedef struct SourceBase SourceBase;

typedef struct {
    int64_t n; /* samples in this view */
    int h, w, c;
    const int32_t *labels; /* n */
    int n_classes;
    char *const *class_names; /* n_classes names (folders, packs), else NULL */
    int64_t skipped;          /* files left out (listing, or decoding for the memory backend) */
    int64_t offset;           /* the view's first sample in the backend */
    SourceBase *base;         /* NULL: an empty source */
} Source;

/* What the folder and pack backends are opened with. */
typedef struct {
    int h, w, c;
    int exact;  /* decode = full */
    int strict; /* a bad image is an error */
    int quiet;  /* no warnings (ranks other than 0) */
    Dist *dist; /* a folder's listing is collective over these ranks, which share its stat()
                 * calls (image_list_dir); NULL: alone */
} SourceImageOpts;

/* The memory backend takes d over (d is left empty). */
void source_from_dataset(Source *s, Dataset *d, const char *what);
/* IDX images + labels. */
int source_open_idx(Source *s, const char *images, const char *labels, Err *e);
/* A folder of class folders: listing only. */
int source_open_folder(Source *s, const char *dir, const SourceImageOpts *o, Err *e);
/* A pack file: refused (naming the file) when corrupt, truncated, made for another size or,
 * with expect_fingerprint != 0, made from other source files ("stale"). */
int source_open_pack(Source *s, const char *path, const SourceImageOpts *o,
                     uint64_t expect_fingerprint, Err *e);
/* The folder listing's fingerprint combined with the decode settings (what a pack records). */
uint64_t source_fingerprint(const Source *s, const SourceImageOpts *o);
/* Decode every sample now into a memory backend (loading = memory): the folder's files through
 * images_load_dir (unreadable files skipped there, as before), the others copied. */
int source_load_memory(Source *s, const SourceImageOpts *o, Err *e);
void source_free(Source *s);
SourceKind source_kind(const Source *s);
const char *source_what(const Source *s);   /* the file or folder, for messages */
size_t source_index_bytes(const Source *s); /* what the listing holds (folder) */
double source_list_seconds(const Source *s); /* how long the listing took (folder), else 0 */

/* Write folder's samples decoded at o's size into the pack file path (pack.h: collective over
 * dist, each rank its range, temp file + rename), with the folder's fingerprint. A JPEG that
 * fails to decode is packed as the black image streaming would train on (warned, counted in
 * *bad); strict: the pack fails. 0, or -1 with e set. */
int source_pack_folder(const Source *folder, const SourceImageOpts *o, const char *path, Dist *dist,
                       int64_t *bad, Err *e);

/* Move the last `count` samples of src into dst, a view of the same backend (Keras
 * validation_split takes the tail before shuffling); src keeps the first n - count. */
void source_split_tail(Source *src, Source *dst, int64_t count);

/* Every label in [0, n_classes): 0, or -1 with e naming the sample (first_index + i). */
int source_check_labels(const Source *s, int n_classes, int64_t first_index, const char *what,
                        Err *e);

/* Direct sources: sample i's pixels where they lie. */
int source_is_direct(const Source *s);
const uint8_t *source_pixels(const Source *s, int64_t i);

/* Per-thread reading state (a JPEG decoder); NULL-initialised, freed by source_worker_free. */
typedef struct {
    struct ImageDecoder *dec;
} SourceWorker;
void source_worker_free(SourceWorker *w);
/* Sample i's pixels into out (h*w*c). 0; 1 when a JPEG failed to decode and out holds the
 * black substitute (e says which file and why); -1 with e set when the run must stop (strict,
 * a corrupt pack record). */
int source_read(const Source *s, int64_t i, uint8_t *out, SourceWorker *w, Err *e);

/* Samples ids[0..n) of s as floats into x (NHWC), x = pixel * scale + offset, their labels
 * into y: the one conversion every path uses, so that they give bitwise the same floats. px:
 * the batch's pixels as the prefetcher read them (n x h*w*c, prefetch_next), or NULL for a
 * direct source's own pixels. */
void source_gather_batch(const Source *s, const uint8_t *px, const int64_t *ids, int n, float scale,
                         float offset, float *x, int32_t *y);

/* ---------------------------------------------------------------- prefetch
 *
 * Worker threads read a pass's batches up to `depth` batches ahead of the consumer into a
 * ring of depth batch buffers (depth x max_batch x sample bytes, whatever the data set's
 * size). A pass is a sequence of batches whose sample ids come from fn(arg, b, ids) (returns
 * the count, <= max_batch): the trainer's own order, so nothing about the order changes. */
typedef int (*PrefetchBatchFn)(void *arg, long b, int64_t *ids);
typedef struct Prefetch Prefetch;
Prefetch *prefetch_new(int threads, int depth, int max_batch, size_t sample_bytes);
void prefetch_free(Prefetch *p);
/* Start a pass of n_batches over src (the previous pass must have ended). */
void prefetch_begin(Prefetch *p, const Source *src, long n_batches, PrefetchBatchFn fn, void *arg);
/* The pass's next batch: its pixels and ids, valid until the next call or prefetch_end. 0, or
 * -1 with e set (the run must stop: see source_read). */
int prefetch_next(Prefetch *p, const uint8_t **px, const int64_t **ids, int *n, Err *e);
/* End the pass early or at its end: waits for the samples being read. */
void prefetch_end(Prefetch *p);
/* Samples replaced by a black image so far (bad JPEGs met while streaming). */
int64_t prefetch_bad_count(const Prefetch *p);
int prefetch_threads(const Prefetch *p);

#endif
