/* model.h: a sequential model planned from its layers, then backed by a few contiguous buffers.
 *
 * Plan, then allocate, then compute: model_plan() infers and checks every shape and sizes every
 * buffer without touching memory; model_alloc() makes the buffers (parameters, gradients,
 * activations, gradient ping-pong, forward state, workspace) in one go; the training step then
 * allocates nothing. The parameter buffer holds every layer's weights in layer order (layer l's
 * at params + layers[l].param_off, its tensors in Layer.param order), then from state_lo every
 * layer's state (BatchNormalization's moving statistics). Every trainable weight lies in
 * [train_lo, state_lo), so that one allreduce and one optimizer loop cover them; weights files
 * and checkpoints hold all n_params.
 */
#ifndef CONVNET_MODEL_H
#define CONVNET_MODEL_H

#include "layer.h"

typedef struct {
    Layer *layers; /* the model's own copy of the job's layers: their plans, the algorithms that
                    * run, the trainable flags of the current phase (the job stays read-only) */
    int n_layers;
    ConvAlgoId
        *algo_asked; /* n_layers: each layer's conv_algo as configured (auto, default, ...) */
    Shape input;
    int max_batch; /* samples per forward/backward call at most */

    size_t n_params;      /* all parameters: weights, then state */
    size_t state_lo;      /* first state float; weights are [0, state_lo) */
    size_t train_lo;      /* first parameter of the lowest trainable layer (state_lo if none) */
    int lowest_trainable; /* index of the lowest layer with trainable parameters, or n_layers */
    int first_backward; /* the plan's: no backward pass runs below this layer (model_plan_backward) */
    /* The graph of tensors (src/graph.c): tensor t is the model's input (t = 0) or layer t-1's
     * output, at acts + t_off[t] in layout t_fmt[t], with a copy in the other layout at
     * t_copy[t] when a reader wants that one (SIZE_MAX: none). What a backward pass reads is
     * kept in [0, acts_kept_floats); the rest lives in regions past it, shared by liveness
     * over the forward. */
    TensorFormat *t_fmt;
    size_t *t_off, *t_copy;
    size_t acts_kept_floats;
    size_t *in_off;  /* [l * LAYER_MAX_INPUTS + k]: layer l's input k in the layout l reads */
    size_t *act_off; /* n_layers + 1: layer l's first input; [n_layers] the output, NHWC */
    size_t acts_floats, aux_bytes, ws_floats;
    /* Gradients: tensor t's in buffer gbuf[t_grad[t]] (its own layout); a layer writes input k's
     * gradient as gslots[l * LAYER_MAX_INPUTS + k] says. Buffers are reused by liveness. */
    int *t_grad;
    struct GradSlot *gslots;
    int n_gbuf;
    size_t *gbuf_floats;
    float **gbuf;

    float *params, *grads; /* n_params each */
    float *acts;
    unsigned char *aux;
    float *ws;
    /* Per-layer seconds (forward, backward, layout reorders into/out of it) summed over calls, when profiling (the
     * CONVNET_PROFILE environment variable) is on; NULL otherwise. */
    double *prof;
} Model;

/* How a layer's backward pass delivers input k's gradient: straight into the tensor's gradient
 * (the tensor's last reader, same layout), or into a temporary buffer that is then reordered
 * into it (SET) or added to it (ADD: a tensor read by several layers gets their sum). */
typedef enum { GRAD_NONE, GRAD_DIRECT, GRAD_SET, GRAD_ADD } GradMode;
typedef struct GradSlot {
    int tensor, buf;
    GradMode mode;
} GradSlot;

/* src/graph.c, for model.c: a layer's k-th input (LAYER_INPUT: the model's input) */
int graph_input(const Layer *L, int l, int k);
int graph_n_inputs(const Layer *L);
/* Layer l reads the layer above it and nothing else, as in a Sequential model. */
int graph_reads_previous_only(const Layer *L, int l);
int graph_check(const Model *m, Err *e);
void graph_plan_tensors(Model *m);
void graph_plan_gradients(Model *m);
int graph_has_copy(const Model *m, int t);
void graph_refresh_copy(Model *m, int t, int N);
void graph_route_gradient(Model *m, const Layer *L, const GradSlot *g, int N);
void graph_plan_free(Model *m);
/* Layers [from, n) read nothing below layer from - 1, and all of them read its output where
 * layer from does: a cache of that tensor can stand in for layers [0, from). */
int graph_is_cut(const Model *m, int from);

/* Copy layers[0 .. n_layers) into the model, infer shapes from input, check them, size every
 * buffer. Allocates only the plan's tables. A layer whose algorithm is auto is planned with the
 * default one until model_tune_algorithms (or model_set_algorithms) decides. */
int model_plan(Model *m, const Layer *layers, int n_layers, Shape input, int max_batch, Err *e);
/* The explicit step after model_plan for conv_algorithm = auto: time the candidates of every
 * auto layer on its planned shapes, bottom up (a layer's choice sets the layout the next one
 * reads), keep the fastest and plan again with it. chosen[l] (n_layers entries) receives the
 * algorithm and precision each layer runs, for model_set_algorithms on the other ranks. 0, or -1 with e set. */
int model_tune_algorithms(Model *m, ConvChoice *chosen, Err *e);
/* Plan the auto layers with chosen[l] (what model_tune_algorithms chose elsewhere) instead of
 * timing them, so that every rank runs the same arithmetic. 0, or -1 with e set. */
int model_set_algorithms(Model *m, const ConvChoice *chosen, Err *e);
/* Whether any layer asks for conv_algorithm = auto. */
int model_has_auto_algorithms(const Model *m);
/* Recompute train_lo / lowest_trainable after layers' trainable flags changed. */
void model_update_trainable(Model *m);
/* Plan the tensors, gradients and layer state for backward passes that reach layer `first` at
 * most (n_layers: none), before model_alloc. model_plan plans for the layers' trainable flags
 * (down to lowest_trainable); a trainer whose later phases unfreeze lower layers calls this
 * with the lowest of them. Below `first` a tensor is kept only while the forward needs it, no
 * gradient buffer is planned, and the layers share one forward-state region. */
void model_plan_backward(Model *m, int first);
/* The buffers the plan sized; 0, or -1 with e set when this process cannot have them (the
 * model is then as after model_plan). */
int model_alloc(Model *m, Err *e);
/* Everything: buffers, and what model_plan made (the layers' algorithm plans, offsets). */
void model_free(Model *m);
/* After model_plan without model_alloc. */
void model_plan_free(Model *m);

/* Glorot/zero initialisation, keyed on (seed, layer index). */
void model_init_params(Model *m, uint64_t seed);

/* Per-call context of the forward/backward pass. */
typedef struct {
    int training;
    uint64_t seed;
    int epoch;
    const int64_t *sample_ids; /* global index of each sample, for keyed dropout/augmentation */
    /* Called by model_backward after each layer's backward, top layer first, with that layer's
     * gradient slice [lo, hi) of m->grads (param_off .. + layer_n_weights; empty for layers
     * without parameters), which no later layer touches: the slice is final and may be sent
     * while the pass goes on. NULL: no hook. */
    void (*grads_ready)(void *arg, size_t lo, size_t hi);
    void *grads_arg;
    /* Sums across ranks for layers that need them in training (SyncBatchNorm); NULL: local. */
    LayerAllreduce allreduce;
    void *allreduce_arg;
} PassCtx;

/* Input: write N samples into model_input(m). Returns the last layer's output (N, out):
 * logits when the last layer's activation is softmax or sigmoid (Layer.act_fused: the loss, or
 * loss_probabilities, applies it). */
static inline float *model_input(Model *m) { return m->acts + m->t_off[0]; }
float *model_forward(Model *m, int N, const PassCtx *p);
/* Layers [lo, hi) only, on the N samples already in model_layer_input(m, lo); returns their
 * output, model_layer_input(m, hi). The feature cache runs a frozen prefix [0, F) once and
 * then trains from layer F on. */
float *model_forward_layers(Model *m, int lo, int hi, int N, const PassCtx *p);
/* Layer l's input (N, layers[l].in) in the layout layer l reads; l == n_layers gives the
 * model's output. model_layer_input_floats: floats per sample there. */
static inline float *model_layer_input(Model *m, int l) { return m->acts + m->act_off[l]; }
size_t model_layer_input_floats(const Model *m, int l);
/* Back-propagate dlogits (N, out) into m->grads (ADDED) down to the lowest trainable layer. */
void model_backward(Model *m, const float *dlogits, int N, const PassCtx *p);
void model_zero_grad(Model *m);
/* A training pass on a rank that got no samples of the global batch: only the collectives that
 * the layers (LAYER_F_COLLECTIVE) make in model_forward and model_backward, in the same order, so
 * that the other ranks' passes complete. */
void model_collectives_idle(Model *m, const PassCtx *p);
/* Floats of activations and gradient buffers together (the summary's memory line). */
size_t model_activation_floats(const Model *m);
/* Where each layer with parameters starts in the parameter (and gradient) buffer, ascending, into
 * starts (n_layers entries at most); returns how many. Gradient buckets are cut at these. */
int model_param_starts(const Model *m, size_t *starts);

/* Output shape of the last layer. */
static inline Shape model_output_shape(const Model *m) {
    return m->n_layers ? m->layers[m->n_layers - 1].out : m->input;
}

/* Print the per-layer time profile (when enabled) and reset it. */
void model_print_profile(Model *m, FILE *f);

/* Keras-style table: layer (type), output shape, parameters; totals. */
void model_print_summary(const Model *m, const char *title, FILE *f);
size_t model_trainable_count(const Model *m);

#endif
