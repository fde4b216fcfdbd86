/* fuzz_util.h: helpers shared by the libFuzzer targets in tests/fuzz/ (one fuzz_*.c per
 * parser; `make fuzz` builds and runs them, see the Makefile).
 *
 * Owns: serving fuzz input as a real, regular file without touching the disk (a memfd named
 * /proc/self/fd/N, which is what the parsers' open-and-fstat path sees for a file), splitting
 * one input into several files, an in-memory file set for [include]d job files, and a small
 * planned model for the weights readers.
 */
#ifndef CONVNET_FUZZ_UTIL_H
#define CONVNET_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "job.h"
#include "model.h"

/* A memfd holding data[0..n); its path in path (>= 32 bytes). Returns the fd (close it). */
int fuzz_memfile(const uint8_t *data, size_t n, char *path);

/* Split data at every "\n%%\n" into at most max parts: starts and lengths; returns the count. */
int fuzz_split(const uint8_t *data, size_t n, const uint8_t **part, size_t *len, int max);

/* The in-memory file set that ini.c reads through (ini_set_file_source): names "mem/NAME". */
void fuzz_memfs_clear(void);
void fuzz_memfs_add(const char *name, const void *data, size_t n);
void fuzz_memfs_install(void);

/* A planned, allocated model from the job text (layers only; the data section is supplied)
 * on input in; 0, or -1 when the job or the plan is refused (nothing to free then). The
 * plan's memory is checked against `limit` bytes first, as trainer_init does against the
 * node's. */
int fuzz_model(const char *layers_text, Shape in, size_t limit, Job *j, Model *m);

/* libFuzzer's coverage counters (n of them): fuzz_cov.c, built without instrumentation. */
uint8_t *fuzz_counters(size_t *n);

#endif
