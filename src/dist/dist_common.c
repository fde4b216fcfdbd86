/* dist_common.c: the parts of include/dist.h that are the same with and without MPI: thread
 * placement per rank, the sharded all-gather, and the check that all ranks run the same job. */
#include "dist/dist_impl.h"
#include "runenv.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* openblas_set_num_threads is not in every cblas.h; declare it ourselves. */
void openblas_set_num_threads(int);

void dist_setup_threads(Dist *d) {
    cpu_set_t set;
    d->cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    d->node_cores = online > 0 ? (int)online : d->cores;
    int t = runenv()->omp_threads;
    if (!t) t = runenv()->slurm_cpus_per_task;
    if (!t) {
        /* Bound to a core set (mpirun --bind-to, srun --cpu-bind): use all of it. Otherwise
         * share the node's cores among the ranks on it. */
        int shared = d->cores >= d->node_cores && d->local_size > 1;
        t = shared ? d->cores / d->local_size : d->cores;
        if (t < 1) t = 1;
    }
    d->threads = t;
#ifdef _OPENMP
    omp_set_num_threads(t);
#endif
    openblas_set_num_threads(t);
}

void dist_allgather_rows(Dist *d, void *rows, int64_t n, size_t row_bytes) {
    /* one broadcast per owner: simple, and dist_bcast already splits large shards into
     * chunks that MPI's int counts can describe */
    for (int r = 0; r < d->size; r++) {
        int64_t lo = n * r / d->size, hi = n * (r + 1) / d->size;
        dist_bcast(d, (char *)rows + (size_t)lo * row_bytes, (size_t)(hi - lo) * row_bytes, r);
    }
}

int dist_check_same_job(Dist *d, uint64_t job_hash, uint64_t n_params, Err *e) {
    if (d->size == 1) return 0;
    uint64_t mine[2] = {job_hash, n_params};
    uint64_t *all = xmalloc((size_t)d->size * sizeof mine);
    dist_allgather_bytes(d, mine, all, sizeof mine);
    int bad = -1;
    for (int r = 1; r < d->size && bad < 0; r++)
        if (all[2 * r] != all[0] || all[2 * r + 1] != all[1]) bad = r;
    if (bad >= 0) {
        if (all[2 * bad + 1] != all[1])
            err_set(e,
                    "rank %d's model has %llu parameters but rank 0's has %llu: every rank must "
                    "run the same job file",
                    bad, (unsigned long long)all[2 * bad + 1], (unsigned long long)all[1]);
        else
            err_set(e,
                    "rank %d resolved a different job than rank 0 (configuration hash %016llx vs "
                    "%016llx): every rank must run the same job file and --set options",
                    bad, (unsigned long long)all[2 * bad], (unsigned long long)all[0]);
    }
    free(all);
    return bad >= 0 ? -1 : 0;
}
