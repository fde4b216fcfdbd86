/* layout.c: reorders of activation tensors between NHWC and nChw16c (layer.h's TensorFormat),
 * done by the model where a layer cannot read its producer's layout: into Flatten, Dense,
 * GlobalAveragePooling2D or an im2col convolution after oneDNN ones, and back in the backward
 * pass. nChw16c is (N, ceil(C/16), H, W, 16) with the channels past C zero. */
#include <string.h>

#include "kernels.h"

void layout_reorder(float *dst, TensorFormat df, const float *src, TensorFormat sf, int N, Shape s) {
    const size_t P = (size_t)s.h * s.w;
    const int C = s.c, CB = (C + 15) / 16;
    if (df == sf) {
        memcpy(dst, src, (size_t)N * format_floats(df, s) * sizeof *dst);
        return;
    }
    const int to_blocked = df == FMT_BLK16;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
        for (int cb = 0; cb < CB; cb++) {
            const int c0 = cb * 16, cn = C - c0 < 16 ? C - c0 : 16;
            float *blk = (to_blocked ? dst : (float *)src) + ((size_t)n * CB + cb) * P * 16;
            const float *plain_c = (to_blocked ? src : dst) + (size_t)n * P * C + c0;
            for (size_t p = 0; p < P; p++) {
                float *b = blk + p * 16;
                float *q = (float *)plain_c + p * C;
                if (to_blocked) {
                    for (int c = 0; c < cn; c++) b[c] = q[c];
                    for (int c = cn; c < 16; c++) b[c] = 0.0f;
                } else {
                    for (int c = 0; c < cn; c++) q[c] = b[c];
                }
            }
        }
}
