/* lock.c: the job lock (io/lock.h). */
#include "io/lock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "src/log.h"

#define QR_LOCK_HOST_MAX 256
#define QR_LOCK_TRIES 3

struct qr_lock {
    char path[4096];
    char content[QR_LOCK_HOST_MAX + 32];
};

static void host_name(char *buf, size_t n)
{
    if (gethostname(buf, n) != 0) {
        snprintf(buf, n, "unknown");
    }
    buf[n - 1] = '\0';
}

/* The Slurm job this process belongs to, or "-" outside Slurm. */
static const char *slurm_job(void)
{
    const char *id = getenv("SLURM_JOB_ID");
    return id && *id && strlen(id) < 32 && !strchr(id, ' ') ? id : "-";
}

/* This run restarts a requeued Slurm job (SLURM_RESTART_COUNT > 0): an earlier run of the same job,
 * on whatever node, has ended, so a lock it left is stale. */
static bool restarted_job_owns(const char *lock_job)
{
    const char *restarts = getenv("SLURM_RESTART_COUNT");
    return strcmp(lock_job, "-") != 0 && strcmp(lock_job, slurm_job()) == 0 && restarts &&
           atoi(restarts) > 0;
}

/* Read "host pid [slurm-job]" from an existing lock; false when unreadable or malformed. */
static bool read_lock(const char *path, char *host, size_t hn, long *pid, char *job, size_t jn)
{
    char buf[QR_LOCK_HOST_MAX + 32];
    char fmt[32];
    FILE *f = fopen(path, "r");
    size_t n;
    if (!f) {
        return false;
    }
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    snprintf(fmt, sizeof fmt, "%%%zus %%ld %%%zus", hn - 1, jn - 1);
    snprintf(job, jn, "-");
    return sscanf(buf, fmt, host, pid, job) >= 2;
}

/* A pid on this host that may still run: kill(pid, 0) succeeds or is refused for permission. */
static bool pid_alive(long pid)
{
    if (pid <= 0) {
        return true;
    }
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

qr_status qr_lock_acquire(const char *path, qr_lock **out, bool *took_over)
{
    qr_lock *l;
    char host[QR_LOCK_HOST_MAX];
    *out = NULL;
    if (took_over) {
        *took_over = false;
    }
    l = calloc(1, sizeof *l);
    if (!l) {
        return qr_fail(QR_ERR_NOMEM, "%s: cannot allocate the lock", path);
    }
    if ((size_t)snprintf(l->path, sizeof l->path, "%s", path) >= sizeof l->path) {
        free(l);
        return qr_fail(QR_ERR_INPUT, "%s: path too long", path);
    }
    host_name(host, sizeof host);
    snprintf(l->content, sizeof l->content, "%s %ld %s\n", host, (long)getpid(), slurm_job());
    for (int attempt = 0; attempt < QR_LOCK_TRIES; attempt++) {
        char other[QR_LOCK_HOST_MAX], job[32];
        long pid = 0;
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd >= 0) {
            size_t len = strlen(l->content);
            bool ok = write(fd, l->content, len) == (ssize_t)len && fsync(fd) == 0;
            close(fd);
            if (!ok) {
                unlink(path);
                free(l);
                return qr_fail(QR_ERR_IO, "%s: cannot write the lock (%s)", path, strerror(errno));
            }
            *out = l;
            return QR_OK;
        }
        if (errno != EEXIST) {
            int err = errno;
            free(l);
            return qr_fail(QR_ERR_IO, "%s: cannot create the lock (%s)", path, strerror(err));
        }
        if (!read_lock(path, other, sizeof other, &pid, job, sizeof job)) {
            /* Being written right now, or damaged: look again before judging it. */
            nanosleep(&(struct timespec){0, 200000000}, NULL);
            if (!read_lock(path, other, sizeof other, &pid, job, sizeof job)) {
                free(l);
                return qr_fail(
                    QR_ERR_INPUT,
                    "%s: exists but is not a qrecon lock (expected 'host pid [job]'); remove "
                    "it if no job is running on this output",
                    path);
            }
        }
        if (restarted_job_owns(job)) {
            QR_WARN("%s: taking over the lock of an earlier run of this Slurm job (%s on %s, pid "
                    "%ld)",
                    path, job, other, pid);
        } else if (strcmp(other, host) != 0 || pid_alive(pid)) {
            free(l);
            return qr_fail(QR_ERR_INPUT,
                           "%s: another job holds this output (host %s, pid %ld, Slurm job %s); "
                           "wait for it to end, or remove the lock if that job is gone",
                           path, other, pid, job);
        } else {
            QR_WARN("%s: taking over a stale lock of pid %ld on %s (that process is gone)", path,
                    pid, other);
        }
        if (unlink(path) != 0 && errno != ENOENT) {
            int err = errno;
            free(l);
            return qr_fail(QR_ERR_IO, "%s: cannot remove the stale lock (%s)", path, strerror(err));
        }
        if (took_over) {
            *took_over = true;
        }
    }
    free(l);
    return qr_fail(QR_ERR_INPUT,
                   "%s: could not take the lock after %d tries (another job is "
                   "starting on this output)",
                   path, QR_LOCK_TRIES);
}

void qr_lock_release(qr_lock **lock)
{
    char host[QR_LOCK_HOST_MAX], mine[QR_LOCK_HOST_MAX], job[32];
    long pid = 0;
    if (!lock || !*lock) {
        return;
    }
    host_name(mine, sizeof mine);
    if (read_lock((*lock)->path, host, sizeof host, &pid, job, sizeof job) &&
        pid == (long)getpid() && strcmp(host, mine) == 0) {
        unlink((*lock)->path);
    }
    free(*lock);
    *lock = NULL;
}
