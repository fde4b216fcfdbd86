/* fuzz_h5.c: libFuzzer target for Keras .h5 weights (keras_h5.c) through HDF5's in-memory
 * file image (the core driver): layer_names / weight_names attributes in every string layout,
 * groups, datasets, shapes against the job's layers, non-finite values.
 *
 * Input: the HDF5 file image. The model: conv2d "conv" (2 filters, 1x1, bias), flatten, dense
 * "dense" (2 units), on 2x2x1 inputs, as gen_seeds.c writes its seed file.
 *
 * Each input is parsed as real loads parse a file: in a sandboxed child process of
 * isolate_run() (seccomp-bpf, rlimits; docs/sandbox.md). libhdf5 is not memory-safe (Debian's
 * 1.10.8; its heap overflows are not ours to fix), so a child that crashes or is stopped by the
 * sandbox, with a clear error, is *contained*: counted, and its first inputs kept in
 * $FUZZ_H5_CONTAINED for run.sh, which replays them in this process to say whether the memory
 * error was libhdf5's or ours (ours is a finding). A finding here, besides our own bugs (a
 * leaked HDF5 handle, a message without the file's name): anything that *escaped* the child:
 * a file created in the (empty) working folder, the caller's parameters changed by a failed
 * load, a process left behind.
 *
 * Speed (docs/sandbox.md has the figures): a fork of libFuzzer's process per input cost about
 * 30 ms of CPU under ASan (page tables, copy-on-write faults), 25 times the parse. So:
 * - a *fork server*, forked once on the first input (before libFuzzer reads its corpus), with
 *   libhdf5 started, stands for the trainer: it calls isolate_run() exactly as
 *   keras_h5_load_isolated does, and the sandboxed child it gets serves inputs one after the
 *   other, up to $FUZZ_H5_PER_CHILD (default 1000), then ends and the server starts the next;
 * - a child that dies (crash, sandbox, limit) answers the input it was on with how it ended,
 *   and the next input gets a fresh child.
 * The trade-off: inputs served by one child share its heap and libhdf5's state (each starts
 * from the caller's parameters, with every HDF5 handle closed, checked). A silent corruption
 * by one input can crash a later one in the same child: still contained and counted, but
 * replayed alone it does not reproduce ("not reproduced" in run.sh's summary). Escapes are
 * checked for every input all the same. FUZZ_H5_PER_CHILD=1: a fresh child per input.
 * Input, answer and coverage travel through one shared mapping; the processes take turns on
 * futexes.
 *
 * The child's (and the server's) coverage counters are copied back into libFuzzer's (which
 * reads its own), so the search is guided by our code's coverage (libhdf5 is not
 * instrumented). FUZZ_H5_INPROCESS=1 parses in this process, without any child (replays).
 * $FUZZ_H5_STATS: a file that gets "runs ok refused contained sandboxed escapes signalled
 * limited children" (contained = sandboxed + signalled + limited + exited early).
 */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "isolate.h"
#include "keras_h5.h"


/* the largest input the server takes (libFuzzer's -max_len is 64 KiB; a larger file given on
 * the command line is not run, said so; FUZZ_H5_INPROCESS=1 replays any) */
#define SERVER_MAX_INPUT (16u << 20)

/* The mapping shared by libFuzzer's process, the server and (inherited) each child. */
typedef struct {
    _Atomic uint32_t seq;  /* futex: the parent posted request number seq */
    _Atomic uint32_t done; /* futex: the server answered request number done */
    size_t size;           /* the input's length, at data */
    /* the server's answer */
    int rc, ended, params_changed, left_behind;
    int between;                 /* a child ended between two inputs, unasked (never expected) */
    int escape_between;          /* ... and left an escape behind (sticky: checked each input) */
    _Atomic uint32_t killed;     /* the request on which the parent killed the child (timer) */
    _Atomic uint32_t taken;      /* the last request the current child took (0: none yet) */
    char between_why[256];       /* how that child ended, for the report */
    unsigned long long children; /* sandboxed children started */
    Err err;
    /* the child's (then merged with the server's) */
    int leaked;    /* HDF5 handles left open by the loader (ours) */
    int cov_valid; /* cov holds this input's counters */
    uint8_t *cov;  /* n_cov counters, after this header */
    uint8_t *data; /* SERVER_MAX_INPUT bytes, after cov */
} Chan;

static Job j;
static Model m;
static float *keep;
static Chan *chan;
static uint8_t *counters; /* libFuzzer's coverage counters (fuzz_cov.c) */
static size_t n_cov;
static int inprocess;
/* inputs one sandboxed child parses before the next is started ($FUZZ_H5_PER_CHILD) */
static unsigned per_child = 1000;
/* milliseconds an input may take in the child before it is killed ($FUZZ_H5_CHILD_MS; 0: no
 * limit but libFuzzer's -timeout, which ends the whole run): libhdf5 spins for seconds on some
 * files, and under ASan each buffer it sizes from the file costs an eighth of its size in
 * shadow memory, written (a 512 MB block: 64 MB, tens of ms of page faults). A clean parse of
 * the seed takes about 1 ms in the child; at a 2 s limit such inputs took two thirds of the
 * run, at 50 ms a quarter (270 exec/s against 380 at 20 ms, same corpus and seed). Counted as
 * killed by a limit (real loads: RLIMIT_CPU, 300 s), kept and replayed like the others. */
static long child_ms = 20;
/* contained inputs kept for run.sh to replay, of each kind ($FUZZ_H5_KEEP: the smoke run
 * keeps fewer) */
static unsigned long long keep_max = 40;
static pid_t server;
static char contained_dir[PATH_MAX];
static struct stat canary;
static const char *canary_dir;
static unsigned long long runs, ok, refused, contained, sandboxed, escapes, signalled, limited,
    kept;

/* The counts, in a file mapped shared: current whatever ends the process (a timeout's
 * _Exit runs no atexit handler). Fixed width, so that the file's length never changes. */
#define STATS_LINE 189
static char *stats_map;

static void write_stats(void) {
    if (!stats_map) return;
    char line[STATS_LINE + 1];
    snprintf(line, sizeof line, "%20llu %20llu %20llu %20llu %20llu %20llu %20llu %20llu %20llu\n",
             runs, ok, refused, contained, sandboxed, escapes, signalled, limited,
             chan ? chan->children : 0);
    memcpy(stats_map, line, STATS_LINE);
}

static long futex(_Atomic uint32_t *w, int op, uint32_t v, const struct timespec *t) {
    return syscall(SYS_futex, w, op, v, t, NULL, 0);
}

/* Answer request s (its fields are in chan). */
static void answer(uint32_t s) {
    atomic_store(&chan->done, s);
    futex(&chan->done, FUTEX_WAKE, 1, NULL);
}

/* The number of the request posted and not yet answered (waits for one). */
static uint32_t next_request(void) {
    uint32_t s;
    while ((s = atomic_load(&chan->seq)) == atomic_load(&chan->done))
        futex(&chan->seq, FUTEX_WAIT, s, NULL);
    return s;
}

/* The sandboxed child (isolate_run's fn, so exactly keras_h5_load_isolated's child): up to
 * per_child inputs, one after the other, each from the caller's parameters, with its own
 * coverage and the handle check; then it ends, and the server starts the next. */
static int child_serve(void *ctx, void *buf, Err *e) {
    (void)ctx;
    (void)e;
    Model child = m;
    child.params = buf;
    for (unsigned k = 0; k < per_child; k++) {
        uint32_t s = next_request();
        atomic_store(&chan->taken, s);
        memcpy(buf, keep, m.n_params * sizeof(float));
        if (n_cov) memset(counters, 0, n_cov);
        Err le = {0};
        int rc = keras_h5_load_weights_image(chan->data, chan->size, "fuzz.h5", &child, &le);
        /* every handle the loader opened is closed again, whatever the file held */
        chan->leaked = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0;
        chan->rc = rc;
        chan->ended = rc == 0 ? ISOLATE_OK : ISOLATE_REFUSED;
        chan->err = le;
        if (n_cov) memcpy(chan->cov, counters, n_cov);
        chan->cov_valid = 1;
        answer(s);
    }
    return 0;
}

/* The fork server, standing for the trainer: when a request is waiting, runs child_serve in a
 * sandboxed child with isolate_run, as keras_h5_load_isolated does. A child that dies answers
 * the request it was on with how it ended. Adopts orphans (a child's own children, were it
 * able to fork), so that it sees them. Ends with libFuzzer's process. */
static void server_loop(pid_t parent) {
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent) _exit(0);
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    if (chdir(canary_dir) != 0) _exit(1);
    size_t bytes = m.n_params * sizeof(float);
    for (;;) {
        next_request();
        Err e = {0};
        IsolateOpts opts = {.what = "fuzz.h5", .reader = "the HDF5 parser"};
        if (n_cov) memset(counters, 0, n_cov);
        chan->children++;
        atomic_store(&chan->taken, 0);
        int rc = isolate_run(child_serve, NULL, m.params, bytes, &opts, &e);
        /* the escapes the caller can see: its parameters after a failed load, its children */
        int changed = rc != 0 && memcmp(m.params, keep, bytes) != 0;
        memcpy(m.params, keep, bytes);
        int left = waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD;
        if (rc == 0 && !left) continue; /* it served its inputs */
        /* Which request the child died on. The parent's timer kills it by pid, so it may end
         * just after answering (the parent may then be reading that answer, or have posted
         * the next request already: leave both alone), or just after waking for the pending
         * request but before recording that it took it. */
        uint32_t pending = atomic_load(&chan->seq), answered = atomic_load(&chan->done),
                 took = atomic_load(&chan->taken), killed = atomic_load(&chan->killed);
        int on_pending = killed == pending || took == pending || took == 0;
        if (answered == pending || !on_pending) {
            if (!(took != 0 && took == answered && killed == answered)) {
                /* it ended between two inputs, unasked: the harness lost track */
                snprintf(chan->between_why, sizeof chan->between_why,
                         "took %u, answered %u, killed on %u, posted %u; rc %d, end %d: %s", took,
                         answered, killed, pending, rc, (int)opts.ended, e.msg);
                chan->between = 1;
            }
            if (changed || left) chan->escape_between = 1;
            continue;
        }
        uint32_t s = pending;
        chan->params_changed = changed;
        chan->left_behind = left;
        chan->rc = rc;
        chan->ended = (int)opts.ended;
        chan->err = e;
        chan->leaked = 0;
        /* our code's coverage in the caller (isolate_run's reading of how the child ended) */
        if (n_cov) memcpy(chan->cov, counters, n_cov);
        chan->cov_valid = 1;
        answer(s);
    }
}

static void init(void) {
    if (fuzz_model("[conv2d]\nname = conv\nfilters = 2\nkernel_size = 1\n[flatten]\n"
                   "[dense]\nname = dense\nunits = 2\nactivation = softmax\n",
                   (Shape){2, 2, 1, 0}, 1 << 28, &j, &m))
        __builtin_trap();
    H5open();
    /* Speed, nothing else: each file HDF5 opens callocs a metadata cache (H5C_t, over 512 KB)
     * that its default per-list limit (64 KB) hands back to malloc at close, and ASan maps
     * blocks that size afresh each time: half the time of an input went to page faults on it.
     * Kept on HDF5's free list it is reused, within one child only, at the same size (so
     * ASan's bounds for it do not change). */
    H5set_free_list_limits(64 << 20, 16 << 20, 64 << 20, 16 << 20, 64 << 20, 16 << 20);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    H5PLset_loading_state(0); /* as keras_h5_load_isolated: no plugin code */
    keep = malloc(m.n_params * sizeof(float));
    memcpy(keep, m.params, m.n_params * sizeof(float));
    const char *v = getenv("FUZZ_H5_INPROCESS");
    inprocess = v && !strcmp(v, "1");
    counters = fuzz_counters(&n_cov);
    if ((v = getenv("FUZZ_H5_PER_CHILD")) && atoi(v) > 0) per_child = (unsigned)atoi(v);
    if ((v = getenv("FUZZ_H5_CHILD_MS"))) child_ms = atol(v);
    if ((v = getenv("FUZZ_H5_KEEP"))) keep_max = strtoull(v, NULL, 10);
    size_t head = (sizeof(Chan) + 63) & ~(size_t)63, cov = (n_cov + 4095) & ~(size_t)4095;
    chan = mmap(NULL, head + cov + SERVER_MAX_INPUT, PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (chan == MAP_FAILED) __builtin_trap();
    chan->cov = (uint8_t *)chan + head;
    chan->data = chan->cov + cov;
    int sfd = (v = getenv("FUZZ_H5_STATS")) ? open(v, O_RDWR | O_CREAT | O_TRUNC, 0644) : -1;
    if (sfd >= 0 && ftruncate(sfd, STATS_LINE) == 0) {
        stats_map = mmap(NULL, STATS_LINE, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
        if (stats_map == MAP_FAILED) stats_map = NULL;
    }
    if (sfd >= 0) close(sfd);
    if ((v = getenv("FUZZ_H5_CONTAINED")) && !realpath(v, contained_dir)) contained_dir[0] = 0;
    atexit(write_stats);
    if (inprocess) return;
    /* the canary: an empty folder, the children's working folder, that nothing may write into
     * (libFuzzer's own files, relative to ours, are written between runs) */
    static char tmpl[] = "/tmp/fuzz_h5.XXXXXX";
    if (!mkdtemp(tmpl) || stat(tmpl, &canary) != 0) __builtin_trap();
    canary_dir = tmpl;
    fflush(NULL);
    pid_t parent = getpid();
    server = fork();
    if (server < 0) __builtin_trap();
    if (server == 0) server_loop(parent);
}

/* Keep a contained input for run.sh's replay, named by how its child ended (sandbox, signal,
 * limit: killed by the time limit or an rlimit, early: another end): up to keep_max of each,
 * so that the many slow inputs do not crowd out the memory errors. */
static void keep_contained(const uint8_t *data, size_t size, int kind) {
    static const char *const names[] = {"sandbox", "signal", "limit", "early"};
    static unsigned long long kept_kind[4];
    if (!contained_dir[0] || kept_kind[kind] >= keep_max) return;
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/contained-%s-%d-%llu-%zu", contained_dir, names[kind],
             (int)getpid(), runs, size);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, size, f);
    fclose(f);
    kept_kind[kind]++;
    kept++;
}

/* Something got out of the child: report it as a finding. */
static void escaped(const char *what) {
    fprintf(stderr, "fuzz_h5: ESCAPE: %s\n", what);
    escapes++;
    write_stats();
    __builtin_trap();
}

/* Kill the server's child (the one on the input that takes too long); the server answers. */
static void kill_child(void) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)server, (int)server);
    FILE *f = fopen(path, "r");
    int pid = 0;
    if (f && fscanf(f, "%d", &pid) == 1 && pid > 0) kill(pid, SIGKILL);
    if (f) fclose(f);
}

/* Hand the input to the server and wait for its answer (or its end: an escape). */
static void ask_server(const uint8_t *data, size_t size) {
    memcpy(chan->data, data, size);
    chan->size = size;
    chan->cov_valid = chan->leaked = chan->params_changed = chan->left_behind = 0;
    uint32_t s = atomic_load(&chan->seq) + 1, d;
    atomic_store(&chan->seq, s);
    futex(&chan->seq, FUTEX_WAKE, 1, NULL);
    const struct timespec slice = {0, 10 * 1000 * 1000};
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int killed = 0;
    while ((d = atomic_load(&chan->done)) != s) {
        futex(&chan->done, FUTEX_WAIT, d, &slice);
        if (waitpid(server, NULL, WNOHANG) != 0) escaped("the fork server (the caller) ended");
        clock_gettime(CLOCK_MONOTONIC, &t);
        long ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (child_ms > 0 && !killed && ms >= child_ms) {
            atomic_store(&chan->killed, s);
            kill_child();
            killed = 1;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* the first call (libFuzzer's empty input) comes before the corpus is read: the server is
     * forked from a small process, with libFuzzer's malloc limit (its hook) in place */
    static int ready;
    if (!ready) {
        init();
        ready = 1;
    }
    runs++;
    if (inprocess) {
        Err e = {0};
        keras_h5_load_weights_image(data, size, "fuzz.h5", &m, &e);
        if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0) __builtin_trap();
        return 0;
    }
    if (size > SERVER_MAX_INPUT) {
        fprintf(stderr, "fuzz_h5: an input over %u bytes is not run\n", SERVER_MAX_INPUT);
        return -1;
    }
    ask_server(data, size);
    if (chan->cov_valid)
        for (size_t i = 0; i < n_cov; i++)
            if (chan->cov[i] > counters[i]) counters[i] = chan->cov[i];
    Err e = chan->err;
    e.msg[sizeof e.msg - 1] = 0;
    if (chan->leaked) __builtin_trap();                               /* ours: a handle left open */
    if (chan->rc != 0 && !strstr(e.msg, "fuzz.h5")) __builtin_trap(); /* ours: an unclear error */
    int sig = 0;
    switch ((IsolateEnd)chan->ended) {
    case ISOLATE_OK: ok++; break;
    case ISOLATE_REFUSED: refused++; break;
    case ISOLATE_SANDBOX: sandboxed++; /* fall through */
    case ISOLATE_CRASHED:
        if (getenv("FUZZ_H5_VERBOSE")) fprintf(stderr, "fuzz_h5: contained: %s\n", e.msg);
        contained++;
        /* the rlimits (CPU time), the time limit or the OOM killer, else a crash (SIGSEGV,
         * SIGABRT, ...) */
        int kind = 0;
        if (chan->ended == ISOLATE_CRASHED) {
            const char *p = strstr(e.msg, "(signal ");
            kind = 3;
            if (p && sscanf(p, "(signal %d", &sig) == 1) {
                if (sig == SIGXCPU || sig == SIGKILL || sig == SIGXFSZ) {
                    limited++;
                    kind = 2;
                } else {
                    signalled++;
                    kind = 1;
                }
            }
        }
        keep_contained(data, size, kind);
        break;
    case ISOLATE_NO_SANDBOX: escaped("the kernel has no seccomp: nothing is contained"); break;
    }
    if (chan->between) { /* ours: the harness lost track of an input */
        fprintf(stderr, "fuzz_h5: a child ended between two inputs: %s\n", chan->between_why);
        __builtin_trap();
    }
    if (chan->escape_between) escaped("a child that ended between two inputs left an escape");
    if (chan->params_changed) escaped("a failed load changed the caller's parameters");
    if (chan->left_behind) escaped("a process was left behind");
    struct stat now;
    if (stat(canary_dir, &now) != 0 || now.st_mtim.tv_sec != canary.st_mtim.tv_sec ||
        now.st_mtim.tv_nsec != canary.st_mtim.tv_nsec || now.st_nlink != canary.st_nlink)
        escaped("a file was created in the working folder");
    write_stats();
    return 0;
}
