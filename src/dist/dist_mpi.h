/* dist_mpi.h: what dist_mpi.c and watchdog.c share (private; MPI builds only): the MPI error
 * check and the watchdog's entry points. */
#ifndef CONVNET_DIST_MPI_H
#define CONVNET_DIST_MPI_H

#include <mpi.h>

#include "dist/dist_impl.h"

/* An MPI call that fails aborts the job with its message (dist.h). */
#define MPI_CHECK(call)                                                                          \
    do {                                                                                         \
        int mpi_rc_ = (call);                                                                    \
        if (mpi_rc_ != MPI_SUCCESS) {                                                            \
            char mpi_msg_[MPI_MAX_ERROR_STRING];                                                 \
            int mpi_len_ = 0;                                                                    \
            MPI_Error_string(mpi_rc_, mpi_msg_, &mpi_len_);                                      \
            fprintf(stderr, "convnet-dist: %s failed at %s:%d: %s\n", #call, __FILE__, __LINE__, \
                    mpi_msg_);                                                                   \
            MPI_Abort(MPI_COMM_WORLD, EXIT_RUNTIME);                                             \
        }                                                                                        \
    } while (0)

/* Complete every request of reqs[n], or fire the watchdog when none completes for too long.
 * done_at (NULL: not wanted): done_at[i] = now_seconds() when reqs[i] is seen complete. */
void watch_wait(Dist *d, MPI_Request *reqs, int n, const char *what, double *done_at);
/* Settle the watchdog's messages and free it (dist_finalize, before MPI_Finalize). */
void watch_free(Dist *d);

#endif
