/* test_pack.c: the packed dataset file (src/data/pack.c): a write/read round trip through a read
 * callback, every refusal (truncated, a flipped record byte, a flipped header or table byte,
 * another magic or version, another image size, a stale fingerprint), no file left under the
 * final name or as a temp file by a failed or killed write, numpy reading a pack by its
 * documented layout, and mpirun -np 2 writing a pack byte-for-byte equal to one process's.
 *
 * The multi-process writes run this test binary itself as a small writer program
 * (test_pack_writer_main, reached through test_main.c's --pack-write argument): it is the one
 * program here that links pack_write, until `convnet-dist pack JOB` exists.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dist.h"
#include "pack.h"
#include "testutil.h"

enum { N = 37, H = 5, W = 7, C = 3, K = 3 };
static char *const NAMES[K] = {"cats", "dogs", "zebras"};
static const uint64_t FP = 0x1234abcd5678ef01ULL;

/* Sample i's pixels: a function of (i, j) that differs between neighbouring samples. */
static uint8_t pixel(int64_t i, int64_t j) {
    uint64_t v = (uint64_t)(i * 2654435761u) ^ (uint64_t)(j * 40503u);
    return (uint8_t)(v ^ (v >> 11));
}

static int32_t LABELS_SMALL[1000], *LABELS = LABELS_SMALL; /* larger for the writer program */

/* The read callback: fails at sample fail_at (>= 0), raises SIGTERM at sample kill_at. */
typedef struct {
    int64_t fail_at, kill_at;
} Source;

static int source_read(void *arg, int64_t i, uint8_t *px, Err *e) {
    const Source *s = arg;
    if (i == s->fail_at) {
        err_set(e, "synthetic: sample %lld unreadable", (long long)i);
        return -1;
    }
    if (i == s->kill_at) raise(SIGTERM);
    for (int64_t j = 0; j < H * W * C; j++) px[j] = pixel(i, j);
    return 0;
}

static PackMeta meta(int64_t n) {
    if (n > 1000) LABELS = xcalloc((size_t)n, sizeof *LABELS); /* the writer program's, once */
    for (int64_t i = 0; i < n; i++) LABELS[i] = (int32_t)((i * 7 + 1) % K);
    PackMeta m = {n, H, W, C, K, NAMES, LABELS, FP};
    return m;
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static const char *tmp_path(const char *path) {
    static char b[1100];
    snprintf(b, sizeof b, "%s.tmp", path);
    return b;
}

/* A fresh pack of N samples at dir/name; its path. */
static const char *write_pack(const char *name) {
    static char path[8][1024];
    static int slot;
    char *p = path[slot++ % 8];
    snprintf(p, 1024, "%s/%s", testutil_tmpdir(), name);
    PackMeta m = meta(N);
    Source s = {-1, -1};
    Err e = {0};
    int rc = pack_write(p, &m, source_read, &s, NULL, &e);
    if (rc) printf("\n    pack_write: %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    return p;
}

static void patch(const char *path, long off, const void *bytes, size_t n) {
    FILE *f = fopen(path, "r+b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fseek(f, off, SEEK_SET);
    fwrite(bytes, 1, n, f);
    fclose(f);
}

static void flip(const char *path, long off) {
    FILE *f = fopen(path, "r+b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fseek(f, off, SEEK_SET);
    int b = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(b ^ 0x10, f);
    fclose(f);
}

/* pack_open refuses path; its message contains path and want. */
static void refused(const char *path, int eh, int ew, int ec, uint64_t fp, const char *want) {
    Pack p;
    Err e = {0};
    CU_ASSERT_EQUAL(pack_open(&p, path, eh, ew, ec, fp, &e), -1);
    CU_ASSERT_PTR_NULL(p.map);
    HAS(e.msg, path);
    HAS(e.msg, want);
}

static void test_round_trip(void) {
    const char *path = write_pack("rt.pack");
    CU_ASSERT_FALSE(exists(tmp_path(path)));
    Pack p;
    Err e = {0};
    int rc = pack_open(&p, path, H, W, C, FP, &e);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(p.n, N);
    CU_ASSERT(p.h == H && p.w == W && p.c == C && p.n_classes == K);
    CU_ASSERT_EQUAL(p.fingerprint, FP);
    for (int k = 0; k < K; k++) CU_ASSERT_STRING_EQUAL(p.class_names[k], NAMES[k]);
    CU_ASSERT_EQUAL(p.rec_off % PACK_ALIGN, 0);
    CU_ASSERT_EQUAL((uint64_t)testutil_file_size(path), p.rec_off + (uint64_t)N * H * W * C);
    int bad = 0;
    for (int64_t i = 0; i < N; i++) {
        const uint8_t *px = pack_record(&p, i, &e);
        CU_ASSERT_PTR_NOT_NULL_FATAL(px);
        bad += p.labels[i] != LABELS[i];
        for (int j = 0; j < H * W * C; j++) bad += px[j] != pixel(i, j);
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_PTR_NULL(pack_record(&p, N, &e));
    HAS(e.msg, "out of range");
    pack_close(&p);
    CU_ASSERT_PTR_NULL(p.map);
    /* expectations of 0 accept any size and fingerprint */
    CU_ASSERT_EQUAL(pack_open(&p, path, 0, 0, 0, 0, &e), 0);
    pack_close(&p);
}

static void test_truncated(void) {
    const char *path = write_pack("trunc.pack");
    long size = testutil_file_size(path);
    CU_ASSERT_EQUAL_FATAL(truncate(path, size - 1), 0);
    refused(path, H, W, C, FP, "truncated");
    refused(path, H, W, C, FP, "repack");
    CU_ASSERT_EQUAL_FATAL(truncate(path, 100), 0);
    refused(path, 0, 0, 0, 0, "truncated");
}

static void test_trailing(void) {
    const char *path = write_pack("trail.pack");
    CU_ASSERT_EQUAL_FATAL(truncate(path, testutil_file_size(path) + 1), 0);
    refused(path, 0, 0, 0, 0, "trailing bytes");
}

static void test_record_flip(void) {
    const char *path = write_pack("flip.pack");
    Pack p;
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(pack_open(&p, path, H, W, C, FP, &e), 0);
    uint64_t off = p.rec_off + 5ULL * H * W * C + 17;
    pack_close(&p);
    flip(path, (long)off);
    /* opening does not read the records: the damage shows when sample 5 is read */
    CU_ASSERT_EQUAL_FATAL(pack_open(&p, path, H, W, C, FP, &e), 0);
    CU_ASSERT_PTR_NOT_NULL(pack_record(&p, 4, &e));
    CU_ASSERT_PTR_NOT_NULL(pack_record(&p, 6, &e));
    CU_ASSERT_FALSE(e.set);
    CU_ASSERT_PTR_NULL(pack_record(&p, 5, &e));
    HAS(e.msg, path);
    HAS(e.msg, "sample 5 corrupt");
    char at[64];
    snprintf(at, sizeof at, "offset %llu", (unsigned long long)(off - 17));
    HAS(e.msg, at);
    pack_close(&p);
}

static void test_header_flip(void) {
    const char *path = write_pack("hdr.pack");
    flip(path, 29); /* the width field */
    refused(path, H, W, C, FP, "header corrupt");
    path = write_pack("hdr2.pack");
    flip(path, 2000); /* a reserved byte: covered by the header CRC all the same */
    refused(path, H, W, C, FP, "header corrupt");
}

static void test_table_flip(void) {
    Pack p;
    Err e = {0};
    const char *path = write_pack("labels.pack");
    CU_ASSERT_EQUAL_FATAL(pack_open(&p, path, 0, 0, 0, 0, &e), 0);
    long labels_off = (long)((const uint8_t *)p.labels - p.map);
    long index_off = (long)(p.index - p.map);
    pack_close(&p);
    flip(path, labels_off + 4 * 3);
    refused(path, H, W, C, FP, "labels section corrupt");
    path = write_pack("index.pack");
    flip(path, index_off + 16 * 2 + 12);
    refused(path, H, W, C, FP, "index section corrupt");
}

static void test_magic_version(void) {
    const char *path = write_pack("magic.pack");
    patch(path, 0, "GARBAGE!", 8);
    refused(path, H, W, C, FP, "not a convnet-dist pack");
    /* a real other version: its header CRC recomputed as its writer would */
    path = write_pack("version.pack");
    uint8_t hd[PACK_HEADER_BYTES];
    FILE *f = fopen(path, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fread(hd, 1, sizeof hd, f), sizeof hd);
    fclose(f);
    uint32_t v = PACK_VERSION + 1;
    memcpy(hd + 8, &v, 4);
    uint32_t crc = crc32_update(0, hd, PACK_HEADER_BYTES - 4);
    memcpy(hd + PACK_HEADER_BYTES - 4, &crc, 4);
    patch(path, 0, hd, sizeof hd);
    refused(path, H, W, C, FP, "version 2");
    refused(path, H, W, C, FP, "repack");
}

/* Rewrite header fields of a pack and its header CRC, as a crafted file would. */
static void rewrite_header(const char *path, void (*edit)(uint8_t *hd)) {
    uint8_t hd[PACK_HEADER_BYTES];
    FILE *f = fopen(path, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fread(hd, 1, sizeof hd, f), sizeof hd);
    fclose(f);
    edit(hd);
    uint32_t crc = crc32_update(0, hd, PACK_HEADER_BYTES - 4);
    memcpy(hd + PACK_HEADER_BYTES - 4, &crc, 4);
    patch(path, 0, hd, sizeof hd);
}

static void huge_layout(uint8_t *hd) { /* n * record bytes wraps 64 bits */
    uint64_t n = 1ULL << 40, rec = 65535ULL * 65535 * 3;
    uint32_t side = 65535;
    memcpy(hd + 16, &n, 8);
    memcpy(hd + 24, &side, 4);
    memcpy(hd + 28, &side, 4);
    memcpy(hd + 56, &rec, 8);
}

static void more_samples(uint8_t *hd) {
    uint64_t n = N + 1;
    memcpy(hd + 16, &n, 8);
}

/* A header with a valid CRC whose fields disagree with the file is refused before any section
 * is read through it. */
static void test_crafted_header(void) {
    const char *path = write_pack("huge.pack");
    rewrite_header(path, huge_layout);
    refused(path, 0, 0, 0, 0, "implausible header");
    path = write_pack("more.pack");
    rewrite_header(path, more_samples);
    refused(path, 0, 0, 0, 0, "not the layout its header implies");
}

static void test_other_size(void) {
    const char *path = write_pack("size.pack");
    refused(path, 180, 180, 3, FP, "5x7x3");
    refused(path, 180, 180, 3, FP, "180x180x3");
    refused(path, H, W, 1, FP, "the job wants 5x7x1");
}

static void test_stale(void) {
    const char *path = write_pack("stale.pack");
    refused(path, H, W, C, FP + 1, "stale");
    refused(path, H, W, C, FP + 1, "run convnet-dist pack JOB to repack");
}

/* A read that fails leaves neither the pack nor its temp file, and an older pack at the same
 * path stays as it was. */
static void test_failed_write(void) {
    const char *path = write_pack("fail.pack");
    long size = testutil_file_size(path);
    PackMeta m = meta(N + 5);
    Source s = {20, -1};
    Err e = {0};
    CU_ASSERT_EQUAL(pack_write(path, &m, source_read, &s, NULL, &e), -1);
    HAS(e.msg, "sample 20 unreadable");
    CU_ASSERT_FALSE(exists(tmp_path(path)));
    CU_ASSERT_EQUAL(testutil_file_size(path), size);
    Pack p;
    CU_ASSERT_EQUAL(pack_open(&p, path, H, W, C, FP, &e), 0);
    CU_ASSERT_EQUAL(p.n, N);
    pack_close(&p);
    /* a label outside the classes is refused before anything is created */
    const char *p2 = tmp_path(path); /* any fresh name */
    m = meta(N);
    LABELS[3] = K;
    s.fail_at = -1;
    CU_ASSERT_EQUAL(pack_write(p2, &m, source_read, &s, NULL, &e), -1);
    CU_ASSERT_FALSE(exists(p2));
}

/* ---------------------------------------------------------------- the writer program */

/* `test-convnet --pack-write PATH N [KILL_AT]`: pack_write of N synthetic samples, under mpirun
 * over its ranks (dist_init), raising SIGTERM at sample KILL_AT on whichever rank reads it. */
int test_pack_writer_main(int argc, char **argv) {
    if (argc < 4) return 2;
    Dist d;
    dist_init(&d, &argc, &argv);
    PackMeta m = meta(atol(argv[3]));
    Source s = {-1, argc > 4 ? atol(argv[4]) : -1};
    Err e = {0};
    int rc = pack_write(argv[2], &m, source_read, &s, &d, &e);
    if (rc) fprintf(stderr, "rank %d: %s\n", d.rank, e.msg);
    return dist_finalize(&d, rc ? 1 : 0);
}

static int files_equal(const char *a, const char *b) {
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
    return testutil_run(cmd, NULL) == 0;
}

static void test_mpi_write(void) {
    if (!testutil_have_mpi()) {
        testutil_skip("pack at -np 2", "built with MPI=0 or no mpirun", 1);
        return;
    }
    const char *one = write_pack("one.pack");
    const char *dir = testutil_tmpdir();
    char cmd[4096], mpirun[256], out[2][1024];
    for (int np = 1; np <= 2; np++) {
        snprintf(out[np - 1], sizeof out[0], "%s/np%d.pack", dir, np);
        snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=2 timeout 120 %s %s --pack-write %s %d",
                 testutil_mpirun(mpirun, sizeof mpirun, np), testutil_self_exe(), out[np - 1], N);
        char *log = NULL;
        int rc = testutil_run(cmd, &log);
        if (rc) printf("\n    %s\n%s\n", cmd, log ? log : "");
        CU_ASSERT_EQUAL(rc, 0);
        free(log);
    }
    CU_ASSERT(files_equal(out[0], out[1]));
    CU_ASSERT(files_equal(one, out[1]));
    CU_ASSERT_FALSE(exists(tmp_path(out[1])));
    /* a rank killed mid-write: mpirun ends the job, rank 0 removes the temp file, and nothing
     * is left under the final name */
    for (int at = 2; at <= N - 3; at += N - 5) { /* on rank 0, then on rank 1 */
        char killed[1024];
        snprintf(killed, sizeof killed, "%s/killed%d.pack", dir, at);
        snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 timeout 120 %s %s --pack-write %s %d %d",
                 testutil_mpirun(mpirun, sizeof mpirun, 2), testutil_self_exe(), killed, N, at);
        CU_ASSERT_NOT_EQUAL(testutil_run(cmd, NULL), 0);
        CU_ASSERT_FALSE(exists(killed));
        CU_ASSERT_FALSE(exists(tmp_path(killed)));
    }
}

/* ---------------------------------------------------------------- numpy */

static void test_numpy_reads(void) {
    if (testutil_run("/usr/bin/python3 -c 'import numpy' 2>/dev/null", NULL) != 0) {
        testutil_skip("numpy reads a pack", "python3-numpy is not installed", 1);
        return;
    }
    const char *path = write_pack("numpy.pack");
    /* what C wrote, as flat files for the script to compare against */
    uint8_t *px = malloc((size_t)N * H * W * C);
    for (int64_t i = 0; i < N; i++)
        for (int j = 0; j < H * W * C; j++) px[i * H * W * C + j] = pixel(i, j);
    const char *dir = testutil_tmpdir();
    const char *pxf = testutil_write_file(dir, "numpy.pixels", px, (size_t)N * H * W * C);
    const char *lbf = testutil_write_file(dir, "numpy.labels", LABELS, sizeof(int32_t) * N);
    free(px);
    char cmd[4096], *log = NULL;
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 tests/pack_numpy_check.py %s %s %s %d %d %d %016llx %s,%s,%s", path,
             pxf, lbf, H, W, C, (unsigned long long)FP, NAMES[0], NAMES[1], NAMES[2]);
    int rc = testutil_run(cmd, &log);
    if (rc) printf("\n    %s\n%s\n", cmd, log ? log : "");
    CU_ASSERT_EQUAL(rc, 0);
    free(log);
    /* and it must be able to fail: a record byte flipped is a pixel mismatch for numpy */
    Pack p;
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(pack_open(&p, path, 0, 0, 0, 0, &e), 0);
    long off = (long)p.rec_off + 3;
    pack_close(&p);
    flip(path, off);
    CU_ASSERT_NOT_EQUAL(testutil_run(cmd, NULL), 0);
}

TEST_SUITE(pack, {"round_trip", test_round_trip}, {"truncated", test_truncated},
           {"trailing", test_trailing}, {"record_flip", test_record_flip},
           {"header_flip", test_header_flip}, {"table_flip", test_table_flip},
           {"magic_version", test_magic_version}, {"crafted_header", test_crafted_header},
           {"other_size", test_other_size}, {"stale", test_stale},
           {"failed_write", test_failed_write}, {"mpi_write", test_mpi_write},
           {"numpy_reads", test_numpy_reads})
