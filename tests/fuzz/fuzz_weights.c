/* fuzz_weights.c: libFuzzer target for weights files (weights.c): the raw reader that
 * diff-weights uses, and weights_load() into a small model (header, declared size against
 * the file's, checksum, model structure, non-finite values).
 *
 * Input: the file, served as a regular file (a memfd).
 */
#include <stdlib.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static Job j;
    static Model m;
    static int ready;
    if (!ready) {
        /* the model every seed's weights file was written for (gen_seeds.c) */
        if (fuzz_model("[conv2d]\nfilters = 2\nkernel_size = 3\n[flatten]\n[dense]\nunits = 3\n"
                       "activation = softmax\n",
                       (Shape){4, 4, 1, 0}, 1 << 28, &j, &m))
            __builtin_trap();
        ready = 1;
    }
    char path[32];
    int fd = fuzz_memfile(data, size, path);
    Err e = {0};
    uint64_t n = 0;
    float *p = weights_read_raw(path, &n, &e);
    free(p);
    Err e2 = {0};
    weights_load(path, &m, &e2);
    close(fd);
    return 0;
}
