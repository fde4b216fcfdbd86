/* dist.c: MPI behind the dist.h interface, or its single-process stand-in when built with
 * MPI=0 (CONVNET_MPI=0). Owns process start-up (MPI_Init), thread placement per rank, the
 * collectives the trainer uses, and the check that all ranks run the same job. */
#include "dist.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if CONVNET_MPI
#include <mpi.h>

#define MPI_CHECK(call)                                                                      \
    do {                                                                                     \
        int mpi_rc_ = (call);                                                                \
        if (mpi_rc_ != MPI_SUCCESS) {                                                        \
            char mpi_msg_[MPI_MAX_ERROR_STRING];                                             \
            int mpi_len_ = 0;                                                                \
            MPI_Error_string(mpi_rc_, mpi_msg_, &mpi_len_);                                  \
            fprintf(stderr, "convnet-dist: %s failed at %s:%d: %s\n", #call, __FILE__, __LINE__, \
                    mpi_msg_);                                                               \
            MPI_Abort(MPI_COMM_WORLD, EXIT_RUNTIME);                                         \
        }                                                                                    \
    } while (0)
#endif

/* openblas_set_num_threads is not in every cblas.h; declare it ourselves. */
void openblas_set_num_threads(int);

static int env_int(const char *name) {
    const char *v = getenv(name);
    long x;
    if (!v || parse_long(v, &x) != 0 || x < 1 || x > 4096) return 0;
    return (int)x;
}

void dist_init(Dist *d, int *argc, char ***argv) {
    memset(d, 0, sizeof *d);
    d->size = 1;
    d->local_size = 1;
#if CONVNET_MPI
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        MPI_CHECK(MPI_Init(argc, argv));
        d->owns_mpi = 1;
    }
    /* Errors come back to us as codes so MPI_CHECK can say where they happened. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &d->rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &d->size));
    MPI_Comm node;
    MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL,
                                  &node));
    MPI_CHECK(MPI_Comm_rank(node, &d->local_rank));
    MPI_CHECK(MPI_Comm_size(node, &d->local_size));
    MPI_Comm_free(&node);
#endif
}

void dist_finalize(Dist *d) {
#if CONVNET_MPI
    if (d->owns_mpi) MPI_Finalize();
#endif
    d->owns_mpi = 0;
}

void dist_abort(Dist *d, int status) {
    fflush(stdout);
    fflush(stderr);
#if CONVNET_MPI
    if (d->size > 1) MPI_Abort(MPI_COMM_WORLD, status);
#endif
    exit(status);
}

void dist_setup_threads(Dist *d) {
    cpu_set_t set;
    d->cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    d->node_cores = online > 0 ? (int)online : d->cores;
    int t = env_int("OMP_NUM_THREADS");
    if (!t) t = env_int("SLURM_CPUS_PER_TASK");
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

void dist_allreduce_sum_f32(Dist *d, float *buf, size_t n, const char *what) {
#if CONVNET_MPI
    if (d->size > 1) {
        /* MPI counts are int: reduce in chunks below 2^30 elements */
        for (size_t off = 0; off < n; off += 1u << 30) {
            size_t c = n - off < (1u << 30) ? n - off : (1u << 30);
            MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)c, MPI_FLOAT, MPI_SUM,
                                    MPI_COMM_WORLD));
        }
    }
#endif
    (void)d, (void)buf, (void)n, (void)what;
}

void dist_allreduce_sum_f64(Dist *d, double *buf, size_t n, const char *what) {
#if CONVNET_MPI
    if (d->size > 1)
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
#endif
    (void)d, (void)buf, (void)n, (void)what;
}

int dist_allreduce_max_int(Dist *d, int v, const char *what) {
#if CONVNET_MPI
    if (d->size > 1) MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
#endif
    (void)d, (void)what;
    return v;
}

void dist_bcast(Dist *d, void *buf, size_t bytes, int root) {
#if CONVNET_MPI
    if (d->size > 1)
        for (size_t off = 0; off < bytes; off += 1u << 30) {
            size_t c = bytes - off < (1u << 30) ? bytes - off : (1u << 30);
            MPI_CHECK(MPI_Bcast((char *)buf + off, (int)c, MPI_BYTE, root, MPI_COMM_WORLD));
        }
#endif
    (void)d, (void)buf, (void)bytes, (void)root;
}

void dist_barrier(Dist *d) {
#if CONVNET_MPI
    if (d->size > 1) MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
#endif
    (void)d;
}

int dist_check_same_job(Dist *d, uint64_t job_hash, uint64_t n_params, Err *e) {
    if (d->size == 1) return 0;
    uint64_t mine[2] = {job_hash, n_params};
    uint64_t *all = xmalloc((size_t)d->size * sizeof mine);
#if CONVNET_MPI
    MPI_CHECK(MPI_Allgather(mine, 2, MPI_UINT64_T, all, 2, MPI_UINT64_T, MPI_COMM_WORLD));
#else
    memcpy(all, mine, sizeof mine);
#endif
    int bad = -1;
    for (int r = 1; r < d->size && bad < 0; r++)
        if (all[2 * r] != all[0] || all[2 * r + 1] != all[1]) bad = r;
    if (bad >= 0) {
        if (all[2 * bad + 1] != all[1])
            err_set(e, "rank %d's model has %llu parameters but rank 0's has %llu: every rank must "
                       "run the same job file",
                    bad, (unsigned long long)all[2 * bad + 1], (unsigned long long)all[1]);
        else
            err_set(e, "rank %d resolved a different job than rank 0 (configuration hash %016llx vs "
                       "%016llx): every rank must run the same job file and --set options",
                    bad, (unsigned long long)all[2 * bad], (unsigned long long)all[0]);
    }
    free(all);
    return bad >= 0 ? -1 : 0;
}
