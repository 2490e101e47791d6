/* options.c: the declarative option tables (jobs/options.h): getopt_long tables, value parsing
 * into the commands' structs, duplicate and required checks, and the generated help. */
#include "jobs/options.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/cli.h"
#include "src/alloc.h"
#include "src/log.h"
#include "src/quant.h"

/* getopt values of table rows start here (above every character). */
#define QR_OPT_VAL0 256
/* Width of the "  --name ARG" column of the help. */
#define QR_OPT_HELP_COL 21

static size_t total_rows(const qr_opt_table *tables, size_t n_tables)
{
    size_t n = 0;
    for (size_t t = 0; t < n_tables; t++) {
        n += tables[t].n_rows;
    }
    return n;
}

/* Table and row of the getopt value v. */
static void locate(const qr_opt_table *tables, size_t n_tables, int v, size_t *t, size_t *i)
{
    size_t k = (size_t)(v - QR_OPT_VAL0);
    for (*t = 0; *t < n_tables && k >= tables[*t].n_rows; (*t)++) {
        k -= tables[*t].n_rows;
    }
    *i = k;
}

static qr_status store_list(const char *opt, const char *value, qr_opt_list *l)
{
    if (value[0] == '\0') {
        return qr_fail(QR_ERR_INPUT, "%s: expected a value, found an empty string", opt);
    }
    if (l->n >= QR_OPT_LIST_MAX) {
        return qr_fail(QR_ERR_INPUT, "%s: given more than %d times", opt, QR_OPT_LIST_MAX);
    }
    l->v[l->n++] = value;
    return QR_OK;
}

static qr_status store(const qr_opt *o, void *base, const char *value)
{
    char opt[80];
    void *dst = (char *)base + o->offset;
    snprintf(opt, sizeof opt, "--%s", o->name);
    switch (o->type) {
    case QR_OPT_FLAG:
        *(bool *)dst = true;
        return QR_OK;
    case QR_OPT_STR:
        if (value[0] == '\0') {
            return qr_fail(QR_ERR_INPUT, "%s: expected a value, found an empty string", opt);
        }
        *(const char **)dst = value;
        return QR_OK;
    case QR_OPT_INT:
        return qr_cli_int(opt, value, o->imin, o->imax, (int64_t *)dst);
    case QR_OPT_DOUBLE:
        return qr_cli_double(opt, value, o->dmin, o->dmax, (double *)dst);
    case QR_OPT_CUSTOM:
        return o->parse(opt, value, dst);
    case QR_OPT_LIST:
        return store_list(opt, value, dst);
    }
    return qr_fail(QR_ERR_INTERNAL, "%s: unknown option type", opt);
}

/* Every rank reports the same message: the one getopt would print is suppressed (':' first). */
static qr_status parse_loop(const qr_cmd_doc *doc, const qr_opt_table *tables, size_t n_tables,
                            const struct option *longopts, int argc, char **argv,
                            qr_opt_result *res)
{
    char what[320];
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        size_t t, i;
        const qr_opt *o;
        if (c == 'h') {
            res->help = true;
            return QR_OK;
        }
        if (c == ':') {
            snprintf(what, sizeof what, "option '%s' is missing its value", argv[optind - 1]);
            return qr_cli_usage_error(doc->name, what);
        }
        if (c == '?' || c < QR_OPT_VAL0) {
            snprintf(what, sizeof what, "unknown option '%s'", argv[optind - 1]);
            return qr_cli_usage_error(doc->name, what);
        }
        locate(tables, n_tables, c, &t, &i);
        o = &tables[t].rows[i];
        if (res->seen[t][i] && o->type != QR_OPT_LIST) {
            snprintf(what, sizeof what, "option '--%s' given twice", o->name);
            return qr_cli_usage_error(doc->name, what);
        }
        res->seen[t][i] = true;
        QR_TRY(store(o, tables[t].base, optarg ? optarg : ""));
    }
    return QR_OK;
}

/* One message naming every required option ("--model, --calib and --out are required"). */
static qr_status check_required(const qr_cmd_doc *doc, const qr_opt_table *tables, size_t n_tables,
                                const qr_opt_result *res)
{
    char what[320] = "";
    size_t len = 0, n_req = 0, k = 0;
    bool missing = false;
    for (size_t t = 0; t < n_tables; t++) {
        for (size_t i = 0; i < tables[t].n_rows; i++) {
            n_req += tables[t].rows[i].required;
            missing |= tables[t].rows[i].required && !res->seen[t][i];
        }
    }
    if (!missing) {
        return QR_OK;
    }
    for (size_t t = 0; t < n_tables; t++) {
        for (size_t i = 0; i < tables[t].n_rows; i++) {
            if (!tables[t].rows[i].required || len >= sizeof what) {
                continue;
            }
            k++;
            len += (size_t)snprintf(what + len, sizeof what - len, "%s--%s",
                                    k == 1 ? "" : (k == n_req ? " and " : ", "),
                                    tables[t].rows[i].name);
        }
    }
    if (len < sizeof what) {
        snprintf(what + len, sizeof what - len, " %s required", n_req == 1 ? "is" : "are");
    }
    return qr_cli_usage_error(doc->name, what);
}

qr_status qr_opts_parse(const qr_cmd_doc *doc, const qr_opt_table *tables, size_t n_tables,
                        int max_positional, int argc, char **argv, qr_opt_result *res)
{
    qr_status st = QR_OK;
    size_t n = total_rows(tables, n_tables), k = 0;
    struct option *longopts = NULL;
    memset(res, 0, sizeof *res);
    if (n_tables > QR_OPT_MAX_TABLES) {
        return qr_fail(QR_ERR_INTERNAL, "%s: too many option tables", doc->name);
    }
    QR_TRY(qr_calloc(&longopts, n + 2, sizeof *longopts, "option table"));
    for (size_t t = 0; t < n_tables; t++) {
        if (tables[t].n_rows > QR_OPT_MAX_ROWS) {
            st = qr_fail(QR_ERR_INTERNAL, "%s: option table too long", doc->name);
            goto done;
        }
        for (size_t i = 0; i < tables[t].n_rows; i++, k++) {
            longopts[k].name = tables[t].rows[i].name;
            longopts[k].has_arg =
                tables[t].rows[i].type == QR_OPT_FLAG ? no_argument : required_argument;
            longopts[k].val = QR_OPT_VAL0 + (int)k;
        }
    }
    longopts[k].name = "help";
    longopts[k].val = 'h';
    QR_CHECK(parse_loop(doc, tables, n_tables, longopts, argc, argv, res));
    if (res->help) {
        qr_opts_print_help(doc, tables, n_tables);
        goto done;
    }
    res->positional = argv + optind;
    res->n_positional = argc - optind;
    if (max_positional >= 0 && res->n_positional > max_positional) {
        char what[320];
        snprintf(what, sizeof what, "unexpected argument '%s'", argv[optind + max_positional]);
        st = qr_cli_usage_error(doc->name, what);
        goto done;
    }
    QR_CHECK(check_required(doc, tables, n_tables, res));
done:
    free(longopts);
    return st;
}

bool qr_opts_given(const qr_opt_table *tables, size_t n_tables, const qr_opt_result *res,
                   const char *name)
{
    for (size_t t = 0; t < n_tables && t < QR_OPT_MAX_TABLES; t++) {
        for (size_t i = 0; i < tables[t].n_rows; i++) {
            if (strcmp(tables[t].rows[i].name, name) == 0) {
                return res->seen[t][i];
            }
        }
    }
    return false;
}

/* The default of a row: its `def` text, else the value the struct holds before parsing. */
static void print_default(const qr_opt *o, const void *base)
{
    const void *v = (const char *)base + o->offset;
    if (o->def) {
        printf(" (%s)", o->def);
    } else if (o->required) {
        return;
    } else if (o->type == QR_OPT_INT) {
        printf(" (%lld)", (long long)*(const int64_t *)v);
    } else if (o->type == QR_OPT_DOUBLE) {
        printf(" (%g)", *(const double *)v);
    } else if (o->type == QR_OPT_STR && *(const char *const *)v) {
        printf(" (%s)", *(const char *const *)v);
    }
}

/* "  --name ARG" padded to the text column, then the help lines, the default on the last. */
static void print_row(const qr_opt *o, const void *base)
{
    char lead[96];
    const char *h = o->help ? o->help : "";
    int w =
        snprintf(lead, sizeof lead, "  --%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
    fputs(lead, stdout);
    if (w >= QR_OPT_HELP_COL) {
        fputc('\n', stdout);
        w = 0;
    }
    printf("%*s", QR_OPT_HELP_COL - w, "");
    for (const char *p = h; *p; p++) {
        fputc(*p, stdout);
        if (*p == '\n') {
            printf("%*s", QR_OPT_HELP_COL, "");
        }
    }
    print_default(o, base);
    fputc('\n', stdout);
}

void qr_opts_print_help(const qr_cmd_doc *doc, const qr_opt_table *tables, size_t n_tables)
{
    if (qr_log_rank() != 0) {
        return;
    }
    if (doc->usage) {
        printf("usage: %s\n", doc->usage);
    }
    if (doc->description) {
        printf("\n%s", doc->description);
    }
    for (size_t t = 0; t < n_tables; t++) {
        if (tables[t].heading) {
            printf("\n%s:\n", tables[t].heading);
        }
        for (size_t i = 0; i < tables[t].n_rows; i++) {
            print_row(&tables[t].rows[i], tables[t].base);
        }
    }
    printf("  -h, --help%*sthis text\n", QR_OPT_HELP_COL - 12, "");
    if (doc->footer) {
        printf("\n%s", doc->footer);
    }
    fflush(stdout);
}

qr_status qr_opt_parse_grid(const char *opt, const char *value, void *dst)
{
    int *pq = dst; /* (2): P, Q */
    return qr_cli_grid(opt, value, &pq[0], &pq[1]);
}

qr_status qr_opt_parse_method(const char *opt, const char *value, void *dst)
{
    qr_method_id m = qr_method_parse(value);
    if (m == QR_METHOD_COUNT) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: expected rtn, lqer, qera-approx, qera-exact, aser, serq, flrq or srr, "
                       "found '%s'",
                       opt, value);
    }
    *(qr_method_id *)dst = m;
    return QR_OK;
}
