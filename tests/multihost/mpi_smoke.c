/*
 * mpi_smoke.c - tiny MPI check for the multi-host (network namespace) harness.
 *
 * Quick first check that MPI over TCP between namespaces works before the
 * trainer runs.  Prints one machine-readable line from rank 0:
 *
 *   SMOKE ranks=N netns=K ranksum=S expect=E checksum=0x... floats=F reps=R
 *         median_s=T min_s=T max_s=T
 *
 *   ranks     size of MPI_COMM_WORLD
 *   netns     number of distinct network namespaces the ranks run in
 *             (from /proc/self/ns/net; 1 when all ranks are on one "host")
 *   ranksum   MPI_Allreduce(SUM) of the rank numbers, expect = N(N-1)/2
 *   checksum  FNV-1a hash of the bytes of an MPI_Allreduce(SUM) of F floats
 *             whose values depend on rank and index; equal between runs with
 *             the same rank count (same reduction order), independent of where
 *             the ranks run
 *   median_s  median wall time of R timed allreduces of F floats (barrier
 *             before each, max over ranks)
 *
 * Options:
 *   --floats F   elements in the timed allreduce (default 991041, the
 *                dogs-vs-cats gradient)
 *   --reps R     timed repetitions (default 7; 2 untimed warm-ups before)
 *   --loop S     after the checks, keep doing allreduces of F floats for S
 *                seconds (rank 0 prints "LOOP iter=I t=T" about once a second);
 *                used by the link-down test.  The stop decision is taken by
 *                rank 0 and broadcast, so all ranks stop together.
 *   --watchdog W during --loop, a thread in every rank ends the process when
 *                no allreduce completed for W seconds (prints "WATCHDOG ...");
 *                like the trainer's train.collective_timeout
 *   --watchdog-mode exit|abort   _exit(4) (default) or MPI_Abort(MPI_COMM_WORLD, 4)
 *
 * Exit status 0 when ranksum == expect, 1 otherwise.
 */
#define _GNU_SOURCE
#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static unsigned long long netns_inode(void) {
    char buf[64];
    ssize_t n = readlink("/proc/self/ns/net", buf, sizeof buf - 1);
    if (n <= 0) return 0;
    buf[n] = '\0';
    const char *p = strchr(buf, '[');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

static uint64_t fnv1a(const void *data, size_t len) {
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static _Atomic double g_last_progress;
static double g_watchdog_s;
static int g_watchdog_abort, g_rank;

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *watchdog(void *arg) {
    (void)arg;
    for (;;) {
        struct timespec d = {0, 100 * 1000 * 1000};
        nanosleep(&d, NULL);
        double idle = mono() - atomic_load(&g_last_progress);
        if (idle > g_watchdog_s) {
            fprintf(stderr, "WATCHDOG rank %d: no allreduce completed for %.1f s, %s\n", g_rank,
                    idle, g_watchdog_abort ? "MPI_Abort" : "_exit(4)");
            fflush(stderr);
            if (g_watchdog_abort) MPI_Abort(MPI_COMM_WORLD, 4);
            _exit(4);
        }
    }
    return NULL;
}

/* A whole-string number, or exit 2 naming the option (atoi would turn a typo into 0). */
static double number_arg(const char *opt, const char *v) {
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end) {
        fprintf(stderr, "mpi_smoke: %s needs a number, got '%s'\n", opt, v);
        exit(2);
    }
    return x;
}

int main(int argc, char **argv) {
    long floats = 991041;
    int reps = 7;
    double loop_s = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--floats") && i + 1 < argc)
            floats = (long)number_arg(argv[i], argv[i + 1]), i++;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = (int)number_arg(argv[i], argv[i + 1]), i++;
        else if (!strcmp(argv[i], "--loop") && i + 1 < argc)
            loop_s = number_arg(argv[i], argv[i + 1]), i++;
        else if (!strcmp(argv[i], "--watchdog") && i + 1 < argc)
            g_watchdog_s = number_arg(argv[i], argv[i + 1]), i++;
        else if (!strcmp(argv[i], "--watchdog-mode") && i + 1 < argc)
            g_watchdog_abort = !strcmp(argv[++i], "abort");
        else {
            fprintf(stderr, "mpi_smoke: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (floats < 1) floats = 1;
    if (reps < 1) reps = 1;

    int provided;
    MPI_Init_thread(&argc, &argv, g_watchdog_s > 0 ? MPI_THREAD_MULTIPLE : MPI_THREAD_SINGLE,
                    &provided);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    g_rank = rank;
    MPI_Comm_size(MPI_COMM_WORLD, &size);

    /* 1. rank-number allreduce */
    long r = rank, sum = 0;
    MPI_Allreduce(&r, &sum, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    long expect = (long)size * (size - 1) / 2;

    /* 2. distinct network namespaces */
    unsigned long long ino = netns_inode();
    unsigned long long *all = rank == 0 ? malloc(sizeof *all * size) : NULL;
    MPI_Gather(&ino, 1, MPI_UNSIGNED_LONG_LONG, all, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
    int distinct = 0;
    if (rank == 0) {
        for (int i = 0; i < size; i++) {
            int seen = 0;
            for (int j = 0; j < i; j++) seen |= all[j] == all[i];
            distinct += !seen;
        }
        free(all);
    }

    /* 3. float allreduce, checksum of the result */
    float *x = malloc(sizeof *x * floats), *y = malloc(sizeof *y * floats);
    if (!x || !y) MPI_Abort(MPI_COMM_WORLD, 3);
    for (long i = 0; i < floats; i++)
        x[i] = (float)(((i * 2654435761u + (unsigned)rank * 40503u) % 1000003u) / 1000003.0 - 0.5) *
               (1.0f + 0.001f * rank);
    MPI_Allreduce(x, y, (int)floats, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    uint64_t h = fnv1a(y, sizeof *y * floats);

    /* 4. timing */
    MPI_Allreduce(x, y, (int)floats, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    double *t = malloc(sizeof *t * reps);
    for (int k = 0; k < reps; k++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        MPI_Allreduce(x, y, (int)floats, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double dt = MPI_Wtime() - t0, mx;
        MPI_Allreduce(&dt, &mx, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        t[k] = mx;
    }
    qsort(t, reps, sizeof *t, cmp_double);
    if (rank == 0) {
        double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
        printf(
            "SMOKE ranks=%d netns=%d ranksum=%ld expect=%ld checksum=0x%016llx floats=%ld reps=%d "
            "median_s=%.6f min_s=%.6f max_s=%.6f\n",
            size, distinct, sum, expect, (unsigned long long)h, floats, reps, med, t[0],
            t[reps - 1]);
        fflush(stdout);
    }

    /* 5. optional loop (link-down test) */
    if (loop_s > 0) {
        double start = MPI_Wtime(), last = start;
        long iter = 0;
        atomic_store(&g_last_progress, mono());
        if (g_watchdog_s > 0) {
            pthread_t th;
            pthread_create(&th, NULL, watchdog, NULL);
            pthread_detach(th);
        }
        for (;;) {
            MPI_Allreduce(x, y, (int)floats, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            iter++;
            atomic_store(&g_last_progress, mono());
            int stop = 0;
            if (rank == 0) {
                double now = MPI_Wtime();
                stop = now - start >= loop_s;
                if (now - last >= 1.0 || stop) {
                    printf("LOOP iter=%ld t=%.1f\n", iter, now - start);
                    fflush(stdout);
                    last = now;
                }
            }
            MPI_Bcast(&stop, 1, MPI_INT, 0, MPI_COMM_WORLD);
            if (stop) break;
        }
        atomic_store(&g_last_progress, 1e300); /* watchdog off */
        if (rank == 0) {
            printf("LOOP done\n");
            fflush(stdout);
        }
    }

    free(t);
    free(x);
    free(y);
    MPI_Finalize();
    return sum == expect ? 0 : 1;
}
