/* augment.c: the data-augmentation layers RandomFlip, RandomRotation, RandomZoom (Keras
 * preprocessing layers, active only in training) and the augmentation preview grid.
 *
 * Owns: their configure/plan/forward/backward, the keyed per-sample draws, and the affine
 * resampler shared by rotation and zoom, which follows TensorFlow's
 * ImageProjectiveTransformV3 (what Keras' affine_transform runs on the TF backend): for each
 * output pixel (x, y) (integer pixel indices) the input point is
 *     x_in = a0 x + a1 y + a2,  y_in = b0 x + b1 y + b2,
 * each coordinate is mapped by fill_mode "reflect" (d c b a | a b c d | d c b a: reflection
 * about the outer edge of the border pixels, then clamped to [0, len - 1]) and the value is
 * interpolated bilinearly (neighbours outside the image read 0 but then carry weight 0).
 *
 * Transforms (Keras' get_rotation_matrix / RandomZoom._get_zoom_matrix):
 *   rotation by angle t = uniform(lo, hi) * 2 pi, about ((w-1)/2, (h-1)/2):
 *     x_in - cx = cos t (x - cx) - sin t (y - cy),  y_in - cy = sin t (x - cx) + cos t (y - cy)
 *     With rows growing downwards this shows the image turned counter-clockwise for t > 0.
 *   zoom zx = 1 + uniform(w_lo, w_hi), zy = 1 + uniform(h_lo, h_hi):
 *     x_in = cx + zx (x - cx),  y_in = cy + zy (y - cy)
 *     zx < 1 (negative factor) shows a smaller region: zoom in; zx > 1 zooms out.
 *
 * Differences from Keras: the random numbers (ours come from rng_keyed(seed, RNG_AUGMENT,
 * epoch * 2^20 + layer index, global sample id), so a sample's transform does not depend on
 * the batch, rank or thread count); RandomFlip "horizontal_and_vertical" draws the two flips
 * independently (tf.keras 2 behaviour; some Keras 3 releases use one draw for both); only
 * fill_mode = reflect and interpolation = bilinear (the Keras defaults) are implemented.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "images.h"
#include "ini.h"
#include "layer.h"
#include "layers/layer_impl.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static const double TWO_PI = 6.283185307179586476925286766559;

/* ---------------------------------------------------------------- configuration */

/* "FILE:LINE" of the layer's section (in the job file or a file it includes), for messages. */
static const char *where(const IniFile *ini, const Section *sec, char *buf, size_t n) {
    snprintf(buf, n, "%s:%d", ini_section_file(ini, sec), sec->line);
    return buf;
}

/* fill_mode = reflect and interpolation = bilinear are the only accepted values. */
static int check_fill_interp(Layer *L, IniFile *ini, Section *sec, Err *e) {
    char w[320];
    const char *fm = sec_get_str(ini, sec, "fill_mode", 0, "reflect", e);
    if (!fm) return -1;
    if (strcmp(fm, "reflect") != 0) {
        err_set(e, "%s: [%s] fill_mode = %s is not supported (only reflect, the Keras default)",
                where(ini, sec, w, sizeof w), sec->name, fm);
        return -1;
    }
    const char *ip = sec_get_str(ini, sec, "interpolation", 0, "bilinear", e);
    if (!ip) return -1;
    if (strcmp(ip, "bilinear") != 0) {
        err_set(e,
                "%s: [%s] interpolation = %s is not supported (only bilinear, the Keras default)",
                where(ini, sec, w, sizeof w), sec->name, ip);
        return -1;
    }
    return 0;
}

static int flip_configure(Layer *L, IniFile *ini, Section *sec, Err *e) {
    static const char *const modes[] = {"horizontal", "vertical", "horizontal_and_vertical", NULL};
    int m = 2;
    if (sec_get_enum(ini, sec, "mode", 0, 2, modes, &m, e) != 0) return -1;
    L->u.flip.horizontal = m == 0 || m == 2;
    L->u.flip.vertical = m == 1 || m == 2;
    L->trainable = 0;
    return 0;
}

static int rotation_configure(Layer *L, IniFile *ini, Section *sec, Err *e) {
    float lo = 0, hi = 0;
    if (sec_get_range(ini, sec, "factor", 1, 0.0, &lo, &hi, e) != 0) return -1;
    if (!isfinite(lo) || !isfinite(hi) || lo > hi) {
        char w[320];
        err_set(e, "%s: [%s] factor must be finite with lo <= hi", where(ini, sec, w, sizeof w),
                sec->name);
        return -1;
    }
    if (check_fill_interp(L, ini, sec, e) != 0) return -1;
    L->u.rotation.lo = lo;
    L->u.rotation.hi = hi;
    L->trainable = 0;
    return 0;
}

static int has_key(const Section *sec, const char *key) {
    for (int i = 0; i < sec->n_kv; i++)
        if (strcmp(sec->kv[i].key, key) == 0) return 1;
    return 0;
}

static int zoom_range(Layer *L, IniFile *ini, Section *sec, const char *key, int required,
                      float *lo, float *hi, Err *e) {
    if (sec_get_range(ini, sec, key, required, 0.0, lo, hi, e) != 0) return -1;
    if (!isfinite(*lo) || !isfinite(*hi) || *lo < -1.0f || *hi < -1.0f) {
        char w[320];
        err_set(e, "%s: [%s] %s must have values >= -1 (a zoom of 1 + factor)",
                where(ini, sec, w, sizeof w), sec->name, key);
        return -1;
    }
    return 0;
}

/* ZoomCfg has no "width follows height" flag: w_lo = w_hi = NAN encodes Keras'
 * width_factor=None (one draw for both axes, keeping the aspect ratio). */
static int zoom_configure(Layer *L, IniFile *ini, Section *sec, Err *e) {
    ZoomCfg *z = &L->u.zoom;
    if (zoom_range(L, ini, sec, "height_factor", 1, &z->h_lo, &z->h_hi, e) != 0) return -1;
    if (has_key(sec, "width_factor")) {
        if (zoom_range(L, ini, sec, "width_factor", 1, &z->w_lo, &z->w_hi, e) != 0) return -1;
    } else {
        z->w_lo = z->w_hi = NAN;
    }
    if (check_fill_interp(L, ini, sec, e) != 0) return -1;
    L->trainable = 0;
    return 0;
}

/* ---------------------------------------------------------------- plan, backward */

static int aug_plan(Layer *L, Err *e) {
    if (L->in.flat || L->in.h <= 0 || L->in.w <= 0 || L->in.c <= 0) {
        char w[320];
        err_set(e, "%s: [%s] needs an image input (height, width, channels), got %dx%dx%d",
                layer_where(L, w, sizeof w), L->name, L->in.h, L->in.w, L->in.c);
        return -1;
    }
    L->out = L->in;
    L->aux_per_sample = 0;
    L->ws_per_sample = 0;
    L->trainable = 0;
    return 0;
}

static void aug_backward(const Layer *L, const LayerCtx *c, float *din, float *dout,
                         const float *in, const float *out, int N) {
    if (din)
        die(EXIT_RUNTIME,
            "%s: augmentation layers have no input gradient; they must come before every "
            "trainable layer",
            L->name);
}

/* ---------------------------------------------------------------- transforms */

static Rng sample_rng(const LayerCtx *c, int i) {
    CHECK(c->sample_ids != NULL);
    return rng_keyed(c->seed, RNG_AUGMENT,
                     ((uint64_t)(uint32_t)c->epoch << 20) + (uint64_t)c->layer_index,
                     (uint64_t)c->sample_ids[i]);
}

/* TF's REFLECT map_coordinate, then clamp to [0, len - 1]. */
static inline float reflect_coord(float x, int len) {
    const float fl = (float)len;
    if (x < 0.0f) {
        if (len <= 1) return 0.0f;
        const float sz2 = 2.0f * fl;
        if (x < -sz2) x += sz2 * (float)(long long)(-x / sz2);
        x = x < -fl ? x + sz2 : -x - 1.0f;
    } else if (x > fl - 1.0f) {
        if (len <= 1) return 0.0f;
        const float sz2 = 2.0f * fl;
        x -= sz2 * (float)(long long)(x / sz2);
        if (x >= fl) x = sz2 - x - 1.0f;
    }
    return x < 0.0f ? 0.0f : (x > fl - 1.0f ? fl - 1.0f : x);
}

/* One sample: out(h, w, C) from in(h, w, C) through the affine map t[0..5] (see top). */
static void affine_sample(float *out, const float *in, int h, int w, int C, const float t[6]) {
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            float xi = reflect_coord(t[0] * (float)x + t[1] * (float)y + t[2], w);
            float yi = reflect_coord(t[3] * (float)x + t[4] * (float)y + t[5], h);
            float xf = floorf(xi), yf = floorf(yi);
            int x0 = (int)xf, y0 = (int)yf, x1 = x0 + 1, y1 = y0 + 1;
            float wx1 = xi - xf, wx0 = 1.0f - wx1, wy1 = yi - yf, wy0 = 1.0f - wy1;
            const int okx1 = x1 < w, oky1 = y1 < h;
            const float *p00 = in + ((size_t)y0 * w + x0) * C;
            const float *p01 = okx1 ? p00 + C : NULL;
            const float *p10 = oky1 ? in + ((size_t)y1 * w + x0) * C : NULL;
            const float *p11 = okx1 && oky1 ? p10 + C : NULL;
            float *o = out + ((size_t)y * w + x) * C;
            for (int k = 0; k < C; k++) {
                float top = wx0 * p00[k] + wx1 * (p01 ? p01[k] : 0.0f);
                float bot = p10 ? wx0 * p10[k] + wx1 * (p11 ? p11[k] : 0.0f) : 0.0f;
                o[k] = wy0 * top + wy1 * bot;
            }
        }
    }
}

static void flip_sample(float *out, const float *in, int h, int w, int C, int fh, int fv) {
    for (int y = 0; y < h; y++) {
        const float *src = in + (size_t)(fv ? h - 1 - y : y) * w * C;
        float *dst = out + (size_t)y * w * C;
        if (!fh) {
            memcpy(dst, src, (size_t)w * C * sizeof *dst);
        } else {
            for (int x = 0; x < w; x++)
                memcpy(dst + (size_t)x * C, src + (size_t)(w - 1 - x) * C, (size_t)C * sizeof *dst);
        }
    }
}

/* The affine map of sample i for a rotation or zoom layer. */
static void sample_transform(const Layer *L, const LayerCtx *c, int i, float t[6]) {
    Rng r = sample_rng(c, i);
    const float cx = (float)(L->in.w - 1) / 2.0f, cy = (float)(L->in.h - 1) / 2.0f;
    if (L->kind == LAYER_RANDOM_ROTATION) {
        const RotationCfg *g = &L->u.rotation;
        float u = rng_uniform(&r);
        float ang = (float)(((double)g->lo + ((double)g->hi - (double)g->lo) * u) * TWO_PI);
        float cs = cosf(ang), sn = sinf(ang);
        t[0] = cs;
        t[1] = -sn;
        t[2] = cx - cs * cx + sn * cy;
        t[3] = sn;
        t[4] = cs;
        t[5] = cy - sn * cx - cs * cy;
    } else {
        const ZoomCfg *z = &L->u.zoom;
        float zy = 1.0f + z->h_lo + (z->h_hi - z->h_lo) * rng_uniform(&r);
        float zx = zy;
        if (!isnan(z->w_lo)) zx = 1.0f + z->w_lo + (z->w_hi - z->w_lo) * rng_uniform(&r);
        t[0] = zx;
        t[1] = 0.0f;
        t[2] = cx * (1.0f - zx);
        t[3] = 0.0f;
        t[4] = zy;
        t[5] = cy * (1.0f - zy);
    }
}

/* out: (N, h, w, C), in: (N, h, w, C) */
static void aug_forward(const Layer *L, const LayerCtx *c, float *out, const float *in, int N) {
    const int h = L->in.h, w = L->in.w, C = L->in.c;
    const size_t per = (size_t)h * w * C;
    if (!c->training) {
        if (out != in) memcpy(out, in, (size_t)N * per * sizeof *out);
        return;
    }
#pragma omp parallel
    {
        float *tmp = out == in ? xmalloc(per * sizeof *tmp) : NULL; /* in-place calls */
#pragma omp for schedule(static)
        for (int i = 0; i < N; i++) {
            const float *src = in + (size_t)i * per;
            float *dst = out + (size_t)i * per;
            if (tmp) {
                memcpy(tmp, src, per * sizeof *tmp);
                src = tmp;
            }
            if (L->kind == LAYER_RANDOM_FLIP) {
                Rng r = sample_rng(c, i);
                int fh = 0, fv = 0;
                if (L->u.flip.horizontal) fh = rng_uniform(&r) < 0.5f;
                if (L->u.flip.vertical) fv = rng_uniform(&r) < 0.5f;
                flip_sample(dst, src, h, w, C, fh, fv);
            } else {
                float t[6];
                sample_transform(L, c, i, t);
                affine_sample(dst, src, h, w, C, t);
            }
        }
        free(tmp);
    }
}

/* The three kinds differ in their keys and draws only; identities at inference (ONNX). */
#define AUGMENT_OPS(sec, kname, conf)                                                          \
    {                                                                                          \
        .section = sec, .keras_name = kname, .keras3_key = sec, .onnx = LAYER_ONNX_IDENTITY,   \
        .configure = conf, .plan = aug_plan, .forward = aug_forward, .backward = aug_backward, \
        .flags = LAYER_F_RANDOM | LAYER_F_AUGMENT, .backward_reads = layer_reads_nothing,      \
    }
const LayerOps random_flip_ops = AUGMENT_OPS("random_flip", "RandomFlip", flip_configure);
const LayerOps random_rotation_ops = AUGMENT_OPS("random_rotation", "RandomRotation",
                                                 rotation_configure);
const LayerOps random_zoom_ops = AUGMENT_OPS("random_zoom", "RandomZoom", zoom_configure);

/* ---------------------------------------------------------------- preview */

int augment_preview_write(const char *out_jpg, const uint8_t *img, int h, int w, int c,
                          const Layer *layers, int n_layers, uint64_t seed, Err *e) {
    if (h <= 0 || w <= 0 || (c != 1 && c != 3)) {
        err_set(e, "%s: augmentation preview needs an image of 1 or 3 channels, got %dx%dx%d",
                out_jpg, h, w, c);
        return -1;
    }
    for (int j = 0; j < n_layers; j++) {
        const Layer *L = &layers[j];
        int aug = (layer_ops[L->kind]->flags & LAYER_F_AUGMENT) != 0;
        if (aug && (L->in.h != h || L->in.w != w || L->in.c != c)) {
            err_set(e, "%s: layer %s expects %dx%dx%d images, the preview image is %dx%dx%d",
                    out_jpg, L->name, L->in.h, L->in.w, L->in.c, h, w, c);
            return -1;
        }
    }
    const int gap = 4, gh = 3 * h + 2 * gap, gw = 3 * w + 2 * gap;
    const size_t per = (size_t)h * w * c;
    uint8_t *grid = xmalloc((size_t)gh * gw * c);
    memset(grid, 255, (size_t)gh * gw * c);
    float *a = xmalloc(per * sizeof *a), *b = xmalloc(per * sizeof *b);
    for (int k = 0; k < 9; k++) {
        for (size_t p = 0; p < per; p++) a[p] = (float)img[p];
        int64_t id = k;
        for (int j = 0; j < n_layers; j++) {
            const Layer *L = &layers[j];
            const LayerOps *ops = layer_ops[L->kind];
            if (!(ops->flags & LAYER_F_AUGMENT)) continue;
            LayerCtx ctx;
            memset(&ctx, 0, sizeof ctx);
            ctx.training = 1;
            ctx.seed = seed;
            ctx.epoch = 0;
            ctx.layer_index = j;
            ctx.sample_ids = &id;
            ops->forward(L, &ctx, b, a, 1);
            float *t = a;
            a = b;
            b = t;
        }
        const int gy = (k / 3) * (h + gap), gx = (k % 3) * (w + gap);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int ch = 0; ch < c; ch++) {
                    float v = a[((size_t)y * w + x) * c + ch];
                    v = v < 0.f ? 0.f : (v > 255.f ? 255.f : v);
                    grid[(((size_t)(gy + y)) * gw + gx + x) * c + ch] = (uint8_t)lrintf(v);
                }
    }
    free(a);
    free(b);
    int rc = image_write_jpeg(out_jpg, grid, gh, gw, c, 90, e);
    free(grid);
    return rc;
}
