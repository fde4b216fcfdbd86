/* optim.h: RMSprop, Adam and SGD (momentum, Nesterov) with Keras's formulas and defaults, as
 * flat loops over the trainable parameter range. */
#ifndef CONVNET_OPTIM_H
#define CONVNET_OPTIM_H

#include <stddef.h>

typedef enum { OPT_RMSPROP, OPT_ADAM, OPT_SGD } OptKind;

typedef struct {
    OptKind kind;
    float lr;
    float rho;      /* RMSprop decay (0.9) */
    float momentum; /* RMSprop/SGD momentum (0) */
    float beta1, beta2; /* Adam (0.9, 0.999) */
    float epsilon;  /* 1e-7 (Keras) */
    int nesterov;   /* SGD */
} OptConfig;

typedef struct {
    OptConfig cfg;
    size_t n;        /* parameters covered */
    float *s1, *s2;  /* per-parameter state (velocity / moments), n each */
    long iterations; /* steps taken (Adam bias correction) */
} Optimizer;

void optim_init(Optimizer *o, const OptConfig *cfg, size_t n);
void optim_reset(Optimizer *o); /* zero state and step count (a new fine-tuning phase) */
void optim_free(Optimizer *o);
/* One update of params[0..n) from grads[0..n) (state index i matches params[i]). */
void optim_step(Optimizer *o, float *params, const float *grads);

#endif
