/* fuzz_h5.c: libFuzzer target for Keras .h5 weights (keras_h5.c) through HDF5's in-memory
 * file image (the core driver): layer_names / weight_names attributes in every string layout,
 * groups, datasets, shapes against the job's layers, non-finite values.
 *
 * Input: the HDF5 file image. The model: conv2d "conv" (2 filters, 1x1, bias), flatten, dense
 * "dense" (2 units), on 2x2x1 inputs, as gen_seeds.c writes its seed file.
 *
 * Each input is parsed as real loads parse a file: in the sandboxed child process of
 * isolate_run() (seccomp-bpf, rlimits; docs/sandbox.md). libhdf5 is not memory-safe (Debian's
 * 1.10.8; its heap overflows are not ours to fix), so a child that crashes or is stopped by the
 * sandbox, with a clear error in the parent, is *contained*: counted, and its first inputs kept
 * in $FUZZ_H5_CONTAINED for run.sh, which replays them in this process to say whether the
 * memory error was libhdf5's or ours (ours is a finding). A finding here, besides our own bugs
 * (a leaked HDF5 handle, a message without the file's name): anything that *escaped* the
 * child: a file created in the (empty) working folder, the parent's parameters changed by a
 * failed load, a process left behind.
 *
 * The child's coverage counters are copied back into the parent's (libFuzzer reads the
 * parent's), so the search is guided by our code's coverage as before (libhdf5 is not
 * instrumented). FUZZ_H5_INPROCESS=1 parses in this process, without the child (replays).
 * $FUZZ_H5_STATS: a file that gets "runs ok refused contained sandboxed escapes".
 */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "isolate.h"
#include "keras_h5.h"

/* libFuzzer's inline 8-bit counters (the linker names the section's bounds) */
extern uint8_t __start___sancov_cntrs[] __attribute__((weak));
extern uint8_t __stop___sancov_cntrs[] __attribute__((weak));

#define KEEP_CONTAINED 40

typedef struct {
    int leaked;    /* HDF5 handles left open by the loader (ours) */
    int cov_valid; /* the child copied its counters */
    uint8_t cov[];
} Shared;

static Job j;
static Model m;
static float *keep;
static Shared *shared;
static size_t n_cov;
static int inprocess;
static char contained_dir[PATH_MAX];
static struct stat canary;
static const char *canary_dir;
static int home;
static unsigned long long runs, ok, refused, contained, sandboxed, escapes, kept;

/* The counts, in a file mapped shared: current whatever ends the process (a timeout's
 * _Exit runs no atexit handler). Fixed width, so that the file's length never changes. */
#define STATS_LINE 126
static char *stats_map;

static void write_stats(void) {
    if (!stats_map) return;
    char line[STATS_LINE + 1];
    snprintf(line, sizeof line, "%20llu %20llu %20llu %20llu %20llu %20llu\n", runs, ok, refused,
             contained, sandboxed, escapes);
    memcpy(stats_map, line, STATS_LINE);
}

static void init(void) {
    if (fuzz_model("[conv2d]\nname = conv\nfilters = 2\nkernel_size = 1\n[flatten]\n"
                   "[dense]\nname = dense\nunits = 2\nactivation = softmax\n",
                   (Shape){2, 2, 1, 0}, 1 << 28, &j, &m))
        __builtin_trap();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    H5PLset_loading_state(0); /* as keras_h5_load_isolated: no plugin code */
    keep = malloc(m.n_params * sizeof(float));
    memcpy(keep, m.params, m.n_params * sizeof(float));
    const char *v = getenv("FUZZ_H5_INPROCESS");
    inprocess = v && !strcmp(v, "1");
    n_cov = __start___sancov_cntrs && __stop___sancov_cntrs
                ? (size_t)(__stop___sancov_cntrs - __start___sancov_cntrs)
                : 0;
    shared = mmap(NULL, sizeof *shared + n_cov, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                  -1, 0);
    if (shared == MAP_FAILED) __builtin_trap();
    int sfd = (v = getenv("FUZZ_H5_STATS")) ? open(v, O_RDWR | O_CREAT | O_TRUNC, 0644) : -1;
    if (sfd >= 0 && ftruncate(sfd, STATS_LINE) == 0) {
        stats_map = mmap(NULL, STATS_LINE, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
        if (stats_map == MAP_FAILED) stats_map = NULL;
    }
    if (sfd >= 0) close(sfd);
    if ((v = getenv("FUZZ_H5_CONTAINED")) && !realpath(v, contained_dir)) contained_dir[0] = 0;
    atexit(write_stats);
    /* the canary: an empty folder, the child's working folder, that nothing may write into
     * (libFuzzer's own files, relative to ours, are written between runs) */
    static char tmpl[] = "/tmp/fuzz_h5.XXXXXX";
    home = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (!inprocess && (home < 0 || !mkdtemp(tmpl) || stat(tmpl, &canary) != 0)) __builtin_trap();
    canary_dir = tmpl;
}

/* In the sandboxed child: the load, the handle check, the counters back to the parent. */
static int child_load(void *ctx, void *buf, Err *e) {
    const uint8_t **in = ctx;
    Model child = m;
    child.params = buf;
    int rc = keras_h5_load_weights_image(in[0], (size_t)(in[1] - in[0]), "fuzz.h5", &child, e);
    /* every handle the loader opened is closed again, whatever the file held */
    shared->leaked = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0;
    if (n_cov) memcpy(shared->cov, __start___sancov_cntrs, n_cov);
    shared->cov_valid = 1;
    return rc;
}

static void keep_contained(const uint8_t *data, size_t size) {
    if (!contained_dir[0] || kept >= KEEP_CONTAINED) return;
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/contained-%llu-%zu", contained_dir, runs, size);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, size, f);
    fclose(f);
    kept++;
}

/* Something got out of the child: report it as a finding. */
static void escaped(const char *what) {
    fprintf(stderr, "fuzz_h5: ESCAPE: %s\n", what);
    escapes++;
    write_stats();
    __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) {
        init();
        ready = 1;
    }
    Err e = {0};
    runs++;
    if (inprocess) {
        keras_h5_load_weights_image(data, size, "fuzz.h5", &m, &e);
        if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0) __builtin_trap();
        return 0;
    }
    shared->leaked = shared->cov_valid = 0;
    const uint8_t *in[2] = {data, data + size};
    IsolateOpts opts = {.what = "fuzz.h5", .reader = "the HDF5 parser"};
    H5open();
    if (chdir(canary_dir) != 0) __builtin_trap();
    int rc = isolate_run(child_load, in, m.params, m.n_params * sizeof(float), &opts, &e);
    if (fchdir(home) != 0) __builtin_trap();
    if (shared->cov_valid)
        for (size_t i = 0; i < n_cov; i++)
            if (shared->cov[i] > __start___sancov_cntrs[i])
                __start___sancov_cntrs[i] = shared->cov[i];
    if (shared->leaked) __builtin_trap();                       /* ours: a handle left open */
    if (rc != 0 && !strstr(e.msg, "fuzz.h5")) __builtin_trap(); /* ours: an unclear error */
    switch (opts.ended) {
    case ISOLATE_OK: ok++; break;
    case ISOLATE_REFUSED: refused++; break;
    case ISOLATE_SANDBOX: sandboxed++; /* fall through */
    case ISOLATE_CRASHED:
        if (getenv("FUZZ_H5_VERBOSE")) fprintf(stderr, "fuzz_h5: contained: %s\n", e.msg);
        contained++;
        keep_contained(data, size);
        break;
    case ISOLATE_NO_SANDBOX: escaped("the kernel has no seccomp: nothing is contained"); break;
    }
    /* the escapes: the parent's parameters, its working folder, its children */
    if (rc == 0)
        memcpy(m.params, keep, m.n_params * sizeof(float));
    else if (memcmp(m.params, keep, m.n_params * sizeof(float)) != 0)
        escaped("a failed load changed the parent's parameters");
    struct stat now;
    if (stat(canary_dir, &now) != 0 || now.st_mtim.tv_sec != canary.st_mtim.tv_sec ||
        now.st_mtim.tv_nsec != canary.st_mtim.tv_nsec || now.st_nlink != canary.st_nlink)
        escaped("a file was created in the working folder");
    if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD) escaped("a process was left behind");
    write_stats();
    return 0;
}
