/* fuzz_jpeg.c: libFuzzer target for JPEG decoding through the loader's own path (images.c:
 * image_decode_memory() runs the decode_resize() that images_load_dir() runs per file):
 * header checks, pixel limit, DCT scaling, CMYK conversion and bilinear resizing.
 *
 * Input: byte 0 picks the target shape (grayscale or RGB, and one of four sizes, some above
 * and some below the source's), the rest is the file.
 */
#include <stdlib.h>

#include "images.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const int sides[4] = {1, 7, 16, 45};
    const int c = data[0] & 1 ? 3 : 1, h = sides[(data[0] >> 1) & 3], w = sides[(data[0] >> 3) & 3];
    uint8_t *out = malloc((size_t)h * w * c);
    Err e = {0};
    image_decode_memory(data + 1, size - 1, h, w, c, out, &e);
    free(out);
    return 0;
}
