/* image_list.c: listing a folder of class folders (Keras image_dataset_from_directory's order)
 * into a compact index, without opening a single image (see ImageList in images.h).
 *
 * Owns: the walk (class folders sorted, hidden ones skipped, files recursively inside each
 * class folder, symlinked sub-folders not followed, as os.walk(followlinks=False)), the checks
 * that stat() alone can make (a regular file, not empty, under 1 GiB: the others are skipped
 * with one warning each, or refused in strict mode) and the source fingerprint.
 *
 * Memory: the index holds every relative path once in one arena, an 8-byte offset and a 4-byte
 * label per file; nothing is sized per file beyond that (about 40 bytes a file for
 * dogs-vs-cats' names), so 1.28 M files list in about 50 MB. While listing, 24 more bytes a
 * file (size, mtime, order) are held and freed at the end.
 */
#include "images.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILE_BYTES (1LL << 30) /* a JPEG larger than 1 GiB is refused unread */
#define MAX_WALK_DEPTH 32          /* nested folders inside a class folder */

/* What the walk collects before sorting. */
typedef struct {
    char *arena;
    size_t len, cap;
    int64_t n, cap_n;
    int64_t *off;
    int32_t *label;
    int64_t *size, *mtime_ns;
    int8_t *why; /* 0 ok, else a reason to skip (see skip_reason) */
} Walk;

enum { WHY_OK, WHY_NOT_REGULAR, WHY_EMPTY, WHY_TOO_LARGE };

static const char *skip_reason(int why, long long size, char *buf, size_t n) {
    switch (why) {
    case WHY_NOT_REGULAR: return "not a regular file";
    case WHY_EMPTY: return "empty file (0 bytes)";
    default: snprintf(buf, n, "file too large (%lld bytes)", size); return buf;
    }
}

static void *grow(void *p, size_t used, size_t cap) {
    void *q = xmalloc(cap);
    if (used) memcpy(q, p, used);
    free(p);
    return q;
}

static void walk_push(Walk *w, const char *rel, int label, const struct stat *st) {
    size_t l = strlen(rel) + 1;
    if (w->len + l > w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 1 << 16;
        while (cap < w->len + l) cap *= 2;
        w->arena = grow(w->arena, w->len, cap);
        w->cap = cap;
    }
    if (w->n == w->cap_n) {
        int64_t cap = w->cap_n ? 2 * w->cap_n : 1024;
        w->off = grow(w->off, (size_t)w->n * sizeof *w->off, (size_t)cap * sizeof *w->off);
        w->label = grow(w->label, (size_t)w->n * sizeof *w->label, (size_t)cap * sizeof *w->label);
        w->size = grow(w->size, (size_t)w->n * sizeof *w->size, (size_t)cap * sizeof *w->size);
        w->mtime_ns = grow(w->mtime_ns, (size_t)w->n * sizeof *w->mtime_ns,
                           (size_t)cap * sizeof *w->mtime_ns);
        w->why = grow(w->why, (size_t)w->n, (size_t)cap);
        w->cap_n = cap;
    }
    memcpy(w->arena + w->len, rel, l);
    w->off[w->n] = (int64_t)w->len;
    w->label[w->n] = label;
    w->size[w->n] = (int64_t)st->st_size;
    w->mtime_ns[w->n] = (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
    w->why[w->n] = !S_ISREG(st->st_mode)          ? WHY_NOT_REGULAR
                   : st->st_size == 0             ? WHY_EMPTY
                   : st->st_size > MAX_FILE_BYTES ? WHY_TOO_LARGE
                                                  : WHY_OK;
    w->n++;
    w->len += l;
}

static void walk_free(Walk *w) {
    free(w->arena);
    free(w->off);
    free(w->label);
    free(w->size);
    free(w->mtime_ns);
    free(w->why);
    memset(w, 0, sizeof *w);
}

static int has_ext(const char *name, const char *ext) {
    size_t n = strlen(name), m = strlen(ext);
    if (n <= m) return 0;
    return strcasecmp(name + n - m, ext) == 0;
}

/* Keras' white-list of image extensions; only JPEG is decoded, the others are sniffed. */
static int is_image_name(const char *name) {
    static const char *const ext[] = {".jpg", ".jpeg", ".png", ".gif", ".bmp", NULL};
    for (int i = 0; ext[i]; i++)
        if (has_ext(name, ext[i])) return 1;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names in dir (excluding . and ..), sorted; NULL with e set when dir cannot be opened. */
static char **list_names(const char *dir, size_t *count, Err *e) {
    DIR *d = opendir(dir);
    if (!d) {
        err_set(e, "%s: cannot open directory: %s", dir, strerror(errno));
        return NULL;
    }
    size_t n = 0, cap = 16;
    char **v = xmalloc(cap * sizeof *v);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (n == cap) {
            v = grow(v, n * sizeof *v, 2 * cap * sizeof *v);
            cap *= 2;
        }
        v[n++] = xstrdup(de->d_name);
    }
    closedir(d);
    qsort(v, n, sizeof *v, cmp_str);
    *count = n;
    return v;
}

static void free_names(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* What one directory entry is: a real sub-folder (not followed when symlinked, as
 * os.walk(followlinks=False)), an image-named non-directory with its stat (symlinks followed),
 * or nothing to list. */
enum { ENT_SKIP, ENT_DIR, ENT_FILE };

static int classify(int dfd, const char *name, struct stat *st) {
    struct stat lst;
    if (fstatat(dfd, name, &lst, AT_SYMLINK_NOFOLLOW) != 0) return ENT_SKIP;
    if (S_ISDIR(lst.st_mode)) return ENT_DIR;
    if (!is_image_name(name)) return ENT_SKIP;
    if (!S_ISLNK(lst.st_mode)) {
        *st = lst;
        return ENT_FILE;
    }
    return fstatat(dfd, name, st, 0) == 0 && !S_ISDIR(st->st_mode) ? ENT_FILE : ENT_SKIP;
}

/* Every image-named file under root/rel. The entries of a folder are stat()ed in parallel (a
 * stat is the cost of listing: 1.28 M of them for ImageNet), then taken in sorted order. */
static int walk_class(Walk *w, const char *root, const char *rel, int label, int depth, Err *e) {
    char *dir = path_join(root, rel);
    if (depth > MAX_WALK_DEPTH) {
        err_set(e, "%s: folders nested more than %d deep", dir, MAX_WALK_DEPTH);
        free(dir);
        return -1;
    }
    size_t n = 0;
    char **names = list_names(dir, &n, e);
    int dfd = names ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    int rc = names && dfd >= 0 ? 0 : -1;
    if (names && dfd < 0) err_set(e, "%s: cannot open directory: %s", dir, strerror(errno));
    struct stat *st = rc == 0 ? xmalloc((n ? n : 1) * sizeof *st) : NULL;
    int8_t *kind = rc == 0 ? xmalloc(n ? n : 1) : NULL;
    if (rc == 0) {
#pragma omp parallel for schedule(dynamic, 256) if (n > 1024)
        for (size_t i = 0; i < n; i++) kind[i] = (int8_t)classify(dfd, names[i], &st[i]);
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (kind[i] == ENT_SKIP) continue;
        char *r = path_join(rel, names[i]);
        if (kind[i] == ENT_DIR)
            rc = walk_class(w, root, r, label, depth + 1, e);
        else
            walk_push(w, r, label, &st[i]);
        free(r);
    }
    if (dfd >= 0) close(dfd);
    free(st);
    free(kind);
    if (names) free_names(names, n);
    free(dir);
    return rc;
}

/* Keras' order: class, then the file's folder, then its name (sorted(os.walk()) per class). */
static int cmp_entry(const void *a, const void *b, void *arg) {
    const Walk *w = arg;
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    if (w->label[i] != w->label[j]) return w->label[i] < w->label[j] ? -1 : 1;
    const char *x = w->arena + w->off[i], *y = w->arena + w->off[j];
    const char *sx = strrchr(x, '/'), *sy = strrchr(y, '/');
    size_t lx = (size_t)(sx - x), ly = (size_t)(sy - y); /* every path is class/.../name */
    int r = memcmp(x, y, lx < ly ? lx : ly);
    if (r) return r;
    if (lx != ly) return lx < ly ? -1 : 1;
    return strcmp(sx + 1, sy + 1);
}

void image_list_free(ImageList *l) {
    free(l->dir);
    free(l->names);
    free(l->off);
    free(l->labels);
    for (int i = 0; i < l->n_classes; i++) free(l->class_names[i]);
    free(l->class_names);
    memset(l, 0, sizeof *l);
}

/* The class folders of dir: sorted, hidden ones skipped. */
static char **list_classes(const char *dir, int *nc, Err *e) {
    size_t n = 0;
    char **names = list_names(dir, &n, e);
    if (!names) return NULL;
    char **cls = xmalloc((n ? n : 1) * sizeof *cls);
    *nc = 0;
    for (size_t i = 0; i < n; i++) {
        if (names[i][0] == '.') continue;
        char *p = path_join(dir, names[i]);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) cls[(*nc)++] = xstrdup(names[i]);
        free(p);
    }
    free_names(names, n);
    if (*nc == 0) {
        err_set(e, "%s: no class sub-folders (expected one folder of images per class)", dir);
        free(cls);
        return NULL;
    }
    return cls;
}

/* Sorted, checked and compacted: the walk's files into l (skipped ones reported or refused). */
static int list_finish(ImageList *l, Walk *w, int strict, int quiet, Err *e) {
    int64_t *ord = xmalloc((size_t)(w->n ? w->n : 1) * sizeof *ord);
    for (int64_t i = 0; i < w->n; i++) ord[i] = i;
    qsort_r(ord, (size_t)w->n, sizeof *ord, cmp_entry, w);
    l->names = xmalloc(w->len ? w->len : 1);
    l->off = xmalloc((size_t)(w->n ? w->n : 1) * sizeof *l->off);
    l->labels = xmalloc((size_t)(w->n ? w->n : 1) * sizeof *l->labels);
    uint64_t h = HASH_SEED;
    size_t len = 0;
    int rc = 0;
    for (int64_t k = 0; k < w->n && rc == 0; k++) {
        int64_t i = ord[k];
        const char *rel = w->arena + w->off[i];
        size_t sl = strlen(rel) + 1;
        /* the fingerprint: what a pack or a cache made from this listing depends on */
        h = hash_bytes(h, rel, sl);
        h = hash_bytes(h, &w->size[i], sizeof w->size[i]);
        h = hash_bytes(h, &w->mtime_ns[i], sizeof w->mtime_ns[i]);
        if (w->why[i] != WHY_OK) {
            char buf[64], *p = path_join(l->dir, rel);
            const char *why = skip_reason(w->why[i], (long long)w->size[i], buf, sizeof buf);
            if (strict) {
                err_set(e, "%s: %s (strict image loading)", p, why);
                rc = -1;
            } else if (!quiet) {
                fprintf(stderr, "convnet-dist: warning: skipping %s: %s\n", p, why);
            }
            free(p);
            l->skipped++;
            continue;
        }
        memcpy(l->names + len, rel, sl);
        l->off[l->n] = (int64_t)len;
        l->labels[l->n++] = w->label[i];
        len += sl;
    }
    free(ord);
    l->fingerprint = h;
    return rc;
}

int image_list_dir(ImageList *l, const char *dir, int strict, int quiet, Err *e) {
    memset(l, 0, sizeof *l);
    l->dir = xstrdup(dir);
    l->class_names = list_classes(dir, &l->n_classes, e);
    if (!l->class_names) {
        image_list_free(l);
        return -1;
    }
    Walk w = {0};
    int rc = 0;
    for (int k = 0; k < l->n_classes && rc == 0; k++)
        rc = walk_class(&w, dir, l->class_names[k], k, 0, e);
    if (rc == 0) rc = list_finish(l, &w, strict, quiet, e);
    walk_free(&w);
    if (rc) image_list_free(l);
    return rc;
}

void image_list_path(const ImageList *l, int64_t i, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s", l->dir, l->names + l->off[i]);
}

size_t image_list_bytes(const ImageList *l) {
    size_t names = 0;
    if (l->n) names = (size_t)l->off[l->n - 1] + strlen(l->names + l->off[l->n - 1]) + 1;
    return names + (size_t)l->n * (sizeof *l->off + sizeof *l->labels);
}
