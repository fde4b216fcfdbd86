/* testutil.h: the test harness shared by every suite in tests/.
 *
 * Each tests/test_*.c file declares its suite with TEST_SUITE(name, {"case", fn}, ...);
 * a constructor queues it and test_main.c registers every queued suite with CUnit, so
 * adding a test file needs no edit elsewhere. Also: running the built binary, finding
 * ../shared/data, temporary directories and a finite-difference gradient check.
 */
#ifndef CONVNET_TESTUTIL_H
#define CONVNET_TESTUTIL_H

#include <CUnit/CUnit.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* The message msg contains sub; on failure the whole message is printed, so the log shows what
 * the error said instead of only which fragment it lacked. */
#define HAS(msg, sub)                                                                       \
    do {                                                                                    \
        if (!strstr((msg), (sub))) printf("\n    message '%s' lacks '%s'\n", (msg), (sub)); \
        CU_ASSERT_PTR_NOT_NULL(strstr((msg), (sub)));                                       \
    } while (0)

typedef struct {
    const char *name;
    void (*fn)(void);
} TestCase;

void testutil_add_suite(const char *name, const TestCase *cases);

#define TEST_SUITE(sname, ...)                                        \
    static const TestCase sname##_cases[] = {__VA_ARGS__, {0, 0}};    \
    static void __attribute__((constructor)) sname##_register(void) { \
        testutil_add_suite(#sname, sname##_cases);                    \
    }

/* A check that cannot run here: prints "SKIP what: why" and counts it (test_main prints the
 * count last, CUnit having no skip status). must_run: under CI=true with ../shared present
 * (CI's machine, which has every dependency) the skip is a failure instead (MPI, real data). */
void testutil_skip(const char *what, const char *why, int must_run);
int testutil_skipped(void);

/* ../shared/data (or $CONVNET_SHARED_DATA) if it exists, else NULL after a counted skip
 * "SKIP <what>: ... absent". */
const char *testutil_shared_data(const char *what);

/* Path of the built binary ($CONVNET_BIN, default ./convnet-dist). */
const char *testutil_bin(void);

/* testutil_bin() as an absolute path, for commands that first cd into a test directory. */
const char *testutil_bin_abs(void);

/* `cd DIR && PREFIX BIN train JOB EXTRA` (PREFIX: "" or an mpirun prefix): its exit status,
 * and its output in *out (malloc'd) when out is non-NULL. */
int testutil_train(const char *dir, const char *prefix, const char *job, const char *extra,
                   char **out);

/* A fresh directory holding PREFIX-train-{images,labels}.idx (240 samples) and PREFIX-test-...
 * (60 samples) of 10x10 synthetic images, from seeds seed and seed + 1: the small data set of
 * the CLI training tests. */
const char *testutil_small_idx_dir(const char *prefix, unsigned seed);

/* This test program's own path (for a test that runs it under mpirun with a helper argument). */
const char *testutil_self_exe(void);

/* 1 when the binary was built with MPI and mpirun exists. */
int testutil_have_mpi(void);

/* mpirun prefix with --oversubscribe (and --allow-run-as-root as root) for np ranks,
 * written into buf. */
const char *testutil_mpirun(char *buf, size_t n, int np);

/* Run a shell command; returns its exit status (or 128+signal) and, if out is non-NULL,
 * its combined stdout+stderr (malloc'd, caller frees). */
int testutil_run(const char *cmd, char **out);

/* `OMP_NUM_THREADS=1 BIN ARGS` with ARGS from the format: its exit status, and its output in
 * *out (malloc'd) when out is non-NULL. */
int testutil_run_bin(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* `BIN diff-weights DIR/a DIR/b --rtol RTOL`: 1 when within rtol, else 0 after printing the
 * difference it found. */
int testutil_same_weights(const char *dir, const char *a, const char *b, const char *rtol);

/* Set environment variable `name` to value; returns its previous value (malloc'd, NULL when it
 * was unset) for testutil_env_restore(name, previous), which frees it. Both reload runenv(),
 * which the library reads instead of the environment. */
char *testutil_env_swap(const char *name, const char *value);
void testutil_env_restore(const char *name, char *previous);

/* A fresh temporary directory (removed at exit). */
const char *testutil_tmpdir(void);

/* Write text to dir/name and return the full path (static buffer rotated over 8 slots). */
const char *testutil_write_file(const char *dir, const char *name, const void *data, size_t n);

/* Size of a file in bytes, -1 when it cannot be opened. */
long testutil_file_size(const char *path);

/* Deterministic pseudo-random fill in [lo, hi). */
void testutil_fill(float *x, size_t n, unsigned seed, float lo, float hi);

/* Central-difference check: f(ctx) returns a scalar loss computed from the current
 * contents of x; analytic holds dloss/dx. Checks max |num - ana| / max(1, |num|, |ana|)
 * over the n elements (or `samples` evenly spread ones if samples > 0) against tol. */
double testutil_grad_error(double (*f)(void *ctx), void *ctx, float *x, const float *analytic,
                           size_t n, size_t samples, float eps);


/* Write an IDX header for unsigned bytes: 00 00 08 ndim, then the big-endian dims. Returns
 * its length (4 + 4 * ndim). */
size_t testutil_idx_header(unsigned char *b, int ndim, const unsigned *dims);

/* Write a synthetic IDX data set of n h x w images in 3 classes (class k: a bright square at a
 * class-specific place plus noise) to dir/prefix-images.idx and dir/prefix-labels.idx. */
void testutil_write_idx_dataset(const char *dir, const char *prefix, int n, int h, int w,
                                unsigned seed);

/* The per-step losses of DIR/TAG.steps (a run's train.step_log: "step epoch loss" lines), at
 * most max of them: how many were read (0 when the file is absent). */
int testutil_read_step_losses(const char *dir, const char *tag, double *loss, int max);
#endif
