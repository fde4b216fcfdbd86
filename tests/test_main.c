/* test_main.c: registers every suite queued by TEST_SUITE and runs them with CUnit's basic
 * runner. Exits non-zero when any assertion failed or a suite could not run, after printing, for
 * each failed suite, the command that reruns it alone.
 *
 *   test-convnet                      every suite
 *   test-convnet SUITE...             these suites only
 *   test-convnet --exclude SUITE...   every suite but these (`make check`)
 *   test-convnet --list               the suite names, one a line
 *
 * An unknown suite name is an error (exit 2) listing the suites, so that a typo cannot pass as
 * a green run of nothing. */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "runenv.h"

#define MAX_SUITES 64

typedef struct {
    const char *name;
    const TestCase *cases;
} QueuedSuite;
static QueuedSuite queued[MAX_SUITES];
static int n_queued;

void testutil_add_suite(const char *name, const TestCase *cases) {
    if (n_queued == MAX_SUITES) {
        fprintf(stderr, "too many test suites (raise MAX_SUITES)\n");
        return;
    }
    queued[n_queued].name = name;
    queued[n_queued].cases = cases;
    n_queued++;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const QueuedSuite *)a)->name, ((const QueuedSuite *)b)->name);
}

/* tests/test_pack.c's writer program, run under mpirun by its own tests */
int test_pack_writer_main(int argc, char **argv);
int test_source_list_main(int argc, char **argv);

static int find_suite(const char *name) {
    for (int i = 0; i < n_queued; i++)
        if (!strcmp(queued[i].name, name)) return i;
    return -1;
}

/* Parses the suite arguments into run[i] (1: register suite i). Returns 0, 1 after --list, or -1
 * on a bad argument (after saying why). */
static int select_suites(int argc, char **argv, int *run) {
    int exclude = 0, named = 0;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--list")) {
            for (int i = 0; i < n_queued; i++) printf("%s\n", queued[i].name);
            return 1;
        }
        if (!strcmp(argv[a], "--exclude")) {
            exclude = 1;
            continue;
        }
        if (find_suite(argv[a]) < 0) {
            fprintf(stderr, "test-convnet: no suite named '%s'; the suites are:", argv[a]);
            for (int i = 0; i < n_queued; i++) fprintf(stderr, " %s", queued[i].name);
            fprintf(stderr, "\nusage: test-convnet [SUITE...] [--exclude SUITE...] [--list]\n");
            return -1;
        }
        named |= !exclude;
    }
    /* with names before --exclude: those; else every suite; then the exclusions */
    for (int i = 0; i < n_queued; i++) run[i] = !named;
    exclude = 0;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--exclude"))
            exclude = 1;
        else
            run[find_suite(argv[a])] = !exclude;
    }
    return 0;
}

/* For each suite with a failure, the command line that reruns it alone (CUnit lists failures
 * by assertion; a suite is printed once). */
static void print_rerun_hints(const char *self) {
    const char *bin = getenv("CONVNET_BIN"), *mpi = getenv("CONVNET_MPI");
    const char *printed[MAX_SUITES];
    int n_printed = 0;
    for (CU_pFailureRecord f = CU_get_failure_list(); f; f = f->pNext) {
        const char *name = f->pSuite ? f->pSuite->pName : NULL;
        int seen = !name;
        for (int k = 0; k < n_printed && !seen; k++) seen = !strcmp(printed[k], name);
        if (seen || n_printed == MAX_SUITES) continue;
        if (n_printed == 0) printf("\nFailed suites; rerun one alone with:\n");
        printed[n_printed++] = name;
        printf("  CONVNET_BIN=%s CONVNET_MPI=%s %s %s\n", bin && *bin ? bin : "./convnet-dist",
               mpi && *mpi ? mpi : "1", self, name);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--pack-write") == 0) return test_pack_writer_main(argc, argv);
    if (argc > 1 && strcmp(argv[1], "--list") == 0) return test_source_list_main(argc, argv);
    /* No default checkpoints (rundir.h) unless a test asks: every run starts afresh, whatever
     * an earlier killed run left in a run directory. test_rundir.c sets its own. */
    setenv("CONVNET_RUNS", "off", 1);
    runenv_load(); /* the library reads its settings from runenv(), as main's start-up fills it */
    qsort(queued, (size_t)n_queued, sizeof queued[0], by_name);
    int run[MAX_SUITES];
    int sel = select_suites(argc, argv, run);
    if (sel) return sel > 0 ? 0 : 2;
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    for (int i = 0; i < n_queued; i++) {
        if (!run[i]) continue;
        CU_pSuite s = CU_add_suite(queued[i].name, NULL, NULL);
        if (!s) return 1;
        for (const TestCase *t = queued[i].cases; t->name; t++)
            if (!CU_add_test(s, t->name, t->fn)) return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
    unsigned ran = CU_get_number_of_tests_run();
    if (failed) print_rerun_hints(argv[0]);
    CU_cleanup_registry();
    printf("Skipped checks: %d (each printed above as SKIP, with why)\n", testutil_skipped());
    if (ran == 0) {
        fprintf(stderr, "no test ran\n");
        return 1;
    }
    return failed ? 1 : 0;
}
