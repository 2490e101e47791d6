/* progress_tty.c: the terminal of rank 0's progress bar (jobs/progress_tty.h). */
#include "jobs/progress_tty.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include "src/log.h"

static int tty_fd = -1;

static int columns(void *ctx)
{
    struct winsize ws;
    const char *env = getenv("COLUMNS");
    (void)ctx;
    if (tty_fd >= 0 && ioctl(tty_fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
        return (int)ws.ws_col;
    }
    return env ? atoi(env) : 0;
}

/* This process's controlling terminal as a device number (/proc/self/stat, field 7), 0 if none. */
static dev_t controlling_tty(void)
{
    char buf[1024], *p;
    unsigned long long tty = 0;
    FILE *f = fopen("/proc/self/stat", "r");
    size_t n;
    if (!f) {
        return 0;
    }
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %llu", &tty) != 1) {
        return 0;
    }
    return makedev((unsigned)((tty >> 8) & 0xfff),
                   (unsigned)((tty & 0xff) | ((tty >> 12) & 0xfff00)));
}

/* The launcher (the parent process) writes its file descriptor `which` to our controlling
 * terminal. */
static int launcher_fd_on(int which, dev_t tty)
{
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)getppid(), which);
    return tty != 0 && stat(path, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == tty;
}

/* The launcher writes its stderr to our controlling terminal and is in that terminal's foreground
 * process group (not redirected, not in the background). */
static int launcher_on_terminal(int fd)
{
    return launcher_fd_on(2, controlling_tty()) && tcgetpgrp(fd) == getpgid(getppid());
}

/* Rank 0 writes its stderr (and its stdout, when the launcher's goes to the same terminal) straight
 * to the terminal the launcher would have copied it to: the same place, but in order with the bar
 * (through the launcher's pipe a line arrives late, after the bar was redrawn, and runs into it).
 */
static void write_to_terminal(int fd)
{
    fflush(stderr);
    dup2(fd, STDERR_FILENO);
    if (launcher_fd_on(1, controlling_tty())) {
        fflush(stdout);
        dup2(fd, STDOUT_FILENO);
    }
    close(fd);
}

void qr_progress_tty_setup(qr_progress_mode mode)
{
    const char *env = getenv("QRECON_PROGRESS_TTY");
    FILE *out = NULL;
    int fd;
    if (qr_log_rank() != 0 || mode == QR_PROGRESS_LINES || mode == QR_PROGRESS_QUIET) {
        return;
    }
    if (isatty(STDERR_FILENO)) {
        tty_fd = STDERR_FILENO;
        qr_progress_set_terminal(stderr, columns, NULL);
        return;
    }
    if (env && strcmp(env, "0") == 0) {
        return;
    }
    fd = open("/dev/tty", O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    if (launcher_on_terminal(fd)) {
        write_to_terminal(fd);
        tty_fd = STDERR_FILENO;
        qr_progress_set_terminal(stderr, columns, NULL);
        return;
    }
    if (mode == QR_PROGRESS_BAR && (out = fdopen(fd, "w"))) {
        tty_fd = fd;
        qr_progress_set_terminal(out, columns, NULL); /* open for the life of the process */
        return;
    }
    close(fd);
}
