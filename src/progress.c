/* progress.c: rank-0 progress bar / lines / JSON events. */
#include "src/progress.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "src/log.h"

/* The bar's widths: at most BAR_MAX cells, at least BAR_MIN, and it gives way to the item until the
 * item has ITEM_ROOM columns. Without a width from the terminal, COLUMNS_DEFAULT. */
enum { BAR_MAX = 30, BAR_MIN = 6, ITEM_ROOM = 28, COLUMNS_DEFAULT = 80, LINE_MAX = 1024 };

static qr_progress_mode progress_mode = QR_PROGRESS_AUTO;
static FILE *progress_json = NULL;
static FILE *term_out = NULL; /* the terminal the bar goes to; NULL: none found */
static int (*term_columns)(void *) = NULL;
static void *term_ctx = NULL;
static FILE *bar_drawn = NULL; /* where a bar is shown now (erased before other text) */

struct qr_progress {
    char task[32];
    char unit[32];
    int64_t total, done;
    double total_weight, done_weight;
    double t0;
    double eta_at, eta; /* the last step's ETA and when it was computed */
    int bar;            /* redraw a bar in place (terminal) instead of printing lines */
    int no_lines;       /* the caller prints each unit (qr_progress_set_no_lines) */
};

double qr_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void qr_progress_configure(qr_progress_mode mode, FILE *json_log)
{
    progress_mode = mode;
    progress_json = json_log;
}

qr_progress_mode qr_progress_get_mode(void)
{
    return progress_mode;
}

void qr_progress_set_terminal(FILE *out, int (*columns)(void *ctx), void *ctx)
{
    term_out = out;
    term_columns = columns;
    term_ctx = ctx;
}

static FILE *bar_stream(void)
{
    return term_out ? term_out : stderr;
}

static int bar_columns(void)
{
    int c = term_columns ? term_columns(term_ctx) : 0;
    return c > 0 ? c : COLUMNS_DEFAULT;
}

static void format_duration(double s, char *buf, size_t n)
{
    long t = s < 0 ? 0 : (long)(s + 0.5);
    if (t >= 3600) {
        snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    } else if (t >= 60) {
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    } else {
        snprintf(buf, n, "%.1fs", s < 0 ? 0.0 : s);
    }
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
        } else if (c < 0x20) {
            fprintf(f, "\\u%04x", c);
        } else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}

static void json_number(FILE *f, double x)
{
    if (isfinite(x)) {
        fprintf(f, "%.6g", x);
    } else {
        fputs("null", f);
    }
}

/* The start of a JSON event: its name, the wall-clock time (UTC, ISO 8601 with milliseconds, and
 * as seconds since the epoch) and the task. */
static void json_open(const char *event, const char *task)
{
    struct timespec ts;
    struct tm tm;
    char when[40] = "";
    clock_gettime(CLOCK_REALTIME, &ts);
    if (gmtime_r(&ts.tv_sec, &tm)) {
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    }
    fprintf(progress_json,
            "{\"event\":\"%s\",\"time\":\"%s.%03ldZ\",\"t_unix\":%.3f,\"task\":", event, when,
            ts.tv_nsec / 1000000L, (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec);
    json_string(progress_json, task);
}

static int active(void)
{
    return qr_log_rank() == 0;
}

qr_progress *qr_progress_begin(const char *task, int64_t total, const char *unit)
{
    qr_progress *p = calloc(1, sizeof *p);
    if (!p) {
        return NULL;
    }
    snprintf(p->task, sizeof p->task, "%s", task);
    snprintf(p->unit, sizeof p->unit, "%s", unit);
    p->total = total;
    p->total_weight = (double)total;
    p->t0 = qr_now();
    p->eta = -1;
    p->bar = progress_mode == QR_PROGRESS_BAR || (progress_mode == QR_PROGRESS_AUTO && term_out);
    if (active() && progress_json) {
        json_open("begin", task);
        fprintf(progress_json, ",\"total\":%lld,\"unit\":", (long long)total);
        json_string(progress_json, unit);
        fprintf(progress_json, "}\n");
        fflush(progress_json);
    }
    return p;
}

void qr_progress_set_total_weight(qr_progress *p, double total_weight)
{
    if (p && total_weight > 0) {
        p->total_weight = total_weight;
    }
}

void qr_progress_set_no_lines(qr_progress *p)
{
    if (p) {
        p->no_lines = 1;
    }
}

void qr_progress_clear_line(void)
{
    if (bar_drawn) {
        fputs("\r\033[K", bar_drawn);
        fflush(bar_drawn);
        bar_drawn = NULL;
    }
}

/* Append "item: stage" to line within `room` columns: the item loses its start first (a module's
 * name ends with what tells it apart), then the stage its end. */
static void fit_item(char *line, size_t n, int room, const char *item, const char *stage)
{
    size_t used = strlen(line), il = strlen(item);
    int left = room - (int)used, sl = stage ? (int)strlen(stage) + 2 : 0;
    if (left <= 0) {
        return;
    }
    if ((int)il + sl > left && (int)il > 2) {
        int keep = left - sl - 2; /* columns for the item's tail after ".." */
        if (keep >= 4) {
            item += il - (size_t)keep;
            snprintf(line + used, n - used, "..");
            used += 2;
        }
    }
    snprintf(line + used, n - used, "%s%s%s", item, stage ? ": " : "", stage ? stage : "");
}

/* Redraw the bar: fitted to the terminal's width (the line never reaches the last column, so it
 * never wraps), the fill by weight done plus frac of an average remaining unit. */
static void draw_bar(qr_progress *p, const char *item, const char *stage, double frac)
{
    char line[LINE_MAX], counts[64], times[96], el[32], eta[32], bar[BAR_MAX + 1];
    double now = qr_now(), left_units = (double)(p->total - p->done), fill;
    int cols = bar_columns(), fixed, cells, filled;
    FILE *out = bar_stream();
    format_duration(now - p->t0, el, sizeof el);
    if (p->eta >= 0) {
        format_duration(p->eta - (now - p->eta_at), eta, sizeof eta);
    } else {
        snprintf(eta, sizeof eta, "?");
    }
    snprintf(counts, sizeof counts, " %lld/%lld", (long long)p->done, (long long)p->total);
    snprintf(times, sizeof times, "  %s  ETA %s  ", el, eta);
    fill = p->done_weight;
    if (frac > 0 && left_units > 0) {
        fill += (frac < 1 ? frac : 1) * (p->total_weight - p->done_weight) / left_units;
    }
    fill = p->total_weight > 0 ? fill / p->total_weight : 1.0;
    fixed = (int)(strlen(p->task) + 3 + strlen(counts) + strlen(times));
    cells = cols - 1 - fixed - ITEM_ROOM;
    cells = cells > BAR_MAX ? BAR_MAX : (cells < BAR_MIN ? BAR_MIN : cells);
    filled = (int)(cells * (fill > 1 ? 1 : fill));
    for (int i = 0; i < cells; i++) {
        bar[i] = i < filled ? '#' : '.';
    }
    bar[cells] = '\0';
    snprintf(line, sizeof line, "%s [%s]%s%s", p->task, bar, counts, times);
    fit_item(line, sizeof line, cols - 1, item ? item : "", stage);
    if ((int)strlen(line) > cols - 1) {
        line[cols > 1 ? cols - 1 : 0] = '\0';
    }
    fprintf(out, "\r\033[K%s", line);
    fflush(out);
    bar_drawn = out;
}

/* Count the step and return its elapsed time and ETA. */
static void count_step(qr_progress *p, double weight, double *elapsed, double *remaining)
{
    p->done++;
    p->done_weight += weight;
    *elapsed = qr_now() - p->t0;
    *remaining =
        p->done_weight > 0 ? *elapsed * (p->total_weight - p->done_weight) / p->done_weight : 0.0;
    *remaining = *remaining > 0 ? *remaining : 0.0;
    p->eta = *remaining;
    p->eta_at = qr_now();
}

static void json_step(const qr_progress *p, const char *item, double weight, double elapsed,
                      double remaining)
{
    json_open("step", p->task);
    fprintf(progress_json, ",\"done\":%lld,\"total\":%lld,\"unit\":", (long long)p->done,
            (long long)p->total);
    json_string(progress_json, p->unit);
    fprintf(progress_json, ",\"item\":");
    json_string(progress_json, item ? item : "");
    fprintf(progress_json, ",\"weight\":");
    json_number(progress_json, weight);
    fprintf(progress_json, ",\"done_weight\":");
    json_number(progress_json, p->done_weight);
    fprintf(progress_json, ",\"total_weight\":");
    json_number(progress_json, p->total_weight);
    fprintf(progress_json, ",\"elapsed_s\":%.3f,\"eta_s\":%.3f", elapsed, remaining);
}

/* The line (lines mode) or the bar, after a step. */
static void show_step(qr_progress *p, const char *item, const char *detail, double elapsed,
                      double remaining)
{
    char el[32], eta[32];
    if (progress_mode == QR_PROGRESS_QUIET) {
        return;
    }
    if (p->bar) {
        draw_bar(p, item, NULL, 0);
        return;
    }
    if (p->no_lines) {
        return;
    }
    format_duration(elapsed, el, sizeof el);
    format_duration(remaining, eta, sizeof eta);
    fprintf(stderr, "%s [%lld/%lld] %s  %s  elapsed %s  ETA %s\n", p->task, (long long)p->done,
            (long long)p->total, item ? item : "", detail, el, eta);
    fflush(stderr);
}

void qr_progress_step(qr_progress *p, const char *item, double weight, const char *detail_fmt, ...)
{
    char detail[512] = "";
    double elapsed, remaining;
    va_list ap;
    if (!p) {
        return;
    }
    count_step(p, weight, &elapsed, &remaining);
    if (!active()) {
        return;
    }
    if (detail_fmt) {
        va_start(ap, detail_fmt);
        vsnprintf(detail, sizeof detail, detail_fmt, ap);
        va_end(ap);
    }
    if (progress_json) {
        json_step(p, item, weight, elapsed, remaining);
        fprintf(progress_json, ",\"detail\":");
        json_string(progress_json, detail);
        fprintf(progress_json, "}\n");
        fflush(progress_json);
    }
    show_step(p, item, detail, elapsed, remaining);
}

/* One field as text ("label value unit") appended to buf. */
static void field_text(const qr_progress_field *f, char *buf, size_t n)
{
    size_t l = strlen(buf);
    char v[96];
    if (f->kind == QR_PF_STR) {
        snprintf(v, sizeof v, "%s", f->s ? f->s : "");
    } else if (f->kind == QR_PF_INT) {
        snprintf(v, sizeof v, "%lld", (long long)f->i);
    } else {
        /* seconds to the hundredth, as the lines always were; other figures to 4 digits */
        snprintf(v, sizeof v, f->unit && strcmp(f->unit, "s") == 0 ? "%.2f" : "%.4g", f->x);
    }
    snprintf(buf + l, n - l, "%s%s%s%s%s", l ? " " : "", f->label ? f->label : "",
             f->label ? " " : "", v, f->unit ? f->unit : "");
}

void qr_progress_step_fields(qr_progress *p, const char *item, double weight,
                             const qr_progress_field *fields, int n_fields)
{
    char detail[512] = "";
    double elapsed, remaining;
    if (!p) {
        return;
    }
    count_step(p, weight, &elapsed, &remaining);
    if (!active()) {
        return;
    }
    for (int k = 0; k < n_fields; k++) {
        field_text(&fields[k], detail, sizeof detail);
    }
    if (progress_json) {
        json_step(p, item, weight, elapsed, remaining);
        for (int k = 0; k < n_fields; k++) {
            fprintf(progress_json, ",");
            json_string(progress_json, fields[k].key);
            fputc(':', progress_json);
            if (fields[k].kind == QR_PF_STR) {
                json_string(progress_json, fields[k].s ? fields[k].s : "");
            } else if (fields[k].kind == QR_PF_INT) {
                fprintf(progress_json, "%lld", (long long)fields[k].i);
            } else {
                json_number(progress_json, fields[k].x);
            }
        }
        fprintf(progress_json, "}\n");
        fflush(progress_json);
    }
    show_step(p, item, detail, elapsed, remaining);
}

void qr_progress_stage(qr_progress *p, const char *item, const char *stage, double frac)
{
    if (!p || !active() || !p->bar || progress_mode == QR_PROGRESS_QUIET) {
        return;
    }
    draw_bar(p, item, stage, frac);
}

void qr_progress_end(qr_progress **pp, const char *summary_fmt, ...)
{
    qr_progress *p = pp ? *pp : NULL;
    char summary[512] = "", el[32];
    va_list ap;
    if (!p) {
        return;
    }
    if (active()) {
        if (summary_fmt) {
            va_start(ap, summary_fmt);
            vsnprintf(summary, sizeof summary, summary_fmt, ap);
            va_end(ap);
        }
        format_duration(qr_now() - p->t0, el, sizeof el);
        if (progress_json) {
            json_open("end", p->task);
            fprintf(progress_json, ",\"done\":%lld,\"total\":%lld,\"elapsed_s\":%.3f,\"summary\":",
                    (long long)p->done, (long long)p->total, qr_now() - p->t0);
            json_string(progress_json, summary);
            fprintf(progress_json, "}\n");
            fflush(progress_json);
        }
        if (progress_mode != QR_PROGRESS_QUIET) {
            qr_progress_clear_line();
            fprintf(stderr, "%s done: %lld/%lld %s in %s%s%s\n", p->task, (long long)p->done,
                    (long long)p->total, p->unit, el, summary[0] ? "; " : "", summary);
            fflush(stderr);
        }
    }
    free(p);
    *pp = NULL;
}
