/* image_list.c: listing a folder of class folders (Keras image_dataset_from_directory's order)
 * into a compact index, without opening a single image (see ImageList in images.h).
 *
 * Owns: the walk (class folders sorted, hidden ones skipped, files recursively inside each
 * class folder, symlinked sub-folders not followed, as os.walk(followlinks=False)), the checks
 * that stat() alone can make (a regular file, not empty, under 1 GiB: the others are skipped
 * with one warning each, or refused in strict mode) and the source fingerprint.
 *
 * Cost: the walk reads the folders (readdir's d_type says which entries are folders, so it
 * stats nothing); then every image-named file is stat()ed once (symbolic links followed) for
 * the checks and the fingerprint. That stat() is most of a listing's time (100,000 symbolic
 * links: 80%), so over several ranks rank 0 alone walks and sorts, broadcasts the listing, and
 * each rank stats its shard of it on its threads; the table is gathered (docs/data.md).
 *
 * Memory: the index holds every relative path once in one arena, an 8-byte offset and a 4-byte
 * label per file; nothing is sized per file beyond that (about 40 bytes a file for
 * dogs-vs-cats' names), so 1.28 M files list in about 50 MB. While listing, the walk's copy of
 * the paths, 12 bytes a file of order and the 24-byte stat() table are held and freed at the
 * end (about 100 bytes a file at the peak).
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

/* What the walk collects before sorting: every image-named entry that is not a directory, by
 * its path relative to the listed folder. Nothing is stat()ed yet. */
typedef struct {
    char *arena;
    size_t len, cap;
    int64_t n, cap_n;
    int64_t *off;
    int32_t *label;
} Walk;

/* What stat() said of one listed file: a row of the table the ranks share. */
typedef struct {
    int64_t size, mtime_ns;
    int32_t why; /* WHY_OK, else a reason to skip (see skip_reason), or WHY_GONE */
    int32_t pad;
} FileStat;

/* WHY_GONE: vanished since the walk, or a symbolic link to a folder or to nothing: left out
 * silently, as os.walk leaves them out, and not part of the fingerprint. */
enum { WHY_OK, WHY_NOT_REGULAR, WHY_EMPTY, WHY_TOO_LARGE, WHY_GONE };

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

/* rel/name into the arena: no allocation per file beyond the arena's doubling. */
static void walk_push(Walk *w, const char *rel, const char *name, int label) {
    size_t lr = strlen(rel), ln = strlen(name), l = lr + 1 + ln + 1;
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
        w->cap_n = cap;
    }
    char *p = w->arena + w->len;
    memcpy(p, rel, lr);
    p[lr] = '/';
    memcpy(p + lr + 1, name, ln + 1);
    w->off[w->n] = (int64_t)w->len;
    w->label[w->n] = label;
    w->n++;
    w->len += l;
}

static void walk_free(Walk *w) {
    free(w->arena);
    free(w->off);
    free(w->label);
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

/* Every image-named entry under root/rel that is not a real folder; real sub-folders are
 * walked (symlinked ones are not followed, as os.walk(followlinks=False)). The entry's type
 * comes from readdir (d_type): no stat() here unless the file system does not say
 * (DT_UNKNOWN). Order does not matter: the whole listing is sorted afterwards. */
static int walk_class(Walk *w, const char *root, int rootfd, const char *rel, int label, int depth,
                      Err *e) {
    if (depth > MAX_WALK_DEPTH) {
        char *dir = path_join(root, rel);
        err_set(e, "%s: folders nested more than %d deep", dir, MAX_WALK_DEPTH);
        free(dir);
        return -1;
    }
    int fd = openat(rootfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        char *dir = path_join(root, rel);
        err_set(e, "%s: cannot open directory: %s", dir, strerror(errno));
        free(dir);
        if (fd >= 0) close(fd);
        return -1;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
        int type = de->d_type;
        if (type == DT_UNKNOWN) {
            struct stat lst;
            if (fstatat(dirfd(d), name, &lst, AT_SYMLINK_NOFOLLOW) != 0) continue;
            type = S_ISDIR(lst.st_mode) ? DT_DIR : DT_REG;
        }
        if (type == DT_DIR) {
            char *r = path_join(rel, name);
            rc = walk_class(w, root, rootfd, r, label, depth + 1, e);
            free(r);
        } else if (is_image_name(name)) {
            walk_push(w, rel, name, label);
        }
    }
    closedir(d);
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

/* The walk's entries, sorted, into l (all of them: the ones stat() rejects go later). */
static void list_sorted(ImageList *l, const Walk *w) {
    int64_t *ord = xmalloc((size_t)(w->n ? w->n : 1) * sizeof *ord);
    for (int64_t i = 0; i < w->n; i++) ord[i] = i;
    qsort_r(ord, (size_t)w->n, sizeof *ord, cmp_entry, (void *)w);
    l->names = xmalloc(w->len ? w->len : 1);
    l->off = xmalloc((size_t)(w->n ? w->n : 1) * sizeof *l->off);
    l->labels = xmalloc((size_t)(w->n ? w->n : 1) * sizeof *l->labels);
    size_t len = 0;
    for (int64_t k = 0; k < w->n; k++) {
        const char *rel = w->arena + w->off[ord[k]];
        size_t sl = strlen(rel) + 1;
        memcpy(l->names + len, rel, sl);
        l->off[k] = (int64_t)len;
        l->labels[k] = w->label[ord[k]];
        len += sl;
    }
    l->n = w->n;
    free(ord);
}

/* stat() of files [lo, hi) of l (symbolic links followed), on the rank's threads. The one
 * system call a file costs: 1.28 M of them for ImageNet. */
static void stat_range(const ImageList *l, int rootfd, FileStat *fs, int64_t lo, int64_t hi) {
#pragma omp parallel for schedule(dynamic, 256) if (hi - lo > 1024)
    for (int64_t i = lo; i < hi; i++) {
        struct stat st;
        FileStat *f = &fs[i];
        memset(f, 0, sizeof *f);
        if (fstatat(rootfd, l->names + l->off[i], &st, 0) != 0 || S_ISDIR(st.st_mode)) {
            f->why = WHY_GONE;
            continue;
        }
        f->size = (int64_t)st.st_size;
        f->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
        f->why = !S_ISREG(st.st_mode)           ? WHY_NOT_REGULAR
                 : st.st_size == 0              ? WHY_EMPTY
                 : st.st_size > MAX_FILE_BYTES  ? WHY_TOO_LARGE
                                                : WHY_OK;
    }
}

/* Bytes of l->names in use. */
static size_t names_len(const ImageList *l) {
    if (!l->n) return 0;
    const char *last = l->names + l->off[l->n - 1];
    return (size_t)(last - l->names) + strlen(last) + 1;
}

/* Rank 0's listing (or its error) to every rank of dist: the classes, the sorted paths and their
 * labels, so the folders are read once per job, not once per rank, and every rank holds the same
 * listing by construction. Collective; 0, or -1 with rank 0's e on every rank. */
static int list_bcast(Dist *dist, ImageList *l, int rc, Err *e) {
    const int root = dist->rank == 0;
    int64_t hdr[4] = {rc, l->n, (int64_t)names_len(l), l->n_classes};
    dist_bcast(dist, hdr, sizeof hdr, 0);
    if (hdr[0]) {
        dist_bcast(dist, e->msg, sizeof e->msg, 0);
        e->set = 1;
        return -1;
    }
    size_t cl = 0; /* the class names, NUL-separated */
    for (int k = 0; root && k < l->n_classes; k++) cl += strlen(l->class_names[k]) + 1;
    dist_bcast(dist, &cl, sizeof cl, 0);
    char *blob = xmalloc(cl + 1);
    for (size_t k = 0, at = 0; root && k < (size_t)l->n_classes; k++) {
        size_t len = strlen(l->class_names[k]) + 1;
        memcpy(blob + at, l->class_names[k], len);
        at += len;
    }
    dist_bcast(dist, blob, cl, 0);
    if (!root) {
        l->n = hdr[1];
        l->n_classes = (int)hdr[3];
        l->class_names = xmalloc((size_t)(l->n_classes ? l->n_classes : 1) * sizeof(char *));
        for (size_t k = 0, at = 0; k < (size_t)l->n_classes; k++) {
            l->class_names[k] = xstrdup(blob + at);
            at += strlen(blob + at) + 1;
        }
        l->names = xmalloc((size_t)hdr[2] + 1);
        l->off = xmalloc((size_t)(l->n ? l->n : 1) * sizeof *l->off);
        l->labels = xmalloc((size_t)(l->n ? l->n : 1) * sizeof *l->labels);
    }
    free(blob);
    dist_bcast(dist, l->names, (size_t)hdr[2], 0);
    dist_bcast(dist, l->off, (size_t)l->n * sizeof *l->off, 0);
    dist_bcast(dist, l->labels, (size_t)l->n * sizeof *l->labels, 0);
    return 0;
}

/* The stat() table of every listed file: over several ranks each stats its shard and the table
 * is gathered; alone, every file here. Collective over dist. */
static FileStat *list_stat(const ImageList *l, int rootfd, Dist *dist) {
    FileStat *fs = xmalloc((size_t)(l->n ? l->n : 1) * sizeof *fs);
    if (!dist || dist->size == 1) {
        stat_range(l, rootfd, fs, 0, l->n);
        return fs;
    }
    stat_range(l, rootfd, fs, l->n * dist->rank / dist->size,
               l->n * (dist->rank + 1) / dist->size);
    dist_allgather_rows(dist, fs, l->n, sizeof *fs);
    return fs;
}

/* The fingerprint, the skipped files (reported or refused) and l compacted to the good ones. */
static int list_finish(ImageList *l, const FileStat *fs, int strict, int quiet, Err *e) {
    uint64_t h = HASH_SEED;
    size_t len = 0;
    int64_t n = 0;
    int rc = 0;
    for (int64_t i = 0; i < l->n && rc == 0; i++) {
        const char *rel = l->names + l->off[i];
        size_t sl = strlen(rel) + 1;
        const FileStat *f = &fs[i];
        if (f->why == WHY_GONE) continue;
        /* the fingerprint: what a pack or a cache made from this listing depends on */
        h = hash_bytes(h, rel, sl);
        h = hash_bytes(h, &f->size, sizeof f->size);
        h = hash_bytes(h, &f->mtime_ns, sizeof f->mtime_ns);
        if (f->why != WHY_OK) {
            char buf[64], *p = path_join(l->dir, rel);
            const char *why = skip_reason(f->why, (long long)f->size, buf, sizeof buf);
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
        memmove(l->names + len, rel, sl); /* compacting in place: len <= off[i] */
        l->off[n] = (int64_t)len;
        l->labels[n++] = l->labels[i];
        len += sl;
    }
    l->n = n;
    l->fingerprint = h;
    return rc;
}

/* Rank 0's part (or a lone process's): the classes, the walk and the sort. */
static int list_walk(ImageList *l, const char *dir, int rootfd, Err *e) {
    l->class_names = list_classes(dir, &l->n_classes, e);
    if (!l->class_names) return -1;
    Walk w = {0};
    int rc = 0;
    for (int k = 0; k < l->n_classes && rc == 0; k++)
        rc = walk_class(&w, dir, rootfd, l->class_names[k], k, 0, e);
    if (rc == 0) list_sorted(l, &w);
    walk_free(&w);
    return rc;
}

int image_list_dir(ImageList *l, const char *dir, int strict, int quiet, Dist *dist, Err *e) {
    double t0 = now_seconds();
    memset(l, 0, sizeof *l);
    l->dir = xstrdup(dir);
    const int shared = dist && dist->size > 1;
    int rootfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
    if (!shared || dist->rank == 0) {
        rc = rootfd < 0 ? -1 : list_walk(l, dir, rootfd, e);
        if (rootfd < 0) err_set(e, "%s: cannot open directory: %s", dir, strerror(errno));
    }
    if (shared) {
        rc = list_bcast(dist, l, rc, e);
        /* every rank stats its share: one that cannot open the folder stops them all */
        if (rc == 0 && dist_allreduce_max_int(dist, rootfd < 0, "listing")) {
            err_set(e, "%s: cannot open directory on every rank (a folder every rank must see)",
                    dir);
            rc = -1;
        }
    }
    FileStat *fs = rc == 0 ? list_stat(l, rootfd, dist) : NULL;
    if (rootfd >= 0) close(rootfd);
    if (rc == 0) rc = list_finish(l, fs, strict, quiet, e);
    free(fs);
    if (rc) image_list_free(l);
    l->seconds = now_seconds() - t0;
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
