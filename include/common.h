/* common.h: checked helpers shared by every module.
 *
 * Owns: the project's exit statuses, the Err message buffer that parsers fill
 * instead of printing, CHECK() (always on, also in release builds) and the
 * x* wrappers around allocation and I/O that report the caller's file and line.
 */
#ifndef CONVNET_COMMON_H
#define CONVNET_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Process exit statuses (documented in README.md). */
enum {
    EXIT_OK = 0,
    EXIT_RUNTIME = 1,      /* failure while running: I/O error, out of memory, a peer rank died */
    EXIT_BAD_INPUT = 2,    /* bad job file, data file, weights, command line: nothing was trained */
    EXIT_PREEMPTED = 3,    /* stopped by SIGTERM/SIGUSR1 after writing a checkpoint: requeue me */
    EXIT_COMM_TIMEOUT = 4, /* a collective made no progress within collective_timeout */
    EXIT_STOPPED_UNSAVED = 5, /* stopped by SIGTERM/SIGUSR1 but no checkpoint was written */
    EXIT_DIVERGED = 6 /* terminate_on_nan: a step's loss was not finite; last checkpoint kept */
};

/* A parser's error message: the first error wins, later ones are ignored. */
typedef struct {
    int set;
    char msg[1024];
} Err;

/* A message longer than msg keeps its start and its end (the reason) around a note of what
 * was cut; values quoted in it should be shortened with err_quote() first. */
void err_set(Err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A user's value (a name, a path, a key) quoted for a message in buf[cap]: 'value', or when it
 * does not fit, its head and tail around an ellipsis with its length: 'aaaa…aaaa' (102400
 * bytes). Returns buf. ERR_QUOTE_MAX is a size that leaves room for the message's reason. */
#define ERR_QUOTE_MAX 160
const char *err_quote(const char *s, char *buf, size_t cap);

/* Print "convnet-dist: " + message to stderr and exit with status.
 *
 * Who ends the process: main and the trainer's top level (trainer_init, trainer_fit), which see
 * the whole run. Library code (the model, the graph, the formats, dist) returns an Err to them
 * instead, with three conventions that end the process where they stand:
 *  - CHECK: a broken internal invariant is a bug, not bad input;
 *  - the x* wrappers: no memory for bookkeeping (tables, names, small buffers) ends the run
 *    with EXIT_RUNTIME; the large buffers a job sizes are checked against the node first
 *    (preflight.h) and model_alloc returns an error;
 *  - dist.h: a failed MPI call, dist_abort and the collective watchdog end every rank at once
 *    (one rank alone cannot return: the others would wait in a collective for ever). */
void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

/* Internal invariant check, kept in release builds; never used for input validation. */
#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond))                                                                           \
            die(EXIT_RUNTIME, "internal error at %s:%d: CHECK(%s) failed", __FILE__, __LINE__, \
                #cond);                                                                        \
    } while (0)

void *xmalloc_at(size_t n, const char *file, int line);
void *xcalloc_at(size_t n, size_t size, const char *file, int line);
char *xstrdup_at(const char *s, const char *file, int line);
FILE *xfopen_at(const char *path, const char *mode, const char *file, int line);
void xfwrite_at(const void *p, size_t size, size_t n, FILE *f, const char *path, const char *file,
                int line);
#define xmalloc(n) xmalloc_at((n), __FILE__, __LINE__)
#define xcalloc(n, s) xcalloc_at((n), (s), __FILE__, __LINE__)
#define xstrdup(s) xstrdup_at((s), __FILE__, __LINE__)
#define xfopen(p, m) xfopen_at((p), (m), __FILE__, __LINE__)
#define xfwrite(p, s, n, f, path) xfwrite_at((p), (s), (n), (f), (path), __FILE__, __LINE__)

/* Monotonic wall-clock seconds. */
double now_seconds(void);

/* 64-bit FNV-1a, for hashing resolved configurations. */
uint64_t hash_bytes(uint64_t h, const void *p, size_t n);
#define HASH_SEED 1469598103934665603ULL

/* CRC-32 (zlib's polynomial) of a byte range, continuing from crc. */
uint32_t crc32_update(uint32_t crc, const void *p, size_t n);

/* Write a whole file atomically: temp file, fsync, rename over path, fsync the directory.
 * Returns 0, or -1 with e set (the old file, if any, is untouched). */
typedef struct {
    const void *p;
    size_t n;
} IoChunk;
int file_write_atomic(const char *path, const IoChunk *chunks, int n_chunks, Err *e);

/* root/p, or p itself when absolute or root is empty (malloc'd). */
char *path_join(const char *root, const char *p);

/* A whole file into a malloc'd NUL-terminated buffer: 0 read, 1 absent (not an error), -1 with
 * e set on any other failure. */
int file_read_text(const char *path, char **out, size_t *len, Err *e);

/* Open path for reading only if it is a regular file: it is opened non-blocking and checked
 * with fstat before any read, so a named pipe, a device (/dev/zero) or a directory is refused
 * at once instead of blocking or growing without end. `what` names the file's role in messages
 * ("job file", "weights file"); *size gets its length. NULL with e set (errno kept: ENOENT for
 * an absent file). */
FILE *file_open_regular(const char *path, const char *what, long long *size, Err *e);

/* a * b (+ c) into *out unless it overflows size_t: 0, or -1 on overflow. */
int size_mul_add(size_t a, size_t b, size_t c, size_t *out);

/* Index of the first NaN or infinity in p[0..n), or n when every value is finite. */
size_t floats_first_nonfinite(const float *p, size_t n);

/* Parse a whole string as a number; 0 on success, -1 on trailing junk, empty or out of range. */
int parse_long(const char *s, long *out);
int parse_double(const char *s, double *out);

#endif
