/* dist.c: see dist.h. */
#include "dist.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef LC_MPI
#include <mpi.h>
#endif

int lc_dist_available(void) {
#ifdef LC_MPI
    return 1;
#else
    return 0;
#endif
}

/* Started by a launcher: Open MPI's mpirun, PMIx or PMI (srun, MPICH). */
static int under_launcher(void) {
    const char *keys[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK", NULL};
    for (int i = 0; keys[i]; i++)
        if (getenv(keys[i])) return 1;
    return 0;
}

int lc_dist_init(lc_dist *d, int *argc, char ***argv, lc_err *err) {
    memset(d, 0, sizeof *d);
    d->size = 1;
#ifdef LC_MPI
    if (!under_launcher()) return LC_OK;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return lc_errf(err, "MPI_Init failed");
    d->mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
#else
    (void)argc, (void)argv;
    const char *n = getenv("OMPI_COMM_WORLD_SIZE") ? getenv("OMPI_COMM_WORLD_SIZE") : getenv("PMI_SIZE");
    if (under_launcher() && n && atoi(n) > 1)
        return lc_errf(err, "started by an MPI launcher with %s ranks, but this build has no MPI "
                       "(install libopenmpi-dev and rebuild with -DLC_MPI=ON)", n);
#endif
    return LC_OK;
}

void lc_dist_finalize(lc_dist *d) {
#ifdef LC_MPI
    if (d->mpi) MPI_Finalize();
#endif
    d->mpi = 0;
}

void lc_dist_abort(const lc_dist *d, int code) {
#ifdef LC_MPI
    if (d && d->mpi && d->size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    (void)d;
    exit(code);
}

#ifdef LC_MPI
static int mpi_fail(lc_err *err, const char *what, int rc) {
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(rc, s, &n);
    return lc_errf(err, "%s failed: %.*s", what, n, s);
}
#define ACTIVE(d) ((d) && (d)->mpi && (d)->size > 1)
#endif

int lc_dist_barrier(const lc_dist *d, lc_err *err) {
#ifdef LC_MPI
    if (ACTIVE(d)) {
        int rc = MPI_Barrier(MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(err, "MPI_Barrier", rc);
    }
#endif
    (void)d, (void)err;
    return LC_OK;
}

int lc_dist_bcast(const lc_dist *d, void *buf, size_t bytes, int root, lc_err *err) {
#ifdef LC_MPI
    if (ACTIVE(d)) {
        for (size_t off = 0; off < bytes;) { /* counts are int */
            size_t n = bytes - off > (size_t)INT_MAX ? (size_t)INT_MAX : bytes - off;
            int rc = MPI_Bcast((char *)buf + off, (int)n, MPI_BYTE, root, MPI_COMM_WORLD);
            if (rc != MPI_SUCCESS) return mpi_fail(err, "MPI_Bcast", rc);
            off += n;
        }
    }
#endif
    (void)d, (void)buf, (void)bytes, (void)root, (void)err;
    return LC_OK;
}

int lc_dist_allgather_f32(const lc_dist *d, const float *mine, size_t n, float *all, lc_err *err) {
#ifdef LC_MPI
    if (ACTIVE(d)) {
        if (n > (size_t)INT_MAX)
            return lc_errf(err, "all-gather of %zu floats per rank: more than MPI's int count", n);
        int rc = MPI_Allgather(mine, (int)n, MPI_FLOAT, all, (int)n, MPI_FLOAT, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(err, "MPI_Allgather", rc);
        return LC_OK;
    }
#endif
    (void)d, (void)err;
    if (all != mine) memcpy(all, mine, sizeof(float) * n);
    return LC_OK;
}

int lc_dist_allreduce_sum_f64(const lc_dist *d, double *x, size_t n, lc_err *err) {
#ifdef LC_MPI
    if (ACTIVE(d)) {
        if (n > (size_t)INT_MAX) return lc_errf(err, "all-reduce of %zu doubles: more than MPI's int count", n);
        int rc = MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(err, "MPI_Allreduce", rc);
    }
#endif
    (void)d, (void)x, (void)n, (void)err;
    return LC_OK;
}

int lc_dist_gather_bytes(const lc_dist *d, const void *mine, size_t n, int root, char **all,
                         size_t *all_n, lc_err *err) {
    *all = NULL;
    *all_n = 0;
#ifdef LC_MPI
    if (ACTIVE(d)) {
        if (n > (size_t)INT_MAX) return lc_errf(err, "gather of %zu bytes from one rank: more than MPI's int count", n);
        int mine_n = (int)n, *counts = NULL, *displs = NULL, rc;
        char *buf = NULL;
        if (d->rank == root) {
            counts = calloc((size_t)d->size, sizeof(int));
            displs = calloc((size_t)d->size, sizeof(int));
            if (!counts || !displs) {
                free(counts), free(displs);
                return lc_errf(err, "out of memory");
            }
        }
        rc = MPI_Gather(&mine_n, 1, MPI_INT, counts, 1, MPI_INT, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) {
            free(counts), free(displs);
            return mpi_fail(err, "MPI_Gather", rc);
        }
        if (d->rank == root) {
            long long tot = 0;
            for (int r = 0; r < d->size; r++) displs[r] = (int)tot, tot += counts[r];
            if (tot > INT_MAX) {
                free(counts), free(displs);
                return lc_errf(err, "gather of %lld bytes: more than MPI's int count", tot);
            }
            buf = malloc((size_t)tot + 1);
            if (!buf) {
                free(counts), free(displs);
                return lc_errf(err, "out of memory gathering %lld bytes", tot);
            }
            *all_n = (size_t)tot;
        }
        rc = MPI_Gatherv(mine, mine_n, MPI_BYTE, buf, counts, displs, MPI_BYTE, root, MPI_COMM_WORLD);
        free(counts), free(displs);
        if (rc != MPI_SUCCESS) {
            free(buf);
            *all_n = 0;
            return mpi_fail(err, "MPI_Gatherv", rc);
        }
        *all = buf;
        return LC_OK;
    }
#endif
    (void)d, (void)root;
    char *buf = malloc(n + 1);
    if (!buf) return lc_errf(err, "out of memory");
    if (n) memcpy(buf, mine, n);
    *all = buf;
    *all_n = n;
    return LC_OK;
}

int lc_dist_any(const lc_dist *d, int fail, lc_err *err) {
    double f = fail ? 1 : 0;
    if (lc_dist_allreduce_sum_f64(d, &f, 1, err)) return 1;
    return f > 0;
}
