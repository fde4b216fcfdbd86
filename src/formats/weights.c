/* weights.c: saving and loading model weights (format in weights.h), with every field and the
 * checksum validated before anything is copied into the model. */
#include "weights.h"

#include "preflight.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char MAGIC[8] = {'C', 'N', 'D', 'W', 'G', 'T', '0', '1'};

typedef struct {
    char magic[8];
    uint32_t version;
    uint32_t n_layers;
    uint64_t n_params;
    uint64_t structure;
} WeightsHeader;

uint64_t model_structure_hash(const Model *m) {
    uint64_t h = hash_bytes(HASH_SEED, &m->input, sizeof m->input);
    for (int l = 0; l < m->n_layers; l++) {
        const Layer *L = &m->layers[l];
        /* the first two tensors' sizes (kernel, bias) as before parameter lists, so that older
         * files of chain models still match; kinds with more tensors hash them all */
        uint64_t f[6] = {(uint64_t)L->kind,
                         (uint64_t)shape_size(L->in),
                         (uint64_t)shape_size(L->out),
                         L->n_param > 0 ? L->param[0].n : 0,
                         L->n_param > 1 ? L->param[1].n : 0,
                         (uint64_t)L->out.c};
        h = hash_bytes(h, f, sizeof f);
        for (int i = 2; i < L->n_param; i++)
            h = hash_bytes(h, &L->param[i].n, sizeof L->param[i].n);
    }
    return h;
}

int weights_save(const char *path, const Model *m, Err *e) {
    WeightsHeader hd;
    memset(&hd, 0, sizeof hd);
    memcpy(hd.magic, MAGIC, 8);
    hd.version = WEIGHTS_VERSION;
    hd.n_layers = (uint32_t)m->n_layers;
    hd.n_params = m->n_params;
    hd.structure = model_structure_hash(m);
    uint32_t crc = crc32_update(0, &hd, sizeof hd);
    crc = crc32_update(crc, m->params, m->n_params * sizeof(float));
    IoChunk chunks[3] = {{&hd, sizeof hd}, {m->params, m->n_params * sizeof(float)}, {&crc, 4}};
    return file_write_atomic(path, chunks, 3, e);
}

/* Read and fully validate a weights file; returns the malloc'd parameter array. */
static float *read_checked(const char *path, WeightsHeader *hd, Err *e) {
    long long fsize = 0;
    FILE *f = file_open_regular(path, "weights file", &fsize, e);
    if (!f) return NULL;
    float *p = NULL;
    size_t got = fread(hd, 1, sizeof *hd, f);
    if (got != sizeof *hd) {
        err_set(e, "%s: truncated: %zu bytes, a weights header needs %zu", path, got, sizeof *hd);
        goto fail;
    }
    if (memcmp(hd->magic, MAGIC, 8) != 0) {
        err_set(e, "%s: not a convnet-dist weights file (bad magic at offset 0)", path);
        goto fail;
    }
    if (hd->version != WEIGHTS_VERSION) {
        err_set(e, "%s: weights format version %u, this build reads version %u", path, hd->version,
                WEIGHTS_VERSION);
        goto fail;
    }
    if (hd->n_params > (1ULL << 34)) {
        err_set(e, "%s: implausible parameter count %llu at offset 16", path,
                (unsigned long long)hd->n_params);
        goto fail;
    }
    /* the size the header declares must be the file's before anything is allocated for it */
    uint64_t want = sizeof *hd + hd->n_params * 4 + 4;
    if ((uint64_t)fsize != want) {
        err_set(e,
                "%s: %s: the header (offset 16) declares %llu parameters, %llu bytes in all; "
                "the file has %lld",
                path, (uint64_t)fsize < want ? "truncated" : "trailing bytes",
                (unsigned long long)hd->n_params, (unsigned long long)want, fsize);
        goto fail;
    }
    p = xmalloc(hd->n_params * sizeof(float) + 1);
    got = fread(p, sizeof(float), hd->n_params, f);
    uint32_t crc_file;
    if (got != hd->n_params || fread(&crc_file, 4, 1, f) != 1) {
        err_set(e, "%s: truncated: %zu of %llu parameters and the checksum present", path, got,
                (unsigned long long)hd->n_params);
        goto fail;
    }
    if (fgetc(f) != EOF) {
        err_set(e, "%s: trailing bytes after the checksum at offset %zu", path,
                sizeof *hd + hd->n_params * 4 + 4);
        goto fail;
    }
    uint32_t crc = crc32_update(0, hd, sizeof *hd);
    crc = crc32_update(crc, p, hd->n_params * sizeof(float));
    if (crc != crc_file) {
        err_set(e,
                "%s: checksum mismatch (file says %08x, contents give %08x): the file is corrupt",
                path, crc_file, crc);
        goto fail;
    }
    fclose(f);
    return p;
fail:
    free(p);
    fclose(f);
    return NULL;
}

int weights_load(const char *path, Model *m, Err *e) {
    WeightsHeader hd;
    float *p = read_checked(path, &hd, e);
    if (!p) return -1;
    if (hd.n_params != m->n_params || hd.structure != model_structure_hash(m)) {
        err_set(e,
                "%s: weights of another model (%llu parameters in %u layers; this job's model has "
                "%zu in %d layers, or its layer shapes differ)",
                path, (unsigned long long)hd.n_params, hd.n_layers, m->n_params, m->n_layers);
        free(p);
        return -1;
    }
    if (preflight_params_finite(m, p, path, "weights file", e)) {
        free(p);
        return -1;
    }
    memcpy(m->params, p, m->n_params * sizeof(float));
    free(p);
    return 0;
}

float *weights_read_raw(const char *path, uint64_t *n_params, Err *e) {
    WeightsHeader hd;
    float *p = read_checked(path, &hd, e);
    if (p) *n_params = hd.n_params;
    return p;
}
