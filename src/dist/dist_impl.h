/* dist_impl.h: what the dist/ files share behind include/dist.h (private to src/dist/). The
 * build picks one variant (the Makefile's MPI=1 or 0): dist_mpi.c + watchdog.c over Open MPI, or
 * dist_local.c, the single-process stand-in; dist_common.c serves both. */
#ifndef CONVNET_DIST_IMPL_H
#define CONVNET_DIST_IMPL_H

#include "dist.h"

/* Every rank's `bytes` bytes of mine, in rank order, into all (size x bytes). */
void dist_allgather_bytes(Dist *d, const void *mine, void *all, size_t bytes);

#endif
