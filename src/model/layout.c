/* layout.c: reorders of activation tensors between NHWC and nChw16c (layer.h's TensorFormat),
 * done by the model where a layer cannot read its producer's layout: into Flatten, Dense,
 * GlobalAveragePooling2D or an im2col convolution after oneDNN ones, and back in the backward
 * pass (there also adding, where a tensor read by several layers sums their gradients).
 * nChw16c is (N, ceil(C/16), H, W, 16) with the channels past C zero. */
#include <string.h>

#include "kernels.h"

/* dst = src (add = 0) or dst += src (add = 1), from layout sf to df. */
static void reorder(float *dst, TensorFormat df, const float *src, TensorFormat sf, int N, Shape s,
                    int add) {
    const size_t P = (size_t)s.h * s.w;
    const int C = s.c, CB = (C + 15) / 16;
    if (df == sf) {
        const size_t n = (size_t)N * format_floats(df, s);
        if (!add) {
            memcpy(dst, src, n * sizeof *dst);
            return;
        }
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) dst[i] += src[i];
        return;
    }
    const int to_blocked = df == FMT_BLK16;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
        for (int cb = 0; cb < CB; cb++) {
            const int c0 = cb * 16, cn = C - c0 < 16 ? C - c0 : 16;
            const size_t blk = ((size_t)n * CB + cb) * P * 16, plain = (size_t)n * P * C + c0;
            for (size_t p = 0; p < P; p++) {
                const size_t b = blk + p * 16, q = plain + p * C;
                if (to_blocked) {
                    for (int c = 0; c < cn; c++)
                        dst[b + c] = add ? dst[b + c] + src[q + c] : src[q + c];
                    if (!add)
                        for (int c = cn; c < 16; c++) dst[b + c] = 0.0f;
                } else {
                    for (int c = 0; c < cn; c++)
                        dst[q + c] = add ? dst[q + c] + src[b + c] : src[b + c];
                }
            }
        }
}

void layout_reorder(float *dst, TensorFormat df, const float *src, TensorFormat sf, int N,
                    Shape s) {
    reorder(dst, df, src, sf, N, s, 0);
}

void layout_reorder_add(float *dst, TensorFormat df, const float *src, TensorFormat sf, int N,
                        Shape s) {
    reorder(dst, df, src, sf, N, s, 1);
}
