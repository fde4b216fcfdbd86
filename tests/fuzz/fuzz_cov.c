/* fuzz_cov.c: where libFuzzer's inline 8-bit coverage counters are, for a target that runs its
 * parser in a child process and copies the child's counters back (fuzz_h5.c).
 *
 * Built WITHOUT coverage instrumentation, on purpose: in an instrumented file, declaring
 * __start___sancov_cntrs makes the compiler rename its own reference in the module constructor
 * (to __start___sancov_cntrs.2, which no linker defines), so that constructor registers an
 * empty counter region and libFuzzer sees no coverage at all ("no interesting inputs"). */
#include "fuzz_util.h"

extern uint8_t __start___sancov_cntrs[] __attribute__((weak));
extern uint8_t __stop___sancov_cntrs[] __attribute__((weak));

uint8_t *fuzz_counters(size_t *n) {
    *n = __start___sancov_cntrs && __stop___sancov_cntrs
             ? (size_t)(__stop___sancov_cntrs - __start___sancov_cntrs)
             : 0;
    return __start___sancov_cntrs;
}
