/* testutil.c: implementation of the shared test helpers declared in testutil.h. */
#include "testutil.h"
#include "runenv.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int n_skipped;

static int shared_present(void) {
    const char *env = getenv("CONVNET_SHARED_DATA");
    struct stat st;
    return stat(env && *env ? env : "../shared/data", &st) == 0 && S_ISDIR(st.st_mode);
}

void testutil_skip(const char *what, const char *why, int must_run) {
    const char *ci = getenv("CI");
    if (must_run && ci && !strcmp(ci, "true") && shared_present()) {
        printf("\n    FAIL %s: %s (CI=true with ../shared present: this must run)\n", what, why);
        CU_FAIL("a check that must run in CI was skipped");
        return;
    }
    n_skipped++;
    printf("\n    SKIP %s: %s\n", what, why);
}

int testutil_skipped(void) { return n_skipped; }

const char *testutil_shared_data(const char *what) {
    const char *env = getenv("CONVNET_SHARED_DATA");
    const char *path = env && *env ? env : "../shared/data";
    if (shared_present()) return path;
    char why[512];
    snprintf(why, sizeof why, "shared data folder %s is absent", path);
    testutil_skip(what, why, 0);
    return NULL;
}

const char *testutil_bin(void) {
    const char *b = getenv("CONVNET_BIN");
    return b && *b ? b : "./convnet-dist";
}

const char *testutil_bin_abs(void) {
    static char abs[4096];
    if (!abs[0] && !realpath(testutil_bin(), abs)) snprintf(abs, sizeof abs, "%s", testutil_bin());
    return abs;
}

int testutil_train(const char *dir, const char *prefix, const char *job, const char *extra,
                   char **out) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cd '%s' && %s '%s' train '%s' %s", dir, prefix, testutil_bin_abs(),
             job, extra);
    return testutil_run(cmd, out);
}

const char *testutil_small_idx_dir(const char *prefix, unsigned seed) {
    const char *dir = testutil_tmpdir();
    char name[64];
    snprintf(name, sizeof name, "%s-train", prefix);
    testutil_write_idx_dataset(dir, name, 240, 10, 10, seed);
    snprintf(name, sizeof name, "%s-test", prefix);
    testutil_write_idx_dataset(dir, name, 60, 10, 10, seed + 1);
    return dir;
}

const char *testutil_self_exe(void) {
    static char buf[1024];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    return buf;
}

int testutil_have_mpi(void) {
    const char *m = getenv("CONVNET_MPI");
    if (m && strcmp(m, "0") == 0) return 0;
    return system("command -v mpirun >/dev/null 2>&1") == 0;
}

const char *testutil_mpirun(char *buf, size_t n, int np) {
    snprintf(buf, n, "mpirun %s--oversubscribe --mca btl self,vader -np %d",
             geteuid() == 0 ? "--allow-run-as-root " : "", np);
    return buf;
}

int testutil_run_bin(char **out, const char *fmt, ...) {
    char args[3000], cmd[3600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 %s %s", testutil_bin(), args);
    return testutil_run(cmd, out);
}

int testutil_run(const char *cmd, char **out) {
    char *full = malloc(strlen(cmd) + 16);
    sprintf(full, "(%s) 2>&1", cmd);
    FILE *p = popen(full, "r");
    free(full);
    if (!p) return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (cap - len < 1024) buf = realloc(buf, cap *= 2);
    }
    buf[len] = 0;
    int st = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

static char tmpdir_path[256];

static void tmpdir_remove(void) {
    if (tmpdir_path[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir_path);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir_path);
    }
}

char *testutil_env_swap(const char *name, const char *value) {
    const char *was = getenv(name);
    char *previous = was ? strdup(was) : NULL;
    setenv(name, value, 1);
    runenv_load(); /* the library sees the environment through runenv() */
    return previous;
}

void testutil_env_restore(const char *name, char *previous) {
    if (previous)
        setenv(name, previous, 1);
    else
        unsetenv(name);
    runenv_load();
    free(previous);
}

const char *testutil_tmpdir(void) {
    if (!tmpdir_path[0]) {
        strcpy(tmpdir_path, "/tmp/convnet-test-XXXXXX");
        if (!mkdtemp(tmpdir_path)) {
            perror("mkdtemp");
            exit(1);
        }
        atexit(tmpdir_remove);
    }
    return tmpdir_path;
}

const char *testutil_write_file(const char *dir, const char *name, const void *data, size_t n) {
    static char paths[8][512];
    static int slot;
    char *p = paths[slot++ % 8];
    snprintf(p, 512, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        perror(p);
        exit(1);
    }
    return p;
}

long testutil_file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

void testutil_fill(float *x, size_t n, unsigned seed, float lo, float hi) {
    unsigned long long s = seed * 2654435761ULL + 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = lo + (hi - lo) * (float)((s >> 40) & 0xFFFFFF) / 16777216.0f;
    }
}

double testutil_grad_error(double (*f)(void *ctx), void *ctx, float *x, const float *analytic,
                           size_t n, size_t samples, float eps) {
    double worst = 0;
    size_t step = (samples > 0 && samples < n) ? n / samples : 1;
    for (size_t i = 0; i < n; i += step) {
        float keep = x[i];
        x[i] = keep + eps;
        double fp = f(ctx);
        x[i] = keep - eps;
        double fm = f(ctx);
        x[i] = keep;
        double num = (fp - fm) / (2.0 * eps);
        double ana = analytic[i];
        double scale = fmax(1.0, fmax(fabs(num), fabs(ana)));
        double err = fabs(num - ana) / scale;
        if (isnan(err)) return INFINITY; /* a NaN gradient (or loss) is the worst error, not none */
        if (err > worst) worst = err;
    }
    return worst;
}

size_t testutil_idx_header(unsigned char *b, int ndim, const unsigned *dims) {
    b[0] = b[1] = 0;
    b[2] = 8;
    b[3] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++) {
        unsigned char *p = b + 4 + 4 * i;
        p[0] = (unsigned char)(dims[i] >> 24);
        p[1] = (unsigned char)(dims[i] >> 16);
        p[2] = (unsigned char)(dims[i] >> 8);
        p[3] = (unsigned char)dims[i];
    }
    return 4 + 4 * (size_t)ndim;
}

void testutil_write_idx_dataset(const char *dir, const char *prefix, int n, int h, int w,
                                unsigned seed) {
    size_t npix = (size_t)n * h * w;
    unsigned char *img = malloc(16 + npix), *lab = malloc(8 + (size_t)n);
    testutil_idx_header(img, 3, (const unsigned[]){(unsigned)n, (unsigned)h, (unsigned)w});
    testutil_idx_header(lab, 1, (const unsigned[]){(unsigned)n});
    float *noise = malloc(npix * sizeof *noise);
    testutil_fill(noise, npix, seed, 0, 60);
    for (int i = 0; i < n; i++) {
        int k = (int)((i * 2654435761u + seed) % 3);
        lab[8 + i] = (unsigned char)k;
        unsigned char *p = img + 16 + (size_t)i * h * w;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int in_square = y >= h / 4 && y < h / 4 + h / 3 && x >= k * w / 3 &&
                                x < k * w / 3 + w / 3;
                p[y * w + x] = (unsigned char)(noise[(size_t)i * h * w + y * w + x] +
                                               (in_square ? 180 : 0));
            }
    }
    char name[256];
    snprintf(name, sizeof name, "%s-images.idx", prefix);
    testutil_write_file(dir, name, img, 16 + npix);
    snprintf(name, sizeof name, "%s-labels.idx", prefix);
    testutil_write_file(dir, name, lab, 8 + (size_t)n);
    free(img);
    free(lab);
    free(noise);
}

int testutil_same_weights(const char *dir, const char *a, const char *b, const char *rtol) {
    char cmd[8192];
    int k = snprintf(cmd, sizeof cmd, "'%s' diff-weights '%s/%s' '%s/%s' --rtol %s",
                     testutil_bin_abs(), dir, a, dir, b, rtol);
    if (k < 0 || (size_t)k >= sizeof cmd) return 0;
    char *out = NULL;
    int rc = testutil_run(cmd, &out);
    if (rc) printf("\n    %s", out);
    free(out);
    return rc == 0;
}

int testutil_read_step_losses(const char *dir, const char *tag, double *loss, int max) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.steps", dir, tag);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = 0, epoch;
    long step;
    while (n < max && fscanf(f, "%ld %d %lf", &step, &epoch, &loss[n]) == 3) n++;
    fclose(f);
    return n;
}
