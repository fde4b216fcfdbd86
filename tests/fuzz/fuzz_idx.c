/* fuzz_idx.c: libFuzzer target for the IDX loader (data.c), plain and gzip'd.
 *
 * Input: byte 0 selects the mode (bit 0: gzip both files here, so that the IDX header is
 * explored behind the gzip size bound; otherwise the bytes are the files as they are, gzip
 * magic included when the fuzzer writes it), then the images file, "%%", the labels file.
 * Both are served as regular files (memfds) to idx_load().
 */
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

#include "data.h"
#include "fuzz_util.h"

/* gzip data[0..n) into a malloc'd buffer. */
static uint8_t *gzip(const uint8_t *data, size_t n, size_t *out) {
    z_stream z = {0};
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
    size_t cap = deflateBound(&z, n) + 32;
    uint8_t *buf = malloc(cap);
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)n;
    z.next_out = buf;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) abort();
    *out = cap - z.avail_out;
    deflateEnd(&z);
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const int gz = data[0] & 1;
    const uint8_t *part[2];
    size_t len[2];
    int n = fuzz_split(data + 1, size - 1, part, len, 2);
    if (n < 2) {
        part[1] = part[0];
        len[1] = len[0];
    }
    char ip[32], lp[32];
    uint8_t *buf[2] = {NULL, NULL};
    int fd[2];
    for (int i = 0; i < 2; i++) {
        const uint8_t *p = part[i];
        size_t l = len[i];
        if (gz) {
            buf[i] = gzip(p, l, &l);
            p = buf[i];
        }
        fd[i] = fuzz_memfile(p, l, i ? lp : ip);
    }
    Dataset d;
    Err e = {0};
    if (idx_load(&d, ip, lp, &e) == 0) dataset_free(&d);
    for (int i = 0; i < 2; i++) {
        close(fd[i]);
        free(buf[i]);
    }
    return 0;
}
