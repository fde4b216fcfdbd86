/* optim.h: RMSprop, Adam and SGD (momentum, Nesterov) with Keras's formulas and defaults, as
 * flat loops over the trainable parameter range. */
#ifndef CONVNET_OPTIM_H
#define CONVNET_OPTIM_H

#include <stddef.h>

typedef enum { OPT_RMSPROP, OPT_ADAM, OPT_SGD } OptKind;

typedef struct {
    OptKind kind;
    float lr;
    float rho;                /* RMSprop decay (0.9) */
    float momentum;           /* RMSprop/SGD momentum (0) */
    float beta1, beta2;       /* Adam (0.9, 0.999) */
    float epsilon;            /* 1e-7 (Keras) */
    int nesterov;             /* SGD */
    int epsilon_outside_sqrt; /* RMSprop: g / (sqrt(v) + eps), tf.keras <= 2.10 (optimizer_v2,
                               * the book's TF 2.6) without momentum; 0: g / sqrt(v + eps),
                               * Keras 3 and tf.keras >= 2.11 (the default) */
} OptConfig;

typedef struct {
    OptConfig cfg;
    size_t n;        /* parameters covered: every parameter of the model, so that the state
                      * keeps its size (and checkpoint layout) when a fine-tuning phase moves
                      * the trainable range; frozen parameters' state stays zero */
    float *s1, *s2;  /* per-parameter state (velocity / moments), n each */
    long iterations; /* steps taken (Adam bias correction) */
} Optimizer;

void optim_init(Optimizer *o, const OptConfig *cfg, size_t n);
void optim_reset(Optimizer *o); /* zero state and step count (a new fine-tuning phase) */
void optim_free(Optimizer *o);
/* One update of params[lo..n) from grads[lo..n) (state index i matches params[i]); below lo
 * the parameters are frozen. */
void optim_step(Optimizer *o, float *params, const float *grads, size_t lo);

#endif
