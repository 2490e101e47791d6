/* lock.h: the job lock of an output: `<out>.parts/LOCK`, created with O_EXCL and holding
 * "host pid slurm-job\n" of the job's rank 0 (slurm-job is "-" outside Slurm), so a second job on
 * the same output is refused while the first runs. A lock is stale, and taken over with a warning,
 * when it was left by a dead process on the same host (kill -9, a crash), or by an earlier run of
 * the same Slurm job when this run is its restart (SLURM_RESTART_COUNT > 0: Slurm requeues a job
 * only once its earlier run is gone, on whatever node it was). Any other lock from another host
 * cannot be checked and is never taken over (remove the file by hand once that job is gone). Not
 * collective: rank 0 takes the lock and agrees on the status with the other ranks. */
#ifndef QR_IO_LOCK_H
#define QR_IO_LOCK_H

#include <stdbool.h>

#include "src/status.h"

typedef struct qr_lock qr_lock;

/* Take the lock at path. QR_ERR_INPUT naming the path, host and pid when another live job holds
 * it. *took_over (may be NULL) tells whether a stale lock was replaced. */
qr_status qr_lock_acquire(const char *path, qr_lock **out, bool *took_over);

/* Remove the lock file if it is still ours; free; NULL-safe, clears the pointer. */
void qr_lock_release(qr_lock **lock);

#endif
