/* fuzz_ini.c: libFuzzer target for the job-file grammar (ini.c) and the job reader (job.c).
 *
 * Input: the job file, then optional included files, separated by lines "%%": the first is
 * served as mem/job.ini, the others as mem/f1.inc, mem/f2.inc, ... from an in-memory file set,
 * so that [include] chains (and cycles) are explored without a disk. Each input is read by
 * job_load() (the full job grammar), and by ini_parse_file() with every key read through
 * each typed getter and the resolved printout and hash.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "ini.h"
#include "job.h"

static void every_getter(IniFile *ini) {
    static const char *const choices[] = {"a", "same", "valid", "true", NULL};
    for (int i = 0; i < ini->n_sec; i++) {
        Section *s = &ini->sec[i];
        for (int k = 0; k < s->n_kv; k++) {
            char *key = strdup(s->kv[k].key);
            Err e = {0};
            long l;
            int a, b, c;
            double d;
            float lo, hi;
            /* each getter on a fresh "unused" flag: take() only finds unused keys */
            s->kv[k].used = 0;
            sec_get_long(ini, s, key, 1, 0, -1000000, 1000000, &l, &e);
            s->kv[k].used = 0;
            sec_get_double(ini, s, key, 1, 0, -1e9, 1e9, &d, &e);
            s->kv[k].used = 0;
            sec_get_pair(ini, s, key, 1, 1, 1, 1, 1 << 16, &a, &b, &e);
            s->kv[k].used = 0;
            sec_get_range(ini, s, key, 1, 0, &lo, &hi, &e);
            s->kv[k].used = 0;
            sec_get_enum(ini, s, key, 1, 0, choices, &c, &e);
            s->kv[k].used = 0;
            sec_get_str(ini, s, key, 1, NULL, &e);
            free(key);
        }
        Err e = {0};
        sec_check_unused(ini, s, &e);
    }
    Err e = {0};
    ini_apply_override(ini, "train.epochs=3", &e);
    FILE *null = fopen("/dev/null", "w");
    if (null) {
        ini_print_resolved(ini, null);
        fclose(null);
    }
    ini_hash(ini, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[8];
    size_t len[8];
    int n = fuzz_split(data, size, part, len, 8);
    fuzz_memfs_clear();
    fuzz_memfs_add("job.ini", part[0], len[0]);
    for (int i = 1; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "f%d.inc", i);
        fuzz_memfs_add(name, part[i], len[i]);
    }
    fuzz_memfs_install();
    Job j;
    Err e = {0};
    job_load(&j, "mem/job.ini", NULL, 0, &e);
    job_free(&j);
    IniFile ini;
    Err e2 = {0};
    if (ini_parse_file(&ini, "mem/job.ini", &e2) == 0) every_getter(&ini);
    ini_free(&ini);
    return 0;
}
