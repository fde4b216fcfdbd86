/* runenv.c: the one place the process environment is read (see runenv.h). The strings are
 * copied, so that a later setenv (a test swapping a variable) cannot change them under a
 * module that holds them. */
#include "runenv.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"

static RunEnv settings;
/* what settings' strings point to */
static char *owned[3];

/* A copy of $name when set and non-empty, else NULL. */
static char *env_str(const char *name) {
    const char *v = getenv(name);
    return v && *v ? xstrdup(v) : NULL;
}

/* A count 1..4096 from $name, else 0. */
static int env_count(const char *name) {
    const char *v = getenv(name);
    long x;
    if (!v || parse_long(v, &x) != 0 || x < 1 || x > 4096) return 0;
    return (int)x;
}

void runenv_load(void) {
    for (int i = 0; i < 3; i++) free(owned[i]);
    RunEnv r;
    memset(&r, 0, sizeof r);
    r.data_root = owned[0] = env_str("CONVNET_DATA");
    /* CONVNET_RUNS= (set but empty) means the default, as unset does */
    r.runs_root = owned[1] = env_str("CONVNET_RUNS");
    r.tmpdir = owned[2] = env_str("TMPDIR");
    const char *prof = getenv("CONVNET_PROFILE");
    r.profile = prof && *prof && strcmp(prof, "0") != 0;
    const char *inproc = getenv("CONVNET_H5_INPROCESS");
    r.h5_inprocess = inproc && !strcmp(inproc, "1");
    const char *unsandboxed = getenv("CONVNET_H5_UNSANDBOXED");
    r.h5_unsandboxed = unsandboxed && !strcmp(unsandboxed, "1");
    r.decode_threads = env_count("CONVNET_DECODE_THREADS");
    r.omp_threads = env_count("OMP_NUM_THREADS");
    r.slurm_cpus_per_task = env_count("SLURM_CPUS_PER_TASK");
    r.mpirun_daemons = getenv("OMPI_MCA_orte_hnp_uri") != NULL;
    r.keepalive_set = getenv("OMPI_MCA_oob_tcp_keepalive_time") != NULL;
    r.keepalive_time = env_count("OMPI_MCA_oob_tcp_keepalive_time");
    r.keepalive_intvl = env_count("OMPI_MCA_oob_tcp_keepalive_intvl");
    r.keepalive_probes = env_count("OMPI_MCA_oob_tcp_keepalive_probes");
    settings = r;
}

const RunEnv *runenv(void) { return &settings; }

void runenv_set_profile(int on) { settings.profile = on; }
