/* images.c: JPEG decoding: image folders -> Dataset (Keras image_dataset_from_directory),
 * single-file decoding for predict and for streaming (ImageDecoder), JPEG writing and the decode
 * benchmark (the listing is image_list.c, the bilinear resize resize.c).
 *
 * Owns: TurboJPEG decoding (one tjhandle per OpenMP thread or per ImageDecoder) and the
 * bad-image policy of the in-memory loader.
 *
 * Fidelity to Keras:
 *  - Keras decodes with tf.io.decode_image (libjpeg, ISLOW DCT, fancy upsampling: the same as
 *    TurboJPEG's defaults) at full size, then tf.image.resize(bilinear, antialias=False,
 *    half-pixel centres) and keeps float32 values. We round the resized values to uint8.
 *  - Unless ImageDirOptions.exact is set (a job's `[data] decode = full`), a source much larger
 *    than the target is first decoded at a reduced size by libjpeg's DCT scaling (the largest
 *    scale-down, among tjGetScalingFactors(), that keeps both dimensions >= the target),
 *    then resized bilinearly from that. This is an approximation of Keras (which samples the full-size
 *    image without antialiasing); it is 2-4x faster and, if anything, less aliased.
 *  - CMYK/YCCK JPEGs: decoded as CMYK and converted as TensorFlow does for Adobe (inverted)
 *    CMYK, r = c * k / 255 etc. (virtually every CMYK JPEG carries the Adobe marker; TF's
 *    non-Adobe branch is not reproduced because TurboJPEG does not expose the marker).
 *  - Bad-image policy: a file is unreadable when it is empty, is not a JPEG, has a header
 *    declaring more than max_pixels pixels, cannot be decoded, or decodes with a libjpeg
 *    *warning* (tjGetErrorCode() == TJERR_WARNING: a truncated file, "premature end of data
 *    segment", corrupt entropy data). TensorFlow would accept the warning cases and train on
 *    a partly grey image; we prefer to skip them (one stderr line each, counted in
 *    Dataset.skipped) or, in strict mode, to fail naming the file.
 */
#include "images.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define MAX_FILE_BYTES (1LL << 30) /* a JPEG larger than 1 GiB is refused unread */
#define REASON_LEN 200

void image_dir_options_default(ImageDirOptions *o) {
    memset(o, 0, sizeof *o);
    o->height = 180;
    o->width = 180;
    o->channels = 3;
    o->max_pixels = IMAGES_DEFAULT_MAX_PIXELS;
}

/* ---------------------------------------------------------------- decoding one file */

/* Per-thread decoding state: the TurboJPEG handle and reusable buffers. */
typedef struct {
    tjhandle tj;
    unsigned char *file;
    size_t file_cap;
    uint8_t *pix;
    size_t pix_cap;
} Decoder;

static void decoder_free(Decoder *dc) {
    if (dc->tj) tjDestroy(dc->tj);
    free(dc->file);
    free(dc->pix);
    memset(dc, 0, sizeof *dc);
}

static int is_jpeg_magic(const unsigned char *p, size_t n) {
    return n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF;
}

/* Read path into dc->file; returns its size, or -1 with reason set. */
static long long read_file(Decoder *dc, const char *path, char *reason) {
    long long n = 0;
    Err oe = {0};
    /* refused before any read: a named pipe would block the loader forever */
    FILE *f = file_open_regular(path, "image", &n, &oe);
    if (!f) {
        snprintf(reason, REASON_LEN, "%s",
                 errno == EINVAL ? "not a regular file" : strerror(errno));
        return -1;
    }
    if (n == 0) {
        snprintf(reason, REASON_LEN, "empty file (0 bytes)");
        fclose(f);
        return -1;
    }
    if (n > MAX_FILE_BYTES) {
        snprintf(reason, REASON_LEN, "file too large (%lld bytes)", n);
        fclose(f);
        return -1;
    }
    if ((size_t)n > dc->file_cap) {
        free(dc->file);
        dc->file = xmalloc((size_t)n);
        dc->file_cap = (size_t)n;
    }
    size_t got = fread(dc->file, 1, (size_t)n, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr || got != (size_t)n) {
        snprintf(reason, REASON_LEN, "read error (%zu of %lld bytes)", got, n);
        return -1;
    }
    return n;
}

/* Decode the JPEG in dc->file[0..n) and resize it to h x w x c into out. With allow_scale,
 * DCT scaling picks the smallest decoded size that is still >= (h, w). 0 or -1 with reason. */
static int decode_resize(Decoder *dc, size_t n, int h, int w, int c, int64_t max_pixels,
                         int allow_scale, uint8_t *out, char *reason) {
    if (!is_jpeg_magic(dc->file, n)) {
        snprintf(reason, REASON_LEN, "not a JPEG file (no SOI marker)");
        return -1;
    }
    int jw = 0, jh = 0, subsamp = 0, cs = 0;
    if (tjDecompressHeader3(dc->tj, dc->file, (unsigned long)n, &jw, &jh, &subsamp, &cs) != 0) {
        snprintf(reason, REASON_LEN, "bad JPEG header: %s", tjGetErrorStr2(dc->tj));
        return -1;
    }
    if (jw <= 0 || jh <= 0) {
        snprintf(reason, REASON_LEN, "bad JPEG header: %dx%d image", jw, jh);
        return -1;
    }
    if ((int64_t)jw * (int64_t)jh > max_pixels) {
        snprintf(reason, REASON_LEN, "image too large: %dx%d = %lld pixels > limit %lld", jw, jh,
                 (long long)jw * jh, (long long)max_pixels);
        return -1;
    }
    /* DCT scaling: the smallest scaled size with both dimensions >= the target. */
    int sw = jw, sh = jh;
    if (allow_scale) {
        int nsf = 0;
        tjscalingfactor *sf = tjGetScalingFactors(&nsf);
        for (int i = 0; sf && i < nsf; i++) {
            if (sf[i].num >= sf[i].denom) continue; /* only scale-downs */
            int tw = TJSCALED(jw, sf[i]), th = TJSCALED(jh, sf[i]);
            if (tw >= w && th >= h && (int64_t)tw * th < (int64_t)sw * sh) {
                sw = tw;
                sh = th;
            }
        }
    }
    const int cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    const int pf = cmyk ? TJPF_CMYK : (c == 1 ? TJPF_GRAY : TJPF_RGB);
    const int ps = tjPixelSize[pf];
    size_t need = (size_t)sw * sh * ps;
    if (need > dc->pix_cap) {
        free(dc->pix);
        dc->pix = xmalloc(need);
        dc->pix_cap = need;
    }
    if (tjDecompress2(dc->tj, dc->file, (unsigned long)n, dc->pix, sw, 0, sh, pf, 0) != 0) {
        const char *kind = tjGetErrorCode(dc->tj) == TJERR_WARNING ? "corrupt or truncated JPEG"
                                                                   : "cannot decode JPEG";
        snprintf(reason, REASON_LEN, "%s: %s", kind, tjGetErrorStr2(dc->tj));
        return -1;
    }
    if (cmyk) {
        /* Adobe (inverted) CMYK -> RGB as TensorFlow's decode_jpeg, then to gray if needed
         * with libjpeg's weights. Converted in place (4 -> c bytes per pixel, forward). */
        size_t np = (size_t)sw * sh;
        for (size_t i = 0; i < np; i++) {
            const uint8_t *q = dc->pix + 4 * i;
            int r = q[0] * q[3] / 255, g = q[1] * q[3] / 255, b = q[2] * q[3] / 255;
            if (c == 3) {
                dc->pix[3 * i] = (uint8_t)r;
                dc->pix[3 * i + 1] = (uint8_t)g;
                dc->pix[3 * i + 2] = (uint8_t)b;
            } else {
                dc->pix[i] = (uint8_t)lrint(0.299 * r + 0.587 * g + 0.114 * b);
            }
        }
    }
    if (sw == w && sh == h)
        memcpy(out, dc->pix, (size_t)w * h * c);
    else
        image_resize_bilinear(dc->pix, sh, sw, out, h, w, c);
    return 0;
}

/* After any decode error the TurboJPEG handle is replaced by a fresh one: libjpeg's state
 * after a failed tjDecompressHeader3 is not reliably reset (the next good files then fail
 * with "Bogus marker length"), so one bad file must not be able to spoil the ones after it. */
static void decoder_renew(Decoder *dc) {
    if (dc->tj) tjDestroy(dc->tj);
    dc->tj = tjInitDecompress();
}

static int load_one(Decoder *dc, const char *path, int h, int w, int c, int64_t max_pixels,
                    int allow_scale, uint8_t *out, char *reason) {
    long long n = read_file(dc, path, reason);
    if (n < 0) return -1;
    int rc = decode_resize(dc, (size_t)n, h, w, c, max_pixels, allow_scale, out, reason);
    if (rc != 0) decoder_renew(dc);
    return rc;
}

int image_decode_memory(const unsigned char *buf, size_t n, int h, int w, int c, uint8_t *out,
                        Err *e) {
    if (h <= 0 || w <= 0 || (c != 1 && c != 3)) {
        err_set(e, "bad target image shape %dx%dx%d (channels must be 1 or 3)", h, w, c);
        return -1;
    }
    Decoder dc = {0};
    dc.tj = tjInitDecompress();
    if (!dc.tj) {
        err_set(e, "cannot initialise TurboJPEG: %s", tjGetErrorStr2(NULL));
        return -1;
    }
    /* the caller's buffer stands in for a file read by read_file() */
    dc.file = (unsigned char *)buf;
    dc.file_cap = n;
    char reason[REASON_LEN];
    int rc = decode_resize(&dc, n, h, w, c, IMAGES_DEFAULT_MAX_PIXELS, 1, out, reason);
    dc.file = NULL;
    decoder_free(&dc);
    if (rc != 0) err_set(e, "%s", reason);
    return rc;
}

int image_load_file(const char *path, int h, int w, int c, int exact, uint8_t *out, Err *e) {
    if (h <= 0 || w <= 0 || (c != 1 && c != 3)) {
        err_set(e, "%s: bad target image shape %dx%dx%d (channels must be 1 or 3)", path, h, w, c);
        return -1;
    }
    Decoder dc = {0};
    dc.tj = tjInitDecompress();
    if (!dc.tj) {
        err_set(e, "%s: cannot initialise TurboJPEG: %s", path, tjGetErrorStr2(NULL));
        return -1;
    }
    char reason[REASON_LEN];
    int rc = load_one(&dc, path, h, w, c, IMAGES_DEFAULT_MAX_PIXELS, !exact, out, reason);
    decoder_free(&dc);
    if (rc != 0) err_set(e, "%s: %s", path, reason);
    return rc;
}

/* ---------------------------------------------------------------- writing */

int image_write_jpeg(const char *path, const uint8_t *pix, int h, int w, int c, int quality,
                     Err *e) {
    if (h <= 0 || w <= 0 || (c != 1 && c != 3) || quality < 1 || quality > 100) {
        err_set(e, "%s: cannot write a %dx%dx%d JPEG at quality %d", path, h, w, c, quality);
        return -1;
    }
    tjhandle tj = tjInitCompress();
    if (!tj) {
        err_set(e, "%s: cannot initialise TurboJPEG: %s", path, tjGetErrorStr2(NULL));
        return -1;
    }
    unsigned char *jpg = NULL;
    unsigned long size = 0;
    int rc = tjCompress2(tj, pix, w, 0, h, c == 1 ? TJPF_GRAY : TJPF_RGB, &jpg, &size,
                         c == 1 ? TJSAMP_GRAY : TJSAMP_444, quality, TJFLAG_ACCURATEDCT);
    if (rc != 0) {
        err_set(e, "%s: JPEG compression failed: %s", path, tjGetErrorStr2(tj));
        tjFree(jpg);
        tjDestroy(tj);
        return -1;
    }
    IoChunk ch = {jpg, size};
    rc = file_write_atomic(path, &ch, 1, e);
    tjFree(jpg);
    tjDestroy(tj);
    return rc;
}

/* ---------------------------------------------------------------- parallel decoding */

/* Decode the listing's files into out (n slots of h*w*c); ok[i] = 1 or 0 with reasons[i] filled. */
static int decode_all(const ImageList *l, int h, int w, int c, int64_t max_pixels, int allow_scale,
                      uint8_t *out, unsigned char *ok, char (*reasons)[REASON_LEN], Err *e) {
    const size_t per = (size_t)h * w * c;
    const long long n = (long long)l->n;
    int init_failed = 0;
#pragma omp parallel
    {
        Decoder dc = {0};
        dc.tj = tjInitDecompress();
        char path[PATH_MAX + 256];
        if (!dc.tj) {
#pragma omp atomic write
            init_failed = 1;
        }
#pragma omp for schedule(dynamic, 4)
        for (long long i = 0; i < n; i++) {
            if (!dc.tj) {
                ok[i] = 0;
                snprintf(reasons[i], REASON_LEN, "TurboJPEG unavailable");
                continue;
            }
            image_list_path(l, i, path, sizeof path);
            ok[i] = load_one(&dc, path, h, w, c, max_pixels, allow_scale, out + (size_t)i * per,
                             reasons[i]) == 0;
        }
        decoder_free(&dc);
    }
    if (init_failed) {
        err_set(e, "cannot initialise TurboJPEG: %s", tjGetErrorStr2(NULL));
        return -1;
    }
    return 0;
}

/* The listing's classes move into d (the listing keeps its paths). */
static void take_classes(Dataset *d, ImageList *l) {
    d->class_names = l->class_names;
    d->n_classes = l->n_classes;
    l->class_names = NULL;
    l->n_classes = 0;
}

int images_load_dir(Dataset *d, const char *dir, const ImageDirOptions *o, Err *e) {
    memset(d, 0, sizeof *d);
    const int h = o->height, w = o->width, c = o->channels;
    if (h <= 0 || w <= 0 || h > 65535 || w > 65535 || (c != 1 && c != 3)) {
        err_set(e, "%s: bad image size %dx%d or channels %d (1 = grayscale, 3 = rgb)", dir, h, w,
                c);
        return -1;
    }
    const int64_t max_pixels = o->max_pixels > 0 ? o->max_pixels : IMAGES_DEFAULT_MAX_PIXELS;
    ImageList l;
    if (image_list_dir(&l, dir, o->strict, o->quiet, NULL, e) != 0) return -1;
    const size_t n = (size_t)l.n, per = (size_t)h * w * c;
    if (n > 0 && per > SIZE_MAX / n) {
        err_set(e, "%s: %zu images of %dx%dx%d do not fit in memory", dir, n, h, w, c);
        image_list_free(&l);
        return -1;
    }
    uint8_t *pix = xmalloc(n ? n * per : 1);
    unsigned char *ok = xcalloc(n ? n : 1, 1);
    char(*reasons)[REASON_LEN] = xmalloc((n ? n : 1) * sizeof *reasons);
    int32_t *labels = xmalloc((n ? n : 1) * sizeof *labels);
    int rc = decode_all(&l, h, w, c, max_pixels, !o->exact, pix, ok, reasons, e);
    /* Report bad files in listing order (deterministic), then compact the good ones. */
    int64_t skipped = l.skipped, k = 0;
    char path[PATH_MAX + 256];
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (!ok[i]) {
            image_list_path(&l, (int64_t)i, path, sizeof path);
            if (o->strict) {
                err_set(e, "%s: %s (strict image loading)", path, reasons[i]);
                rc = -1;
                break;
            }
            if (!o->quiet)
                fprintf(stderr, "convnet-dist: warning: skipping %s: %s\n", path, reasons[i]);
            skipped++;
            continue;
        }
        if ((size_t)k != i) memmove(pix + (size_t)k * per, pix + i * per, per);
        labels[k++] = l.labels[i];
    }
    free(ok);
    free(reasons);
    /* a class without one readable image cannot be learnt: its folder is named */
    int64_t *per_class = xcalloc((size_t)l.n_classes, sizeof *per_class);
    for (int64_t i = 0; i < k && rc == 0; i++) per_class[labels[i]]++;
    for (int i = 0; i < l.n_classes && rc == 0 && k > 0; i++)
        if (per_class[i] == 0) {
            err_set(e,
                    "%s/%s: class folder without readable images (every class folder needs at "
                    "least one .jpg/.jpeg image)",
                    dir, l.class_names[i]);
            rc = -1;
        }
    free(per_class);
    if (rc == 0 && k == 0) {
        err_set(e, "%s: no readable images found (%lld skipped; allowed formats: .jpg, .jpeg)", dir,
                (long long)skipped);
        rc = -1;
    }
    if (rc != 0) {
        free(pix);
        free(labels);
        image_list_free(&l);
        return -1;
    }
    d->n = k;
    d->h = h;
    d->w = w;
    d->c = c;
    d->pixels = pix;
    d->labels = labels;
    d->skipped = skipped;
    take_classes(d, &l);
    image_list_free(&l);
    return 0;
}

double images_bench_decode(const char *dir, int h, int w, int repeats) {
    Err e = {0};
    if (h <= 0 || w <= 0 || repeats <= 0) {
        fprintf(stderr, "convnet-dist: images_bench_decode: bad size %dx%d or repeats %d\n", h, w,
                repeats);
        return -1.0;
    }
    ImageList l;
    if (image_list_dir(&l, dir, 0, 1, NULL, &e) != 0) {
        fprintf(stderr, "convnet-dist: %s\n", e.msg);
        return -1.0;
    }
    const size_t n = (size_t)l.n, per = (size_t)h * w * 3;
    uint8_t *pix = xmalloc(n ? n * per : 1);
    unsigned char *ok = xcalloc(n ? n : 1, 1);
    char(*reasons)[REASON_LEN] = xmalloc((n ? n : 1) * sizeof *reasons);
    long long decoded = 0;
    double t0 = now_seconds();
    for (int r = 0; r < repeats; r++) {
        if (decode_all(&l, h, w, 3, IMAGES_DEFAULT_MAX_PIXELS, 1, pix, ok, reasons, &e) != 0) {
            fprintf(stderr, "convnet-dist: %s\n", e.msg);
            break;
        }
        for (size_t i = 0; i < n; i++) decoded += ok[i];
    }
    double dt = now_seconds() - t0;
    free(pix);
    free(ok);
    free(reasons);
    image_list_free(&l);
    return dt > 0 ? (double)decoded / dt : 0.0;
}

/* ---------------------------------------------------------------- streaming decoders */

struct ImageDecoder {
    Decoder dc;
};

ImageDecoder *image_decoder_new(void) {
    ImageDecoder *d = xcalloc(1, sizeof *d);
    d->dc.tj = tjInitDecompress();
    if (!d->dc.tj) {
        free(d);
        return NULL;
    }
    return d;
}

void image_decoder_free(ImageDecoder *d) {
    if (!d) return;
    decoder_free(&d->dc);
    free(d);
}

int image_decoder_load(ImageDecoder *d, const char *path, int h, int w, int c, int exact,
                       uint8_t *out, char *reason, size_t reason_len) {
    char why[REASON_LEN];
    int rc = load_one(&d->dc, path, h, w, c, IMAGES_DEFAULT_MAX_PIXELS, !exact, out, why);
    if (rc) snprintf(reason, reason_len, "%s", why);
    return rc;
}
