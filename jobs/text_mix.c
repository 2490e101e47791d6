/* text_mix.c: several calibration texts mixed by weight (jobs/text_mix.h). */
#include "jobs/text_mix.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/alloc.h"

static double weight_sum(const qr_input_opts *o)
{
    double s = 0.0;
    for (int i = 0; i < o->n_texts; i++) {
        s += o->text_weights[i];
    }
    return s;
}

qr_status qr_text_mix_read(qr_llama_job *job, const qr_input_opts *opts, int64_t seq_len,
                           int64_t max_windows, int32_t **ids, size_t *n, int64_t *per_text)
{
    qr_status st = QR_OK;
    int32_t *tid[QR_INPUT_MAX_TEXTS] = {NULL};
    size_t tn[QR_INPUT_MAX_TEXTS] = {0};
    int64_t avail[QR_INPUT_MAX_TEXTS] = {0}, taken[QR_INPUT_MAX_TEXTS] = {0}, total = 0, k;
    size_t wl = (size_t)(seq_len - 1);
    double wsum = weight_sum(opts);
    *ids = NULL;
    *n = 0;
    for (int i = 0; i < opts->n_texts; i++) {
        qr_input_opts one = *opts;
        one.text_path = opts->texts[i];
        one.n_texts = 1;
        one.weighted = false;
        QR_CHECK(qr_llama_job_input(job, &one, &tid[i], &tn[i]));
        avail[i] = (int64_t)(tn[i] / wl);
        total += avail[i];
    }
    total = total < max_windows ? total : max_windows;
    QR_CHECK(qr_malloc(ids, (size_t)(total > 0 ? total : 1) * wl, sizeof **ids, "mixed text"));
    for (k = 0; k < total; k++) {
        int best = -1;
        double best_deficit = 0.0;
        for (int i = 0; i < opts->n_texts; i++) {
            double deficit = (double)(k + 1) * opts->text_weights[i] / wsum - (double)taken[i];
            if (taken[i] < avail[i] && (best < 0 || deficit > best_deficit)) {
                best = i;
                best_deficit = deficit;
            }
        }
        memcpy(*ids + (size_t)k * wl, tid[best] + (size_t)taken[best] * wl, wl * sizeof **ids);
        taken[best]++;
    }
    *n = (size_t)total * wl;
    for (int i = 0; per_text && i < opts->n_texts; i++) {
        per_text[i] = taken[i];
    }
done:
    for (int i = 0; i < opts->n_texts; i++) {
        free(tid[i]);
    }
    if (st != QR_OK) {
        qr_free(ids);
        *n = 0;
    }
    return st;
}

qr_status qr_text_mix_from_list(const qr_opt_list *l, char (*names)[4096], qr_input_opts *in)
{
    in->n_texts = 0;
    in->weighted = false;
    for (int i = 0; i < l->n && i < QR_INPUT_MAX_TEXTS; i++) {
        const char *value = l->v[i], *colon = strrchr(value, ':');
        double w = 1.0;
        in->texts[i] = value;
        if (colon && colon[1]) {
            char *end = NULL;
            double v = strtod(colon + 1, &end);
            if (*end == '\0' && isfinite(v)) {
                if (!(v > 0.0)) {
                    return qr_fail(QR_ERR_INPUT, "--text: weight of '%s' (expected > 0, found %g)",
                                   value, v);
                }
                if ((size_t)(colon - value) >= 4096) {
                    return qr_fail(QR_ERR_INPUT, "--text: path too long (expected < 4096 bytes)");
                }
                memcpy(names[i], value, (size_t)(colon - value));
                names[i][colon - value] = '\0';
                in->texts[i] = names[i];
                in->weighted = true;
                w = v;
            }
        }
        in->text_weights[i] = w;
        in->n_texts++;
    }
    in->text_path = in->n_texts > 0 ? in->texts[0] : NULL;
    return QR_OK;
}

void qr_text_mix_describe(const qr_input_opts *opts, char *buf, size_t size)
{
    double wsum = weight_sum(opts);
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < opts->n_texts && used < size; i++) {
        int k = snprintf(buf + used, size - used, "%s%s:%.4g", i ? "," : "", opts->texts[i],
                         opts->text_weights[i] / wsum);
        used += k > 0 ? (size_t)k : 0;
    }
}
