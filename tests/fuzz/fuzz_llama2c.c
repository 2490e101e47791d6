/* fuzz_llama2c.c: libFuzzer harness for the llama2.c checkpoint reader (io/llama2c.c): the input
 * is a whole .bin file (7 x int32 header, then the weights). */
#include "io/llama2c.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qr_l2c_file *f = NULL;
    const char *path = fuzz_file("model.bin", data, size);
    if (path && qr_l2c_open(path, &f) == QR_OK) {
        qr_l2c_close(&f);
    }
    return 0;
}
