/* test_job_hash.c: a checkpoint keeps resuming across convnet-dist versions. A checkpoint holds
 * its job's resume hash (job.c: the resolved configuration, defaults included) and is refused
 * when the job's differs; so a change that moves the hash of an unchanged job file orphans
 * every run in flight (commit 8873e31 did: its new [data] decode default entered the hash). The
 * jobs in jobs/ are pinned here at the hashes convnet-dist 6181a0f (2026-12-02) gave them;
 * a key added with a default that keeps the old computation is left out at that value
 * (KEYS_ADDED_LATER in job.c). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job.h"
#include "testutil.h"

/* The data root the pins were computed under: a string only (job_load opens nothing under it
 * but the Darknet jobs' .cfg). */
#define PIN_ROOT "../shared/data"

static const struct {
    const char *job;
    uint64_t resume_hash;
} pins[] = {
    {"jobs/dogs-vs-cats-augment.job", 0xf2d7574721ddeff8ull},
    {"jobs/dogs-vs-cats-cosine.job", 0xf04d74e4ef03e5d2ull}, /* added 2026-12-07 with lr_schedule */
    {"jobs/dogs-vs-cats-plateau.job", 0x950a394b69c18485ull}, /* added 2026-12-08 with reduce_lr_on_plateau */
    {"jobs/dogs-vs-cats-scratch.job", 0x60956114bc4eccabull},
    /* re-pinned 2026-12-03: the job now runs tf.keras 2's RMSprop (epsilon_placement =
     * outside_sqrt), another computation, so its older checkpoints must not resume */
    {"jobs/mini-xception.job", 0x198fdb9e70bb14efull},
    /* added 2026-12-07: the same model at batch 128, lr_scaling and a warm-up */
    {"jobs/mini-xception-batch128.job", 0xea57b5270cca7e3full},
    {"jobs/mnist-digits.job", 0x5ce1610adf05379eull},
    {"jobs/mnist.job", 0x5bacf3b694e09178ull},
    {"jobs/tiny-darknet-features.job", 0xd6e69d7e58ea4d20ull},
    {"jobs/tiny-darknet-finetune.job", 0x59f41a8c9d2b4c07ull},
    {"jobs/tiny-darknet-frozen-augment.job", 0xdab1ada46057e086ull},
    {"jobs/tiny-darknet-imagenet.job", 0x5ead468ab9594709ull},
    {"jobs/vgg16-features.job", 0x35c66d1885546992ull},
    {"jobs/vgg16-finetune.job", 0x80fe14403e9bb2e9ull},
    {"jobs/vgg16-frozen-augment.job", 0x70252df4860d9294ull},
};
#define N_PINS (sizeof pins / sizeof pins[0])

/* Load `path` with $CONVNET_DATA = root, restoring the caller's value. 0 on success. */
static int load_with_root(Job *j, const char *path, const char *root, char *const *sets, int n_sets,
                          Err *e) {
    char *was = testutil_env_swap("CONVNET_DATA", root);
    int rc = job_load(j, path, sets, n_sets, e);
    testutil_env_restore("CONVNET_DATA", was);
    return rc;
}

static int is_darknet_job(const char *path) { return strstr(path, "tiny-darknet") != NULL; }

static void test_jobs_keep_their_hashes(void) {
    int darknet_ok = access(PIN_ROOT "/tiny-darknet/tiny.cfg", R_OK) == 0, skipped = 0;
    for (size_t i = 0; i < N_PINS; i++) {
        if (is_darknet_job(pins[i].job) && !darknet_ok) {
            skipped++;
            continue;
        }
        Job j;
        Err e = {0};
        int rc = load_with_root(&j, pins[i].job, PIN_ROOT, NULL, 0, &e);
        CU_ASSERT_EQUAL(rc, 0);
        if (rc) {
            printf("\n    %s\n", e.msg);
            continue;
        }
        if (j.resume_hash != pins[i].resume_hash)
            printf("\n    %s: resume hash %016llx, pinned %016llx: checkpoints of this job written "
                   "by earlier versions would no longer resume (a new key's neutral value belongs "
                   "in KEYS_ADDED_LATER, job.c)\n",
                   pins[i].job, (unsigned long long)j.resume_hash,
                   (unsigned long long)pins[i].resume_hash);
        CU_ASSERT_EQUAL(j.resume_hash, pins[i].resume_hash);
        job_free(&j);
    }
    if (skipped)
        testutil_skip("resume hashes of the Tiny Darknet jobs",
                      PIN_ROOT "/tiny-darknet/tiny.cfg absent (their layers come from it)", 1);
}

/* Every job shipped in jobs/ is pinned: a new one gets its line in `pins`. */
static void test_every_job_pinned(void) {
    DIR *d = opendir("jobs");
    CU_ASSERT_FATAL(d != NULL);
    struct dirent *ent;
    int n = 0;
    while ((ent = readdir(d))) {
        size_t len = strlen(ent->d_name);
        if (len < 5 || strcmp(ent->d_name + len - 4, ".job")) continue;
        char path[512];
        snprintf(path, sizeof path, "jobs/%s", ent->d_name);
        int found = 0;
        for (size_t i = 0; i < N_PINS; i++) found |= !strcmp(pins[i].job, path);
        if (!found) printf("\n    %s has no pinned resume hash in tests/test_job_hash.c\n", path);
        CU_ASSERT(found);
        n++;
    }
    closedir(d);
    CU_ASSERT(n >= (int)N_PINS);
}

/* `decode`, added after checkpoints existed: absent and at its default hash alike (both hashes);
 * the other value, which computes something else, does not. */
static void test_key_added_later(void) {
    const char *dir = testutil_tmpdir();
    const char *text = "[data]\nformat = images\ntrain_dir = a\ntest_dir = b\nimage_size = 32, "
                       "32\nlabel_mode = binary\n"
                       "[conv2d]\nfilters = 4\nkernel_size = 3\n[flatten]\n[dense]\nunits = 1\n"
                       "activation = sigmoid\n[train]\nloss = binary_crossentropy\n"
                       "optimizer = rmsprop\nbatch_size = 4\nepochs = 1\n";
    const char *path = testutil_write_file(dir, "hash.job", text, strlen(text));
    char *scaled[] = {"data.decode=scaled"}, *full[] = {"data.decode=full"};
    Job absent, same, other;
    Err e = {0};
    CU_ASSERT_FATAL(load_with_root(&absent, path, dir, NULL, 0, &e) == 0);
    CU_ASSERT_FATAL(load_with_root(&same, path, dir, scaled, 1, &e) == 0);
    CU_ASSERT_FATAL(load_with_root(&other, path, dir, full, 1, &e) == 0);
    CU_ASSERT_EQUAL(absent.resume_hash, same.resume_hash);
    CU_ASSERT_EQUAL(absent.hash, same.hash);
    CU_ASSERT_NOT_EQUAL(absent.resume_hash, other.resume_hash);
    CU_ASSERT_NOT_EQUAL(absent.hash, other.hash);
    CU_ASSERT(absent.data.decode_full == 0 && other.data.decode_full == 1);
    job_free(&absent), job_free(&same), job_free(&other);
}

TEST_SUITE(job_hash, {"the jobs in jobs/ keep their resume hashes", test_jobs_keep_their_hashes},
           {"every job in jobs/ is pinned", test_every_job_pinned},
           {"a key added later keeps the hash at its old value", test_key_added_later})
