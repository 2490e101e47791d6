/* log.c: levelled, rank-aware logging to stderr. */
#include "src/log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "src/progress.h"

static int log_rank = 0;
static int log_nranks = 1;
static int log_all_ranks = -1; /* -1: not decided yet, read the environment on first use */
static qr_log_level log_level = QR_LOG_INFO;

void qr_log_set_rank(int rank, int nranks)
{
    log_rank = rank;
    log_nranks = nranks;
}

int qr_log_rank(void)
{
    return log_rank;
}

int qr_log_nranks(void)
{
    return log_nranks;
}

void qr_log_set_level(qr_log_level level)
{
    log_level = level;
}

qr_log_level qr_log_get_level(void)
{
    return log_level;
}

void qr_log_set_all_ranks(int all)
{
    log_all_ranks = all != 0;
}

static int all_ranks(void)
{
    if (log_all_ranks < 0) {
        const char *env = getenv("QRECON_LOG_ALL_RANKS");
        log_all_ranks = env && strcmp(env, "0") != 0 && env[0] != '\0';
    }
    return log_all_ranks;
}

void qr_log(qr_log_level level, const char *fmt, ...)
{
    static const char *const tags[] = {"error", "warning", "", "debug"};
    char line[2048];
    char tag[64] = "";
    va_list ap;
    if (level > log_level) {
        return;
    }
    if (level >= QR_LOG_INFO && log_rank != 0 && !all_ranks()) {
        return;
    }
    if (log_nranks > 1 && (level <= QR_LOG_WARN || all_ranks())) {
        snprintf(tag, sizeof tag, "[rank %d/%d] ", log_rank, log_nranks);
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    qr_progress_clear_line(); /* a live bar on this line would run into the message */
    if (tags[level][0] != '\0') {
        fprintf(stderr, "qrecon: %s%s: %s\n", tag, tags[level], line);
    } else {
        fprintf(stderr, "qrecon: %s%s\n", tag, line);
    }
}
