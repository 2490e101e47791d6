/* prepare.c: the data the INT4 kernels run on: quantized activations (qr_qact), the prepared
 * weight tiles (qr_kweight, layout in src/kernels/internal.h) and the per-call activation layout
 * matching them (qr_kact). */
#include <stdlib.h>
#include <string.h>

#include "src/alloc.h"
#include "src/checked.h"
#include "src/kernels/internal.h"
#include "src/quant.h"

/* Longest segment whose int32 sum cannot overflow: |code - off| <= 15 and |x| <= 127, and the
 * raw sum sum(code * x) is bounded the same way, so 15 * 127 * 2^20 < 2^31. */
#define QR_KSEG_MAX (INT64_C(1) << 20)

qr_status qr_qact_alloc(qr_qact *a, int64_t n, int64_t d, int bits, int64_t group)
{
    qr_status st = QR_OK;
    size_t n_codes, n_scales;
    memset(a, 0, sizeof *a);
    if (bits != 8 && bits != 4) {
        return qr_fail(QR_ERR_INPUT, "quantized activations: bits (expected 4 or 8, found %d)",
                       bits);
    }
    if (n < 0 || d < 1 || group < 0) {
        return qr_fail(QR_ERR_INPUT,
                       "quantized activations: bad shape (expected n >= 0, d >= 1, group >= 0, "
                       "found %lld x %lld, group %lld)",
                       (long long)n, (long long)d, (long long)group);
    }
    a->n = n;
    a->d = d;
    a->bits = bits;
    a->group = (group >= d) ? 0 : group;
    a->n_groups = qr_quant_n_groups(d, a->group);
    if (!qr_mul_size((size_t)n, (size_t)d, &n_codes) ||
        !qr_mul_size((size_t)n, (size_t)a->n_groups, &n_scales)) {
        memset(a, 0, sizeof *a);
        return qr_fail(QR_ERR_INPUT, "quantized activations: size overflows (%lld x %lld)",
                       (long long)n, (long long)d);
    }
    QR_CHECK(qr_malloc(&a->codes, n_codes, 1, "activation codes"));
    QR_CHECK(qr_malloc(&a->scales, n_scales, sizeof(float), "activation scales"));
done:
    if (st != QR_OK) {
        qr_qact_free(a);
    }
    return st;
}

qr_status qr_qact_quantize(qr_qact *a, const float *X, int64_t n, int64_t d, int bits,
                           int64_t group)
{
    qr_status st = QR_OK;
    QR_TRY(qr_qact_alloc(a, n, d, bits, group));
    QR_CHECK(qr_qact_fill(a, X));
done:
    if (st != QR_OK) {
        qr_qact_free(a);
    }
    return st;
}

void qr_qact_dequantize(const qr_qact *a, float *Xdeq)
{
    for (int64_t t = 0; t < a->n; t++) {
        const int8_t *c = a->codes + t * a->d;        /* (d) */
        const float *s = a->scales + t * a->n_groups; /* (n_groups) */
        for (int64_t j = 0; j < a->d; j++) {
            Xdeq[t * a->d + j] = (float)c[j] * s[qr_kact_group_of(j, a->group)];
        }
    }
}

void qr_qact_free(qr_qact *a)
{
    if (!a) {
        return;
    }
    free(a->codes);
    free(a->scales);
    memset(a, 0, sizeof *a);
}

static qr_status check_qweight(const qr_qweight *W)
{
    if (W->rows < 0 || W->cols < 1 || W->group < 1 || W->group > W->cols) {
        return qr_fail(QR_ERR_INPUT,
                       "quantized matrix: bad shape (expected rows >= 0, cols >= 1, 1 <= group <= "
                       "cols, found %lld x %lld, group %lld)",
                       (long long)W->rows, (long long)W->cols, (long long)W->group);
    }
    if (W->n_groups != (W->cols + W->group - 1) / W->group) {
        return qr_fail(QR_ERR_INPUT, "quantized matrix: group count (expected %lld, found %lld)",
                       (long long)((W->cols + W->group - 1) / W->group), (long long)W->n_groups);
    }
    if (!W->packed || !W->scales || (W->asym && !W->zeros)) {
        return qr_fail(QR_ERR_INPUT, "quantized matrix: missing codes, scales or zero points");
    }
    return QR_OK;
}

/* End of the segment starting at column j: the next weight-group or activation-group boundary. */
static int64_t segment_end(int64_t j, int64_t cols, int64_t wgroup, int64_t agroup)
{
    int64_t end = (j / wgroup + 1) * wgroup;
    if (agroup > 0) {
        int64_t aend = (j / agroup + 1) * agroup;
        end = aend < end ? aend : end;
    }
    return end < cols ? end : cols;
}

/* Segments of one source matrix (0 main, 1 side) over its columns 0..cols-1, appended at
 * segment index *n_seg and chunk *chunk; with out_only counting (kw arrays not yet allocated). */
static qr_status add_segments(qr_kweight *kw, const qr_qweight *Q, int src, int64_t group_base,
                              bool count_only, int64_t *n_seg, int64_t *chunk)
{
    for (int64_t j = 0; j < Q->cols;) {
        int64_t end = segment_end(j, Q->cols, Q->group, kw->act_group);
        if (end - j > QR_KSEG_MAX) {
            return qr_fail(QR_ERR_INPUT,
                           "quantized matrix: segment too long for int32 sums (expected at most "
                           "%lld columns, found %lld)",
                           (long long)QR_KSEG_MAX, (long long)(end - j));
        }
        if (!count_only) {
            int64_t s = *n_seg;
            kw->seg_start[s] = j;
            kw->seg_end[s] = end;
            kw->seg_pchunk[s] = *chunk;
            kw->seg_src[s] = (uint8_t)src;
            kw->seg_wgroup[s] = (int32_t)(j / Q->group);
            kw->seg_sgroup[s] = (int32_t)(group_base + j / Q->group);
            kw->seg_agroup[s] = (int32_t)qr_kact_group_of(j, kw->act_group);
        }
        *chunk += (end - j + QR_KCHUNK - 1) / QR_KCHUNK;
        (*n_seg)++;
        j = end;
    }
    return QR_OK;
}

/* The main matrix's segments, then the side matrix's (acting on the first side->cols channels). */
static qr_status make_segments(qr_kweight *kw)
{
    int64_t n_seg = 0, chunk = 0;
    QR_TRY(add_segments(kw, kw->src, 0, 0, true, &n_seg, &chunk));
    if (kw->side) {
        QR_TRY(add_segments(kw, kw->side, 1, kw->src->n_groups, true, &n_seg, &chunk));
    }
    kw->n_seg = n_seg;
    QR_TRY(qr_malloc(&kw->seg_start, (size_t)n_seg, sizeof(int64_t), "kernel segments"));
    QR_TRY(qr_malloc(&kw->seg_end, (size_t)n_seg, sizeof(int64_t), "kernel segments"));
    QR_TRY(qr_malloc(&kw->seg_pchunk, (size_t)n_seg + 1, sizeof(int64_t), "kernel segments"));
    QR_TRY(qr_malloc(&kw->seg_src, (size_t)n_seg, 1, "kernel segments"));
    QR_TRY(qr_malloc(&kw->seg_wgroup, (size_t)n_seg, sizeof(int32_t), "kernel segments"));
    QR_TRY(qr_malloc(&kw->seg_sgroup, (size_t)n_seg, sizeof(int32_t), "kernel segments"));
    QR_TRY(qr_malloc(&kw->seg_agroup, (size_t)n_seg, sizeof(int32_t), "kernel segments"));
    n_seg = 0;
    chunk = 0;
    QR_TRY(add_segments(kw, kw->src, 0, 0, false, &n_seg, &chunk));
    if (kw->side) {
        QR_TRY(add_segments(kw, kw->side, 1, kw->src->n_groups, false, &n_seg, &chunk));
    }
    kw->seg_pchunk[n_seg] = chunk;
    kw->n_chunks = chunk;
    return QR_OK;
}

/* aligned_alloc of n bytes (a multiple of 64), zeroed. */
static qr_status alloc_tiles(uint8_t **out, size_t n)
{
    *out = aligned_alloc(64, n == 0 ? 64 : n);
    if (!*out) {
        return qr_fail(QR_ERR_NOMEM, "kernel weight tiles: out of memory (%zu bytes)", n);
    }
    memset(*out, 0, n == 0 ? 64 : n);
    return QR_OK;
}

static void fill_tiles(qr_kweight *kw)
{
    for (int64_t i = 0; i < kw->rows; i++) {
        int64_t b = i / QR_KROWS, r = i % QR_KROWS;
        for (int64_t s = 0; s < kw->n_seg; s++) {
            const qr_qweight *Q = kw->seg_src[s] ? kw->side : kw->src;
            for (int64_t j = kw->seg_start[s]; j < kw->seg_end[s]; j++) {
                int64_t p = kw->seg_pchunk[s] * QR_KCHUNK + (j - kw->seg_start[s]);
                int64_t c = p / QR_KCHUNK, in = p % QR_KCHUNK;
                uint8_t *byte = kw->tiles + (b * kw->n_chunks + c) * 64 + 4 * r + (in % 4);
                unsigned code = qr_qweight_get_code(Q, i, j);
                *byte |= (uint8_t)(in < 4 ? code : code << 4);
            }
        }
        for (int src = 0; src < 2; src++) {
            const qr_qweight *Q = src ? kw->side : kw->src;
            int64_t base = src ? kw->src->n_groups : 0;
            for (int64_t g = 0; Q && g < Q->n_groups; g++) {
                int64_t k = qr_kw_scale_index(kw, b, base + g) + r;
                kw->scales_b[k] = Q->scales[i * Q->n_groups + g];
                if (kw->zeros_b) { /* a symmetric matrix's offset is 8 */
                    kw->zeros_b[k] = Q->asym ? Q->zeros[i * Q->n_groups + g] : 8;
                }
            }
        }
    }
}

qr_status qr_kweight_prepare(const qr_qweight *W, int64_t act_group, qr_kweight **out)
{
    return qr_kweight_prepare_pair(W, NULL, act_group, out);
}

qr_status qr_kweight_prepare_pair(const qr_qweight *W, const qr_qweight *side, int64_t act_group,
                                  qr_kweight **out)
{
    qr_status st = QR_OK;
    qr_kweight *kw = NULL;
    size_t n_tiles, n_scales;
    *out = NULL;
    QR_TRY(check_qweight(W));
    if (side) {
        QR_TRY(check_qweight(side));
        if (side->rows != W->rows || side->cols > W->cols) {
            return qr_fail(QR_ERR_INPUT,
                           "side matrix: shape (expected %lld rows and at most %lld columns, "
                           "found %lld x %lld)",
                           (long long)W->rows, (long long)W->cols, (long long)side->rows,
                           (long long)side->cols);
        }
    }
    if (act_group < 0) {
        return qr_fail(QR_ERR_INPUT, "kernel weights: activation group (expected >= 0, found %lld)",
                       (long long)act_group);
    }
    QR_TRY(qr_calloc(&kw, 1, sizeof *kw, "kernel weights"));
    kw->src = W;
    kw->side = side;
    kw->rows = W->rows;
    kw->cols = W->cols;
    kw->rows_p = (W->rows + QR_KROWS - 1) / QR_KROWS * QR_KROWS;
    kw->act_group = act_group;
    kw->asym = W->asym || (side && side->asym);
    kw->n_wgroups = W->n_groups + (side ? side->n_groups : 0);
    QR_CHECK(make_segments(kw));
    if (!qr_mul3_size((size_t)kw->rows_p, (size_t)kw->n_chunks, QR_KCHUNK / 2, &n_tiles) ||
        !qr_mul_size((size_t)kw->rows_p, (size_t)kw->n_wgroups, &n_scales)) {
        st = qr_fail(QR_ERR_INPUT, "kernel weights: size overflows (%lld x %lld)",
                     (long long)W->rows, (long long)W->cols);
        goto done;
    }
    QR_CHECK(alloc_tiles(&kw->tiles, n_tiles));
    QR_CHECK(qr_calloc(&kw->scales_b, n_scales, sizeof(float), "kernel weight scales"));
    if (kw->asym) {
        QR_CHECK(qr_calloc(&kw->zeros_b, n_scales, 1, "kernel weight zero points"));
    }
    fill_tiles(kw);
    *out = kw;
    kw = NULL;
done:
    qr_kweight_free(&kw);
    return st;
}

void qr_kweight_free(qr_kweight **kw)
{
    if (!kw || !*kw) {
        return;
    }
    free((*kw)->seg_start);
    free((*kw)->seg_end);
    free((*kw)->seg_pchunk);
    free((*kw)->seg_src);
    free((*kw)->seg_wgroup);
    free((*kw)->seg_sgroup);
    free((*kw)->seg_agroup);
    free((*kw)->tiles);
    free((*kw)->scales_b);
    free((*kw)->zeros_b);
    free(*kw);
    *kw = NULL;
}

qr_status qr_kact_make(const qr_kweight *W, const qr_qact *A, qr_kact *P, void **storage)
{
    size_t kp = (size_t)W->n_chunks * QR_KCHUNK, n_codes, n_seg_all, bytes;
    int8_t *codes;
    int32_t *xsum;
    float *xs;
    *storage = NULL;
    /* codes first: kp is a multiple of 8, so the int32 and float arrays after them are aligned */
    if (!qr_mul_size((size_t)A->n, kp, &n_codes) ||
        !qr_mul_size((size_t)A->n, (size_t)W->n_seg, &n_seg_all) ||
        !qr_mul_size(n_seg_all, sizeof(int32_t) + sizeof(float), &bytes) ||
        !qr_add_size(bytes, n_codes, &bytes)) {
        return qr_fail(QR_ERR_INPUT, "kernel activations: size overflows (%lld tokens)",
                       (long long)A->n);
    }
    QR_TRY(qr_malloc(storage, bytes, 1, "kernel activations"));
    codes = *storage;
    xsum = (int32_t *)(void *)(codes + n_codes);
    xs = (float *)(void *)(xsum + n_seg_all);
    for (int64_t t = 0; t < A->n; t++) {
        const int8_t *x = A->codes + t * A->d;         /* (d) */
        const float *sc = A->scales + t * A->n_groups; /* (n_groups) */
        int8_t *dst = codes + (size_t)t * kp;          /* (kp) */
        for (int64_t s = 0; s < W->n_seg; s++) {
            int64_t j0 = W->seg_start[s], len = W->seg_end[s] - j0;
            int64_t p0 = W->seg_pchunk[s] * QR_KCHUNK;
            int64_t plen = (W->seg_pchunk[s + 1] - W->seg_pchunk[s]) * QR_KCHUNK;
            int32_t sum = 0;
            memcpy(dst + p0, x + j0, (size_t)len);
            memset(dst + p0 + len, 0, (size_t)(plen - len));
            for (int64_t j = 0; j < len; j++) {
                sum += x[j0 + j];
            }
            xsum[t * W->n_seg + s] = sum;
            xs[t * W->n_seg + s] = sc[W->seg_agroup[s]];
        }
    }
    P->n = A->n;
    P->kp = (int64_t)kp;
    P->codes = codes;
    P->xsum = xsum;
    P->xs = xs;
    return QR_OK;
}
