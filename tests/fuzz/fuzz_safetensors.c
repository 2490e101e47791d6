/* fuzz_safetensors.c: libFuzzer harness for the safetensors header reader (io/safetensors.c):
 * the input is a whole .safetensors file; every tensor found is converted in full. */
#include <stdlib.h>

#include "io/safetensors.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qr_st_file *f = NULL;
    const char *path = fuzz_file("model.safetensors", data, size);
    if (path && qr_st_open(path, &f) == QR_OK) {
        for (size_t i = 0; i < qr_st_count(f); i++) {
            const qr_st_tensor *t = qr_st_at(f, i);
            float *x = malloc(((size_t)t->numel + 1) * sizeof *x);
            if (x && t->numel < (1 << 20)) {
                qr_st_read_f32(t, x, (size_t)t->numel);
            }
            free(x);
            (void)qr_st_find(f, t->name);
        }
        qr_st_close(&f);
    }
    return 0;
}
