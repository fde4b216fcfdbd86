/* layer_common.c: what every layer kind shares, below the kinds and the kernels: the Layer
 * API of layer.h (parameter lists, where, lookup by section, randomness, backward reads), the
 * keys several kinds read (activation, use_bias, trainable; window, strides, padding), the
 * window planning of Conv2D, pooling and the depthwise kinds, the activations (one
 * implementation, run in parallel by the layers and serially inside the kernels' own parallel
 * regions), the bias gradient and glorot-uniform initialisation.
 *
 * It calls no kind and no kernel, so the kinds (src/layers/) and the kernels (src/kernels/)
 * depend on it and not on each other through it. */
#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "layers/layer_impl.h"

/* ---- the Layer API ---- */

int layer_is_random(const Layer *L) {
    const LayerOps *ops = layer_ops[L->kind];
    if (ops->is_random) return ops->is_random(L);
    return (ops->flags & LAYER_F_RANDOM) != 0;
}

unsigned layer_backward_reads(const Layer *L) {
    const LayerOps *ops = layer_ops[L->kind];
    return ops->backward_reads ? ops->backward_reads(L) : LAYER_READS_INPUT | LAYER_READS_OUTPUT;
}

void layer_param_add(Layer *L, const char *name, ParamRole role, int rank, int d0, int d1, int d2,
                     int d3) {
    CHECK(L->n_param < LAYER_MAX_PARAMS && rank >= 1 && rank <= 4);
    LayerParam *P = &L->param[L->n_param++];
    const int d[4] = {d0, d1, d2, d3};
    P->name = name;
    P->role = role;
    P->rank = rank;
    P->n = 1;
    for (int i = 0; i < 4; i++) {
        P->dims[i] = i < rank ? d[i] : 0;
        if (i < rank) P->n *= (size_t)d[i];
    }
    P->off = 0;
}

static size_t param_floats(const Layer *L, ParamRole role) {
    size_t n = 0;
    for (int i = 0; i < L->n_param; i++)
        if (L->param[i].role == role) n += L->param[i].n;
    return n;
}
size_t layer_n_weights(const Layer *L) { return param_floats(L, PARAM_WEIGHT); }
size_t layer_n_state(const Layer *L) { return param_floats(L, PARAM_STATE); }

int layer_param_find(const Layer *L, const char *name) {
    for (int i = 0; i < L->n_param; i++)
        if (!strcmp(L->param[i].name, name)) return i;
    return -1;
}

const char *layer_where(const Layer *L, char *buf, size_t n) {
    if (L->file)
        snprintf(buf, n, "%s:%d", L->file, L->line);
    else
        snprintf(buf, n, "line %d", L->line);
    return buf;
}

int layer_kind_from_section(const char *section) {
    if (!strcmp(section, "max_pooling2d")) return LAYER_MAXPOOL2D; /* Keras's name, also accepted */
    for (int k = 0; k < LAYER_KIND_COUNT; k++)
        if (layer_ops[k]->section && strcmp(layer_ops[k]->section, section) == 0) return k;
    return -1;
}

/* ---- keys several kinds read ---- */

static const char *const padding_names[] = {"valid", "same", NULL};

int layer_configure_activation(Layer *L, IniFile *ini, Section *s, int required, Err *e) {
    int act;
    if (sec_get_enum(ini, s, "activation", required, ACT_LINEAR, activation_names, &act, e))
        return -1;
    L->act = (Activation)act;
    return 0;
}

/* Keys shared by Conv2D, Dense and the depthwise kinds. */
int layer_configure_common(Layer *L, IniFile *ini, Section *s, Err *e) {
    int bias, trainable;
    if (layer_configure_activation(L, ini, s, 0, e) ||
        sec_get_bool(ini, s, "use_bias", 1, &bias, e) ||
        sec_get_bool(ini, s, "trainable", 1, &trainable, e))
        return -1;
    L->use_bias = bias;
    L->trainable = trainable;
    return 0;
}

int layer_configure_window(Layer *L, IniFile *ini, Section *s, const char *window_key,
                           int strides_default_is_window, Err *e) {
    int pad;
    if (sec_get_pair(ini, s, window_key, !strides_default_is_window, 2, 2, 1, 4096, &L->kh, &L->kw,
                     e))
        return -1;
    /* strides default to the window for pooling (Keras pool strides=None), to 1 for conv */
    int dh = strides_default_is_window ? L->kh : 1, dw = strides_default_is_window ? L->kw : 1;
    if (sec_get_pair(ini, s, "strides", 0, dh, dw, 1, 4096, &L->sh, &L->sw, e)) return -1;
    if (sec_get_enum(ini, s, "padding", 0, PAD_VALID, padding_names, &pad, e)) return -1;
    L->padding = (Padding)pad;
    return 0;
}

/* ---- window planning ---- */

/* Keras/TF output size and padding: valid: floor((H-K)/S)+1; same: ceil(H/S), with the odd
 * padding pixel at the bottom/right. Returns -1 when the window does not fit. */
int layer_plan_window(Layer *L, int out_c, Err *e) {
    char w[320];
    if (L->in.flat) {
        err_set(e,
                "layer %s (%s): %s needs a spatial (H, W, C) input, but its input is a flat "
                "vector of %d values (is it after a Flatten or Dense?)",
                L->name, layer_where(L, w, sizeof w), layer_ops[L->kind]->keras_name, L->in.c);
        return -1;
    }
    int H = L->in.h, W = L->in.w, oh, ow;
    if (L->padding == PAD_VALID) {
        if (H < L->kh || W < L->kw) {
            err_set(e,
                    "layer %s (%s): input %dx%dx%d is smaller than its %dx%d window; the "
                    "output would be empty",
                    L->name, layer_where(L, w, sizeof w), H, W, L->in.c, L->kh, L->kw);
            return -1;
        }
        oh = (H - L->kh) / L->sh + 1;
        ow = (W - L->kw) / L->sw + 1;
        L->pad_top = L->pad_left = 0;
    } else {
        oh = (H + L->sh - 1) / L->sh;
        ow = (W + L->sw - 1) / L->sw;
        int ph = (oh - 1) * L->sh + L->kh - H, pw = (ow - 1) * L->sw + L->kw - W;
        L->pad_top = ph > 0 ? ph / 2 : 0;
        L->pad_left = pw > 0 ? pw / 2 : 0;
    }
    L->out = (Shape){oh, ow, out_c, 0};
    return 0;
}

WinGeom layer_window_geom(const Layer *L, int N) {
    WinGeom g = {N,     L->in.h, L->in.w, L->in.c, L->out.h,   L->out.w,    L->out.c,
                 L->kh, L->kw,   L->sh,   L->sw,   L->pad_top, L->pad_left, 0};
    return g;
}

/* ---- activations ---- */

/* In Activation's order; the job's `activation` key takes these names. */
const char *const activation_names[] = {"linear", "relu", "sigmoid", "softmax", "leaky", NULL};

const char *activation_name(Activation a) { return activation_names[a]; }

/* out[0..n) = act(in): the one implementation (one thread). Linear and softmax (the loss's) are
 * a copy. out may be in. */
static void act_forward_range(Activation a, float *out, const float *in, size_t n) {
    if (a == ACT_RELU) {
#pragma omp simd
        for (size_t i = 0; i < n; i++) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
    } else if (a == ACT_LEAKY) {
#pragma omp simd
        for (size_t i = 0; i < n; i++) out[i] = in[i] > 0.0f ? in[i] : LEAKY_SLOPE * in[i];
    } else if (a == ACT_SIGMOID) {
        for (size_t i = 0; i < n; i++) out[i] = 1.0f / (1.0f + expf(-in[i]));
    } else if (out != in) {
#pragma omp simd
        for (size_t i = 0; i < n; i++) out[i] = in[i];
    }
}

/* din[0..n) = dout * act'(y) given the activated y (one thread). din may be dout. */
static void act_backward_range(Activation a, float *din, const float *dout, const float *y,
                               size_t n) {
    if (a == ACT_RELU) {
#pragma omp simd
        for (size_t i = 0; i < n; i++) din[i] = y[i] > 0.0f ? dout[i] : 0.0f;
    } else if (a == ACT_LEAKY) {
#pragma omp simd
        for (size_t i = 0; i < n; i++) din[i] = y[i] > 0.0f ? dout[i] : LEAKY_SLOPE * dout[i];
    } else if (a == ACT_SIGMOID) {
#pragma omp simd
        for (size_t i = 0; i < n; i++) din[i] = dout[i] * (y[i] * (1.0f - y[i]));
    } else if (din != dout) {
#pragma omp simd
        for (size_t i = 0; i < n; i++) din[i] = dout[i];
    }
}

/* Nothing to do: a copy onto itself. */
static int act_is_noop(Activation a, const float *out, const float *in) {
    return a != ACT_RELU && a != ACT_LEAKY && a != ACT_SIGMOID && out == in;
}

/* This thread's contiguous share [*i0, *i1) of n elements, as schedule(static) splits them. */
static void thread_share(size_t n, size_t *i0, size_t *i1) {
#ifdef _OPENMP
    const size_t t = (size_t)omp_get_thread_num(), T = (size_t)omp_get_num_threads();
#else
    const size_t t = 0, T = 1;
#endif
    const size_t chunk = (n + T - 1) / T;
    *i0 = t * chunk < n ? t * chunk : n;
    *i1 = *i0 + chunk < n ? *i0 + chunk : n;
}

void activation_forward(Activation a, float *out, const float *in, size_t n) {
    if (act_is_noop(a, out, in)) return;
#pragma omp parallel
    {
        size_t i0, i1;
        thread_share(n, &i0, &i1);
        act_forward_range(a, out + i0, in + i0, i1 - i0);
    }
}

void activation_backward(Activation a, float *din, const float *dout, const float *y, size_t n) {
    if (act_is_noop(a, din, dout)) return;
#pragma omp parallel
    {
        size_t i0, i1;
        thread_share(n, &i0, &i1);
        act_backward_range(a, din + i0, dout + i0, y + i0, i1 - i0);
    }
}

/* kernels.h's serial forms, for kernels inside their own parallel regions */
void activation_apply(Activation a, float *y, size_t n) { act_forward_range(a, y, y, n); }
void activation_derivative(Activation a, float *dy, const float *y, size_t n) {
    act_backward_range(a, dy, dy, y, n);
}

unsigned layer_act_reads(const Layer *L) {
    return layer_act(L) == ACT_LINEAR ? 0 : LAYER_READS_OUTPUT;
}
unsigned layer_reads_nothing(const Layer *L) {
    (void)L;
    return 0;
}
unsigned layer_reads_input_and_act(const Layer *L) {
    return LAYER_READS_INPUT | layer_act_reads(L);
}

/* ---- bias gradient, initialisation ---- */

void bias_grad_add(float *db, const float *d, long rows, int U) {
    /* Sequential over rows so the sum's order, and hence the result, never depends on the
     * thread count: bitwise-reproducible runs need that. The inner loop vectorises. */
    for (long r = 0; r < rows; r++) {
        const float *row = d + (size_t)r * U;
        for (int u = 0; u < U; u++) db[u] += row[u];
    }
}

void init_glorot_uniform(float *w, size_t n, int fan_in, int fan_out, Rng *rng) {
    float limit = sqrtf(6.0f / (float)(fan_in + fan_out));
    for (size_t i = 0; i < n; i++) w[i] = (2.0f * rng_uniform(rng) - 1.0f) * limit;
}
