/* stop.c: the stop flag and the SIGTERM/SIGUSR1 handlers that set it (see stop.h). The
 * trainer's step (train.c) reads the flag; the epoch loop (fit.c) acts on the stop the ranks
 * agreed on. */
#include "stop.h"

#include <signal.h>
#include <string.h>

/* A signal handler can only talk to the program through a global; every rank reads it once per
 * step and the ranks agree through the step's loss allreduce. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) { stop_signal = sig; }

void stop_install_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

int stop_requested(void) { return stop_signal != 0; }
