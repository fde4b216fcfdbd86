/* test_sandbox.c: the seccomp-bpf sandbox of the child that runs libhdf5 (isolate.c, issue
 * 35). A test hook stands in for a parser taken over by a hostile file: called in the child
 * once the filter is in place, it tries what such code would (create and write a file, exec,
 * fork, write to the terminal). Each attempt must stop the child, give an error naming the
 * weights file and the call, leave nothing written and the model's parameters untouched. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "isolate.h"
#include "job.h"
#include "keras_h5.h"
#include "test_hardening.h"
#include "testutil.h"

/* The file the hooks try to create (absolute, in the test's temporary folder). */
static char escape_path[512];

static void hook_open_write(void) {
    int fd = open(escape_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) (void)!write(fd, "escaped\n", 8);
}

static void hook_exec(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "echo escaped > '%s'", escape_path);
    char *argv[] = {"sh", "-c", cmd, NULL};
    execv("/bin/sh", argv);
}

static void hook_fork(void) {
    if (fork() == 0) hook_exec();
}

static void hook_socket(void) { (void)socket(AF_INET, SOCK_STREAM, 0); }

static void hook_write_stderr(void) { (void)!write(2, "escaped\n", 8); }

/* Reading a file is answered "no such file" (what HDF5's core driver checks for): the hook
 * goes on to exec only if the read-only open worked, so a normal refusal proves it did not. */
static void hook_read_secret(void) {
    int fd = open("/etc/passwd", O_RDONLY);
    if (fd >= 0 || errno != ENOENT) hook_exec();
}

typedef struct {
    Job j;
    Model m;
    const char *weights; /* a weights file (not HDF5: the hooks run before it is parsed) */
    float *keep;
} Fixture;

/* The model and a weights file; 0, or -1 after a counted skip (no reader to sandbox). */
static int fixture_init(Fixture *s) {
#if !CONVNET_HDF5
    testutil_skip("sandbox", "built with HDF5=0 (no reader to sandbox)", 0);
    return -1;
#endif
    const char *dir = testutil_tmpdir();
    hard_h5_model(&s->j, &s->m);
    s->keep = malloc(s->m.n_params * sizeof(float));
    CU_ASSERT_FATAL(s->keep != NULL);
    memcpy(s->keep, s->m.params, s->m.n_params * sizeof(float));
    const char junk[] = "not an HDF5 file, the hook runs first\n";
    s->weights = testutil_write_file(dir, "sandbox-weights.h5", junk, sizeof junk - 1);
    snprintf(escape_path, sizeof escape_path, "%s/sandbox-escaped.txt", dir);
    unlink(escape_path);
    return 0;
}

static void fixture_free(Fixture *s) {
    isolate_test_hook = NULL;
    isolate_test_no_seccomp = 0;
    free(s->keep);
    model_free(&s->m);
    job_free(&s->j);
}

/* The weights load with hook in the child: stopped by the sandbox at `call`. */
static void expect_stopped(void (*hook)(void), const char *call) {
    Fixture s;
    if (fixture_init(&s)) return;
    isolate_test_hook = hook;
    Err e = {0};
    int rc = keras_h5_load_weights(s.weights, &s.m, &e);
    CU_ASSERT_EQUAL(rc, -1);
    HAS(e.msg, s.weights);
    HAS(e.msg, "the HDF5 parser was stopped by the sandbox: it attempted ");
    HAS(e.msg, call);
    CU_ASSERT(access(escape_path, F_OK) != 0); /* nothing written */
    CU_ASSERT(memcmp(s.keep, s.m.params, s.m.n_params * sizeof(float)) == 0);
    fixture_free(&s);
}

static void stops_open_write(void) { expect_stopped(hook_open_write, "openat"); }
static void stops_exec(void) { expect_stopped(hook_exec, "execve"); }
static void stops_fork(void) { expect_stopped(hook_fork, "clone"); }
static void stops_socket(void) { expect_stopped(hook_socket, "socket"); }
static void stops_terminal_write(void) { expect_stopped(hook_write_stderr, "write"); }

/* With the filter in place a read-only open fails, and the parser itself still runs: the
 * file is refused for what it is (not HDF5), by the child. */
static void parser_runs_inside(void) {
    Fixture s;
    if (fixture_init(&s)) return;
    isolate_test_hook = hook_read_secret;
    Err e = {0};
    CU_ASSERT_EQUAL(keras_h5_load_weights(s.weights, &s.m, &e), -1);
#if CONVNET_HDF5
    HAS(e.msg, "not an HDF5 file");
#endif
    HAS(e.msg, s.weights);
    if (strstr(e.msg, "stopped by")) printf("\n    %s\n", e.msg);
    CU_ASSERT(strstr(e.msg, "stopped by") == NULL);
    CU_ASSERT(access(escape_path, F_OK) != 0);
    fixture_free(&s);
}

/* A kernel without seccomp: refused, saying how to opt in; CONVNET_H5_UNSANDBOXED=1 reads. */
static void no_seccomp_refused_unless_opted_in(void) {
    Fixture s;
    if (fixture_init(&s)) return;
    isolate_test_no_seccomp = 1;
    const char *was = getenv("CONVNET_H5_UNSANDBOXED");
    char *old = was ? strdup(was) : NULL;
    unsetenv("CONVNET_H5_UNSANDBOXED");
    Err e = {0};
    CU_ASSERT_EQUAL(keras_h5_load_weights(s.weights, &s.m, &e), -1);
    HAS(e.msg, s.weights);
    HAS(e.msg, "cannot be sandboxed on this kernel");
    HAS(e.msg, "CONVNET_H5_UNSANDBOXED=1");
    testutil_env_restore("CONVNET_H5_UNSANDBOXED", old);
    old = testutil_env_swap("CONVNET_H5_UNSANDBOXED", "1");
    Err e2 = {0};
    CU_ASSERT_EQUAL(keras_h5_load_weights(s.weights, &s.m, &e2), -1);
    HAS(e2.msg, "not an HDF5 file"); /* it was read */
    testutil_env_restore("CONVNET_H5_UNSANDBOXED", old);
    fixture_free(&s);
}

/* A child taken over writes a message without its terminating NUL, and fills everything after
 * it in the shared memory up to its last byte: the parent's error stays within the message
 * (before the fix it went on reading into the buffer, out of the mapping when that too was
 * full). */
static int fn_unterminated(void *ctx, void *buf, Err *e) {
    size_t n = *(size_t *)ctx;
    e->set = 1;
    memset(e->msg, 'A', sizeof e->msg);
    char *after = (char *)(e + 1);
    if ((char *)buf > after) memset(after, 'B', (size_t)((char *)buf - after));
    memset(buf, 'B', n - 1);
    ((char *)buf)[n - 1] = 0;
    return 1;
}

static void unterminated_message_stays_bounded(void) {
    size_t n = 4096;
    char *out = calloc(1, n);
    IsolateOpts opts = {.what = "x.h5", .reader = "the test"};
    Err e = {0};
    CU_ASSERT_EQUAL(isolate_run(fn_unterminated, &n, out, n, &opts, &e), 1);
    CU_ASSERT_EQUAL(opts.ended, ISOLATE_REFUSED);
    CU_ASSERT(strchr(e.msg, 'B') == NULL);
    CU_ASSERT_EQUAL(strspn(e.msg, "A"), sizeof e.msg - 1);
    CU_ASSERT_EQUAL(out[0], 0); /* a refusal brings nothing back */
    free(out);
}

TEST_SUITE(
    sandbox, {"a hostile parser's open + write is stopped, nothing written", stops_open_write},
    {"exec is stopped", stops_exec}, {"fork is stopped", stops_fork},
    {"a socket is stopped", stops_socket},
    {"a write to the terminal is stopped", stops_terminal_write},
    {"read-only opens fail, the parser runs inside", parser_runs_inside},
    {"no seccomp: refused unless CONVNET_H5_UNSANDBOXED=1", no_seccomp_refused_unless_opted_in},
    {"a child's unterminated message is read within bounds", unterminated_message_stays_bounded});
