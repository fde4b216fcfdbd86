/* isolate.h: running a parser that is not ours in a child process.
 *
 * libhdf5 is not memory-safe on damaged or hostile files (fuzzing tests/fuzz/fuzz_h5.c finds
 * heap overflows and multi-GB allocations inside it). isolate_run() forks, runs fn in the
 * child over a shared copy of the caller's output buffer, and hands back the child's result
 * and message; a child that crashes, is killed or runs out of memory becomes an error
 * naming what happened, and the caller's process and buffer are untouched by it.
 */
#ifndef CONVNET_ISOLATE_H
#define CONVNET_ISOLATE_H

#include <stddef.h>

#include "common.h"

/* Run fn(ctx, buf, e) in a child, buf being a shared copy of out[0..n); on success (fn
 * returned 0) out gets the child's buf. `what` names the input in messages. Returns fn's
 * result, or -1 with e set when the child did not finish normally. */
int isolate_run(int (*fn)(void *ctx, void *buf, Err *e), void *ctx, void *out, size_t n,
                const char *what, Err *e);

#endif
