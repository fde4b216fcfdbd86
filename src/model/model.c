/* model.c: shape planning, buffer layout, forward and backward passes over the layer table,
 * and the Keras-style summary (see model.h). */
#include "model.h"

#include "conv_algo.h"
#include "kernels.h"
#include "runenv.h"

#include <stdlib.h>
#include <string.h>

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }
static void print_kernels(const Model *m, FILE *f);
static void plan_backward(Model *m, int first);

/* A kind without its own layout, and any layer with several inputs (Add), reads and writes NHWC. */
static int reads_nhwc_only(const Layer *L) {
    return !layer_ops[L->kind]->own_layout || graph_n_inputs(L) > 1;
}

/* Layer.out_read_as_nhwc, from the last layer up: the model's output is NHWC, so is what an
 * NHWC-only reader reads, and a LAYER_F_SAME_LAYOUT kind passes on what its readers want. */
static void mark_nhwc_outputs(Layer *layers, int n_layers) {
    for (int l = n_layers - 1; l >= 0; l--) {
        int nhwc = l == n_layers - 1;
        for (int r = l + 1; r < n_layers && !nhwc; r++) {
            const Layer *R = &layers[r];
            for (int k = 0; k < graph_n_inputs(R); k++)
                if (graph_input(R, r, k) == l)
                    nhwc |= reads_nhwc_only(R) ||
                            ((layer_ops[R->kind]->flags & LAYER_F_SAME_LAYOUT) &&
                             R->out_read_as_nhwc);
        }
        layers[l].out_read_as_nhwc = nhwc;
    }
}

static int plan_layers(Model *m, Err *e);

int model_plan(Model *m, const Layer *layers, int n_layers, Shape input, int max_batch, Err *e) {
    memset(m, 0, sizeof *m);
    m->layers = xmalloc(((size_t)n_layers + 1) * sizeof *m->layers);
    memcpy(m->layers, layers, (size_t)n_layers * sizeof *m->layers);
    m->algo_asked = xmalloc(((size_t)n_layers + 1) * sizeof *m->algo_asked);
    m->n_layers = n_layers;
    m->input = input;
    m->max_batch = max_batch;
    for (int l = 0; l < n_layers; l++) {
        Layer *L = &m->layers[l];
        L->conv = NULL; /* the copy owns its plans */
        m->algo_asked[l] = L->conv_algo;
        /* auto: the default until model_tune_algorithms times the candidates */
        if (L->conv_algo == CONV_ALGO_AUTO) L->conv_algo = CONV_ALGO_DEFAULT;
    }
    if (plan_layers(m, e)) {
        model_plan_free(m);
        return -1;
    }
    return 0;
}

/* Plan the model's layers (again, after an algorithm changed): shapes, layouts, parameter
 * offsets, the graph's buffers. */
static int plan_layers(Model *m, Err *e) {
    Layer *layers = m->layers;
    const int n_layers = m->n_layers, max_batch = m->max_batch;
    const Shape input = m->input;
    const size_t B = (size_t)max_batch;
    size_t params = 0, ws = 0;
    int seen_params = 0;
    mark_nhwc_outputs(layers, n_layers);
    for (int l = 0; l < n_layers; l++) {
        Layer *L = &layers[l];
        for (int k = 0; k < graph_n_inputs(L); k++) {
            int p = graph_input(L, l, k);
            CHECK(p >= LAYER_INPUT && p < l); /* the job names earlier layers only */
            L->in_shapes[k] = p == LAYER_INPUT ? input : layers[p].out;
        }
        L->in = L->in_shapes[0];
        L->max_batch = max_batch;
        /* offered: the layout its first input is in; a kind with its own layout may keep it */
        L->in_fmt = graph_input(L, l, 0) == LAYER_INPUT ? FMT_NHWC
                                                        : layers[graph_input(L, l, 0)].out_fmt;
        L->out_fmt = FMT_NHWC;
        L->n_param = 0;
        if (layer_ops[L->kind]->plan(L, e)) return -1;
        if (reads_nhwc_only(L)) L->in_fmt = L->out_fmt = FMT_NHWC;
        char w[320];
        if (graph_n_inputs(L) > 1 && !(layer_ops[L->kind]->flags & LAYER_F_MULTI_INPUT)) {
            err_set(e, "layer %s (%s): %s reads one input, but `inputs` names %d", L->name,
                    layer_where(L, w, sizeof w), layer_ops[L->kind]->keras_name, graph_n_inputs(L));
            return -1;
        }
        if (L->out.h < 1 || L->out.w < 1 || L->out.c < 1) {
            err_set(e, "layer %s (%s): output shape %dx%dx%d is empty", L->name,
                    layer_where(L, w, sizeof w), L->out.h, L->out.w, L->out.c);
            return -1;
        }
        if (L->act == ACT_SOFTMAX && (l != n_layers - 1 || !L->out.flat)) {
            err_set(e,
                    "layer %s (%s): softmax is supported on the last (Dense) layer only, "
                    "where it is fused with the loss",
                    L->name, layer_where(L, w, sizeof w));
            return -1;
        }
        if ((layer_ops[L->kind]->flags & LAYER_F_AUGMENT) && seen_params) {
            err_set(e,
                    "layer %s (%s): augmentation layers must come before every layer with "
                    "weights",
                    L->name, layer_where(L, w, sizeof w));
            return -1;
        }
        seen_params |= L->n_param > 0;
        /* the output's sigmoid/softmax is fused with the loss: the model returns logits */
        L->act_fused = l == n_layers - 1 && (L->act == ACT_SIGMOID || L->act == ACT_SOFTMAX);
        L->param_off = params;
        for (int i = 0; i < L->n_param; i++)
            if (L->param[i].role == PARAM_WEIGHT) L->param[i].off = params, params += L->param[i].n;
        ws = max_sz(ws, B * L->ws_per_sample + L->ws_fixed);
    }
    /* state after every weight, so that [train_lo, state_lo) is one range of trainable floats */
    m->state_lo = params;
    for (int l = 0; l < n_layers; l++)
        for (int i = 0; i < layers[l].n_param; i++)
            if (layers[l].param[i].role == PARAM_STATE)
                layers[l].param[i].off = params, params += layers[l].param[i].n;
    m->n_params = params;
    m->ws_floats = ws;
    if (graph_check(m, e)) return -1;
    model_update_trainable(m);
    plan_backward(m, m->lowest_trainable);
    return 0;
}

static void release_layers(Model *m) {
    for (int l = 0; l < m->n_layers; l++)
        if (layer_ops[m->layers[l].kind]->release)
            layer_ops[m->layers[l].kind]->release(&m->layers[l]);
}

/* Plan again after the auto layers' algorithms changed. */
static int replan(Model *m, Err *e) {
    release_layers(m);
    graph_plan_free(m);
    m->first_backward = 0;
    return plan_layers(m, e);
}

int model_has_auto_algorithms(const Model *m) {
    for (int l = 0; l < m->n_layers; l++)
        if (m->algo_asked[l] == CONV_ALGO_AUTO) return 1;
    return 0;
}

int model_tune_algorithms(Model *m, ConvChoice *chosen, Err *e) {
    for (int l = 0; l < m->n_layers; l++) {
        Layer *L = &m->layers[l];
        if (m->algo_asked[l] == CONV_ALGO_AUTO && L->conv) {
            /* the layers below are final: the plan's request carries the layout they write */
            ConvChoice c = conv_algo_tune(&L->conv->asked, !L->trainable);
            if (c.algo != L->conv_algo || c.prec != L->conv_prec) {
                L->conv_algo = c.algo, L->conv_prec = c.prec;
                if (replan(m, e)) return -1;
            }
        }
        chosen[l] = (ConvChoice){m->layers[l].conv_algo, m->layers[l].conv_prec};
    }
    return 0;
}

int model_set_algorithms(Model *m, const ConvChoice *chosen, Err *e) {
    int changed = 0;
    for (int l = 0; l < m->n_layers; l++) {
        Layer *L = &m->layers[l];
        if (m->algo_asked[l] == CONV_ALGO_AUTO &&
            (L->conv_algo != chosen[l].algo || L->conv_prec != chosen[l].prec)) {
            L->conv_algo = chosen[l].algo, L->conv_prec = chosen[l].prec;
            changed = 1;
        }
    }
    return changed ? replan(m, e) : 0;
}

size_t model_layer_input_floats(const Model *m, int l) {
    if (l == m->n_layers) return shape_size(model_output_shape(m));
    return format_floats(m->layers[l].in_fmt, m->layers[l].in);
}

/* The layers' forward state (aux), each 64-byte aligned (float and int32 state follow byte
 * masks). Layers below first never run backward, so theirs (im2col matrices, pooling indices)
 * is scratch that dies with the layer's forward call: they all use one region, sized for the
 * largest. A frozen VGG16 base at 180x180, batch 32, keeps 2.4 GB instead of 8.7 GB of im2col
 * matrices. */
static void plan_aux(Model *m, int first) {
    const size_t B = (size_t)m->max_batch;
    size_t shared = 0, aux = 0;
    for (int l = 0; l < first && l < m->n_layers; l++)
        shared = max_sz(shared, (B * m->layers[l].aux_per_sample + 63) & ~(size_t)63);
    aux = shared;
    for (int l = 0; l < m->n_layers; l++) {
        Layer *L = &m->layers[l];
        if (l < first) {
            L->aux_off = 0;
        } else {
            L->aux_off = aux;
            aux += (B * L->aux_per_sample + 63) & ~(size_t)63;
        }
    }
    m->aux_bytes = aux;
}

/* model_plan's last step, and model_plan_backward's again for a lower `first` */
static void plan_backward(Model *m, int first) {
    graph_plan_free(m);
    m->first_backward = first;
    graph_plan_tensors(m);
    graph_plan_gradients(m);
    plan_aux(m, first);
}

void model_plan_backward(Model *m, int first) {
    if (first != m->first_backward) plan_backward(m, first);
}

void model_update_trainable(Model *m) {
    m->lowest_trainable = m->n_layers;
    m->train_lo = m->state_lo;
    for (int l = 0; l < m->n_layers; l++) {
        const Layer *L = &m->layers[l];
        if (L->trainable && layer_n_weights(L) > 0) {
            m->lowest_trainable = l;
            m->train_lo = L->param_off;
            break;
        }
    }
}

size_t model_trainable_count(const Model *m) {
    size_t n = 0;
    for (int l = 0; l < m->n_layers; l++)
        if (m->layers[l].trainable) n += layer_n_weights(&m->layers[l]);
    return n;
}

/* model_free's half for the buffers, also after a failed model_alloc. */
static void free_buffers(Model *m) {
    free(m->params);
    free(m->grads);
    free(m->acts);
    for (int i = 0; m->gbuf && i < m->n_gbuf; i++) free(m->gbuf[i]);
    free(m->gbuf);
    free(m->aux);
    free(m->ws);
    free(m->prof);
    m->params = m->grads = m->acts = m->ws = NULL;
    m->gbuf = NULL;
    m->aux = NULL;
    m->prof = NULL;
}

int model_alloc(Model *m, Err *e) {
    /* The large buffers are the plan's (batch size, image size): a node without the memory is
     * the caller's to report, not a reason for the library to end the process. */
    m->params = malloc(max_sz(m->n_params, 1) * sizeof(float));
    m->grads = calloc(max_sz(m->n_params, 1), sizeof(float));
    /* zeroed: a oneDNN convolution computes whole batches, and the samples past a short batch
     * must hold finite values (their gradients are zeroed, 0 * NaN would not be) */
    m->acts = calloc(max_sz(m->acts_floats, 1), sizeof(float));
    m->gbuf = calloc((size_t)m->n_gbuf + 1, sizeof *m->gbuf);
    int ok = m->params && m->grads && m->acts && m->gbuf;
    for (int i = 0; ok && i < m->n_gbuf; i++)
        ok = (m->gbuf[i] = calloc(max_sz(m->gbuf_floats[i], 1), sizeof(float))) != NULL;
    m->aux = aligned_alloc(64, max_sz(m->aux_bytes, 64));
    /* 64-byte aligned: oneDNN's kernels read their scratchpad (carved from ws) with aligned loads */
    m->ws = aligned_alloc(64, (max_sz(m->ws_floats, 1) * sizeof(float) + 63) & ~(size_t)63);
    if (!ok || !m->aux || !m->ws) {
        err_set(e,
                "out of memory: the model's buffers (parameters and gradients "
                "%.1f MB, activations %.1f MB, layer state %.1f MB, workspace %.1f MB)",
                m->n_params * 8.0 / 1e6, model_activation_floats(m) * 4.0 / 1e6, m->aux_bytes / 1e6,
                m->ws_floats * 4.0 / 1e6);
        free_buffers(m);
        return -1;
    }
    if (runenv()->profile) m->prof = xcalloc(4 * (size_t)m->n_layers + 1, sizeof(double));
    return 0;
}

void model_free(Model *m) {
    free_buffers(m);
    model_plan_free(m);
}

void model_plan_free(Model *m) {
    if (m->layers) release_layers(m);
    graph_plan_free(m);
    free(m->layers);
    free(m->algo_asked);
    memset(m, 0, sizeof *m);
}

void model_init_params(Model *m, uint64_t seed) {
    for (int l = 0; l < m->n_layers; l++) {
        const Layer *L = &m->layers[l];
        if (!layer_ops[L->kind]->init || L->n_param == 0) continue;
        Rng r = rng_keyed(seed, RNG_INIT, (uint64_t)l, 0);
        float *p[LAYER_MAX_PARAMS] = {0};
        for (int i = 0; i < L->n_param; i++) p[i] = m->params + L->param[i].off;
        layer_ops[L->kind]->init(L, p, &r);
    }
}

static LayerCtx layer_ctx(Model *m, int l, const PassCtx *p) {
    const Layer *L = &m->layers[l];
    LayerCtx c;
    memset(&c, 0, sizeof c);
    for (int i = 0; i < L->n_param; i++) {
        const LayerParam *P = &L->param[i];
        c.p[i] = m->params + P->off;
        if (P->role == PARAM_STATE)
            c.st[i] = m->params + P->off;
        else if (L->trainable)
            c.dp[i] = m->grads + P->off;
    }
    c.w = c.p[0], c.b = c.p[1], c.dw = c.dp[0], c.db = c.dp[1];
    c.allreduce = p->allreduce;
    c.allreduce_arg = p->allreduce_arg;
    c.aux = m->aux + L->aux_off;
    c.ws = m->ws;
    c.training = p->training;
    c.seed = p->seed;
    c.epoch = p->epoch;
    c.layer_index = l;
    c.sample_ids = p->sample_ids;
    if (m->prof) c.prof_weights = &m->prof[4 * l + 3];
    c.n_ins = graph_n_inputs(L);
    return c;
}

float *model_forward(Model *m, int N, const PassCtx *p) {
    return model_forward_layers(m, 0, m->n_layers, N, p);
}

float *model_forward_layers(Model *m, int lo, int hi, int N, const PassCtx *p) {
    CHECK(N >= 1 && N <= m->max_batch && lo >= 0 && lo <= hi && hi <= m->n_layers);
    const float *ins[LAYER_MAX_INPUTS];
    for (int l = lo; l < hi; l++) {
        const Layer *L = &m->layers[l];
        LayerCtx c = layer_ctx(m, l, p);
        for (int k = 0; k < c.n_ins; k++) ins[k] = m->acts + m->in_off[l * LAYER_MAX_INPUTS + k];
        c.ins = ins;
        double t0 = m->prof ? now_seconds() : 0;
        layer_ops[L->kind]->forward(L, &c, m->acts + m->t_off[l + 1], ins[0], N);
        double t1 = m->prof ? now_seconds() : 0;
        if (m->prof) m->prof[4 * l] += t1 - t0;
        if (graph_has_copy(m, l + 1)) { /* a reader (or the output) wants the other layout */
            graph_refresh_copy(m, l + 1, N);
            if (m->prof) m->prof[4 * l + 2] += now_seconds() - t1;
        }
    }
    return m->acts + m->act_off[hi];
}

void model_backward(Model *m, const float *dlogits, int N, const PassCtx *p) {
    if (m->lowest_trainable >= m->n_layers) return;
    const int n = m->n_layers, low = m->lowest_trainable;
    /* the loss's gradient, in the last layer's layout */
    layout_reorder(m->gbuf[m->t_grad[n]], m->t_fmt[n], dlogits, FMT_NHWC, N, model_output_shape(m));
    const float *ins[LAYER_MAX_INPUTS];
    float *dins[LAYER_MAX_INPUTS];
    for (int l = n - 1; l >= low; l--) {
        const Layer *L = &m->layers[l];
        const GradSlot *gs = &m->gslots[l * LAYER_MAX_INPUTS];
        LayerCtx c = layer_ctx(m, l, p);
        /* an input needs a gradient when its producer is at or above the lowest trainable layer
         * (then every reader of it runs backward too) */
        for (int k = 0; k < c.n_ins; k++) {
            ins[k] = m->acts + m->in_off[l * LAYER_MAX_INPUTS + k];
            dins[k] = gs[k].mode != GRAD_NONE && gs[k].tensor - 1 >= low ? m->gbuf[gs[k].buf]
                                                                         : NULL;
        }
        c.ins = ins;
        c.dins = dins;
        double t0 = m->prof ? now_seconds() : 0;
        layer_ops[L->kind]->backward(L, &c, dins[0], m->gbuf[m->t_grad[l + 1]], ins[0],
                                     m->acts + m->t_off[l + 1], N);
        double t1 = m->prof ? now_seconds() : 0;
        for (int k = 0; k < c.n_ins; k++)
            if (dins[k]) graph_route_gradient(m, L, &gs[k], N);
        if (m->prof) {
            m->prof[4 * l + 1] += t1 - t0;
            m->prof[4 * l + 2] += now_seconds() - t1;
        }
        if (p->grads_ready)
            p->grads_ready(p->grads_arg, L->param_off, L->param_off + layer_n_weights(L));
    }
}

void model_collectives_idle(Model *m, const PassCtx *p) {
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < m->n_layers; i++) {
            int l = pass == 0 ? i : m->n_layers - 1 - i; /* forward up, backward down */
            const Layer *L = &m->layers[l];
            if (!(layer_ops[L->kind]->flags & LAYER_F_COLLECTIVE)) continue;
            if (pass == 1 && l < m->lowest_trainable) continue;
            LayerCtx c = layer_ctx(m, l, p);
            if (pass == 0)
                layer_ops[L->kind]->forward(L, &c, NULL, NULL, 0);
            else
                layer_ops[L->kind]->backward(L, &c, NULL, NULL, NULL, NULL, 0);
        }
}

size_t model_activation_floats(const Model *m) {
    size_t n = m->acts_floats;
    for (int i = 0; i < m->n_gbuf; i++) n += m->gbuf_floats[i];
    return n;
}

void model_zero_grad(Model *m) { memset(m->grads, 0, m->n_params * sizeof *m->grads); }

int model_param_starts(const Model *m, size_t *starts) {
    int n = 0;
    for (int l = 0; l < m->n_layers; l++)
        if (layer_n_weights(&m->layers[l]) > 0) starts[n++] = m->layers[l].param_off;
    return n;
}

void model_print_profile(Model *m, FILE *f) {
    if (!m->prof) return;
    double total = 0;
    for (int l = 0; l < m->n_layers; l++)
        total += m->prof[4 * l] + m->prof[4 * l + 1] + m->prof[4 * l + 2];
    fprintf(
        f,
        "  layer profile (seconds; share of the model's forward + backward + reorders, %.3f s):\n",
        total);
    for (int l = 0; l < m->n_layers; l++) {
        const double *t = m->prof + 4 * l; /* forward, backward, reorders, backward's weight part */
        fprintf(f, "    %-18s forward %7.3f (%4.1f%%)  backward-data %7.3f (%4.1f%%)",
                m->layers[l].name, t[0], 100 * t[0] / total, t[1] - t[3],
                100 * (t[1] - t[3]) / total);
        if (t[3] > 0) fprintf(f, "  backward-weights %7.3f (%4.1f%%)", t[3], 100 * t[3] / total);
        if (t[2] > 0) fprintf(f, "  reorder %7.3f (%4.1f%%)", t[2], 100 * t[2] / total);
        fputc('\n', f);
    }
    memset(m->prof, 0, 4 * (size_t)m->n_layers * sizeof(double));
}

static void fmt_shape(char *buf, size_t n, Shape s) {
    if (s.flat)
        snprintf(buf, n, "(None, %d)", s.c);
    else
        snprintf(buf, n, "(None, %d, %d, %d)", s.h, s.w, s.c);
}

/* A layer that does not read just the one above it makes the model a graph. */
static int is_graph(const Model *m) {
    for (int l = 0; l < m->n_layers; l++)
        if (!graph_reads_previous_only(&m->layers[l], l)) return 1;
    return 0;
}

/* Keras's "Connected to": name[0][0] of each input. */
static void fmt_inputs(char *buf, size_t n, const Model *m, int l) {
    buf[0] = 0;
    for (int k = 0; k < graph_n_inputs(&m->layers[l]); k++) {
        int p = graph_input(&m->layers[l], l, k);
        size_t len = strlen(buf);
        snprintf(buf + len, n - len, "%s%s[0][0]", k ? ", " : "",
                 p == LAYER_INPUT ? "input" : m->layers[p].name);
    }
}

void model_print_summary(const Model *m, const char *title, FILE *f) {
    const int graph = is_graph(m);
    const char *rule =
        "___________________________________________________________________________________";
    fprintf(f, "Model: \"%s\"\n%s\n", title, rule);
    fprintf(f, " %-44s %-24s %12s%s\n", "Layer (type)", "Output Shape", "Param #",
            graph ? "  Connected to" : "");
    fprintf(
        f, "===================================================================================\n");
    char shape[64], name[96], conn[512];
    fmt_shape(shape, sizeof shape, m->input);
    fprintf(f, " %-44s %-24s %12d%s\n", "input (InputLayer)", shape, 0, graph ? "  -" : "");
    size_t frozen = 0, state = 0;
    for (int l = 0; l < m->n_layers; l++) {
        const Layer *L = &m->layers[l];
        snprintf(name, sizeof name, "%s (%s)", L->name, layer_ops[L->kind]->keras_name);
        fmt_shape(shape, sizeof shape, L->out);
        fmt_inputs(conn, sizeof conn, m, l);
        size_t nw = layer_n_weights(L), np = nw + layer_n_state(L);
        fprintf(f, " %-44s %-24s %12zu%s%s%s\n", name, shape, np, graph ? "  " : "",
                graph ? conn : "", nw && !L->trainable ? "  (frozen)" : "");
        if (!L->trainable) frozen += nw;
        state += layer_n_state(L);
    }
    fprintf(
        f, "===================================================================================\n");
    fprintf(f, "Total params: %zu (%.2f MB)\n", m->n_params, m->n_params * 4.0 / 1e6);
    /* Keras counts moving statistics and a frozen layer's weights as non-trainable */
    fprintf(f, "Trainable params: %zu\n", m->n_params - frozen - state);
    fprintf(f, "Non-trainable params: %zu\n%s\n", frozen + state, rule);
    print_kernels(m, f);
}

/* Which algorithm each convolution runs, oneDNN's implementations, and the layouts. */
static void print_kernels(const Model *m, FILE *f) {
    int convs = 0, copies = 0;
    for (int l = 0; l < m->n_layers; l++) convs += m->layers[l].conv != NULL;
    for (int t = 0; t <= m->n_layers; t++) copies += graph_has_copy(m, t);
    if (!convs) return;
    int mixed = 0;
    for (int l = 0; l < m->n_layers; l++) mixed |= m->layers[l].mixed_bf16;
    /* the policy asked for bfloat16 that this CPU cannot give: say so, once */
    if (mixed && conv_dnnl_bf16_unsupported())
        fprintf(f, "precision = mixed_bfloat16 runs float32 here: %s\n",
                conv_dnnl_bf16_unsupported());
    fprintf(f, "Convolution algorithms (oneDNN ISA: %s):\n", conv_dnnl_isa());
    for (int l = 0; l < m->n_layers; l++) {
        const Layer *L = &m->layers[l];
        if (!L->conv) continue;
        fprintf(f, " %-16s %-9s %-8s %s -> %s  [%s]\n", L->name, conv_algo_name(L->conv_algo),
                L->conv->d.bf16 ? "bfloat16" : "float32", format_name(L->in_fmt),
                format_name(L->out_fmt), L->conv->impl);
    }
    fprintf(f, "Layout reorders between layers: %d\n", copies);
    for (int t = 1; t <= m->n_layers; t++)
        if (graph_has_copy(m, t))
            fprintf(f, " %s output: %s, also kept as %s\n", m->layers[t - 1].name,
                    format_name(m->t_fmt[t]),
                    format_name(m->t_fmt[t] == FMT_NHWC ? FMT_BLK16 : FMT_NHWC));
}
