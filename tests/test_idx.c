/* test_idx.c: the IDX loader (data.c) on files written here, raw and gzip'd, with every kind of
 * damage it must report; dataset_check_labels; and on a memory source (source.h) the tail split
 * and the batch gather that every in-memory split goes through. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data.h"
#include "source.h"
#include "testutil.h"

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* An IDX image file image (malloc'd): magic 00 00 08 03, N, H, W, then pixel i = (i*7+3)&255. */
static unsigned char *make_images(uint32_t n, uint32_t h, uint32_t w, size_t *len) {
    size_t payload = (size_t)n * h * w;
    unsigned char *b = malloc(16 + payload);
    testutil_idx_header(b, 3, (const unsigned[]){n, h, w});
    for (size_t i = 0; i < payload; i++) b[16 + i] = (unsigned char)((i * 7 + 3) & 255);
    *len = 16 + payload;
    return b;
}

/* Labels: label i = i % classes. */
static unsigned char *make_labels(uint32_t n, int classes, size_t *len) {
    unsigned char *b = malloc(8 + n);
    testutil_idx_header(b, 1, (const unsigned[]){n});
    for (uint32_t i = 0; i < n; i++) b[8 + i] = (unsigned char)(i % (uint32_t)classes);
    *len = 8 + n;
    return b;
}

static char *path_in_tmp(const char *name) {
    static char paths[8][512];
    static int slot;
    char *p = paths[slot++ % 8];
    snprintf(p, 512, "%s/%s", testutil_tmpdir(), name);
    return p;
}

static const char *write_raw(const char *name, const void *data, size_t n) {
    return testutil_write_file(testutil_tmpdir(), name, data, n);
}

static const char *write_gz(const char *name, const void *data, size_t n) {
    char *p = path_in_tmp(name);
    gzFile f = gzopen(p, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(gzwrite(f, data, (unsigned)n), (int)n);
    CU_ASSERT_EQUAL(gzclose(f), Z_OK);
    return p;
}


static void check_loaded(const char *ip, const char *lp, uint32_t n, uint32_t h, uint32_t w,
                         int classes) {
    Dataset d;
    Err e = {0};
    int rc = idx_load(&d, ip, lp, &e);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(d.n, (int64_t)n);
    CU_ASSERT_EQUAL(d.h, (int)h);
    CU_ASSERT_EQUAL(d.w, (int)w);
    CU_ASSERT_EQUAL(d.c, 1);
    CU_ASSERT_EQUAL(d.n_classes, classes);
    size_t bad = 0;
    for (size_t i = 0; i < (size_t)n * h * w; i++)
        bad += d.pixels[i] != (uint8_t)((i * 7 + 3) & 255);
    CU_ASSERT_EQUAL(bad, 0);
    bad = 0;
    for (uint32_t i = 0; i < n; i++) bad += d.labels[i] != (int32_t)(i % (uint32_t)classes);
    CU_ASSERT_EQUAL(bad, 0);
    /* one pixel at a known position: sample 2, row 1, column 3 */
    size_t at = 2 * (size_t)h * w + 1 * w + 3;
    CU_ASSERT_EQUAL(d.pixels[at], (uint8_t)((at * 7 + 3) & 255));
    dataset_free(&d);
}

static void load_raw(void) {
    size_t il, ll;
    unsigned char *im = make_images(37, 5, 6, &il);
    unsigned char *lb = make_labels(37, 4, &ll);
    const char *ip = write_raw("raw-img", im, il);
    const char *lp = write_raw("raw-lbl", lb, ll);
    check_loaded(ip, lp, 37, 5, 6, 4);
    free(im);
    free(lb);
}

static void load_gzip(void) {
    size_t il, ll;
    unsigned char *im = make_images(300, 9, 7, &il);
    unsigned char *lb = make_labels(300, 10, &ll);
    const char *ip = write_gz("gz-img.gz", im, il);
    const char *lp = write_gz("gz-lbl.gz", lb, ll);
    CU_ASSERT(testutil_file_size(ip) > 0 &&
              testutil_file_size(ip) < (long)il); /* really compressed */
    check_loaded(ip, lp, 300, 9, 7, 10);
    /* mixed: gzip'd images, raw labels */
    const char *lp2 = write_raw("raw-lbl300", lb, ll);
    check_loaded(ip, lp2, 300, 9, 7, 10);
    free(im);
    free(lb);
}

/* idx_load must fail and the message contain every fragment ("@I" = images path, "@L" = labels
 * path). */
static void expect_fail(const char *ip, const char *lp, const char *const *frags) {
    Dataset d;
    Err e = {0};
    int rc = idx_load(&d, ip, lp, &e);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_TRUE(e.set);
    if (rc == 0) dataset_free(&d);
    for (int i = 0; frags[i]; i++) {
        const char *f = !strcmp(frags[i], "@I") ? ip : !strcmp(frags[i], "@L") ? lp : frags[i];
        if (!strstr(e.msg, f)) printf("\n    message '%s' lacks '%s'\n", e.msg, f);
        HAS(e.msg, f);
    }
}

static void errors(void) {
    size_t il, ll;
    unsigned char *im = make_images(20, 4, 4, &il);
    unsigned char *lb = make_labels(20, 3, &ll);
    const char *ip = write_raw("e-img", im, il);
    const char *lp = write_raw("e-lbl", lb, ll);
    char good_i[512], good_l[512];
    snprintf(good_i, sizeof good_i, "%s", ip);
    snprintf(good_l, sizeof good_l, "%s", lp);
    check_loaded(good_i, good_l, 20, 4, 4, 3);

    /* missing files */
    expect_fail(path_in_tmp("missing-img"), good_l, (const char *[]){"@I", "cannot open", NULL});
    expect_fail(good_i, path_in_tmp("missing-lbl"), (const char *[]){"@L", "cannot open", NULL});

    /* bad magic: labels magic in an image file, and a garbage magic */
    unsigned char *bad = malloc(il);
    memcpy(bad, im, il);
    bad[3] = 1;
    expect_fail(write_raw("magic1", bad, il), good_l,
                (const char *[]){"@I", "magic", "offset 0", NULL});
    memcpy(bad, im, il);
    bad[2] = 0x0D; /* float data */
    expect_fail(write_raw("magic2", bad, il), good_l,
                (const char *[]){"@I", "magic", "offset 0", NULL});
    /* image file given as labels */
    expect_fail(good_i, good_i, (const char *[]){"magic", "offset 0", NULL});

    /* truncated payload, truncated header, tiny file */
    expect_fail(write_raw("trunc1", im, il - 1), good_l, (const char *[]){"@I", "truncated", NULL});
    expect_fail(write_raw("trunc2", im, 10), good_l, (const char *[]){"@I", "header", NULL});
    expect_fail(write_raw("trunc3", im, 2), good_l, (const char *[]){"@I", "too short", NULL});
    expect_fail(write_raw("trunc4", im, 0), good_l, (const char *[]){"@I", NULL});
    expect_fail(good_i, write_raw("trunc5", lb, ll - 3), (const char *[]){"@L", "truncated", NULL});

    /* trailing data */
    unsigned char *longer = malloc(il + 5);
    memcpy(longer, im, il);
    memset(longer + il, 0xAB, 5);
    expect_fail(write_raw("trailing", longer, il + 5), good_l,
                (const char *[]){"@I", "trailing data", NULL});

    /* count mismatch */
    size_t ll2;
    unsigned char *lb19 = make_labels(19, 3, &ll2);
    expect_fail(good_i, write_raw("lbl19", lb19, ll2),
                (const char *[]){"@L", "@I", "19", "20", NULL});

    /* zero dimensions */
    memcpy(bad, im, 16);
    put_be32(bad + 8, 0); /* H = 0 */
    expect_fail(write_raw("zero-h", bad, 16), good_l,
                (const char *[]){"@I", "dimension 1", "offset 8", NULL});
    memcpy(bad, im, 16);
    put_be32(bad + 4, 0); /* N = 0 */
    expect_fail(write_raw("zero-n", bad, 16), good_l, (const char *[]){"@I", "dimension 0", NULL});

    /* truncated gzip stream: the .gz file cut short */
    const char *gz = write_gz("full.gz", im, il);
    long gzn = testutil_file_size(gz);
    CU_ASSERT_FATAL(gzn > 20);
    unsigned char *gzb = malloc((size_t)gzn);
    FILE *f = fopen(gz, "rb");
    CU_ASSERT_EQUAL_FATAL(fread(gzb, 1, (size_t)gzn, f), (size_t)gzn);
    fclose(f);
    check_loaded(gz, good_l, 20, 4, 4, 3);
    expect_fail(write_raw("cut.gz", gzb, (size_t)gzn - 8), good_l,
                (const char *[]){"@I", "truncated", NULL});
    expect_fail(write_raw("cut2.gz", gzb, (size_t)gzn / 2), good_l, (const char *[]){"@I", NULL});
    /* a corrupted byte in the compressed data */
    gzb[gzn / 2] ^= 0xFF;
    expect_fail(write_raw("corrupt.gz", gzb, (size_t)gzn), good_l, (const char *[]){"@I", NULL});

    free(gzb);
    free(bad);
    free(longer);
    free(lb19);
    free(im);
    free(lb);
}

/* A small in-memory data set: n samples of 2x2x1, pixel = 10*i + k, label i % 5. */
static void make_dataset(Dataset *d, int n) {
    memset(d, 0, sizeof *d);
    d->n = n;
    d->h = 2;
    d->w = 2;
    d->c = 1;
    d->n_classes = 5;
    d->pixels = malloc((size_t)n * 4);
    d->labels = malloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < 4; k++) d->pixels[i * 4 + k] = (uint8_t)(10 * i + k);
        d->labels[i] = i % 5;
    }
}

/* make_dataset's samples as a memory source. */
static void make_source(Source *s, int n) {
    Dataset d;
    make_dataset(&d, n);
    source_from_dataset(s, &d, "mem");
    CU_ASSERT_EQUAL(d.pixels, NULL); /* taken over */
}

static void split_tail(void) {
    Source a, b;
    make_source(&a, 10);
    source_split_tail(&a, &b, 3);
    CU_ASSERT_EQUAL(a.n, 7);
    CU_ASSERT_EQUAL(b.n, 3);
    CU_ASSERT_EQUAL(b.h, 2);
    CU_ASSERT_EQUAL(b.w, 2);
    CU_ASSERT_EQUAL(b.c, 1);
    CU_ASSERT_EQUAL(b.n_classes, 5);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(b.labels[i], (7 + i) % 5);
        for (int k = 0; k < 4; k++)
            CU_ASSERT_EQUAL(source_pixels(&b, i)[k], (uint8_t)(10 * (7 + i) + k));
    }
    /* the head is untouched, and outlives the tail (the backend is shared) */
    source_free(&b);
    CU_ASSERT_EQUAL(source_pixels(&a, 6)[3], 63);
    CU_ASSERT_EQUAL(a.labels[6], 1);
    /* a zero-length tail */
    source_split_tail(&a, &b, 0);
    CU_ASSERT_EQUAL(a.n, 7);
    CU_ASSERT_EQUAL(b.n, 0);
    /* a tail of the head: its samples 4..6 */
    Source c;
    source_split_tail(&a, &c, 3);
    CU_ASSERT_EQUAL(a.n, 4);
    CU_ASSERT_EQUAL(c.labels[0], 4);
    CU_ASSERT_EQUAL(source_pixels(&c, 2)[1], 61);
    source_free(&c);
    source_free(&b);
    source_free(&a);
}

static void check_labels(void) {
    Dataset d;
    make_dataset(&d, 12);
    Err e = {0};
    CU_ASSERT_EQUAL(dataset_check_labels(&d, 5, 0, "lbl-file", &e), 0);
    CU_ASSERT_FALSE(e.set);
    Err e2 = {0};
    CU_ASSERT_EQUAL(dataset_check_labels(&d, 4, 0, "lbl-file", &e2), -1);
    HAS(e2.msg, "lbl-file");
    HAS(e2.msg, "sample 4"); /* first label 4 is sample 4 */
    HAS(e2.msg, "label 4");
    d.labels[9] = 12;
    Err e3 = {0};
    CU_ASSERT_EQUAL(dataset_check_labels(&d, 10, 0, "x.idx", &e3), -1);
    HAS(e3.msg, "x.idx");
    HAS(e3.msg, "label 12");
    HAS(e3.msg, "sample 9");
    HAS(e3.msg, "10 classes");
    d.labels[9] = -1;
    Err e4 = {0};
    CU_ASSERT_EQUAL(dataset_check_labels(&d, 10, 0, "x.idx", &e4), -1);
    HAS(e4.msg, "sample 9");
    dataset_free(&d);
}

static void gather_batch(void) {
    Source s;
    make_source(&s, 6);
    int64_t ids[3] = {4, 0, 5};
    float x[12];
    int32_t y[3];
    source_gather_batch(&s, NULL, ids, 3, 0.5f, -1.0f, x, y);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(y[i], (int32_t)(ids[i] % 5));
        for (int k = 0; k < 4; k++)
            CU_ASSERT_DOUBLE_EQUAL(x[i * 4 + k], (10.0 * ids[i] + k) * 0.5 - 1.0, 1e-6);
    }
    source_gather_batch(&s, NULL, ids, 1, 1.0f / 255.0f, 0.0f, x, y);
    CU_ASSERT_DOUBLE_EQUAL(x[3], 43.0 / 255.0, 1e-7);
    /* a batch read ahead (px: the streamed path) gives the same floats as the gather */
    uint8_t px[12];
    for (int i = 0; i < 3; i++) memcpy(px + 4 * i, source_pixels(&s, ids[i]), 4);
    float x2[12];
    int32_t y2[3];
    source_gather_batch(&s, NULL, ids, 3, 0.5f, -1.0f, x, y);
    source_gather_batch(&s, px, ids, 3, 0.5f, -1.0f, x2, y2);
    CU_ASSERT_EQUAL(memcmp(x, x2, sizeof x), 0);
    CU_ASSERT_EQUAL(memcmp(y, y2, sizeof y), 0);
    /* on a view, ids count from the view's first sample */
    Source tail;
    source_split_tail(&s, &tail, 2);
    int64_t one = 1;
    source_gather_batch(&tail, NULL, &one, 1, 1.0f, 0.0f, x, y);
    CU_ASSERT_EQUAL(y[0], 0); /* sample 5 */
    CU_ASSERT_DOUBLE_EQUAL(x[2], 52.0, 1e-6);
    source_free(&tail);
    source_free(&s);
}

TEST_SUITE(idx, {"load a raw IDX pair", load_raw}, {"load gzip'd IDX files", load_gzip},
           {"damaged or missing files are reported", errors},
           {"source_split_tail views the last samples", split_tail},
           {"check_labels names the sample", check_labels},
           {"source_gather_batch scales pixels, read ahead or in place", gather_batch})
