/* test_names.c: default layer names as Keras makes them (max_pooling2d, not maxpooling2d), the
 * [max_pooling2d] spelling of the section, and old names still accepted by --set with a note. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "testutil.h"

static const char
    *const JOB_TEXT = "[data]\nformat = images\ntrain_dir = a\ntest_dir = c\nimage_size = 12,12\n"
                      "[conv2d]\nfilters = 4\nkernel_size = 3\n"
                      "[maxpooling2d]\n"
                      "[max_pooling2d]\n"
                      "[flatten]\n"
                      "[dropout]\nrate = 0.5\n"
                      "[dense]\nunits = 3\n"
                      "[dense]\nunits = 2\nactivation = softmax\n"
                      "[train]\nloss = sparse_categorical_crossentropy\n";

static const char *write_names_job(void) {
    return testutil_write_file(testutil_tmpdir(), "names.job", JOB_TEXT, strlen(JOB_TEXT));
}

static void keras_default_names(void) {
    const char *path = write_names_job();
    Job j;
    Err e = {0};
    int rc = job_load(&j, path, NULL, 0, &e);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    const char *want[] = {"conv2d",  "max_pooling2d", "max_pooling2d_1", "flatten",
                          "dropout", "dense",         "dense_1"};
    CU_ASSERT_EQUAL_FATAL(j.n_layers, 7);
    for (int l = 0; l < 7; l++) {
        if (strcmp(j.layers[l].name, want[l]))
            printf("\n    layer %d: %s, want %s\n", l, j.layers[l].name, want[l]);
        CU_ASSERT_STRING_EQUAL(j.layers[l].name, want[l]);
    }
    CU_ASSERT_EQUAL(j.layers[1].kind, LAYER_MAXPOOL2D);
    CU_ASSERT_EQUAL(j.layers[2].kind, LAYER_MAXPOOL2D);
    job_free(&j);
}

/* --set reaches a layer by its new name, and by its old one with a note. */
static void set_old_and_new_names(void) {
    const char *path = write_names_job();
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "'%s' summary '%s' --set maxpooling2d_1.pool_size=3 --set max_pooling2d.strides=1",
             testutil_bin(), path);
    int st = testutil_run(cmd, &out);
    if (st) printf("\n    %s\n", out);
    CU_ASSERT_EQUAL(st, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(
        out, "note: --set maxpooling2d_1.pool_size=3: that layer is now named max_pooling2d_1"));
    CU_ASSERT_PTR_NULL(strstr(out, "note: --set max_pooling2d.strides"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "max_pooling2d_1 (MaxPooling2D)"));
    free(out);
    /* a name that never existed is still an error */
    snprintf(cmd, sizeof cmd, "'%s' summary '%s' --set maxpooling2d_7.pool_size=3", testutil_bin(),
             path);
    st = testutil_run(cmd, &out);
    CU_ASSERT_EQUAL(st, 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "no section 'maxpooling2d_7'"));
    free(out);
}

TEST_SUITE(names, {"default layer names are Keras's", keras_default_names},
           {"--set takes new and old layer names", set_old_and_new_names})
