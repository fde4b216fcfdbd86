/* fuzz_darknet.c: libFuzzer target for Darknet imports (darknet.c): the .cfg through the job
 * grammar ([darknet] in a job served from memory) and the .weights file read into the model
 * the cfg made.
 *
 * Input: the cfg text, "%%", the weights bytes. The model is planned on 8x8x1 inputs and,
 * as trainer_init() does, its memory is checked before it is allocated (here against 32 MB,
 * which keeps every input well under the 1 s timeout).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "darknet.h"
#include "fuzz_util.h"
#include "ini.h"
#include "job.h"
#include "preflight.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[2];
    size_t len[2];
    int n = fuzz_split(data, size, part, len, 2);
    if (n < 2) {
        part[1] = data;
        len[1] = 0;
    }
    char wpath[32];
    int fd = fuzz_memfile(part[1], len[1], wpath);
    char job[512];
    snprintf(job, sizeof job,
             "[data]\nformat = images\nroot = mem\ntrain_dir = .\ntest_dir = .\n"
             "image_size = 8,8\ncolor_mode = grayscale\n"
             "[darknet]\ncfg = net.cfg\nweights = %s\n"
             "[train]\nloss = sparse_categorical_crossentropy\n",
             wpath);
    fuzz_memfs_clear();
    fuzz_memfs_add("job.ini", job, strlen(job));
    fuzz_memfs_add("net.cfg", part[0], len[0]);
    fuzz_memfs_install();
    Job j;
    Err e = {0};
    if (job_load(&j, "mem/job.ini", NULL, 0, &e) == 0 && j.has_darknet) {
        Model m;
        memset(&m, 0, sizeof m);
        if (model_plan(&m, j.layers, j.n_layers, (Shape){8, 8, 1, 0}, 1, &e) == 0 &&
            preflight_check_memory(&m, 0, 1, 1, "fuzz", 32u << 20, &e) == 0) {
            if (model_alloc(&m, NULL)) abort(); /* the fuzzers' models are small */
            Err e2 = {0};
            darknet_load_weights(&j.darknet, &m, &e2);
        }
        if (m.act_off) model_free(&m);
    }
    job_free(&j);
    close(fd);
    return 0;
}
