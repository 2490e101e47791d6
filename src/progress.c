/* progress.c: rank-0 progress bar / lines / JSON events. */
#include "src/progress.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "src/log.h"

static qr_progress_mode progress_mode = QR_PROGRESS_AUTO;
static FILE *progress_json = NULL;

struct qr_progress {
    char task[32];
    char unit[32];
    int64_t total, done;
    double total_weight, done_weight;
    double t0;
    int bar; /* redraw a bar in place (terminal) instead of printing lines */
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
    p->bar = progress_mode == QR_PROGRESS_BAR ||
             (progress_mode == QR_PROGRESS_AUTO && isatty(STDERR_FILENO));
    if (active() && progress_json) {
        fprintf(progress_json, "{\"event\":\"begin\",\"task\":");
        json_string(progress_json, task);
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

void qr_progress_step(qr_progress *p, const char *item, double weight, const char *detail_fmt, ...)
{
    char detail[512] = "", el[32], eta[32];
    double elapsed, remaining;
    va_list ap;
    if (!p) {
        return;
    }
    p->done++;
    p->done_weight += weight;
    if (!active()) {
        return;
    }
    if (detail_fmt) {
        va_start(ap, detail_fmt);
        vsnprintf(detail, sizeof detail, detail_fmt, ap);
        va_end(ap);
    }
    elapsed = qr_now() - p->t0;
    remaining =
        p->done_weight > 0 ? elapsed * (p->total_weight - p->done_weight) / p->done_weight : 0.0;
    format_duration(elapsed, el, sizeof el);
    format_duration(remaining, eta, sizeof eta);
    if (progress_json) {
        fprintf(progress_json, "{\"event\":\"step\",\"task\":");
        json_string(progress_json, p->task);
        fprintf(progress_json, ",\"done\":%lld,\"total\":%lld,\"item\":", (long long)p->done,
                (long long)p->total);
        json_string(progress_json, item ? item : "");
        fprintf(progress_json, ",\"detail\":");
        json_string(progress_json, detail);
        fprintf(progress_json, ",\"elapsed_s\":%.3f,\"eta_s\":%.3f}\n", elapsed, remaining);
        fflush(progress_json);
    }
    if (progress_mode == QR_PROGRESS_QUIET) {
        return;
    }
    if (p->bar) {
        const int width = 24;
        int filled = p->total > 0 ? (int)(width * p->done / p->total) : width;
        char bar[32];
        for (int i = 0; i < width; i++) {
            bar[i] = i < filled ? '#' : '.';
        }
        bar[width] = '\0';
        fprintf(stderr, "\r\033[K%s [%s] %lld/%lld %s  %s elapsed  ETA %s  %s", p->task, bar,
                (long long)p->done, (long long)p->total, p->unit, el, eta, item ? item : "");
    } else {
        fprintf(stderr, "%s [%lld/%lld] %s  %s  elapsed %s  ETA %s\n", p->task, (long long)p->done,
                (long long)p->total, item ? item : "", detail, el, eta);
    }
    fflush(stderr);
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
            fprintf(progress_json, "{\"event\":\"end\",\"task\":");
            json_string(progress_json, p->task);
            fprintf(progress_json, ",\"done\":%lld,\"total\":%lld,\"elapsed_s\":%.3f,\"summary\":",
                    (long long)p->done, (long long)p->total, qr_now() - p->t0);
            json_string(progress_json, summary);
            fprintf(progress_json, "}\n");
            fflush(progress_json);
        }
        if (progress_mode != QR_PROGRESS_QUIET) {
            if (p->bar) {
                fputc('\n', stderr);
            }
            fprintf(stderr, "%s done: %lld/%lld %s in %s%s%s\n", p->task, (long long)p->done,
                    (long long)p->total, p->unit, el, summary[0] ? "; " : "", summary);
            fflush(stderr);
        }
    }
    free(p);
    *pp = NULL;
}
