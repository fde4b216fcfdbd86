/* runenv.h: the environment variables convnet-dist heeds, read in one place at start-up.
 *
 * main calls runenv_load() first thing; the modules then read runenv() instead of calling getenv
 * wherever they happen to need a setting, so that what the environment changes is listed here
 * and a run's settings are fixed once it starts. A program that never calls runenv_load (a
 * fuzzer) gets every variable unset. Tests that change a variable call runenv_load again.
 */
#ifndef CONVNET_RUNENV_H
#define CONVNET_RUNENV_H

typedef struct {
    const char *data_root; /* CONVNET_DATA: the data root when [data] root is unset (NULL: data/) */
    const char *runs_root; /* CONVNET_RUNS: the run directories' root (NULL: runs/; "off": none) */
    const char *tmpdir;    /* TMPDIR (NULL: /tmp) */
    int profile;           /* CONVNET_PROFILE set and not "0" (or --profile): per-layer clocks */
    int h5_inprocess;      /* CONVNET_H5_INPROCESS=1: libhdf5 reads in this process */
    int decode_threads;    /* CONVNET_DECODE_THREADS: a rank's prefetch threads, 1..4096, else 0 */
    int h5_unsandboxed;    /* CONVNET_H5_UNSANDBOXED=1: libhdf5's child without seccomp where the
                              * kernel has none (docs/sandbox.md) */
    /* thread placement (dist_setup_threads): 1..4096, else 0 (unset or not a count) */
    int omp_threads;         /* OMP_NUM_THREADS */
    int slurm_cpus_per_task; /* SLURM_CPUS_PER_TASK */
    /* Open MPI's runtime, as mpirun passes it to the ranks (dist, the watchdog) */
    int mpirun_daemons; /* OMPI_MCA_orte_hnp_uri set: started by mpirun, not srun */
    int keepalive_set;  /* OMPI_MCA_oob_tcp_keepalive_time set */
    int keepalive_time, keepalive_intvl,
        keepalive_probes; /* OMPI_MCA_oob_tcp_keepalive_*: counts, else 0 */
} RunEnv;

/* Read the environment into the process's settings (replacing earlier ones). */
void runenv_load(void);
/* The settings runenv_load read; all unset (zero, NULL) before the first call. */
const RunEnv *runenv(void);
/* --profile: per-layer clocks on, as CONVNET_PROFILE=1 would. */
void runenv_set_profile(int on);

#endif
