/* isolate.c: a parser that is not ours, run in a sandboxed child process (see isolate.h and
 * docs/sandbox.md): the fork, the child's rlimits and seccomp-bpf filter, and the parent's
 * reading of how the child ended. */
#include "isolate.h"

#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* CPU seconds the child may take: VGG16's 58 MB of weights load in well under one. */
#define ISOLATE_CPU_SECONDS 300

void (*isolate_test_hook)(void);
int isolate_test_no_seccomp;

/* What the child leaves in shared memory: its result and message, then the buffer. */
typedef struct {
    int rc;
    int done;
    int no_sandbox;  /* errno of the failed filter load (the kernel has no seccomp) */
    int unsandboxed; /* ran without the filter (unsandboxed_ok) */
    int trapped;     /* the filter stopped a system call ... */
    int trapped_nr;  /* ... this one */
    Err err;
} Outcome;

static volatile Outcome *child_outcome;

/* The filter's action for a forbidden call: record which, end the child. The filter is in
 * place, so this may call nothing but exit_group (raw: sanitizer builds intercept _exit). */
static void on_sigsys(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    child_outcome->trapped_nr = si->si_syscall;
    child_outcome->trapped = 1;
    syscall(SYS_exit_group, 128 + SIGSYS);
}

/* The seccomp filter, built once by the parent (libseccomp's rules compiled to BPF) so that
 * the child only installs it: computing in memory, nothing else. Everything not listed traps
 * into on_sigsys (SECCOMP_RET_TRAP, so that the parent can name the call). 0, or an errno. */
static struct sock_fprog filter;
static int filter_err = -1;

static int sandbox_build(void) {
    scmp_filter_ctx f = seccomp_init(SCMP_ACT_TRAP);
    if (!f) return ENOSYS;
    const int plain[] = {
        SCMP_SYS(brk),           SCMP_SYS(munmap),       SCMP_SYS(mremap),
        SCMP_SYS(madvise),       SCMP_SYS(futex),        SCMP_SYS(exit),
        SCMP_SYS(exit_group),    SCMP_SYS(rt_sigreturn), SCMP_SYS(getcwd),
        SCMP_SYS(getpid),        SCMP_SYS(gettid),       SCMP_SYS(sched_yield),
        SCMP_SYS(clock_gettime), SCMP_SYS(gettimeofday),
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof plain / sizeof plain[0] && rc == 0; i++)
        rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, plain[i], 0);
    /* memory only: anonymous mappings, never executable */
    if (rc == 0)
        rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 2,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0),
                              SCMP_A3(SCMP_CMP_MASKED_EQ, MAP_ANONYMOUS, MAP_ANONYMOUS));
    if (rc == 0)
        rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    /* HDF5's core driver checks that no file of the image's name exists (H5FD__core_open)
     * before it reads the image: an open for reading answers "no such file"; an open that
     * could write or create traps */
    const scmp_datum_t wflags = O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND;
    if (rc == 0)
        rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(ENOENT), SCMP_SYS(openat), 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, wflags, 0));
    if (rc == 0)
        rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(ENOENT), SCMP_SYS(open), 1,
                              SCMP_A1(SCMP_CMP_MASKED_EQ, wflags, 0));
    /* the compiled program, through a memory file (libseccomp 2.5 exports to a descriptor) */
    int fd = rc == 0 ? memfd_create("seccomp-bpf", MFD_CLOEXEC) : -1;
    if (rc == 0 && fd < 0) rc = -errno;
    if (rc == 0) rc = seccomp_export_bpf(f, fd);
    off_t len = rc == 0 ? lseek(fd, 0, SEEK_END) : 0;
    if (rc == 0 && (len <= 0 || len % (off_t)sizeof(struct sock_filter) != 0)) rc = -EINVAL;
    if (rc == 0) {
        struct sock_filter *prog = xmalloc((size_t)len);
        if (pread(fd, prog, (size_t)len, 0) != len) {
            free(prog);
            rc = -EIO;
        } else {
            filter.filter = prog;
            filter.len = (unsigned short)(len / (off_t)sizeof(struct sock_filter));
        }
    }
    if (fd >= 0) close(fd);
    seccomp_release(f);
    return rc < 0 ? -rc : rc;
}

/* In the child: the SIGSYS handler, then the filter. 0, or an errno (no seccomp). */
static int sandbox_enter(void) {
    if (isolate_test_no_seccomp) return ENOSYS;
    if (filter_err) return filter_err;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL) != 0) return errno;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter, 0, 0) != 0)
        return errno;
    return 0;
}

/* The child: drop what it inherited, limit it, sandbox it, run fn. Never returns. */
static void child_run(int (*fn)(void *ctx, void *buf, Err *e), void *ctx, void *buf, Outcome *o,
                      int unsandboxed_ok) {
    child_outcome = o;
    /* a reader spinning on a hostile file ends with SIGXCPU rather than never; a file it
     * might still write (no sandbox) cannot grow */
    struct rlimit cpu = {ISOLATE_CPU_SECONDS, ISOLATE_CPU_SECONDS + 5}, fsize = {0, 0};
    setrlimit(RLIMIT_CPU, &cpu);
    setrlimit(RLIMIT_FSIZE, &fsize);
    /* and ends with its parent (a killed trainer, a fuzzer's timeout) instead of spinning on */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    /* the parent's files, sockets and MPI connections are not the reader's to touch */
    if (close_range(3, ~0U, 0) != 0)
        for (int fd = 3, max = (int)sysconf(_SC_OPEN_MAX); fd < max && fd < 65536; fd++) close(fd);
    int err = sandbox_enter();
    if (err && !unsandboxed_ok) {
        o->no_sandbox = err;
        syscall(SYS_exit_group, 0);
    }
    o->unsandboxed = err != 0;
    if (isolate_test_hook) isolate_test_hook();
    o->rc = fn(ctx, buf, (Err *)&o->err);
    o->done = 1;
    /* no atexit handlers (MPI, the parent's files) in the child, nor sanitizer ones */
    syscall(SYS_exit_group, 0);
    for (;;) {
    }
}

/* Why the child did not finish, into e; the IsolateEnd it was. */
static IsolateEnd child_failed(const Outcome *o, int status, const IsolateOpts *opts, Err *e) {
    const char *what = opts->what, *who = opts->reader ? opts->reader : "the reader";
    if (o->no_sandbox) {
        err_set(e,
                "%s: refusing to read it: %s cannot be sandboxed on this kernel (seccomp-bpf: "
                "%s), and a hostile file could then run code as you. Set "
                "CONVNET_H5_UNSANDBOXED=1 to read files you trust without the sandbox "
                "(docs/sandbox.md)",
                what, who, strerror(o->no_sandbox));
        return ISOLATE_NO_SANDBOX;
    }
    if (o->trapped || (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS)) {
        char *name = o->trapped ? seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, o->trapped_nr)
                                : NULL;
        char nr[32];
        snprintf(nr, sizeof nr, o->trapped ? "system call %d" : "a forbidden system call",
                 o->trapped_nr);
        err_set(e,
                "%s: %s was stopped by the sandbox: it attempted %s, which reading the file "
                "never needs (a damaged or hostile file; the call did not run, nothing was "
                "loaded from it)",
                what, who, name ? name : nr);
        free(name);
        return ISOLATE_SANDBOX;
    }
    if (WIFSIGNALED(status))
        err_set(e, "%s: %s crashed on it (signal %d, %s): the file is damaged", what, who,
                WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        err_set(e, "%s: %s stopped on it with status %d (out of memory?): the file is damaged",
                what, who, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return ISOLATE_CRASHED;
}

int isolate_run(int (*fn)(void *ctx, void *buf, Err *e), void *ctx, void *out, size_t n,
                IsolateOpts *opts, Err *e) {
    size_t head = (sizeof(Outcome) + 63) & ~(size_t)63, len = head + n;
    opts->ended = ISOLATE_CRASHED;
    if (filter_err < 0) filter_err = sandbox_build();
    unsigned char *shm = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED) {
        err_set(e, "%s: cannot map %zu bytes to read it in: %s", opts->what, len, strerror(errno));
        return -1;
    }
    Outcome *o = (Outcome *)shm;
    memset(o, 0, sizeof *o);
    memcpy(shm + head, out, n);
    fflush(NULL); /* nothing buffered is written twice */
    pid_t pid = fork();
    if (pid < 0) {
        err_set(e, "%s: cannot fork to read it: %s", opts->what, strerror(errno));
        munmap(shm, len);
        return -1;
    }
    if (pid == 0) child_run(fn, ctx, shm + head, o, opts->unsandboxed_ok);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    /* What the child left, copied once and ended: a child taken over by a hostile file may
     * have written anything there (a message without its terminating NUL would be read on
     * past it, out of the mapping), and without the sandbox it may still be writing. */
    Outcome got;
    memcpy(&got, o, sizeof got);
    got.err.msg[sizeof got.err.msg - 1] = 0;
    o = &got;
    static int noted;
    if (o->unsandboxed && !noted) {
        noted = 1;
        fprintf(stderr, "convnet-dist: note: this kernel has no seccomp-bpf: HDF5 files are read "
                        "without the sandbox (CONVNET_H5_UNSANDBOXED=1), with its rlimits only\n");
    }
    int rc;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && o->done) {
        rc = o->rc;
        opts->ended = rc == 0 ? ISOLATE_OK : ISOLATE_REFUSED;
        if (rc == 0)
            memcpy(out, shm + head, n);
        else
            err_set(e, "%s", o->err.set ? o->err.msg : "failed");
    } else {
        opts->ended = child_failed(o, status, opts, e);
        rc = -1;
    }
    munmap(shm, len);
    return rc;
}
