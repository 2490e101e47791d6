/* lock.c: the job lock refuses a second holder (naming host and pid), is released, takes over a
 * lock of a dead process on this host (and says so), never takes over one from another host, except
 * the lock of an earlier run of the same Slurm job when this run is its restart. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/lock.h"
#include "tests/ckpt/fixture.h"
#include "tests/test_util.h"

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

int main(void)
{
    const char *dir = qr_test_tmpdir("ckpt.lock");
    char path[600], host[256], text[400], pidtext[32];
    qr_lock *a = NULL, *b = NULL;
    bool took = true;
    pid_t child;
    QR_REQUIRE(dir, "no scratch folder");
    snprintf(path, sizeof path, "%s/LOCK", dir);
    unlink(path);
    gethostname(host, sizeof host);

    QR_EXPECT(qr_lock_acquire(path, &a, &took) == QR_OK && a, "first acquire: %s", qr_errmsg());
    QR_EXPECT(!took, "a fresh lock was reported as a takeover");
    QR_EXPECT(qr_lock_acquire(path, &b, NULL) == QR_ERR_INPUT && !b,
              "a second acquire while held succeeded");
    snprintf(pidtext, sizeof pidtext, "pid %ld", (long)getpid());
    QR_EXPECT(strstr(qr_errmsg(), path) && strstr(qr_errmsg(), pidtext) &&
                  strstr(qr_errmsg(), host),
              "refusal does not name path, host and pid: %s", qr_errmsg());
    qr_lock_release(&a);
    QR_EXPECT(a == NULL && access(path, F_OK) != 0, "release left the lock file or the pointer");
    qr_lock_release(&a); /* NULL-safe */

    /* A dead process's lock on this host is stale. */
    child = fork();
    if (child == 0) {
        _exit(0);
    }
    waitpid(child, NULL, 0);
    snprintf(text, sizeof text, "%s %ld\n", host, (long)child);
    write_file(path, text);
    QR_EXPECT(qr_lock_acquire(path, &a, &took) == QR_OK && a, "stale lock not taken over: %s",
              qr_errmsg());
    QR_EXPECT(took, "takeover of a stale lock not reported");
    qr_lock_release(&a);

    /* Another host: never taken over. */
    write_file(path, "some-other-host.example 1\n");
    QR_EXPECT(qr_lock_acquire(path, &a, NULL) == QR_ERR_INPUT,
              "a lock from another host was taken over");
    QR_EXPECT(strstr(qr_errmsg(), "some-other-host.example") != NULL,
              "refusal does not name the other host: %s", qr_errmsg());
    /* Another host, but an earlier run of this Slurm job and this run is its restart: stale. A
     * first run of the same job id (no restart) still refuses it. */
    write_file(path, "some-other-host.example 1 4242\n");
    setenv("SLURM_JOB_ID", "4242", 1);
    setenv("SLURM_RESTART_COUNT", "0", 1);
    QR_EXPECT(qr_lock_acquire(path, &a, NULL) == QR_ERR_INPUT,
              "a lock of the same job id was taken over by a run that is not a restart");
    setenv("SLURM_RESTART_COUNT", "1", 1);
    QR_EXPECT(qr_lock_acquire(path, &a, &took) == QR_OK && a && took,
              "a restarted Slurm job did not take over its earlier run's lock: %s", qr_errmsg());
    qr_lock_release(&a);
    write_file(path, "some-other-host.example 1 4243\n");
    QR_EXPECT(qr_lock_acquire(path, &a, NULL) == QR_ERR_INPUT,
              "a restarted job took over another Slurm job's lock");
    unsetenv("SLURM_JOB_ID");
    unsetenv("SLURM_RESTART_COUNT");
    /* Garbage in the lock file is refused, not silently replaced. */
    write_file(path, "\n");
    QR_EXPECT(qr_lock_acquire(path, &a, NULL) == QR_ERR_INPUT, "a malformed lock was taken over");
    unlink(path);
    if (qr_test_failures == 0) {
        qr_fixture_rmdir(dir);
    }
    return qr_test_finish("ckpt.lock");
}
