/* main.c: qrecon's entry point. Starts MPI, dispatches to a subcommand, agrees on the final status
 * across ranks, prints the error once, and exits with the agreed code (0 ok, 2 bad input, 1
 * internal, 75 stopped and resumable). */
#include <malloc.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fault.h"
#include "io/h5util.h"
#include "jobs/commands.h"
#include "jobs/progress_tty.h"
#include "mpi/comm.h"
#include "src/log.h"
#include "src/progress.h"
#include "jobs/stop.h"

/* Options every command accepts, anywhere on the line; removed from argv before dispatch. */
static const char global_help[] =
    "global options (any command):\n"
    "  --quiet             no progress or information lines (warnings and errors print)\n"
    "  --progress MODE     auto (bar on a terminal, also rank 0's under mpiexec; else one line\n"
    "                      per unit), bar (also under a launcher whose output is redirected),\n"
    "                      lines\n"
    "  --json-log FILE     also write progress events as JSON lines to FILE (rank 0)\n"
    "  --verbose           debug messages\n";

static FILE *json_log = NULL;

static qr_status take_global_options(int *argc, char **argv)
{
    qr_progress_mode mode = QR_PROGRESS_AUTO;
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--quiet") == 0) {
            mode = QR_PROGRESS_QUIET;
            qr_log_set_level(QR_LOG_WARN);
        } else if (strcmp(a, "--verbose") == 0) {
            qr_log_set_level(QR_LOG_DEBUG);
        } else if (strcmp(a, "--progress") == 0 || strcmp(a, "--json-log") == 0) {
            const char *v = i + 1 < *argc ? argv[++i] : NULL;
            if (!v) {
                return qr_fail(QR_ERR_INPUT, "%s: missing value", a);
            }
            if (strcmp(a, "--json-log") == 0) {
                if (qr_log_rank() == 0 && !json_log && !(json_log = fopen(v, "w"))) {
                    return qr_fail(QR_ERR_INPUT, "--json-log %s: cannot open for writing", v);
                }
            } else if (strcmp(v, "auto") == 0 || strcmp(v, "bar") == 0 || strcmp(v, "lines") == 0) {
                mode = v[0] == 'a' ? QR_PROGRESS_AUTO
                                   : (v[0] == 'b' ? QR_PROGRESS_BAR : QR_PROGRESS_LINES);
            } else {
                return qr_fail(QR_ERR_INPUT, "--progress: expected auto, bar or lines, found '%s'",
                               v);
            }
        } else {
            argv[out++] = argv[i];
        }
    }
    argv[out] = NULL;
    *argc = out;
    qr_progress_configure(mode, json_log);
    qr_progress_tty_setup(mode);
    return QR_OK;
}

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
    printf("\n%s\nRun 'qrecon <command> --help' for a command's options. Exit codes: 0 success,\n"
           "2 bad input or usage, 1 internal error, 4 validation failed, 75 stopped on request\n"
           "(resumable).\n",
           global_help);
}

static qr_status dispatch(int argc, char **argv)
{
    if (argc < 2) {
        print_usage();
        return qr_fail(QR_ERR_INPUT, "no command given (expected one of the commands above)");
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_usage();
        return QR_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        argv[1] = "version";
    }
    for (int i = 0; i < qr_command_count; i++) {
        if (strcmp(argv[1], qr_commands[i].name) == 0) {
            return qr_commands[i].run(argc - 1, argv + 1);
        }
    }
    return qr_fail(QR_ERR_INPUT, "unknown command '%s' (run 'qrecon --help' for the list)",
                   argv[1]);
}

int main(int argc, char **argv)
{
    qr_status st;
    int code;
    /* Large buffers (matrices, windows) come and go module after module: a fixed mmap threshold
     * returns each to the system when freed, instead of glibc's adaptive one leaving them in a
     * fragmented heap, so the resident peak is the peak of what is live. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
        fprintf(stderr, "qrecon: error: MPI_Init failed\n");
        return QR_EXIT_INTERNAL;
    }
    qr_log_set_rank(qr_mpi_rank(MPI_COMM_WORLD), qr_mpi_size(MPI_COMM_WORLD));
    qr_stop_install();
    st = take_global_options(&argc, argv);
#ifdef QRECON_FAULT_INJECTION
    /* The test binary qrecon_fault only (tests/harden.cmake): fail the N-th I/O operation. */
    if (st == QR_OK && getenv("QRECON_FAULT") && !qr_fault_arm_text(getenv("QRECON_FAULT"))) {
        st = qr_fail(QR_ERR_INPUT, "QRECON_FAULT: expected write|flush|close|rename:N, found '%s'",
                     getenv("QRECON_FAULT"));
    }
#endif
    if (st == QR_OK) {
        st = dispatch(argc, argv);
    }
    code = qr_mpi_finish_status(MPI_COMM_WORLD, st);
    qr_exit_file_write(qr_mpi_rank(MPI_COMM_WORLD), code);
    if (json_log) {
        fclose(json_log);
    }
    qr_h5_shutdown();
    MPI_Finalize();
    return code;
}
