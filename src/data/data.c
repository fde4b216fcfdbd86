/* data.c: the IDX loader (gzip'd or not, validated against the file's length), data set
 * splitting, label checks and batch gathering (see data.h). */
#include "data.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
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

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Deflate expands at most ~1032:1; a gzip file whose header promises more data than that
 * bound allows for its compressed size is refused before anything is allocated for it. */
#define GZIP_MAX_RATIO 1100

/* Read exactly n decompressed bytes into p; returns how many came (fewer: the stream ended). */
static size_t gz_read_exact(gzFile f, unsigned char *p, size_t n, int *failed) {
    size_t got = 0;
    while (got < n) {
        unsigned chunk = n - got > (1u << 30) ? (1u << 30) : (unsigned)(n - got);
        int r = gzread(f, p + got, chunk);
        if (r < 0) {
            *failed = 1;
            break;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    return got;
}

/* Read an IDX file of `ndim` dimensions (gzip'd or not: zlib passes plain files through) into
 * a buffer sized by its header, after checking that size against the file: a plain file must
 * hold exactly the promised bytes, a gzip'd one may not promise more than GZIP_MAX_RATIO times
 * its compressed size. The header is parsed by idx_header() below. */
static int idx_header(const char *path, const unsigned char *buf, size_t len, int ndim,
                      uint32_t *dims, size_t *payload, Err *e);

static unsigned char *read_all(const char *path, int ndim, size_t *len, Err *e_out) {
    Err sub = {0}, *e = &sub;
    long long fsize = 0;
    FILE *raw = file_open_regular(path, "IDX file", &fsize, e);
    if (!raw) {
        err_set(e_out, "%s", sub.msg);
        return NULL;
    }
    unsigned char magic[2] = {0, 0};
    int gz = fread(magic, 1, 2, raw) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    rewind(raw);
    int fd = dup(fileno(raw));
    fclose(raw);
    gzFile f = fd >= 0 ? gzdopen(fd, "rb") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        err_set(e, "cannot open %s: %s", path, errno ? strerror(errno) : "gzdopen failed");
        return NULL;
    }
    unsigned char head[4 + 4 * 3];
    const size_t hlen = 4 + 4 * (size_t)ndim;
    int failed = 0;
    size_t hgot = gz_read_exact(f, head, hlen, &failed);
    size_t payload = 0;
    unsigned char *buf = NULL;
    if (!failed && idx_header(path, head, hgot, ndim, NULL, &payload, e) == 0) {
        size_t total = hlen + payload;
        double bound = gz ? (double)fsize * GZIP_MAX_RATIO : (double)fsize;
        if ((double)total > bound) {
            if (gz)
                err_set(e,
                        "%s: header promises %zu data bytes, more than %lld bytes of gzip data "
                        "can hold (at most %dx): a damaged or hostile file",
                        path, payload, fsize, GZIP_MAX_RATIO);
            else
                err_set(e,
                        "%s: truncated: header promises %zu data bytes, the file has %lld after "
                        "offset %zu",
                        path, payload, fsize - (long long)hlen, hlen);
        } else {
            buf = xmalloc(total + 1);
            memcpy(buf, head, hlen);
            size_t got = gz_read_exact(f, buf + hlen, payload, &failed);
            unsigned char extra;
            if (!failed && got == payload && gzread(f, &extra, 1) > 0) {
                err_set(e,
                        "%s: trailing data: header promises %zu data bytes, the file has more "
                        "after offset %zu",
                        path, payload, hlen);
            } else if (!failed && got < payload) {
                err_set(e,
                        "%s: truncated: header promises %zu data bytes, the file has %zu after "
                        "offset %zu",
                        path, payload, got, hlen);
            }
            *len = hlen + got;
        }
    }
    if (failed) {
        int code;
        const char *msg = gzerror(f, &code);
        /* zlib names a gzdopen'd stream "<fd:N>" in its message: the path says which file */
        const char *sep = !strncmp(msg, "<fd:", 4) ? strstr(msg, ": ") : NULL;
        err_set(e, "%s: corrupt or truncated gzip data (%s)", path, sep ? sep + 2 : msg);
    }
    /* zlib reports a gzip stream cut short as plain EOF; gzclose_r says Z_BUF_ERROR then. */
    int rc = gzclose(f);
    if (rc == Z_BUF_ERROR) err_set(e, "%s: gzip stream is truncated", path);
    if (sub.set) {
        err_set(e_out, "%s", sub.msg);
        free(buf);
        return NULL;
    }
    return buf;
}

/* Parse an IDX header of uint8 data with `ndim` dimensions (dims may be NULL); *payload gets
 * the data bytes it promises. 0, or -1 with e set. */
static int idx_header(const char *path, const unsigned char *buf, size_t len, int ndim,
                      uint32_t *dims, size_t *payload, Err *e) {
    if (len < 4) {
        err_set(e, "%s: too short for an IDX file (%zu bytes)", path, len);
        return -1;
    }
    if (buf[0] != 0 || buf[1] != 0 || buf[2] != 0x08 || buf[3] != ndim) {
        err_set(e,
                "%s: bad IDX magic %02x %02x %02x %02x at offset 0 (expected 00 00 08 %02x: "
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
        uint32_t d = be32(buf + 4 + 4 * i);
        if (dims) dims[i] = d;
        if (d == 0 || d > (1u << 30)) {
            err_set(e, "%s: IDX dimension %d is %u at offset %d", path, i, d, 4 + 4 * i);
            return -1;
        }
        if (size_mul_add(expect, d, 0, &expect) != 0 || expect > (SIZE_MAX >> 2)) {
            err_set(e, "%s: IDX dimensions at offset 4 promise more data than fits in memory",
                    path);
            return -1;
        }
    }
    *payload = expect;
    return 0;
}

int idx_load(Dataset *d, const char *images_path, const char *labels_path, Err *e) {
    memset(d, 0, sizeof *d);
    size_t ilen, llen;
    unsigned char *ib = read_all(images_path, 3, &ilen, e);
    if (!ib) return -1;
    uint32_t idims[3], ldims[1];
    size_t ipay, lpay;
    int ioff = idx_header(images_path, ib, ilen, 3, idims, &ipay, e) ? -1 : 16;
    if (ioff < 0) {
        free(ib);
        return -1;
    }
    unsigned char *lb = read_all(labels_path, 1, &llen, e);
    if (!lb) {
        free(ib);
        return -1;
    }
    int loff = idx_header(labels_path, lb, llen, 1, ldims, &lpay, e) ? -1 : 8;
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

/* An uncompressed file is mapped read-only (its pages are shared by every rank of a node and
 * only those in use are resident); a gzip'd one is decompressed whole by read_all(). */
int idx_data_open(IdxData *x, const char *path, int ndim, Err *e) {
    memset(x, 0, sizeof *x);
    long long fsize = 0;
    FILE *f = file_open_regular(path, "IDX file", &fsize, e);
    if (!f) return -1;
    unsigned char magic[2] = {0, 0};
    int gz = fread(magic, 1, 2, f) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    size_t len = 0, payload = 0;
    if (gz) {
        fclose(f);
        x->heap = read_all(path, ndim, &len, e);
        if (!x->heap) return -1;
        x->data = x->heap;
    } else {
        void *m = fsize > 0 ? mmap(NULL, (size_t)fsize, PROT_READ, MAP_SHARED, fileno(f), 0)
                            : MAP_FAILED;
        fclose(f);
        if (fsize > 0 && m == MAP_FAILED) {
            err_set(e, "%s: cannot map: %s", path, strerror(errno));
            return -1;
        }
        x->map = fsize > 0 ? m : NULL;
        x->map_len = (size_t)fsize;
        x->data = x->map;
        len = (size_t)fsize;
    }
    x->gzipped = gz;
    const size_t hlen = 4 + 4 * (size_t)ndim;
    if (idx_header(path, x->data, len, ndim, x->dims, &payload, e) == 0 && len != hlen + payload)
        err_set(e, "%s: %s: header promises %zu data bytes, the file has %zu after offset %zu",
                path, len < hlen + payload ? "truncated" : "trailing data", payload, len - hlen,
                hlen);
    if (e->set) {
        idx_data_close(x);
        return -1;
    }
    x->payload = x->data + hlen;
    return 0;
}

void idx_data_close(IdxData *x) {
    if (x->map) munmap(x->map, x->map_len);
    free(x->heap);
    memset(x, 0, sizeof *x);
}

int dataset_check_labels(const Dataset *d, int n_classes, int64_t first_index, const char *what,
                         Err *e) {
    for (int64_t i = 0; i < d->n; i++)
        if (d->labels[i] < 0 || d->labels[i] >= n_classes) {
            err_set(e, "%s: label %d of sample %lld is outside the model's %d classes (0..%d)",
                    what, d->labels[i], (long long)(first_index + i), n_classes, n_classes - 1);
            return -1;
        }
    return 0;
}
