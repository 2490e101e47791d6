/* stage.c: the stage hook (src/stage.h). */
#include "src/stage.h"

#include <stddef.h>

static qr_stage_fn stage_fn = NULL;
static void *stage_ctx = NULL;

void qr_stage_hook_set(qr_stage_fn fn, void *ctx)
{
    stage_fn = fn;
    stage_ctx = ctx;
}

void qr_stage_mark(const char *stage)
{
    if (stage_fn) {
        stage_fn(stage_ctx, stage);
    }
}
