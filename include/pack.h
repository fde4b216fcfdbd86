/* pack.h: the packed dataset file, one split of a folder data set decoded once at the job's image
 * size into a flat, documented, memory-mapped file (format: docs/pack.md; code: src/data/pack.c).
 *
 * Owns writing a pack (collective over the ranks: each rank decodes and pwrite()s its own range
 * of samples into one pre-sized temp file, which rank 0 renames when every rank is done) and
 * reading one (mapped read-only, so that the page cache is the node's one copy of the pixels
 * and only the pages in use are resident). Opening reads the fixed header, the label table and
 * the class names only, never the records: start-up does not grow with the pixels. Each
 * record's CRC-32 is checked when the record is read.
 */
#ifndef CONVNET_PACK_H
#define CONVNET_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "dist.h"

#define PACK_VERSION 1u
#define PACK_HEADER_BYTES 4096u /* the fixed header; sections start on 4096-byte boundaries */
#define PACK_ALIGN 4096u

/* What a pack holds besides its records: n samples of h x w x c uint8, labels[n] in
 * [0, n_classes), n_classes class names, and the fingerprint of the source (file list, sizes,
 * mtimes and the job's size/decode settings, computed by the caller). */
typedef struct {
    int64_t n;
    int h, w, c;
    int n_classes;
    char *const *class_names;
    const int32_t *labels;
    uint64_t fingerprint;
} PackMeta;

/* Sample i's pixels, h*w*c bytes NHWC, into px: 0, or -1 with e set (the write then fails).
 * pack_write calls it from the rank's OpenMP threads at once (each i once): it must be safe to
 * call concurrently for different i (a decoder per thread, say). */
typedef int (*PackReadFn)(void *arg, int64_t i, uint8_t *px, Err *e);

/* Write a pack of m->n samples to path. Collective over dist: each rank fills samples
 * [n*r/size, n*(r+1)/size) through read() and pwrite()s them into "path.tmp" (created and
 * pre-sized by rank 0, header and tables written by rank 0); a barrier, every rank fsyncs its
 * ranges, a second collective agrees that every rank succeeded, then rank 0 renames the temp
 * file over path. On any rank's failure the temp file is removed and every rank returns -1
 * (e set; on the failing rank it says why, elsewhere that a peer failed). Nothing half-written is
 * ever found under path. dist may be NULL (one process). */
int pack_write(const char *path, const PackMeta *m, PackReadFn read, void *arg, Dist *dist, Err *e);

typedef struct {
    int64_t n;
    int h, w, c;
    int n_classes;
    char **class_names;    /* n_classes NUL-terminated names (malloc'd copies) */
    const int32_t *labels; /* n labels, in the mapping */
    uint64_t fingerprint;
    /* private */
    char *path;
    const uint8_t *map; /* the whole file, mapped read-only */
    size_t map_size;
    uint64_t rec_off;     /* offset of record 0 */
    uint64_t rec_bytes;   /* h*w*c: record i lies at rec_off + i * rec_bytes */
    const uint8_t *index; /* n entries of 16 bytes (offset, length, CRC-32), in the mapping */
} Pack;

/* Map path read-only and check the magic, version, header CRC, the section table, the file size
 * against the header's, the label table's CRC and range and the class names. expect_h/w/c: the
 * job's image size (0 = any): another size is refused naming the file and both sizes.
 * expect_fingerprint (0 = any): another fingerprint is refused as "stale ... run convnet-dist
 * pack JOB to repack". O(n) only over the labels (4 bytes a sample); records are not touched.
 * 0, or -1 with e naming the file (p left zeroed). */
int pack_open(Pack *p, const char *path, int expect_h, int expect_w, int expect_c,
              uint64_t expect_fingerprint, Err *e);

/* Sample i's pixels (h*w*c bytes NHWC, pointing into the mapping); the record's CRC-32 is checked
 * first: NULL with e naming the file, the sample index and its offset when it does not match
 * (or when i is out of range). Thread-safe (reads only). */
const uint8_t *pack_record(const Pack *p, int64_t i, Err *e);

/* Unmap and free; p is zeroed. Safe on a zeroed Pack. */
void pack_close(Pack *p);

#endif
