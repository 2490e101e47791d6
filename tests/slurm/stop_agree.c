/* stop_agree.c: the stop contract below the job (run under mpiexec -n 3).
 *
 * The handlers qr_stop_install() sets record the first of SIGUSR1 / SIGTERM; a stop seen by one
 * rank wins over OK on the others in qr_mpi_agree (with the stopping rank's message), and
 * qr_mpi_finish_status gives exit code 75 on every rank. */
#include <mpi.h>
#include <signal.h>
#include <string.h>

#include "jobs/stop.h"
#include "mpi/comm.h"
#include "tests/test_util.h"

int main(int argc, char **argv)
{
    int rank, size, code;
    qr_status local, agreed;
    volatile sig_atomic_t *flag;
    MPI_Init(&argc, &argv);
    rank = qr_mpi_rank(MPI_COMM_WORLD);
    size = qr_mpi_size(MPI_COMM_WORLD);

    qr_stop_install();
    flag = qr_stop_flag();
    QR_EXPECT(*flag == 0, "flag set before any signal (%d)", (int)*flag);
    raise(SIGUSR1);
    QR_EXPECT(*flag == SIGUSR1, "after SIGUSR1 the flag is %d (expected %d)", (int)*flag, SIGUSR1);
    raise(SIGTERM);
    QR_EXPECT(*flag == SIGUSR1, "a second signal replaced the first (flag %d, expected %d)",
              (int)*flag, SIGUSR1);

    /* Only the last rank stops; the others finished their work. */
    local =
        rank == size - 1 ? qr_fail(QR_STOPPED, "stopped on rank %d; rerun to resume", rank) : QR_OK;
    agreed = qr_mpi_agree(MPI_COMM_WORLD, local);
    QR_EXPECT(agreed == QR_STOPPED, "rank %d agreed on %s (expected the stop of rank %d)", rank,
              qr_status_name(agreed), size - 1);
    QR_EXPECT(strstr(qr_errmsg(), "rerun to resume") != NULL,
              "rank %d did not receive the stopping rank's message (has '%s')", rank, qr_errmsg());
    QR_EXPECT(qr_status_exit_code(QR_STOPPED) == 75, "exit code of a stop is %d (expected 75)",
              qr_status_exit_code(QR_STOPPED));

    if (rank == size - 1) {
        qr_fail(QR_STOPPED, "stopped on rank %d; rerun to resume", rank);
    }
    code = qr_mpi_finish_status(MPI_COMM_WORLD, local);
    QR_EXPECT(code == 75, "rank %d would exit %d after a stop on rank %d (expected 75)", rank, code,
              size - 1);
    code = qr_test_finish("slurm.stop_agree");
    MPI_Finalize();
    return code;
}
