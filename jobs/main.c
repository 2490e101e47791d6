/* main.c: qrecon's entry point. Starts MPI, dispatches to a subcommand, agrees on the final status
 * across ranks, prints the error once, and exits with the agreed code (0 ok, 2 bad input, 1 internal,
 * 75 stopped and resumable). */
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "jobs/commands.h"
#include "mpi/comm.h"
#include "src/log.h"

static void print_usage(void)
{
    if (qr_log_rank() != 0) {
        return;
    }
    printf("usage: qrecon <command> [options]\n\n"
           "Quantize Llama-family models to INT4 with low-rank / salient-channel error\n"
           "reconstruction, distributed over MPI ranks.\n\ncommands:\n");
    for (int i = 0; i < qr_command_count; i++) {
        printf("  %-10s %s\n", qr_commands[i].name, qr_commands[i].summary);
    }
    printf("\nRun 'qrecon <command> --help' for a command's options. Exit codes: 0 success,\n"
           "2 bad input or usage, 1 internal error, 75 stopped on request (resumable).\n");
}

int main(int argc, char **argv)
{
    qr_status st = QR_OK;
    int code;
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
        fprintf(stderr, "qrecon: error: MPI_Init failed\n");
        return QR_EXIT_INTERNAL;
    }
    qr_log_set_rank(qr_mpi_rank(MPI_COMM_WORLD), qr_mpi_size(MPI_COMM_WORLD));
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_usage();
    } else if (strcmp(argv[1], "--version") == 0) {
        char *args[] = {"version", NULL};
        st = qr_commands[0].run(1, args);
    } else {
        const qr_command *cmd = NULL;
        for (int i = 0; i < qr_command_count; i++) {
            if (strcmp(argv[1], qr_commands[i].name) == 0) {
                cmd = &qr_commands[i];
            }
        }
        if (cmd) {
            st = cmd->run(argc - 1, argv + 1);
        } else {
            st = qr_fail(QR_ERR_INPUT, "unknown command '%s' (run 'qrecon --help' for the list)",
                         argv[1]);
        }
    }
    code = qr_mpi_finish_status(MPI_COMM_WORLD, st);
    MPI_Finalize();
    return code;
}
