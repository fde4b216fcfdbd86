/* gen_seeds.c: writes the binary seed corpora of the fuzz targets (`make fuzz` runs it into
 * build/fuzz/seeds/TARGET/ before fuzzing; the text seeds are committed in tests/fuzz/seeds/).
 * Each seed is a valid input of its target, written by the project's own writers where there
 * is one, so that fuzzing starts from inputs that get past the first checks.
 *
 * usage: gen_seeds OUTDIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <zlib.h>

#include "checkpoint.h"
#include "fuzz_util.h"
#include "images.h"
#include "weights.h"

#if CONVNET_HDF5
#include <hdf5.h>
#endif

static const char *outdir;

static void put(const char *target, const char *name, const void *a, size_t na, const void *b,
                size_t nb) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", outdir, target);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/%s/%s", outdir, target, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(a, 1, na, f) != na || (nb && fwrite(b, 1, nb, f) != nb) || fclose(f)) {
        perror(p);
        exit(1);
    }
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    unsigned char *b = malloc(*n + 1);
    if (fread(b, 1, *n, f) != *n) exit(1);
    fclose(f);
    return b;
}

static void seeds_idx(void) {
    /* 2 images of 3x3 and their labels, "%%"-separated, plain (mode 0) and gzip'd (mode 1) */
    unsigned char img[16 + 18] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 3};
    for (int i = 0; i < 18; i++) img[16 + i] = (unsigned char)(i * 13);
    unsigned char lbl[8 + 2] = {0, 0, 8, 1, 0, 0, 0, 2, 1, 0};
    unsigned char b[1 + sizeof img + 4 + sizeof lbl];
    for (int mode = 0; mode < 2; mode++) {
        b[0] = (unsigned char)mode;
        memcpy(b + 1, img, sizeof img);
        memcpy(b + 1 + sizeof img, "\n%%\n", 4);
        memcpy(b + 5 + sizeof img, lbl, sizeof lbl);
        put("idx", mode ? "gzip-here" : "plain", b, sizeof b, NULL, 0);
    }
    /* a gzip'd images file as the fuzzer sees it (mode 0) */
    unsigned char gz[256];
    uLongf gl = sizeof gz;
    z_stream z = {0};
    deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    z.next_in = img;
    z.avail_in = sizeof img;
    z.next_out = gz;
    z.avail_out = (uInt)gl;
    deflate(&z, Z_FINISH);
    gl = sizeof gz - z.avail_out;
    deflateEnd(&z);
    unsigned char c[1 + 256 + 4 + sizeof lbl];
    c[0] = 0;
    memcpy(c + 1, gz, gl);
    memcpy(c + 1 + gl, "\n%%\n", 4);
    memcpy(c + 5 + gl, lbl, sizeof lbl);
    put("idx", "gzip-file", c, 5 + gl + sizeof lbl, NULL, 0);
}

static void seeds_jpeg(const char *tmp) {
    uint8_t pix[20 * 12 * 4];
    for (size_t i = 0; i < sizeof pix; i++) pix[i] = (uint8_t)(i * 29 + (i >> 4));
    const struct {
        int h, w, c, shape;
        const char *name;
    } s[] = {{12, 20, 3, 0x0b, "rgb"}, {12, 20, 1, 0x12, "gray"}};
    char path[1200];
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/seed.jpg", tmp);
        Err e = {0};
        if (image_write_jpeg(path, pix, s[i].h, s[i].w, s[i].c, 75, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            exit(1);
        }
        size_t n;
        unsigned char *b = slurp(path, &n);
        unsigned char shape = (unsigned char)s[i].shape;
        put("jpeg", s[i].name, &shape, 1, b, n);
        free(b);
    }
    /* CMYK (the Adobe-inverted conversion path) and 4:2:0 progressive */
    tjhandle tj = tjInitCompress();
    unsigned char *jpg = NULL;
    unsigned long size = 0;
    unsigned char shape = 0x1b;
    if (tjCompress2(tj, pix, 20, 0, 12, TJPF_CMYK, &jpg, &size, TJSAMP_444, 80, 0) == 0)
        put("jpeg", "cmyk", &shape, 1, jpg, size);
    tjFree(jpg);
    jpg = NULL;
    if (tjCompress2(tj, pix, 20, 0, 12, TJPF_RGB, &jpg, &size, TJSAMP_420, 60,
                    TJFLAG_PROGRESSIVE) == 0)
        put("jpeg", "progressive", &shape, 1, jpg, size);
    tjFree(jpg);
    tjDestroy(tj);
}

static void seeds_weights_checkpoint(const char *tmp) {
    Job j;
    Model m;
    if (fuzz_model("[conv2d]\nfilters = 2\nkernel_size = 3\n[flatten]\n[dense]\nunits = 3\n"
                   "activation = softmax\n",
                   (Shape){4, 4, 1, 0}, 1 << 28, &j, &m))
        exit(1);
    char path[1200];
    snprintf(path, sizeof path, "%s/seed.weights", tmp);
    Err e = {0};
    if (weights_save(path, &m, &e)) exit(1);
    size_t n;
    unsigned char *b = slurp(path, &n);
    put("weights", "small", b, n, NULL, 0);
    free(b);
    model_free(&m);
    job_free(&j);
    /* the checkpoint target's 23 parameters and optimizer values */
    float p[23], s1[23], s2[23];
    for (int i = 0; i < 23; i++) {
        p[i] = 0.1f * (float)i - 1;
        s1[i] = 0.01f * (float)i;
        s2[i] = 0;
    }
    CheckpointState st;
    memset(&st, 0, sizeof st);
    st.epoch = 2;
    st.step = 17;
    snprintf(path, sizeof path, "%s/seed.ckpt", tmp);
    if (checkpoint_save(path, &st, p, 23, s1, s2, 23, &e)) exit(1);
    b = slurp(path, &n);
    put("checkpoint", "small", b, n, NULL, 0);
    free(b);
    if (checkpoint_save(path, &st, p, 23, s1, s2, 0, &e)) exit(1);
    b = slurp(path, &n);
    put("checkpoint", "no-opt", b, n, NULL, 0);
    free(b);
}

static void seeds_darknet(void) {
    const char *cfg = "[net]\nwidth=8\nheight=8\nchannels=1\n"
                      "[convolutional]\nbatch_normalize=1\nfilters=2\nsize=3\nstride=1\npad=1\n"
                      "activation=leaky\n[maxpool]\nsize=2\nstride=2\n"
                      "[convolutional]\nfilters=3\nsize=1\nstride=1\npad=1\nactivation=linear\n"
                      "[avgpool]\n[softmax]\ngroups=1\n\n%%\n";
    /* version 0.2.0, 64-bit images seen, then conv 1 (bias, scale, mean, var: 2 each; kernel
     * 2x1x3x3) and conv 2 (bias 3, kernel 3x2x1x1) */
    unsigned char w[20 + 4 * 35];
    int32_t head[3] = {0, 2, 0};
    memset(w, 0, sizeof w);
    memcpy(w, head, 12);
    for (int i = 0; i < 35; i++) {
        float v = (i >= 6 && i < 8) ? 1.0f : 0.05f * (float)(i % 7) - 0.1f; /* var > 0 */
        memcpy(w + 20 + 4 * i, &v, 4);
    }
    put("darknet", "small", cfg, strlen(cfg), w, sizeof w);
}

#if CONVNET_HDF5
static void h5_names(hid_t obj, const char *attr, const char *const *names, int n) {
    if (n == 0) { /* Keras writes an empty float array for a layer without weights */
        hsize_t zero = 0;
        hid_t sp = H5Screate_simple(1, &zero, NULL);
        hid_t a = H5Acreate2(obj, attr, H5T_NATIVE_FLOAT, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Aclose(a);
        H5Sclose(sp);
        return;
    }
    size_t len = 1;
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) > len) len = strlen(names[i]);
    char *buf = calloc((size_t)n, len);
    for (int i = 0; i < n; i++) memcpy(buf + (size_t)i * len, names[i], strlen(names[i]));
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, len);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    hsize_t dim = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dim, NULL);
    hid_t a = H5Acreate2(obj, attr, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, buf);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    free(buf);
}

static void h5_data(hid_t g, const char *name, int rank, const hsize_t *dims, float v) {
    hsize_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    float *x = malloc(n * sizeof *x);
    for (hsize_t i = 0; i < n; i++) x[i] = v + 0.25f * (float)i;
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t d = H5Dcreate2(g, name, H5T_IEEE_F32LE, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(d);
    H5Pclose(lcpl);
    H5Sclose(sp);
    free(x);
}

static void seeds_h5(const char *tmp) {
    char path[1200];
    snprintf(path, sizeof path, "%s/seed.h5", tmp);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const char *layers[] = {"conv", "flatten", "dense"};
    h5_names(f, "layer_names", layers, 3);
    const char *cw[] = {"conv/kernel:0", "conv/bias:0"}, *dw[] = {"dense/kernel:0", "dense/bias:0"};
    hid_t g = H5Gcreate2(f, "conv", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    h5_names(g, "weight_names", cw, 2);
    h5_data(g, cw[0], 4, (const hsize_t[]){1, 1, 1, 2}, 0.5f);
    h5_data(g, cw[1], 1, (const hsize_t[]){2}, 0.0f);
    H5Gclose(g);
    g = H5Gcreate2(f, "flatten", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    h5_names(g, "weight_names", NULL, 0);
    H5Gclose(g);
    g = H5Gcreate2(f, "dense", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    h5_names(g, "weight_names", dw, 2);
    h5_data(g, dw[0], 2, (const hsize_t[]){8, 2}, -1.0f);
    h5_data(g, dw[1], 1, (const hsize_t[]){2}, 0.1f);
    H5Gclose(g);
    H5Fclose(f);
    size_t n;
    unsigned char *b = slurp(path, &n);
    put("h5", "small", b, n, NULL, 0);
    free(b);
}

#endif

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds OUTDIR\n");
        return 2;
    }
    outdir = argv[1];
    mkdir(outdir, 0755);
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s/.tmp", outdir);
    mkdir(tmp, 0755);
    seeds_idx();
    seeds_jpeg(tmp);
    seeds_weights_checkpoint(tmp);
    seeds_darknet();
#if CONVNET_HDF5
    seeds_h5(tmp);
#endif
    fuzz_memfs_clear();
    return 0;
}
