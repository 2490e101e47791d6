/* fuzz_tokenizer.c: libFuzzer harness for the llama2.c tokenizer.bin reader (io/tokenizer_bin.c).
 * The first two bytes choose the vocabulary size (1..4096), the rest is the file; a tokenizer
 * read in full also encodes a short text. */
#include "io/tokenizer_bin.h"
#include "src/tokenizer.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qr_tokenizer *t = NULL;
    const char *path;
    int64_t vocab;
    if (size < 2) {
        return 0;
    }
    vocab = 1 + (int64_t)((data[0] | data[1] << 8) % 4096);
    path = fuzz_file("tokenizer.bin", data + 2, size - 2);
    if (path && qr_tokenizer_bin_read(path, vocab, &t) == QR_OK) {
        qr_tokenizer_free(&t);
    }
    return 0;
}
