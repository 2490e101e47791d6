/* comm.h: communicator helpers: start-up, rank-0 printing, and collective agreement on a status.
 *
 * The rule (as in HPL): a rank that meets bad input does not exit alone. Every collective phase
 * starts with qr_mpi_agree(), so all ranks learn the same status and the same message and leave
 * together. */
#ifndef QR_MPI_COMM_H
#define QR_MPI_COMM_H

#include <mpi.h>

#include "src/status.h"

/* Collective over comm. Returns the status of the lowest-numbered rank whose local status is an
 * error, else of the lowest-numbered rank that stopped (QR_STOPPED), else QR_OK, and copies that
 * rank's message into every rank's qr_errmsg(). */
qr_status qr_mpi_agree(MPI_Comm comm, qr_status local);

/* Rank and size of comm (MPI errors abort: they are broken invariants, not input errors). */
int qr_mpi_rank(MPI_Comm comm);
int qr_mpi_size(MPI_Comm comm);

/* Convert an MPI return code to a status with a message naming the call. */
qr_status qr_mpi_check(int mpi_rc, const char *call);

/* Complete req, sleeping 2 ms between tests, and the same for a barrier: a rank that waits for
 * another group (long, on the scale of modules) does not spin on a core the working ranks need
 * (Open MPI polls busily inside blocking calls, and the polling counts as CPU time). */
void qr_mpi_idle_wait(MPI_Request *req);
void qr_mpi_idle_barrier(MPI_Comm comm); /* collective */

/* Collective: agree on the final status of a run, print the agreed error (or the resumable stop)
 * once (from rank 0; from every rank, tagged, when QRECON_LOG_ALL_RANKS=1), and return the process
 * exit code. */
int qr_mpi_finish_status(MPI_Comm comm, qr_status local);

#endif
