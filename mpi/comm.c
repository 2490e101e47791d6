/* comm.c: status agreement and communicator helpers. */
#include "mpi/comm.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int qr_mpi_rank(MPI_Comm comm)
{
    int r = 0;
    MPI_Comm_rank(comm, &r);
    return r;
}

int qr_mpi_size(MPI_Comm comm)
{
    int n = 1;
    MPI_Comm_size(comm, &n);
    return n;
}

void qr_mpi_idle_wait(MPI_Request *req)
{
    struct timespec ts = {0, 2000000L}; /* 2 ms */
    int flag = 0;
    while (MPI_Test(req, &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && !flag) {
        nanosleep(&ts, NULL);
    }
}

void qr_mpi_idle_barrier(MPI_Comm comm)
{
    MPI_Request req;
    MPI_Ibarrier(comm, &req);
    qr_mpi_idle_wait(&req);
}

qr_status qr_mpi_check(int mpi_rc, const char *call)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (mpi_rc == MPI_SUCCESS) {
        return QR_OK;
    }
    MPI_Error_string(mpi_rc, text, &len);
    return qr_fail(QR_ERR_INTERNAL, "%s failed: %s", call, text);
}

qr_status qr_mpi_agree(MPI_Comm comm, qr_status local)
{
    /* One message travels: [status, message bytes] from the lowest failing rank. */
    struct {
        int status;
        char msg[QR_ERRMSG_MAX];
    } packet;
    int rank = qr_mpi_rank(comm), size = qr_mpi_size(comm);
    /* Real errors rank before a resumable stop, so a stop on one rank never hides an error on
     * another: key = rank for an error, size + rank for a stop, INT_MAX for success. */
    int mine = local == QR_OK ? INT_MAX : (local == QR_STOPPED ? size + rank : rank);
    int first = INT_MAX;
    QR_TRY(qr_mpi_check(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce"));
    if (first == INT_MAX) {
        return QR_OK;
    }
    first = first >= size ? first - size : first;
    memset(&packet, 0, sizeof packet);
    if (rank == first) {
        packet.status = (int)local;
        strncpy(packet.msg, qr_errmsg(), sizeof packet.msg - 1);
    }
    QR_TRY(
        qr_mpi_check(MPI_Bcast(&packet, (int)sizeof packet, MPI_BYTE, first, comm), "MPI_Bcast"));
    qr_set_errmsg(packet.msg);
    return (qr_status)packet.status;
}

int qr_mpi_finish_status(MPI_Comm comm, qr_status local)
{
    qr_status st = qr_mpi_agree(comm, local);
    if (st != QR_OK) {
        int rank = qr_mpi_rank(comm), nranks = qr_mpi_size(comm);
        const char *all = getenv("QRECON_LOG_ALL_RANKS");
        const char *what = st == QR_STOPPED ? "stopped" : "error";
        if (all && all[0] != '\0' && strcmp(all, "0") != 0) {
            fprintf(stderr, "qrecon: [rank %d/%d] %s: %s\n", rank, nranks, what, qr_errmsg());
        } else if (rank == 0) {
            fprintf(stderr, "qrecon: %s: %s\n", what, qr_errmsg());
        }
    }
    return qr_status_exit_code(st);
}
