/* test_hardening.h: helpers shared by test_hardening.c and test_hardening_cli.c (issue 16's
 * regression tests): temp sub-folders, paths, a small planned model, message checks. */
#ifndef CONVNET_TEST_HARDENING_H
#define CONVNET_TEST_HARDENING_H

#include <stdio.h>
#include <string.h>

#include "job.h"
#include "model.h"
#include "testutil.h"

/* A fresh sub-folder of the test temp dir (static buffer, rotated over 4 slots). */
const char *hard_subdir(const char *name);

/* dir/name (static buffer, rotated over 8 slots). */
const char *hard_join(const char *dir, const char *name);

/* conv2d (2 filters, 3x3) -> flatten -> dense (3, softmax) on 4x4x1 inputs, planned for
 * batch 2 and allocated, with Glorot weights. */
void hard_small_model(Job *j, Model *m);

/* fuzz_h5's model (tests/fuzz/fuzz_h5.c): conv2d "conv" (2 filters, 1x1), flatten, dense
 * "dense" (2 units) on 2x2x1, planned for batch 1 and allocated. */
void hard_h5_model(Job *j, Model *m);

#endif
