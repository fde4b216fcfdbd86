/* test_job_load.c: job_load (job.c) on small job files: resolved defaults, optimizer-dependent
 * defaults, section checks with FILE:LINE, the job hash, and a job that [include]s a layer.
 * The job-file syntax itself is test_ini.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "job.h"
#include "testutil.h"


static const char *write_job(const char *name, const char *text) {
    return testutil_write_file(testutil_tmpdir(), name, text, strlen(text));
}

static const char *BASE_DATA = "[data]\n"
                               "root = /nonexistent/root\n"
                               "train_images = tr-img\n"
                               "train_labels = /abs/tr-lbl\n"
                               "test_images = te-img\n"
                               "test_labels = te-lbl\n";

static void job_defaults_resolved(void) {
    char text[2048];
    snprintf(text, sizeof text,
             "%s"
             "[conv2d]\nfilters = 4\nkernel_size = 3\n"
             "[maxpooling2d]\npool_size = 3\n"
             "[maxpooling2d]\n"
             "[flatten]\n"
             "[dense]\nunits = 3\nactivation = softmax\n"
             "[train]\nloss = sparse_categorical_crossentropy\n",
             BASE_DATA);
    const char *path = write_job("defaults.job", text);
    Job j;
    Err e = {0};
    int rc = job_load(&j, path, NULL, 0, &e);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_STRING_EQUAL(j.name, "defaults");
    CU_ASSERT_EQUAL(j.data.format, DATA_IDX);
    CU_ASSERT_STRING_EQUAL(j.data.train_images, "/nonexistent/root/tr-img");
    CU_ASSERT_STRING_EQUAL(j.data.train_labels, "/abs/tr-lbl");
    CU_ASSERT_STRING_EQUAL(j.data.test_labels, "/nonexistent/root/te-lbl");
    CU_ASSERT_PTR_NULL(j.data.val_images);
    CU_ASSERT_DOUBLE_EQUAL(j.data.scale, 1.0, 0);
    CU_ASSERT_DOUBLE_EQUAL(j.data.offset, 0.0, 0);
    const TrainCfg *t = &j.train;
    CU_ASSERT_EQUAL(t->loss, LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    CU_ASSERT_EQUAL(t->opt.kind, OPT_RMSPROP);
    CU_ASSERT_DOUBLE_EQUAL(t->opt.lr, 0.001, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(t->opt.rho, 0.9, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(t->opt.epsilon, 1e-7, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(t->opt.momentum, 0.0, 0);
    CU_ASSERT_EQUAL(t->batch_size, 32);
    CU_ASSERT_EQUAL(t->epochs, 1);
    CU_ASSERT_EQUAL(t->seed, 1);
    CU_ASSERT_EQUAL(t->shuffle, 1);
    CU_ASSERT_EQUAL(t->steps_per_epoch, 0);
    CU_ASSERT_DOUBLE_EQUAL(t->validation_split, 0.0, 0);
    CU_ASSERT_STRING_EQUAL(t->save, "");
    CU_ASSERT_STRING_EQUAL(t->step_log, "");
    CU_ASSERT_EQUAL_FATAL(j.n_layers, 5);
    const Layer *L = j.layers;
    CU_ASSERT_EQUAL(L[0].kind, LAYER_CONV2D);
    CU_ASSERT_STRING_EQUAL(L[0].name, "conv2d");
    CU_ASSERT_EQUAL(L[0].units, 4);
    CU_ASSERT_EQUAL(L[0].kh, 3);
    CU_ASSERT_EQUAL(L[0].kw, 3);
    CU_ASSERT_EQUAL(L[0].sh, 1); /* conv strides default to 1 */
    CU_ASSERT_EQUAL(L[0].sw, 1);
    CU_ASSERT_EQUAL(L[0].padding, PAD_VALID);
    CU_ASSERT_EQUAL(L[0].act, ACT_LINEAR);
    CU_ASSERT_EQUAL(L[0].use_bias, 1);
    CU_ASSERT_EQUAL(L[0].line, 7);
    CU_ASSERT_EQUAL(L[1].kind, LAYER_MAXPOOL2D);
    CU_ASSERT_EQUAL(L[1].kh, 3);
    CU_ASSERT_EQUAL(L[1].sh, 3); /* pool strides default to pool_size */
    CU_ASSERT_EQUAL(L[1].sw, 3);
    CU_ASSERT_STRING_EQUAL(L[2].name, "max_pooling2d_1");
    CU_ASSERT_EQUAL(L[2].kh, 2); /* pool_size default 2 */
    CU_ASSERT_EQUAL(L[2].kw, 2);
    CU_ASSERT_EQUAL(L[2].sh, 2);
    CU_ASSERT_EQUAL(L[3].kind, LAYER_FLATTEN);
    CU_ASSERT_EQUAL(L[4].kind, LAYER_DENSE);
    CU_ASSERT_EQUAL(L[4].units, 3);
    CU_ASSERT_EQUAL(L[4].act, ACT_SOFTMAX);
    job_free(&j);
}

static void job_optimizer_defaults(void) {
    char text[2048];
    snprintf(text, sizeof text,
             "%s[flatten]\n[dense]\nunits = 2\nactivation = softmax\n"
             "[train]\nloss = sparse_categorical_crossentropy\noptimizer = sgd\n",
             BASE_DATA);
    const char *path = write_job("sgd.job", text);
    Job j;
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(job_load(&j, path, NULL, 0, &e), 0);
    CU_ASSERT_EQUAL(j.train.opt.kind, OPT_SGD);
    CU_ASSERT_DOUBLE_EQUAL(j.train.opt.lr, 0.01, 1e-9);
    CU_ASSERT_EQUAL(j.train.opt.nesterov, 0);
    job_free(&j);
    char *ov[] = {"train.optimizer=adam"};
    Err e2 = {0};
    CU_ASSERT_EQUAL_FATAL(job_load(&j, path, ov, 1, &e2), 0);
    CU_ASSERT_EQUAL(j.train.opt.kind, OPT_ADAM);
    CU_ASSERT_DOUBLE_EQUAL(j.train.opt.lr, 0.001, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(j.train.opt.beta1, 0.9, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(j.train.opt.beta2, 0.999, 1e-7);
    job_free(&j);
    /* rho is an RMSprop key: with sgd it is an unknown key */
    char *ov2[] = {"train.rho=0.5"};
    Err e3 = {0};
    CU_ASSERT_EQUAL(job_load(&j, path, ov2, 1, &e3), -1);
    HAS(e3.msg, "rho");
    HAS(e3.msg, "--set");
    job_free(&j);
    /* RMSprop's epsilon_placement: inside the root by default (Keras 3); outside (tf.keras 2)
     * only without momentum, where tf.keras 2 computes it so */
    char *ov3[] = {"train.optimizer=rmsprop"};
    Err e4 = {0};
    CU_ASSERT_EQUAL_FATAL(job_load(&j, path, ov3, 1, &e4), 0);
    CU_ASSERT_EQUAL(j.train.opt.epsilon_outside_sqrt, 0);
    job_free(&j);
    char *ov4[] = {"train.optimizer=rmsprop", "train.epsilon_placement=outside_sqrt"};
    Err e5 = {0};
    CU_ASSERT_EQUAL_FATAL(job_load(&j, path, ov4, 2, &e5), 0);
    CU_ASSERT_EQUAL(j.train.opt.epsilon_outside_sqrt, 1);
    job_free(&j);
    char *ov5[] = {"train.optimizer=rmsprop", "train.epsilon_placement=outside_sqrt",
                   "train.momentum=0.9"};
    Err e6 = {0};
    CU_ASSERT_EQUAL(job_load(&j, path, ov5, 3, &e6), -1);
    HAS(e6.msg, "sgd.job");
    HAS(e6.msg, "needs momentum = 0");
    job_free(&j);
    char *ov6[] = {"train.optimizer=rmsprop", "train.epsilon_placement=outside"};
    Err e7 = {0};
    CU_ASSERT_EQUAL(job_load(&j, path, ov6, 2, &e7), -1);
    HAS(e7.msg, "epsilon_placement");
    job_free(&j);
}

/* job_load must fail with every fragment in the message. */
static void expect_job_error(const char *name, const char *text, char *const *ov, int n_ov,
                             const char *const *frags) {
    const char *path = write_job(name, text);
    char pathcopy[512];
    snprintf(pathcopy, sizeof pathcopy, "%s", path);
    Job j;
    Err e = {0};
    int rc = job_load(&j, pathcopy, ov, n_ov, &e);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_TRUE(e.set);
    for (int i = 0; frags[i]; i++) {
        const char *f = frags[i];
        char buf[600];
        if (f[0] == '@') { /* "@:N:" means "<path>:N:" */
            snprintf(buf, sizeof buf, "%s%s", pathcopy, f + 1);
            f = buf;
        }
        if (!strstr(e.msg, f)) printf("\n    message '%s' lacks '%s'\n", e.msg, f);
        HAS(e.msg, f);
    }
    job_free(&j);
}

static void job_errors(void) {
    char text[4096];
    /* typo'd key in [conv2d] at line 8 */
    snprintf(text, sizeof text,
             "%s"                /* lines 1-6 */
             "[conv2d]\n"        /* 7 */
             "filter = 32\n"     /* 8 */
             "kernel_size = 3\n" /* 9 */
             "[flatten]\n[dense]\nunits = 2\nactivation = softmax\n"
             "[train]\nloss = sparse_categorical_crossentropy\n",
             BASE_DATA);
    expect_job_error("typo.job", text, NULL, 0, (const char *[]){"@:7:", "needs 'filters'", NULL});
    /* with 'filters' given too, the typo is the unknown key, at its line */
    snprintf(text, sizeof text,
             "%s[conv2d]\nfilters = 4\nfilter = 32\nkernel_size = 3\n"
             "[flatten]\n[dense]\nunits = 2\nactivation = softmax\n"
             "[train]\nloss = sparse_categorical_crossentropy\n",
             BASE_DATA);
    expect_job_error("typo2.job", text, NULL, 0,
                     (const char *[]){"@:9:", "unknown key 'filter'", "[conv2d]", NULL});
    /* unknown key in [train] */
    snprintf(text, sizeof text,
             "%s[flatten]\n[dense]\nunits = 2\nactivation = softmax\n"
             "[train]\nloss = sparse_categorical_crossentropy\nepoch = 3\n",
             BASE_DATA);
    expect_job_error("typo3.job", text, NULL, 0, (const char *[]){"@:13:", "'epoch'", NULL});
    /* unknown section */
    snprintf(text, sizeof text,
             "%s[flatten]\n[dense]\nunits = 2\nactivation = softmax\n[lstm]\nunits = 3\n"
             "[train]\nloss = sparse_categorical_crossentropy\n",
             BASE_DATA);
    expect_job_error("unk.job", text, NULL, 0,
                     (const char *[]){"@:11:", "unknown section [lstm]", NULL});
    /* no [data] */
    expect_job_error("nodata.job",
                     "[flatten]\n[dense]\nunits = 2\nactivation = softmax\n"
                     "[train]\nloss = sparse_categorical_crossentropy\n",
                     NULL, 0, (const char *[]){"@", "no [data]", NULL});
    /* no [train] */
    snprintf(text, sizeof text, "%s[flatten]\n[dense]\nunits = 2\nactivation = softmax\n",
             BASE_DATA);
    expect_job_error("notrain.job", text, NULL, 0, (const char *[]){"@", "no [train]", NULL});
    /* repeated [train] */
    snprintf(text, sizeof text,
             "%s[flatten]\n[dense]\nunits = 2\nactivation = softmax\n"
             "[train]\nloss = sparse_categorical_crossentropy\n[train]\nepochs = 2\n",
             BASE_DATA);
    expect_job_error("twotrain.job", text, NULL, 0,
                     (const char *[]){"@:13:", "[train]", "twice", NULL});
    /* no layers */
    snprintf(text, sizeof text, "%s[train]\nloss = sparse_categorical_crossentropy\n", BASE_DATA);
    expect_job_error("nolayers.job", text, NULL, 0, (const char *[]){"no layers", NULL});
    /* bad values */
    snprintf(text, sizeof text,
             "%s[flatten]\n[dense]\nunits = 2\nactivation = softmax\n"
             "[train]\nloss = sparse_categorical_crossentropy\nepochs = 3x\n",
             BASE_DATA);
    expect_job_error("bad.job", text, NULL, 0, (const char *[]){"@:13:", "'epochs'", "3x", NULL});
    snprintf(text, sizeof text,
             "%s[flatten]\n[dense]\nunits = 2\nactivation = softmax\n"
             "[train]\nloss = sparse_categorical_crossentropy\n",
             BASE_DATA);
    expect_job_error("setbad.job", text, (char *[]){"train.epochs=abc"}, 1,
                     (const char *[]){"--set train.epochs", "abc", NULL});
    expect_job_error("setbad2.job", text, (char *[]){"nosuch.key=1"}, 1,
                     (const char *[]){"nosuch", NULL});
    expect_job_error("setbad3.job", text, (char *[]){"train.nosuchkey=1"}, 1,
                     (const char *[]){"--set train.nosuchkey", "unknown key", NULL});
    /* validation_images without validation_labels */
    snprintf(text, sizeof text,
             "%svalidation_images = v\n[flatten]\n[dense]\nunits = 2\nactivation = softmax\n"
             "[train]\nloss = sparse_categorical_crossentropy\n",
             BASE_DATA);
    expect_job_error("val.job", text, NULL, 0, (const char *[]){"validation_labels", NULL});
    /* missing file */
    Job j;
    Err e = {0};
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no-such.job", testutil_tmpdir());
    CU_ASSERT_EQUAL(job_load(&j, missing, NULL, 0, &e), -1);
    HAS(e.msg, missing);
    job_free(&j);
}

static uint64_t hash_of(const char *path, char *const *ov, int n) {
    Job j;
    Err e = {0};
    int rc = job_load(&j, path, ov, n, &e);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) printf("\n    %s\n", e.msg);
    uint64_t h = j.hash;
    job_free(&j);
    return h;
}

static void job_hash(void) {
    char text[2048];
    snprintf(text, sizeof text,
             "%s[conv2d]\nfilters = 4\nkernel_size = 3\n[flatten]\n[dense]\nunits = 2\n"
             "activation = softmax\n[train]\nloss = sparse_categorical_crossentropy\nepochs = 2\n",
             BASE_DATA);
    const char *p = write_job("hash.job", text);
    char path[512];
    snprintf(path, sizeof path, "%s", p);
    uint64_t h0 = hash_of(path, NULL, 0);
    CU_ASSERT_EQUAL(h0, hash_of(path, NULL, 0));
    CU_ASSERT_NOT_EQUAL(h0, 0);
    CU_ASSERT_NOT_EQUAL(h0, hash_of(path, (char *[]){"train.epochs=3"}, 1));
    CU_ASSERT_NOT_EQUAL(h0, hash_of(path, (char *[]){"conv2d.filters=5"}, 1));
    CU_ASSERT_NOT_EQUAL(h0, hash_of(path, (char *[]){"train.lr=0.002"}, 1));
    CU_ASSERT_NOT_EQUAL(h0, hash_of(path, (char *[]){"data.scale=0.5"}, 1));
    CU_ASSERT_EQUAL(h0, hash_of(path, (char *[]){"train.save=/tmp/w.bin"}, 1));
    CU_ASSERT_EQUAL(h0, hash_of(path, (char *[]){"train.step_log=/tmp/s.log"}, 1));
}

/* dir/base.ini with text: the file the job below includes. */
static void write_base(const char *dir, const char *text) {
    testutil_write_file(dir, "base.ini", text, strlen(text));
}

/* A layer from an included file: job_load's errors name that file, and the job hash covers it. */
static void include_in_job(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/incjob", testutil_tmpdir());
    mkdir(dir, 0755);
    char text[1024];
    snprintf(text, sizeof text,
             "%s[include]\nfile = base.ini\n[flatten]\n[dense]\nunits = 2\nactivation = softmax\n"
             "[train]\nloss = sparse_categorical_crossentropy\n",
             BASE_DATA);
    char job[600];
    snprintf(job, sizeof job, "%s", testutil_write_file(dir, "inc.job", text, strlen(text)));
    write_base(dir, "[conv2d]\nname = block1_conv1\nfilters = 4\nkernel_size = 3\n");
    Job j;
    Err e = {0};
    int rc = job_load(&j, job, NULL, 0, &e);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_STRING_EQUAL(j.layers[0].name, "block1_conv1");
    uint64_t h0 = j.hash;
    job_free(&j);
    write_base(dir, "[conv2d]\nname = block1_conv1\nfilters = 5\nkernel_size = 3\n");
    CU_ASSERT_NOT_EQUAL(hash_of(job, NULL, 0), h0);
    CU_ASSERT_EQUAL(hash_of(job, (char *[]){"conv2d.filters=4"}, 1), h0);
    write_base(dir, "[conv2d]\nfilters = 4\nkernel_size = 3\nkernal_size = 3\n");
    Err e2 = {0};
    CU_ASSERT_EQUAL(job_load(&j, job, NULL, 0, &e2), -1);
    char want[700];
    snprintf(want, sizeof want, "%s/base.ini:4:", dir);
    HAS(e2.msg, want);
    HAS(e2.msg, "kernal_size");
    job_free(&j);
}

TEST_SUITE(job_load, {"job_load resolves defaults", job_defaults_resolved},
           {"job_load optimizer-dependent defaults", job_optimizer_defaults},
           {"job_load errors", job_errors}, {"job hash", job_hash},
           {"[include] in a job: errors and hash", include_in_job})
