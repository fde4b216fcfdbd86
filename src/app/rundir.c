/* rundir.c: the default checkpoint location, the run directory $CONVNET_RUNS/<job name>/ (see
 * rundir.h): resolving `path = auto | off`, creating the directory before the first write,
 * the start-up line saying where checkpoints go, and removing them when the run finished. */
#include "rundir.h"
#include "runenv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { RUNDIR_PATH_MAX = 4096 };

/* The job's name as one path component: anything but [A-Za-z0-9._-] becomes '_', and a name
 * made only of dots ("", ".", "..") would escape the runs directory, so it is refused. */
static int safe_component(const char *name, char *out, size_t cap) {
    size_t n = strlen(name);
    if (n == 0 || n >= cap) return -1;
    int only_dots = 1;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        out[i] = ok ? c : '_';
        only_dots &= c == '.';
    }
    out[n] = 0;
    return only_dots ? -1 : 0;
}

int rundir_resolve(Job *j, Err *e) {
    CheckpointCfg *c = &j->ckpt;
    c->in_run_dir = 0;
    if (!strcmp(c->path, "off")) {
        c->path[0] = 0;
        return 0;
    }
    if (c->path[0] && strcmp(c->path, "auto")) return 0; /* a path of the job's own */
    const char *root = runenv()->runs_root;
    if (!root) root = "runs";
    if (!strcmp(root, "off")) {
        c->path[0] = 0;
        return 0;
    }
    char comp[256];
    if (safe_component(j->name, comp, sizeof comp)) {
        char q[ERR_QUOTE_MAX];
        err_set(e,
                "%s: the job's name %s cannot name its run directory (%s); set [model] name "
                "or [checkpoint] path",
                j->ini.path, err_quote(j->name, q, sizeof q),
                strlen(j->name) >= sizeof comp ? "longer than a file name may be"
                                               : "only dots, or empty");
        return -1;
    }
    size_t need = strlen(root) + strlen(comp) + sizeof "//checkpoint";
    if (need > RUNDIR_PATH_MAX) {
        err_set(e, "%s: CONVNET_RUNS is too long for a checkpoint path", j->ini.path);
        return -1;
    }
    free(c->path);
    c->path = xmalloc(need);
    snprintf(c->path, need, "%s/%s/checkpoint", root, comp);
    c->in_run_dir = 1;
    return 0;
}

/* mkdir -p of the directory part of path. */
static int mkdir_parents(const char *path, Err *e) {
    char dir[RUNDIR_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) return 0;
    *slash = 0;
    for (char *p = dir + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char keep = *p;
            *p = 0;
            if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
                err_set(e, "cannot create the run directory %s: %s", dir, strerror(errno));
                return -1;
            }
            *p = keep;
            if (!keep) break;
        }
    }
    return 0;
}

int rundir_prepare(const Job *j, Err *e) {
    if (!j->ckpt.in_run_dir) return 0;
    return mkdir_parents(j->ckpt.path, e);
}

void rundir_print(const Job *j, FILE *f) {
    const CheckpointCfg *c = &j->ckpt;
    if (!c->path[0])
        fprintf(
            f, "checkpoints: off (a SIGTERM/SIGUSR1 stop saves nothing and exits with status 5)\n");
    else if (c->in_run_dir)
        fprintf(f,
                "checkpoints: %s (the job's run directory: every epoch and on SIGTERM/SIGUSR1, "
                "resumed by the same command, removed when the run finishes; "
                "--set checkpoint.path=off or =FILE to change)\n",
                c->path);
    else
        fprintf(f, "checkpoints: %s (as [checkpoint] says, and on SIGTERM/SIGUSR1)\n", c->path);
    fflush(f);
}

void rundir_remove_empty(const Job *j) {
    const CheckpointCfg *c = &j->ckpt;
    if (!c->in_run_dir) return;
    char p[RUNDIR_PATH_MAX + 16];
    snprintf(p, sizeof p, "%s", c->path);
    char *slash = strrchr(p, '/');
    if (!slash) return;
    *slash = 0;
    rmdir(p); /* only when empty: other files of the user's stay */
}

void rundir_finish(const Job *j, FILE *f) {
    const CheckpointCfg *c = &j->ckpt;
    if (!c->in_run_dir) return;
    char p[RUNDIR_PATH_MAX + 16];
    int removed = unlink(c->path) == 0;
    for (int k = 1; k < c->keep; k++) {
        snprintf(p, sizeof p, "%s.%d", c->path, k);
        removed |= unlink(p) == 0;
    }
    rundir_remove_empty(j);
    if (removed) fprintf(f, "run finished: removed its checkpoint %s\n", c->path);
}
