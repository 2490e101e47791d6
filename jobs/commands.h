/* commands.h: the subcommands of qrecon, one jobs/cmd_<name>.c each. */
#ifndef QR_JOBS_COMMANDS_H
#define QR_JOBS_COMMANDS_H

#include "jobs/cli.h"

/* The table of subcommands, in the order `qrecon --help` lists them. */
extern const qr_command qr_commands[];
extern const int qr_command_count;

#endif
