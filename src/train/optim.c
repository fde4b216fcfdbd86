/* optim.c: Keras optimizer updates (keras/src/optimizers/{rmsprop,adam,sgd}.py):
 *   RMSprop: v = rho v + (1-rho) g^2;  p -= lr g / sqrt(v + eps)   (eps inside the root)
 *            with momentum m: m = momentum m + lr g / sqrt(v + eps); p -= m
 *            epsilon_placement = outside_sqrt: lr g / (sqrt(v) + eps) instead, as tf.keras's
 *            optimizer_v2 RMSprop (TF <= 2.10, the book's TF 2.6) computes it without momentum.
 *            The two differ where sqrt(v) is near sqrt(eps) = 3.2e-4: there the root's floor
 *            damps the steps of parameters with small gradients by up to sqrt(eps) / sqrt(v).
 *   Adam:    m += (g - m)(1-b1); v += (g^2 - v)(1-b2);
 *            p -= lr sqrt(1-b2^t)/(1-b1^t) m / (sqrt(v) + eps)
 *   SGD:     m = momentum m - lr g; p += m  (Nesterov: p += momentum m - lr g); plain p -= lr g
 */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

void optim_init(Optimizer *o, const OptConfig *cfg, size_t n) {
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
    o->n = n;
    o->s1 = xcalloc(n ? n : 1, sizeof(float));
    o->s2 = xcalloc(n ? n : 1, sizeof(float));
}

void optim_reset(Optimizer *o) {
    memset(o->s1, 0, o->n * sizeof(float));
    memset(o->s2, 0, o->n * sizeof(float));
    o->iterations = 0;
}

void optim_free(Optimizer *o) {
    free(o->s1);
    free(o->s2);
    memset(o, 0, sizeof *o);
}

void optim_step(Optimizer *o, float *p, const float *g, size_t lo) {
    const OptConfig *c = &o->cfg;
    const size_t n = o->n;
    float *s1 = o->s1, *s2 = o->s2;
    o->iterations++;
    switch (c->kind) {
    case OPT_RMSPROP: {
        const float rho = c->rho, lr = c->lr, eps = c->epsilon, mom = c->momentum;
        if (mom > 0) {
#pragma omp parallel for simd schedule(static)
            for (size_t i = lo; i < n; i++) {
                s1[i] = rho * s1[i] + (1.0f - rho) * g[i] * g[i];
                s2[i] = mom * s2[i] + lr * g[i] / sqrtf(s1[i] + eps);
                p[i] -= s2[i];
            }
        } else if (c->epsilon_outside_sqrt) {
#pragma omp parallel for simd schedule(static)
            for (size_t i = lo; i < n; i++) {
                s1[i] = rho * s1[i] + (1.0f - rho) * g[i] * g[i];
                p[i] -= lr * g[i] / (sqrtf(s1[i]) + eps);
            }
        } else {
#pragma omp parallel for simd schedule(static)
            for (size_t i = lo; i < n; i++) {
                s1[i] = rho * s1[i] + (1.0f - rho) * g[i] * g[i];
                p[i] -= lr * g[i] / sqrtf(s1[i] + eps);
            }
        }
        break;
    }
    case OPT_ADAM: {
        const double t = (double)o->iterations;
        const float b1 = c->beta1, b2 = c->beta2, eps = c->epsilon;
        const float alpha = (float)(c->lr * sqrt(1.0 - pow(c->beta2, t)) /
                                    (1.0 - pow(c->beta1, t)));
#pragma omp parallel for simd schedule(static)
        for (size_t i = lo; i < n; i++) {
            s1[i] += (g[i] - s1[i]) * (1.0f - b1);
            s2[i] += (g[i] * g[i] - s2[i]) * (1.0f - b2);
            p[i] -= alpha * s1[i] / (sqrtf(s2[i]) + eps);
        }
        break;
    }
    case OPT_SGD: {
        const float lr = c->lr, mom = c->momentum;
        if (mom == 0) {
#pragma omp parallel for simd schedule(static)
            for (size_t i = lo; i < n; i++) p[i] -= lr * g[i];
        } else if (c->nesterov) {
#pragma omp parallel for simd schedule(static)
            for (size_t i = lo; i < n; i++) {
                s1[i] = mom * s1[i] - lr * g[i];
                p[i] += mom * s1[i] - lr * g[i];
            }
        } else {
#pragma omp parallel for simd schedule(static)
            for (size_t i = lo; i < n; i++) {
                s1[i] = mom * s1[i] - lr * g[i];
                p[i] += s1[i];
            }
        }
        break;
    }
    }
}
