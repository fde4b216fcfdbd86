/* cache.c: the feature caches (see FeatureCache in train.h): which prefix of the model can be
 * run once per split, building it sharded over the ranks into one file that every rank maps
 * (docs/data.md), and the in-memory fallback. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train/train_impl.h"
#include "runenv.h"

/* Layers whose training-mode output depends on random draws or on the batch (a trainable
 * BatchNormalization; a frozen one runs on its moving statistics). */
static int varies_in_training(const Layer *L) {
    return layer_is_random(L) || ((layer_ops[L->kind]->flags & LAYER_F_BATCH) && L->trainable);
}

/* Where a split's cache starts (0: no cache worth having). Nothing below the lowest trainable
 * layer changes during a phase, so its output can be computed once; a split used for
 * training must also stop before the first random layer (evaluation runs them as
 * identities). Only a prefix with weights is worth caching: that is the work saved. */
static int cache_start(const Trainer *t, int training) {
    const Model *m = &t->model;
    if (!t->job->train.feature_cache || m->lowest_trainable >= m->n_layers) return 0;
    int from = m->lowest_trainable, weights = 0;
    for (int l = 0; l < from; l++)
        if (training && varies_in_training(&m->layers[l])) from = l;
    while (from > 0 && !graph_is_cut(m, from)) from--; /* no branch may cross the cut */
    for (int l = 0; l < from; l++) weights |= layer_n_weights(&m->layers[l]) > 0;
    return weights ? from : 0;
}

void train_cache_free(FeatureCache *c) {
    if (c->map) munmap(c->map, c->map_len);
    free(c->owned);
    memset(c, 0, sizeof *c);
}

/* Where the cache file goes: the run directory when it exists, else $TMPDIR (or /tmp). */
static void cache_dir(const Job *j, char *dir, size_t n) {
    const char *tmp = runenv()->tmpdir;
    snprintf(dir, n, "%s", tmp && *tmp ? tmp : "/tmp");
    if (j->ckpt.in_run_dir && j->ckpt.path[0]) {
        char run[3800];
        snprintf(run, sizeof run, "%s", j->ckpt.path);
        char *slash = strrchr(run, '/');
        if (slash) *slash = 0;
        struct stat st;
        if (slash && stat(run, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(dir, n, "%s", run);
    }
}

/* Rank 0 makes the cache's file (path.tmp, `bytes` long), every rank opens it for writing. The
 * fd, or -1 on every rank when any rank could not (a directory that not every node sees). */
static int cache_file_open(Trainer *t, const char *tag, size_t bytes, char *path, size_t n) {
    Dist *d = t->dist;
    int fd = -1;
    char tmp[4200];
    if (d->rank == 0) {
        char dir[3800];
        cache_dir(t->job, dir, sizeof dir);
        snprintf(path, n, "%s/feature-cache-%s-%ld.f32", dir, tag, (long)getpid());
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        /* the space up front: a full disk fails now, not as SIGBUS when the mapping is read */
        if (fd >= 0 && posix_fallocate(fd, 0, (off_t)bytes) != 0) {
            close(fd);
            unlink(tmp);
            fd = -1;
        }
    }
    dist_bcast(d, path, n, 0);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (d->rank != 0) fd = open(tmp, O_WRONLY | O_CLOEXEC);
    if (dist_allreduce_max_int(d, fd < 0, "feature cache file")) {
        if (fd >= 0) close(fd);
        if (d->rank == 0) unlink(tmp);
        return -1;
    }
    return fd;
}

/* Every rank has written its rows: rank 0 renames the file into place, every rank maps it
 * read-only and shared (the node's one copy is the page cache), then it is unlinked: the
 * mappings keep it while the run lasts, and nothing is left behind. 0, or -1 on every rank. */
static int cache_file_share(Trainer *t, FeatureCache *c, int fd, const char *path, size_t bytes,
                            int failed) {
    Dist *d = t->dist;
    failed |= fsync(fd) != 0;
    close(fd);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (dist_allreduce_max_int(d, failed, "feature cache rows")) {
        if (d->rank == 0) unlink(tmp);
        return -1;
    }
    if (d->rank == 0) failed = rename(tmp, path) != 0;
    if (dist_allreduce_max_int(d, failed, "feature cache rename")) {
        if (d->rank == 0) unlink(tmp);
        return -1;
    }
    int rfd = open(path, O_RDONLY | O_CLOEXEC);
    void *m = rfd >= 0 ? mmap(NULL, bytes, PROT_READ, MAP_SHARED, rfd, 0) : MAP_FAILED;
    if (rfd >= 0) close(rfd);
    failed = m == MAP_FAILED;
    failed = dist_allreduce_max_int(d, failed, "feature cache mapping");
    if (d->rank == 0) unlink(path);
    if (failed) {
        if (m != MAP_FAILED) munmap(m, bytes);
        return -1;
    }
    c->map = m;
    c->map_len = bytes;
    c->x = m;
    return 0;
}

/* Run layers [0, from) once over split d into c: each rank its shard, written into one file
 * that every rank then maps (or, when no file can be shared, gathered into every rank). */
static void cache_build(Trainer *t, FeatureCache *c, const Source *d, int from, const char *what,
                        const char *tag) {
    train_cache_free(c);
    if (from == 0 || d->n == 0) return;
    Model *m = &t->model;
    Dist *dist = t->dist;
    const size_t dim = model_layer_input_floats(m, from);
    const size_t bytes = (size_t)d->n * dim * sizeof(float);
    const double mb = (double)bytes / 1e6;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    double node_mb = pages > 0 && page > 0 ? (double)pages * (double)page / 1e6 : 0;
    /* a file: one copy per node; else every rank holds all of it. Either way, leave most of
     * the memory to everything else. */
    char path[4096] = "";
    int fd = node_mb > 0 && mb > node_mb / 3 ? -1
                                             : cache_file_open(t, tag, bytes, path, sizeof path);
    int copies = fd >= 0 ? 1 : dist->local_size;
    if (node_mb > 0 && mb * copies > node_mb / 3) {
        if (dist->rank == 0)
            printf("feature cache: %s not cached: %.0f MB x %d copies on this node exceed a third "
                   "of its %.0f MB; the frozen layers run every epoch\n",
                   what, mb, copies, node_mb);
        if (fd >= 0) cache_file_share(t, c, fd, path, bytes, 1); /* removes the file */
        return;
    }
    double t0 = now_seconds();
    if (fd < 0) c->owned = xmalloc(bytes);
    c->from = from;
    c->dim = dim;
    int64_t lo = d->n * dist->rank / dist->size, hi = d->n * (dist->rank + 1) / dist->size;
    PassCtx p = {.training = 0, .seed = t->job->train.seed, .epoch = 0, .sample_ids = t->ids};
    int failed = 0;
    train_stream_range(t, d, NULL, lo, hi);
    for (int64_t s = lo; s < hi; s += m->max_batch) {
        int n = (int)(hi - s < m->max_batch ? hi - s : m->max_batch);
        for (int i = 0; i < n; i++) t->ids[i] = s + i;
        train_load_batch(t, d, NULL, n);
        const float *f = model_forward_layers(m, 0, from, n, &p);
        size_t len = (size_t)n * dim * sizeof *f;
        if (fd < 0)
            memcpy(c->owned + (size_t)s * dim, f, len);
        else
            failed |= pwrite(fd, f, len, (off_t)((size_t)s * dim * sizeof *f)) != (ssize_t)len;
    }
    train_stream_end(t);
    if (fd >= 0 && cache_file_share(t, c, fd, path, bytes, failed)) {
        c->from = 0; /* the frozen layers run every epoch instead */
        if (dist->rank == 0)
            printf("feature cache: %s: the cache file %s could not be written\n", what, path);
        return;
    }
    if (fd < 0) {
        dist_allgather_rows(dist, c->owned, d->n, dim * sizeof *c->owned);
        c->x = c->owned;
    }
    if (dist->rank == 0) {
        printf("feature cache: %s: layers %s..%s run once over %lld samples: %zu floats each "
               "(%.0f MB, %s), %.1f s\n",
               what, m->layers[0].name, m->layers[from - 1].name, (long long)d->n, dim, mb,
               c->map ? "one file mapped by every rank of a node" : "a copy in every rank",
               now_seconds() - t0);
        fflush(stdout);
    }
}

/* (Re)build the caches the current phase allows: at the start and after a phase switch. */
void train_caches_update(Trainer *t) {
    int ft = cache_start(t, 1), fv = cache_start(t, 0);
    /* also when the wanted cache is missing: an earlier build may have been skipped for memory */
    if (ft != t->cache_train.from || (ft && !t->cache_train.x) || (!ft && t->cache_train.x))
        cache_build(t, &t->cache_train, &t->train, ft, "training data", "train");
    if (fv != t->cache_val.from || (fv && !t->cache_val.x) || (!fv && t->cache_val.x))
        cache_build(t, &t->cache_val, &t->val, fv, "validation data", "validation");
}
