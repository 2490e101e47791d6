/* linalg_backend.h: the ScaLAPACK backend of src/linalg.h for `quantize --grid PxQ`: every rank of
 * a group holds the same replicated matrices (the group runs each method redundantly on the same
 * data), and the expensive factorizations run distributed on the group's grid:
 *   svd_truncated    -> qr_pdla_svd_truncated (randomized: PDGEMM + PDGEQRF; exact: PDGESVD)
 *   cholesky_damped  -> qr_pdla_cholesky_damped (blocked, the serial damping rule)
 *   tri_right        -> qr_pdla_tri_right (PDTRMM / PDTRSM: whitening and its inverse)
 * Inputs are distributed with qr_dmat_fill_local (no communication) and results come back
 * replicated on every rank of the group. Every call is collective over the group. */
#ifndef QR_MPI_LINALG_BACKEND_H
#define QR_MPI_LINALG_BACKEND_H

#include "mpi/blacs.h"
#include "src/linalg.h"

/* Fill b with the ScaLAPACK backend on grid g (g must outlive b). Not collective. */
void qr_scalapack_backend(qr_linalg_backend *b, const qr_grid *g);

#endif
