/* cli.h: what every subcommand shares: its entry point, option-value parsing with clear errors, and
 * the usage-error status. Options themselves are declared as tables (jobs/options.h), which parse
 * them and generate the help. */
#ifndef QR_JOBS_CLI_H
#define QR_JOBS_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "src/status.h"

/* A subcommand: parse argv (argv[0] is the subcommand name), run, return a status. Called on every
 * rank; collective subcommands agree on their status before each collective phase. */
typedef qr_status (*qr_cmd_fn)(int argc, char **argv);

typedef struct {
    const char *name;
    qr_cmd_fn run;
    const char *summary;
} qr_command;

/* Parse "--opt VALUE" values; errors name the option and what was expected vs found. */
qr_status qr_cli_int(const char *opt, const char *value, int64_t min, int64_t max, int64_t *out);
qr_status qr_cli_double(const char *opt, const char *value, double min, double max, double *out);
/* "PxQ" (e.g. "2x2") */
qr_status qr_cli_grid(const char *opt, const char *value, int *p, int *q);

/* Status for a usage error (an unknown option, a missing value or operand): "<cmd>: <what> (see
 * 'qrecon <cmd> --help')". */
qr_status qr_cli_usage_error(const char *cmd, const char *what);

#endif
