/* layer_impl.h: what the layer kinds share, private to src/layers/:
 * layer_common.c's keys, window planning and activation names, and conv2d.c's convolution glue
 * that the convolution kinds (Conv2D, SeparableConv2D) share. */
#ifndef CONVNET_LAYER_IMPL_H
#define CONVNET_LAYER_IMPL_H

#include "ini.h"
#include "kernels.h"
#include "layer.h"

/* The `activation` key's names, in Activation's order, NULL-terminated (layer_common.c). */
extern const char *const activation_names[];

/* `activation` (a required key when required) into L->act */
int layer_configure_activation(Layer *L, IniFile *ini, Section *s, int required, Err *e);
/* activation, use_bias, trainable */
int layer_configure_common(Layer *L, IniFile *ini, Section *s, Err *e);
/* window (kernel_size or pool_size), strides (default 1, or the window when
 * strides_default_is_window), padding */
int layer_configure_window(Layer *L, IniFile *ini, Section *s, const char *window_key,
                           int strides_default_is_window, Err *e);
/* Output shape and padding of a window op with out_c channels; -1 when it does not fit. */
int layer_plan_window(Layer *L, int out_c, Err *e);
WinGeom layer_window_geom(const Layer *L, int N);

/* The convolution kinds' `algorithm` key (src/conv2d.c). */
int layer_configure_algorithm(Layer *L, IniFile *ini, Section *s, Err *e);
struct ConvDesc;
/* L->conv = a plan of the convolution d with L->conv_algo (DEFAULT: direct where oneDNN is
 * built; AUTO: the same, model_tune_algorithms times it later; a [train]-wide choice falls back where it cannot run,
 * a layer's own does not); sets L->conv_algo to the one run. 0, or -1 with e set. */
int layer_conv_plan(Layer *L, const struct ConvDesc *d, Err *e);
/* Before a convolution layer's backward calls: dout *= act'(out), and, for a full-batch
 * algorithm, zero dout past the N samples so that they add nothing. */
void layer_conv_prepare_dout(const Layer *L, float *dout, const float *out, int N);
/* LayerOps.backward_reads helpers: LAYER_READS_OUTPUT when the layer's activation is not linear
 * (its derivative reads y); nothing (a backward from dout alone, or from aux); the input (a
 * weight gradient: Dense, the depthwise kernels) and what the activation reads. */
unsigned layer_act_reads(const Layer *L);
unsigned layer_reads_nothing(const Layer *L);
unsigned layer_reads_input_and_act(const Layer *L);

/* Frees L->conv. */
void conv2d_release(Layer *L);

#endif
