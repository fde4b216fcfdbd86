/* pack_layout.c: the measurement behind the pack's record layout (docs/pack.md): bytes per
 * record and read rate per core of
 *   raw     : the decoded, resized uint8 pixels (what the pack stores): CRC-32 + copy out;
 *   jpeg QQ : those pixels re-encoded as a 4:4:4 JPEG at quality QQ: CRC-32 + decode, and how far
 *             the decoded pixels are from the raw ones (re-encoding is lossy);
 *   source  : the original JPEG file's bytes (what streaming from the folder reads): decode +
 *             DCT scaling + bilinear resize, as the folder loader does.
 * Usage: pack_layout DIR H W ROUNDS  (DIR: a class-folder data set; one thread; rounds of the
 * variants alternate, medians printed). Prints one JSON line per variant.
 * Also: pack_layout --open PACK ROUNDS: the time pack_open takes (its O(N) table checks: the
 * start-up a pack adds), median of ROUNDS, page cache warm. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "common.h"
#include "images.h"
#include "pack.h"

typedef struct {
    unsigned char *buf;
    unsigned long n;
} Blob;

static int n_img;
static Blob *src;    /* the original files */
static uint8_t *raw; /* n_img decoded records */
static Blob *enc[2]; /* re-encoded at QUALITY[q] */
static const int QUALITY[2] = {90, 95};

static void load(const char *dir, int h, int w) {
    const char *cls[2] = {"cats", "dogs"};
    int cap = 4096;
    src = xcalloc((size_t)cap, sizeof *src);
    for (int k = 0; k < 2; k++) {
        char *d = path_join(dir, cls[k]);
        DIR *dh = opendir(d);
        if (!dh) die(EXIT_BAD_INPUT, "%s: cannot list", d);
        struct dirent *de;
        while ((de = readdir(dh)) && n_img < cap) {
            if (!strstr(de->d_name, ".jpg")) continue;
            char *p = path_join(d, de->d_name);
            char *text = NULL;
            size_t len = 0;
            Err e = {0};
            if (file_read_text(p, &text, &len, &e) == 0) {
                src[n_img].buf = (unsigned char *)text;
                src[n_img].n = len;
                n_img++;
            }
            free(p);
        }
        closedir(dh);
        free(d);
    }
    size_t rb = (size_t)h * w * 3;
    raw = xmalloc(rb * (size_t)n_img);
    for (int i = 0; i < n_img; i++) {
        Err e = {0};
        if (image_decode_memory(src[i].buf, src[i].n, h, w, 3, raw + rb * i, &e))
            die(EXIT_BAD_INPUT, "image %d: %s", i, e.msg);
    }
    tjhandle tj = tjInitCompress();
    for (int q = 0; q < 2; q++) {
        enc[q] = xcalloc((size_t)n_img, sizeof(Blob));
        for (int i = 0; i < n_img; i++)
            if (tjCompress2(tj, raw + rb * i, w, 0, h, TJPF_RGB, &enc[q][i].buf, &enc[q][i].n,
                            TJSAMP_444, QUALITY[q], TJFLAG_ACCURATEDCT))
                die(EXIT_RUNTIME, "encode: %s", tjGetErrorStr2(tj));
    }
    tjDestroy(tj);
}

static volatile uint32_t sink;

static double rate_raw(int h, int w, uint8_t *out) {
    size_t rb = (size_t)h * w * 3;
    double t = now_seconds();
    for (int i = 0; i < n_img; i++) {
        sink ^= crc32_update(0, raw + rb * i, rb);
        memcpy(out, raw + rb * i, rb);
    }
    return n_img / (now_seconds() - t);
}

static double rate_jpeg(const Blob *b, int h, int w, uint8_t *out, tjhandle tj) {
    double t = now_seconds();
    for (int i = 0; i < n_img; i++) {
        sink ^= crc32_update(0, b[i].buf, b[i].n);
        if (tjDecompress2(tj, b[i].buf, b[i].n, out, w, 0, h, TJPF_RGB, TJFLAG_ACCURATEDCT))
            die(EXIT_RUNTIME, "decode: %s", tjGetErrorStr2(tj));
    }
    return n_img / (now_seconds() - t);
}

static double rate_source(int h, int w, uint8_t *out) {
    double t = now_seconds();
    for (int i = 0; i < n_img; i++) {
        Err e = {0};
        if (image_decode_memory(src[i].buf, src[i].n, h, w, 3, out, &e))
            die(EXIT_RUNTIME, "%s", e.msg);
    }
    return n_img / (now_seconds() - t);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int time_open(const char *path, int rounds) {
    double t[64];
    int64_t n = 0;
    for (int k = 0; k < rounds && k < 64; k++) {
        Pack p;
        Err e = {0};
        double t0 = now_seconds();
        if (pack_open(&p, path, 0, 0, 0, 0, &e)) die(EXIT_BAD_INPUT, "%s", e.msg);
        t[k] = now_seconds() - t0;
        n = p.n;
        pack_close(&p);
    }
    printf("{\"pack_open_ms\": %.2f, \"samples\": %lld, \"rounds\": %d}\n",
           1e3 * median(t, rounds < 64 ? rounds : 64), (long long)n, rounds);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--open")) return time_open(argv[2], atoi(argv[3]));
    if (argc != 5) die(EXIT_BAD_INPUT, "usage: pack_layout DIR H W ROUNDS");
    int h = atoi(argv[2]), w = atoi(argv[3]), rounds = atoi(argv[4]);
    if (rounds < 1 || rounds > 64) die(EXIT_BAD_INPUT, "rounds: 1..64");
    load(argv[1], h, w);
    size_t rb = (size_t)h * w * 3;
    uint8_t *out = xmalloc(rb);
    tjhandle tj = tjInitDecompress();
    double r[4][64];
    for (int k = 0; k < rounds; k++) {
        r[0][k] = rate_raw(h, w, out);
        r[1][k] = rate_jpeg(enc[0], h, w, out, tj);
        r[2][k] = rate_jpeg(enc[1], h, w, out, tj);
        r[3][k] = rate_source(h, w, out);
    }
    double bytes[4] = {(double)rb, 0, 0, 0};
    for (int i = 0; i < n_img; i++) {
        bytes[1] += enc[0][i].n / (double)n_img;
        bytes[2] += enc[1][i].n / (double)n_img;
        bytes[3] += src[i].n / (double)n_img;
    }
    /* fidelity of the re-encoded records: decoded pixels against the raw ones */
    for (int q = 0; q < 2; q++) {
        long differ = 0, maxd = 0, total = 0;
        for (int i = 0; i < n_img; i++) {
            tjDecompress2(tj, enc[q][i].buf, enc[q][i].n, out, w, 0, h, TJPF_RGB,
                          TJFLAG_ACCURATEDCT);
            for (size_t j = 0; j < rb; j++) {
                long d = labs((long)out[j] - raw[rb * i + j]);
                differ += d != 0;
                maxd = d > maxd ? d : maxd;
            }
            total += (long)rb;
        }
        printf("{\"variant\": \"jpeg q%d fidelity\", \"pixels_differing\": %.4f, \"max_abs_diff\": "
               "%ld}\n",
               QUALITY[q], (double)differ / total, maxd);
    }
    const char *names[4] = {"raw uint8", "jpeg q90 re-encoded", "jpeg q95 re-encoded",
                            "source jpeg (decode+resize)"};
    for (int v = 0; v < 4; v++)
        printf("{\"variant\": \"%s\", \"images\": %d, \"bytes_per_record\": %.0f, "
               "\"img_per_s_core\": %.1f, \"rounds\": %d}\n",
               names[v], n_img, bytes[v], median(r[v], rounds), rounds);
    tjDestroy(tj);
    return 0;
}
