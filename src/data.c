/* data.c: the IDX loader (gzip'd or not, validated against the file's length), data set
 * splitting, label checks and batch gathering (see data.h). */
#include "data.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

void dataset_free(Dataset *d) {
    free(d->pixels);
    free(d->labels);
    if (d->class_names)
        for (int i = 0; i < d->n_classes; i++) free(d->class_names[i]);
    free(d->class_names);
    memset(d, 0, sizeof *d);
}

/* Read a whole file through zlib (which passes uncompressed files through unchanged). */
static unsigned char *read_all(const char *path, size_t *len, Err *e) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        err_set(e, "cannot open %s: %s", path, errno ? strerror(errno) : "gzopen failed");
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    unsigned char *buf = xmalloc(cap);
    for (;;) {
        if (cap - n < (1 << 16)) {
            unsigned char *grown = xmalloc(cap * 2);
            memcpy(grown, buf, n);
            free(buf);
            buf = grown;
            cap *= 2;
        }
        int got = gzread(f, buf + n, (unsigned)(cap - n));
        if (got < 0) {
            int code;
            const char *msg = gzerror(f, &code);
            err_set(e, "%s: corrupt or truncated gzip data after %zu bytes (%s)", path, n, msg);
            gzclose(f);
            free(buf);
            return NULL;
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    /* zlib reports a gzip stream cut short as plain EOF; gzclose_r says Z_BUF_ERROR then. */
    int rc = gzclose(f);
    if (rc == Z_BUF_ERROR) {
        err_set(e, "%s: gzip stream is truncated (%zu bytes decompressed)", path, n);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Parse an IDX header of uint8 data with `ndim` dimensions; returns the payload offset. */
static int idx_header(const char *path, const unsigned char *buf, size_t len, int ndim,
                      uint32_t *dims, Err *e) {
    if (len < 4) {
        err_set(e, "%s: too short for an IDX file (%zu bytes)", path, len);
        return -1;
    }
    if (buf[0] != 0 || buf[1] != 0 || buf[2] != 0x08 || buf[3] != ndim) {
        err_set(e, "%s: bad IDX magic %02x %02x %02x %02x at offset 0 (expected 00 00 08 %02x: "
                   "unsigned bytes, %d dimensions)",
                path, buf[0], buf[1], buf[2], buf[3], ndim, ndim);
        return -1;
    }
    size_t off = 4 + 4 * (size_t)ndim;
    if (len < off) {
        err_set(e, "%s: truncated IDX header (%zu of %zu bytes)", path, len, off);
        return -1;
    }
    size_t expect = 1;
    for (int i = 0; i < ndim; i++) {
        dims[i] = be32(buf + 4 + 4 * i);
        if (dims[i] == 0 || dims[i] > (1u << 30)) {
            err_set(e, "%s: IDX dimension %d is %u at offset %d", path, i, dims[i], 4 + 4 * i);
            return -1;
        }
        expect *= dims[i];
    }
    if (len - off != expect) {
        err_set(e, "%s: %s: header promises %zu data bytes, the file has %zu after offset %zu",
                path, len - off < expect ? "truncated" : "trailing data", expect, len - off, off);
        return -1;
    }
    return (int)off;
}

int idx_load(Dataset *d, const char *images_path, const char *labels_path, Err *e) {
    memset(d, 0, sizeof *d);
    size_t ilen, llen;
    unsigned char *ib = read_all(images_path, &ilen, e);
    if (!ib) return -1;
    uint32_t idims[3], ldims[1];
    int ioff = idx_header(images_path, ib, ilen, 3, idims, e);
    if (ioff < 0) {
        free(ib);
        return -1;
    }
    unsigned char *lb = read_all(labels_path, &llen, e);
    if (!lb) {
        free(ib);
        return -1;
    }
    int loff = idx_header(labels_path, lb, llen, 1, ldims, e);
    if (loff < 0) {
        free(ib);
        free(lb);
        return -1;
    }
    if (ldims[0] != idims[0]) {
        err_set(e, "%s has %u labels but %s has %u images", labels_path, ldims[0], images_path,
                idims[0]);
        free(ib);
        free(lb);
        return -1;
    }
    d->n = idims[0];
    d->h = (int)idims[1];
    d->w = (int)idims[2];
    d->c = 1;
    size_t npix = (size_t)d->n * d->h * d->w;
    d->pixels = xmalloc(npix);
    memcpy(d->pixels, ib + ioff, npix);
    d->labels = xmalloc((size_t)d->n * sizeof *d->labels);
    int maxl = 0;
    for (int64_t i = 0; i < d->n; i++) {
        d->labels[i] = lb[loff + i];
        if (d->labels[i] > maxl) maxl = d->labels[i];
    }
    d->n_classes = maxl + 1;
    free(ib);
    free(lb);
    return 0;
}

void dataset_split_tail(Dataset *src, Dataset *dst, int64_t count) {
    CHECK(count >= 0 && count <= src->n);
    memset(dst, 0, sizeof *dst);
    dst->n = count;
    dst->h = src->h;
    dst->w = src->w;
    dst->c = src->c;
    dst->n_classes = src->n_classes;
    size_t S = (size_t)src->h * src->w * src->c;
    int64_t keep = src->n - count;
    dst->pixels = xmalloc((size_t)count * S + 1);
    memcpy(dst->pixels, src->pixels + (size_t)keep * S, (size_t)count * S);
    dst->labels = xmalloc((size_t)count * sizeof(int32_t) + 1);
    memcpy(dst->labels, src->labels + keep, (size_t)count * sizeof(int32_t));
    src->n = keep;
}

int dataset_check_labels(const Dataset *d, int n_classes, int64_t first_index, const char *what,
                         Err *e) {
    for (int64_t i = 0; i < d->n; i++)
        if (d->labels[i] < 0 || d->labels[i] >= n_classes) {
            err_set(e, "%s: label %d of sample %lld is outside the model's %d classes (0..%d)", what,
                    d->labels[i], (long long)(first_index + i), n_classes, n_classes - 1);
            return -1;
        }
    return 0;
}

void dataset_gather_batch(const Dataset *d, const int64_t *ids, int n, float scale, float offset,
                          float *x, int32_t *y) {
    const size_t S = (size_t)d->h * d->w * d->c;
#pragma omp parallel for schedule(static) if (n * S > 65536)
    for (int i = 0; i < n; i++) {
        const uint8_t *src = d->pixels + (size_t)ids[i] * S;
        float *dst = x + (size_t)i * S;
        for (size_t k = 0; k < S; k++) dst[k] = (float)src[k] * scale + offset;
        y[i] = d->labels[ids[i]];
    }
}
