/* test_source.c: the split sources and the prefetcher (include/source.h): a folder streamed
 * gives the same pixels, labels and classes as images_load_dir; IDX mapped (plain) and
 * decompressed (gzip) equal idx_load; views; the prefetcher's batches equal direct reads with
 * any thread count and ring depth; the bad-data policy (stat-level checks at listing, a JPEG
 * truncated after listing trained as black, strict refusal); the fingerprint; listing memory;
 * a listing whose stat() calls two ranks share (mpirun -np 2) equals one process's. */
#include <CUnit/CUnit.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "images.h"
#include "source.h"
#include "testutil.h"

/* dir/{cats,dogs}/ with n JPEGs each of varied sizes (some larger than the target, so that DCT
 * scaling and resizing both run), plus a nested folder dogs/more/ of 2 (test_stream.c too). */
void test_source_write_folder(const char *dir, int n, unsigned seed);
void test_source_write_folder(const char *dir, int n, unsigned seed) {
    char p[2048];
    const char *cls[2] = {"cats", "dogs"};
    mkdir(dir, 0755);
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/%s", dir, cls[k]);
        mkdir(p, 0755);
        snprintf(p, sizeof p, "%s/dogs/more", dir);
        if (k == 1) mkdir(p, 0755);
        for (int i = 0; i < n + (k == 1 ? 2 : 0); i++) {
            int h = 20 + (int)((i * 7 + seed) % 50), w = 30 + (int)((i * 13 + seed) % 60);
            uint8_t *px = malloc((size_t)h * w * 3);
            for (int q = 0; q < h * w * 3; q++)
                px[q] = (uint8_t)((q * (i + 3) + seed * 17 + k * 90) & 255);
            if (i >= n)
                snprintf(p, sizeof p, "%s/dogs/more/x%d.jpg", dir, i);
            else
                snprintf(p, sizeof p, "%s/%s/img%03d.jpg", dir, cls[k], i);
            Err e = {0};
            CU_ASSERT_EQUAL(image_write_jpeg(p, px, h, w, 3, 90, &e), 0);
            free(px);
        }
    }
}

static SourceImageOpts opts(int strict) {
    SourceImageOpts o = {24, 32, 3, 0, strict, 1, NULL};
    return o;
}

static void test_folder_equals_memory(void) {
    const char *tmp = testutil_tmpdir();
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/folder", tmp);
    test_source_write_folder(dir, 9, 1);
    SourceImageOpts o = opts(0);
    for (int exact = 0; exact < 2; exact++) {
        o.exact = exact;
        ImageDirOptions io;
        image_dir_options_default(&io);
        io.height = o.h;
        io.width = o.w;
        io.exact = exact;
        io.quiet = 1;
        Dataset d;
        Err e = {0};
        CU_ASSERT_EQUAL_FATAL(images_load_dir(&d, dir, &io, &e), 0);
        Source s;
        CU_ASSERT_EQUAL_FATAL(source_open_folder(&s, dir, &o, &e), 0);
        CU_ASSERT_EQUAL(s.n, 20);
        CU_ASSERT_EQUAL(s.n, d.n);
        CU_ASSERT_EQUAL(s.n_classes, 2);
        CU_ASSERT_FALSE(source_is_direct(&s));
        CU_ASSERT_STRING_EQUAL(s.class_names[1], d.class_names[1]);
        const size_t S = (size_t)o.h * o.w * o.c;
        uint8_t *px = malloc(S);
        SourceWorker w = {0};
        int same = 1;
        for (int64_t i = 0; i < s.n && i < d.n; i++) {
            CU_ASSERT_EQUAL(source_read(&s, i, px, &w, &e), 0);
            same &= memcmp(px, d.pixels + (size_t)i * S, S) == 0 && s.labels[i] == d.labels[i];
        }
        CU_ASSERT(same); /* the same order, labels and bitwise the same pixels */
        source_worker_free(&w);
        /* loading = memory through the source gives the same again */
        CU_ASSERT_EQUAL(source_load_memory(&s, &o, &e), 0);
        CU_ASSERT(source_is_direct(&s));
        CU_ASSERT_EQUAL(memcmp(source_pixels(&s, 0), d.pixels, (size_t)d.n * S), 0);
        free(px);
        source_free(&s);
        dataset_free(&d);
    }
}

/* gzip src into dst. */
static void gzip_file(const char *src, const char *dst) {
    FILE *f = fopen(src, "rb");
    gzFile g = gzopen(dst, "wb");
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) gzwrite(g, buf, (unsigned)n);
    fclose(f);
    gzclose(g);
}

static void test_idx_mapped_and_gzip(void) {
    const char *dir = testutil_tmpdir();
    testutil_write_idx_dataset(dir, "src", 50, 7, 9, 3);
    char img[1024], lab[1024], gimg[1024], glab[1024];
    snprintf(img, sizeof img, "%s/src-images.idx", dir);
    snprintf(lab, sizeof lab, "%s/src-labels.idx", dir);
    snprintf(gimg, sizeof gimg, "%s/src-images.idx.gz", dir);
    snprintf(glab, sizeof glab, "%s/src-labels.idx.gz", dir);
    gzip_file(img, gimg);
    gzip_file(lab, glab);
    Dataset d;
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(idx_load(&d, img, lab, &e), 0);
    const char *imgs[2] = {img, gimg}, *labs[2] = {lab, glab};
    for (int k = 0; k < 2; k++) {
        Source s;
        CU_ASSERT_EQUAL_FATAL(source_open_idx(&s, imgs[k], labs[k], &e), 0);
        CU_ASSERT(source_is_direct(&s));
        CU_ASSERT_EQUAL(s.n, 50);
        CU_ASSERT_EQUAL(s.h * s.w * s.c, 63);
        CU_ASSERT_EQUAL(memcmp(source_pixels(&s, 0), d.pixels, 50 * 63), 0);
        CU_ASSERT_EQUAL(memcmp(s.labels, d.labels, 50 * sizeof *d.labels), 0);
        CU_ASSERT_EQUAL(s.n_classes, d.n_classes);
        /* a view: the validation_split tail */
        Source v;
        source_split_tail(&s, &v, 12);
        CU_ASSERT_EQUAL(s.n, 38);
        CU_ASSERT_EQUAL(v.n, 12);
        CU_ASSERT_EQUAL(memcmp(source_pixels(&v, 0), d.pixels + 38 * 63, 12 * 63), 0);
        CU_ASSERT_EQUAL(v.labels[0], d.labels[38]);
        source_free(&s); /* the view keeps the backend */
        CU_ASSERT_EQUAL(source_pixels(&v, 11)[62], d.pixels[50 * 63 - 1]);
        source_free(&v);
    }
    /* the mapped file is checked as idx_load checks it: cut short, it is refused */
    FILE *f = fopen(img, "r+b");
    CU_ASSERT_EQUAL(ftruncate(fileno(f), 16 + 49 * 63), 0);
    fclose(f);
    Source s;
    Err e2 = {0};
    CU_ASSERT_EQUAL(source_open_idx(&s, img, lab, &e2), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e2.msg, "truncated"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e2.msg, img));
    dataset_free(&d);
}

/* The order the trainer hands the prefetcher: batches of a shuffled order. */
typedef struct {
    const int64_t *order;
    int64_t n;
    int B;
} Plan;

static int plan_ids(void *arg, long b, int64_t *ids) {
    const Plan *p = arg;
    int64_t s = (int64_t)b * p->B;
    int n = (int)(p->n - s < p->B ? p->n - s : p->B);
    for (int i = 0; i < n; i++) ids[i] = p->order[s + i];
    return n;
}

static void test_prefetch_batches(void) {
    const char *tmp = testutil_tmpdir();
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/pf", tmp);
    test_source_write_folder(dir, 11, 2);
    SourceImageOpts o = opts(0);
    Source s;
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(source_open_folder(&s, dir, &o, &e), 0);
    const size_t S = (size_t)o.h * o.w * o.c;
    int64_t order[24];
    for (int i = 0; i < 24; i++) order[i] = (i * 7) % 24; /* 7 is prime to 24: a permutation */
    uint8_t *want = malloc(24 * S);
    SourceWorker w = {0};
    for (int i = 0; i < 24; i++)
        CU_ASSERT_EQUAL(source_read(&s, order[i], want + i * S, &w, &e), 0);
    source_worker_free(&w);
    const int configs[][2] = {{1, 1}, {3, 2}, {4, 5}};
    for (int c = 0; c < 3; c++) {
        Prefetch *p = prefetch_new(configs[c][0], configs[c][1], 5, S);
        Plan plan = {order, 24, 5};
        for (int pass = 0; pass < 2; pass++) {
            prefetch_begin(p, &s, 5, plan_ids, &plan);
            int ok = 1;
            long batches = pass == 0 ? 5 : 2; /* the second pass ends early */
            for (long b = 0; b < batches; b++) {
                const uint8_t *px;
                const int64_t *ids;
                int n = 0;
                CU_ASSERT_EQUAL_FATAL(prefetch_next(p, &px, &ids, &n, &e), 0);
                ok &= n == (b < 4 ? 5 : 4) && ids[0] == order[b * 5];
                ok &= memcmp(px, want + (size_t)b * 5 * S, (size_t)n * S) == 0;
            }
            prefetch_end(p);
            CU_ASSERT(ok);
        }
        CU_ASSERT_EQUAL(prefetch_bad_count(p), 0);
        prefetch_free(p);
    }
    free(want);
    source_free(&s);
}

/* Bad data: an empty file is left out at listing (counted, every rank alike); a JPEG cut short
 * after listing reads as a black image naming its path; strict refuses it. */
static void test_bad_data_policy(void) {
    const char *tmp = testutil_tmpdir();
    char dir[1024], p[2048];
    snprintf(dir, sizeof dir, "%s/bad", tmp);
    test_source_write_folder(dir, 5, 3);
    snprintf(p, sizeof p, "%s/cats/empty.jpg", dir);
    fclose(fopen(p, "wb"));
    SourceImageOpts o = opts(0);
    Source s;
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(source_open_folder(&s, dir, &o, &e), 0);
    CU_ASSERT_EQUAL(s.n, 12);
    CU_ASSERT_EQUAL(s.skipped, 1);
    /* truncated after listing: cats/img002.jpg is sample 2 */
    snprintf(p, sizeof p, "%s/cats/img002.jpg", dir);
    CU_ASSERT_EQUAL(truncate(p, testutil_file_size(p) / 2), 0);
    const size_t S = (size_t)o.h * o.w * o.c;
    uint8_t *px = malloc(S);
    memset(px, 7, S);
    SourceWorker w = {0};
    Err e2 = {0};
    CU_ASSERT_EQUAL(source_read(&s, 2, px, &w, &e2), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e2.msg, "img002.jpg"));
    int zeros = 1;
    for (size_t k = 0; k < S; k++) zeros &= px[k] == 0;
    CU_ASSERT(zeros);
    CU_ASSERT_EQUAL(source_read(&s, 3, px, &w, &e), 0); /* the next file is unharmed */
    /* through the prefetcher: counted, the batch complete */
    Prefetch *pf = prefetch_new(2, 2, 4, S);
    int64_t order[12];
    for (int i = 0; i < 12; i++) order[i] = i;
    Plan plan = {order, 12, 4};
    prefetch_begin(pf, &s, 3, plan_ids, &plan);
    for (int b = 0; b < 3; b++) {
        const uint8_t *bp;
        const int64_t *ids;
        int n;
        CU_ASSERT_EQUAL(prefetch_next(pf, &bp, &ids, &n, &e), 0);
        CU_ASSERT_EQUAL(n, 4);
    }
    prefetch_end(pf);
    CU_ASSERT_EQUAL(prefetch_bad_count(pf), 1);
    prefetch_free(pf);
    source_free(&s);
    /* strict: the listing refuses the empty file; without it, the truncated JPEG stops the read */
    SourceImageOpts so = opts(1);
    Err e3 = {0};
    CU_ASSERT_EQUAL(source_open_folder(&s, dir, &so, &e3), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e3.msg, "empty.jpg"));
    snprintf(p, sizeof p, "%s/cats/empty.jpg", dir);
    unlink(p);
    CU_ASSERT_EQUAL_FATAL(source_open_folder(&s, dir, &so, &e), 0);
    Err e4 = {0};
    CU_ASSERT_EQUAL(source_read(&s, 2, px, &w, &e4), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e4.msg, "img002.jpg"));
    source_worker_free(&w);
    source_free(&s);
    free(px);
}

/* The fingerprint follows the files (a new mtime, a new file) and the decode settings. */
static void test_fingerprint(void) {
    const char *tmp = testutil_tmpdir();
    char dir[1024], p[2048];
    snprintf(dir, sizeof dir, "%s/fp", tmp);
    test_source_write_folder(dir, 3, 4);
    SourceImageOpts o = opts(0);
    Source a, b;
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(source_open_folder(&a, dir, &o, &e), 0);
    CU_ASSERT_EQUAL_FATAL(source_open_folder(&b, dir, &o, &e), 0);
    uint64_t f0 = source_fingerprint(&a, &o);
    CU_ASSERT_EQUAL(f0, source_fingerprint(&b, &o));
    SourceImageOpts o2 = o;
    o2.exact = 1;
    CU_ASSERT_NOT_EQUAL(f0, source_fingerprint(&a, &o2));
    o2 = o;
    o2.w = 31;
    CU_ASSERT_NOT_EQUAL(f0, source_fingerprint(&a, &o2));
    source_free(&b);
    snprintf(p, sizeof p, "%s/cats/img001.jpg", dir);
    struct timespec ts[2] = {{1000000, 0}, {1000000, 0}};
    CU_ASSERT_EQUAL(utimensat(AT_FDCWD, p, ts, 0), 0);
    CU_ASSERT_EQUAL_FATAL(source_open_folder(&b, dir, &o, &e), 0);
    CU_ASSERT_NOT_EQUAL(f0, source_fingerprint(&b, &o));
    source_free(&b);
    source_free(&a);
}

/* Listing 20,000 symlinks: every file once in the arena, about 40 bytes of index a file. */
static void test_listing_memory(void) {
    const char *tmp = testutil_tmpdir();
    char dir[1024], p[2048], target[2048];
    snprintf(dir, sizeof dir, "%s/many", tmp);
    test_source_write_folder(dir, 1, 5);
    snprintf(target, sizeof target, "%s/cats/img000.jpg", dir);
    snprintf(p, sizeof p, "%s/cats/many", dir);
    mkdir(p, 0755);
    for (int i = 0; i < 20000; i++) {
        snprintf(p, sizeof p, "%s/cats/many/cat.%05d.jpg", dir, i);
        CU_ASSERT_EQUAL_FATAL(symlink(target, p), 0);
    }
    SourceImageOpts o = opts(0);
    Source s;
    Err e = {0};
    double t0 = now_seconds();
    CU_ASSERT_EQUAL_FATAL(source_open_folder(&s, dir, &o, &e), 0);
    double secs = now_seconds() - t0;
    CU_ASSERT_EQUAL(s.n, 20004);
    size_t bytes = source_index_bytes(&s);
    printf("\n  listing 20,004 files: %.2f s, index %.2f MB (%.1f bytes a file)\n", secs,
           bytes / 1e6, (double)bytes / (double)s.n);
    CU_ASSERT(bytes < 20004 * 48);
    /* the files in their folder's order, after the class folder's own files */
    CU_ASSERT_EQUAL(s.labels[0], 0);
    source_free(&s);
}

/* `test-convnet --list DIR`: image_list_dir over mpirun's ranks; each rank prints what it got. */
int test_source_list_main(int argc, char **argv) {
    if (argc < 3) return 2;
    Dist d;
    dist_init(&d, &argc, &argv);
    ImageList l;
    Err e = {0};
    int rc = image_list_dir(&l, argv[2], 0, 1, &d, &e);
    uint64_t h = HASH_SEED;
    for (int64_t i = 0; rc == 0 && i < l.n; i++) {
        const char *s = l.names + l.off[i];
        h = hash_bytes(hash_bytes(h, s, strlen(s) + 1), &l.labels[i], sizeof l.labels[i]);
    }
    if (rc == 0) /* the time on a line of its own: the test compares the "listed" lines */
        printf("listed n=%lld skipped=%lld fingerprint=%016llx names=%016llx\n"
               "rank %d: listing %.3f s, index %.1f MB\n",
               (long long)l.n, (long long)l.skipped, (unsigned long long)l.fingerprint,
               (unsigned long long)h, d.rank, l.seconds, image_list_bytes(&l) / 1e6);
    else
        printf("failed: %s\n", e.msg);
    fflush(stdout);
    if (rc == 0) image_list_free(&l);
    return dist_finalize(&d, rc ? 1 : 0);
}

/* 1,500 symbolic links (above the threads' threshold), nested files, and every entry the
 * listing drops or skips: the same listing, skips and fingerprint alone and over 2 ranks. */
static void test_listing_shared(void) {
    if (!testutil_have_mpi()) {
        testutil_skip("shared listing", "built with MPI=0 or no mpirun", 1);
        return;
    }
    char dir[1024], p[2048], target[2048], cmd[4096], mpirun[256];
    snprintf(dir, sizeof dir, "%s/shared-list", testutil_tmpdir());
    test_source_write_folder(dir, 2, 6);
    snprintf(target, sizeof target, "%s/cats/img000.jpg", dir);
    for (int i = 0; i < 1500; i++) {
        snprintf(p, sizeof p, "%s/%s/l%04d.jpg", dir, i % 3 ? "cats" : "dogs/more", i);
        CU_ASSERT_EQUAL_FATAL(symlink(target, p), 0);
    }
    const char *odd[][2] = {{"cats/empty.jpg", NULL},        /* skipped: empty */
                            {"cats/dangling.jpg", "/nonexistent/x.jpg"}, /* dropped */
                            {"dogs/linkdir.jpg", "more"},    /* a link to a folder: dropped */
                            {"dogs/notes.txt", NULL},        /* not an image name */
                            {"dogs/fifo.jpg", NULL}};        /* skipped: not regular */
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, odd[i][0]);
        if (odd[i][1]) {
            CU_ASSERT_EQUAL(symlink(odd[i][1], p), 0);
        } else if (i == 4) {
            CU_ASSERT_EQUAL(mkfifo(p, 0644), 0);
        } else {
            FILE *f = fopen(p, "w");
            if (f) fclose(f);
        }
    }
    char *out[2] = {NULL, NULL};
    for (int np = 1; np <= 2; np++) {
        snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=2 timeout 120 %s %s --list %s",
                 testutil_mpirun(mpirun, sizeof mpirun, np), testutil_self_exe(), dir);
        CU_ASSERT_EQUAL(testutil_run(cmd, &out[np - 1]), 0);
    }
    /* one process: 6 + 1,500 files listed, the empty file and the fifo skipped */
    const char *one = out[0] ? strstr(out[0], "listed ") : NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(one);
    CU_ASSERT_EQUAL(strncmp(one, "listed n=1506 skipped=2 ", 24), 0);
    size_t len = strcspn(one, "\n");
    /* both ranks of -np 2 print exactly that line */
    int same = 0;
    for (const char *q = out[1]; q && (q = strstr(q, "listed ")) != NULL; q += len)
        same += strncmp(q, one, len) == 0;
    CU_ASSERT_EQUAL(same, 2);
    if (same != 2) printf("\n  -np 1: %s\n  -np 2: %s\n", out[0], out[1] ? out[1] : "");
    free(out[0]);
    free(out[1]);
}

TEST_SUITE(
    source, {"a folder streamed equals images_load_dir, bitwise", test_folder_equals_memory},
    {"IDX mapped (plain) and decompressed (gzip) equal idx_load; views", test_idx_mapped_and_gzip},
    {"prefetched batches equal direct reads (threads, depth, early end)", test_prefetch_batches},
    {"bad data: listing skips, a truncated JPEG reads black, strict refuses", test_bad_data_policy},
    {"the fingerprint follows files and decode settings", test_fingerprint},
    {"listing 20,000 files: compact index", test_listing_memory},
    {"a listing shared by 2 ranks equals one process's", test_listing_shared});
