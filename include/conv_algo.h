/* conv_algo.h: the kernel seam of Conv2D. A convolution algorithm (im2col + OpenBLAS, oneDNN
 * direct, oneDNN Winograd) is chosen per layer at plan time and then runs behind one interface:
 *
 *   plan              check the shape, size the forward state (aux, kept from the forward to
 *                     the backward) and the scratch workspace, choose the layouts, and build
 *                     whatever the backend needs (oneDNN primitives) - before any step;
 *   forward           out = act(conv(in, w) + b);
 *   backward_weights  dw += conv_w(in, dout), db += sum(dout);
 *   backward_data     din = conv_d(dout, w) (overwritten).
 *
 * The layer applies the activation's derivative to dout before the two backward calls, and calls
 * backward_weights before backward_data (im2col's backward_data reuses the forward's column
 * matrix as its scratch). Weights are always Keras's (KH, KW, C, OC) order in the parameter
 * buffer; a backend that wants another layout keeps its own copy in aux, refreshed every forward,
 * so weights files, checkpoints and the optimizer never see it.
 *
 * Tensor layouts (TensorFormat): NHWC, or oneDNN's nChw16c (channels in blocks of 16, the last
 * block zero-padded: (N, ceil(C/16), H, W, 16)). The model reorders between layers only where a
 * consumer cannot read its producer's layout (src/layout.c).
 *
 * Precision (docs/mixed-precision.md): ConvDesc.bf16 asks for bfloat16 arithmetic. Only an
 * algorithm with ConvAlgo.bf16 (oneDNN's direct) offers it, and only on a CPU whose oneDNN ISA
 * has bfloat16 units (conv_dnnl_bf16_unsupported). The interface stays float32 (inputs,
 * outputs, weights, gradients): the plan's reorders into the primitives' layouts are the casts,
 * and the forward keeps its bfloat16 copy of the input for backward-weights.
 *
 * All of oneDNN lives in src/conv_dnnl.c, so a move to oneDNN 3.x touches one file.
 */
#ifndef CONVNET_CONV_ALGO_H
#define CONVNET_CONV_ALGO_H

#include <stddef.h>

#include "common.h"
#include "kernels.h"

/* TensorFormat, format_floats and ConvAlgoId are in layer.h. */
const char *format_name(TensorFormat f);

/* Job-file names, in ConvAlgoId order: "im2col", "direct", "winograd". */
const char *conv_algo_name(ConvAlgoId id);

/* What the layer asks for; g.N is the largest batch a call will get. */
typedef struct ConvDesc {
    WinGeom g;
    Activation act; /* applied by forward (linear when the loss applies it) */
    int has_bias;
    TensorFormat in_fmt;  /* the layout the producer writes; plan may ask for NHWC instead */
    int out_read_as_nhwc; /* Layer.out_read_as_nhwc: NHWC output saves the reader a reorder */
    int bf16;             /* compute in bfloat16 (ConvAlgo.bf16 only): 1 in the layouts oneDNN
                           * picks (blocked), 2 channels-last (NHWC) in and out; for
                           * conv_algo_time_all, nonzero: time both bfloat16 variants too */
} ConvDesc;

struct ConvAlgo;

typedef struct ConvPlan {
    const struct ConvAlgo *algo;
    ConvDesc asked;       /* the request as conv_plan_init got it (auto times candidates on it) */
    ConvDesc d;           /* d.in_fmt: the layout this algorithm reads (set by plan) */
    TensorFormat out_fmt; /* the layout forward writes */
    size_t aux_bytes;     /* forward state for a batch of d.g.N, kept until the backward */
    size_t ws_bytes;      /* scratch during one call */
    int full_batch;       /* forward and backward always compute d.g.N samples (oneDNN's
                           * primitives are built for one batch size): the layer zeroes dout
                           * beyond N, so the extra samples add nothing to dw and db */
    int keeps_input;      /* the backward passes never read the forward's `in`: the plan keeps
                           * what they need (a reordered copy) in aux, so the layer may let
                           * `in` die after the forward */
    char impl[160];       /* the backend's implementation names, for the summary */
    void *state;          /* backend-owned (oneDNN primitives) */
} ConvPlan;

typedef struct ConvAlgo {
    const char *name;
    /* 0 with p filled in, or -1 (e set) when the algorithm cannot run this convolution here. */
    int (*plan)(ConvPlan *p, Err *e);
    void (*free)(ConvPlan *p);
    /* out (N, OH, OW, OC) in p->out_fmt; in (N, H, W, C) in p->d.in_fmt */
    void (*forward)(ConvPlan *p, float *out, const float *in, const float *w, const float *b,
                    void *aux, void *ws, int N);
    /* dout: gradient of the pre-activation output (the layer applied act'); dw, db ADDED to
     * (either may be NULL) */
    void (*backward_weights)(ConvPlan *p, float *dw, float *db, const float *dout, const float *in,
                             void *aux, void *ws, int N);
    /* din overwritten */
    void (*backward_data)(ConvPlan *p, float *din, const float *dout, const float *w, void *aux,
                          void *ws, int N);
    /* NULL when this CPU can run the algorithm, else why not (the backend lacks kernels for its
     * ISA); a NULL hook: any CPU. */
    const char *(*unsupported)(void);
    int bf16; /* plans ConvDesc.bf16 (where conv_dnnl_bf16_unsupported allows) */
} ConvAlgo;

/* The implementations; NULL where this build lacks the backend (ONEDNN=0). */
extern const ConvAlgo conv_algo_im2col;
const ConvAlgo *conv_algo_get(ConvAlgoId id);
/* NULL when this build and this CPU can run algorithm id (for the shapes it supports), else why
 * not, in words (no oneDNN in the build; no kernels for this CPU's ISA). */
const char *conv_algo_unsupported(ConvAlgoId id);

/* Floats of a convolution's kernel, (KH, KW, C, OC) in Keras's HWIO order, bias not included. */
static inline size_t conv_kernel_floats(const WinGeom *g) {
    return (size_t)g->KH * g->KW * g->C * g->OC;
}

/* Plan p for algorithm id (not AUTO); 0 or -1 with e set. */
int conv_plan_init(ConvPlan *p, ConvAlgoId id, const ConvDesc *d, Err *e);
void conv_plan_free(ConvPlan *p);

/* `auto`'s timing: sec[b][id] (b = ConvDesc.bf16's values: 0 float32, 1 and 2 the bfloat16
 * variants, timed only where d->bf16 asks), the seconds of one forward + backward_weights + backward_data
 * (forward_only: the forward alone) of algorithm id at the plan's batch size, on buffers
 * allocated and freed here, or < 0 where it cannot plan d. The median of `reps` alternating
 * rounds, each timing every candidate once, after one warm-up each, so that a noisy stretch of
 * a shared machine slows all candidates alike instead of deciding for one. Candidates within a
 * few percent (the MNIST model's first layer: im2col 2.5 ms, direct 2.7 ms) may still swap
 * between runs; the timing sees the layer alone, not the reorders its layouts cost. */
#define CONV_TUNE_ROUNDS 7
#define CONV_BF16_VARIANTS 3 /* ConvDesc.bf16's values */
void conv_algo_time_all(const ConvDesc *d, int reps, int forward_only,
                        double sec[CONV_BF16_VARIANTS][CONV_ALGO_COUNT]);
/* conv_algorithm = auto: the fastest algorithm and precision on d by conv_algo_time_all
 * (forward + both backward passes, or the forward alone for a frozen layer; bfloat16 a
 * candidate where d->bf16); the default when none could be timed. Called by
 * model_tune_algorithms, after planning. */
ConvChoice conv_algo_tune(const ConvDesc *d, int forward_only);

/* The ISA oneDNN runs ("avx512_core", ...), or "none" without oneDNN. */
const char *conv_dnnl_isa(void);
/* NULL when oneDNN's ISA here has bfloat16 units (avx512_core_bf16, AMX), else why not, in
 * words naming the ISA: mixed_bfloat16 then runs float32, never oneDNN's emulation. */
const char *conv_dnnl_bf16_unsupported(void);
/* oneDNN's algorithm id (direct, winograd), for conv_algo_get; NULL for the others and in a
 * build without oneDNN (ONEDNN=0 compiles src/kernels/conv_dnnl_none.c instead of conv_dnnl.c). */
const ConvAlgo *conv_dnnl_algo(ConvAlgoId id);

#endif
