/* source.c: the split sources (memory, IDX, folder, pack), views, reading one sample and the
 * uint8 -> float conversion every path shares (see source.h; the prefetcher is prefetch.c). */
#include "source.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "images.h"
#include "pack.h"

struct SourceBase {
    SourceKind kind;
    int refs; /* the source and its views */
    char *what;
    int64_t n;
    int h, w, c;
    const int32_t *labels;
    int32_t *own_labels;
    int n_classes;
    char **class_names;    /* owned unless a pack's */
    const uint8_t *pixels; /* direct backends: n * h * w * c */
    Dataset mem;
    IdxData idx_img, idx_lab;
    ImageList list;
    int exact, strict;
    Pack pack;
};

static SourceBase *base_new(SourceKind kind, const char *what) {
    SourceBase *b = xcalloc(1, sizeof *b);
    b->kind = kind;
    b->refs = 1;
    b->what = xstrdup(what ? what : "");
    return b;
}

/* The whole backend as the source s. */
static void source_set(Source *s, SourceBase *b, int64_t skipped) {
    memset(s, 0, sizeof *s);
    s->base = b;
    s->n = b->n;
    s->h = b->h;
    s->w = b->w;
    s->c = b->c;
    s->labels = b->labels;
    s->n_classes = b->n_classes;
    s->class_names = b->class_names;
    s->skipped = skipped;
}

static void base_free(SourceBase *b) {
    dataset_free(&b->mem);
    idx_data_close(&b->idx_img);
    idx_data_close(&b->idx_lab);
    if (b->kind == SOURCE_FOLDER) image_list_free(&b->list);
    if (b->kind == SOURCE_PACK) pack_close(&b->pack);
    free(b->own_labels);
    free(b->what);
    free(b);
}

void source_free(Source *s) {
    if (s->base && --s->base->refs == 0) base_free(s->base);
    memset(s, 0, sizeof *s);
}

SourceKind source_kind(const Source *s) { return s->base ? s->base->kind : SOURCE_MEMORY; }
const char *source_what(const Source *s) { return s->base ? s->base->what : ""; }
size_t source_index_bytes(const Source *s) {
    return s->base && s->base->kind == SOURCE_FOLDER ? image_list_bytes(&s->base->list) : 0;
}
double source_list_seconds(const Source *s) {
    return s->base && s->base->kind == SOURCE_FOLDER ? s->base->list.seconds : 0;
}

/* The backend's shape, labels and classes. */
static void base_describe(SourceBase *b, int64_t n, int h, int w, int c, const int32_t *labels,
                          int n_classes, char **class_names) {
    b->n = n;
    b->h = h;
    b->w = w;
    b->c = c;
    b->labels = labels;
    b->n_classes = n_classes;
    b->class_names = class_names;
}

void source_from_dataset(Source *s, Dataset *d, const char *what) {
    SourceBase *b = base_new(SOURCE_MEMORY, what);
    b->mem = *d;
    memset(d, 0, sizeof *d);
    const Dataset *m = &b->mem;
    base_describe(b, m->n, m->h, m->w, m->c, m->labels, m->n_classes, m->class_names);
    b->pixels = m->pixels;
    source_set(s, b, m->skipped);
}

int source_open_idx(Source *s, const char *images, const char *labels, Err *e) {
    memset(s, 0, sizeof *s);
    SourceBase *b = base_new(SOURCE_IDX, images);
    if (idx_data_open(&b->idx_img, images, 3, e) || idx_data_open(&b->idx_lab, labels, 1, e)) {
        base_free(b);
        return -1;
    }
    if (b->idx_lab.dims[0] != b->idx_img.dims[0]) {
        err_set(e, "%s has %u labels but %s has %u images", labels, b->idx_lab.dims[0], images,
                b->idx_img.dims[0]);
        base_free(b);
        return -1;
    }
    b->n = b->idx_img.dims[0];
    b->h = (int)b->idx_img.dims[1];
    b->w = (int)b->idx_img.dims[2];
    b->c = 1;
    b->pixels = b->idx_img.payload;
    b->own_labels = xmalloc((size_t)b->n * sizeof *b->own_labels + 1);
    int maxl = 0;
    for (int64_t i = 0; i < b->n; i++) {
        b->own_labels[i] = b->idx_lab.payload[i];
        if (b->own_labels[i] > maxl) maxl = b->own_labels[i];
    }
    /* the labels are copied: the label file's bytes are not needed any more */
    idx_data_close(&b->idx_lab);
    b->labels = b->own_labels;
    b->n_classes = maxl + 1;
    source_set(s, b, 0);
    return 0;
}

int source_open_folder(Source *s, const char *dir, const SourceImageOpts *o, Err *e) {
    memset(s, 0, sizeof *s);
    if (o->h <= 0 || o->w <= 0 || o->h > 65535 || o->w > 65535 || (o->c != 1 && o->c != 3)) {
        err_set(e, "%s: bad image size %dx%d or channels %d (1 = grayscale, 3 = rgb)", dir, o->h,
                o->w, o->c);
        return -1;
    }
    SourceBase *b = base_new(SOURCE_FOLDER, dir);
    if (image_list_dir(&b->list, dir, o->strict, o->quiet, o->dist, e)) {
        base_free(b);
        return -1;
    }
    if (b->list.n == 0) {
        err_set(e, "%s: no images found (%lld skipped; allowed formats: .jpg, .jpeg)", dir,
                (long long)b->list.skipped);
        base_free(b);
        return -1;
    }
    const ImageList *l = &b->list;
    base_describe(b, l->n, o->h, o->w, o->c, l->labels, l->n_classes, l->class_names);
    b->exact = o->exact;
    b->strict = o->strict;
    source_set(s, b, b->list.skipped);
    return 0;
}

uint64_t source_fingerprint(const Source *s, const SourceImageOpts *o) {
    if (!s->base || s->base->kind != SOURCE_FOLDER) return 0;
    int v[4] = {o->h, o->w, o->c, o->exact};
    uint64_t h = hash_bytes(s->base->list.fingerprint, v, sizeof v);
    return h ? h : 1; /* 0 means "any" to pack_open */
}

int source_open_pack(Source *s, const char *path, const SourceImageOpts *o,
                     uint64_t expect_fingerprint, Err *e) {
    memset(s, 0, sizeof *s);
    SourceBase *b = base_new(SOURCE_PACK, path);
    if (pack_open(&b->pack, path, o->h, o->w, o->c, expect_fingerprint, e)) {
        free(b->what);
        free(b);
        return -1;
    }
    const Pack *p = &b->pack;
    base_describe(b, p->n, p->h, p->w, p->c, p->labels, p->n_classes, p->class_names);
    b->strict = o->strict;
    source_set(s, b, 0);
    return 0;
}

int source_load_memory(Source *s, const SourceImageOpts *o, Err *e) {
    SourceBase *b = s->base;
    if (!b || b->kind == SOURCE_MEMORY) return 0;
    CHECK(b->refs == 1 && s->offset == 0);
    Dataset d;
    memset(&d, 0, sizeof d);
    if (b->kind == SOURCE_FOLDER) {
        ImageDirOptions io;
        image_dir_options_default(&io);
        io.height = o->h;
        io.width = o->w;
        io.channels = o->c;
        io.strict = o->strict;
        io.exact = o->exact;
        io.quiet = o->quiet; /* open the listing quiet: the warnings then come once, from here */
        if (images_load_dir(&d, b->what, &io, e)) return -1;
    } else {
        const size_t S = (size_t)b->h * b->w * b->c;
        d.n = b->n;
        d.h = b->h;
        d.w = b->w;
        d.c = b->c;
        d.pixels = xmalloc((size_t)b->n * S + 1);
        d.labels = xmalloc((size_t)b->n * sizeof *d.labels + 1);
        memcpy(d.labels, b->labels, (size_t)b->n * sizeof *d.labels);
        d.n_classes = b->n_classes;
        if (b->class_names) {
            d.class_names = xmalloc((size_t)b->n_classes * sizeof *d.class_names);
            for (int k = 0; k < b->n_classes; k++) d.class_names[k] = xstrdup(b->class_names[k]);
        }
        SourceWorker w = {0};
        for (int64_t i = 0; i < b->n; i++)
            if (source_read(s, i, d.pixels + (size_t)i * S, &w, e) < 0) {
                source_worker_free(&w);
                dataset_free(&d);
                return -1;
            }
        source_worker_free(&w);
    }
    char *what = xstrdup(b->what);
    source_free(s);
    source_from_dataset(s, &d, what);
    free(what);
    return 0;
}

void source_split_tail(Source *src, Source *dst, int64_t count) {
    CHECK(count >= 0 && count <= src->n);
    *dst = *src;
    int64_t keep = src->n - count;
    dst->n = count;
    dst->offset = src->offset + keep;
    dst->labels = src->labels + keep;
    dst->skipped = 0;
    if (dst->base) dst->base->refs++;
    src->n = keep;
}

int source_check_labels(const Source *s, int n_classes, int64_t first_index, const char *what,
                        Err *e) {
    Dataset view; /* the labels are all dataset_check_labels reads */
    memset(&view, 0, sizeof view);
    view.n = s->n;
    view.labels = (int32_t *)s->labels;
    return dataset_check_labels(&view, n_classes, first_index, what, e);
}

int source_is_direct(const Source *s) { return !s->base || s->base->pixels != NULL; }

const uint8_t *source_pixels(const Source *s, int64_t i) {
    return s->base->pixels + (size_t)(s->offset + i) * s->h * s->w * s->c;
}

void source_worker_free(SourceWorker *w) {
    image_decoder_free(w->dec);
    w->dec = NULL;
}

static int read_folder(const SourceBase *b, int64_t i, uint8_t *out, SourceWorker *w, Err *e) {
    char path[PATH_MAX + 256], reason[256];
    image_list_path(&b->list, i, path, sizeof path);
    if (!w->dec) w->dec = image_decoder_new();
    if (!w->dec) {
        err_set(e, "%s: cannot initialise TurboJPEG", path);
        return -1;
    }
    if (image_decoder_load(w->dec, path, b->h, b->w, b->c, b->exact, out, reason, sizeof reason) ==
        0)
        return 0;
    if (b->strict) {
        err_set(e, "%s: %s (strict image loading)", path, reason);
        return -1;
    }
    memset(out, 0, (size_t)b->h * b->w * b->c);
    err_set(e, "%s: %s", path, reason);
    return 1;
}

int source_read(const Source *s, int64_t i, uint8_t *out, SourceWorker *w, Err *e) {
    const SourceBase *b = s->base;
    const size_t S = (size_t)s->h * s->w * s->c;
    const int64_t k = s->offset + i;
    if (b->pixels) {
        memcpy(out, b->pixels + (size_t)k * S, S);
        return 0;
    }
    if (b->kind == SOURCE_FOLDER) return read_folder(b, k, out, w, e);
    const uint8_t *p = pack_record(&b->pack, k, e);
    if (!p) return -1;
    memcpy(out, p, S);
    return 0;
}

/* Not inlined: one instance of the loop, whatever the caller, so every path rounds alike. */
__attribute__((noinline)) static void to_float(const uint8_t *px, size_t count, float scale,
                                               float offset, float *x) {
    for (size_t k = 0; k < count; k++) x[k] = (float)px[k] * scale + offset;
}

void source_gather_batch(const Source *s, const uint8_t *px, const int64_t *ids, int n, float scale,
                         float offset, float *x, int32_t *y) {
    const size_t S = (size_t)s->h * s->w * s->c;
#pragma omp parallel for schedule(static) if (n * S > 65536)
    for (int i = 0; i < n; i++) {
        to_float(px ? px + (size_t)i * S : source_pixels(s, ids[i]), S, scale, offset,
                 x + (size_t)i * S);
        y[i] = s->labels[ids[i]];
    }
}

/* ---------------------------------------------------------------- packing */

/* pack_write's OpenMP threads each decode with their own decoder. */
static _Thread_local SourceWorker pack_worker;

typedef struct {
    const Source *src;
    int64_t bad;
} PackArg;

static int pack_read(void *arg, int64_t i, uint8_t *px, Err *e) {
    PackArg *a = arg;
    Err sub = {0};
    int rc = source_read(a->src, i, px, &pack_worker, &sub);
    if (rc < 0) {
        err_set(e, "%s", sub.msg);
        return -1;
    }
    if (rc > 0) { /* the streaming policy: the same black image training from the folder gets */
        fprintf(stderr, "convnet-dist: warning: %s: packed as a black image (sample %lld)\n",
                sub.msg, (long long)i);
#pragma omp atomic
        a->bad++;
    }
    return 0;
}

int source_pack_folder(const Source *folder, const SourceImageOpts *o, const char *path, Dist *dist,
                       int64_t *bad, Err *e) {
    CHECK(folder->base && folder->base->kind == SOURCE_FOLDER && folder->offset == 0);
    PackMeta m = {folder->n,
                  o->h,
                  o->w,
                  o->c,
                  folder->n_classes,
                  folder->class_names,
                  folder->labels,
                  source_fingerprint(folder, o)};
    PackArg a = {folder, 0};
    int rc = pack_write(path, &m, pack_read, &a, dist, e);
    source_worker_free(&pack_worker);
#pragma omp parallel
    source_worker_free(&pack_worker);
    *bad = a.bad;
    return rc;
}
