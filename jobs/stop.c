/* stop.c: signal handlers that request a resumable stop. */
#include "jobs/stop.h"

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
