/* common.c: checked allocation and I/O, error buffers, hashing, CRC-32, atomic file writes
 * and strict number parsing (see common.h). */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* Head and tail kept when a message outgrows Err.msg: its reason comes last. */
#define ERR_HEAD 320

void err_set(Err *e, const char *fmt, ...) {
    if (!e || e->set) return;
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->set = 1;
    if (n >= 0 && (size_t)n >= sizeof e->msg) {
        /* too long (a value nobody shortened): keep the start and the end, which says why,
         * and name what was cut */
        char *full = malloc((size_t)n + 1);
        if (full) {
            vsnprintf(full, (size_t)n + 1, fmt, again);
            char mid[64];
            int m = snprintf(mid, sizeof mid, " [... %d bytes cut ...] ", n);
            size_t tail = sizeof e->msg - 1 - ERR_HEAD - (size_t)m;
            memcpy(e->msg, full, ERR_HEAD);
            memcpy(e->msg + ERR_HEAD, mid, (size_t)m);
            memcpy(e->msg + ERR_HEAD + m, full + n - tail, tail + 1);
            free(full);
        }
    }
    va_end(again);
}

/* A UTF-8 sequence's start at or before p (never before lo). */
static const char *utf8_start(const char *lo, const char *p) {
    while (p > lo && ((unsigned char)*p & 0xC0) == 0x80) p--;
    return p;
}

const char *err_quote(const char *s, char *buf, size_t cap) {
    size_t n = strlen(s), keep = cap > 40 ? (cap - 40) / 2 : 1;
    if (n + 3 <= cap) {
        snprintf(buf, cap, "'%s'", s);
        return buf;
    }
    /* the head and the tail, cut at character boundaries, with the length */
    const char *h = utf8_start(s, s + keep), *t = utf8_start(s, s + n - keep);
    snprintf(buf, cap, "'%.*s\u2026%s' (%zu bytes)", (int)(h - s), s, t, n);
    return buf;
}

void die(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "convnet-dist: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stdout);
    exit(status);
}

void *xmalloc_at(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p) die(EXIT_RUNTIME, "out of memory allocating %zu bytes at %s:%d", n, file, line);
    return p;
}

void *xcalloc_at(size_t n, size_t size, const char *file, int line) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        die(EXIT_RUNTIME, "out of memory allocating %zu x %zu bytes at %s:%d", n, size, file, line);
    return p;
}

char *xstrdup_at(const char *s, const char *file, int line) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc_at(n, file, line);
    memcpy(p, s, n);
    return p;
}

FILE *xfopen_at(const char *path, const char *mode, const char *file, int line) {
    FILE *f = fopen(path, mode);
    if (!f) die(EXIT_RUNTIME, "cannot open %s: %s (at %s:%d)", path, strerror(errno), file, line);
    return f;
}

void xfwrite_at(const void *p, size_t size, size_t n, FILE *f, const char *path, const char *file,
                int line) {
    if (fwrite(p, size, n, f) != n)
        die(EXIT_RUNTIME, "write to %s failed: %s (at %s:%d)", path, strerror(errno), file, line);
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

uint32_t crc32_update(uint32_t crc, const void *p, size_t n) {
    /* zlib's table-driven CRC-32 (~10x a nibble loop); fed in chunks that fit its uInt length */
    const unsigned char *b = p;
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, b, chunk);
        b += chunk;
        n -= chunk;
    }
    return crc;
}

int file_write_atomic(const char *path, const IoChunk *chunks, int n_chunks, Err *e) {
    size_t plen = strlen(path);
    char *tmp = xmalloc(plen + 32);
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        err_set(e, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    for (int i = 0; i < n_chunks; i++) {
        const char *q = chunks[i].p;
        size_t left = chunks[i].n;
        while (left > 0) {
            ssize_t w = write(fd, q, left);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                err_set(e, "write to %s failed: %s", tmp, strerror(errno));
                close(fd);
                unlink(tmp);
                free(tmp);
                return -1;
            }
            q += w;
            left -= (size_t)w;
        }
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        err_set(e, "cannot flush %s: %s", tmp, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        err_set(e, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    /* fsync the directory so that the rename itself survives a crash */
    char *dcopy = xstrdup(path);
    int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY);
    free(dcopy);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* Whole file into a NUL-terminated buffer. 1 when absent (not an error), 0 read, -1 error. */
char *path_join(const char *root, const char *p) {
    if (p[0] == '/' || !root || !*root) return xstrdup(p);
    size_t n = strlen(root) + strlen(p) + 2;
    char *s = xmalloc(n);
    snprintf(s, n, root[strlen(root) - 1] == '/' ? "%s%s" : "%s/%s", root, p);
    return s;
}

FILE *file_open_regular(const char *path, const char *what, long long *size, Err *e) {
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int err = errno;
        err_set(e, "cannot open %s %s: %s", what, path, strerror(err));
        errno = err;
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        const char *kind = S_ISDIR(st.st_mode)                          ? "a directory"
                           : S_ISFIFO(st.st_mode)                       ? "a named pipe"
                           : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                           : S_ISSOCK(st.st_mode)                       ? "a socket"
                                                                        : "not a regular file";
        err_set(e, "%s: the %s is %s, not a regular file", path, what, kind);
        close(fd);
        errno = EINVAL;
        return NULL;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int err = errno;
        err_set(e, "cannot open %s %s: %s", what, path, strerror(err));
        close(fd);
        errno = err;
        return NULL;
    }
    if (size) *size = (long long)st.st_size;
    return f;
}

int size_mul_add(size_t a, size_t b, size_t c, size_t *out) {
    if (b && a > (SIZE_MAX - c) / b) return -1;
    *out = a * b + c;
    return 0;
}

size_t floats_first_nonfinite(const float *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i])) return i;
    return n;
}

/* A job file is text: more than this is refused before it is read. */
#define TEXT_MAX_BYTES (64LL << 20)

int file_read_text(const char *path, char **out, size_t *len, Err *e) {
    long long size = 0;
    Err sub = {0};
    FILE *f = file_open_regular(path, "file", &size, &sub);
    if (!f) {
        if (errno == ENOENT) return 1;
        err_set(e, "%s", sub.msg);
        return -1;
    }
    if (size > TEXT_MAX_BYTES) {
        err_set(e, "%s: %lld bytes: too large for a job file (limit %lld)", path, size,
                TEXT_MAX_BYTES);
        fclose(f);
        return -1;
    }
    /* the size fstat gave, plus a byte to notice a file that grows while read */
    size_t cap = (size_t)size + 2;
    char *b = xmalloc(cap);
    size_t n = fread(b, 1, cap - 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n != (size_t)size) {
        err_set(e, "cannot read %s: %s", path,
                bad ? strerror(errno) : "the file changed size while it was read");
        free(b);
        return -1;
    }
    b[n] = 0;
    *out = b;
    *len = n;
    return 0;
}

int parse_long(const char *s, long *out) {
    if (!s || !*s) return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

/* A decimal number, or a fraction "a/b" (as in "scale = 1/255"). */
int parse_double(const char *s, double *out) {
    if (!s || !*s) return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || end == s) return -1;
    if (*end == '/') {
        const char *d = end + 1;
        double den = strtod(d, &end);
        if (errno || end == d || den == 0) return -1;
        v /= den;
    }
    if (*end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}
