/* isolate.c: a parser that is not ours, run in a child process (see isolate.h). */
#include "isolate.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* CPU seconds the child may take: VGG16's 58 MB of weights load in well under one. */
#define ISOLATE_CPU_SECONDS 300

/* What the child leaves in shared memory: its result and message, then the buffer. */
typedef struct {
    int rc;
    int done;
    Err err;
} Outcome;

int isolate_run(int (*fn)(void *ctx, void *buf, Err *e), void *ctx, void *out, size_t n,
                const char *what, Err *e) {
    size_t head = (sizeof(Outcome) + 63) & ~(size_t)63, len = head + n;
    unsigned char *shm = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED) {
        err_set(e, "%s: cannot map %zu bytes to read it in: %s", what, len, strerror(errno));
        return -1;
    }
    Outcome *o = (Outcome *)shm;
    memset(o, 0, sizeof *o);
    memcpy(shm + head, out, n);
    fflush(NULL); /* nothing buffered is written twice */
    pid_t pid = fork();
    if (pid < 0) {
        err_set(e, "%s: cannot fork to read it: %s", what, strerror(errno));
        munmap(shm, len);
        return -1;
    }
    if (pid == 0) {
        /* a reader spinning on a hostile file ends with SIGXCPU rather than never */
        struct rlimit cpu = {ISOLATE_CPU_SECONDS, ISOLATE_CPU_SECONDS + 5};
        setrlimit(RLIMIT_CPU, &cpu);
        o->rc = fn(ctx, shm + head, &o->err);
        o->done = 1;
        _exit(0); /* no atexit handlers (MPI, the parent's files) in the child */
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    int rc;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && o->done) {
        rc = o->rc;
        if (rc == 0)
            memcpy(out, shm + head, n);
        else
            err_set(e, "%s", o->err.set ? o->err.msg : "failed");
    } else {
        if (WIFSIGNALED(status))
            err_set(e, "%s: the reader crashed on it (signal %d, %s): the file is damaged", what,
                    WTERMSIG(status), strsignal(WTERMSIG(status)));
        else
            err_set(e, "%s: the reader stopped on it with status %d (out of memory?): the file "
                       "is damaged",
                    what, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        rc = -1;
    }
    munmap(shm, len);
    return rc;
}
