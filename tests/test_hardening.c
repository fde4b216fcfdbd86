/* test_hardening.c: regression tests of issue 16's classes of bad input, through the C API
 * and the command line: special files refused before they are opened for reading, sizes
 * declared in headers checked before allocation, a fresh JPEG decoder after a decode error,
 * values parsed at their full length, a byte-order mark skipped, non-finite weights refused,
 * degenerate class folders, the plan's memory and the output paths checked before training,
 * and the findings of the fuzz targets in tests/fuzz/ (the command line and the isolated
 * reader: test_hardening_cli.c). */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "checkpoint.h"
#include "darknet.h"
#include "data.h"
#include "images.h"
#include "ini.h"
#include "job.h"
#include "keras_h5.h"
#include "model.h"
#include "preflight.h"
#include "test_hardening.h"
#include "testutil.h"
#include "weights.h"

const char *hard_subdir(const char *name) {
    static char b[4][600];
    static int slot;
    char *p = b[slot++ % 4];
    snprintf(p, 600, "%s/hard-%s", testutil_tmpdir(), name);
    mkdir(p, 0755);
    return p;
}

const char *hard_join(const char *dir, const char *name) {
    static char b[8][1700];
    static int slot;
    char *p = b[slot++ % 8];
    snprintf(p, 1700, "%s/%s", dir, name);
    return p;
}

/* ---------------------------------------------------------------- JPEG decoder state */

/* A 16x16 RGB JPEG of a gradient (seeded) at path. */
static void write_good_jpeg(const char *path, int seed) {
    uint8_t pix[16 * 16 * 3];
    for (int i = 0; i < 16 * 16 * 3; i++) pix[i] = (uint8_t)(i * 7 + seed * 31);
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(image_write_jpeg(path, pix, 16, 16, 3, 90, &e), 0);
}

/* JPEGs whose header cannot be read: SOI then a marker segment of a bogus length, or a
 * frame header cut short. */
static const unsigned char BAD_JPEG[][12] = {
    {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01, 0x4A, 0x46, 0x49, 0x46, 0x00, 0x01},
    {0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x10, 0x00, 0x10, 0x03},
    {0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x43, 0x00, 0x08, 0x06, 0x06, 0x07, 0x06},
};
/* A JFIF header, then a quantisation table cut inside its length field: libjpeg stops
 * mid-segment, and a TurboJPEG handle reused after it fails every later file ("Bogus DQT
 * index", "Bogus marker length"). */
static const unsigned char BAD_JPEG_MIDSEGMENT[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J',  'F',
                                                    'I',  'F',  0x00, 0x01, 0x01, 0x00, 0x00, 0x01,
                                                    0x00, 0x01, 0x00, 0x00, 0xFF, 0xDB, 0x00};

static void jpeg_bad_does_not_spoil_good(void) {
    const char *root = hard_subdir("jpeg-order");
    char cls[2][800];
    snprintf(cls[0], sizeof cls[0], "%s/a", root);
    snprintf(cls[1], sizeof cls[1], "%s/b", root);
    for (int k = 0; k < 2; k++) {
        mkdir(cls[k], 0755);
        /* bad files sort first ("0-bad-*"), the good ones after them */
        for (int i = 0; i < 3; i++) {
            char name[32];
            snprintf(name, sizeof name, "0-bad-%d.jpg", i);
            testutil_write_file(cls[k], name, BAD_JPEG[i], sizeof BAD_JPEG[i]);
        }
        testutil_write_file(cls[k], "0-bad-3.jpg", BAD_JPEG_MIDSEGMENT, sizeof BAD_JPEG_MIDSEGMENT);
        for (int i = 0; i < 4; i++) {
            char name[32];
            snprintf(name, sizeof name, "1-good-%d.jpg", i);
            write_good_jpeg(hard_join(cls[k], name), i + 4 * k);
        }
    }
    ImageDirOptions o;
    image_dir_options_default(&o);
    o.height = o.width = 16;
    o.quiet = getenv("HARD_VERBOSE") == NULL;
    Dataset d;
    Err e = {0};
    int rc = images_load_dir(&d, root, &o, &e);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    if (d.n != 8 || d.skipped != 8)
        printf("\n    %lld loaded, %lld skipped\n", (long long)d.n, (long long)d.skipped);
    CU_ASSERT_EQUAL(d.n, 8);       /* every good image */
    CU_ASSERT_EQUAL(d.skipped, 8); /* and only the bad ones skipped */
    dataset_free(&d);
}

/* ---------------------------------------------------------------- a small model */

void hard_small_model(Job *j, Model *m) {
    const char *dir = hard_subdir("model");
    const char *text = "[data]\nroot = /nonexistent\ntrain_images = a\ntrain_labels = b\n"
                       "test_images = c\ntest_labels = d\n"
                       "[conv2d]\nfilters = 2\nkernel_size = 3\n[flatten]\n"
                       "[dense]\nunits = 3\nactivation = softmax\n"
                       "[train]\nloss = sparse_categorical_crossentropy\n";
    Err e = {0};
    int rc = job_load(j, testutil_write_file(dir, "small.job", text, strlen(text)), NULL, 0, &e);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_FATAL(rc == 0);
    CU_ASSERT_FATAL(model_plan(m, j->layers, j->n_layers, (Shape){4, 4, 1, 0}, 2, &e) == 0);
    CU_ASSERT_FATAL(model_alloc(m, NULL) == 0);
    model_init_params(m, 1);
}

/* ---------------------------------------------------------------- special files */

/* Every reader refuses a named pipe without blocking (the alarm ends a hang as a failure),
 * and /dev/zero as a job or IDX file without reading it. */
static void special_files_refused(void) {
    const char *dir = hard_subdir("fifo");
    const char *fifo = hard_join(dir, "pipe");
    unlink(fifo);
    CU_ASSERT_EQUAL_FATAL(mkfifo(fifo, 0644), 0);
    alarm(60);
    Err e1 = {0}, e2 = {0}, e3 = {0}, e4 = {0}, e5 = {0}, e6 = {0}, e7 = {0};
    IniFile ini;
    CU_ASSERT_EQUAL(ini_parse_file(&ini, fifo, &e1), -1);
    HAS(e1.msg, "named pipe");
    Dataset d;
    CU_ASSERT_EQUAL(idx_load(&d, fifo, fifo, &e2), -1);
    HAS(e2.msg, "named pipe");
    uint64_t n = 0;
    CU_ASSERT_PTR_NULL(weights_read_raw(fifo, &n, &e3));
    HAS(e3.msg, "named pipe");
    CheckpointState st;
    float p[1], s1[1], s2[1];
    CU_ASSERT_EQUAL(checkpoint_load(fifo, &st, p, 1, s1, s2, 1, 0, 0, &e4), -1);
    HAS(e4.msg, "named pipe");
    uint8_t img[4 * 4 * 3];
    CU_ASSERT_EQUAL(image_load_file(fifo, 4, 4, 3, 0, img, &e5), -1);
    HAS(e5.msg, "not a regular file");
    Job j;
    Model m;
    hard_small_model(&j, &m);
    CU_ASSERT_EQUAL(keras_h5_load_weights(fifo, &m, &e6), -1);
    HAS(e6.msg, fifo);
#if CONVNET_HDF5
    HAS(e6.msg, "named pipe");
#endif
    DarknetImport imp = {0};
    imp.weights = (char *)fifo;
    CU_ASSERT_EQUAL(darknet_load_weights(&imp, &m, &e7), -1);
    HAS(e7.msg, "named pipe");
    /* a weights file named as a directory says so (not "truncated: 0 bytes") */
    Err e8 = {0};
    CU_ASSERT_EQUAL(weights_load(dir, &m, &e8), -1);
    HAS(e8.msg, "is a directory");
    model_free(&m);
    job_free(&j);
    Err e9 = {0}, e10 = {0};
    CU_ASSERT_EQUAL(ini_parse_file(&ini, "/dev/zero", &e9), -1);
    HAS(e9.msg, "a device");
    CU_ASSERT_EQUAL(idx_load(&d, "/dev/zero", "/dev/zero", &e10), -1);
    HAS(e10.msg, "a device");
    alarm(0);
    unlink(fifo);
}

/* ---------------------------------------------------------------- declared sizes */

/* A gzip'd IDX file whose header promises far more than its compressed size can hold is
 * refused before anything is allocated for the data; one that promises what it holds loads. */
static void gzip_idx_bomb_refused(void) {
    const char *dir = hard_subdir("gz");
    unsigned char raw[16 + 4096];
    testutil_idx_header(raw, 3, (const unsigned[]){1000000, 1000, 1000}); /* 10^12 bytes */
    memset(raw + 16, 0, 4096);
    char path[800];
    snprintf(path, sizeof path, "%s/bomb-img.gz", dir);
    gzFile g = gzopen(path, "wb9");
    CU_ASSERT_FATAL(g != NULL);
    gzwrite(g, raw, sizeof raw);
    gzclose(g);
    unsigned char lb[8 + 4];
    testutil_idx_header(lb, 1, (const unsigned[]){4});
    memset(lb + 8, 0, 4);
    const char *lpath = testutil_write_file(dir, "lbl", lb, sizeof lb);
    Dataset d;
    Err e = {0};
    CU_ASSERT_EQUAL(idx_load(&d, path, lpath, &e), -1);
    HAS(e.msg, path);
    HAS(e.msg, "more than");
    HAS(e.msg, "gzip data can hold");
    /* a true gzip'd file of 4 images of 2x2 (zeros compress far) still loads */
    testutil_idx_header(raw, 3, (const unsigned[]){4, 2, 2});
    g = gzopen(path, "wb9");
    gzwrite(g, raw, 16 + 16);
    gzclose(g);
    Err e2 = {0};
    int rc = idx_load(&d, path, lpath, &e2);
    if (rc) printf("\n    %s\n", e2.msg);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc == 0) {
        CU_ASSERT_EQUAL(d.n, 4);
        dataset_free(&d);
    }
    /* a gzip stream with trailing data past what the header promises */
    g = gzopen(path, "wb9");
    gzwrite(g, raw, 16 + 17);
    gzclose(g);
    Err e3 = {0};
    CU_ASSERT_EQUAL(idx_load(&d, path, lpath, &e3), -1);
    HAS(e3.msg, "trailing data");
}

/* A 40-byte weights file claiming 2^34 - 1 parameters: refused from its size, unallocated. */
static void weights_claiming_huge_count(void) {
    unsigned char b[40] = {'C', 'N', 'D', 'W', 'G', 'T', '0', '1', 1, 0, 0, 0, 3, 0, 0, 0};
    uint64_t n = (1ULL << 34) - 1;
    memcpy(b + 16, &n, 8);
    const char *path = testutil_write_file(hard_subdir("w"), "huge.weights", b, sizeof b);
    Err e = {0};
    uint64_t got = 0;
    CU_ASSERT_PTR_NULL(weights_read_raw(path, &got, &e));
    HAS(e.msg, path);
    HAS(e.msg, "17179869183 parameters");
    HAS(e.msg, "the file has 40");
}

/* ---------------------------------------------------------------- job-file syntax */

static void values_parsed_at_full_length(void) {
    char text[512];
    snprintf(text, sizeof text, "[conv2d]\nkernel_size = 3,3%60sjunk\nrange = 0.1%80sjunk\n", "",
             "");
    IniFile ini;
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(ini_parse_string(&ini, "pad.job", text, &e), 0);
    Section *s = ini_find(&ini, "conv2d");
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    int a = 0, b = 0;
    Err e1 = {0};
    CU_ASSERT_EQUAL(sec_get_pair(&ini, s, "kernel_size", 1, 1, 1, 1, 64, &a, &b, &e1), -1);
    HAS(e1.msg, "pad.job:2");
    HAS(e1.msg, "junk");
    float lo, hi;
    Err e2 = {0};
    CU_ASSERT_EQUAL(sec_get_range(&ini, s, "range", 1, 0, &lo, &hi, &e2), -1);
    HAS(e2.msg, "pad.job:3");
    ini_free(&ini);
}

static void byte_order_mark_skipped(void) {
    IniFile ini;
    Err e = {0};
    int rc = ini_parse_string(&ini, "bom.job", "\xEF\xBB\xBF[train]\nepochs = 2\n", &e);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    Section *s = ini_find(&ini, "train");
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    int epochs = 0;
    CU_ASSERT_EQUAL(sec_get_int(&ini, s, "epochs", 1, 1, 1, 100, &epochs, &e), 0);
    CU_ASSERT_EQUAL(epochs, 2);
    ini_free(&ini);
    /* a BOM anywhere else is still an error */
    Err e2 = {0};
    CU_ASSERT_EQUAL(ini_parse_string(&ini, "bom2.job",
                                     "[train]\n\xEF\xBB\xBF"
                                     "epochs = 2\n",
                                     &e2),
                    -1);
    ini_free(&ini);
}

/* A parse that fails frees what it had read (the fuzz target fuzz_darknet found a cfg that
 * failed after some sections leaking them). */
static void failed_parse_frees(void) {
    IniFile ini;
    Err e = {0};
    CU_ASSERT_EQUAL(ini_parse_string(&ini, "bad.cfg", "[net]\n[convolutional]\nsize=3\n[x\n", &e),
                    -1);
    HAS(e.msg, "bad.cfg:4");
    CU_ASSERT_EQUAL(ini.n_sec, 0);
    CU_ASSERT_PTR_NULL(ini.sec);
    CU_ASSERT_PTR_NULL(ini.files);
    ini_free(&ini); /* harmless */
}

/* An in-memory file set, as the fuzz target serves [include]s. */
static const char *const MEM_FILES[][2] = {
    {"mem/a.job", "[train]\nepochs = 3\n[include]\nfile = b.inc\n[dense]\nunits = 2\n"},
    {"mem/b.inc", "[conv2d]\nfilters = 4\n"},
    {"mem/loop.job", "[include]\nfile = loop2.inc\n"},
    {"mem/loop2.inc", "[include]\nfile = loop.job\n"},
};

static int mem_read(const char *path, char **text, size_t *len, Err *e) {
    for (size_t i = 0; i < sizeof MEM_FILES / sizeof MEM_FILES[0]; i++)
        if (!strcmp(path, MEM_FILES[i][0])) {
            *text = strdup(MEM_FILES[i][1]);
            *len = strlen(*text);
            return 0;
        }
    return 1;
}

static char *mem_canonical(const char *path) { return strdup(path); }

static void include_from_memory(void) {
    IniFileSource src = {mem_read, mem_canonical};
    ini_set_file_source(&src);
    IniFile ini;
    Err e = {0};
    int rc = ini_parse_file(&ini, "mem/a.job", &e);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc == 0) {
        CU_ASSERT_EQUAL(ini.n_sec, 3);
        CU_ASSERT_STRING_EQUAL(ini.sec[1].name, "conv2d");
        CU_ASSERT_STRING_EQUAL(ini_section_file(&ini, &ini.sec[1]), "mem/b.inc");
    }
    ini_free(&ini);
    Err e2 = {0};
    CU_ASSERT_EQUAL(ini_parse_file(&ini, "mem/loop.job", &e2), -1);
    HAS(e2.msg, "cycle");
    ini_free(&ini);
    ini_set_file_source(NULL);
}

/* ---------------------------------------------------------------- non-finite weights */

static void nonfinite_weights_refused(void) {
    Job j;
    Model m;
    hard_small_model(&j, &m);
    const char *dir = hard_subdir("nan");
    /* a weights file: the message names the file, the layer and the tensor */
    const char *wpath = hard_join(dir, "nan.weights");
    float keep = m.params[m.layers[2].param_off + 4];
    m.params[m.layers[2].param_off + 4] = NAN;
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(weights_save(wpath, &m, &e), 0);
    m.params[m.layers[2].param_off + 4] = keep;
    Err e1 = {0};
    CU_ASSERT_EQUAL(weights_load(wpath, &m, &e1), -1);
    HAS(e1.msg, wpath);
    HAS(e1.msg, "non-finite");
    HAS(e1.msg, "layer 'dense' kernel, value 4");
    CU_ASSERT_EQUAL(m.params[m.layers[2].param_off + 4], keep); /* the model untouched */
    /* a checkpoint: an infinity in the optimizer state */
    const char *cpath = hard_join(dir, "inf.ckpt");
    float *s1 = calloc(m.n_params, sizeof *s1), *s2 = calloc(m.n_params, sizeof *s2);
    s2[7] = INFINITY;
    CheckpointState st;
    memset(&st, 0, sizeof st);
    Err e2 = {0};
    CU_ASSERT_EQUAL_FATAL(
        checkpoint_save(cpath, &st, m.params, m.n_params, s1, s2, m.n_params, &e2), 0);
    Err e3 = {0};
    CU_ASSERT_EQUAL(
        checkpoint_load(cpath, &st, m.params, m.n_params, s1, s2, m.n_params, 0, 0, &e3), -1);
    HAS(e3.msg, cpath);
    HAS(e3.msg, "non-finite");
    HAS(e3.msg, "opt_s2");
    free(s1);
    free(s2);
    model_free(&m);
    job_free(&j);
}

/* ---------------------------------------------------------------- Darknet */

/* A one-layer Darknet import (1x1 convolution, 2 filters, on 4x4x1) with weights file bytes. */
static int darknet_try(const void *weights, size_t n, Err *e) {
    const char *dir = hard_subdir("dn");
    const char
        *cfg = "[net]\n[convolutional]\nfilters = 2\nsize = 1\nstride = 1\nactivation = linear\n";
    testutil_write_file(dir, "one.cfg", cfg, strlen(cfg));
    testutil_write_file(dir, "one.weights", weights, n);
    char text[1024];
    snprintf(text, sizeof text,
             "[data]\nformat = images\nroot = %s\ntrain_dir = .\ntest_dir = .\nimage_size = 4,4\n"
             "color_mode = grayscale\n[darknet]\ncfg = one.cfg\nweights = one.weights\n"
             "[flatten]\n[dense]\nunits = 2\nactivation = softmax\n"
             "[train]\nloss = sparse_categorical_crossentropy\n",
             dir);
    Job j;
    Err je = {0};
    int rc = job_load(&j, testutil_write_file(dir, "one.job", text, strlen(text)), NULL, 0, &je);
    if (rc) printf("\n    %s\n", je.msg);
    CU_ASSERT_FATAL(rc == 0);
    Model m;
    CU_ASSERT_FATAL(model_plan(&m, j.layers, j.n_layers, (Shape){4, 4, 1, 0}, 1, &je) == 0);
    CU_ASSERT_FATAL(model_alloc(&m, NULL) == 0);
    rc = darknet_load_weights(&j.darknet, &m, e);
    model_free(&m);
    job_free(&j);
    return rc;
}

static void darknet_headers_and_values(void) {
    /* version 0.2.0, a 64-bit seen counter, bias[2], kernel[2] */
    unsigned char b[12 + 8 + 16];
    int32_t head[3] = {0, 2, 0};
    float vals[4] = {0.5f, -0.5f, 1.0f, 2.0f};
    memset(b, 0, sizeof b);
    memcpy(b, head, 12);
    memcpy(b + 20, vals, 16);
    Err e0 = {0};
    CU_ASSERT_EQUAL(darknet_try(b, sizeof b, &e0), 0);
    if (e0.set) printf("\n    %s\n", e0.msg);
    /* an unknown version is named as such, not as a truncation; INT_MAX cannot overflow */
    int32_t odd[3] = {7, 3, 9}, huge[3] = {0x7fffffff, 0x7fffffff, 0};
    memcpy(b, odd, 12);
    Err e1 = {0};
    CU_ASSERT_EQUAL(darknet_try(b, sizeof b, &e1), -1);
    HAS(e1.msg, "unknown Darknet weights version 7.3.9");
    memcpy(b, huge, 12);
    Err e2 = {0};
    CU_ASSERT_EQUAL(darknet_try(b, sizeof b, &e2), -1);
    HAS(e2.msg, "unknown Darknet weights version");
    /* a NaN kernel value names the layer */
    memcpy(b, head, 12);
    vals[3] = NAN;
    memcpy(b + 20, vals, 16);
    Err e3 = {0};
    CU_ASSERT_EQUAL(darknet_try(b, sizeof b, &e3), -1);
    HAS(e3.msg, "non-finite");
    HAS(e3.msg, "dn_conv2d's kernel");
}

/* ---------------------------------------------------------------- class folders */

static void degenerate_class_folders(void) {
    const char *root = hard_subdir("classes");
    char a[700], b[700];
    snprintf(a, sizeof a, "%s/cat", root);
    snprintf(b, sizeof b, "%s/dog", root);
    mkdir(a, 0755);
    write_good_jpeg(hard_join(a, "1.jpg"), 1);
    write_good_jpeg(hard_join(a, "2.jpg"), 2);
    ImageDirOptions o;
    image_dir_options_default(&o);
    o.height = o.width = 16;
    o.quiet = 1;
    /* one class folder: loads, but a classifier cannot be trained on it */
    Dataset d;
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(images_load_dir(&d, root, &o, &e), 0);
    CU_ASSERT_EQUAL(d.n_classes, 1);
    Job j;
    memset(&j, 0, sizeof j);
    j.data.format = DATA_IMAGES;
    j.data.train_dir = (char *)root;
    j.train.loss = LOSS_SPARSE_CATEGORICAL_CROSSENTROPY;
    Err e1 = {0};
    CU_ASSERT_EQUAL(preflight_check_classes(&j, &d, &e1), -1);
    HAS(e1.msg, root);
    HAS(e1.msg, "only one class folder (cat)");
    dataset_free(&d);
    /* an empty class folder is named */
    mkdir(b, 0755);
    Err e2 = {0};
    CU_ASSERT_EQUAL(images_load_dir(&d, root, &o, &e2), -1);
    HAS(e2.msg, "/dog: class folder without readable images");
    /* two classes under binary cross-entropy: fine; three: not */
    write_good_jpeg(hard_join(b, "1.jpg"), 3);
    Err e3 = {0};
    CU_ASSERT_EQUAL_FATAL(images_load_dir(&d, root, &o, &e3), 0);
    j.train.loss = LOSS_BINARY_CROSSENTROPY;
    Err e4 = {0};
    CU_ASSERT_EQUAL(preflight_check_classes(&j, &d, &e4), 0);
    dataset_free(&d);
}

/* ---------------------------------------------------------------- plan memory */

static void plan_memory_named(void) {
    Job j;
    Model m;
    hard_small_model(&j, &m);
    Err e = {0};
    /* the plan (batch 2) against a node of 1 kB: the biggest buffers, the layer, a hint */
    CU_ASSERT_EQUAL(preflight_check_memory(&m, m.n_params, 2, 1, "small.job", 1000, &e), -1);
    HAS(e.msg, "small.job");
    HAS(e.msg, "GB for batch_size 2");
    HAS(e.msg, "biggest buffers");
    HAS(e.msg, "conv2d");
    CU_ASSERT_EQUAL(preflight_check_memory(&m, m.n_params, 2, 1, "small.job", 1ULL << 40, &e), 0);
    /* what fits one rank need not fit a node full of them: each holds its own copy */
    Err e2 = {0};
    CU_ASSERT_EQUAL(
        preflight_check_memory(&m, m.n_params, 2, 1 << 30, "small.job", 1ULL << 40, &e2), -1);
    HAS(e2.msg, "each of 1073741824 ranks");
    model_free(&m);
    job_free(&j);
}

TEST_SUITE(hardening,
           {"a bad JPEG does not spoil the good ones after it", jpeg_bad_does_not_spoil_good},
           {"named pipes, devices and directories are refused unread", special_files_refused},
           {"a gzip IDX header promising too much is refused unallocated", gzip_idx_bomb_refused},
           {"a weights header claiming 2^34 parameters", weights_claiming_huge_count},
           {"values are parsed at their full length", values_parsed_at_full_length},
           {"a UTF-8 byte-order mark is skipped", byte_order_mark_skipped},
           {"[include] from an in-memory file set", include_from_memory},
           {"a failed parse frees what it read (fuzz finding)", failed_parse_frees},
           {"non-finite weights and checkpoints are refused", nonfinite_weights_refused},
           {"Darknet: unknown version, overflowing header, NaN", darknet_headers_and_values},
           {"degenerate class folders are named", degenerate_class_folders},
           {"the plan's memory names buffers, layer and hint", plan_memory_named})
