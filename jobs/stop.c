/* stop.c: signal handlers that request a resumable stop, and the exit file for batch scripts. */
#include "jobs/stop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop_signal = 0;

static void on_stop_signal(int sig)
{
    if (stop_signal == 0) {
        stop_signal = sig;
    }
}

void qr_stop_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* blocking reads and MPI progress resume after the flag is set */
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

volatile sig_atomic_t *qr_stop_flag(void)
{
    return &stop_signal;
}

void qr_exit_file_write(int rank, int code)
{
    const char *path = getenv("QRECON_EXIT_FILE");
    FILE *f;
    int bad;
    if (rank != 0 || !path || path[0] == '\0') {
        return;
    }
    f = fopen(path, "w");
    bad = !f || fprintf(f, "%d\n", code) < 0;
    if (f && fclose(f) != 0) {
        bad = 1;
    }
    if (bad) {
        fprintf(stderr, "qrecon: warning: QRECON_EXIT_FILE %s: cannot write the exit code %d\n",
                path, code);
    }
}
