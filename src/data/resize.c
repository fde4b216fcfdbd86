/* resize.c: image_resize_bilinear, the tf.image.resize(bilinear, antialias=False) resampler with
 * half-pixel centres, on interleaved uint8 pixels (images.h). Values are rounded to uint8. */
#include "images.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static inline uint8_t round_u8(float v) {
    /* v is a convex combination of uint8 values, so 0 <= v <= 255 up to rounding; round half
     * up (TF keeps the float; lrintf's half-to-even would only differ on exact .5 ties). */
    v += 0.5f;
    v = v > 0.0f ? v : 0.0f;
    v = v < 255.0f ? v : 255.0f;
    return (uint8_t)(int)v;
}

void image_resize_bilinear(const uint8_t *src, int sh, int sw, uint8_t *dst, int dh, int dw,
                           int c) {
    /* Per output column: byte offsets of the two source columns and the weight, as TF's
     * compute_interpolation_weights with HalfPixelScaler. */
    size_t *x0 = xmalloc((size_t)dw * sizeof *x0), *x1 = xmalloc((size_t)dw * sizeof *x1);
    float *xl = xmalloc((size_t)dw * sizeof *xl);
    const float xscale = (float)sw / (float)dw, yscale = (float)sh / (float)dh;
    for (int x = 0; x < dw; x++) {
        float in = ((float)x + 0.5f) * xscale - 0.5f, f = floorf(in);
        int lo = f < 0 ? 0 : (int)f, hi = (int)ceilf(in);
        lo = lo > sw - 1 ? sw - 1 : lo;
        hi = hi > sw - 1 ? sw - 1 : (hi < 0 ? 0 : hi);
        x0[x] = (size_t)lo * c;
        x1[x] = (size_t)hi * c;
        xl[x] = in - f;
    }
    for (int y = 0; y < dh; y++) {
        float in = ((float)y + 0.5f) * yscale - 0.5f, f = floorf(in);
        int y0 = f < 0 ? 0 : (int)f, y1 = (int)ceilf(in);
        if (y0 > sh - 1) y0 = sh - 1;
        if (y1 > sh - 1) y1 = sh - 1;
        if (y1 < 0) y1 = 0;
        const float yl = in - f;
        const uint8_t *r0 = src + (size_t)y0 * sw * c, *r1 = src + (size_t)y1 * sw * c;
        uint8_t *o = dst + (size_t)y * dw * c;
        if (c == 3) {
            for (int x = 0; x < dw; x++) {
                const uint8_t *tl = r0 + x0[x], *tr = r0 + x1[x], *bl = r1 + x0[x],
                              *br = r1 + x1[x];
                const float a = xl[x];
                for (int k = 0; k < 3; k++) {
                    float top = (float)tl[k] + ((float)tr[k] - (float)tl[k]) * a;
                    float bot = (float)bl[k] + ((float)br[k] - (float)bl[k]) * a;
                    o[3 * x + k] = round_u8(top + (bot - top) * yl);
                }
            }
        } else {
            for (int x = 0; x < dw; x++) {
                const uint8_t *tl = r0 + x0[x], *tr = r0 + x1[x], *bl = r1 + x0[x],
                              *br = r1 + x1[x];
                const float a = xl[x];
                for (int k = 0; k < c; k++) {
                    float top = (float)tl[k] + ((float)tr[k] - (float)tl[k]) * a;
                    float bot = (float)bl[k] + ((float)br[k] - (float)bl[k]) * a;
                    o[(size_t)x * c + k] = round_u8(top + (bot - top) * yl);
                }
            }
        }
    }
    free(x0);
    free(x1);
    free(xl);
}
