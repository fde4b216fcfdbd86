/* checkpoint.c: writing, validating, loading and rotating training checkpoints (format and
 * crash-safety argument in checkpoint.h). Every field is packed byte by byte, so the file
 * never contains struct padding and reads the same on any host. */
#include "checkpoint.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Parameter arrays are written as the host's float32 bytes: the format says little-endian. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.c writes float arrays in host order, which must be little-endian"
#endif

static const char MAGIC[8] = {'C', 'N', 'D', 'C', 'K', 'P', 'T', '1'};
enum { N_SECTIONS = 4, TABLE_OFF = 16, ENTRY_BYTES = 32, HEADER_CRC_OFF = 144 };
static const char *const SECTION_NAMES[N_SECTIONS] = {"state", "params", "opt_s1", "opt_s2"};

/* ---- little-endian packing ---- */

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_f64(unsigned char *p, double d) {
    uint64_t v;
    memcpy(&v, &d, 8);
    put_u64(p, v);
}
static uint32_t get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static double get_f64(const unsigned char *p) {
    uint64_t v = get_u64(p);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

static void pack_state(unsigned char *b, const CheckpointState *s, uint64_t n_params,
                       uint64_t n_opt) {
    put_u64(b + 0, s->job_hash);
    put_u64(b + 8, s->structure_hash);
    put_u32(b + 16, (uint32_t)s->epoch);
    put_u32(b + 20, (uint32_t)s->phase);
    put_u64(b + 24, (uint64_t)s->step);
    put_u64(b + 32, (uint64_t)s->global_step);
    put_f64(b + 40, s->best);
    put_u32(b + 48, (uint32_t)s->best_epoch);
    put_u32(b + 52, (uint32_t)s->epochs_since_best);
    put_f64(b + 56, s->epoch_loss_sum);
    put_f64(b + 64, s->epoch_correct);
    put_f64(b + 72, s->epoch_seen);
    put_u64(b + 80, (uint64_t)s->opt_iterations);
    put_u64(b + 88, n_params);
    put_u64(b + 96, n_opt);
    put_f64(b + 104, s->plateau_lr);
    put_f64(b + 112, s->plateau_best);
    put_u32(b + 120, (uint32_t)s->plateau_wait);
    put_u32(b + 124, (uint32_t)s->plateau_cooldown);
}

static void unpack_state(const unsigned char *b, uint64_t len, CheckpointState *s,
                         uint64_t *n_params, uint64_t *n_opt) {
    memset(s, 0, sizeof *s);
    s->job_hash = get_u64(b + 0);
    s->structure_hash = get_u64(b + 8);
    s->epoch = (int32_t)get_u32(b + 16);
    s->phase = (int32_t)get_u32(b + 20);
    s->step = (int64_t)get_u64(b + 24);
    s->global_step = (int64_t)get_u64(b + 32);
    s->best = get_f64(b + 40);
    s->best_epoch = (int32_t)get_u32(b + 48);
    s->epochs_since_best = (int32_t)get_u32(b + 52);
    s->epoch_loss_sum = get_f64(b + 56);
    s->epoch_correct = get_f64(b + 64);
    s->epoch_seen = get_f64(b + 72);
    s->opt_iterations = (int64_t)get_u64(b + 80);
    *n_params = get_u64(b + 88);
    *n_opt = get_u64(b + 96);
    if (len < CHECKPOINT_STATE_BYTES) return; /* version 1: no callback state */
    s->plateau_lr = get_f64(b + 104);
    s->plateau_best = get_f64(b + 112);
    s->plateau_wait = (int32_t)get_u32(b + 120);
    s->plateau_cooldown = (int32_t)get_u32(b + 124);
}

/* ---- save ---- */

int checkpoint_save(const char *path, const CheckpointState *st, const float *params,
                    size_t n_params, const float *opt_s1, const float *opt_s2, size_t n_opt,
                    Err *e) {
    if (n_opt && (!opt_s1 || !opt_s2)) {
        err_set(e, "%s: checkpoint_save: optimizer state missing for %zu parameters", path, n_opt);
        return -1;
    }
    unsigned char state[CHECKPOINT_STATE_BYTES];
    pack_state(state, st, n_params, n_opt);
    const void *data[N_SECTIONS] = {state, params, opt_s1, opt_s2};
    const uint64_t len[N_SECTIONS] = {CHECKPOINT_STATE_BYTES, (uint64_t)n_params * 4,
                                      (uint64_t)n_opt * 4, (uint64_t)n_opt * 4};
    unsigned char hd[CHECKPOINT_HEADER_BYTES];
    memset(hd, 0, sizeof hd);
    memcpy(hd, MAGIC, 8);
    put_u32(hd + 8, CHECKPOINT_VERSION);
    put_u32(hd + 12, N_SECTIONS);
    uint64_t off = CHECKPOINT_HEADER_BYTES;
    IoChunk chunks[1 + N_SECTIONS];
    chunks[0] = (IoChunk){hd, sizeof hd};
    for (int s = 0; s < N_SECTIONS; s++) {
        unsigned char *ent = hd + TABLE_OFF + ENTRY_BYTES * s;
        memcpy(ent, SECTION_NAMES[s], strlen(SECTION_NAMES[s])); /* rest stays NUL */
        put_u64(ent + 8, off);
        put_u64(ent + 16, len[s]);
        put_u32(ent + 24, len[s] ? crc32_update(0, data[s], (size_t)len[s]) : 0);
        off += len[s];
        chunks[1 + s] = (IoChunk){len[s] ? data[s] : "", (size_t)len[s]};
    }
    put_u32(hd + HEADER_CRC_OFF, crc32_update(0, hd, HEADER_CRC_OFF));
    return file_write_atomic(path, chunks, 1 + N_SECTIONS, e);
}

/* ---- load ---- */

/* The whole file, read into memory, fully checked. */
typedef struct {
    unsigned char *buf;
    uint64_t size;
    uint64_t off[N_SECTIONS], len[N_SECTIONS];
    CheckpointState st;
    uint64_t n_params, n_opt;
} Loaded;

static int read_all(const char *path, Loaded *L, Err *e) {
    long long fsize = 0;
    FILE *f = file_open_regular(path, "checkpoint", &fsize, e);
    if (!f) return -1;
    L->size = (uint64_t)fsize;
    if (L->size < CHECKPOINT_HEADER_BYTES) {
        /* still look at the magic, so that a short foreign file is named as such */
        unsigned char m[8];
        size_t got = fread(m, 1, 8, f);
        fclose(f);
        if (got == 8 && memcmp(m, MAGIC, 8) != 0)
            err_set(e, "%s: not a checkpoint (bad magic at offset 0)", path);
        else
            err_set(e, "%s: truncated: %llu of at least %u bytes (the header alone)", path,
                    (unsigned long long)L->size, CHECKPOINT_HEADER_BYTES);
        return -1;
    }
    L->buf = xmalloc((size_t)L->size);
    size_t got = fread(L->buf, 1, (size_t)L->size, f);
    int err = ferror(f);
    fclose(f);
    if (got != L->size) {
        err_set(e, "%s: read error after %zu of %llu bytes%s%s", path, got,
                (unsigned long long)L->size, err ? ": " : " (file shrank while reading)",
                err ? strerror(errno) : "");
        return -1;
    }
    return 0;
}

static int check_header(const char *path, Loaded *L, Err *e) {
    const unsigned char *b = L->buf;
    if (memcmp(b, MAGIC, 8) != 0) {
        err_set(e, "%s: not a checkpoint (bad magic at offset 0)", path);
        return -1;
    }
    uint32_t crc_file = get_u32(b + HEADER_CRC_OFF), crc = crc32_update(0, b, HEADER_CRC_OFF);
    uint32_t version = get_u32(b + 8);
    if (version < 1 || version > CHECKPOINT_VERSION) {
        /* A header that checks out as version 1's layout but says another version is a real
         * other version; otherwise the version field may just be damaged. */
        err_set(e, "%s: format version %u, this build reads 1 to %u%s", path, version,
                CHECKPOINT_VERSION,
                crc == crc_file ? ""
                                : " (and the header CRC does not match: maybe a corrupt header)");
        return -1;
    }
    if (crc != crc_file) {
        err_set(e,
                "%s: header corrupt (CRC mismatch at offset 0..%d: file says %08x, contents "
                "give %08x)",
                path, HEADER_CRC_OFF - 1, crc_file, crc);
        return -1;
    }
    uint32_t ns = get_u32(b + 12);
    if (ns != N_SECTIONS) {
        err_set(e, "%s: %u sections at offset 12, this format has %d", path, ns, N_SECTIONS);
        return -1;
    }
    uint64_t expect_off = CHECKPOINT_HEADER_BYTES;
    for (int s = 0; s < N_SECTIONS; s++) {
        const unsigned char *ent = b + TABLE_OFF + ENTRY_BYTES * s;
        char name[9] = {0};
        memcpy(name, ent, 8);
        if (strcmp(name, SECTION_NAMES[s]) != 0) {
            err_set(e, "%s: section %d at offset %d is named '%.8s', expected '%s'", path, s,
                    TABLE_OFF + ENTRY_BYTES * s, name, SECTION_NAMES[s]);
            return -1;
        }
        L->off[s] = get_u64(ent + 8);
        L->len[s] = get_u64(ent + 16);
        if (L->off[s] != expect_off || L->len[s] > (1ULL << 40)) {
            err_set(e,
                    "%s: section '%s' table entry is inconsistent (offset %llu, length %llu; "
                    "expected offset %llu)",
                    path, SECTION_NAMES[s], (unsigned long long)L->off[s],
                    (unsigned long long)L->len[s], (unsigned long long)expect_off);
            return -1;
        }
        expect_off += L->len[s];
    }
    if (L->size < expect_off) {
        err_set(e, "%s: truncated: %llu of %llu bytes", path, (unsigned long long)L->size,
                (unsigned long long)expect_off);
        return -1;
    }
    if (L->size > expect_off) {
        err_set(e, "%s: %llu bytes of trailing garbage after the last section (offset %llu)", path,
                (unsigned long long)(L->size - expect_off), (unsigned long long)expect_off);
        return -1;
    }
    if (L->len[0] != (version == 1 ? CHECKPOINT_STATE_BYTES_V1 : CHECKPOINT_STATE_BYTES) ||
        L->len[1] % 4 || L->len[2] % 4 || L->len[2] != L->len[3]) {
        err_set(e,
                "%s: section sizes do not fit this format (state %llu bytes, params %llu, "
                "opt_s1 %llu, opt_s2 %llu)",
                path, (unsigned long long)L->len[0], (unsigned long long)L->len[1],
                (unsigned long long)L->len[2], (unsigned long long)L->len[3]);
        return -1;
    }
    return 0;
}

static int check_sections(const char *path, Loaded *L, Err *e) {
    for (int s = 0; s < N_SECTIONS; s++) {
        uint32_t want = get_u32(L->buf + TABLE_OFF + ENTRY_BYTES * s + 24);
        uint32_t got = L->len[s] ? crc32_update(0, L->buf + L->off[s], (size_t)L->len[s]) : 0;
        if (got != want) {
            err_set(e,
                    "%s: section '%s' corrupt (CRC mismatch at offset %llu..%llu: file says "
                    "%08x, contents give %08x)",
                    path, SECTION_NAMES[s], (unsigned long long)L->off[s],
                    (unsigned long long)(L->off[s] + L->len[s] - 1), want, got);
            return -1;
        }
    }
    unpack_state(L->buf + L->off[0], L->len[0], &L->st, &L->n_params, &L->n_opt);
    if (L->n_params * 4 != L->len[1] || L->n_opt * 4 != L->len[2]) {
        err_set(e,
                "%s: state says %llu parameters and %llu optimizer values, the sections hold "
                "%llu and %llu",
                path, (unsigned long long)L->n_params, (unsigned long long)L->n_opt,
                (unsigned long long)(L->len[1] / 4), (unsigned long long)(L->len[2] / 4));
        return -1;
    }
    return 0;
}

static int check_fits(const char *path, const Loaded *L, size_t n_params, size_t n_opt,
                      uint64_t expect_job, uint64_t expect_structure, Err *e) {
    if ((expect_structure && L->st.structure_hash != expect_structure) || L->n_params != n_params) {
        err_set(e,
                "%s: checkpoint of another model (%llu parameters, structure hash %016llx; "
                "this model has %zu parameters, structure hash %016llx)",
                path, (unsigned long long)L->n_params, (unsigned long long)L->st.structure_hash,
                n_params, (unsigned long long)expect_structure);
        return -1;
    }
    if (expect_job && L->st.job_hash != expect_job) {
        err_set(e,
                "%s: written by a different job configuration (hash %016llx, this job "
                "%016llx): resume with the job file it was written by, or start afresh",
                path, (unsigned long long)L->st.job_hash, (unsigned long long)expect_job);
        return -1;
    }
    if (L->n_opt != n_opt) {
        err_set(e,
                "%s: optimizer state for %llu parameters, this optimizer covers %zu (another "
                "optimizer or another set of trainable layers)",
                path, (unsigned long long)L->n_opt, n_opt);
        return -1;
    }
    return 0;
}

/* A NaN or infinity in the parameters or optimizer state (a diverged run) is refused. */
static int check_finite(const char *path, const Loaded *L, Err *e) {
    for (int s = 1; s < N_SECTIONS; s++) {
        size_t n = (size_t)(L->len[s] / 4);
        float *v = xmalloc(n * 4 + 4); /* a copy: the file's floats may be unaligned */
        memcpy(v, L->buf + L->off[s], n * 4);
        size_t bad = floats_first_nonfinite(v, n);
        if (bad < n)
            err_set(e,
                    "%s: non-finite value (%g) in section '%s' (%s %zu of %zu, offset %llu): "
                    "the run that wrote it diverged; refusing to resume from it",
                    path, (double)v[bad], SECTION_NAMES[s],
                    s == 1 ? "parameter" : "optimizer value", bad, n,
                    (unsigned long long)(L->off[s] + 4 * bad));
        free(v);
        if (bad < n) return -1;
    }
    return 0;
}

int checkpoint_load(const char *path, CheckpointState *st, float *params, size_t n_params,
                    float *opt_s1, float *opt_s2, size_t n_opt, uint64_t expect_job_hash,
                    uint64_t expect_structure_hash, Err *e) {
    Loaded L;
    memset(&L, 0, sizeof L);
    int rc = -1;
    if (read_all(path, &L, e) == 0 && check_header(path, &L, e) == 0 &&
        check_sections(path, &L, e) == 0 &&
        check_fits(path, &L, n_params, n_opt, expect_job_hash, expect_structure_hash, e) == 0 &&
        check_finite(path, &L, e) == 0) {
        /* everything checked: only now touch the caller's arrays */
        *st = L.st;
        if (n_params) memcpy(params, L.buf + L.off[1], n_params * 4);
        if (n_opt) {
            memcpy(opt_s1, L.buf + L.off[2], n_opt * 4);
            memcpy(opt_s2, L.buf + L.off[3], n_opt * 4);
        }
        rc = 0;
    }
    free(L.buf);
    return rc;
}

int checkpoint_load_newest(const char *path, int keep, CheckpointState *st, float *params,
                           size_t n_params, float *opt_s1, float *opt_s2, size_t n_opt,
                           uint64_t expect_job_hash, uint64_t expect_structure_hash, int *which,
                           FILE *log, Err *e) {
    size_t plen = strlen(path) + 24;
    char *p = xmalloc(plen);
    for (int i = 0; i < (keep < 1 ? 1 : keep); i++) {
        if (i == 0)
            snprintf(p, plen, "%s", path);
        else
            snprintf(p, plen, "%s.%d", path, i);
        Err ei = {0};
        if (checkpoint_load(p, st, params, n_params, opt_s1, opt_s2, n_opt, expect_job_hash,
                            expect_structure_hash, &ei) == 0) {
            if (which) *which = i;
            free(p);
            return 0;
        }
        if (i == 0) err_set(e, "%s", ei.msg);
        if (log && !(i > 0 && access(p, F_OK) != 0))
            fprintf(log, "convnet-dist: %s%s\n", ei.msg,
                    i + 1 < keep ? "; trying the previous checkpoint" : "");
    }
    free(p);
    return -1;
}

/* ---- rotation ---- */

static char *numbered(const char *path, int i) {
    size_t n = strlen(path) + 32;
    char *s = xmalloc(n);
    if (i == 0)
        snprintf(s, n, "%s", path);
    else
        snprintf(s, n, "%s.%d", path, i);
    return s;
}

/* Copy src to dst atomically (for file systems without hard links). */
static int copy_file(const char *src, const char *dst, Err *e) {
    FILE *f = fopen(src, "rb");
    if (!f) {
        err_set(e, "cannot open %s: %s", src, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 20, n = 0;
    unsigned char *buf = xmalloc(cap);
    for (;;) {
        if (n == cap) {
            unsigned char *nb = xmalloc(2 * cap);
            memcpy(nb, buf, n);
            free(buf);
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    int rc = -1;
    if (bad) {
        err_set(e, "cannot read %s: %s", src, strerror(errno));
    } else {
        IoChunk c = {buf, n};
        rc = file_write_atomic(dst, &c, 1, e);
    }
    free(buf);
    return rc;
}

int checkpoint_rotate(const char *path, int keep, Err *e) {
    if (keep < 1) keep = 1;
    /* leftovers of a run that kept more */
    for (int i = keep; i < keep + 10000; i++) {
        char *p = numbered(path, i);
        int gone = unlink(p) != 0 && errno == ENOENT;
        free(p);
        if (gone) break;
    }
    if (keep == 1 || access(path, F_OK) != 0) return 0;
    /* oldest first, so that each rename's target has already moved on */
    for (int i = keep - 2; i >= 1; i--) {
        char *from = numbered(path, i), *to = numbered(path, i + 1);
        int rc = rename(from, to);
        int err = errno;
        if (rc != 0 && err != ENOENT)
            err_set(e, "cannot rename %s to %s: %s", from, to, strerror(err));
        free(from);
        free(to);
        if (rc != 0 && err != ENOENT) return -1;
    }
    /* path -> path.1 without ever removing path: link to a temp name, rename over path.1 */
    char *one = numbered(path, 1);
    size_t tn = strlen(one) + 8;
    char *tmp = xmalloc(tn);
    snprintf(tmp, tn, "%s.tmp", one);
    unlink(tmp);
    int rc = 0;
    if (link(path, tmp) == 0) {
        if (rename(tmp, one) != 0) {
            err_set(e, "cannot rename %s to %s: %s", tmp, one, strerror(errno));
            unlink(tmp);
            rc = -1;
        }
    } else if (errno == EPERM || errno == ENOTSUP || errno == EXDEV || errno == EMLINK ||
               errno == EOPNOTSUPP) {
        rc = copy_file(path, one, e);
    } else {
        err_set(e, "cannot link %s to %s: %s", path, tmp, strerror(errno));
        rc = -1;
    }
    free(tmp);
    free(one);
    return rc;
}
