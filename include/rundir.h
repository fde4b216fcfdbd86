/* rundir.h: the default checkpoint location (the run directory) and its life cycle.
 *
 * A job whose [checkpoint] path is absent (or `auto`) checkpoints into a run directory named
 * after the job: $CONVNET_RUNS/<job name>/checkpoint, $CONVNET_RUNS defaulting to `runs`
 * (relative to the working directory of rank 0). `path = off` (or CONVNET_RUNS=off for the
 * default) turns checkpoints off; any other path is used as given. Like Keras's
 * BackupAndRestore, the run directory's checkpoint only serves to resume an interrupted run:
 * it is removed when the run finishes, so running the job again starts afresh.
 */
#ifndef CONVNET_RUNDIR_H
#define CONVNET_RUNDIR_H

#include "job.h"

/* After job_load has resolved [checkpoint] and the job's name: turn path `auto` into the run
 * directory's checkpoint (ckpt.in_run_dir = 1) and `off` into "" (no checkpoints). Creates
 * nothing. 0, or -1 with e set (a name that cannot make a path). */
int rundir_resolve(Job *j, Err *e);

/* Rank 0, before writing a checkpoint: create the checkpoint's directory (and its parents)
 * when it is the run directory. 0, or -1 with e set. */
int rundir_prepare(const Job *j, Err *e);

/* Rank 0: remove the run directory if it is empty (nothing written into it yet), so that a
 * run that stops before its first checkpoint leaves no empty runs/<name>/ behind. */
void rundir_remove_empty(const Job *j);

/* One line for the start-up printout: where checkpoints go, or that they are off. */
void rundir_print(const Job *j, FILE *f);

/* Rank 0, after a run that finished: remove the run directory's checkpoint files (path,
 * path.1, ...) and the directory when it is then empty. Explicit paths are left alone. */
void rundir_finish(const Job *j, FILE *f);

#endif
