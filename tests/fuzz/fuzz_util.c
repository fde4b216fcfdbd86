/* fuzz_util.c: see fuzz_util.h. */
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ini.h"
#include "preflight.h"

int fuzz_memfile(const uint8_t *data, size_t n, char *path) {
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, data + off, n - off);
        if (w <= 0) abort();
        off += (size_t)w;
    }
    snprintf(path, 32, "/proc/self/fd/%d", fd);
    return fd;
}

int fuzz_split(const uint8_t *data, size_t n, const uint8_t **part, size_t *len, int max) {
    int k = 0;
    size_t start = 0;
    for (size_t i = 0; i + 4 <= n && k < max - 1; i++)
        if (!memcmp(data + i, "\n%%\n", 4)) {
            part[k] = data + start;
            len[k++] = i - start;
            start = i + 4;
            i += 3;
        }
    part[k] = data + start;
    len[k++] = n - start;
    return k;
}

#define MEMFS_MAX 16
static struct {
    char name[64];
    char *text;
    size_t n;
} memfs[MEMFS_MAX];
static int memfs_n;

void fuzz_memfs_clear(void) {
    for (int i = 0; i < memfs_n; i++) free(memfs[i].text);
    memfs_n = 0;
}

void fuzz_memfs_add(const char *name, const void *data, size_t n) {
    if (memfs_n == MEMFS_MAX) return;
    snprintf(memfs[memfs_n].name, sizeof memfs[memfs_n].name, "mem/%s", name);
    memfs[memfs_n].text = malloc(n + 1);
    memcpy(memfs[memfs_n].text, data, n);
    memfs[memfs_n].text[n] = 0;
    memfs[memfs_n].n = n;
    memfs_n++;
}

/* file_read_text's contract: 0 read (malloc'd, NUL-terminated), 1 absent. */
static int memfs_read(const char *path, char **text, size_t *len, Err *e) {
    for (int i = 0; i < memfs_n; i++)
        if (!strcmp(path, memfs[i].name)) {
            *text = malloc(memfs[i].n + 1);
            memcpy(*text, memfs[i].text, memfs[i].n + 1);
            *len = memfs[i].n;
            return 0;
        }
    return 1;
}

static char *memfs_canonical(const char *path) {
    /* "mem/./a" and "mem/a" are one file: collapse "./" so that cycles are still seen */
    char *c = strdup(path), *p;
    while ((p = strstr(c, "/./")) != NULL) memmove(p, p + 2, strlen(p + 2) + 1);
    return c;
}

void fuzz_memfs_install(void) {
    static const IniFileSource src = {memfs_read, memfs_canonical};
    ini_set_file_source(&src);
}

int fuzz_model(const char *layers_text, Shape in, size_t limit, Job *j, Model *m) {
    char *text = malloc(strlen(layers_text) + 512);
    sprintf(text,
            "[data]\nroot = /nonexistent\ntrain_images = a\ntrain_labels = b\n"
            "test_images = c\ntest_labels = d\n%s"
            "[train]\nloss = sparse_categorical_crossentropy\n",
            layers_text);
    fuzz_memfs_clear();
    fuzz_memfs_add("model.job", text, strlen(text));
    free(text);
    fuzz_memfs_install();
    Err e = {0};
    if (job_load(j, "mem/model.job", NULL, 0, &e)) {
        job_free(j);
        return -1;
    }
    if (model_plan(m, j->layers, j->n_layers, in, 1, &e) ||
        preflight_check_memory(m, 0, 1, 1, "fuzz", limit, &e)) {
        if (m->act_off) model_free(m);
        job_free(j);
        return -1;
    }
    if (model_alloc(m, NULL)) abort(); /* the fuzzers' models are small */
    model_init_params(m, 1);
    return 0;
}
