/* test_hooks.c: the test suite's crash and slow-down points (jobs/test_hooks.h). */
#include "jobs/test_hooks.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/log.h"

static long slow_ms, kill_at = -1;

static void slow_down(void *ctx, const char *module)
{
    struct timespec ts = {slow_ms / 1000, (slow_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void kill_after(void *ctx, size_t i)
{
    if (qr_log_rank() == 0 && (long)i + 1 == kill_at) {
        raise(SIGKILL);
    }
}

/* QRECON_TEST_WORSE_THAN_RTN=TEXT: modules whose name contains TEXT count as worse than RTN. */
static const char *worse_match;

static bool worse_than_rtn(void *ctx, const char *module)
{
    (void)ctx;
    return module && strstr(module, worse_match) != NULL;
}

void qr_test_hooks_install(qr_quantize_job *job)
{
    worse_match = getenv("QRECON_TEST_WORSE_THAN_RTN");
    if (worse_match && *worse_match) {
        job->worse_than_rtn = worse_than_rtn;
    }
    const char *slow = getenv("QRECON_TEST_SLOW_MS");
    const char *kill = getenv("QRECON_TEST_KILL_AT");
    slow_ms = slow ? strtol(slow, NULL, 10) : 0;
    if (slow_ms > 0) {
        job->after_module = slow_down;
    }
    if (kill && strncmp(kill, "assemble:", 9) == 0) {
        kill_at = strtol(kill + 9, NULL, 10);
        job->after_assembled = kill_after;
    }
}

static bool capture_kill(void *ctx, int group, int last_group)
{
    (void)ctx;
    return group == last_group;
}

void qr_test_hooks_install_capture(qr_capture_job *job)
{
    const char *kill = getenv("QRECON_TEST_KILL_AT");
    if (kill && strcmp(kill, "capture:last") == 0) {
        job->before_finish = capture_kill;
    }
}
