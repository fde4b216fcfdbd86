/* layerfix.h: one layer with its buffers, planned for N samples, for the layer tests
 * (test_layers.c, test_layers_graph.c): forward, backward against loss = sum(out * r), and a
 * central-difference check of the input gradient and of every weight tensor's gradient. */
#ifndef CONVNET_TEST_LAYERFIX_H
#define CONVNET_TEST_LAYERFIX_H

#include "layer.h"

typedef struct {
    Layer L;
    int N;
    float *in, *out, *din, *dout, *ws, *r;
    /* every input and its gradient: ins[0] = in, dins[0] = din; more for a layer with
     * L.n_inputs > 1 (Add), each of in's shape */
    int n_ins;
    float *ins[LAYER_MAX_INPUTS], *dins[LAYER_MAX_INPUTS];
    float *p[LAYER_MAX_PARAMS], *dp[LAYER_MAX_PARAMS]; /* L.param order */
    float *w, *b;   /* p[0], p[1], or a zero buffer where the layer has fewer tensors */
    float *dw, *db; /* likewise dp[0], dp[1] */
    unsigned char *aux;
    int training;
    int64_t ids[16];
    LayerAllreduce allreduce;
    void *allreduce_arg;
} Fixture;

/* A layer of a windowed kind (Conv2D, DepthwiseConv2D, SeparableConv2D): units filters, k x k,
 * stride s, bias on, trainable. */
Layer layerfix_window_layer(LayerKind kind, int units, int k, int s, Padding p, Activation a);
void fixture_init(Fixture *f, Layer L, Shape in, int N);
void fixture_free(Fixture *f);
LayerCtx fixture_ctx(Fixture *f);
void fixture_forward(Fixture *f);
double fixture_loss(void *ctx);
void fixture_backward(Fixture *f);
/* Every input and every weight tensor (not state) by central differences, relative error <
 * tol. */
void check_gradients(Fixture *f, double tol, float eps);

#endif
