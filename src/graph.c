/* graph.c: the model as a graph of tensors (model.h): which layer reads which tensor, where each
 * tensor and its layout copies live in the activation arena, and how the backward pass routes
 * gradients: each tensor's gradient is written by its last reader, added into by the others
 * (a fan-out gets the sum of its readers' gradients), in buffers reused by liveness.
 *
 * Tensor t is the model's input for t = 0 and layer t - 1's output otherwise. Layers are in
 * topological order (a layer reads only layers above it), so the backward pass visits every
 * reader of a tensor before its producer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "model.h"

#define NO_COPY SIZE_MAX

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

int graph_input(const Layer *L, int l, int k) {
    return L->n_inputs ? L->inputs[k] : l - 1;
}

int graph_n_inputs(const Layer *L) { return L->n_inputs ? L->n_inputs : 1; }

int graph_reads_previous_only(const Layer *L, int l) {
    return graph_n_inputs(L) == 1 && graph_input(L, l, 0) == l - 1;
}

static Shape tensor_shape(const Model *m, int t) { return t ? m->layers[t - 1].out : m->input; }

/* Floats of tensor t in layout f for a whole batch. */
static size_t tensor_floats(const Model *m, int t, TensorFormat f) {
    return (size_t)m->max_batch * format_floats(f, tensor_shape(m, t));
}

int graph_check(const Model *m, Err *e) {
    const int n = m->n_layers;
    int *readers = xcalloc((size_t)n + 1, sizeof *readers);
    for (int l = 0; l < n; l++)
        for (int k = 0; k < graph_n_inputs(&m->layers[l]); k++) readers[graph_input(&m->layers[l], l, k) + 1]++;
    int rc = 0;
    for (int t = 0; t < n && !rc; t++) {
        if (readers[t]) continue;
        char w[320];
        if (t == 0)
            err_set(e, "no layer reads the model's input (`inputs = input` on the first layer of a branch)");
        else
            err_set(e, "layer %s (%s): no layer reads its output (an unused branch): only the last layer "
                       "is the model's output", m->layers[t - 1].name, layer_where(&m->layers[t - 1], w, sizeof w));
        rc = -1;
    }
    free(readers);
    return rc;
}

/* ---- activations ---- */

void graph_plan_tensors(Model *m) {
    const int n = m->n_layers;
    m->t_fmt = xmalloc(((size_t)n + 1) * sizeof *m->t_fmt);
    m->t_off = xmalloc(((size_t)n + 1) * sizeof *m->t_off);
    m->t_copy = xmalloc(((size_t)n + 1) * sizeof *m->t_copy);
    m->in_off = xmalloc(((size_t)n + 1) * LAYER_MAX_INPUTS * sizeof *m->in_off);
    m->act_off = xmalloc(((size_t)n + 1) * sizeof *m->act_off);
    /* a tensor's own layout is its producer's; a copy in the other layout when a reader (or,
     * for the last layer, the model's output) reads that one */
    int *want_other = xcalloc((size_t)n + 1, sizeof *want_other);
    for (int t = 0; t <= n; t++) m->t_fmt[t] = t ? m->layers[t - 1].out_fmt : FMT_NHWC;
    for (int l = 0; l < n; l++)
        for (int k = 0; k < graph_n_inputs(&m->layers[l]); k++) {
            int t = graph_input(&m->layers[l], l, k) + 1;
            want_other[t] |= m->layers[l].in_fmt != m->t_fmt[t];
        }
    want_other[n] |= m->t_fmt[n] != FMT_NHWC;
    size_t off = 0;
    for (int t = 0; t <= n; t++) {
        m->t_off[t] = off;
        off += tensor_floats(m, t, m->t_fmt[t]);
        m->t_copy[t] = NO_COPY;
        if (want_other[t]) {
            m->t_copy[t] = off;
            off += tensor_floats(m, t, m->t_fmt[t] == FMT_NHWC ? FMT_BLK16 : FMT_NHWC);
        }
    }
    free(want_other);
    m->acts_floats = off;
    for (int l = 0; l < n; l++) {
        const Layer *L = &m->layers[l];
        for (int k = 0; k < graph_n_inputs(L); k++) {
            int t = graph_input(L, l, k) + 1;
            m->in_off[l * LAYER_MAX_INPUTS + k] = L->in_fmt == m->t_fmt[t] ? m->t_off[t] : m->t_copy[t];
        }
        m->act_off[l] = m->in_off[l * LAYER_MAX_INPUTS];
    }
    m->act_off[n] = m->t_fmt[n] == FMT_NHWC ? m->t_off[n] : m->t_copy[n];
}

int graph_has_copy(const Model *m, int t) { return m->t_copy[t] != NO_COPY; }

void graph_refresh_copy(Model *m, int t, int N) {
    if (!graph_has_copy(m, t)) return;
    TensorFormat other = m->t_fmt[t] == FMT_NHWC ? FMT_BLK16 : FMT_NHWC;
    layout_reorder(m->acts + m->t_copy[t], other, m->acts + m->t_off[t], m->t_fmt[t], N, tensor_shape(m, t));
}

int graph_is_cut(const Model *m, int from) {
    if (from <= 0) return 1;
    for (int l = from; l < m->n_layers; l++)
        for (int k = 0; k < graph_n_inputs(&m->layers[l]); k++) {
            int p = graph_input(&m->layers[l], l, k);
            /* layer `from`'s input is what the cache fills: every reader must read that copy */
            if (p < from - 1 || (p == from - 1 && m->in_off[l * LAYER_MAX_INPUTS + k] != m->act_off[from]))
                return 0;
        }
    return 1;
}

/* ---- gradients: buffers reused by liveness ---- */

typedef struct {
    size_t *floats;
    int *busy, n;
} Pool;

/* A free buffer for `floats`: the smallest that fits, else the largest free one (grown), else
 * a new one. A chain then alternates between two buffers, each as large as the tensors that
 * land in it, plus one for layout reorders. */
static int pool_take(Pool *p, size_t floats) {
    int best = -1;
    for (int i = 0; i < p->n; i++) {
        if (p->busy[i]) continue;
        if (best < 0) {
            best = i;
            continue;
        }
        int fits = p->floats[i] >= floats, best_fits = p->floats[best] >= floats;
        if ((fits && (!best_fits || p->floats[i] < p->floats[best])) ||
            (!fits && !best_fits && p->floats[i] > p->floats[best]))
            best = i;
    }
    if (best < 0) {
        best = p->n++;
        p->floats = realloc(p->floats, (size_t)p->n * sizeof *p->floats);
        p->busy = realloc(p->busy, (size_t)p->n * sizeof *p->busy);
        if (!p->floats || !p->busy) die(EXIT_RUNTIME, "out of memory planning gradient buffers");
        p->floats[best] = 0;
    }
    p->floats[best] = max_sz(p->floats[best], floats);
    p->busy[best] = 1;
    return best;
}

void graph_plan_gradients(Model *m) {
    const int n = m->n_layers;
    Pool pool = {NULL, NULL, 0};
    m->t_grad = xmalloc(((size_t)n + 1) * sizeof *m->t_grad);
    m->gslots = xcalloc((size_t)n * LAYER_MAX_INPUTS + 1, sizeof *m->gslots);
    for (int t = 0; t <= n; t++) m->t_grad[t] = -1;
    m->t_grad[n] = pool_take(&pool, tensor_floats(m, n, m->t_fmt[n])); /* the loss's gradient */
    /* walk the backward pass down to layer 0 (a phase may train that far) */
    for (int l = n - 1; l >= 0; l--) {
        const Layer *L = &m->layers[l];
        int temps[LAYER_MAX_INPUTS], n_temps = 0;
        for (int k = 0; k < graph_n_inputs(L); k++) {
            GradSlot *g = &m->gslots[l * LAYER_MAX_INPUTS + k];
            int t = graph_input(L, l, k) + 1;
            g->tensor = t;
            if (t == 0) { /* the model's input needs no gradient */
                g->mode = GRAD_NONE;
                continue;
            }
            int first = m->t_grad[t] < 0;
            if (first) m->t_grad[t] = pool_take(&pool, tensor_floats(m, t, m->t_fmt[t]));
            if (first && L->in_fmt == m->t_fmt[t]) {
                g->mode = GRAD_DIRECT;
                g->buf = m->t_grad[t];
            } else {
                g->mode = first ? GRAD_SET : GRAD_ADD;
                g->buf = temps[n_temps++] = pool_take(&pool, tensor_floats(m, t, L->in_fmt));
            }
        }
        for (int i = 0; i < n_temps; i++) pool.busy[temps[i]] = 0;
        pool.busy[m->t_grad[l + 1]] = 0; /* consumed by this layer's backward */
    }
    m->n_gbuf = pool.n;
    m->gbuf_floats = pool.floats;
    free(pool.busy);
}

/* Route the gradient a layer wrote for input slot g into its tensor's gradient. */
void graph_route_gradient(Model *m, const Layer *L, const GradSlot *g, int N) {
    if (g->mode == GRAD_NONE || g->mode == GRAD_DIRECT) return;
    const int t = g->tensor;
    float *dst = m->gbuf[m->t_grad[t]], *src = m->gbuf[g->buf];
    if (g->mode == GRAD_SET)
        layout_reorder(dst, m->t_fmt[t], src, L->in_fmt, N, tensor_shape(m, t));
    else
        layout_reorder_add(dst, m->t_fmt[t], src, L->in_fmt, N, tensor_shape(m, t));
}

void graph_plan_free(Model *m) {
    void *ps[] = {m->t_fmt, m->t_off, m->t_copy, m->in_off, m->act_off, m->t_grad, m->gslots, m->gbuf_floats};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) free(ps[i]);
}
