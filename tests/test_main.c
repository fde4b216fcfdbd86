/* test_main.c: registers every suite queued by TEST_SUITE and runs them with CUnit's basic
 * runner. Exits non-zero when any assertion failed or a suite could not run. Optional
 * argument: a suite name to run alone. */
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

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--pack-write") == 0) return test_pack_writer_main(argc, argv);
    /* No default checkpoints (rundir.h) unless a test asks: every run starts afresh, whatever
     * an earlier killed run left in a run directory. test_rundir.c sets its own. */
    setenv("CONVNET_RUNS", "off", 1);
    runenv_load(); /* the library reads its settings from runenv(), as main's start-up fills it */
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    qsort(queued, (size_t)n_queued, sizeof queued[0], by_name);
    for (int i = 0; i < n_queued; i++) {
        if (argc > 1 && strcmp(argv[1], queued[i].name) != 0) continue;
        CU_pSuite s = CU_add_suite(queued[i].name, NULL, NULL);
        if (!s) return 1;
        for (const TestCase *t = queued[i].cases; t->name; t++)
            if (!CU_add_test(s, t->name, t->fn)) return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
    unsigned ran = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    printf("Skipped checks: %d (each printed above as SKIP, with why)\n", testutil_skipped());
    if (ran == 0) {
        fprintf(stderr, "no test ran\n");
        return 1;
    }
    return failed ? 1 : 0;
}
