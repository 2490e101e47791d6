/* cli.c: option value parsing shared by the subcommands. */
#include "jobs/cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

qr_status qr_cli_int(const char *opt, const char *value, int64_t min, int64_t max, int64_t *out)
{
    char *end = NULL;
    long long v;
    errno = 0;
    v = strtoll(value, &end, 10);
    if (errno || end == value || *end != '\0' || v < min || v > max) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: expected an integer in [%" PRId64 ", %" PRId64 "], found '%s'", opt,
                       min, max, value);
    }
    *out = v;
    return QR_OK;
}

qr_status qr_cli_double(const char *opt, const char *value, double min, double max, double *out)
{
    char *end = NULL;
    double v;
    errno = 0;
    v = strtod(value, &end);
    if (errno || end == value || *end != '\0' || !(v >= min && v <= max)) {
        return qr_fail(QR_ERR_INPUT, "%s: expected a number in [%g, %g], found '%s'", opt, min, max,
                       value);
    }
    *out = v;
    return QR_OK;
}

qr_status qr_cli_grid(const char *opt, const char *value, int *p, int *q)
{
    int a = 0, b = 0, used = 0;
    if (sscanf(value, "%dx%d%n", &a, &b, &used) != 2 || value[used] != '\0' || a < 1 || b < 1 ||
        a > 4096 || b > 4096) {
        return qr_fail(QR_ERR_INPUT, "%s: expected a process grid PxQ such as 2x2, found '%s'", opt,
                       value);
    }
    *p = a;
    *q = b;
    return QR_OK;
}

qr_status qr_cli_usage_error(const char *cmd, const char *what)
{
    return qr_fail(QR_ERR_INPUT, "%s: %s (see 'qrecon %s --help')", cmd, what, cmd);
}
