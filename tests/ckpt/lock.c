/* lock.c: the job lock refuses a second holder (naming host and pid), is released, takes over a
 * lock of a dead process on this host (and says so), and never takes over one from another host. */
#include <stdio.h>
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
    /* Garbage in the lock file is refused, not silently replaced. */
    write_file(path, "\n");
    QR_EXPECT(qr_lock_acquire(path, &a, NULL) == QR_ERR_INPUT, "a malformed lock was taken over");
    unlink(path);
    if (qr_test_failures == 0) {
        qr_fixture_rmdir(dir);
    }
    return qr_test_finish("ckpt.lock");
}
