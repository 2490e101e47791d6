/* agree.c: collective error agreement. Only rank 1 meets bad input (a truncated safetensors file);
 * every rank must leave with the same status and the same message, exit 2, and nobody may hang.
 * Rank 0 writes the fixtures; ranks 0 and 2+ open the good file. The process exit code is what
 * qr_mpi_finish_status returns, so the driving script checks the real exit path. */
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "io/safetensors.h"
#include "mpi/comm.h"
#include "src/log.h"
#include "src/rng.h"

static int write_file(const char *path, const char *header, size_t data_bytes)
{
    FILE *f = fopen(path, "wb");
    uint64_t n = strlen(header);
    unsigned char le[8];
    if (!f) {
        return -1;
    }
    for (int i = 0; i < 8; i++) {
        le[i] = (unsigned char)(n >> (8 * i));
    }
    fwrite(le, 1, 8, f);
    fwrite(header, 1, n, f);
    for (size_t i = 0; i < data_bytes; i++) {
        fputc(0, f);
    }
    return fclose(f);
}

int main(int argc, char **argv)
{
    const char *header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[0,64]}}";
    char good[512], bad[512], *path;
    char msg_all[4][QR_ERRMSG_MAX];
    int rank, size, code, st_all[4];
    qr_st_file *f = NULL;
    qr_status st;
    MPI_Init(&argc, &argv);
    rank = qr_mpi_rank(MPI_COMM_WORLD);
    size = qr_mpi_size(MPI_COMM_WORLD);
    qr_log_set_rank(rank, size);
    snprintf(good, sizeof good, "%s/good.safetensors", argc > 1 ? argv[1] : "/tmp");
    snprintf(bad, sizeof bad, "%s/truncated.safetensors", argc > 1 ? argv[1] : "/tmp");
    if (rank == 0 && (write_file(good, header, 64) != 0 || write_file(bad, header, 40) != 0)) {
        fprintf(stderr, "cannot write fixtures in %s\n", argc > 1 ? argv[1] : "/tmp");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Barrier(MPI_COMM_WORLD);

    path = rank == 1 ? bad : good;
    st = qr_st_open(path, &f);
    qr_st_close(&f);

    /* Agreement itself: every rank must see rank 1's status and message. */
    st = qr_mpi_agree(MPI_COMM_WORLD, st);
    if (size <= 4) {
        int mine = (int)st;
        MPI_Gather(&mine, 1, MPI_INT, st_all, 1, MPI_INT, 0, MPI_COMM_WORLD);
        MPI_Gather(qr_errmsg(), QR_ERRMSG_MAX, MPI_CHAR, msg_all, QR_ERRMSG_MAX, MPI_CHAR, 0,
                   MPI_COMM_WORLD);
        if (rank == 0) {
            for (int r = 0; r < size; r++) {
                if (st_all[r] != QR_ERR_INPUT || strcmp(msg_all[r], msg_all[0]) != 0 ||
                    strstr(msg_all[r], "truncated.safetensors") == NULL) {
                    fprintf(stderr, "rank %d disagrees: status %d message '%s' (rank 0: '%s')\n", r,
                            st_all[r], msg_all[r], msg_all[0]);
                    MPI_Abort(MPI_COMM_WORLD, 1);
                }
            }
        }
    }
    code = qr_mpi_finish_status(MPI_COMM_WORLD, st);
    MPI_Finalize();
    return code;
}
