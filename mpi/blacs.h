/* blacs.h: BLACS process grids for rank groups, and block-cyclic distributed matrices.
 *
 * `--grid PxQ` splits the job's communicator into groups of P*Q consecutive ranks; each group is
 * one P x Q BLACS grid (row-major: group rank = myrow * Q + mycol) that cooperates on one module at
 * a time through ScaLAPACK (mpi/pdla.h). A distributed matrix (qr_dmat) is the logical matrix A (m,
 * n) in ScaLAPACK's 2-D block-cyclic layout with square nb x nb blocks, first block on grid process
 * (0, 0); each rank holds its local part column-major. The rest of qrecon keeps matrices row-major:
 * scatter/gather convert between a row-major matrix on the group's root (group rank 0) and the
 * distributed layout. */
#ifndef QR_MPI_BLACS_H
#define QR_MPI_BLACS_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mpi/scalapack_decl.h"
#include "src/status.h"

/* Default block size: large enough for level-3 BLAS efficiency in the local updates, small enough
 * to balance a 4096-wide matrix over a handful of process rows/columns. */
#define QR_GRID_DEFAULT_NB 64

/* Columns copied together when a column-major local part is copied to or from row-major rows:
 * one cache line of doubles per row, read from QR_TILE contiguous columns. */
#define QR_TILE 8

/* One rank's view of its group's grid. Plain data: read the fields, do not modify them. */
typedef struct {
    MPI_Comm comm;  /* the group: P*Q consecutive ranks of the split communicator (owned) */
    int group;      /* this group's index: (rank in the split communicator) / (P*Q) */
    int n_groups;   /* size of the split communicator / (P*Q) */
    int group_rank; /* rank in comm == myrow * npcol + mycol */
    int nprow;      /* P */
    int npcol;      /* Q */
    int myrow;      /* this rank's grid row, 0..P-1 */
    int mycol;      /* this rank's grid column, 0..Q-1 */
    int nb;         /* square block size */
    int ctxt;       /* BLACS context of the grid */
    int sys_handle; /* BLACS system handle made from comm */
    MPI_Comm row;   /* this rank's process row (rank = mycol) (owned) */
    MPI_Comm col;   /* this rank's process column (rank = myrow) (owned) */
} qr_grid;

/* Collective over `world`: split it into groups of p*q consecutive ranks and make each group's
 * p x q grid with block size nb (0 = QR_GRID_DEFAULT_NB). QR_ERR_INPUT when the size of `world` is
 * not divisible by p*q (naming both). Every rank gets its own group's grid in *out. */
qr_status qr_grid_create(MPI_Comm world, int p, int q, int nb, qr_grid **out);

/* Collective over the grid's group: release the BLACS context and the communicator. NULL-safe,
 * clears the pointer. */
void qr_grid_free(qr_grid **g);

/* Release BLACS' internal buffers; call once after the last qr_grid_free, before MPI_Finalize. */
void qr_blacs_shutdown(void);

/* A distributed matrix: the logical A (m, n), block-cyclic over a grid. */
typedef struct {
    int64_t m, n;          /* global shape */
    int mloc, nloc;        /* this rank's local shape (numroc) */
    int desc[QR_DESC_LEN]; /* ScaLAPACK descriptor; leading dimension max(1, mloc) */
    double *data;          /* (mloc, nloc) column-major local part, owned */
} qr_dmat;

/* Not collective (no communication), but every rank of the group must make the same call. A zeroed
 * (m, n) distributed matrix on grid g; QR_ERR_INPUT when a size does not fit a ScaLAPACK int. */
qr_status qr_dmat_create(const qr_grid *g, int64_t m, int64_t n, qr_dmat **out);
void qr_dmat_free(qr_dmat **a); /* NULL-safe, clears the pointer */

/* Leading dimension of a's local part (column-major). */
static inline size_t qr_dmat_lld(const qr_dmat *a)
{
    return (size_t)a->desc[QR_DESC_LLD];
}

/* Elements of a's local part as stored (leading dimension times local columns). */
size_t qr_dmat_local_count(const qr_dmat *a);

/* Sum of squares of a's local part (of a - b when b is given, b laid out as a); not collective. */
double qr_dmat_local_sumsq(const qr_dmat *a, const qr_dmat *b);

/* Block-cyclic bookkeeping for blocks of nb over nprocs processes: the local extent of n indices
 * on process iproc (numroc), and the global index of local index l there. Not collective. */
int qr_dmat_extent(int64_t n, int nb, int iproc, int nprocs);
int64_t qr_dmat_global_index(int l, int nb, int iproc, int nprocs);

/* Global row / column of local row li / local column lj on this rank. */
int64_t qr_dmat_global_row(const qr_grid *g, int li);
int64_t qr_dmat_global_col(const qr_grid *g, int lj);

/* Local rows [r0, r0 + nr) of d's local part to or from row-major rows (nr, d->nloc), QR_TILE
 * columns at a time. Not collective. */
void qr_dmat_rows_get(const qr_dmat *d, int64_t r0, int64_t nr, double *rows);
void qr_dmat_rows_put(qr_dmat *d, int64_t r0, int64_t nr, const double *rows);

/* The diagonal entry (j, j) of a (square-blocked) distributed matrix a when this rank holds it,
 * else NULL: O(1), where scanning the local part for it costs O(mloc nloc). */
double *qr_dmat_diag_entry(const qr_grid *g, const qr_dmat *a, int64_t j);

/* Collective over the group: distribute A (m, n) row-major, read on group rank 0 only (may be NULL
 * elsewhere), into d. */
qr_status qr_dmat_scatter(const qr_grid *g, const double *A, qr_dmat *d);

/* Collective over the group: collect d into A (m, n) row-major on group rank 0 (A may be NULL
 * elsewhere). */
qr_status qr_dmat_gather(const qr_grid *g, const qr_dmat *d, double *A);

/* Collective over the group: collect d into A (m, n) row-major on every rank of the group. */
qr_status qr_dmat_allgather(const qr_grid *g, const qr_dmat *d, double *A);

/* Not collective: fill this rank's part of d from A (m, n) row-major that every rank holds whole
 * (e.g. a matrix generated identically from a seed on every rank). */
void qr_dmat_fill_local(const qr_grid *g, qr_dmat *d, const double *A);

#endif
