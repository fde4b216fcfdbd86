/* fuzz_cli.c: libFuzzer target for the command line (src/main.c's parse_args(): options,
 * their values and counts, positionals).
 *
 * Input: the arguments after the program name, separated by NUL bytes (argv[1] is the
 * command). main.c is compiled into this file with its main() renamed, and exit() turned
 * into a jump back here, so that a refused command line (status 2 and the usage, as the
 * program does) ends one input rather than the fuzzer.
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static jmp_buf fuzz_exit_jmp;
static int fuzz_exit_status;

static void fuzz_exit(int status) {
    fuzz_exit_status = status;
    longjmp(fuzz_exit_jmp, 1);
}

#define exit(status) fuzz_exit(status)
#define main convnet_main
#include "../../src/app/main.c"
#undef main
#undef exit

enum { MAX_ARGS = 64 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *copy = malloc(size + 1);
    memcpy(copy, data, size);
    copy[size] = 0;
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = "convnet-dist";
    for (char *p = copy; p <= copy + size && argc < MAX_ARGS + 1; p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;
    static Args a; /* static: intact after the jump */
    memset(&a, 0, sizeof a);
    fuzz_exit_status = 0;
    if (setjmp(fuzz_exit_jmp) == 0) parse_args(&a, argc, argv);
    /* a refused command line exits with 2 (bad input), never 0 */
    if (fuzz_exit_status != 0 && fuzz_exit_status != EXIT_BAD_INPUT) __builtin_trap();
    free(a.sets);
    free(a.pos);
    free(copy);
    return 0;
}
