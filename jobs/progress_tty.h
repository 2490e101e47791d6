/* progress_tty.h: where rank 0's live progress bar is drawn, and how wide it may be.
 *
 * The bar goes to stderr when stderr is a terminal. Under a launcher (mpiexec), rank 0's stderr is
 * a pipe to the launcher; then the bar goes to the controlling terminal (/dev/tty) when the
 * launcher itself writes its stderr to that terminal and runs in its foreground (--progress auto),
 * or whenever /dev/tty can be opened (--progress bar). In the first case rank 0's stderr (and its
 * stdout, when the launcher's also goes to that terminal) is then written to the terminal directly,
 * so its messages arrive in order with the bar. QRECON_PROGRESS_TTY=0 never opens /dev/tty.
 * The width is the terminal's (TIOCGWINSZ, asked before every redraw), else $COLUMNS, else 80. */
#ifndef QR_JOBS_PROGRESS_TTY_H
#define QR_JOBS_PROGRESS_TTY_H

#include "src/progress.h"

/* Rank 0: find the terminal for mode and hand it to qr_progress_set_terminal. Never fails: without
 * a terminal, progress prints lines (auto) or draws on stderr (bar). */
void qr_progress_tty_setup(qr_progress_mode mode);

#endif
