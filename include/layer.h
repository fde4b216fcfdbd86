/* layer.h: the layer descriptor and the const table of operations per layer kind.
 *
 * A Layer holds a kind, its configuration from the job file and, after
 * model_plan(), its shapes and the offsets of its parameters and state in the
 * model's contiguous buffers. What each kind does lives in layer_ops[kind]:
 * configure (read its job-file section), plan (infer and check shapes, count
 * parameters and scratch), init (parameters), forward and backward.
 *
 * Tensors are NHWC float32: a batch of N samples, each H x W x C, C fastest.
 * Conv2D weights are (KH, KW, C, OC), Dense weights (IN, UNITS): Keras's order.
 */
#ifndef CONVNET_LAYER_H
#define CONVNET_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "rng.h"

/* Per-sample shape. flat = 1 marks a vector of c values (after Flatten or Dense; h = w = 1),
 * which spatial layers (Conv2D, MaxPooling2D) reject. */
typedef struct {
    int h, w, c;
    int flat;
} Shape;

static inline size_t shape_size(Shape s) { return (size_t)s.h * (size_t)s.w * (size_t)s.c; }

/* Memory layout of an activation tensor: NHWC, or oneDNN's nChw16c (channels in blocks of 16,
 * the last block zero-padded: (N, ceil(C/16), H, W, 16)), which oneDNN's convolutions read and
 * write fastest. Consecutive Conv2D/MaxPooling2D layers pass nChw16c between them; the model
 * reorders (src/layout.c) only where a layer needs NHWC (Flatten, Dense, augmentation, ...). */
typedef enum { FMT_NHWC, FMT_BLK16 } TensorFormat;

/* Per-sample floats of a shape in a layout. */
static inline size_t format_floats(TensorFormat f, Shape s) {
    size_t c = f == FMT_BLK16 ? (size_t)(s.c + 15) / 16 * 16 : (size_t)s.c;
    return (size_t)s.h * (size_t)s.w * c;
}

/* Conv2D's algorithm (include/conv_algo.h). */
typedef enum {
    CONV_ALGO_IM2COL,
    CONV_ALGO_DIRECT,
    CONV_ALGO_WINOGRAD,
    CONV_ALGO_COUNT,
    CONV_ALGO_AUTO = -1,   /* time the candidates at start-up */
    CONV_ALGO_DEFAULT = -2 /* a layer without its own `algorithm` key: [train] conv_algorithm */
} ConvAlgoId;

/* The precision a convolution computes in (docs/mixed-precision.md). POLICY: as the job's
 * [train] precision says (bfloat16 under mixed_bfloat16 where the algorithm and the CPU have
 * it); `auto` replaces it with the one it timed fastest. */
typedef enum {
    CONV_PREC_POLICY,
    CONV_PREC_F32,
    CONV_PREC_BF16,     /* in oneDNN's blocked layouts (jit_bf16) */
    CONV_PREC_BF16_NHWC /* channels-last in and out (oneDNN picks brgconv for the forward) */
} ConvPrecision;

/* What `auto` chose for one layer (rank 0 broadcasts it, so every rank runs the same). */
typedef struct {
    ConvAlgoId algo;
    ConvPrecision prec;
} ConvChoice;

typedef enum {
    LAYER_CONV2D,
    LAYER_MAXPOOL2D,
    LAYER_FLATTEN,
    LAYER_DENSE,
    LAYER_DROPOUT,
    LAYER_RESCALING,
    LAYER_RANDOM_FLIP,
    LAYER_RANDOM_ROTATION,
    LAYER_RANDOM_ZOOM,
    LAYER_GLOBAL_AVGPOOL,
    LAYER_PREPROCESS,
    LAYER_ADD,
    LAYER_BATCHNORM,
    LAYER_DEPTHWISE_CONV2D,
    LAYER_SEPARABLE_CONV2D,
    LAYER_ACTIVATION,
    LAYER_KIND_COUNT /* the number of kinds: layer_ops has one entry each (layers.c checks) */
} LayerKind;

typedef enum { PAD_VALID, PAD_SAME } Padding;
/* leaky: Darknet's leaky ReLU, x > 0 ? x : 0.1 x */
typedef enum { ACT_LINEAR, ACT_RELU, ACT_SIGMOID, ACT_SOFTMAX, ACT_LEAKY } Activation;
#define LEAKY_SLOPE 0.1f

/* Kind-specific configuration. */
typedef struct {
    float rate; /* fraction of units dropped */
} DropoutCfg;
typedef struct {
    float scale, offset; /* y = x * scale + offset */
} RescaleCfg;
typedef struct {
    int horizontal, vertical;
} FlipCfg;
typedef struct {
    float lo, hi; /* rotation range as fractions of 2*pi */
} RotationCfg;
typedef struct {
    float h_lo, h_hi, w_lo, w_hi; /* zoom ranges; negative zooms in (Keras convention) */
} ZoomCfg;
/* Keras's imagenet_utils.preprocess_input on RGB pixels in 0..255, as
 * y[c] = (x[src[c]] / div - mean[c]) / std[c] in Keras's order of operations. */
typedef enum { PREPROCESS_CAFFE, PREPROCESS_TF, PREPROCESS_TORCH } PreprocessMode;
typedef struct {
    PreprocessMode mode;
    int src[3]; /* input channel of each output channel: caffe swaps RGB to BGR */
    float div, mean[3], std[3];
} PreprocessCfg;

/* BatchNormalization over the last axis (Keras defaults: momentum 0.99, epsilon 1e-3, center and
 * scale on). */
typedef struct {
    float momentum, epsilon;
    int center, scale;
} BatchNormCfg;

/* Most inputs a layer may read (Keras's functional API: `inputs = a, b`). */
#define LAYER_MAX_INPUTS 8
/* Most parameter tensors a layer has (SeparableConv2D: depthwise_kernel, pointwise_kernel, bias;
 * BatchNormalization: gamma, beta, moving_mean, moving_variance). */
#define LAYER_MAX_PARAMS 4

/* A parameter tensor's role: a weight (trained when the layer is trainable; the optimizer and the
 * gradient allreduce cover it) or state (BatchNormalization's moving statistics: saved and loaded
 * with the weights, never given a gradient; Keras's "non-trainable" weights). */
typedef enum { PARAM_WEIGHT, PARAM_STATE } ParamRole;

/* One named parameter tensor of a layer, in Keras's order, name and shape, so that importers,
 * exporters, weights files, the summary and the optimizer treat every kind alike. */
typedef struct {
    const char *name; /* Keras's weight name: "kernel", "bias", "gamma", "moving_mean", ... */
    ParamRole role;
    int rank;
    int dims[4]; /* Keras's shape: Conv2D kernel (KH, KW, C, OC), Dense kernel (IN, UNITS) */
    size_t n;    /* floats */
    size_t off;  /* where it starts in Model.params (set by model_plan) */
} LayerParam;

/* Layer.inputs[k]: the index of the producing layer, or LAYER_INPUT for the model's input. */
#define LAYER_INPUT (-1)

typedef struct Layer {
    LayerKind kind;
    char name[48];    /* Keras-style instance name: conv2d, conv2d_1, ... */
    const char *file; /* job file (or included file) of the layer's section, owned by the job's
                       * IniFile; NULL when unknown */
    int line;         /* line of the layer's section header in that file */

    /* the graph: the layers whose outputs this one reads, in order; n_inputs = 0 means the
     * previous layer (the model's input for the first), as in a Sequential model */
    int n_inputs;
    int inputs[LAYER_MAX_INPUTS];

    /* configuration shared by several kinds */
    int units;          /* Conv2D filters (OC), Dense units */
    int kh, kw, sh, sw; /* Conv2D kernel / MaxPooling2D pool window, and strides */
    Padding padding;
    Activation act;
    int use_bias;
    int trainable;
    ConvAlgoId conv_algo;    /* Conv2D: the algorithm asked for (the job's layers); in the model's
                           * copy, the one that runs (model_plan, model_tune_algorithms) */
    int conv_algo_strict;    /* the layer's own `algorithm` key: no fallback when it cannot run */
    int mixed_bf16;          /* Conv2D, SeparableConv2D: [train] precision = mixed_bfloat16 */
    ConvPrecision conv_prec; /* POLICY, or what `auto` chose (the model's copy) */
    int act_fused; /* set by model_plan on the output layer: its sigmoid/softmax is applied by the
                    * loss (or predict), so forward outputs logits */
    union {
        DropoutCfg dropout;
        RescaleCfg rescale;
        FlipCfg flip;
        RotationCfg rotation;
        ZoomCfg zoom;
        PreprocessCfg pre;
        BatchNormCfg bn;
    } u;

    /* plan, filled by the kind's plan() and model_plan() */
    Shape in, out; /* in: of inputs[0]; in_shapes: of each input (in_shapes[0] == in) */
    Shape in_shapes[LAYER_MAX_INPUTS];
    int pad_top, pad_left; /* implicit zero padding before the first row/column */
    /* parameter tensors, declared by plan() with layer_param_add: the layer's weights lie
     * contiguous at Model.params + param_off in this order, its state after every layer's
     * weights (Model.state_lo) */
    int n_param;
    LayerParam param[LAYER_MAX_PARAMS];
    size_t param_off;      /* first weight in the parameter buffer */
    size_t aux_per_sample; /* bytes of forward state per sample kept for backward */
    size_t aux_off;        /* offset into the model's aux arena */
    size_t ws_per_sample;  /* workspace floats per sample of the batch */
    size_t ws_fixed;       /* workspace floats needed whatever the batch (after the above) */
    int max_batch;         /* samples per call at most (set by model_plan before plan()) */
    TensorFormat in_fmt;   /* layout the layer reads: model_plan offers the producer's, a
                               * kind with LayerOps.own_layout may keep it or ask for NHWC */
    TensorFormat out_fmt;  /* layout the layer writes */
    int out_read_as_nhwc;  /* a reader reads the output as NHWC only (an NHWC-only kind, or
                               * one through a LAYER_F_SAME_LAYOUT kind), set by model_plan
                               * before plan(): a convolution may then write NHWC itself */
    struct ConvPlan *conv; /* Conv2D: the planned algorithm (owned; LayerOps.release frees) */
} Layer;

/* What a forward or backward call may touch besides its input and output. */
/* A sum over every rank's samples (SyncBatchNorm): buf[0..n) is replaced by the sum of all
 * ranks' buf. */
typedef void (*LayerAllreduce)(void *arg, double *buf, int n);

typedef struct {
    /* The layer's parameter tensors in L->param order: p[i] the values, dp[i] the gradient to ADD
     * into (NULL for state and when the layer is frozen), st[i] writable state (NULL for a
     * weight). w, b, dw, db alias p[0], p[1], dp[0], dp[1] for kernel-and-bias kinds (NULL when
     * absent). */
    const float *p[LAYER_MAX_PARAMS];
    float *dp[LAYER_MAX_PARAMS];
    float *st[LAYER_MAX_PARAMS];
    const float *w, *b;
    float *dw, *db;
    /* Sums across ranks for kinds with LAYER_F_COLLECTIVE; NULL: one process, sums are local. */
    LayerAllreduce allreduce;
    void *allreduce_arg;
    void *aux;     /* N * aux_per_sample bytes, written by forward, read by backward */
    float *ws;     /* N * ws_per_sample + ws_fixed floats of scratch */
    int training;  /* dropout and augmentation act only when set */
    uint64_t seed; /* job seed, for keyed RNG streams */
    int epoch;
    int layer_index;
    const int64_t *sample_ids; /* global index of each of the N samples, for keyed RNG */
    double *prof_weights;      /* profiling: seconds of the weight-gradient part of backward are
                           * added here (NULL when off) */
    /* Every input and its gradient, for kinds with several (Add): ins[k] (N, in_shapes[k]),
     * dins[k] to overwrite, NULL where no gradient is needed. forward/backward's in and din
     * are ins[0] and dins[0]. */
    const float *const *ins;
    float *const *dins;
    int n_ins;
} LayerCtx;

struct Section;
struct IniFile;

/* How export_onnx writes a kind (LayerOps.onnx): the translations src/formats/export_onnx.c
 * knows. A kind that leaves it unset (0) makes the export refuse the model, naming the layer. */
typedef enum {
    LAYER_ONNX_UNSET,          /* no translation */
    LAYER_ONNX_IDENTITY,       /* left out: the identity at inference (Dropout, augmentation) */
    LAYER_ONNX_CONV,           /* Conv (+ the activation) */
    LAYER_ONNX_DEPTHWISE,      /* Conv with group = C (+ the activation) */
    LAYER_ONNX_SEPARABLE,      /* depthwise Conv, 1x1 Conv (+ the activation) */
    LAYER_ONNX_BATCHNORM,      /* BatchNormalization with the moving statistics */
    LAYER_ONNX_ACTIVATION,     /* the layer's activation alone */
    LAYER_ONNX_ADD,            /* Add of every input */
    LAYER_ONNX_MAXPOOL,        /* MaxPool */
    LAYER_ONNX_GLOBAL_AVGPOOL, /* GlobalAveragePool + Flatten */
    LAYER_ONNX_FLATTEN,        /* Transpose back to NHWC + Flatten */
    LAYER_ONNX_DENSE,          /* Gemm (+ the activation) */
    LAYER_ONNX_RESCALING,      /* Mul + Add */
    LAYER_ONNX_PREPROCESS,     /* a 1x1 Conv: the channel swap and the per-channel affine map */
    LAYER_ONNX_COUNT
} LayerOnnx;

/* A kind's operations and what the generic code (model, graph, trainer, importers, exporters,
 * summary) asks of it. Written with designated initialisers (.section = ..., .plan = ...);
 * tests/test_kinds.c checks that every kind has the required ones (docs/adding-a-layer-kind.md). */
typedef struct {
    const char *section;    /* job-file section name: "conv2d" */
    const char *keras_name; /* for the summary and messages: "Conv2D" */
    /* Keras 3's key of the layer in .weights.h5 files (layers/<key>/vars): the class name in
     * snake case, numbered in layer order (conv2d, conv2d_1, ...) by keras3_layer_keys. NULL
     * only with LAYER_F_NO_KERAS. */
    const char *keras3_key;
    /* The ONNX translation (LAYER_ONNX_*; required). */
    LayerOnnx onnx;
    /* Read the kind's keys from its section (defaults as Keras). 0 or -1 with e set. */
    int (*configure)(Layer *L, struct IniFile *ini, struct Section *sec, Err *e);
    /* Given L->in, set L->out and the parameter/aux/workspace sizes; 0 or -1 with e set. */
    int (*plan)(Layer *L, Err *e);
    /* Initialise the parameter tensors p[i] (L->param order), as Keras's default initialisers
     * do (NULL for kinds without parameters). */
    void (*init)(const Layer *L, float *const *p, Rng *rng);
    /* out: (N, out), in: (N, in) */
    void (*forward)(const Layer *L, const LayerCtx *c, float *out, const float *in, int N);
    /* din: (N, in) overwritten, or NULL when no input gradient is needed;
     * dout: (N, out), may be modified in place; in/out: the forward's tensors. */
    void (*backward)(const Layer *L, const LayerCtx *c, float *din, float *dout, const float *in,
                     const float *out, int N);
    /* Free what plan() built (NULL: nothing). */
    void (*release)(Layer *L);
    /* 1: plan() chooses in_fmt/out_fmt itself (it may read nChw16c); 0: NHWC in and out. */
    int own_layout;
    /* What the kind is, for the trainer, the feature cache and the importers (LAYER_F_*). */
    unsigned flags;
    /* What backward() reads of the forward's tensors (LAYER_READS_*; NULL: both): what no
     * backward reads dies with the last forward step that reads it (graph.c). */
    unsigned (*backward_reads)(const Layer *L);
    /* Whether L's training forward differs from its inference forward (NULL: the kind's
     * LAYER_F_RANDOM flag; Dropout: only with a rate above 0). */
    int (*is_random)(const Layer *L);
} LayerOps;

/* LayerOps.backward_reads */
enum { LAYER_READS_INPUT = 1u << 0, LAYER_READS_OUTPUT = 1u << 1 };

/* LayerOps.flags */
enum {
    LAYER_F_RANDOM = 1u << 0,      /* random in training (dropout, augmentation): keyed streams */
    LAYER_F_AUGMENT = 1u << 1,     /* image augmentation: must come before every weight */
    LAYER_F_BATCH = 1u << 2,       /* training output depends on the whole batch (BN) */
    LAYER_F_STATE = 1u << 3,       /* has state updated by training forwards (BN moving stats) */
    LAYER_F_COLLECTIVE = 1u << 4,  /* its training forward/backward needs LayerCtx.allreduce */
    LAYER_F_MULTI_INPUT = 1u << 5, /* reads several inputs (Add) */
    LAYER_F_SAME_LAYOUT = 1u << 6, /* writes the layout it reads (MaxPooling2D) */
    LAYER_F_NO_KERAS = 1u << 7,    /* no Keras layer ([preprocess], a function in Keras): no
                                    * keras3_key, left out of Keras weights files */
};

/* The layer's training forward differs from its inference forward (dropout with rate 0 is the
 * identity: not random). */
int layer_is_random(const Layer *L);

/* What L's backward reads of the forward's tensors: its kind's LayerOps.backward_reads, or
 * both (LAYER_READS_INPUT | LAYER_READS_OUTPUT) for a kind that does not say. */
unsigned layer_backward_reads(const Layer *L);

/* Declare parameter tensor `name` of L (plan() calls it, in Keras's order); rank dims. */
void layer_param_add(Layer *L, const char *name, ParamRole role, int rank, int d0, int d1, int d2,
                     int d3);
/* Floats of L's weights (every PARAM_WEIGHT tensor), of its state. */
size_t layer_n_weights(const Layer *L);
size_t layer_n_state(const Layer *L);
/* Index of the tensor named name, -1 when none. */
int layer_param_find(const Layer *L, const char *name);

/* The operations of kind k: layer_ops[k], k < LAYER_KIND_COUNT (src/layers/layers.c; each
 * kind's entry is defined in its own source file). */
extern const LayerOps *const layer_ops[];

/* The activation a layer's forward applies itself (linear when the loss applies it). */
static inline Activation layer_act(const Layer *L) { return L->act_fused ? ACT_LINEAR : L->act; }

/* "FILE:LINE" of the layer's section for messages ("line N" when its file is unknown). */
const char *layer_where(const Layer *L, char *buf, size_t n);

/* Lookup by job-file section name; -1 when none. */
int layer_kind_from_section(const char *section);

/* Shared helpers for layers with an activation, over n values in one parallel pass: out =
 * act(in), and din = dout * act'(y) given the activated output y. out may be in and din may be
 * dout (in place). Softmax is handled by the loss: here it is the identity, like linear. */
void activation_forward(Activation a, float *out, const float *in, size_t n);
void activation_backward(Activation a, float *din, const float *dout, const float *y, size_t n);
const char *activation_name(Activation a);

/* Glorot-uniform fill: U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)). */
void init_glorot_uniform(float *w, size_t n, int fan_in, int fan_out, Rng *rng);

#endif
