/* loss.c: sparse categorical and binary cross-entropy from logits, and accuracy. */
#include "loss.h"

#include <math.h>
#include <string.h>

void loss_softmax_xent(LossStats *st, float *dlogits, const float *logits, const int32_t *labels,
                       int N, int K, float grad_scale) {
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * K;
        float zmax = z[0];
        int arg = 0;
        for (int k = 1; k < K; k++)
            if (z[k] > zmax) {
                zmax = z[k];
                arg = k;
            }
        double sum = 0;
        for (int k = 0; k < K; k++) sum += exp((double)(z[k] - zmax));
        double log_sum = log(sum);
        int y = labels[n];
        st->loss_sum += log_sum - (double)(z[y] - zmax); /* -log softmax(z)[y] */
        st->correct += arg == y;
        if (dlogits) {
            float *d = dlogits + (size_t)n * K;
            for (int k = 0; k < K; k++) {
                double p = exp((double)(z[k] - zmax) - log_sum);
                d[k] = (float)(p - (k == y)) * grad_scale;
            }
        }
    }
}

void loss_sigmoid_bce(LossStats *st, float *dlogits, const float *logits, const int32_t *labels,
                      int N, float grad_scale) {
    for (int n = 0; n < N; n++) {
        double x = logits[n], y = labels[n];
        /* -[y log s(x) + (1-y) log(1-s(x))] = max(x,0) - x*y + log(1 + exp(-|x|)) */
        st->loss_sum += fmax(x, 0.0) - x * y + log1p(exp(-fabs(x)));
        st->correct += (x > 0) == (labels[n] == 1);
        if (dlogits) dlogits[n] = (float)(1.0 / (1.0 + exp(-x)) - y) * grad_scale;
    }
}

void loss_compute(LossKind kind, LossStats *st, float *dlogits, const float *logits,
                  const int32_t *labels, int N, int K, float grad_scale) {
    if (kind == LOSS_BINARY_CROSSENTROPY)
        loss_sigmoid_bce(st, dlogits, logits, labels, N, grad_scale);
    else
        loss_softmax_xent(st, dlogits, logits, labels, N, K, grad_scale);
}

void loss_probabilities(float *logits, int N, int K) {
    for (int n = 0; n < N; n++) {
        float *z = logits + (size_t)n * K;
        if (K == 1) {
            z[0] = 1.0f / (1.0f + expf(-z[0]));
            continue;
        }
        float zmax = z[0];
        for (int k = 1; k < K; k++) zmax = fmaxf(zmax, z[k]);
        double sum = 0;
        for (int k = 0; k < K; k++) sum += exp((double)(z[k] - zmax));
        for (int k = 0; k < K; k++) z[k] = (float)(exp((double)(z[k] - zmax)) / sum);
    }
}
