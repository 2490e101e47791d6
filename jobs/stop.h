/* stop.h: stopping a long job on request, at a safe point.
 *
 * Slurm sends SIGUSR1 ahead of a time limit (sbatch --signal=B:USR1@LEAD; the batch script's trap
 * forwards it to the step) and SIGTERM on preemption; srun and mpiexec forward both to every rank.
 * The handler only sets a flag. Long-running loops (quantize, capture) read the flag at module or
 * window boundaries, finish the unit in hand, and end with QR_STOPPED (exit 75, "resumable").
 * docs/slurm.md describes how the batch scripts use this. */
#ifndef QR_JOBS_STOP_H
#define QR_JOBS_STOP_H

#include <signal.h>

/* Install the SIGUSR1 / SIGTERM handlers (idempotent). */
void qr_stop_install(void);

/* The flag the handlers set: 0, or the number of the signal that arrived first. Loops below jobs/
 * receive this pointer (they may not include jobs/). */
volatile sig_atomic_t *qr_stop_flag(void);

/* When the environment names QRECON_EXIT_FILE, rank 0 writes the run's agreed exit code there as
 * one line ("0", "75", ...). The Slurm scripts read it because srun can return 0 for a step that
 * never launched (seen with Slurm 22.05 and PMIx); no file then means the step did not run. Call
 * once at the end, after the exit code is agreed. A write failure is reported on stderr only. */
void qr_exit_file_write(int rank, int code);

#endif
