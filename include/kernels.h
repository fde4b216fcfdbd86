/* kernels.h: the numerical kernels behind the layers, one forward/backward pair per kind.
 *
 * Outputs first, inputs const. Backward functions ADD into weight and bias gradients
 * (model_zero_grad() clears them once per step) and OVERWRITE the input gradient; a NULL
 * din skips the input gradient (the lowest trainable layer needs none). All tensors NHWC.
 */
#ifndef CONVNET_KERNELS_H
#define CONVNET_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "layer.h"

/* Geometry of a 2-D window op (convolution or pooling) over a batch. */
typedef struct {
    int N, H, W, C; /* input (N, H, W, C) */
    int OH, OW, OC; /* output (N, OH, OW, OC); OC = C for pooling */
    int KH, KW;     /* window */
    int SH, SW;     /* strides */
    int PT, PL;     /* implicit zero padding at top and left (bottom/right implied) */
    int T;          /* conv2d_backward: threads the partial-gradient scratch has room for */
} WinGeom;

/* The in-bounds taps of the window at output (oh, ow): rows kh in [kh0, kh1) read input row
 * ih0 + kh, columns kw in [kw0, kw1) read input column iw0 + kw. Padding taps are left out, so
 * the window loops need no per-tap bounds test. */
typedef struct {
    int kh0, kh1, kw0, kw1; /* tap ranges */
    int ih0, iw0;           /* input row and column of tap (0, 0), may be negative */
} WinTaps;

static inline WinTaps win_taps(const WinGeom *g, int oh, int ow) {
    WinTaps t;
    t.ih0 = oh * g->SH - g->PT;
    t.iw0 = ow * g->SW - g->PL;
    t.kh0 = t.ih0 < 0 ? -t.ih0 : 0;
    t.kh1 = g->H - t.ih0 < g->KH ? g->H - t.ih0 : g->KH;
    t.kw0 = t.iw0 < 0 ? -t.iw0 : 0;
    t.kw1 = g->W - t.iw0 < g->KW ? g->W - t.iw0 : g->KW;
    return t;
}

/* Single-threaded activation helpers for kernels that parallelise themselves:
 * y = act(y); dy *= act'(y) given the activated y (linear: nothing; softmax: the loss's). */
void activation_apply(Activation a, float *y, size_t n);
void activation_derivative(Activation a, float *dy, const float *y, size_t n);

/* Conv2D: out (N,OH,OW,OC) = act(im2col(in) (N*OH*OW, KH*KW*C) x w (KH*KW*C, OC) + b).
 * col: N*OH*OW*KH*KW*C floats that receive im2col(in) and must be handed unchanged to the
 * backward (unused for 1x1 stride-1 unpadded convolutions). */
void conv2d_forward(float *out, const float *in, const float *w, const float *b, Activation act,
                    float *col, const WinGeom *g);
/* dout (N,OH,OW,OC): the gradient of the activated output out; the activation's derivative is
 * applied to it in place. col: the forward's, overwritten here. partial: scratch of
 * g->T * (KH*KW*C*OC + OC) floats. */
void conv2d_backward(float *din, float *dw, float *db, float *dout, const float *out,
                     Activation act, const float *in, const float *w, float *col, float *partial,
                     const WinGeom *g);

/* Dense: out (N, U) = in (N, IN) x w (IN, U) + b. */
void dense_forward(float *out, const float *in, const float *w, const float *b, int N, int IN,
                   int U);
void dense_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                    const float *w, int N, int IN, int U);

/* MaxPooling2D; padding (same) never wins, ties go to the first tap in row-major order. Where
 * maxpool2d_keeps_argmax (2x2 windows at stride 2), the forward records in argmax (N,OH,OW,C)
 * each output's source index within its sample and the backward scatters through it; other
 * windows leave argmax alone (it may be NULL) and the backward finds the taps again from in
 * and out, the forward's tensors. */
int maxpool2d_keeps_argmax(const WinGeom *g);
void maxpool2d_forward(float *out, int32_t *argmax, const float *in, const WinGeom *g);
void maxpool2d_backward(float *din, const float *dout, const int32_t *argmax, const float *in,
                        const float *out, const WinGeom *g);

/* dst (N, s) in layout df = src (N, s) in layout sf (NHWC <-> nChw16c, or a copy). */
void layout_reorder(float *dst, TensorFormat df, const float *src, TensorFormat sf, int N, Shape s);
/* dst (N, s) in layout df += src (N, s) in layout sf. */
void layout_reorder_add(float *dst, TensorFormat df, const float *src, TensorFormat sf, int N,
                        Shape s);

/* Depthwise convolution (src/depthwise.c), NHWC, kernel (KH, KW, C), g->OC == g->C:
 * out overwritten; din overwritten and dw ADDED to (either NULL), with part holding
 * N * KH * KW * C floats of scratch. */
void depthwise_forward(float *out, const float *in, const float *w, const WinGeom *g);
void depthwise_backward(float *din, float *dw, float *part, const float *dout, const float *in,
                        const float *w, const WinGeom *g);

/* bias column sums: db (U) += sum over rows of d (rows, U) */
void bias_grad_add(float *db, const float *d, long rows, int U);

#endif
