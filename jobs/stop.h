/* stop.h: stopping a long job on request, at a safe point.
 *
 * Slurm sends SIGUSR1 ahead of a time limit (sbatch --signal=B:USR1@LEAD; the batch script's trap
 * forwards it to the step) and SIGTERM on preemption; srun and mpiexec forward both to every rank.
 * The handler only sets a flag. Long-running loops (quantize, capture) read the flag at module or
 * window boundaries, finish the unit in hand, and end with QR_STOPPED (exit 75, "resumable"). */
#ifndef QR_JOBS_STOP_H
#define QR_JOBS_STOP_H

#include <signal.h>

/* Install the SIGUSR1 / SIGTERM handlers (idempotent). */
void qr_stop_install(void);

/* The flag the handlers set: 0, or the number of the signal that arrived first. Loops below jobs/
 * receive this pointer (they may not include jobs/). */
volatile sig_atomic_t *qr_stop_flag(void);

#endif
