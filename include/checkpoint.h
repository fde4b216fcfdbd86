/* checkpoint.h: the training checkpoint: everything a killed run needs to resume exactly
 * (loop position, early-stopping state, partial-epoch sums, parameters, optimizer state),
 * independent of the rank count. Written by rank 0 only.
 *
 * Layout (little-endian, fixed-width, no padding bytes from any C struct):
 *
 *   offset  size  header
 *        0     8  magic "CNDCKPT1"
 *        8     4  u32 format version (CHECKPOINT_VERSION)
 *       12     4  u32 section count (4)
 *       16   128  section table, 4 entries of 32 bytes, in file order:
 *                   8  name, NUL-padded: "state", "params", "opt_s1", "opt_s2"
 *                   8  u64 offset of the section from the start of the file
 *                   8  u64 length in bytes
 *                   4  u32 CRC-32 of the section's bytes
 *                   4  u32 reserved, 0
 *      144     4  u32 CRC-32 of bytes 0..143 (the header CRC)
 *      148        sections, contiguous, in table order; the file ends right after the last
 *
 *   section "state" (CHECKPOINT_STATE_BYTES = 128 bytes; 104 in version 1, which ends at
 *   n_opt: version 1 files still load, with the fields from offset 104 zero):
 *        0  u64 job_hash            8  u64 structure_hash
 *       16  i32 epoch              20  i32 phase
 *       24  i64 step               32  i64 global_step
 *       40  f64 best (NaN = none)  48  i32 best_epoch      52  i32 epochs_since_best
 *       56  f64 epoch_loss_sum     64  f64 epoch_correct   72  f64 epoch_seen
 *       80  i64 opt_iterations     88  u64 n_params        96  u64 n_opt
 *      104  f64 plateau_lr (0 = ReduceLROnPlateau not started)  112  f64 plateau_best
 *      120  i32 plateau_wait      124  i32 plateau_cooldown
 *   section "params": n_params float32; "opt_s1", "opt_s2": n_opt float32 each.
 *
 * Crash safety: checkpoint_save writes through file_write_atomic (temp file "PATH.tmp.PID",
 * fsync, rename, directory fsync), so PATH always holds either the previous or the new
 * complete checkpoint. A writer killed mid-write leaves its PATH.tmp.PID behind; loading only
 * ever opens PATH itself, so a temp file is never mistaken for a checkpoint, and the caller
 * may delete such leftovers.
 */
#ifndef CONVNET_CHECKPOINT_H
#define CONVNET_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define CHECKPOINT_VERSION 2u
#define CHECKPOINT_HEADER_BYTES 148u
#define CHECKPOINT_STATE_BYTES 128u
#define CHECKPOINT_STATE_BYTES_V1 104u

typedef struct {
    uint64_t job_hash;         /* hash of the resolved job (model + training settings) */
    uint64_t structure_hash;   /* model_structure_hash(model) from weights.h */
    int32_t epoch;             /* 0-based epoch to continue in */
    int64_t step;              /* optimizer steps already done in that epoch */
    int64_t global_step;       /* steps done since the start of training */
    int32_t phase;             /* fine-tuning phase index (0 when the job has none) */
    double best;               /* best monitored value so far, NAN when none yet */
    int32_t best_epoch;        /* epoch of best (-1 none) */
    int32_t epochs_since_best; /* early-stopping patience counter */
    double epoch_loss_sum, epoch_correct, epoch_seen; /* running sums of the partial epoch */
    int64_t opt_iterations;          /* Optimizer.iterations (the step a schedule reads) */
    double plateau_lr, plateau_best; /* ReduceLROnPlateau's state (callbacks.h) */
    int32_t plateau_wait, plateau_cooldown;
} CheckpointState;

/* Write the checkpoint atomically. opt_s1/opt_s2 may be NULL only when n_opt == 0.
 * 0, or -1 with e set (the previous file at path, if any, is untouched). */
int checkpoint_save(const char *path, const CheckpointState *st, const float *params,
                    size_t n_params, const float *opt_s1, const float *opt_s2, size_t n_opt,
                    Err *e);

/* Read and validate everything (magic, version, header CRC, section table against the file
 * length, every section CRC, sizes against n_params / n_opt, and the job / structure hashes
 * when the expected values are non-zero) into temporary buffers; only then copy into st,
 * params, opt_s1, opt_s2. On any error nothing of the destinations is written.
 * 0, or -1 with e naming the file and what is wrong. */
int checkpoint_load(const char *path, CheckpointState *st, float *params, size_t n_params,
                    float *opt_s1, float *opt_s2, size_t n_opt, uint64_t expect_job_hash,
                    uint64_t expect_structure_hash, Err *e);

/* Call before checkpoint_save(path) to keep the last `keep` checkpoints: path (the newest),
 * path.1, ..., path.(keep-1). Shifts path.(keep-2) -> path.(keep-1), ..., path.1 -> path.2 by
 * rename, then hard-links path to path.1 (through a temp name and a rename), so path itself
 * is never absent: at every instant of rotate + save, path holds a complete checkpoint
 * (the old one until the save's rename, then the new one). Removes path.keep, path.(keep+1),
 * ... left over from a run with a larger keep. Where hard links are not supported the old
 * file is copied instead (also atomically). keep <= 1: only the leftovers are removed.
 * 0, or -1 with e set. A missing path (first checkpoint) is not an error. */
int checkpoint_rotate(const char *path, int keep, Err *e);

/* checkpoint_load on path, then path.1, ... path.(keep-1) until one passes: for a resume
 * that survives a damaged newest file. *which receives the index used (0 = path). On
 * failure of all, e holds path's error. Messages about skipped files go to `log` (or
 * nowhere when NULL). */
int checkpoint_load_newest(const char *path, int keep, CheckpointState *st, float *params,
                           size_t n_params, float *opt_s1, float *opt_s2, size_t n_opt,
                           uint64_t expect_job_hash, uint64_t expect_structure_hash, int *which,
                           FILE *log, Err *e);

#endif
