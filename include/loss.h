/* loss.h: losses fused with the output activation, computed stably from logits, and the
 * accuracy metric.
 *
 * The sums returned let a distributed caller add per-rank results before dividing by the
 * global sample count; the gradient is already multiplied by grad_scale (1 / global batch), so
 * summing per-rank gradients gives the mean-loss gradient of the whole batch.
 */
#ifndef CONVNET_LOSS_H
#define CONVNET_LOSS_H

#include <stdint.h>

typedef enum { LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, LOSS_BINARY_CROSSENTROPY } LossKind;

typedef struct {
    double loss_sum; /* sum over samples of the per-sample loss */
    double correct;  /* samples predicted right */
} LossStats;

/* logits (N, K); labels in [0, K); dlogits (N, K) = (softmax - onehot) * grad_scale, or NULL. */
void loss_softmax_xent(LossStats *st, float *dlogits, const float *logits, const int32_t *labels,
                       int N, int K, float grad_scale);
/* logits (N, 1); labels 0/1; dlogits = (sigmoid - y) * grad_scale, or NULL. */
void loss_sigmoid_bce(LossStats *st, float *dlogits, const float *logits, const int32_t *labels,
                      int N, float grad_scale);
void loss_compute(LossKind kind, LossStats *st, float *dlogits, const float *logits,
                  const int32_t *labels, int N, int K, float grad_scale);

/* probabilities in place: softmax over K per row, or sigmoid when K == 1 */
void loss_probabilities(float *logits, int N, int K);

#endif
