/* layerref.h: one test case per layer kind for tests/test_kinds.c: the kind's job-file section,
 * an input, and a naive reference of its forward written here, independently of src/layers/.
 * A kind without a case (ref NULL) fails test_kinds: a new kind adds its case in layerref.c. */
#ifndef CONVNET_TEST_LAYERREF_H
#define CONVNET_TEST_LAYERREF_H

#include "layerfix.h"

typedef struct {
    const char *section; /* the job-file text of the layer: "[conv2d]\nfilters = 3\n..." */
    Shape in;            /* per-sample input (of every input, for several) */
    int N;               /* samples */
    int n_inputs;        /* 0 or 1: one input; 2: two (Add) */
    int training;        /* forward checked and differenced in a training pass (BN, Dropout) */
    int ref_training;    /* the reference is of a training pass (else inference) */
    int distinct_input;  /* inputs 0.05 apart (pooling: differencing never moves a maximum) */
    int no_gradient;     /* no input gradient by design: only with LAYER_F_AUGMENT */
    double tol;          /* largest |forward - reference| */
    double grad_tol;     /* finite differences: relative error, and step */
    float eps;
    /* ref (N, out) NHWC = the kind's forward of f's inputs and parameters */
    void (*ref)(const Fixture *f, float *ref);
} KindCase;

/* The case of kind k (ref NULL when it has none). */
const KindCase *layerref_case(LayerKind k);

/* References the older layer tests share: Conv2D (bias, activation, TF's padding rule) and the
 * depthwise convolution into mid (N, OH, OW, C) in double, without bias. */
void layerref_conv(const Fixture *f, float *ref);
void layerref_depthwise(const Layer *L, const float *in, const float *w, int N, double *mid);

#endif
