/* stop.h: stop requests by signal. SIGTERM and SIGUSR1 (Slurm's warning before a time limit or
 * preemption) set a flag instead of killing the process; the trainer reads it once per step and
 * stops at the next step boundary of trainer_fit (a checkpoint, then exit 3).
 */
#ifndef CONVNET_STOP_H
#define CONVNET_STOP_H

/* Catch SIGTERM and SIGUSR1 from now on. `train` installs them first thing, before MPI_Init
 * (Open MPI leaves these two signals alone): a signal during start-up (MPI, data, planning,
 * algorithm timing: 20 s for the mini-Xception here) killed the run with status 138, and Slurm
 * then marked the job FAILED instead of requeueing it. */
void stop_install_handlers(void);

/* Whether SIGTERM or SIGUSR1 has arrived since stop_install_handlers. */
int stop_requested(void);

#endif
