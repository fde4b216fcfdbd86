/* isolate.h: running a parser that is not ours in a sandboxed child process.
 *
 * libhdf5 is not memory-safe on damaged or hostile files (fuzzing tests/fuzz/fuzz_h5.c finds
 * heap overflows and multi-GB allocations inside it), and a heap overflow can become code run
 * as the user. isolate_run() forks; the child closes every descriptor above stderr, takes
 * rlimits (CPU time, no file growth) and a seccomp-bpf filter that allows only computing in
 * memory (docs/sandbox.md lists it), then runs fn over a shared copy of the caller's output
 * buffer. The input must already be in memory (mapped before the call). A child that crashes,
 * is killed, runs out of memory or makes a system call the filter does not allow becomes an
 * error naming what happened; the caller's process and buffer are untouched by it.
 */
#ifndef CONVNET_ISOLATE_H
#define CONVNET_ISOLATE_H

#include <stddef.h>

#include "common.h"

/* How the child ended (IsolateOpts.ended). */
typedef enum {
    ISOLATE_OK,        /* fn returned 0 */
    ISOLATE_REFUSED,   /* fn returned non-zero with its message (a damaged file, said so) */
    ISOLATE_CRASHED,   /* killed by a signal or the rlimits, or exited early */
    ISOLATE_SANDBOX,   /* stopped by the seccomp filter: it attempted a forbidden system call */
    ISOLATE_NO_SANDBOX /* the kernel has no seccomp and unsandboxed_ok was 0: nothing ran */
} IsolateEnd;

typedef struct {
    const char *what;   /* the input, in messages (its path) */
    const char *reader; /* what reads it, in messages ("the HDF5 parser") */
    int unsandboxed_ok; /* where the kernel has no seccomp: 1 reads with the rlimits only (said
                         * once on stderr), 0 refuses */
    IsolateEnd ended;   /* out: how the child ended */
} IsolateOpts;

/* Run fn(ctx, buf, e) in the sandboxed child, buf being a shared copy of out[0..n); on success
 * (fn returned 0) out gets the child's buf. Returns fn's result, or -1 with e set when the
 * child did not finish normally. */
int isolate_run(int (*fn)(void *ctx, void *buf, Err *e), void *ctx, void *out, size_t n,
                IsolateOpts *opts, Err *e);

/* Test seams (tests/test_sandbox.c): a function the child calls once the sandbox is in place,
 * just before fn, standing in for a parser taken over by a hostile file; and a switch that
 * makes the child behave as on a kernel without seccomp. Never set outside the tests. */
extern void (*isolate_test_hook)(void);
extern int isolate_test_no_seccomp;

#endif
