/* fuzz_checkpoint.c: libFuzzer target for checkpoint files (checkpoint.c): header, section
 * table, per-section CRCs, sizes, model fit and non-finite values, for a model of 23
 * parameters with SGD-momentum state (one optimizer slot used, as the seeds were written).
 *
 * Input: the file, served as a regular file (a memfd).
 */
#include <unistd.h>

#include "checkpoint.h"
#include "fuzz_util.h"

enum { N_PARAMS = 23 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[32];
    int fd = fuzz_memfile(data, size, path);
    CheckpointState st;
    float p[N_PARAMS], s1[N_PARAMS], s2[N_PARAMS];
    Err e = {0};
    checkpoint_load(path, &st, p, N_PARAMS, s1, s2, N_PARAMS, 0, 0, &e);
    Err e2 = {0};
    checkpoint_load(path, &st, p, N_PARAMS, s1, s2, 0, 0, 0, &e2);
    close(fd);
    return 0;
}
