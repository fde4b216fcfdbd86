/* graph.c: the model as a graph of tensors (model.h): which layer reads which tensor, where each
 * tensor and its layout copies live in the activation arena, and how the backward pass routes
 * gradients: each tensor's gradient is written by its last reader, added into by the others
 * (a fan-out gets the sum of its readers' gradients), in buffers reused by liveness.
 *
 * A tensor (in each layout it is held in) that some backward pass reads lives from its forward
 * to that backward, in a place of its own. One that only forward steps read (a BatchNorm output
 * read by a ReLU, a oneDNN nChw16c output read only as its NHWC copy) lives in a region shared
 * by liveness, from its producer's forward to its last reader's; the kinds' ops-table entries
 * say what their backward reads (LayerOps.backward_reads).
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

int graph_input(const Layer *L, int l, int k) { return L->n_inputs ? L->inputs[k] : l - 1; }

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
        for (int k = 0; k < graph_n_inputs(&m->layers[l]); k++)
            readers[graph_input(&m->layers[l], l, k) + 1]++;
    int rc = 0;
    for (int t = 0; t < n && !rc; t++) {
        if (readers[t]) continue;
        char w[320];
        if (t == 0)
            err_set(e, "no layer reads the model's input (`inputs = input` on the first layer of a "
                       "branch)");
        else
            err_set(
                e,
                "layer %s (%s): no layer reads its output (an unused branch): only the last layer "
                "is the model's output",
                m->layers[t - 1].name, layer_where(&m->layers[t - 1], w, sizeof w));
        rc = -1;
    }
    free(readers);
    return rc;
}

/* ---- buffer pools: the gradients', and the activations the backward never reads ---- */

typedef struct {
    size_t *floats;
    int *busy, n;
} Pool;

/* A free buffer for `floats`: the smallest that fits, else the largest free one (grown), else
 * a new one. A chain's gradients then alternate between two buffers, each as large as the
 * tensors that land in it (where the layout changes too: the reordered gradient lands in the
 * buffer the layer's backward has just consumed). */
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
        if (!p->floats || !p->busy) /* bookkeeping: xmalloc's convention (common.h) */
            die(EXIT_RUNTIME, "out of memory planning activation and gradient buffers");
        p->floats[best] = 0;
    }
    p->floats[best] = max_sz(p->floats[best], floats);
    p->busy[best] = 1;
    return best;
}

static void pool_free(Pool *p) {
    free(p->floats);
    free(p->busy);
}

/* ---- activations ---- */

/* One layout of a tensor: its producer's (own) or the copy in the other layout. */
typedef struct {
    int exists;
    int kept; /* a backward pass reads it (or it is the model's input or output): its own
                    * place in the arena; otherwise a shared region while forward steps use it */
    int last; /* the last forward step (layer index) that reads it */
    size_t floats;
    int region; /* the shared region, when not kept */
} Instance;

/* inst[2t + 0]: tensor t in t_fmt[t]; inst[2t + 1]: its copy. Each is written at step t - 1
 * (the producer's forward, then the copy refresh) and read by the steps of its readers. */
static void describe_instances(const Model *m, Instance *inst) {
    const int n = m->n_layers, first = m->first_backward; /* no backward runs below first */
    for (int t = 0; t <= n; t++) {
        TensorFormat f = m->t_fmt[t], other = f == FMT_NHWC ? FMT_BLK16 : FMT_NHWC;
        inst[2 * t] = (Instance){1, t == 0 || t == n, t - 1, tensor_floats(m, t, f), -1};
        inst[2 * t + 1] = (Instance){0, t == 0 || t == n, t - 1, tensor_floats(m, t, other), -1};
        if (t - 1 >= first && layer_backward_reads(&m->layers[t - 1]) & LAYER_READS_OUTPUT)
            inst[2 * t].kept = 1;
    }
    inst[2 * n + 1].exists = m->t_fmt[n] != FMT_NHWC; /* the model's output is read as NHWC */
    for (int l = 0; l < n; l++) {
        const Layer *L = &m->layers[l];
        for (int k = 0; k < graph_n_inputs(L); k++) {
            int t = graph_input(L, l, k) + 1;
            Instance *I = &inst[2 * t + (L->in_fmt != m->t_fmt[t])];
            I->exists = 1;
            if (l > I->last) I->last = l;
            if (l >= first && layer_backward_reads(L) & LAYER_READS_INPUT) I->kept = 1;
        }
    }
}

/* Shared regions for the instances no backward reads, by liveness: walking the forward, each
 * step takes regions for what it writes, then frees what it read for the last time (so an
 * output never shares with its inputs). Returns the regions' pool. */
static Pool share_regions(const Model *m, Instance *inst) {
    const int n = m->n_layers;
    Pool pool = {NULL, NULL, 0};
    for (int step = 0; step < n; step++) {
        for (int i = 2 * (step + 1); i < 2 * (step + 2); i++)
            if (inst[i].exists && !inst[i].kept) inst[i].region = pool_take(&pool, inst[i].floats);
        for (int i = 0; i < 2 * (n + 1); i++)
            if (inst[i].region >= 0 && inst[i].last == step) pool.busy[inst[i].region] = 0;
    }
    return pool;
}

void graph_plan_tensors(Model *m) {
    const int n = m->n_layers;
    m->t_fmt = xmalloc(((size_t)n + 1) * sizeof *m->t_fmt);
    m->t_off = xmalloc(((size_t)n + 1) * sizeof *m->t_off);
    m->t_copy = xmalloc(((size_t)n + 1) * sizeof *m->t_copy);
    m->in_off = xmalloc(((size_t)n + 1) * LAYER_MAX_INPUTS * sizeof *m->in_off);
    m->act_off = xmalloc(((size_t)n + 1) * sizeof *m->act_off);
    /* a tensor's own layout is its producer's; a copy in the other layout when a reader (or,
     * for the last layer, the model's output) reads that one */
    for (int t = 0; t <= n; t++) m->t_fmt[t] = t ? m->layers[t - 1].out_fmt : FMT_NHWC;
    Instance *inst = xmalloc(2 * ((size_t)n + 1) * sizeof *inst);
    describe_instances(m, inst);
    Pool pool = share_regions(m, inst);
    /* the kept instances in tensor order (the input at 0), then the shared regions */
    size_t off = 0, *region_off = xmalloc(((size_t)pool.n + 1) * sizeof *region_off);
    for (int i = 0; i < 2 * (n + 1); i++)
        if (inst[i].exists && inst[i].kept) {
            (i % 2 ? m->t_copy : m->t_off)[i / 2] = off;
            off += inst[i].floats;
        }
    m->acts_kept_floats = off;
    for (int r = 0; r < pool.n; r++) region_off[r] = off, off += pool.floats[r];
    m->acts_floats = off;
    for (int i = 0; i < 2 * (n + 1); i++) {
        size_t *where = &(i % 2 ? m->t_copy : m->t_off)[i / 2];
        if (!inst[i].exists)
            *where = NO_COPY;
        else if (!inst[i].kept)
            *where = region_off[inst[i].region];
    }
    free(region_off);
    free(inst);
    pool_free(&pool);
    for (int l = 0; l < n; l++) {
        const Layer *L = &m->layers[l];
        for (int k = 0; k < graph_n_inputs(L); k++) {
            int t = graph_input(L, l, k) + 1;
            m->in_off[l * LAYER_MAX_INPUTS + k] = L->in_fmt == m->t_fmt[t] ? m->t_off[t]
                                                                           : m->t_copy[t];
        }
        m->act_off[l] = m->in_off[l * LAYER_MAX_INPUTS];
    }
    m->act_off[n] = m->t_fmt[n] == FMT_NHWC ? m->t_off[n] : m->t_copy[n];
}

int graph_has_copy(const Model *m, int t) { return m->t_copy[t] != NO_COPY; }

void graph_refresh_copy(Model *m, int t, int N) {
    if (!graph_has_copy(m, t)) return;
    TensorFormat other = m->t_fmt[t] == FMT_NHWC ? FMT_BLK16 : FMT_NHWC;
    layout_reorder(m->acts + m->t_copy[t], other, m->acts + m->t_off[t], m->t_fmt[t], N,
                   tensor_shape(m, t));
}

int graph_is_cut(const Model *m, int from) {
    if (from <= 0) return 1;
    for (int l = from; l < m->n_layers; l++)
        for (int k = 0; k < graph_n_inputs(&m->layers[l]); k++) {
            int p = graph_input(&m->layers[l], l, k);
            /* layer `from`'s input is what the cache fills: every reader must read that copy */
            if (p < from - 1 ||
                (p == from - 1 && m->in_off[l * LAYER_MAX_INPUTS + k] != m->act_off[from]))
                return 0;
        }
    return 1;
}

/* ---- gradients: buffers reused by liveness ---- */

void graph_plan_gradients(Model *m) {
    const int n = m->n_layers;
    Pool pool = {NULL, NULL, 0};
    m->t_grad = xmalloc(((size_t)n + 1) * sizeof *m->t_grad);
    m->gslots = xcalloc((size_t)n * LAYER_MAX_INPUTS + 1, sizeof *m->gslots);
    for (int t = 0; t <= n; t++) m->t_grad[t] = -1;
    m->t_grad[n] = pool_take(&pool, tensor_floats(m, n, m->t_fmt[n])); /* the loss's gradient */
    /* walk the backward pass down to the lowest layer a phase may train */
    for (int l = n - 1; l >= m->first_backward; l--) {
        const Layer *L = &m->layers[l];
        int temps[LAYER_MAX_INPUTS], n_temps = 0, later[LAYER_MAX_INPUTS], n_later = 0;
        for (int k = 0; k < graph_n_inputs(L); k++) {
            GradSlot *g = &m->gslots[l * LAYER_MAX_INPUTS + k];
            int t = graph_input(L, l, k) + 1;
            g->tensor = t;
            if (t - 1 <
                m->first_backward) { /* the model's input, or made by a layer that never trains */
                g->mode = GRAD_NONE;
                continue;
            }
            int first = m->t_grad[t] == -1;
            if (first && L->in_fmt == m->t_fmt[t]) { /* written during the backward */
                m->t_grad[t] = pool_take(&pool, tensor_floats(m, t, m->t_fmt[t]));
                g->mode = GRAD_DIRECT;
                g->buf = m->t_grad[t];
            } else {
                g->mode = first ? GRAD_SET : GRAD_ADD;
                g->buf = temps[n_temps++] = pool_take(&pool, tensor_floats(m, t, L->in_fmt));
                if (first)
                    m->t_grad[t] = -2, later[n_later++] = t; /* set only after the backward */
            }
        }
        /* this layer's output gradient is consumed by its backward: a gradient reordered into
         * place after it may land in that buffer */
        pool.busy[m->t_grad[l + 1]] = 0;
        for (int i = 0; i < n_later; i++)
            m->t_grad[later[i]] = pool_take(&pool, tensor_floats(m, later[i], m->t_fmt[later[i]]));
        for (int i = 0; i < n_temps; i++) pool.busy[temps[i]] = 0;
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
    void *ps[] = {m->t_fmt,   m->t_off,  m->t_copy, m->in_off,
                  m->act_off, m->t_grad, m->gslots, m->gbuf_floats};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) free(ps[i]);
    m->t_fmt = NULL, m->t_off = m->t_copy = m->in_off = m->act_off = m->gbuf_floats = NULL;
    m->t_grad = NULL, m->gslots = NULL, m->n_gbuf = 0;
}
