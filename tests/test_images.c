/* test_images.c: JPEG decoding (known pixels, grayscale and CMYK sources), the bilinear
 * resize against an independent half-pixel reference, DCT-scaled decoding of a large image,
 * `decode = full` (the full-size pipeline, the same in the loader and predict, the job key),
 * image folders (class order, labels, ignored files, bad images skipped or fatal in strict
 * mode), JPEG writing, and the real dogs-vs-cats-small validation folder when present. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>

#include "images.h"
#include "job.h"
#include "testutil.h"

/* Compress pix (h, w, pf) with tjCompress2 at quality 100 and return the bytes (tjFree). */
static unsigned char *jpeg_bytes(const uint8_t *pix, int h, int w, int pf, int samp,
                                 unsigned long *size) {
    tjhandle tj = tjInitCompress();
    CU_ASSERT_PTR_NOT_NULL_FATAL(tj);
    unsigned char *jpg = NULL;
    *size = 0;
    int rc = tjCompress2(tj, pix, w, 0, h, pf, &jpg, size, samp, 100, TJFLAG_ACCURATEDCT);
    CU_ASSERT_EQUAL(rc, 0);
    tjDestroy(tj);
    return jpg;
}

static const char *write_jpeg(const char *dir, const char *name, const uint8_t *pix, int h, int w,
                              int pf, int samp) {
    unsigned long n;
    unsigned char *jpg = jpeg_bytes(pix, h, w, pf, samp, &n);
    const char *p = testutil_write_file(dir, name, jpg, n);
    tjFree(jpg);
    return p;
}

/* mkdir a/b; the path goes to out (out must not alias a or b). */
static const char *subdir(char *out, const char *a, const char *b) {
    if (snprintf(out, 512, "%s/%s", a, b) >= 512) CU_FAIL_FATAL("path too long");
    mkdir(out, 0755);
    return out;
}

/* 32x32 RGB: four 16x16 quadrants of flat colour (aligned to the 8x8 DCT blocks). */
static const uint8_t QUAD[4][3] = {{200, 30, 40}, {20, 180, 60}, {40, 50, 220}, {128, 128, 128}};
static void quadrants(uint8_t *pix) {
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++)
            memcpy(pix + (y * 32 + x) * 3, QUAD[(y >= 16) * 2 + (x >= 16)], 3);
}

static void test_decode_known_pixels(void) {
    uint8_t src[32 * 32 * 3], out[32 * 32 * 3];
    quadrants(src);
    const char *path = write_jpeg(testutil_tmpdir(), "img_quad.jpg", src, 32, 32, TJPF_RGB,
                                  TJSAMP_444);
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(image_load_file(path, 32, 32, 3, 0, out, &e), 0);
    int worst = 0;
    for (int i = 0; i < 32 * 32 * 3; i++) {
        int d = abs((int)out[i] - (int)src[i]);
        if (d > worst) worst = d;
    }
    CU_ASSERT(worst <= 3);
    /* grayscale output of a colour JPEG: libjpeg's Y = 0.299 R + 0.587 G + 0.114 B */
    uint8_t g[32 * 32];
    CU_ASSERT_EQUAL_FATAL(image_load_file(path, 32, 32, 1, 0, g, &e), 0);
    double y0 = 0.299 * 200 + 0.587 * 30 + 0.114 * 40;
    CU_ASSERT(fabs(g[0] - y0) <= 3);
}

static void test_grayscale_jpeg_is_rgb(void) {
    uint8_t src[16 * 16], out[16 * 16 * 3];
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++) src[y * 16 + x] = x < 8 ? 100 : 180;
    const char *path = write_jpeg(testutil_tmpdir(), "img_gray.jpg", src, 16, 16, TJPF_GRAY,
                                  TJSAMP_GRAY);
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(image_load_file(path, 16, 16, 3, 0, out, &e), 0);
    int worst = 0;
    for (int i = 0; i < 16 * 16; i++)
        for (int k = 0; k < 3; k++) {
            int d = abs((int)out[i * 3 + k] - (int)src[i]);
            if (d > worst) worst = d;
        }
    CU_ASSERT(worst <= 2);
}

static void test_cmyk_jpeg_is_rgb(void) {
    /* Adobe-style CMYK as TurboJPEG stores it: rgb = cmy * k / 255 */
    uint8_t src[16 * 16 * 4], out[16 * 16 * 3];
    for (int i = 0; i < 16 * 16; i++) {
        const uint8_t left[4] = {255, 128, 0, 255}, right[4] = {255, 255, 255, 128};
        memcpy(src + i * 4, (i % 16) < 8 ? left : right, 4);
    }
    const char *path = write_jpeg(testutil_tmpdir(), "img_cmyk.jpg", src, 16, 16, TJPF_CMYK,
                                  TJSAMP_444);
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(image_load_file(path, 16, 16, 3, 0, out, &e), 0);
    const uint8_t *l = out + (4 * 16 + 2) * 3, *r = out + (4 * 16 + 12) * 3;
    CU_ASSERT(abs(l[0] - 255) <= 4 && abs(l[1] - 128) <= 4 && abs(l[2] - 0) <= 4);
    CU_ASSERT(abs(r[0] - 128) <= 4 && abs(r[1] - 128) <= 4 && abs(r[2] - 128) <= 4);
}

/* Independent reference: src = (dst + 0.5) * in / out - 0.5 clamped to [0, in - 1]. */
static double ref_sample(const uint8_t *s, int sh, int sw, int c, double sy, double sx, int k) {
    sy = sy < 0 ? 0 : (sy > sh - 1 ? sh - 1 : sy);
    sx = sx < 0 ? 0 : (sx > sw - 1 ? sw - 1 : sx);
    int y0 = (int)sy, x0 = (int)sx;
    int y1 = y0 + 1 < sh ? y0 + 1 : sh - 1, x1 = x0 + 1 < sw ? x0 + 1 : sw - 1;
    double ty = sy - y0, tx = sx - x0;
    double a = s[(y0 * sw + x0) * c + k], b = s[(y0 * sw + x1) * c + k];
    double cc = s[(y1 * sw + x0) * c + k], d = s[(y1 * sw + x1) * c + k];
    return (1 - ty) * ((1 - tx) * a + tx * b) + ty * ((1 - tx) * cc + tx * d);
}

static void check_resize(int sh, int sw, int dh, int dw, int c) {
    uint8_t *s = malloc((size_t)sh * sw * c), *d = malloc((size_t)dh * dw * c);
    unsigned st = 12345;
    for (int i = 0; i < sh * sw * c; i++) {
        st = st * 1103515245u + 12345u;
        s[i] = (uint8_t)(st >> 16);
    }
    image_resize_bilinear(s, sh, sw, d, dh, dw, c);
    double worst = 0;
    for (int y = 0; y < dh; y++)
        for (int x = 0; x < dw; x++)
            for (int k = 0; k < c; k++) {
                double sy = (y + 0.5) * sh / dh - 0.5, sx = (x + 0.5) * sw / dw - 0.5;
                double r = ref_sample(s, sh, sw, c, sy, sx, k);
                double diff = fabs(d[(y * dw + x) * c + k] - r);
                if (diff > worst) worst = diff;
            }
    CU_ASSERT(worst <= 0.51);
    free(s);
    free(d);
}

static void test_bilinear_resize(void) {
    check_resize(5, 7, 9, 12, 3);    /* up */
    check_resize(30, 40, 11, 13, 3); /* down */
    check_resize(10, 10, 10, 10, 1); /* identity */
    check_resize(17, 3, 4, 9, 1);    /* mixed */
}

/* A large flat-coloured image decoded with DCT scaling (default) and at full size (exact). */
static void test_large_image_dct_scaling(void) {
    const int H = 480, W = 640;
    uint8_t *src = malloc((size_t)H * W * 3);
    for (int i = 0; i < H * W; i++) {
        src[i * 3] = 90;
        src[i * 3 + 1] = 160;
        src[i * 3 + 2] = 30;
    }
    char dir[512], only[512];
    subdir(dir, testutil_tmpdir(), "img_large");
    subdir(only, dir, "only");
    char name[64];
    snprintf(name, sizeof name, "only/big.jpg");
    write_jpeg(dir, name, src, H, W, TJPF_RGB, TJSAMP_420);
    free(src);
    for (int exact = 0; exact <= 1; exact++) {
        ImageDirOptions o;
        image_dir_options_default(&o);
        o.height = 60;
        o.width = 50;
        o.exact = exact;
        Dataset d;
        Err e = {0};
        CU_ASSERT_EQUAL_FATAL(images_load_dir(&d, dir, &o, &e), 0);
        CU_ASSERT_EQUAL(d.n, 1);
        int worst = 0;
        for (int i = 0; i < 60 * 50; i++) {
            int dd = abs(d.pixels[i * 3] - 90) + abs(d.pixels[i * 3 + 1] - 160) +
                     abs(d.pixels[i * 3 + 2] - 30);
            if (dd > worst) worst = dd;
        }
        CU_ASSERT(worst <= 6);
        dataset_free(&d);
    }
}

/* A textured 480x640 JPEG (a checkerboard of 3-pixel cells over a gradient: detail that the
 * DCT-scaled decode smooths away) decoded for a 60x50 target: with exact (decode = full) the
 * folder loader and image_load_file give the full-size decode resized by the half-pixel
 * reference, bit for bit up to rounding; without it both give the same DCT-scaled pixels,
 * visibly different. A job's `decode` key sets the flag and rejects other values by line. */
static void test_decode_full(void) {
    enum { SH = 480, SW = 640, DH = 60, DW = 50 };
    uint8_t *src = malloc((size_t)SH * SW * 3);
    for (int y = 0; y < SH; y++)
        for (int x = 0; x < SW; x++)
            for (int k = 0; k < 3; k++)
                src[(y * SW + x) * 3 + k] = (uint8_t)((((y / 3) + (x / 3)) & 1 ? 150 : 40) +
                                                      (x * 60 / SW) + k * 10);
    char dir[512], only[512];
    subdir(dir, testutil_tmpdir(), "img_decode");
    subdir(only, dir, "only");
    const char *path = write_jpeg(dir, "only/tex.jpg", src, SH, SW, TJPF_RGB, TJSAMP_444);
    char file[512];
    snprintf(file, sizeof file, "%s", path);
    /* the full-size decode, resized here by the reference */
    unsigned long n = (unsigned long)testutil_file_size(file);
    unsigned char *jpg = malloc(n);
    FILE *f = fopen(file, "rb");
    CU_ASSERT_FATAL(f && fread(jpg, 1, n, f) == n);
    fclose(f);
    uint8_t *full = malloc((size_t)SH * SW * 3);
    tjhandle tj = tjInitDecompress();
    CU_ASSERT_EQUAL_FATAL(tjDecompress2(tj, jpg, n, full, SW, 0, SH, TJPF_RGB, 0), 0);
    tjDestroy(tj);
    uint8_t got[2][DH * DW * 3];
    double worst_full = 0, diff_scaled = 0;
    for (int exact = 0; exact <= 1; exact++) {
        ImageDirOptions o;
        image_dir_options_default(&o);
        o.height = DH;
        o.width = DW;
        o.exact = exact;
        Dataset d;
        Err e = {0};
        CU_ASSERT_EQUAL_FATAL(images_load_dir(&d, dir, &o, &e), 0);
        CU_ASSERT_EQUAL_FATAL(d.n, 1);
        uint8_t one[DH * DW * 3];
        CU_ASSERT_EQUAL_FATAL(image_load_file(file, DH, DW, 3, exact, one, &e), 0);
        CU_ASSERT_EQUAL(memcmp(one, d.pixels, sizeof one), 0); /* predict decodes as training */
        memcpy(got[exact], d.pixels, sizeof one);
        dataset_free(&d);
    }
    for (int y = 0; y < DH; y++)
        for (int x = 0; x < DW; x++)
            for (int k = 0; k < 3; k++) {
                double sy = (y + 0.5) * SH / DH - 0.5, sx = (x + 0.5) * SW / DW - 0.5;
                double r = ref_sample(full, SH, SW, 3, sy, sx, k);
                size_t i = ((size_t)y * DW + x) * 3 + k;
                worst_full = fmax(worst_full, fabs(got[1][i] - r));
                diff_scaled += fabs((double)got[0][i] - got[1][i]);
            }
    diff_scaled /= DH * DW * 3;
    printf("\n    decode full: worst %.2f levels from the reference; scaled differs by %.1f on "
           "average ",
           worst_full, diff_scaled);
    CU_ASSERT(worst_full <= 0.51);
    CU_ASSERT(diff_scaled > 2.0);
    free(src);
    free(jpg);
    free(full);

    /* the job key */
    char text[1024];
    snprintf(text, sizeof text,
             "[data]\nformat = images\nroot = %s\ntrain_dir = .\ntest_dir = .\nimage_size = 6,5\n"
             "decode = %%s\n[flatten]\n[dense]\nunits = 2\nactivation = softmax\n"
             "[train]\nloss = sparse_categorical_crossentropy\n",
             dir);
    const char *value[3] = {"full", "scaled", "half"};
    for (int v = 0; v < 3; v++) {
        char job_text[1100];
        snprintf(job_text, sizeof job_text, text, value[v]);
        char jp[600];
        snprintf(jp, sizeof jp, "%s",
                 testutil_write_file(testutil_tmpdir(), "decode.job", job_text, strlen(job_text)));
        Job j;
        Err e = {0};
        int rc = job_load(&j, jp, NULL, 0, &e);
        if (v < 2) {
            CU_ASSERT_EQUAL(rc, 0);
            CU_ASSERT_EQUAL(j.data.decode_full, v == 0);
        } else {
            char where[700];
            snprintf(where, sizeof where, "%s:7:", jp);
            CU_ASSERT_EQUAL(rc, -1);
            CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, where));
            CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "scaled"));
            CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "half"));
            if (!strstr(e.msg, where)) printf("\n    message: %s\n", e.msg);
        }
        job_free(&j);
    }
}

/* Two classes (created in reverse order), ignored files, four kinds of bad image. */
static const char *build_folder(void) {
    static char root[512];
    char dogs[512], cats[512], hidden[512];
    subdir(root, testutil_tmpdir(), "img_ds");
    subdir(dogs, root, "b_dogs");
    subdir(cats, root, "a_cats");
    subdir(hidden, root, ".hidden");
    testutil_write_file(root, "README.txt", "not a class", 11);
    uint8_t pix[16 * 16 * 3];
    /* cats: 2.jpg (value 60), 1.jpg (value 20); dogs: x.jpg (value 200) */
    memset(pix, 60, sizeof pix);
    write_jpeg(cats, "2.jpg", pix, 16, 16, TJPF_RGB, TJSAMP_444);
    memset(pix, 20, sizeof pix);
    write_jpeg(cats, "1.JPEG", pix, 16, 16, TJPF_RGB, TJSAMP_444);
    memset(pix, 200, sizeof pix);
    write_jpeg(dogs, "x.jpg", pix, 16, 16, TJPF_RGB, TJSAMP_444);
    write_jpeg(root, ".hidden/h.jpg", pix, 16, 16, TJPF_RGB, TJSAMP_444);
    testutil_write_file(cats, "notes.txt", "hello", 5);
    /* bad images */
    testutil_write_file(dogs, "empty.jpg", "", 0);
    testutil_write_file(dogs, "text.jpg", "this is not a jpeg\n", 19);
    uint8_t noise[64 * 64 * 3];
    unsigned st = 7;
    for (size_t i = 0; i < sizeof noise; i++) {
        st = st * 1103515245u + 12345u;
        noise[i] = (uint8_t)(st >> 16);
    }
    unsigned long n;
    unsigned char *jpg = jpeg_bytes(noise, 64, 64, TJPF_RGB, TJSAMP_444, &n);
    testutil_write_file(dogs, "trunc.jpg", jpg, n * 6 / 10);
    tjFree(jpg);
    /* a valid small JPEG whose SOF header claims 60000 x 60000 pixels */
    jpg = jpeg_bytes(pix, 16, 16, TJPF_RGB, TJSAMP_444, &n);
    for (unsigned long i = 2; i + 8 < n; i++)
        if (jpg[i] == 0xFF && jpg[i + 1] == 0xC0) {
            jpg[i + 5] = 0xEA; /* height 0xEA60 = 60000 */
            jpg[i + 6] = 0x60;
            jpg[i + 7] = 0xEA; /* width */
            jpg[i + 8] = 0x60;
            break;
        }
    testutil_write_file(dogs, "huge.jpg", jpg, n);
    tjFree(jpg);
    return root;
}

static void test_folder_dataset(void) {
    const char *root = build_folder();
    ImageDirOptions o;
    image_dir_options_default(&o);
    o.height = 8;
    o.width = 8;
    Dataset d;
    Err e = {0};
    fprintf(stderr, "\n(four 'skipping' warnings expected)\n");
    CU_ASSERT_EQUAL_FATAL(images_load_dir(&d, root, &o, &e), 0);
    CU_ASSERT_EQUAL(d.n, 3);
    CU_ASSERT_EQUAL(d.skipped, 4);
    CU_ASSERT_EQUAL(d.n_classes, 2);
    CU_ASSERT_EQUAL(d.h, 8);
    CU_ASSERT_EQUAL(d.w, 8);
    CU_ASSERT_EQUAL(d.c, 3);
    CU_ASSERT_STRING_EQUAL(d.class_names[0], "a_cats");
    CU_ASSERT_STRING_EQUAL(d.class_names[1], "b_dogs");
    if (d.n == 3) {
        CU_ASSERT_EQUAL(d.labels[0], 0);
        CU_ASSERT_EQUAL(d.labels[1], 0);
        CU_ASSERT_EQUAL(d.labels[2], 1);
        /* files sorted by name inside a class: 1.JPEG then 2.jpg */
        CU_ASSERT(abs(d.pixels[0] - 20) <= 2);
        CU_ASSERT(abs(d.pixels[8 * 8 * 3] - 60) <= 2);
        CU_ASSERT(abs(d.pixels[2 * 8 * 8 * 3] - 200) <= 2);
    }
    dataset_free(&d);

    /* strict: the first bad file in listing order is named */
    o.strict = 1;
    Err e2 = {0};
    CU_ASSERT_EQUAL(images_load_dir(&d, root, &o, &e2), -1);
    CU_ASSERT(e2.set);
    CU_ASSERT_PTR_NOT_NULL(strstr(e2.msg, "b_dogs/empty.jpg"));
    CU_ASSERT_PTR_NULL(d.pixels);

    /* each bad file alone, strict, names its reason */
    static const char *const bad[][2] = {{"empty.jpg", "empty"},
                                         {"text.jpg", "not a JPEG"},
                                         {"trunc.jpg", "JPEG"},
                                         {"huge.jpg", "too large"}};
    for (int i = 0; i < 4; i++) {
        char p[600];
        Err e3 = {0};
        uint8_t out[8 * 8 * 3];
        snprintf(p, sizeof p, "%s/b_dogs/%s", root, bad[i][0]);
        CU_ASSERT_EQUAL(image_load_file(p, 8, 8, 3, 0, out, &e3), -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(e3.msg, bad[i][0]));
        CU_ASSERT_PTR_NOT_NULL(strstr(e3.msg, bad[i][1]));
    }
}

static void test_folder_errors(void) {
    ImageDirOptions o;
    image_dir_options_default(&o);
    Dataset d;
    Err e = {0};
    CU_ASSERT_EQUAL(images_load_dir(&d, "/nonexistent/convnet-images", &o, &e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "/nonexistent/convnet-images"));
    char empty[512];
    subdir(empty, testutil_tmpdir(), "img_noclass");
    Err e2 = {0};
    CU_ASSERT_EQUAL(images_load_dir(&d, empty, &o, &e2), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e2.msg, "no class"));
    o.channels = 2;
    Err e3 = {0};
    CU_ASSERT_EQUAL(images_load_dir(&d, empty, &o, &e3), -1);
}

static void test_write_jpeg_roundtrip(void) {
    uint8_t src[32 * 32 * 3], out[32 * 32 * 3];
    quadrants(src);
    char p[600];
    snprintf(p, sizeof p, "%s/img_written.jpg", testutil_tmpdir());
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(image_write_jpeg(p, src, 32, 32, 3, 100, &e), 0);
    CU_ASSERT_EQUAL_FATAL(image_load_file(p, 32, 32, 3, 0, out, &e), 0);
    int worst = 0;
    for (int i = 0; i < 32 * 32 * 3; i++)
        if (abs(out[i] - src[i]) > worst) worst = abs(out[i] - src[i]);
    CU_ASSERT(worst <= 3);
    CU_ASSERT_EQUAL(image_write_jpeg(p, src, 32, 32, 2, 90, &e), -1);
}

static void test_dogs_vs_cats_validation(void) {
    const char *shared = testutil_shared_data("dogs-vs-cats-small validation folder");
    if (!shared) return;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/dogs-vs-cats-small/validation", shared);
    struct stat st;
    if (stat(dir, &st) != 0) {
        testutil_skip("dogs-vs-cats-small", "the folder is absent under ../shared/data", 1);
        return;
    }
    ImageDirOptions o;
    image_dir_options_default(&o); /* 180x180 rgb */
    Dataset d;
    Err e = {0};
    int rc = images_load_dir(&d, dir, &o, &e);
    if (rc != 0) fprintf(stderr, "%s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(d.n, 1000);
    CU_ASSERT_EQUAL(d.skipped, 0);
    CU_ASSERT_EQUAL(d.n_classes, 2);
    CU_ASSERT_EQUAL(d.h, 180);
    CU_ASSERT_EQUAL(d.w, 180);
    CU_ASSERT_EQUAL(d.c, 3);
    CU_ASSERT_STRING_EQUAL(d.class_names[0], "cats");
    CU_ASSERT_STRING_EQUAL(d.class_names[1], "dogs");
    int64_t ones = 0;
    for (int64_t i = 0; i < d.n; i++) ones += d.labels[i];
    CU_ASSERT_EQUAL(ones, 500);
    dataset_free(&d);
}

TEST_SUITE(images, {"decode known pixels", test_decode_known_pixels},
           {"grayscale JPEG decodes to RGB", test_grayscale_jpeg_is_rgb},
           {"CMYK JPEG decodes to RGB", test_cmyk_jpeg_is_rgb},
           {"bilinear resize = half-pixel reference", test_bilinear_resize},
           {"large image, DCT scaling and exact", test_large_image_dct_scaling},
           {"decode = full: Keras's full-size pipeline, as predict", test_decode_full},
           {"folder data set: order, labels, bad images", test_folder_dataset},
           {"folder data set errors", test_folder_errors},
           {"write JPEG round trip", test_write_jpeg_roundtrip},
           {"dogs-vs-cats-small validation", test_dogs_vs_cats_validation})
