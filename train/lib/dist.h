/* dist.h: data parallelism over processes (MPI), optional in the build.
 *
 * Built with MPI (CMake option LC_MPI) and started by mpirun / srun (the
 * launcher's environment says so), lc_dist_init joins MPI_COMM_WORLD;
 * otherwise, or in a build without MPI, it is one process: rank 0 of 1, and
 * every call below is the one-process identity. Only train/ and
 * calibrate/ use this; the device runtime never links MPI.
 *
 * Bit-exactness: the gradient of a step is a sum over work units (micro-
 * batch x sub-batch, trainer.c). Each unit's gradient is computed alone,
 * from zero, whichever rank computes it; lc_dist_allgather_f32 brings every
 * unit's buffer to every rank and each rank adds them in unit order, as
 * one process does. Costs: every rank receives all U unit buffers of P
 * floats (U*P*4 bytes per step), against ~2*P*4 for a ring all-reduce
 * whose summation order depends on the number of ranks. */
#ifndef LC_DIST_H
#define LC_DIST_H

#include <stddef.h>

#include "lc_err.h"

typedef struct {
    int rank, size;
    int mpi; /* MPI_Init was called (finalize it) */
} lc_dist;

/* One process unless started by an MPI launcher in an MPI build. */
int lc_dist_init(lc_dist *d, int *argc, char ***argv, lc_err *err);
void lc_dist_finalize(lc_dist *d);
/* Ends every rank of the job with `code` (MPI_Abort); one process: exit. */
void lc_dist_abort(const lc_dist *d, int code) __attribute__((noreturn));
/* 1 if this build has MPI. */
int lc_dist_available(void);

int lc_dist_barrier(const lc_dist *d, lc_err *err);
/* buf (bytes) from `root` to every rank. */
int lc_dist_bcast(const lc_dist *d, void *buf, size_t bytes, int root, lc_err *err);
/* all (size * n) = every rank's mine (n), in rank order. */
int lc_dist_allgather_f32(const lc_dist *d, const float *mine, size_t n, float *all, lc_err *err);
/* Element-wise sum of x (n doubles) over the ranks, in place. Exact when at
 * most one rank holds a non-zero in each element (used so). */
int lc_dist_allreduce_sum_f64(const lc_dist *d, double *x, size_t n, lc_err *err);
/* Rank root gets every rank's bytes (mine, n), concatenated in rank order,
 * in *all (malloc'd, *all_n bytes); other ranks get *all NULL, *all_n 0. */
int lc_dist_gather_bytes(const lc_dist *d, const void *mine, size_t n, int root, char **all,
                         size_t *all_n, lc_err *err);
/* 1 on every rank if any rank passed fail != 0 (a collective check). */
int lc_dist_any(const lc_dist *d, int fail, lc_err *err);

/* NULL-tolerant accessors: a NULL handle is one process. */
static inline int lc_dist_rank(const lc_dist *d) { return d ? d->rank : 0; }
static inline int lc_dist_size(const lc_dist *d) { return d ? d->size : 1; }

#endif
