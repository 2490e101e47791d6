/* precedence.c: what qr_mpi_agree returns when ranks disagree: an error anywhere wins over a
 * resumable stop, a stop wins over success, and the lowest rank's message is the one kept. Run with
 * 3 ranks; exits 0 only when every rank saw the expected outcome of every case. */
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "mpi/comm.h"

static int check_case(const char *name, qr_status mine, const char *msg, qr_status want,
                      const char *want_msg)
{
    qr_status got;
    int bad, any_bad = 0;
    qr_clear_error();
    if (mine != QR_OK) {
        qr_fail(mine, "%s", msg);
    }
    got = qr_mpi_agree(MPI_COMM_WORLD, mine);
    bad = got != want || strcmp(qr_errmsg(), want_msg) != 0;
    if (bad) {
        fprintf(stderr, "%s: rank %d got status %d '%s', expected %d '%s'\n", name,
                qr_mpi_rank(MPI_COMM_WORLD), got, qr_errmsg(), want, want_msg);
    }
    MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return any_bad;
}

int main(int argc, char **argv)
{
    int rank, failures = 0;
    MPI_Init(&argc, &argv);
    rank = qr_mpi_rank(MPI_COMM_WORLD);
    if (qr_mpi_size(MPI_COMM_WORLD) != 3) {
        fprintf(stderr, "run with 3 ranks\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    /* rank 0 stops, rank 2 meets bad input: the error wins, with rank 2's message */
    failures += check_case(
        "error over stop", rank == 0 ? QR_STOPPED : (rank == 2 ? QR_ERR_INPUT : QR_OK),
        rank == 0 ? "stopped at m0" : "bad.h5: wrong d_in", QR_ERR_INPUT, "bad.h5: wrong d_in");
    /* ranks 1 and 2 stop: the stop wins over success, with rank 1's message */
    failures +=
        check_case("stop over ok", rank == 0 ? QR_OK : QR_STOPPED,
                   rank == 1 ? "stopped at m1" : "stopped at m2", QR_STOPPED, "stopped at m1");
    /* two errors: the lowest rank's */
    failures +=
        check_case("lowest error", rank == 0 ? QR_OK : QR_ERR_IO,
                   rank == 1 ? "disk full on 1" : "disk full on 2", QR_ERR_IO, "disk full on 1");
    failures += check_case("all ok", QR_OK, "", QR_OK, "");
    if (rank == 0) {
        printf("%s\n", failures ? "FAIL" : "mpi.agree.precedence: all checks passed");
    }
    MPI_Finalize();
    return failures ? 1 : 0;
}
