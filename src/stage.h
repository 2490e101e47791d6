/* stage.h: where one module's work stands, for the live progress bar. The numerics mark the start
 * of their long stages ("whitening", "SVD", "quantize"); the job (jobs/) may install a callback
 * that shows them. No callback: a mark costs one branch. src/ does no I/O for it.
 *
 * The hook is process-wide and not thread-safe: install it around the work of one module. */
#ifndef QR_STAGE_H
#define QR_STAGE_H

typedef void (*qr_stage_fn)(void *ctx, const char *stage);

/* Install fn (NULL: remove) with its context. */
void qr_stage_hook_set(qr_stage_fn fn, void *ctx);

/* A stage starts: calls the hook, if any. */
void qr_stage_mark(const char *stage);

#endif
