/* tokenizer.c: SentencePiece BPE over an in-memory vocabulary (see tokenizer.h). Pieces are found
 * through an open-addressing hash table; merges come from a max-heap of candidate pairs whose
 * stale entries are skipped when popped. */
#include "src/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/alloc.h"
#include "src/checked.h"
#include "src/tokenizer_hf.h"

struct qr_tokenizer {
    int64_t n_vocab;
    char **pieces;  /* (n_vocab) piece bytes, each NUL-terminated for convenience */
    int32_t *lens;  /* (n_vocab) */
    float *scores;  /* (n_vocab) */
    int32_t *table; /* (table_size) piece id or -1; open addressing on the piece bytes */
    size_t table_size;
    bool byte_fallback;
    int32_t max_len;  /* longest piece */
    int32_t bos, eos; /* QR_TOKEN_BOS / QR_TOKEN_EOS for llama2.c; the file's for tokenizer.json */
    qr_hf *hf;        /* a tokenizer.json pipeline; NULL for a llama2.c vocabulary */
};

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a 64 */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Id of the piece equal to s (n bytes), or -1. */
static int32_t lookup(const qr_tokenizer *t, const char *s, size_t n)
{
    size_t mask = t->table_size - 1;
    size_t i = (size_t)hash_bytes(s, n) & mask;
    if (n > (size_t)t->max_len) {
        return -1;
    }
    while (t->table[i] >= 0) {
        int32_t id = t->table[i];
        if ((size_t)t->lens[id] == n && memcmp(t->pieces[id], s, n) == 0) {
            return id;
        }
        i = (i + 1) & mask;
    }
    return -1;
}

qr_status qr_tokenizer_create(int64_t n_vocab, const char *const *pieces, const int32_t *lens,
                              const float *scores, qr_tokenizer **out)
{
    qr_status st = QR_OK;
    qr_tokenizer *t = NULL;
    *out = NULL;
    if (n_vocab < 1 || n_vocab > INT32_MAX / 4) {
        return qr_fail(QR_ERR_INPUT, "tokenizer: bad vocabulary size (expected 1..%d, found %lld)",
                       INT32_MAX / 4, (long long)n_vocab);
    }
    QR_CHECK(qr_calloc(&t, 1, sizeof *t, "tokenizer"));
    t->n_vocab = n_vocab;
    t->bos = QR_TOKEN_BOS;
    t->eos = QR_TOKEN_EOS;
    QR_CHECK(qr_calloc(&t->pieces, (size_t)n_vocab, sizeof *t->pieces, "tokenizer pieces"));
    QR_CHECK(qr_calloc(&t->lens, (size_t)n_vocab, sizeof *t->lens, "tokenizer lengths"));
    QR_CHECK(qr_calloc(&t->scores, (size_t)n_vocab, sizeof *t->scores, "tokenizer scores"));
    for (int64_t i = 0; i < n_vocab; i++) {
        if (lens[i] < 0) {
            st = qr_fail(QR_ERR_INPUT, "tokenizer: piece %lld has negative length %d", (long long)i,
                         (int)lens[i]);
            goto done;
        }
        QR_CHECK(qr_malloc(&t->pieces[i], (size_t)lens[i] + 1, 1, "tokenizer piece"));
        memcpy(t->pieces[i], pieces[i], (size_t)lens[i]);
        t->pieces[i][lens[i]] = '\0';
        t->lens[i] = lens[i];
        t->scores[i] = scores[i];
        t->max_len = lens[i] > t->max_len ? lens[i] : t->max_len;
    }
    /* A power of two at least twice the vocabulary keeps probe chains short. */
    t->table_size = 16;
    while (t->table_size < 2 * (size_t)n_vocab) {
        t->table_size *= 2;
    }
    QR_CHECK(qr_malloc(&t->table, t->table_size, sizeof *t->table, "tokenizer table"));
    memset(t->table, 0xff, t->table_size * sizeof *t->table);
    for (int64_t i = 0; i < n_vocab; i++) {
        size_t mask = t->table_size - 1, n = (size_t)t->lens[i];
        size_t h = (size_t)hash_bytes(t->pieces[i], n) & mask;
        if (lookup(t, t->pieces[i], n) >= 0) {
            continue; /* a duplicate: the lowest id keeps the piece */
        }
        while (t->table[h] >= 0) {
            h = (h + 1) & mask;
        }
        t->table[h] = (int32_t)i;
    }
    t->byte_fallback = n_vocab >= 259;
    for (int b = 0; b < 256 && t->byte_fallback; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_fallback = t->lens[3 + b] == 6 && memcmp(t->pieces[3 + b], name, 6) == 0;
    }
    *out = t;
    t = NULL;
done:
    qr_tokenizer_free(&t);
    return st;
}

qr_status qr_tokenizer_create_hf(const qr_hf_spec *spec, qr_tokenizer **out)
{
    qr_status st = QR_OK;
    qr_tokenizer *t = NULL;
    *out = NULL;
    QR_CHECK(qr_calloc(&t, 1, sizeof *t, "tokenizer"));
    QR_CHECK(qr_hf_create(spec, &t->hf));
    t->n_vocab = qr_hf_n_ids(t->hf);
    t->bos = qr_hf_bos(t->hf);
    t->eos = qr_hf_eos(t->hf);
    t->byte_fallback = qr_hf_byte_fallback(t->hf);
    *out = t;
    t = NULL;
done:
    qr_tokenizer_free(&t);
    return st;
}

int32_t qr_tokenizer_bos(const qr_tokenizer *t)
{
    return t->bos;
}

int32_t qr_tokenizer_eos(const qr_tokenizer *t)
{
    return t->eos;
}

const char *qr_tokenizer_kind(const qr_tokenizer *t)
{
    if (!t->hf) {
        return "llama2.c tokenizer.bin (SentencePiece BPE)";
    }
    return qr_hf_is_byte_level(t->hf) ? "tokenizer.json, byte-level BPE"
                                      : "tokenizer.json, SentencePiece-style BPE";
}

void qr_tokenizer_free(qr_tokenizer **pt)
{
    qr_tokenizer *t;
    if (!pt || !*pt) {
        return;
    }
    t = *pt;
    if (t->pieces) {
        for (int64_t i = 0; i < t->n_vocab; i++) {
            free(t->pieces[i]);
        }
    }
    free(t->pieces);
    free(t->lens);
    free(t->scores);
    free(t->table);
    qr_hf_free(&t->hf);
    free(t);
    *pt = NULL;
}

int64_t qr_tokenizer_vocab_size(const qr_tokenizer *t)
{
    return t->n_vocab;
}

bool qr_tokenizer_has_byte_fallback(const qr_tokenizer *t)
{
    return t->byte_fallback;
}

float qr_tokenizer_score(const qr_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab ? t->scores[id] : 0.0f;
}

const char *qr_tokenizer_piece(const qr_tokenizer *t, int32_t id, size_t *len)
{
    if (t->hf) {
        return qr_hf_piece(t->hf, id, len);
    }
    if (id < 0 || id >= t->n_vocab) {
        return NULL;
    }
    if (len) {
        *len = (size_t)t->lens[id];
    }
    return t->pieces[id];
}

/* ---- merging --------------------------------------------------------------------------------- */

typedef struct {
    float score;
    int32_t left;    /* symbol index of the left side (its position in the first split) */
    int32_t right;   /* symbol index of the right side */
    int32_t left_id; /* ids at the time the pair was pushed: a mismatch marks a stale entry */
    int32_t right_id;
    int32_t merged; /* id of the concatenation */
} pair_entry;

/* Heap order: higher score first, then the leftmost pair (llama2.c's strict '>' scan). */
static bool pair_before(const pair_entry *a, const pair_entry *b)
{
    if (a->score != b->score) {
        return a->score > b->score;
    }
    return a->left < b->left;
}

typedef struct {
    pair_entry *v; /* (cap) */
    size_t n, cap;
} pair_heap;

static qr_status heap_push(pair_heap *h, pair_entry e)
{
    size_t i;
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 1024, bytes;
        pair_entry *nv;
        if (!qr_mul_size(cap, sizeof *nv, &bytes) || !(nv = realloc(h->v, bytes))) {
            return qr_fail(QR_ERR_NOMEM, "tokenizer: out of memory for %zu merge candidates", cap);
        }
        h->v = nv;
        h->cap = cap;
    }
    i = h->n++;
    h->v[i] = e;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&h->v[i], &h->v[parent])) {
            break;
        }
        pair_entry tmp = h->v[i];
        h->v[i] = h->v[parent];
        h->v[parent] = tmp;
        i = parent;
    }
    return QR_OK;
}

static pair_entry heap_pop(pair_heap *h)
{
    pair_entry top = h->v[0];
    size_t i = 0;
    h->v[0] = h->v[--h->n];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        if (l < h->n && pair_before(&h->v[l], &h->v[best])) {
            best = l;
        }
        if (r < h->n && pair_before(&h->v[r], &h->v[best])) {
            best = r;
        }
        if (best == i) {
            break;
        }
        pair_entry tmp = h->v[i];
        h->v[i] = h->v[best];
        h->v[best] = tmp;
        i = best;
    }
    return top;
}

typedef struct {
    int32_t *id;   /* (n) current piece id of each symbol */
    int32_t *next; /* (n) next live symbol or -1 */
    int32_t *prev; /* (n) previous live symbol or -1 */
} symbols;

/* Push the pair (a, next[a]) when its concatenation is a piece. buf holds max_len * 2 bytes. */
static qr_status push_pair(const qr_tokenizer *t, const symbols *sy, int32_t a, pair_heap *h,
                           char *buf)
{
    int32_t b, ida, idb, merged;
    size_t la, lb;
    if (a < 0 || (b = sy->next[a]) < 0) {
        return QR_OK;
    }
    ida = sy->id[a];
    idb = sy->id[b];
    la = (size_t)t->lens[ida];
    lb = (size_t)t->lens[idb];
    if (la + lb > (size_t)t->max_len) {
        return QR_OK;
    }
    memcpy(buf, t->pieces[ida], la);
    memcpy(buf + la, t->pieces[idb], lb);
    merged = lookup(t, buf, la + lb);
    if (merged < 0) {
        return QR_OK;
    }
    return heap_push(h, (pair_entry){t->scores[merged], a, b, ida, idb, merged});
}

/* Length of the UTF-8 character starting at text[i]: the lead byte and up to 3 continuation bytes
 * (10xxxxxx), as llama2.c groups them; malformed sequences simply end early. */
static size_t utf8_char_len(const char *text, size_t len, size_t i)
{
    size_t n = 1;
    while (i + n < len && n < 4 && ((unsigned char)text[i + n] & 0xc0) == 0x80) {
        n++;
    }
    return n;
}

qr_status qr_tokenizer_encode(const qr_tokenizer *t, const char *text, size_t len,
                              const qr_encode_opts *opts, int32_t **tokens, size_t *n_out)
{
    qr_status st = QR_OK;
    symbols sy = {NULL, NULL, NULL};
    pair_heap heap = {NULL, 0, 0};
    int32_t *out = NULL;
    char *buf = NULL;
    size_t cap, n = 0, count = 0;
    int32_t head;
    const char *src = opts && opts->source ? opts->source : "text";
    *tokens = NULL;
    *n_out = 0;
    if (t->hf) {
        return qr_hf_encode(t->hf, text, len, src, tokens, n_out);
    }
    if (len == 0) {
        return qr_calloc(tokens, 0, sizeof **tokens, "tokens");
    }
    /* At most one symbol per byte, plus the dummy prefix. */
    if (len >= (size_t)INT32_MAX - 1) {
        return qr_fail(QR_ERR_INPUT, "%s: text too long to tokenize at once (%zu bytes, limit %d)",
                       src, len, INT32_MAX - 2);
    }
    cap = len + 1;
    QR_CHECK(qr_malloc(&sy.id, cap, sizeof(int32_t), "tokenizer symbols"));
    QR_CHECK(qr_malloc(&sy.next, cap, sizeof(int32_t), "tokenizer symbols"));
    QR_CHECK(qr_malloc(&sy.prev, cap, sizeof(int32_t), "tokenizer symbols"));
    QR_CHECK(qr_malloc(&buf, 2 * (size_t)t->max_len + 1, 1, "tokenizer buffer"));
    if (opts && opts->add_dummy_prefix) {
        int32_t sp = lookup(t, " ", 1);
        if (sp < 0) {
            st = qr_fail(QR_ERR_INPUT, "tokenizer: no \" \" piece for the dummy prefix");
            goto done;
        }
        sy.id[n++] = sp;
    }
    for (size_t i = 0; i < len;) {
        size_t cl = utf8_char_len(text, len, i);
        int32_t id = lookup(t, text + i, cl);
        if (id >= 0) {
            sy.id[n++] = id;
        } else if (t->byte_fallback) {
            for (size_t j = 0; j < cl; j++) {
                sy.id[n++] = 3 + (int32_t)(unsigned char)text[i + j];
            }
        } else if (opts && opts->unknown_to_zero) {
            sy.id[n++] = QR_TOKEN_UNK;
        } else {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: byte 0x%02X at offset %zu has no piece in the vocabulary, which has "
                         "no byte fallback (expected only characters the vocabulary holds; "
                         "--unknown-to-zero maps such characters to id 0)",
                         src, (unsigned char)text[i], i);
            goto done;
        }
        i += cl;
    }
    for (size_t i = 0; i < n; i++) {
        sy.prev[i] = (int32_t)i - 1;
        sy.next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        QR_CHECK(push_pair(t, &sy, (int32_t)i, &heap, buf));
    }
    count = n;
    while (heap.n > 0) {
        pair_entry e = heap_pop(&heap);
        int32_t b;
        /* Stale when either side merged since the push (ids grow with every merge, so an id match
         * with the same right neighbour means the pair is unchanged). */
        if (sy.id[e.left] != e.left_id || sy.next[e.left] != e.right ||
            sy.id[e.right] != e.right_id) {
            continue;
        }
        b = e.right;
        sy.id[e.left] = e.merged;
        sy.next[e.left] = sy.next[b];
        if (sy.next[b] >= 0) {
            sy.prev[sy.next[b]] = e.left;
        }
        sy.id[b] = -1;
        sy.next[b] = -1;
        count--;
        QR_CHECK(push_pair(t, &sy, sy.prev[e.left], &heap, buf));
        QR_CHECK(push_pair(t, &sy, e.left, &heap, buf));
    }
    QR_CHECK(qr_malloc(&out, count, sizeof *out, "tokens"));
    head = 0;
    for (size_t k = 0; k < count; k++) {
        out[k] = sy.id[head];
        head = sy.next[head];
    }
    *tokens = out;
    *n_out = count;
    out = NULL;
done:
    free(out);
    free(buf);
    free(sy.id);
    free(sy.next);
    free(sy.prev);
    free(heap.v);
    return st;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

qr_status qr_tokenizer_decode(const qr_tokenizer *t, const int32_t *tokens, size_t n, int32_t prev,
                              char **text, size_t *len)
{
    qr_status st = QR_OK;
    char *out = NULL;
    size_t cap = 0, used = 0;
    *text = NULL;
    *len = 0;
    if (t->hf) {
        return qr_hf_decode(t->hf, tokens, n, prev >= 0 && prev == t->bos, text, len);
    }
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= t->n_vocab) {
            return qr_fail(QR_ERR_INPUT,
                           "token %zu: id %d outside the vocabulary (expected 0..%lld)", i,
                           (int)tokens[i], (long long)t->n_vocab - 1);
        }
        if (!qr_add_size(cap, (size_t)t->lens[tokens[i]], &cap)) {
            return qr_fail(QR_ERR_INPUT, "decode: text size overflows");
        }
    }
    QR_CHECK(qr_malloc(&out, cap + 1, 1, "decoded text"));
    for (size_t i = 0; i < n; i++) {
        int32_t id = tokens[i];
        const char *p = t->pieces[id];
        size_t pl = (size_t)t->lens[id];
        int hi, lo;
        if (id == QR_TOKEN_BOS || id == QR_TOKEN_EOS) {
            prev = id;
            continue;
        }
        if (prev == QR_TOKEN_BOS && pl > 0 && p[0] == ' ') {
            p++, pl--;
        }
        if (pl == 6 && memcmp(p, "<0x", 3) == 0 && p[5] == '>' && (hi = hex_digit(p[3])) >= 0 &&
            (lo = hex_digit(p[4])) >= 0) {
            out[used++] = (char)(hi * 16 + lo);
        } else {
            memcpy(out + used, p, pl);
            used += pl;
        }
        prev = id;
    }
    out[used] = '\0';
    *text = out;
    *len = used;
    out = NULL;
done:
    free(out);
    return st;
}
