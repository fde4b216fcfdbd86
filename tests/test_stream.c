/* test_stream.c: the data paths end to end, through real runs of the binary (and real mpirun):
 * loading = memory, streaming from JPEGs and from a pack give bitwise the same weights at -np 1
 * and at -np 2 (a synthetic JPEG folder always, where -np 1 and -np 2 also agree to 1e-5; the
 * real dogs-vs-cats-augment job for 20 steps when ../shared/data is there); a JPEG that fails to
 * decode mid-run is trained as black on every rank count alike, strict stops; a stale pack is
 * refused; image_size = 8192 is refused before any decode, within 1 s of start-up and under
 * 100 MB; the feature cache is one file that both ranks map, shared, not a private copy. */
#include <CUnit/CUnit.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "testutil.h"

void test_source_write_folder(const char *dir, int n, unsigned seed);

static const char *bin;

static int need_mpi(void) {
    bin = testutil_bin_abs();
    if (testutil_have_mpi()) return 1;
    testutil_skip("stream", "built with MPI=0 or no mpirun", 1);
    return 0;
}

/* A small augmenting convnet on dir/{train,val,test} (24x32 rgb JPEGs). */
static const char *write_job(const char *dir, const char *extra) {
    char text[4096];
    snprintf(
        text, sizeof text,
        "[data]\nformat = images\nroot = %s\ntrain_dir = train\nvalidation_dir = val\n"
        "test_dir = test\nimage_size = 24,32\n%s"
        "[random_flip]\nmode = horizontal\n[random_rotation]\nfactor = 0.1\n"
        "[rescaling]\nscale = 1/255\n"
        "[conv2d]\nfilters = 4\nkernel_size = 3\nactivation = relu\n[maxpooling2d]\npool_size = 2\n"
        "[flatten]\n[dropout]\nrate = 0.25\n[dense]\nunits = 1\nactivation = sigmoid\n"
        "[train]\nloss = binary_crossentropy\nbatch_size = 6\nepochs = 2\nseed = 3\n"
        "conv_algorithm = im2col\n[checkpoint]\npath = off\n",
        dir, extra);
    return testutil_write_file(dir, "stream.job", text, strlen(text));
}

/* A fresh folder `name` in the test directory holding train (n_train images a class), val and
 * test (n_other); its path (static, one per seed). */
static const char *write_splits(const char *name, int n_train, int n_other, unsigned seed) {
    static char dirs[4][512];
    char *dir = dirs[seed % 4];
    snprintf(dir, sizeof dirs[0], "%s/%s", testutil_tmpdir(), name);
    mkdir(dir, 0755);
    const char *splits[3] = {"train", "val", "test"};
    for (int k = 0; k < 3; k++) {
        char p[2048];
        snprintf(p, sizeof p, "%s/%s", dir, splits[k]);
        test_source_write_folder(p, k == 0 ? n_train : n_other, seed + (unsigned)k);
    }
    return dir;
}

static const char *small_folders(void) {
    static char dir[512];
    if (dir[0]) return dir;
    snprintf(dir, sizeof dir, "%s", write_splits("small", 17, 5, 11));
    return dir;
}

/* np ranks train job with `sets`, weights into dir/tag.w; the exit status, output in *out. */
static int train(int np, const char *dir, const char *job, const char *tag, const char *sets,
                 char **out) {
    char mpirun[256], cmd[8192];
    testutil_mpirun(mpirun, sizeof mpirun, np);
    snprintf(cmd, sizeof cmd,
             "cd %s && OMP_NUM_THREADS=1 timeout 900 %s %s train %s %s --save %s/%s.w", dir, mpirun,
             bin, job, sets, dir, tag);
    return testutil_run(cmd, out);
}

static int diff(const char *dir, const char *a, const char *b, const char *rtol) {
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s diff-weights %s/%s.w %s/%s.w --rtol %s", bin, dir, a, dir, b,
             rtol);
    int rc = testutil_run(cmd, &out);
    if (rc) printf("\n  %s vs %s: %s", a, b, out ? out : "");
    free(out);
    return rc;
}

/* memory, stream and pack at -np 1 and 2: bitwise equal at each rank count; -np 1 and 2 within
 * cross_rtol (NULL: their difference is printed, not checked). */
static void check_paths(const char *dir, const char *job, const char *sets, const char *tag,
                        const char *cross_rtol) {
    char mpirun[256], cmd[8192], *out = NULL;
    testutil_mpirun(mpirun, sizeof mpirun, 2);
    snprintf(cmd, sizeof cmd,
             "cd %s && OMP_NUM_THREADS=1 %s %s pack %s %s --set data.pack_dir=%s/packs-%s", dir,
             mpirun, bin, job, sets, dir, tag);
    CU_ASSERT_EQUAL(testutil_run(cmd, &out), 0);
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "train.pack"));
    free(out);
    char pack[1200];
    snprintf(pack, sizeof pack, "--set data.pack_dir=%s/packs-%s", dir, tag);
    const char *modes[3] = {"--set data.loading=memory", "--set data.loading=stream", pack};
    const char *names[3] = {"memory", "stream", "pack"};
    char a[3][2][64];
    for (int np = 1; np <= 2; np++)
        for (int m = 0; m < 3; m++) {
            char all[4096];
            snprintf(all, sizeof all, "%s %s", sets, modes[m]);
            snprintf(a[m][np - 1], sizeof a[m][np - 1], "%s-%s-np%d", tag, names[m], np);
            out = NULL;
            int rc = train(np, dir, job, a[m][np - 1], all, &out);
            CU_ASSERT_EQUAL(rc, 0);
            if (rc) printf("\n%s\n", out ? out : "");
            free(out);
        }
    for (int np = 0; np < 2; np++) {
        CU_ASSERT_EQUAL(diff(dir, a[0][np], a[1][np], "0"), 0);
        CU_ASSERT_EQUAL(diff(dir, a[0][np], a[2][np], "0"), 0);
    }
    if (cross_rtol) {
        CU_ASSERT_EQUAL(diff(dir, a[1][0], a[1][1], cross_rtol), 0);
    } else { /* reported only: see test_paths_dogs_vs_cats */
        diff(dir, a[1][0], a[1][1], "0");
    }
}

static void test_paths_small(void) {
    if (!need_mpi()) return;
    const char *dir = small_folders();
    check_paths(dir, write_job(dir, ""), "", "small", "1e-5");
}

/* The target: 20 steps of the real job (validation and test on small subsets, for time). */
static void test_paths_dogs_vs_cats(void) {
    const char *rel = testutil_shared_data("dogs-vs-cats-small");
    char shared[4096];
    if (!rel || !need_mpi() || !realpath(rel, shared)) return;
    const char *dir = testutil_tmpdir();
    char cmd[16384];
    snprintf(
        cmd, sizeof cmd,
        "cd %s && mkdir d && cd d && ln -s %s/dogs-vs-cats-small/train train && for s in "
        "validation test; do for c in cats "
        "dogs; do mkdir -p $s/$c && ls %s/dogs-vs-cats-small/$s/$c | head -16 | while read f; do "
        "ln -s %s/dogs-vs-cats-small/$s/$c/$f $s/$c/$f; done; done; done",
        dir, shared, shared, shared);
    CU_ASSERT_EQUAL_FATAL(testutil_run(cmd, NULL), 0);
    char real[4096];
    CU_ASSERT_PTR_NOT_NULL_FATAL(realpath("jobs/dogs-vs-cats-augment.job", real));
    char sets[2048];
    snprintf(
        sets, sizeof sets,
        "--set data.root=%s --set data.train_dir=d/train --set data.validation_dir=d/validation "
        "--set data.test_dir=d/test --set train.epochs=1 --set train.steps_per_epoch=20 "
        "--set train.conv_algorithm=im2col --set train.csv_log=x.csv --set train.chart=x.svg "
        "--set checkpoint.save_best=best.w --set checkpoint.path=off",
        dir);
    /* -np 1 vs 2 is not checked here: after 20 steps of this job they differ (float rounding of
     * the per-rank sums, amplified by ReLU and max-pool decisions and RMSprop's first, nearly
     * sign-like steps): 32,897 of 991,041 parameters bitwise equal, the same figures with the
     * convnet-dist from before streaming, so not a matter of the input path. The small job
     * checks 1e-5 across rank counts. */
    check_paths(dir, real, sets, "dvc", NULL);
}

/* A listed JPEG that no longer decodes: black on every rank count, reported with its path;
 * strict: exit 2 naming it. */
static void test_bad_jpeg_mid_run(void) {
    if (!need_mpi()) return;
    const char *dir = write_splits("bad", 11, 4, 21);
    char p[2048];
    snprintf(p, sizeof p, "%s/train/cats/img003.jpg", dir);
    CU_ASSERT_EQUAL_FATAL(truncate(p, testutil_file_size(p) / 2), 0);
    const char *job = write_job(dir, "");
    char *out1 = NULL, *out2 = NULL, *out3 = NULL;
    CU_ASSERT_EQUAL(train(1, dir, job, "bad1", "", &out1), 0);
    CU_ASSERT_EQUAL(train(2, dir, job, "bad2", "", &out2), 0);
    CU_ASSERT_PTR_NOT_NULL(out1 && strstr(out1, "img003.jpg") && strstr(out1, "black image"));
    CU_ASSERT_PTR_NOT_NULL(out2 && strstr(out2, "img003.jpg") && strstr(out2, "black image"));
    CU_ASSERT_EQUAL(diff(dir, "bad1", "bad2", "1e-5"), 0);
    CU_ASSERT_EQUAL(train(2, dir, job, "bad3", "--set data.strict=true", &out3), 2);
    CU_ASSERT_PTR_NOT_NULL(out3 && strstr(out3, "img003.jpg") && strstr(out3, "strict"));
    free(out1);
    free(out2);
    free(out3);
}

/* A pack whose source changed since it was written is refused as stale (exit 2). */
static void test_stale_pack(void) {
    if (!need_mpi()) return;
    const char *dir = write_splits("stale", 4, 4, 30);
    const char *job = write_job(dir, "pack_dir = packs\n");
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "cd %s && %s pack %s", dir, bin, job);
    CU_ASSERT_EQUAL_FATAL(testutil_run(cmd, NULL), 0);
    char p[2048];
    snprintf(p, sizeof p, "%s/val/cats/img001.jpg", dir);
    unlink(p);
    CU_ASSERT_EQUAL(train(1, dir, job, "stale", "", &out), 2);
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "validation.pack") && strstr(out, "stale") &&
                           strstr(out, "convnet-dist pack"));
    free(out);
}

/* Run bin with args (NULL-terminated) in dir, from this process: exit status, wall seconds and
 * the child's peak RSS (KB). That RSS also counts what the child shared with us before its exec
 * (the kernel keeps the larger), which under ASan (its quarantine keeps freed memory) is this
 * test process's 200 MB and more, not the program's: run_measured below avoids it. */
static int run_forked(const char *dir, char *const *args, double *secs, long *rss_kb) {
    double t0 = now_seconds();
    pid_t pid = fork();
    if (pid == 0) {
        if (chdir(dir) != 0) _exit(127);
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        execv(bin, args);
        _exit(127);
    }
    int st = 0;
    struct rusage ru;
    wait4(pid, &st, 0, &ru);
    *secs = now_seconds() - t0;
    *rss_kb = ru.ru_maxrss;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* As run_forked, but the fork and exec come from a small process, python3 (which the timeline
 * test needs too), so the peak RSS is the program's own. *alone = 0 when python3 is missing and
 * run_forked measured instead. */
static int run_measured(const char *dir, char *const *args, double *secs, long *rss_kb,
                        int *alone) {
    *alone = system("python3 -c 'import os' >/dev/null 2>&1") == 0;
    if (!*alone) return run_forked(dir, args, secs, rss_kb);
    char cmd[4096];
    int n = snprintf(cmd, sizeof cmd,
                     "cd '%s' && python3 -c 'import os, sys, time\n"
                     "t0 = time.monotonic()\n"
                     "pid = os.fork()\n"
                     "if pid == 0:\n"
                     "    fd = os.open(\"/dev/null\", os.O_WRONLY); os.dup2(fd, 1); os.dup2(fd, 2)\n"
                     "    os.execv(sys.argv[1], sys.argv[1:])\n"
                     "_, st, ru = os.wait4(pid, 0)\n"
                     "rc = os.waitstatus_to_exitcode(st)\n"
                     "print(\"measured\", rc if rc >= 0 else 128 - rc, time.monotonic() - t0, "
                     "ru.ru_maxrss)'",
                     dir);
    for (int i = 0; args[i] && n < (int)sizeof cmd; i++)
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, " '%s'", args[i]);
    char *out = NULL;
    int rc = -1;
    const char *p = testutil_run(cmd, &out) == 0 && out ? strstr(out, "measured ") : NULL;
    if (!p || sscanf(p, "measured %d %lf %ld", &rc, secs, rss_kb) != 3) rc = -1;
    free(out);
    return rc;
}

/* image_size = 8192 x 8192: refused by the plan's memory check before any image is decoded
 * (loading = memory would warn about the bad JPEG while decoding), within 1 s of what start-up
 * (MPI, the job) costs, and under 100 MB. */
static void test_check_before_data(void) {
    bin = testutil_bin_abs();
    const char *dir = small_folders();
    char p[2048];
    snprintf(p, sizeof p, "%s/train/cats/zz-not-a-jpeg.jpg", dir);
    FILE *f = fopen(p, "w");
    fputs("not a jpeg", f);
    fclose(f);
    const char *job = write_job(dir, "loading = memory\n[model]\nname = big\n");
    char *big[] = {(char *)bin, "train", (char *)job, "--set", "data.image_size=8192,8192", NULL};
    char *base[] = {(char *)bin, "train", (char *)job, "--set", "data.strict=maybe", NULL};
    double s_big, s_base;
    long kb_big, kb_base;
    int alone;
    int rc_base = run_measured(dir, base, &s_base, &kb_base, &alone);
    int rc_big = run_measured(dir, big, &s_big, &kb_big, &alone);
    unlink(p);
    CU_ASSERT_EQUAL(rc_base, 2);
    CU_ASSERT_EQUAL(rc_big, 2);
    printf("\n  image_size 8192: %.2f s (start-up alone %.2f s), peak RSS %.1f MB%s\n", s_big,
           s_base, kb_big / 1024.0, alone ? "" : " (forked from this test: no python3)");
    CU_ASSERT(s_big - s_base < 1.0);
    CU_ASSERT(kb_big < 100 * 1024);
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "cd %s && %s train %s --set data.image_size=8192,8192", dir, bin,
             job);
    CU_ASSERT_EQUAL(testutil_run(cmd, &out), 2);
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "the model needs"));
    CU_ASSERT_PTR_NULL(out ? strstr(out, "zz-not-a-jpeg") : NULL); /* nothing was decoded */
    free(out);
}

/* In /proc/pid/maps, the feature cache's mapping: its inode, or 0; *flags gets "r--s" etc. */
static unsigned long cache_inode(long pid, char *flags, unsigned long *start) {
    char p[64], line[4096];
    snprintf(p, sizeof p, "/proc/%ld/maps", pid);
    FILE *f = fopen(p, "r");
    unsigned long ino = 0;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, "feature-cache-train")) {
            char perm[8] = "", dev[32];
            unsigned long off;
            sscanf(line, "%lx-%*x %7s %lx %31s %lu", start, perm, &off, dev, &ino);
            snprintf(flags, 8, "%s", perm);
            break;
        }
    if (f) fclose(f);
    return ino;
}

/* The mapping's "Anonymous:" kB in /proc/pid/smaps (a private copy would be anonymous). */
static long cache_anon_kb(long pid, unsigned long start) {
    char p[64], line[4096], head[32];
    snprintf(p, sizeof p, "/proc/%ld/smaps", pid);
    snprintf(head, sizeof head, "%lx-", start);
    FILE *f = fopen(p, "r");
    long kb = -1;
    int in = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (strchr(line, '-') && strstr(line, " ") && !strchr(line, ':')) in = 0;
        if (!strncmp(line, head, strlen(head))) in = 1;
        if (in && sscanf(line, "Anonymous: %ld kB", &kb) == 1) break;
    }
    if (f) fclose(f);
    return kb;
}

/* The ranks of a running job: processes whose command line names job. */
static int job_ranks(const char *job, long *pids, int max) {
    DIR *d = opendir("/proc");
    struct dirent *de;
    int n = 0;
    while (d && (de = readdir(d)) && n < max) {
        char p[300], cmd[4096];
        snprintf(p, sizeof p, "/proc/%s/cmdline", de->d_name);
        FILE *f = fopen(p, "r");
        if (!f) continue;
        size_t len = fread(cmd, 1, sizeof cmd - 1, f);
        fclose(f);
        for (size_t i = 0; i < len; i++)
            if (!cmd[i]) cmd[i] = ' ';
        cmd[len] = 0;
        if (strstr(cmd, job) && strstr(cmd, " train ") && !strstr(cmd, "mpirun") &&
            !strstr(cmd, "sh -c"))
            pids[n++] = atol(de->d_name);
    }
    if (d) closedir(d);
    return n;
}

/* The feature cache at -np 2: one file that both ranks map (the same inode), shared, with no
 * anonymous (private) copy in either rank. */
static void test_feature_cache_shared(void) {
    if (!need_mpi()) return;
    const char *dir = testutil_small_idx_dir("fc", 7);
    char text[2048];
    snprintf(text, sizeof text,
             "[data]\nroot = %s\ntrain_images = fc-train-images.idx\ntrain_labels = "
             "fc-train-labels.idx\n"
             "test_images = fc-test-images.idx\ntest_labels = fc-test-labels.idx\nscale = 1/255\n"
             "[conv2d]\nfilters = 16\nkernel_size = 3\npadding = same\nactivation = "
             "relu\ntrainable = false\n"
             "[flatten]\n[dense]\nunits = 3\nactivation = softmax\n"
             "[train]\nloss = sparse_categorical_crossentropy\nbatch_size = 12\nepochs = "
             "100000\nseed = 1\n"
             "conv_algorithm = im2col\n[checkpoint]\npath = off\n",
             dir);
    const char *job = testutil_write_file(dir, "fc-cache.job", text, strlen(text));
    char mpirun[256], cmd[4096];
    snprintf(cmd, sizeof cmd, "cd %s && OMP_NUM_THREADS=1 exec %s %s train %s > fc.log 2>&1", dir,
             testutil_mpirun(mpirun, sizeof mpirun, 2), bin, job);
    pid_t child = fork();
    if (child == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    long pids[4];
    unsigned long ino[2] = {0, 0}, start[2] = {0, 0};
    char flags[2][8] = {"", ""};
    int found = 0;
    for (int tries = 0; tries < 600 && found < 2; tries++) { /* up to 5 minutes on a busy machine */
        usleep(500000);
        int n = job_ranks(job, pids, 4);
        found = 0;
        for (int r = 0; r < n && r < 2; r++) {
            ino[r] = cache_inode(pids[r], flags[r], &start[r]);
            found += ino[r] != 0;
        }
    }
    long anon[2] = {-1, -1};
    for (int r = 0; r < found; r++) anon[r] = cache_anon_kb(pids[r], start[r]);
    kill(child, SIGTERM);
    int st;
    waitpid(child, &st, 0);
    printf("\n  feature cache: inodes %lu %lu, %s %s, anonymous %ld %ld kB\n", ino[0], ino[1],
           flags[0], flags[1], anon[0], anon[1]);
    CU_ASSERT_EQUAL(found, 2);
    CU_ASSERT(ino[0] != 0 && ino[0] == ino[1]);          /* one file, mapped by both ranks */
    CU_ASSERT(flags[0][3] == 's' && flags[1][3] == 's'); /* shared, not a private copy */
    CU_ASSERT(anon[0] == 0 && anon[1] == 0);
}

TEST_SUITE(stream,
           {"memory, stream, pack: bitwise equal at -np 1 and 2 (small folder)", test_paths_small},
           {"memory, stream, pack: dogs-vs-cats-augment, 20 steps", test_paths_dogs_vs_cats},
           {"a JPEG truncated after listing: black on every rank count, strict stops",
            test_bad_jpeg_mid_run},
           {"a stale pack is refused", test_stale_pack},
           {"the feature cache: one file mapped by both ranks", test_feature_cache_shared},
           {"image_size 8192 refused before any decode, in 1 s, under 100 MB",
            test_check_before_data});
