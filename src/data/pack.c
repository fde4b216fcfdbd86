/* pack.c: the packed dataset file (format in docs/pack.md and include/pack.h): writing one
 * collectively over the ranks into a pre-sized temp file renamed only when every rank has
 * written and synced its samples, and opening one mapped read-only with every check that costs
 * no more than the label table, the record CRCs being checked one record at a time on read.
 *
 * All fields are little-endian; the header is packed field by field at fixed offsets (no C
 * struct is written), so that numpy and other hosts read it by offset.
 */
#include "pack.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pack.c writes labels and the index in host order, which must be little-endian"
#endif

static const char MAGIC[8] = {'C', 'N', 'D', 'P', 'A', 'C', 'K', '1'};

/* Header field offsets (docs/pack.md's table). */
enum {
    OFF_VERSION = 8,
    OFF_HEADER_BYTES = 12,
    OFF_N = 16,
    OFF_H = 24,
    OFF_W = 28,
    OFF_C = 32,
    OFF_N_CLASSES = 36,
    OFF_FINGERPRINT = 40,
    OFF_ENCODING = 48,
    OFF_RECORD_BYTES = 56,
    OFF_FILE_SIZE = 64,
    OFF_SECTIONS = 72,
    SECTION_BYTES = 32,
    N_SECTIONS = 4,
    OFF_HEADER_CRC = PACK_HEADER_BYTES - 4,
    INDEX_ENTRY = 16
};
enum { SEC_CLASSES, SEC_LABELS, SEC_INDEX, SEC_RECORDS };
static const char *const SECTION_NAMES[N_SECTIONS] = {"classes", "labels", "index", "records"};
#define ENCODING_RAW 0u
#define MAX_SIDE 65536
#define MAX_SAMPLES (1LL << 40)
#define MAX_CLASSES (1 << 20)
#define INDEX_CHUNK 4096 /* index entries a writer thread buffers before one pwrite */

/* ---------------------------------------------------------------- little-endian fields */

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint64_t align_up(uint64_t x) { return (x + PACK_ALIGN - 1) / PACK_ALIGN * PACK_ALIGN; }

/* Where each section lies: a pure function of (n, record bytes, class names), so that every
 * rank computes the same layout without talking. */
typedef struct {
    uint64_t off[N_SECTIONS], len[N_SECTIONS];
    uint64_t rec_bytes, file_size;
} Layout;

static void layout_plan(Layout *L, int64_t n, uint64_t rec_bytes, uint64_t names_len) {
    L->rec_bytes = rec_bytes;
    L->len[SEC_CLASSES] = names_len;
    L->len[SEC_LABELS] = (uint64_t)n * 4;
    L->len[SEC_INDEX] = (uint64_t)n * INDEX_ENTRY;
    L->len[SEC_RECORDS] = (uint64_t)n * rec_bytes;
    uint64_t off = PACK_HEADER_BYTES;
    for (int s = 0; s < N_SECTIONS; s++) {
        L->off[s] = off;
        off = align_up(off + L->len[s]);
    }
    L->file_size = L->off[SEC_RECORDS] + L->len[SEC_RECORDS];
}

/* ---------------------------------------------------------------- writing */

/* The temp file rank 0 owns while writing, removed by a SIGINT/SIGTERM/SIGHUP on rank 0 (mpirun
 * forwards those, and sends SIGTERM when a peer rank dies) before the signal takes its course. */
static char *volatile cleanup_path;

static void cleanup_on_signal(int sig) {
    if (cleanup_path) unlink(cleanup_path);
    signal(sig, SIG_DFL);
    raise(sig);
}

static const int CLEANUP_SIGNALS[3] = {SIGINT, SIGTERM, SIGHUP};

static void cleanup_arm(char *tmp, struct sigaction *old) {
    cleanup_path = tmp;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = cleanup_on_signal;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; i++) sigaction(CLEANUP_SIGNALS[i], &sa, &old[i]);
}

static void cleanup_disarm(const struct sigaction *old) {
    for (int i = 0; i < 3; i++) sigaction(CLEANUP_SIGNALS[i], &old[i], NULL);
    cleanup_path = NULL;
}

/* Max of `failed` over the ranks: every rank takes the same branch after it. */
static int agree(Dist *d, int failed) {
    if (!d || d->size == 1) return failed;
    return dist_allreduce_max_int(d, failed, "pack write");
}

static int pwrite_all(int fd, const void *p, size_t n, uint64_t off) {
    const char *q = p;
    while (n > 0) {
        ssize_t w = pwrite(fd, q, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        q += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static int pread_all(int fd, void *p, size_t n, uint64_t off) {
    char *q = p;
    while (n > 0) {
        ssize_t r = pread(fd, q, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        q += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int check_meta(const char *path, const PackMeta *m, Err *e) {
    if (m->n < 0 || m->n > MAX_SAMPLES || m->h < 1 || m->h > MAX_SIDE || m->w < 1 ||
        m->w > MAX_SIDE || (m->c != 1 && m->c != 3) || m->n_classes < 1 ||
        m->n_classes > MAX_CLASSES || !m->class_names || (m->n > 0 && !m->labels)) {
        err_set(e, "%s: cannot pack %lld samples of %dx%dx%d in %d classes", path, (long long)m->n,
                m->h, m->w, m->c, m->n_classes);
        return -1;
    }
    for (int k = 0; k < m->n_classes; k++)
        if (!m->class_names[k] || !m->class_names[k][0]) {
            err_set(e, "%s: class %d has no name", path, k);
            return -1;
        }
    for (int64_t i = 0; i < m->n; i++)
        if (m->labels[i] < 0 || m->labels[i] >= m->n_classes) {
            err_set(e, "%s: sample %lld has label %d, outside [0, %d)", path, (long long)i,
                    (int)m->labels[i], m->n_classes);
            return -1;
        }
    return 0;
}

/* Rank 0: create the temp file, lock it against a concurrent packer of the same path and
 * reserve its full size (fallocate: a full disk fails now, not after hours of decoding). */
static int temp_create(const char *tmp, uint64_t size, Err *e) {
    int fd = open(tmp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        err_set(e, "cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        err_set(e, "%s: another convnet-dist pack is writing this pack now", tmp);
        close(fd);
        return -1;
    }
    int rc = ftruncate(fd, 0);
    if (rc == 0 && size > 0) {
        rc = posix_fallocate(fd, 0, (off_t)size);
        if (rc == EOPNOTSUPP || rc == EINVAL) rc = ftruncate(fd, (off_t)size) ? errno : 0;
        if (rc) errno = rc;
    }
    if (rc != 0) {
        err_set(e, "cannot reserve %llu bytes for %s: %s", (unsigned long long)size, tmp,
                strerror(errno));
        unlink(tmp);
        close(fd);
        return -1;
    }
    return fd;
}

/* This rank's samples [lo, hi): read, CRC, pwrite the record, and its index entry. Runs on the
 * rank's OpenMP threads; the first failure stops the others at their next sample. */
static int write_range(int fd, const char *tmp, const Layout *L, int64_t lo, int64_t hi,
                       PackReadFn fill, void *arg, Err *e) {
    int failed = 0;
#pragma omp parallel
    {
        uint8_t *px = xmalloc((size_t)L->rec_bytes);
        uint8_t *ix = xmalloc((size_t)INDEX_CHUNK * INDEX_ENTRY);
        Err te = {0};
        int64_t span = hi - lo, chunks = (span + INDEX_CHUNK - 1) / INDEX_CHUNK;
#pragma omp for schedule(dynamic, 1)
        for (int64_t ch = 0; ch < chunks; ch++) {
            int64_t a = lo + ch * INDEX_CHUNK, b = a + INDEX_CHUNK < hi ? a + INDEX_CHUNK : hi;
            for (int64_t i = a; i < b && !te.set; i++) {
                int stop;
#pragma omp atomic read
                stop = failed;
                if (stop) break;
                if (fill(arg, i, px, &te) != 0) {
                    if (!te.set) err_set(&te, "%s: reading sample %lld failed", tmp, (long long)i);
                    break;
                }
                uint64_t off = L->off[SEC_RECORDS] + (uint64_t)i * L->rec_bytes;
                uint8_t *ent = ix + (i - a) * INDEX_ENTRY;
                put_u64(ent, off);
                put_u32(ent + 8, (uint32_t)L->rec_bytes);
                put_u32(ent + 12, crc32_update(0, px, (size_t)L->rec_bytes));
                if (pwrite_all(fd, px, (size_t)L->rec_bytes, off) != 0)
                    err_set(&te, "write to %s failed at offset %llu: %s", tmp,
                            (unsigned long long)off, strerror(errno));
            }
            if (!te.set && pwrite_all(fd, ix, (size_t)(b - a) * INDEX_ENTRY,
                                      L->off[SEC_INDEX] + (uint64_t)a * INDEX_ENTRY) != 0)
                err_set(&te, "write to %s failed (index): %s", tmp, strerror(errno));
            if (te.set) {
#pragma omp atomic write
                failed = 1;
            }
        }
#pragma omp critical(pack_write_err)
        if (te.set && !e->set) *e = te;
        free(px);
        free(ix);
    }
    return failed || e->set ? -1 : 0;
}

/* Rank 0, once every rank's samples are on disk: class names, labels, the CRC of the index the
 * ranks wrote (read back through a fresh descriptor: NFS's close-to-open consistency), the header
 * last, then fsync. */
static int write_tables(int fd, const char *tmp, const PackMeta *m, const Layout *L, uint8_t *hd,
                        Err *e) {
    uint8_t *names = xmalloc((size_t)L->len[SEC_CLASSES] + 1);
    uint64_t pos = 0;
    for (int k = 0; k < m->n_classes; k++) {
        size_t len = strlen(m->class_names[k]) + 1;
        memcpy(names + pos, m->class_names[k], len);
        pos += len;
    }
    uint32_t crc[N_SECTIONS] = {crc32_update(0, names, (size_t)pos),
                                crc32_update(0, m->labels, (size_t)L->len[SEC_LABELS]), 0, 0};
    int rc = pwrite_all(fd, names, (size_t)pos, L->off[SEC_CLASSES]) ||
             pwrite_all(fd, m->labels, (size_t)L->len[SEC_LABELS], L->off[SEC_LABELS]);
    free(names);
    int rfd = rc ? -1 : open(tmp, O_RDONLY | O_CLOEXEC);
    if (rfd >= 0) {
        uint8_t buf[1 << 16];
        for (uint64_t o = 0; o < L->len[SEC_INDEX] && !rc; o += sizeof buf) {
            size_t k = L->len[SEC_INDEX] - o < sizeof buf ? (size_t)(L->len[SEC_INDEX] - o)
                                                          : sizeof buf;
            rc = pread_all(rfd, buf, k, L->off[SEC_INDEX] + o);
            crc[SEC_INDEX] = crc32_update(crc[SEC_INDEX], buf, k);
        }
        close(rfd);
    }
    if (rc || rfd < 0) {
        err_set(e, "writing the tables of %s failed: %s", tmp, strerror(errno));
        return -1;
    }
    for (int s = 0; s < N_SECTIONS; s++) {
        uint8_t *ent = hd + OFF_SECTIONS + SECTION_BYTES * s;
        memcpy(ent, SECTION_NAMES[s], strlen(SECTION_NAMES[s]));
        put_u64(ent + 8, L->off[s]);
        put_u64(ent + 16, L->len[s]);
        put_u32(ent + 24, crc[s]);
    }
    put_u32(hd + OFF_HEADER_CRC, crc32_update(0, hd, OFF_HEADER_CRC));
    if (pwrite_all(fd, hd, PACK_HEADER_BYTES, 0) != 0 || fsync(fd) != 0) {
        err_set(e, "writing the header of %s failed: %s", tmp, strerror(errno));
        return -1;
    }
    return 0;
}

static void header_fill(uint8_t *hd, const PackMeta *m, const Layout *L) {
    memset(hd, 0, PACK_HEADER_BYTES);
    memcpy(hd, MAGIC, 8);
    put_u32(hd + OFF_VERSION, PACK_VERSION);
    put_u32(hd + OFF_HEADER_BYTES, PACK_HEADER_BYTES);
    put_u64(hd + OFF_N, (uint64_t)m->n);
    put_u32(hd + OFF_H, (uint32_t)m->h);
    put_u32(hd + OFF_W, (uint32_t)m->w);
    put_u32(hd + OFF_C, (uint32_t)m->c);
    put_u32(hd + OFF_N_CLASSES, (uint32_t)m->n_classes);
    put_u64(hd + OFF_FINGERPRINT, m->fingerprint);
    put_u32(hd + OFF_ENCODING, ENCODING_RAW);
    put_u64(hd + OFF_RECORD_BYTES, L->rec_bytes);
    put_u64(hd + OFF_FILE_SIZE, L->file_size);
}

static void fsync_dir(const char *path) {
    char *dcopy = xstrdup(path);
    int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dcopy);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}

int pack_write(const char *path, const PackMeta *m, PackReadFn fill, void *arg, Dist *dist,
               Err *e) {
    int rank = dist ? dist->rank : 0, size = dist ? dist->size : 1;
    /* the same checks on every rank, from the same metadata: the same verdict without talking */
    if (check_meta(path, m, e)) return -1;
    uint64_t names_len = 0;
    for (int k = 0; k < m->n_classes; k++) names_len += strlen(m->class_names[k]) + 1;
    Layout L;
    layout_plan(&L, m->n, (uint64_t)m->h * (uint64_t)m->w * (uint64_t)m->c, names_len);
    size_t tlen = strlen(path) + 8;
    char *tmp = xmalloc(tlen);
    snprintf(tmp, tlen, "%s.tmp", path);
    struct sigaction old[3];
    int fd = -1;
    if (rank == 0) {
        fd = temp_create(tmp, L.file_size, e);
        if (fd >= 0) cleanup_arm(tmp, old);
    }
    int failed = agree(dist, rank == 0 && fd < 0);
    if (!failed && rank != 0) {
        fd = open(tmp, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            err_set(e,
                    "cannot open %s, rank 0's temp file: %s (the pack's folder must be one "
                    "that every rank sees)",
                    tmp, strerror(errno));
    }
    int64_t lo = m->n * rank / size, hi = m->n * (rank + 1) / size;
    if (!failed && fd >= 0 && write_range(fd, tmp, &L, lo, hi, fill, arg, e) == 0 && fsync(fd) != 0)
        err_set(e, "cannot flush %s: %s", tmp, strerror(errno));
    failed = agree(dist, failed || e->set);
    if (!failed && rank == 0) {
        uint8_t hd[PACK_HEADER_BYTES];
        header_fill(hd, m, &L);
        if (write_tables(fd, tmp, m, &L, hd, e) == 0 && rename(tmp, path) != 0)
            err_set(e, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        if (!e->set) fsync_dir(path);
    }
    failed = agree(dist, failed || e->set);
    if (rank == 0 && fd >= 0) {
        if (failed) unlink(tmp); /* rename failed or never happened: tmp is still the temp */
        cleanup_disarm(old);
    }
    if (fd >= 0) close(fd);
    if (failed && !e->set)
        err_set(e, "writing %s failed on another rank (its message is on its standard error)",
                path);
    free(tmp);
    return failed ? -1 : 0;
}

/* ---------------------------------------------------------------- reading */

/* The fixed header's checks, in the order that names the most specific fault: a foreign file,
 * another version, a damaged header, then the fields' own sense. */
static int check_header(const char *path, const uint8_t *hd, Err *e) {
    if (memcmp(hd, MAGIC, 8) != 0) {
        err_set(e, "%s: not a convnet-dist pack (bad magic at offset 0)", path);
        return -1;
    }
    uint32_t crc_file = get_u32(hd + OFF_HEADER_CRC), crc = crc32_update(0, hd, OFF_HEADER_CRC);
    uint32_t version = get_u32(hd + OFF_VERSION);
    if (version != PACK_VERSION) {
        err_set(e, "%s: pack format version %u at offset %d, this build reads version %u%s", path,
                version, OFF_VERSION, PACK_VERSION,
                crc == crc_file ? ": repack with this build (convnet-dist pack JOB)"
                                : " (and the header CRC does not match: maybe a corrupt header)");
        return -1;
    }
    if (crc != crc_file) {
        err_set(e,
                "%s: header corrupt (CRC-32 of bytes 0..%d: the file says %08x, the contents "
                "give %08x)",
                path, OFF_HEADER_CRC - 1, crc_file, crc);
        return -1;
    }
    uint64_t n = get_u64(hd + OFF_N);
    uint32_t h = get_u32(hd + OFF_H), w = get_u32(hd + OFF_W), c = get_u32(hd + OFF_C);
    uint32_t k = get_u32(hd + OFF_N_CLASSES), enc = get_u32(hd + OFF_ENCODING);
    if (get_u32(hd + OFF_HEADER_BYTES) != PACK_HEADER_BYTES || n > (uint64_t)MAX_SAMPLES || h < 1 ||
        h > MAX_SIDE || w < 1 || w > MAX_SIDE || (c != 1 && c != 3) || k < 1 || k > MAX_CLASSES ||
        enc != ENCODING_RAW || get_u64(hd + OFF_RECORD_BYTES) != (uint64_t)h * w * c ||
        (n > 0 && (uint64_t)h * w * c > (UINT64_MAX >> 2) / n)) { /* the layout must not wrap */
        err_set(e,
                "%s: implausible header: %llu samples of %ux%ux%u (record %llu bytes, encoding "
                "%u) in %u classes",
                path, (unsigned long long)n, h, w, c,
                (unsigned long long)get_u64(hd + OFF_RECORD_BYTES), enc, k);
        return -1;
    }
    return 0;
}

/* The section table must be the layout the header's fields imply: then every later read
 * through it stays inside the file. */
static int check_sections(const char *path, const uint8_t *hd, Layout *L, Err *e) {
    uint64_t names_len = get_u64(hd + OFF_SECTIONS + SECTION_BYTES * SEC_CLASSES + 16);
    if (names_len > (uint64_t)MAX_CLASSES * 4096) names_len = 0; /* refused just below */
    uint64_t n = get_u64(hd + OFF_N);
    layout_plan(L, (int64_t)n,
                (uint64_t)get_u32(hd + OFF_H) * get_u32(hd + OFF_W) * get_u32(hd + OFF_C),
                names_len);
    for (int s = 0; s < N_SECTIONS; s++) {
        const uint8_t *ent = hd + OFF_SECTIONS + SECTION_BYTES * s;
        char name[9] = {0};
        memcpy(name, ent, 8);
        if (strcmp(name, SECTION_NAMES[s]) != 0 || get_u64(ent + 8) != L->off[s] ||
            get_u64(ent + 16) != L->len[s] || L->len[SEC_CLASSES] == 0) {
            err_set(e,
                    "%s: section %d (table entry at offset %d) is not the layout its header "
                    "implies",
                    path, s, OFF_SECTIONS + SECTION_BYTES * s);
            return -1;
        }
    }
    if (get_u64(hd + OFF_FILE_SIZE) != L->file_size) {
        err_set(e, "%s: the header's file size (offset %d) is not its layout's", path,
                OFF_FILE_SIZE);
        return -1;
    }
    return 0;
}

static uint32_t section_crc(const uint8_t *hd, int s) {
    return get_u32(hd + OFF_SECTIONS + SECTION_BYTES * s + 24);
}

/* Labels, class names and index against their CRCs, labels in range, names well formed: the
 * O(n) part of opening, 20 bytes a sample; the records are not touched. */
static int check_tables(Pack *p, const uint8_t *hd, const Layout *L, Err *e) {
    for (int s = SEC_CLASSES; s <= SEC_INDEX; s++) {
        uint32_t crc = crc32_update(0, p->map + L->off[s], (size_t)L->len[s]);
        if (crc != section_crc(hd, s)) {
            err_set(e,
                    "%s: %s section corrupt (CRC-32 of bytes %llu..%llu: the header says %08x, "
                    "the contents give %08x)",
                    p->path, SECTION_NAMES[s], (unsigned long long)L->off[s],
                    (unsigned long long)(L->off[s] + L->len[s] - (L->len[s] > 0)),
                    section_crc(hd, s), crc);
            return -1;
        }
    }
    const char *names = (const char *)p->map + L->off[SEC_CLASSES];
    size_t len = (size_t)L->len[SEC_CLASSES], pos = 0;
    p->class_names = xcalloc((size_t)p->n_classes, sizeof *p->class_names);
    for (int k = 0; k < p->n_classes; k++) {
        const char *z = pos < len ? memchr(names + pos, 0, len - pos) : NULL;
        if (!z || z == names + pos) {
            err_set(e, "%s: class name %d missing or empty in the classes section", p->path, k);
            return -1;
        }
        p->class_names[k] = xstrdup(names + pos);
        pos = (size_t)(z - names) + 1;
    }
    if (pos != len) {
        err_set(e, "%s: %zu bytes after the %d class names", p->path, len - pos, p->n_classes);
        return -1;
    }
    for (int64_t i = 0; i < p->n; i++)
        if (p->labels[i] < 0 || p->labels[i] >= p->n_classes) {
            err_set(e, "%s: sample %lld has label %d, outside [0, %d)", p->path, (long long)i,
                    (int)p->labels[i], p->n_classes);
            return -1;
        }
    return 0;
}

static int expect_matches(const Pack *p, int eh, int ew, int ec, uint64_t efp, Err *e) {
    if ((eh && eh != p->h) || (ew && ew != p->w) || (ec && ec != p->c)) {
        err_set(e,
                "%s: a pack of %dx%dx%d images, the job wants %dx%dx%d: repack it with "
                "convnet-dist pack JOB",
                p->path, p->h, p->w, p->c, eh ? eh : p->h, ew ? ew : p->w, ec ? ec : p->c);
        return -1;
    }
    if (efp && efp != p->fingerprint) {
        err_set(e,
                "%s: stale pack: its source folder or the job's image settings changed since "
                "it was written (fingerprint %016llx, now %016llx): run convnet-dist pack JOB "
                "to repack",
                p->path, (unsigned long long)p->fingerprint, (unsigned long long)efp);
        return -1;
    }
    return 0;
}

int pack_open(Pack *p, const char *path, int expect_h, int expect_w, int expect_c,
              uint64_t expect_fingerprint, Err *e) {
    memset(p, 0, sizeof *p);
    long long fsize = 0;
    FILE *f = file_open_regular(path, "pack", &fsize, e);
    if (!f) return -1;
    uint8_t hd[PACK_HEADER_BYTES];
    size_t got = fread(hd, 1, sizeof hd, f);
    int fd = dup(fileno(f));
    fclose(f);
    Layout L;
    int rc = -1;
    if (got < sizeof hd) {
        if (got >= 8 && memcmp(hd, MAGIC, 8) != 0)
            err_set(e, "%s: not a convnet-dist pack (bad magic at offset 0)", path);
        else
            err_set(e, "%s: truncated: %lld bytes, less than the %u-byte header", path, fsize,
                    PACK_HEADER_BYTES);
    } else if (check_header(path, hd, e) == 0 && check_sections(path, hd, &L, e) == 0) {
        if ((uint64_t)fsize != L.file_size)
            err_set(e,
                    "%s: %s: %lld bytes, the header declares %llu (%llu samples of %llu "
                    "bytes): repack it with convnet-dist pack JOB",
                    path, (uint64_t)fsize < L.file_size ? "truncated" : "trailing bytes", fsize,
                    (unsigned long long)L.file_size, (unsigned long long)get_u64(hd + OFF_N),
                    (unsigned long long)L.rec_bytes);
        else
            rc = 0;
    }
    if (rc == 0) {
        p->path = xstrdup(path);
        p->n = (int64_t)get_u64(hd + OFF_N);
        p->h = (int)get_u32(hd + OFF_H);
        p->w = (int)get_u32(hd + OFF_W);
        p->c = (int)get_u32(hd + OFF_C);
        p->n_classes = (int)get_u32(hd + OFF_N_CLASSES);
        p->fingerprint = get_u64(hd + OFF_FINGERPRINT);
        rc = expect_matches(p, expect_h, expect_w, expect_c, expect_fingerprint, e);
    }
    if (rc == 0) {
        void *map = fd < 0 ? MAP_FAILED
                           : mmap(NULL, (size_t)L.file_size, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            err_set(e, "%s: cannot map %llu bytes: %s", path, (unsigned long long)L.file_size,
                    strerror(errno));
            rc = -1;
        } else {
            p->map = map;
            p->map_size = (size_t)L.file_size;
            p->labels = (const int32_t *)(p->map + L.off[SEC_LABELS]);
            p->index = p->map + L.off[SEC_INDEX];
            p->rec_off = L.off[SEC_RECORDS];
            p->rec_bytes = L.rec_bytes;
            rc = check_tables(p, hd, &L, e);
        }
    }
    if (fd >= 0) close(fd); /* the mapping keeps the file */
    if (rc) pack_close(p);
    return rc;
}

const uint8_t *pack_record(const Pack *p, int64_t i, Err *e) {
    if (i < 0 || i >= p->n) {
        err_set(e, "%s: sample %lld out of range [0, %lld)", p->path, (long long)i,
                (long long)p->n);
        return NULL;
    }
    const uint8_t *ent = p->index + (uint64_t)i * INDEX_ENTRY;
    uint64_t off = p->rec_off + (uint64_t)i * p->rec_bytes;
    if (get_u64(ent) != off || get_u32(ent + 8) != p->rec_bytes) {
        err_set(e,
                "%s: sample %lld: index entry at offset %llu corrupt (record at %llu of %u "
                "bytes, expected %llu of %llu)",
                p->path, (long long)i, (unsigned long long)(ent - p->map),
                (unsigned long long)get_u64(ent), get_u32(ent + 8), (unsigned long long)off,
                (unsigned long long)p->rec_bytes);
        return NULL;
    }
    const uint8_t *rec = p->map + off;
    uint32_t crc = crc32_update(0, rec, (size_t)p->rec_bytes);
    if (crc != get_u32(ent + 12)) {
        err_set(e,
                "%s: sample %lld corrupt (record at offset %llu, %llu bytes: CRC-32 %08x, the "
                "index says %08x): repack it with convnet-dist pack JOB",
                p->path, (long long)i, (unsigned long long)off, (unsigned long long)p->rec_bytes,
                crc, get_u32(ent + 12));
        return NULL;
    }
    return rec;
}

void pack_close(Pack *p) {
    if (p->map) munmap((void *)p->map, p->map_size);
    if (p->class_names)
        for (int k = 0; k < p->n_classes; k++) free(p->class_names[k]);
    free(p->class_names);
    free(p->path);
    memset(p, 0, sizeof *p);
}
