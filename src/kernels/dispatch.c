/* dispatch.c: which implementation of the W4 product runs (chosen from the CPU's features, or
 * forced by name), and the public entry points that check their inputs, lay out the activations
 * for the prepared weights and call it. */
#include <stdlib.h>
#include <string.h>

#include "src/kernels/internal.h"

static const char *const kernel_names[QR_KERNEL_COUNT] = {"ref", "avx2", "avx512"};

/* What each path needs from the CPU, for the message when it is missing. */
static const char *const kernel_needs[QR_KERNEL_COUNT] = {
    "nothing",
    "AVX2 and FMA",
    "AVX-512 F, BW, VL and VNNI (with AVX2 and FMA)",
};

static const qr_w4_fn kernel_fns[QR_KERNEL_COUNT] = {qr_w4_ref, qr_w4_avx2, qr_w4_avx512};

static int active_kernel = -1; /* -1: not chosen yet, auto on first use */
static unsigned hidden_mask;   /* test hook: paths to pretend the CPU lacks */

const char *qr_kernel_name(qr_kernel_id k)
{
    return ((int)k >= 0 && k < QR_KERNEL_COUNT) ? kernel_names[k] : "unknown";
}

bool qr_kernel_cpu_has(qr_kernel_id k)
{
    bool avx2;
    if ((int)k < 0 || k >= QR_KERNEL_COUNT) {
        return false;
    }
    if (k == QR_KERNEL_REF) {
        return true;
    }
    if (hidden_mask & (1u << k)) {
        return false;
    }
    __builtin_cpu_init();
    avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (k == QR_KERNEL_AVX2) {
        return avx2;
    }
    return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}

void qr_kernel_test_hide_cpu(unsigned mask)
{
    hidden_mask = mask & ~(1u << QR_KERNEL_REF);
    if (active_kernel >= 0 && !qr_kernel_cpu_has((qr_kernel_id)active_kernel)) {
        active_kernel = -1;
    }
}

static qr_kernel_id best_kernel(void)
{
    for (int k = QR_KERNEL_COUNT - 1; k > 0; k--) {
        if (qr_kernel_cpu_has((qr_kernel_id)k)) {
            return (qr_kernel_id)k;
        }
    }
    return QR_KERNEL_REF;
}

qr_status qr_kernel_select(const char *name)
{
    if (name && strcmp(name, "auto") == 0) {
        active_kernel = (int)best_kernel();
        return QR_OK;
    }
    for (int k = 0; k < QR_KERNEL_COUNT; k++) {
        if (name && strcmp(name, kernel_names[k]) == 0) {
            if (!qr_kernel_cpu_has((qr_kernel_id)k)) {
                return qr_fail(QR_ERR_INPUT,
                               "--kernel %s: this CPU cannot run it (expected %s, found a CPU "
                               "without them; best available: %s)",
                               name, kernel_needs[k], kernel_names[best_kernel()]);
            }
            active_kernel = k;
            return QR_OK;
        }
    }
    return qr_fail(QR_ERR_INPUT,
                   "--kernel: unknown implementation (expected ref, avx2, avx512 or auto, found "
                   "%s)",
                   name ? name : "(none)");
}

qr_kernel_id qr_kernel_active(void)
{
    if (active_kernel < 0) {
        active_kernel = (int)best_kernel();
    }
    return (qr_kernel_id)active_kernel;
}

/* Whether activation groupings g1 and g2 cut columns 0..cols-1 the same way. */
static bool same_grouping(int64_t g1, int64_t g2, int64_t cols)
{
    bool whole1 = g1 == 0 || g1 >= cols, whole2 = g2 == 0 || g2 >= cols;
    return (whole1 && whole2) || g1 == g2;
}

qr_status qr_kernel_w4_with(qr_kernel_id k, const qr_kweight *W, const qr_qact *A, float *Y,
                            bool accumulate)
{
    qr_kact P = {0};
    void *storage = NULL;
    if (!qr_kernel_cpu_has(k)) {
        return qr_fail(QR_ERR_INPUT, "kernel %s: this CPU cannot run it (expected %s)",
                       qr_kernel_name(k),
                       (int)k >= 0 && k < QR_KERNEL_COUNT ? kernel_needs[k] : "?");
    }
    if (A->d < W->cols) {
        return qr_fail(QR_ERR_INPUT,
                       "W4 product: activations too narrow (expected at least %lld channels, "
                       "found %lld)",
                       (long long)W->cols, (long long)A->d);
    }
    if (!same_grouping(A->group, W->act_group, W->cols)) {
        return qr_fail(QR_ERR_INPUT,
                       "W4 product: activation grouping (expected %lld as prepared, found %lld)",
                       (long long)W->act_group, (long long)A->group);
    }
    if (A->n == 0 || W->rows == 0) {
        return QR_OK;
    }
    if (k != QR_KERNEL_REF) {
        QR_TRY(qr_kact_make(W, A, &P, &storage));
    }
    kernel_fns[k](W, A, &P, Y, accumulate);
    free(storage);
    return QR_OK;
}

qr_status qr_kernel_w4(const qr_kweight *W, const qr_qact *A, float *Y, bool accumulate)
{
    return qr_kernel_w4_with(qr_kernel_active(), W, A, Y, accumulate);
}
