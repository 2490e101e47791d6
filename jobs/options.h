/* options.h: the declarative option table of a subcommand.
 *
 * Each command declares its options once, as rows of a table: name, value type, range, default
 * shown in the help, help text, and where the parsed value goes (an offset into the command's own
 * options struct). The parser (getopt_long underneath) and the help screen are both generated from
 * the rows, so a new option is one row. Options common to several commands (the model and text
 * input of capture, eval and generate) are one shared table, parsed into a struct the commands
 * embed. A flag given twice is refused; so is an unknown one, with the same message on every rank
 * (every rank parses the same command line). docs/conventions.md shows how a command uses it. */
#ifndef QR_JOBS_OPTIONS_H
#define QR_JOBS_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/status.h"

typedef enum {
    QR_OPT_FLAG = 0, /* no value: bool, set to true */
    QR_OPT_STR,      /* const char * (points into argv) */
    QR_OPT_INT,      /* int64_t in [imin, imax] */
    QR_OPT_DOUBLE,   /* double in [dmin, dmax] */
    QR_OPT_CUSTOM,   /* parse(opt, value, dst): a grid, a method name, a choice */
    QR_OPT_LIST,     /* qr_opt_list: a string option that may be given several times */
} qr_opt_type;

/* The values of a QR_OPT_LIST row, in command-line order (pointers into argv). */
#define QR_OPT_LIST_MAX 16
typedef struct {
    int n;
    const char *v[QR_OPT_LIST_MAX];
} qr_opt_list;

/* Parse `value` of option `opt` ("--name") into dst; QR_ERR_INPUT naming the option and the value
 * expected vs found. */
typedef qr_status (*qr_opt_parse_fn)(const char *opt, const char *value, void *dst);

typedef struct {
    const char *name; /* long name without the dashes */
    qr_opt_type type;
    size_t offset;         /* of the value in the struct the table is parsed into */
    const char *arg;       /* value placeholder in the help ("N", "DIR"); NULL for flags */
    const char *help;      /* one or more lines; '\n' continues under the text column */
    const char *def;       /* default shown in the help when it is not simply the value the
                              struct holds before parsing (which is shown otherwise) */
    int64_t imin, imax;    /* QR_OPT_INT range */
    double dmin, dmax;     /* QR_OPT_DOUBLE range */
    qr_opt_parse_fn parse; /* QR_OPT_CUSTOM */
    bool required;
} qr_opt;

/* A table and the struct its offsets point into. */
typedef struct {
    const qr_opt *rows;
    size_t n_rows;
    void *base;
    const char *heading; /* help section title, e.g. "options (defaults in parentheses)" */
} qr_opt_table;

#define QR_OPT_TABLE(rows, base, heading)                                                          \
    {                                                                                              \
        (rows), sizeof(rows) / sizeof((rows)[0]), (base), (heading)                                \
    }

/* A command's help: the usage line(s) and description printed above the tables and a footer below
 * (exit codes, notes); NULL parts are left out. */
typedef struct {
    const char *name; /* the subcommand, for messages: "quantize" */
    const char *usage;
    const char *description;
    const char *footer;
} qr_cmd_doc;

#define QR_OPT_MAX_TABLES 5
#define QR_OPT_MAX_ROWS 48

/* What the parser saw. */
typedef struct {
    bool help; /* -h or --help: the help was printed; the command returns QR_OK */
    bool seen[QR_OPT_MAX_TABLES][QR_OPT_MAX_ROWS]; /* seen[t][i]: row i of table t was given */
    int n_positional; /* operands after the options, in order (pointers into argv) */
    char **positional;
} qr_opt_result;

/* Parse argv (argv[0] is the subcommand name) against the tables, in order. Values of options not
 * given are left as the caller initialised them (res->seen tells which were given). Refused with
 * QR_ERR_INPUT and one message: an unknown option, a missing value, a value out of range, an option
 * given twice, a required option missing, more than max_positional operands (-1: any number). With
 * -h or --help the generated help goes to stdout on rank 0 and res->help is set. Not collective;
 * the same on every rank. */
qr_status qr_opts_parse(const qr_cmd_doc *doc, const qr_opt_table *tables, size_t n_tables,
                        int max_positional, int argc, char **argv, qr_opt_result *res);

/* Whether option `name` (a row of the tables) was given. */
bool qr_opts_given(const qr_opt_table *tables, size_t n_tables, const qr_opt_result *res,
                   const char *name);

/* Print the help generated from doc and the tables (rank 0, stdout). */
void qr_opts_print_help(const qr_cmd_doc *doc, const qr_opt_table *tables, size_t n_tables);

/* Custom parsers shared by several commands. */
qr_status qr_opt_parse_grid(const char *opt, const char *value, void *dst);   /* int[2]: "PxQ" */
qr_status qr_opt_parse_method(const char *opt, const char *value, void *dst); /* qr_method_id */

#endif
