/* test_checkpoint.c: checkpoints: bitwise round trip of every field, each kind of damage
 * (flipped byte per section and in the header, truncation, another model, another job, a
 * future version, trailing garbage, a foreign file) refused with a precise message and the
 * destinations untouched, rotation keeping exactly K files, and crash safety: a child writing
 * ~12 MB checkpoints (1,000,000 parameters + two 1,000,000-value optimizer arrays) in a loop
 * is SIGKILLed at seeded random instants, after which the file must load and hold one complete
 * snapshot. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "testutil.h"

enum { NP = 1000, NO = 600 };
static const uint64_t JOB = 0x1234567890abcdefULL, STRUCT = 0xfedcba0987654321ULL;

static CheckpointState sample_state(void) {
    CheckpointState s;
    memset(&s, 0, sizeof s);
    s.job_hash = JOB;
    s.structure_hash = STRUCT;
    s.epoch = 7;
    s.step = 123;
    s.global_step = 4567890123LL;
    s.phase = 2;
    s.best = 0.3141592653589793;
    s.best_epoch = 5;
    s.epochs_since_best = 1;
    s.epoch_loss_sum = 1234.5678;
    s.epoch_correct = 987.0;
    s.epoch_seen = 1500.0;
    s.opt_iterations = 98765;
    s.plateau_lr = 0.0125;
    s.plateau_best = -INFINITY;
    s.plateau_wait = 3;
    s.plateau_cooldown = 2;
    return s;
}

static const char *dir_path(const char *sub) {
    static char d[512];
    snprintf(d, sizeof d, "%s/%s", testutil_tmpdir(), sub);
    mkdir(d, 0755);
    return d;
}

/* A saved sample checkpoint at dir/name; returns its path (static buffer). */
static const char *write_sample(const char *name, float *p, float *s1, float *s2) {
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", dir_path("ckpt"), name);
    testutil_fill(p, NP, 1, -1, 1);
    testutil_fill(s1, NO, 2, -1, 1);
    testutil_fill(s2, NO, 3, 0, 1);
    CheckpointState s = sample_state();
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(checkpoint_save(path, &s, p, NP, s1, s2, NO, &e), 0);
    return path;
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void test_round_trip(void) {
    float p[NP], s1[NO], s2[NO], q[NP], t1[NO], t2[NO];
    const char *path = write_sample("rt.ckpt", p, s1, s2);
    CU_ASSERT_EQUAL(file_size(path),
                    (long)(CHECKPOINT_HEADER_BYTES + CHECKPOINT_STATE_BYTES + 4 * NP + 8 * NO));
    CheckpointState in = sample_state(), out;
    memset(&out, 0x55, sizeof out);
    Err e = {0};
    CU_ASSERT_EQUAL_FATAL(checkpoint_load(path, &out, q, NP, t1, t2, NO, JOB, STRUCT, &e), 0);
    CU_ASSERT_EQUAL(out.job_hash, in.job_hash);
    CU_ASSERT_EQUAL(out.structure_hash, in.structure_hash);
    CU_ASSERT_EQUAL(out.epoch, 7);
    CU_ASSERT_EQUAL(out.step, 123);
    CU_ASSERT_EQUAL(out.global_step, 4567890123LL);
    CU_ASSERT_EQUAL(out.phase, 2);
    CU_ASSERT(memcmp(&out.best, &in.best, 8) == 0);
    CU_ASSERT_EQUAL(out.best_epoch, 5);
    CU_ASSERT_EQUAL(out.epochs_since_best, 1);
    CU_ASSERT(out.epoch_loss_sum == 1234.5678);
    CU_ASSERT(out.epoch_correct == 987.0);
    CU_ASSERT(out.epoch_seen == 1500.0);
    CU_ASSERT_EQUAL(out.opt_iterations, 98765);
    CU_ASSERT(out.plateau_lr == 0.0125);
    CU_ASSERT(isinf(out.plateau_best) && out.plateau_best < 0);
    CU_ASSERT_EQUAL(out.plateau_wait, 3);
    CU_ASSERT_EQUAL(out.plateau_cooldown, 2);
    CU_ASSERT(memcmp(p, q, sizeof p) == 0);
    CU_ASSERT(memcmp(s1, t1, sizeof s1) == 0);
    CU_ASSERT(memcmp(s2, t2, sizeof s2) == 0);

    /* NaN best and negative counters survive; zero expected hashes skip those checks */
    in.best = NAN;
    in.best_epoch = -1;
    in.job_hash = 99;
    CU_ASSERT_EQUAL_FATAL(checkpoint_save(path, &in, p, NP, s1, s2, NO, &e), 0);
    CU_ASSERT_EQUAL_FATAL(checkpoint_load(path, &out, q, NP, t1, t2, NO, 0, STRUCT, &e), 0);
    CU_ASSERT(isnan(out.best));
    CU_ASSERT_EQUAL(out.best_epoch, -1);
    CU_ASSERT_EQUAL(out.job_hash, 99);

    /* no optimizer state (SGD without momentum) */
    CU_ASSERT_EQUAL_FATAL(checkpoint_save(path, &in, p, NP, NULL, NULL, 0, &e), 0);
    CU_ASSERT_EQUAL(checkpoint_load(path, &out, q, NP, NULL, NULL, 0, 0, 0, &e), 0);
    CU_ASSERT(memcmp(p, q, sizeof p) == 0);
    CU_ASSERT_FALSE(e.set);
}

/* Loading must fail with a message containing want (and the path), and leave every
 * destination as it was. */
static void expect_refused(const char *path, uint64_t job, uint64_t st, size_t np,
                           const char *want) {
    static float q[NP + 8], t1[NO], t2[NO];
    CheckpointState out;
    memset(&out, 0xA5, sizeof out);
    memset(q, 0xA5, sizeof q);
    memset(t1, 0xA5, sizeof t1);
    memset(t2, 0xA5, sizeof t2);
    Err e = {0};
    int rc = checkpoint_load(path, &out, q, np, t1, t2, NO, job, st, &e);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT(e.set);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, path));
    if (!strstr(e.msg, want)) {
        printf("\n  expected \"%s\" in: %s\n", want, e.msg);
        CU_FAIL("message does not say what is wrong");
    }
    const unsigned char *b = (const unsigned char *)&out;
    int untouched = 1;
    for (size_t i = 0; i < sizeof out; i++) untouched &= b[i] == 0xA5;
    const unsigned char *arrs[3] = {(void *)q, (void *)t1, (void *)t2};
    size_t lens[3] = {sizeof q, sizeof t1, sizeof t2};
    for (int a = 0; a < 3; a++)
        for (size_t i = 0; i < lens[a]; i++) untouched &= arrs[a][i] == 0xA5;
    CU_ASSERT(untouched);
}

static unsigned char *slurp(const char *path, long *n) {
    *n = file_size(path);
    CU_ASSERT_FATAL(*n > 0);
    unsigned char *b = malloc((size_t)*n + 64);
    FILE *f = fopen(path, "rb");
    CU_ASSERT_FATAL(f && fread(b, 1, (size_t)*n, f) == (size_t)*n);
    fclose(f);
    return b;
}

static void spill(const char *path, const unsigned char *b, long n) {
    FILE *f = fopen(path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_FATAL(fwrite(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
}

static void test_flipped_bytes(void) {
    float p[NP], s1[NO], s2[NO];
    const char *src = write_sample("good.ckpt", p, s1, s2);
    char path[700];
    snprintf(path, sizeof path, "%s.bad", src);
    long n;
    unsigned char *good = slurp(src, &n);
    const long H = CHECKPOINT_HEADER_BYTES, S = CHECKPOINT_STATE_BYTES;
    struct {
        long off;
        const char *want;
    } cases[] = {
        {0, "not a checkpoint (bad magic"},
        {13, "header corrupt (CRC mismatch at offset 0..143"}, /* section count */
        {40, "header corrupt (CRC mismatch"},                  /* state's CRC in the table */
        {145, "header corrupt (CRC mismatch"},                 /* the header CRC itself */
        {H + 3, "section 'state' corrupt (CRC mismatch at offset 148..275"},
        {H + S + 4 * 500, "section 'params' corrupt (CRC mismatch at offset 276..4275"},
        {H + S + 4 * NP + 17, "section 'opt_s1' corrupt (CRC mismatch at offset 4276..6675"},
        {n - 1, "section 'opt_s2' corrupt (CRC mismatch at offset 6676..9075"},
    };
    CU_ASSERT_EQUAL_FATAL(n, 9076);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        unsigned char *b = malloc((size_t)n);
        memcpy(b, good, (size_t)n);
        b[cases[i].off] ^= 0x10;
        spill(path, b, n);
        expect_refused(path, JOB, STRUCT, NP, cases[i].want);
        free(b);
    }
    free(good);
}

static void put32(unsigned char *b, uint32_t v) {
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i));
}

/* A version 1 file (written before ReduceLROnPlateau's state: a 104-byte state section), made
 * from a version 2 one by the layout in checkpoint.h, still loads, the new fields zero. */
static void test_version1_loads(void) {
    float p[NP], s1[NO], s2[NO], q[NP], t1[NO], t2[NO];
    const char *src = write_sample("v2.ckpt", p, s1, s2);
    long n;
    unsigned char *b = slurp(src, &n);
    const long H = CHECKPOINT_HEADER_BYTES,
               cut = CHECKPOINT_STATE_BYTES - CHECKPOINT_STATE_BYTES_V1;
    memmove(b + H + CHECKPOINT_STATE_BYTES_V1, b + H + CHECKPOINT_STATE_BYTES,
            (size_t)(n - H - CHECKPOINT_STATE_BYTES));
    n -= cut;
    put32(b + 8, 1);
    b[16 + 16] = CHECKPOINT_STATE_BYTES_V1; /* the state's length (low byte; the rest is 0) */
    put32(b + 16 + 24, crc32_update(0, b + H, CHECKPOINT_STATE_BYTES_V1));
    for (int sec = 1; sec < 4; sec++) { /* the later sections move up */
        unsigned char *ent = b + 16 + 32 * sec + 8;
        uint64_t off = 0;
        for (int i = 0; i < 8; i++) off |= (uint64_t)ent[i] << (8 * i);
        off -= (uint64_t)cut;
        for (int i = 0; i < 8; i++) ent[i] = (unsigned char)(off >> (8 * i));
    }
    put32(b + 144, crc32_update(0, b, 144));
    char path[700];
    snprintf(path, sizeof path, "%s.v1", src);
    spill(path, b, n);
    free(b);
    CheckpointState out;
    memset(&out, 0x55, sizeof out);
    Err e = {0};
    int rc = checkpoint_load(path, &out, q, NP, t1, t2, NO, JOB, STRUCT, &e);
    if (rc) printf("\n    %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(out.opt_iterations, 98765);
    CU_ASSERT_EQUAL(out.global_step, 4567890123LL);
    CU_ASSERT(out.plateau_lr == 0);
    CU_ASSERT_EQUAL(out.plateau_wait, 0);
    CU_ASSERT(memcmp(p, q, sizeof p) == 0);
    CU_ASSERT(memcmp(s2, t2, sizeof s2) == 0);
}

static void test_truncated_and_trailing(void) {
    float p[NP], s1[NO], s2[NO];
    const char *src = write_sample("trunc-src.ckpt", p, s1, s2);
    char path[700];
    snprintf(path, sizeof path, "%s.cut", src);
    long n;
    unsigned char *good = slurp(src, &n);
    long cuts[] = {0, 5, 100, 147, 148, 251, 252, 4000, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        spill(path, good, cuts[i]);
        char want[80];
        if (cuts[i] < (long)CHECKPOINT_HEADER_BYTES)
            snprintf(want, sizeof want, "truncated: %ld of at least 148 bytes", cuts[i]);
        else
            snprintf(want, sizeof want, "truncated: %ld of %ld bytes", cuts[i], n);
        expect_refused(path, JOB, STRUCT, NP, want);
    }
    memcpy(good + n, "garbage!", 8);
    spill(path, good, n + 8);
    expect_refused(path, JOB, STRUCT, NP,
                   "8 bytes of trailing garbage after the last section (offset 9076)");
    free(good);
    /* foreign files */
    char foreign[200];
    memset(foreign, '#', sizeof foreign);
    memcpy(foreign, "[model]\n", 8);
    const char *txt = testutil_write_file(dir_path("ckpt"), "foreign.txt", foreign, sizeof foreign);
    expect_refused(txt, JOB, STRUCT, NP, "not a checkpoint (bad magic at offset 0)");
    expect_refused("/nonexistent/x.ckpt", JOB, STRUCT, NP, "cannot open checkpoint");
}

static void test_other_model_job_version(void) {
    float p[NP], s1[NO], s2[NO];
    const char *path = write_sample("other.ckpt", p, s1, s2);
    expect_refused(path, JOB, STRUCT + 1, NP, "checkpoint of another model");
    expect_refused(path, JOB, STRUCT, NP - 1, "checkpoint of another model (1000 parameters");
    expect_refused(path, JOB ^ 1, STRUCT, NP,
                   "written by a different job configuration (hash 1234567890abcdef, this job "
                   "1234567890abcdee)");

    /* a future version: only the version differs, the header CRC is made right for it */
    long n;
    unsigned char *b = slurp(path, &n);
    b[8] = 7;
    uint32_t crc = crc32_update(0, b, 144);
    for (int i = 0; i < 4; i++) b[144 + i] = (unsigned char)(crc >> (8 * i));
    char fut[700];
    snprintf(fut, sizeof fut, "%s.v7", path);
    spill(fut, b, n);
    expect_refused(fut, JOB, STRUCT, NP, "format version 7, this build reads 1 to 2");
    Err e = {0};
    CheckpointState st;
    float q[NP], t1[NO], t2[NO];
    checkpoint_load(fut, &st, q, NP, t1, t2, NO, 0, 0, &e);
    CU_ASSERT_PTR_NULL(strstr(e.msg, "corrupt")); /* a clean other version is not called damage */
    /* the same byte flipped without fixing the CRC: the message says the header may be damaged */
    b[8] = 1 ^ 0x40;
    for (int i = 0; i < 4; i++) b[144 + i] ^= 0xFF;
    spill(fut, b, n);
    expect_refused(fut, JOB, STRUCT, NP, "header CRC does not match");
    free(b);
}

static int ckpt_epoch(const char *path) {
    float q[4];
    CheckpointState st;
    Err e = {0};
    if (checkpoint_load(path, &st, q, 4, NULL, NULL, 0, 0, 0, &e)) return -1;
    return st.epoch;
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

static void test_rotation(void) {
    char path[600], p1[640];
    snprintf(path, sizeof path, "%s/rot.ckpt", dir_path("rot"));
    float p[4] = {1, 2, 3, 4};
    CheckpointState st = sample_state();
    Err e = {0};
    for (int k = 0; k < 6; k++) {
        CU_ASSERT_EQUAL_FATAL(checkpoint_rotate(path, 3, &e), 0);
        st.epoch = k;
        CU_ASSERT_EQUAL_FATAL(checkpoint_save(path, &st, p, 4, NULL, NULL, 0, &e), 0);
    }
    CU_ASSERT_EQUAL(ckpt_epoch(path), 5);
    snprintf(p1, sizeof p1, "%s.1", path);
    CU_ASSERT_EQUAL(ckpt_epoch(p1), 4);
    snprintf(p1, sizeof p1, "%s.2", path);
    CU_ASSERT_EQUAL(ckpt_epoch(p1), 3);
    snprintf(p1, sizeof p1, "%s.3", path);
    CU_ASSERT_FALSE(exists(p1));
    snprintf(p1, sizeof p1, "%s.1.tmp", path);
    CU_ASSERT_FALSE(exists(p1));
    /* rotate alone never removes path: it is still the newest checkpoint */
    CU_ASSERT_EQUAL(checkpoint_rotate(path, 3, &e), 0);
    CU_ASSERT_EQUAL(ckpt_epoch(path), 5);
    snprintf(p1, sizeof p1, "%s.1", path);
    CU_ASSERT_EQUAL(ckpt_epoch(p1), 5);
    /* a smaller keep drops the surplus */
    CU_ASSERT_EQUAL(checkpoint_rotate(path, 2, &e), 0);
    snprintf(p1, sizeof p1, "%s.2", path);
    CU_ASSERT_FALSE(exists(p1));
    CU_ASSERT_EQUAL(checkpoint_rotate(path, 1, &e), 0);
    snprintf(p1, sizeof p1, "%s.1", path);
    CU_ASSERT_FALSE(exists(p1));
    CU_ASSERT_EQUAL(ckpt_epoch(path), 5);
    /* first checkpoint: nothing to rotate */
    char fresh[640];
    snprintf(fresh, sizeof fresh, "%s/none.ckpt", dir_path("rot"));
    CU_ASSERT_EQUAL(checkpoint_rotate(fresh, 3, &e), 0);
    CU_ASSERT_FALSE(e.set);

    /* load_newest falls back to path.1 when path is damaged */
    CU_ASSERT_EQUAL(checkpoint_rotate(path, 2, &e), 0);
    st.epoch = 6;
    CU_ASSERT_EQUAL_FATAL(checkpoint_save(path, &st, p, 4, NULL, NULL, 0, &e), 0);
    FILE *f = fopen(path, "r+b");
    CU_ASSERT_FATAL(f != NULL);
    fseek(f, CHECKPOINT_HEADER_BYTES + CHECKPOINT_STATE_BYTES + 2, SEEK_SET);
    fputc(0x7f, f);
    fclose(f);
    float q[4];
    int which = -1;
    CheckpointState got;
    CU_ASSERT_EQUAL(
        checkpoint_load_newest(path, 2, &got, q, 4, NULL, NULL, 0, 0, 0, &which, NULL, &e), 0);
    CU_ASSERT_EQUAL(which, 1);
    CU_ASSERT_EQUAL(got.epoch, 5);
}

/* ---- crash safety ---- */

enum { CRASH_NP = 1000000, CRASH_NO = 1000000, KILLS = 60 };

typedef struct {
    volatile int ready;    /* child has started its loop */
    volatile int in_write; /* inside checkpoint_save */
    volatile long next;    /* step number of the save in progress / next save */
    volatile long done;    /* last step whose save returned */
    volatile long saves;   /* completed saves, all children */
} Shared;

/* Contents of save number k: a function of k, so a loaded file can be checked whole. */
static void snapshot(long k, CheckpointState *st, float *p, float *s1, float *s2) {
    *st = sample_state();
    st->global_step = k;
    st->epoch = (int32_t)(k % 1000);
    for (size_t i = 0; i < CRASH_NP; i += 997) p[i] = (float)(k * 31 + (long)i);
    for (size_t i = 0; i < CRASH_NO; i += 991) s1[i] = (float)(k - (long)i), s2[i] = (float)k;
}

static int snapshot_ok(long k, const float *p, const float *s1, const float *s2) {
    for (size_t i = 0; i < CRASH_NP; i += 997)
        if (p[i] != (float)(k * 31 + (long)i)) return 0;
    for (size_t i = 0; i < CRASH_NO; i += 991)
        if (s1[i] != (float)(k - (long)i) || s2[i] != (float)k) return 0;
    return 1;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void test_kill_during_writes(void) {
    char path[600];
    const char *d = dir_path("crash");
    snprintf(path, sizeof path, "%s/crash.ckpt", d);
    float *p = calloc(CRASH_NP, 4), *s1 = calloc(CRASH_NO, 4), *s2 = calloc(CRASH_NO, 4);
    CU_ASSERT_FATAL(p && s1 && s2);
    Shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CU_ASSERT_FATAL(sh != MAP_FAILED);
    memset((void *)sh, 0, sizeof *sh);
    CheckpointState st;
    Err e = {0};
    snapshot(0, &st, p, s1, s2);
    double t0 = now_seconds();
    CU_ASSERT_EQUAL_FATAL(checkpoint_save(path, &st, p, CRASH_NP, s1, s2, CRASH_NO, &e), 0);
    double t_save = now_seconds() - t0;
    sh->next = 1;
    /* Kill instants: uniform over 0..30 ms, widened to 1.5 save times when a save takes
     * longer than that, counted from the end of the child's first save, so that the kills
     * fall in every phase of the next save (CRC, write, fsync, rename) and between saves. */
    long window_us = (long)(1.5e6 * t_save);
    if (window_us < 30000) window_us = 30000;

    uint64_t seed = 20240607;
    int during = 0, loads_ok = 0, snapshots_ok = 0, temps_left = 0, newest = 0;
    double t_start = now_seconds();
    for (int kill_no = 0; kill_no < KILLS; kill_no++) {
        sh->ready = 0;
        pid_t pid = fork();
        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
            Err ce = {0};
            CheckpointState cs;
            for (;;) {
                long k = sh->next;
                snapshot(k, &cs, p, s1, s2);
                sh->in_write = 1;
                if (checkpoint_save(path, &cs, p, CRASH_NP, s1, s2, CRASH_NO, &ce) != 0) _exit(3);
                sh->in_write = 0;
                sh->done = k;
                sh->saves++;
                sh->next = k + 1;
                sh->ready = 1;
            }
        }
        while (!sh->ready) sleep_us(100);
        sleep_us((long)(splitmix(&seed) % (uint64_t)(window_us + 1)));
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        if (sh->in_write) during++;
        sh->in_write = 0;

        /* the file must load and be one whole snapshot: the last finished save, or the one
         * in progress when its rename had already happened */
        memset(p, 0, CRASH_NP * 4);
        Err le = {0};
        if (checkpoint_load(path, &st, p, CRASH_NP, s1, s2, CRASH_NO, JOB, STRUCT, &le) == 0) {
            loads_ok++;
            long k = (long)st.global_step;
            if ((k == sh->done || k == sh->next) && snapshot_ok(k, p, s1, s2)) snapshots_ok++;
            if (k == sh->next) newest++;
            sh->done = k;
            sh->next = k + 1;
        } else {
            printf("\n  after kill %d: %s\n", kill_no, le.msg);
        }
        /* the killed writer's temp file is left behind, and is not the checkpoint */
        char tmp[700];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)pid);
        if (unlink(tmp) == 0) temps_left++;
    }
    printf("\n  crash test: one save of %.1f MB takes %.0f ms; %d kills over %.0f ms windows in "
           "%.1f s: %d inside checkpoint_save (%d of them after its temp file was created), "
           "%d found the interrupted save already renamed into place; %ld saves completed; "
           "%d/%d loads ok, %d/%d whole snapshots\n  ",
           (CHECKPOINT_HEADER_BYTES + CHECKPOINT_STATE_BYTES + 4.0 * CRASH_NP + 8.0 * CRASH_NO) /
               1e6,
           t_save * 1e3, KILLS, window_us / 1e3, now_seconds() - t_start, during, temps_left,
           newest, sh->saves, loads_ok, KILLS, snapshots_ok, KILLS);
    CU_ASSERT_EQUAL(loads_ok, KILLS);
    CU_ASSERT_EQUAL(snapshots_ok, KILLS);
    CU_ASSERT(during > 0); /* some kills did land inside a write */
    munmap((void *)sh, sizeof *sh);
    free(p);
    free(s1);
    free(s2);
}

TEST_SUITE(checkpoint, {"round trip, every field bitwise", test_round_trip},
           {"flipped byte in each section and the header", test_flipped_bytes},
           {"truncated, trailing garbage, foreign files", test_truncated_and_trailing},
           {"a version 1 checkpoint (no callback state) still loads", test_version1_loads},
           {"another model, another job, future version", test_other_model_job_version},
           {"rotation keeps K files, path never absent", test_rotation},
           {"SIGKILL during writes leaves a loadable checkpoint", test_kill_during_writes})
