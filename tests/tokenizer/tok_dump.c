/* tok_dump.c: the ids qrecon's tokenizer gives, in the format of encode.mjs, for the tokenizer
 * tests: `tok_dump TOKENIZER TEXT lines|whole` prints one line of space-separated ids per line of
 * TEXT (without its "\n"; a final empty line dropped) or for the whole file. TOKENIZER is a
 * tokenizer.json or a llama2.c tokenizer.bin (then a fourth argument gives the vocabulary size).
 * `tok_dump TOKENIZER --bos-eos` prints "BOS EOS". Exit 2 with the message on an encoding error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fs.h"
#include "io/tokenizer_bin.h"
#include "io/tokenizer_json.h"

static int print_ids(const qr_tokenizer *t, const char *s, size_t n, const char *src, FILE *out)
{
    int32_t *ids = NULL;
    size_t m = 0;
    qr_encode_opts eo = {true, false, src};
    if (qr_tokenizer_encode(t, s, n, &eo, &ids, &m) != QR_OK) {
        fprintf(stderr, "%s\n", qr_errmsg());
        return 2;
    }
    for (size_t i = 0; i < m; i++) {
        fprintf(out, i ? " %d" : "%d", (int)ids[i]);
    }
    fputc('\n', out);
    free(ids);
    return 0;
}

int main(int argc, char **argv)
{
    qr_tokenizer *t = NULL;
    char *text = NULL;
    size_t size = 0;
    int rc = 0;
    size_t plen;
    if (argc < 3) {
        fprintf(stderr,
                "usage: tok_dump TOKENIZER TEXT lines|whole [VOCAB] | TOKENIZER --bos-eos\n");
        return 2;
    }
    plen = strlen(argv[1]);
    if (plen > 5 && strcmp(argv[1] + plen - 5, ".json") == 0) {
        if (qr_tokenizer_json_read(argv[1], &t) != QR_OK) {
            fprintf(stderr, "%s\n", qr_errmsg());
            return 2;
        }
    } else if (argc < 5 || qr_tokenizer_bin_read(argv[1], atoll(argv[4]), &t) != QR_OK) {
        fprintf(stderr, "%s\n",
                argc < 5 ? "a tokenizer.bin needs the vocabulary size" : qr_errmsg());
        return 2;
    }
    if (strcmp(argv[2], "--bos-eos") == 0) {
        printf("%d %d\n", (int)qr_tokenizer_bos(t), (int)qr_tokenizer_eos(t));
        qr_tokenizer_free(&t);
        return 0;
    }
    if (argc < 4 || qr_fs_read_all(argv[2], (size_t)1 << 30, &text, &size) != QR_OK) {
        fprintf(stderr, "%s\n", argc < 4 ? "expected lines or whole" : qr_errmsg());
        qr_tokenizer_free(&t);
        return 2;
    }
    if (strcmp(argv[3], "whole") == 0) {
        rc = print_ids(t, text, size, argv[2], stdout);
    } else {
        size_t start = 0;
        while (start < size && rc == 0) {
            const char *nl = memchr(text + start, '\n', size - start);
            size_t end = nl ? (size_t)(nl - text) : size;
            rc = print_ids(t, text + start, end - start, argv[2], stdout);
            start = end + 1;
        }
    }
    free(text);
    qr_tokenizer_free(&t);
    return rc;
}
