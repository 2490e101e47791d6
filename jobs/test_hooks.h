/* test_hooks.h: the crash and slow-down points the test suite drives through environment
 * variables, read here and only here (the library takes them as plain callbacks):
 *   QRECON_TEST_SLOW_MS=N          sleep N ms after each module a group computes, so a test can
 *                                  kill a job on a small model in the middle of its work;
 *   QRECON_TEST_KILL_AT=assemble:N rank 0 SIGKILLs itself after the N-th module of the checkpoint
 *                                  is written, the way a node dies in the middle of an assembly;
 *   QRECON_TEST_WORSE_THAN_RTN=TEXT quantize counts every module whose name contains TEXT as worse
 *                                  than RTN (the flag and --fallback-rtn on any method and path);
 *   QRECON_TEST_KILL_AT=capture:last the ranks of a capture's last layer slice SIGKILL themselves
 *                                  just before finishing their shards (every other rank has
 *                                  finished its shard), the way a job dies at the end. */
#ifndef QR_JOBS_TEST_HOOKS_H
#define QR_JOBS_TEST_HOOKS_H

#include "jobs/capture_run.h"
#include "jobs/quantize_run.h"

/* Set job's hooks from the environment (nothing when the variables are unset). */
void qr_test_hooks_install(qr_quantize_job *job);
void qr_test_hooks_install_capture(qr_capture_job *job);

#endif
