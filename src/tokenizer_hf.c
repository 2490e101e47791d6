/* tokenizer_hf.c: the tokenizer.json pipeline (see tokenizer_hf.h). Pieces and merges live in
 * open-addressing hash tables; BPE uses a min-heap of candidate pairs (rank, then the original
 * position of the left symbol) whose stale entries are skipped when popped. */
#include "src/tokenizer_hf.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "src/alloc.h"
#include "src/checked.h"

/* GPT-2's pre-tokenizer pattern, used by ByteLevel with use_regex. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct {
    char *p;
    size_t n, cap;
} buf_t;

typedef struct {
    int32_t *p;
    size_t n, cap;
} ivec_t;

typedef struct {
    size_t off, len;
} span_t;

typedef struct {
    span_t *p;
    size_t n, cap;
} svec_t;

/* Grow *p (elements of size sz) to hold at least need elements. */
static qr_status grow(void **p, size_t *cap, size_t need, size_t sz)
{
    size_t c = *cap ? *cap : 64, bytes;
    void *np;
    if (need <= *cap) {
        return QR_OK;
    }
    while (c < need) {
        if (!qr_mul_size(c, 2, &c)) {
            return qr_fail(QR_ERR_NOMEM, "tokenizer: buffer size overflows");
        }
    }
    if (!qr_mul_size(c, sz, &bytes) || !(np = realloc(*p, bytes))) {
        return qr_fail(QR_ERR_NOMEM, "tokenizer: out of memory for %zu elements", c);
    }
    *p = np;
    *cap = c;
    return QR_OK;
}

static qr_status buf_put(buf_t *b, const char *s, size_t n)
{
    size_t need;
    if (!qr_add_size(b->n, n, &need) || !qr_add_size(need, 1, &need)) {
        return qr_fail(QR_ERR_NOMEM, "tokenizer: text size overflows");
    }
    QR_TRY(grow((void **)&b->p, &b->cap, need, 1));
    if (n) {
        memcpy(b->p + b->n, s, n);
    }
    b->n += n;
    b->p[b->n] = '\0';
    return QR_OK;
}

static qr_status ivec_push(ivec_t *v, int32_t x)
{
    QR_TRY(grow((void **)&v->p, &v->cap, v->n + 1, sizeof *v->p));
    v->p[v->n++] = x;
    return QR_OK;
}

static qr_status svec_push(svec_t *v, size_t off, size_t len)
{
    QR_TRY(grow((void **)&v->p, &v->cap, v->n + 1, sizeof *v->p));
    v->p[v->n++] = (span_t){off, len};
    return QR_OK;
}

/* ---- UTF-8 ------------------------------------------------------------------------------------
 */

/* Length of the valid UTF-8 character at s[0..n) (1..4) and its code point, or 0 when invalid
 * (bad lead byte, truncated, overlong, surrogate or beyond U+10FFFF). */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    uint32_t c = s[0];
    size_t len;
    uint32_t min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2, c &= 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, c &= 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, c &= 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        c = c << 6 | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
        return 0;
    }
    *cp = c;
    return len;
}

static size_t utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Unicode White_Space plus U+FEFF: what JavaScript's trimStart/trimEnd remove (lstrip/rstrip). */
static bool js_space(uint32_t c)
{
    return (c >= 9 && c <= 13) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000 || c == 0xfeff;
}

/* ---- the pipeline's data ----------------------------------------------------------------------
 */

typedef struct {
    int32_t n;
    char **s;
    size_t *len;
    int32_t *added; /* index into qr_hf.added */
    int32_t *order; /* (n) entries sorted by first byte, then longest first */
    int32_t start[257];
} matcher_t;

typedef struct {
    qr_hf_pre_kind kind;
    pcre2_code *re; /* SPLIT, or BYTE_LEVEL with use_regex */
    bool add_prefix_space;
    char *replacement;
    qr_hf_prepend prepend;
} pre_t;

typedef struct {
    qr_hf_norm_kind kind;
    char *a, *b;
    size_t a_len, b_len;
} norm_t;

struct qr_hf {
    int64_t n_ids;
    char **piece;   /* (n_ids) NUL-terminated, NULL when the id has none */
    size_t *plen;   /* (n_ids) */
    int32_t *table; /* (table_size) id or -1, keyed by piece bytes */
    size_t table_size, max_len;
    uint64_t *mkey; /* (msize) merge key ((left << 24 | right) + 1), 0 when empty */
    int32_t *mrank; /* (msize) */
    int32_t *mres;  /* (msize) id of the concatenation */
    size_t msize;
    norm_t *norm;
    int64_t n_norm;
    pre_t *pre;
    int64_t n_pre;
    qr_hf_added *added; /* contents point into added_store */
    int64_t n_added;
    char **added_store;
    matcher_t raw, normalized;
    int32_t unk, bos, eos;
    int32_t byte_ids[256]; /* ids of "<0xXX>", -1 when absent */
    bool byte_fallback, fuse_unk, ignore_merges, byte_level;
    char bl[256][4]; /* byte-level: UTF-8 of the character byte b maps to */
    uint8_t bl_len[256];
    int16_t bl_rev[324]; /* byte-level: code point (< 324) -> byte, -1 when none */
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

/* Slot of the piece s (n bytes): where its id is, or the empty slot where it would go. */
static size_t find_slot(const qr_hf *h, const char *s, size_t n)
{
    size_t mask = h->table_size - 1, i = (size_t)hash_bytes(s, n) & mask;
    while (h->table[i] >= 0) {
        int32_t id = h->table[i];
        if (h->plen[id] == n && memcmp(h->piece[id], s, n) == 0) {
            return i;
        }
        i = (i + 1) & mask;
    }
    return i;
}

static int32_t lookup(const qr_hf *h, const char *s, size_t n)
{
    if (n > h->max_len) {
        return -1;
    }
    return h->table[find_slot(h, s, n)];
}

static uint64_t merge_key(int32_t l, int32_t r)
{
    return ((uint64_t)(uint32_t)l << 24 | (uint64_t)(uint32_t)r) + 1;
}

static size_t merge_slot(const qr_hf *h, uint64_t key)
{
    size_t mask = h->msize - 1, i = (size_t)(key * 0x9e3779b97f4a7c15ull >> 17) & mask;
    while (h->mkey[i] != 0 && h->mkey[i] != key) {
        i = (i + 1) & mask;
    }
    return i;
}

static char *dup_bytes(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        if (n) {
            memcpy(p, s, n);
        }
        p[n] = '\0';
    }
    return p;
}

/* Rewrite a tokenizer.json regular expression for PCRE2 as @huggingface/tokenizers rewrites it for
 * JavaScript: \s / \S as White_Space, ASCII-only case folding in (?i:...) groups. */
static qr_status rewrite_pattern(const char *in, char **out)
{
    qr_status st = QR_OK;
    buf_t b = {NULL, 0, 0};
    bool fold_stack[64], fold = false, in_class = false;
    int depth = 0;
    size_t n = strlen(in);
    for (size_t i = 0; i < n;) {
        char c = in[i];
        if (c == '\\' && i + 1 < n) {
            char e = in[i + 1];
            if (e == 's' || e == 'S') {
                QR_CHECK(buf_put(&b, e == 's' ? "\\p{White_Space}" : "\\P{White_Space}", 15));
                i += 2;
            } else if ((e == 'p' || e == 'P') && i + 2 < n && in[i + 2] == '{') {
                const char *end = strchr(in + i, '}');
                size_t len = end ? (size_t)(end - (in + i)) + 1 : n - i;
                QR_CHECK(buf_put(&b, in + i, len));
                i += len;
            } else {
                uint32_t cp;
                size_t cl = utf8_next((const unsigned char *)in + i + 1, n - i - 1, &cp);
                QR_CHECK(buf_put(&b, in + i, 1 + (cl ? cl : 1)));
                i += 1 + (cl ? cl : 1);
            }
            continue;
        }
        if (in_class) {
            if (c == ']') {
                in_class = false;
            }
            QR_CHECK(buf_put(&b, in + i, 1));
            i++;
            continue;
        }
        if (c == '[') {
            size_t j = i + 1;
            in_class = true;
            if (j < n && in[j] == '^') {
                j++;
            }
            if (j < n && in[j] == ']') {
                j++; /* a leading ']' is a literal */
            }
            QR_CHECK(buf_put(&b, in + i, j - i));
            i = j;
            continue;
        }
        if (c == '(') {
            if (depth >= 64) {
                st = qr_fail(QR_ERR_INPUT, "pattern nests groups deeper than 64");
                goto done;
            }
            fold_stack[depth++] = fold;
            if (strncmp(in + i, "(?i:", 4) == 0) {
                fold = true;
                QR_CHECK(buf_put(&b, "(?:", 3));
                i += 4;
                continue;
            }
        } else if (c == ')' && depth > 0) {
            fold = fold_stack[--depth];
        } else if (fold && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
            char cls[5] = {'[', (char)(c | 0x20), (char)(c & ~0x20), ']', 0};
            QR_CHECK(buf_put(&b, cls, 4));
            i++;
            continue;
        }
        QR_CHECK(buf_put(&b, in + i, 1));
        i++;
    }
    QR_CHECK(buf_put(&b, "", 0));
    *out = b.p;
    b.p = NULL;
done:
    free(b.p);
    return st;
}

static qr_status compile_pattern(const char *pattern, pcre2_code **out)
{
    qr_status st = QR_OK;
    char *rewritten = NULL;
    int err = 0;
    PCRE2_SIZE off = 0;
    QR_CHECK(rewrite_pattern(pattern, &rewritten));
    *out = pcre2_compile((PCRE2_SPTR)rewritten, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err,
                         &off, NULL);
    if (!*out) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        st = qr_fail(QR_ERR_INPUT, "pre-tokenizer pattern \"%.80s\": %s at offset %zu", pattern,
                     (const char *)msg, (size_t)off);
        goto done;
    }
    (void)pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); /* the interpreter works when JIT does not */
done:
    free(rewritten);
    return st;
}

static qr_status apply_norm(const qr_hf *h, const char *s, size_t n, buf_t *out);

static qr_status matcher_build(matcher_t *m, const qr_hf *h, bool normalized_list)
{
    qr_status st = QR_OK;
    int32_t count = 0, k = 0;
    buf_t tmp = {NULL, 0, 0};
    int32_t *bucket_n = NULL;
    memset(m, 0, sizeof *m);
    for (int64_t i = 0; i < h->n_added; i++) {
        bool use_norm = h->added[i].normalized && h->n_norm > 0;
        count += use_norm == normalized_list;
    }
    m->n = count;
    QR_CHECK(qr_calloc(&m->s, (size_t)count + 1, sizeof *m->s, "added tokens"));
    QR_CHECK(qr_calloc(&m->len, (size_t)count + 1, sizeof *m->len, "added tokens"));
    QR_CHECK(qr_calloc(&m->added, (size_t)count + 1, sizeof *m->added, "added tokens"));
    QR_CHECK(qr_calloc(&m->order, (size_t)count + 1, sizeof *m->order, "added tokens"));
    for (int64_t i = 0; i < h->n_added; i++) {
        const qr_hf_added *a = &h->added[i];
        bool use_norm = a->normalized && h->n_norm > 0;
        if (use_norm != normalized_list) {
            continue;
        }
        if (normalized_list) {
            tmp.n = 0;
            QR_CHECK(apply_norm(h, a->content, a->len, &tmp));
            m->s[k] = dup_bytes(tmp.p ? tmp.p : "", tmp.n);
            m->len[k] = tmp.n;
        } else {
            m->s[k] = dup_bytes(a->content, a->len);
            m->len[k] = a->len;
        }
        if (!m->s[k]) {
            st = qr_fail(QR_ERR_NOMEM, "tokenizer: out of memory for added tokens");
            goto done;
        }
        m->added[k] = (int32_t)i;
        k++;
    }
    /* Order: by first byte, then longest first (so the first match at a position is the longest).
     * Empty contents never match. */
    QR_CHECK(qr_calloc(&bucket_n, 257, sizeof *bucket_n, "added tokens"));
    for (int32_t i = 0; i < count; i++) {
        if (m->len[i] > 0) {
            bucket_n[(unsigned char)m->s[i][0] + 1]++;
        }
    }
    m->start[0] = 0;
    for (int b = 0; b < 256; b++) {
        m->start[b + 1] = m->start[b] + bucket_n[b + 1];
        bucket_n[b + 1] = 0;
    }
    for (int32_t i = 0; i < count; i++) {
        if (m->len[i] > 0) {
            int b = (unsigned char)m->s[i][0];
            int32_t pos = m->start[b] + bucket_n[b + 1]++;
            /* insertion into the bucket, longest first */
            while (pos > m->start[b] && m->len[m->order[pos - 1]] < m->len[i]) {
                m->order[pos] = m->order[pos - 1];
                pos--;
            }
            m->order[pos] = i;
        }
    }
done:
    free(tmp.p);
    free(bucket_n);
    return st;
}

static void matcher_free(matcher_t *m)
{
    if (m->s) {
        for (int32_t i = 0; i < m->n; i++) {
            free(m->s[i]);
        }
    }
    free(m->s);
    free(m->len);
    free(m->added);
    free(m->order);
    memset(m, 0, sizeof *m);
}

/* Longest entry of m starting at s[0..n): its index, or -1. */
static int32_t matcher_at(const matcher_t *m, const char *s, size_t n)
{
    int b = (unsigned char)s[0];
    for (int32_t k = m->start[b]; k < m->start[b + 1]; k++) {
        int32_t i = m->order[k];
        if (m->len[i] <= n && memcmp(m->s[i], s, m->len[i]) == 0) {
            return i;
        }
    }
    return -1;
}

/* The added token whose content (or normalized content) is exactly s, or -1. */
static int32_t added_exact(const qr_hf *h, const char *s, size_t n)
{
    const matcher_t *ms[2] = {&h->raw, &h->normalized};
    if (n == 0) {
        return -1;
    }
    for (int j = 0; j < 2; j++) {
        int b = (unsigned char)s[0];
        for (int32_t k = ms[j]->start[b]; k < ms[j]->start[b + 1]; k++) {
            int32_t i = ms[j]->order[k];
            if (ms[j]->len[i] == n && memcmp(ms[j]->s[i], s, n) == 0) {
                return ms[j]->added[i];
            }
        }
    }
    for (int64_t i = 0; i < h->n_added; i++) { /* raw contents of normalized tokens */
        if (h->added[i].len == n && memcmp(h->added[i].content, s, n) == 0) {
            return (int32_t)i;
        }
    }
    return -1;
}

/* ---- construction -----------------------------------------------------------------------------
 */

static void byte_level_table(qr_hf *h)
{
    int n = 0;
    for (int i = 0; i < 324; i++) {
        h->bl_rev[i] = -1;
    }
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        uint32_t cp = printable ? (uint32_t)b : (uint32_t)(256 + n++);
        h->bl_len[b] = (uint8_t)utf8_put(cp, h->bl[b]);
        h->bl_rev[cp] = (int16_t)b;
    }
}

static qr_status set_piece(qr_hf *h, int32_t id, const char *s, size_t n, const char *what)
{
    size_t slot;
    if (id < 0 || id >= h->n_ids) {
        return qr_fail(QR_ERR_INTERNAL, "tokenizer: id %d out of range", (int)id);
    }
    if (h->piece[id] && (h->plen[id] != n || memcmp(h->piece[id], s, n) != 0)) {
        if (strcmp(what, "added_tokens") != 0) {
            return qr_fail(QR_ERR_INPUT, "%s: id %d is given to two different pieces", what,
                           (int)id);
        }
        /* An added token renames the vocabulary's piece of its id, as the library does; the old
         * string's table slot stays occupied (probing goes on past it) but no longer matches. */
        free(h->piece[id]);
        h->piece[id] = NULL;
    }
    if (!h->piece[id]) {
        if (!(h->piece[id] = dup_bytes(s, n))) {
            return qr_fail(QR_ERR_NOMEM, "tokenizer: out of memory for pieces");
        }
        h->plen[id] = n;
    }
    h->max_len = n > h->max_len ? n : h->max_len;
    slot = find_slot(h, s, n);
    h->table[slot] = id; /* a later entry (an added token) takes the string over */
    return QR_OK;
}

qr_status qr_hf_create(const qr_hf_spec *sp, qr_hf **out)
{
    qr_status st = QR_OK;
    qr_hf *h = NULL;
    int64_t max_id = -1;
    size_t want;
    *out = NULL;
    if (sp->n_vocab < 1 || sp->n_vocab > QR_HF_MAX_ID || sp->n_merges < 0 ||
        sp->n_merges > INT32_MAX / 2 || sp->n_added < 0 || sp->n_added > QR_HF_MAX_ID) {
        return qr_fail(QR_ERR_INPUT,
                       "model: bad sizes (expected 1..%d vocabulary entries, found %lld; %lld "
                       "merges; %lld added tokens)",
                       QR_HF_MAX_ID, (long long)sp->n_vocab, (long long)sp->n_merges,
                       (long long)sp->n_added);
    }
    for (int64_t i = 0; i < sp->n_vocab; i++) {
        if (sp->vocab_ids[i] < 0 || sp->vocab_ids[i] > QR_HF_MAX_ID) {
            return qr_fail(QR_ERR_INPUT, "model.vocab: id %d out of range (expected 0..%d)",
                           (int)sp->vocab_ids[i], QR_HF_MAX_ID);
        }
        max_id = sp->vocab_ids[i] > max_id ? sp->vocab_ids[i] : max_id;
    }
    for (int64_t i = 0; i < sp->n_added; i++) {
        if (sp->added[i].id < 0 || sp->added[i].id > QR_HF_MAX_ID) {
            return qr_fail(QR_ERR_INPUT, "added_tokens: id %d out of range (expected 0..%d)",
                           (int)sp->added[i].id, QR_HF_MAX_ID);
        }
        max_id = sp->added[i].id > max_id ? sp->added[i].id : max_id;
    }
    QR_CHECK(qr_calloc(&h, 1, sizeof *h, "tokenizer"));
    h->n_ids = max_id + 1;
    h->unk = -1;
    h->bos = sp->bos;
    h->eos = sp->eos;
    h->byte_fallback = sp->byte_fallback;
    h->fuse_unk = sp->fuse_unk;
    h->ignore_merges = sp->ignore_merges;
    QR_CHECK(qr_calloc(&h->piece, (size_t)h->n_ids, sizeof *h->piece, "tokenizer pieces"));
    QR_CHECK(qr_calloc(&h->plen, (size_t)h->n_ids, sizeof *h->plen, "tokenizer pieces"));
    want = 2 * (size_t)(sp->n_vocab + sp->n_added);
    h->table_size = 16;
    while (h->table_size < want) {
        h->table_size *= 2;
    }
    QR_CHECK(qr_malloc(&h->table, h->table_size, sizeof *h->table, "tokenizer table"));
    memset(h->table, 0xff, h->table_size * sizeof *h->table);
    for (int64_t i = 0; i < sp->n_vocab; i++) {
        if (lookup(h, sp->vocab[i], sp->vocab_lens[i]) >= 0) {
            st = qr_fail(QR_ERR_INPUT, "model.vocab: piece \"%.40s\" appears twice", sp->vocab[i]);
            goto done;
        }
        QR_CHECK(set_piece(h, sp->vocab_ids[i], sp->vocab[i], sp->vocab_lens[i], "model.vocab"));
    }
    /* Added tokens join the model's vocabulary, as the library does. */
    QR_CHECK(qr_calloc(&h->added, (size_t)sp->n_added + 1, sizeof *h->added, "added tokens"));
    QR_CHECK(qr_calloc(&h->added_store, (size_t)sp->n_added + 1, sizeof(char *), "added tokens"));
    h->n_added = sp->n_added;
    for (int64_t i = 0; i < sp->n_added; i++) {
        h->added[i] = sp->added[i];
        if (!(h->added_store[i] = dup_bytes(sp->added[i].content, sp->added[i].len))) {
            st = qr_fail(QR_ERR_NOMEM, "tokenizer: out of memory for added tokens");
            goto done;
        }
        h->added[i].content = h->added_store[i];
        QR_CHECK(
            set_piece(h, sp->added[i].id, sp->added[i].content, sp->added[i].len, "added_tokens"));
    }
    if (sp->unk) {
        h->unk = lookup(h, sp->unk, strlen(sp->unk));
        if (h->unk < 0) {
            st = qr_fail(QR_ERR_INPUT, "model.unk_token \"%.40s\" is not in the vocabulary",
                         sp->unk);
            goto done;
        }
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        h->byte_ids[b] = lookup(h, name, 6);
    }
    /* merges: rank = position; both sides and the concatenation must be pieces */
    h->msize = 16;
    while (h->msize < 2 * (size_t)sp->n_merges) {
        h->msize *= 2;
    }
    QR_CHECK(qr_calloc(&h->mkey, h->msize, sizeof *h->mkey, "tokenizer merges"));
    QR_CHECK(qr_malloc(&h->mrank, h->msize, sizeof *h->mrank, "tokenizer merges"));
    QR_CHECK(qr_malloc(&h->mres, h->msize, sizeof *h->mres, "tokenizer merges"));
    {
        buf_t cat = {NULL, 0, 0};
        for (int64_t i = 0; i < sp->n_merges && st == QR_OK; i++) {
            int32_t l = lookup(h, sp->merge_left[i], sp->merge_left_lens[i]);
            int32_t r = lookup(h, sp->merge_right[i], sp->merge_right_lens[i]);
            int32_t m;
            size_t slot;
            cat.n = 0;
            st = buf_put(&cat, sp->merge_left[i], sp->merge_left_lens[i]);
            if (st == QR_OK) {
                st = buf_put(&cat, sp->merge_right[i], sp->merge_right_lens[i]);
            }
            if (st != QR_OK) {
                break;
            }
            m = lookup(h, cat.p, cat.n);
            if (l < 0 || r < 0 || m < 0) {
                st = qr_fail(QR_ERR_INPUT,
                             "model.merges[%lld]: \"%.40s\" + \"%.40s\": %s is not in the "
                             "vocabulary (expected every merge to join two pieces into a piece)",
                             (long long)i, sp->merge_left[i], sp->merge_right[i],
                             l < 0   ? "the left side"
                             : r < 0 ? "the right side"
                                     : "the result");
                break;
            }
            slot = merge_slot(h, merge_key(l, r));
            if (h->mkey[slot] == 0) { /* the first (lowest-rank) occurrence wins */
                h->mkey[slot] = merge_key(l, r);
                h->mrank[slot] = (int32_t)i;
                h->mres[slot] = m;
            }
        }
        free(cat.p);
        if (st != QR_OK) {
            goto done;
        }
    }
    QR_CHECK(qr_calloc(&h->norm, (size_t)sp->n_norm + 1, sizeof *h->norm, "normalizer"));
    h->n_norm = sp->n_norm;
    for (int64_t i = 0; i < sp->n_norm; i++) {
        const qr_hf_norm_op *o = &sp->norm[i];
        h->norm[i].kind = o->kind;
        h->norm[i].a = dup_bytes(o->a ? o->a : "", o->a ? o->a_len : 0);
        h->norm[i].b = dup_bytes(o->b ? o->b : "", o->b ? o->b_len : 0);
        h->norm[i].a_len = o->a ? o->a_len : 0;
        h->norm[i].b_len = o->b ? o->b_len : 0;
        if (!h->norm[i].a || !h->norm[i].b) {
            st = qr_fail(QR_ERR_NOMEM, "tokenizer: out of memory for the normalizer");
            goto done;
        }
        if (o->kind == QR_HF_NORM_REPLACE && h->norm[i].a_len == 0) {
            st = qr_fail(QR_ERR_INPUT, "normalizer: Replace with an empty pattern");
            goto done;
        }
    }
    QR_CHECK(qr_calloc(&h->pre, (size_t)sp->n_pre + 1, sizeof *h->pre, "pre-tokenizer"));
    h->n_pre = sp->n_pre;
    for (int64_t i = 0; i < sp->n_pre; i++) {
        const qr_hf_pre_op *o = &sp->pre[i];
        pre_t *p = &h->pre[i];
        p->kind = o->kind;
        p->add_prefix_space = o->add_prefix_space;
        p->prepend = o->prepend;
        if (o->kind == QR_HF_PRE_SPLIT) {
            QR_CHECK(compile_pattern(o->pattern, &p->re));
        } else if (o->kind == QR_HF_PRE_BYTE_LEVEL) {
            h->byte_level = true;
            if (o->use_regex) {
                QR_CHECK(compile_pattern(gpt2_pattern, &p->re));
            }
        } else {
            const char *rep = o->replacement ? o->replacement : "\xe2\x96\x81";
            if (!(p->replacement = dup_bytes(rep, strlen(rep)))) {
                st = qr_fail(QR_ERR_NOMEM, "tokenizer: out of memory for the pre-tokenizer");
                goto done;
            }
        }
    }
    byte_level_table(h);
    QR_CHECK(matcher_build(&h->raw, h, false));
    QR_CHECK(matcher_build(&h->normalized, h, true));
    *out = h;
    h = NULL;
done:
    qr_hf_free(&h);
    return st;
}

void qr_hf_free(qr_hf **ph)
{
    qr_hf *h;
    if (!ph || !*ph) {
        return;
    }
    h = *ph;
    if (h->piece) {
        for (int64_t i = 0; i < h->n_ids; i++) {
            free(h->piece[i]);
        }
    }
    free(h->piece);
    free(h->plen);
    free(h->table);
    free(h->mkey);
    free(h->mrank);
    free(h->mres);
    if (h->norm) {
        for (int64_t i = 0; i < h->n_norm; i++) {
            free(h->norm[i].a);
            free(h->norm[i].b);
        }
    }
    free(h->norm);
    if (h->pre) {
        for (int64_t i = 0; i < h->n_pre; i++) {
            pcre2_code_free(h->pre[i].re);
            free(h->pre[i].replacement);
        }
    }
    free(h->pre);
    if (h->added_store) {
        for (int64_t i = 0; i < h->n_added; i++) {
            free(h->added_store[i]);
        }
    }
    free(h->added_store);
    free(h->added);
    matcher_free(&h->raw);
    matcher_free(&h->normalized);
    free(h);
    *ph = NULL;
}

int64_t qr_hf_n_ids(const qr_hf *h)
{
    return h->n_ids;
}

int32_t qr_hf_bos(const qr_hf *h)
{
    return h->bos;
}

int32_t qr_hf_eos(const qr_hf *h)
{
    return h->eos;
}

bool qr_hf_byte_fallback(const qr_hf *h)
{
    return h->byte_fallback;
}

bool qr_hf_is_byte_level(const qr_hf *h)
{
    return h->byte_level;
}

const char *qr_hf_piece(const qr_hf *h, int32_t id, size_t *len)
{
    if (id < 0 || id >= h->n_ids || !h->piece[id]) {
        return NULL;
    }
    if (len) {
        *len = h->plen[id];
    }
    return h->piece[id];
}

/* ---- normalizer -------------------------------------------------------------------------------
 */

/* out = the normalizer applied to s (n bytes); out is reset first. */
static qr_status apply_norm(const qr_hf *h, const char *s, size_t n, buf_t *out)
{
    qr_status st = QR_OK;
    buf_t cur = {NULL, 0, 0}, nxt = {NULL, 0, 0};
    QR_CHECK(buf_put(&cur, s, n));
    for (int64_t i = 0; i < h->n_norm; i++) {
        const norm_t *o = &h->norm[i];
        nxt.n = 0;
        if (o->kind == QR_HF_NORM_PREPEND) {
            QR_CHECK(buf_put(&nxt, o->a, o->a_len));
            QR_CHECK(buf_put(&nxt, cur.p, cur.n));
        } else if (o->kind == QR_HF_NORM_REPLACE) {
            size_t j = 0;
            while (j < cur.n) {
                if (cur.n - j >= o->a_len && memcmp(cur.p + j, o->a, o->a_len) == 0) {
                    QR_CHECK(buf_put(&nxt, o->b, o->b_len));
                    j += o->a_len;
                } else {
                    QR_CHECK(buf_put(&nxt, cur.p + j, 1));
                    j++;
                }
            }
        } else {
            bool ascii = true;
            for (size_t j = 0; j < cur.n && ascii; j++) {
                ascii = (unsigned char)cur.p[j] < 0x80;
            }
            if (ascii || cur.n == 0) { /* ASCII is its own NFC */
                QR_CHECK(buf_put(&nxt, cur.p, cur.n));
            } else {
                utf8proc_uint8_t *dst = NULL;
                utf8proc_ssize_t r =
                    utf8proc_map((const utf8proc_uint8_t *)cur.p, (utf8proc_ssize_t)cur.n, &dst,
                                 UTF8PROC_STABLE | UTF8PROC_COMPOSE);
                if (r < 0) {
                    st = qr_fail(QR_ERR_INPUT, "NFC normalization failed: %s", utf8proc_errmsg(r));
                    goto done;
                }
                st = buf_put(&nxt, (const char *)dst, (size_t)r);
                free(dst);
                QR_CHECK(st);
            }
        }
        {
            buf_t t = cur;
            cur = nxt;
            nxt = t;
        }
    }
    out->n = 0;
    QR_CHECK(buf_put(out, cur.p, cur.n));
done:
    free(cur.p);
    free(nxt.p);
    return st;
}

/* ---- BPE --------------------------------------------------------------------------------------
 */

typedef struct {
    int32_t rank;
    int32_t left, right; /* symbol indices */
    int32_t left_id, right_id, merged;
} pair_t;

typedef struct {
    pair_t *v;
    size_t n, cap;
} heap_t;

static bool pair_before(const pair_t *a, const pair_t *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->left < b->left;
}

static qr_status heap_push(heap_t *hp, pair_t e)
{
    size_t i;
    QR_TRY(grow((void **)&hp->v, &hp->cap, hp->n + 1, sizeof *hp->v));
    i = hp->n++;
    hp->v[i] = e;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        pair_t tmp;
        if (!pair_before(&hp->v[i], &hp->v[parent])) {
            break;
        }
        tmp = hp->v[i];
        hp->v[i] = hp->v[parent];
        hp->v[parent] = tmp;
        i = parent;
    }
    return QR_OK;
}

static pair_t heap_pop(heap_t *hp)
{
    pair_t top = hp->v[0];
    size_t i = 0;
    hp->v[0] = hp->v[--hp->n];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        pair_t tmp;
        if (l < hp->n && pair_before(&hp->v[l], &hp->v[best])) {
            best = l;
        }
        if (r < hp->n && pair_before(&hp->v[r], &hp->v[best])) {
            best = r;
        }
        if (best == i) {
            break;
        }
        tmp = hp->v[i];
        hp->v[i] = hp->v[best];
        hp->v[best] = tmp;
        i = best;
    }
    return top;
}

/* Scratch of one encode call. */
typedef struct {
    int32_t *id, *next, *prev; /* (cap) symbols */
    size_t *start, *len;       /* (cap) byte span of each initial symbol */
    size_t cap;
    heap_t heap;
    buf_t a, b, norm; /* pre-tokenizer strings, normalized section */
    svec_t pa, pb;    /* pre-token spans into a / b */
    pcre2_match_data *md;
} scratch_t;

static qr_status push_pair(const qr_hf *h, scratch_t *w, int32_t a)
{
    int32_t b;
    size_t slot;
    if (a < 0 || (b = w->next[a]) < 0 || w->id[a] < 0 || w->id[b] < 0) {
        return QR_OK;
    }
    slot = merge_slot(h, merge_key(w->id[a], w->id[b]));
    if (h->mkey[slot] == 0) {
        return QR_OK;
    }
    return heap_push(&w->heap, (pair_t){h->mrank[slot], a, b, w->id[a], w->id[b], h->mres[slot]});
}

/* Encode one pre-token s (n bytes, valid UTF-8) with the BPE model, appending ids to out. */
static qr_status bpe_word(const qr_hf *h, scratch_t *w, const char *s, size_t n, ivec_t *out,
                          const char *source)
{
    size_t count = 0;
    int32_t head;
    if (n == 0) {
        return QR_OK;
    }
    if (h->ignore_merges) {
        int32_t id = lookup(h, s, n);
        if (id >= 0) {
            return ivec_push(out, id);
        }
    }
    if (n > w->cap) {
        size_t c = w->cap;
        QR_TRY(grow((void **)&w->id, &c, n, sizeof *w->id));
        c = w->cap;
        QR_TRY(grow((void **)&w->next, &c, n, sizeof *w->next));
        c = w->cap;
        QR_TRY(grow((void **)&w->prev, &c, n, sizeof *w->prev));
        c = w->cap;
        QR_TRY(grow((void **)&w->start, &c, n, sizeof *w->start));
        c = w->cap;
        QR_TRY(grow((void **)&w->len, &c, n, sizeof *w->len));
        w->cap = c;
    }
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t cl = utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (cl == 0) {
            return qr_fail(QR_ERR_INTERNAL, "%s: invalid UTF-8 inside a pre-token", source);
        }
        w->start[count] = i;
        w->len[count] = cl;
        w->id[count] = lookup(h, s + i, cl);
        count++;
        i += cl;
    }
    for (size_t i = 0; i < count; i++) {
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < count ? (int32_t)i + 1 : -1;
    }
    w->heap.n = 0;
    for (size_t i = 0; i + 1 < count; i++) {
        QR_TRY(push_pair(h, w, (int32_t)i));
    }
    while (w->heap.n > 0) {
        pair_t e = heap_pop(&w->heap);
        int32_t b;
        if (w->id[e.left] != e.left_id || w->next[e.left] != e.right ||
            w->id[e.right] != e.right_id) {
            continue; /* stale: a side merged since the push */
        }
        b = e.right;
        w->id[e.left] = e.merged;
        w->len[e.left] += w->len[b];
        w->next[e.left] = w->next[b];
        if (w->next[b] >= 0) {
            w->prev[w->next[b]] = e.left;
        }
        w->id[b] = -2;
        w->next[b] = -1;
        QR_TRY(push_pair(h, w, w->prev[e.left]));
        QR_TRY(push_pair(h, w, e.left));
    }
    for (head = 0; head >= 0; head = w->next[head]) {
        if (w->id[head] >= 0) {
            QR_TRY(ivec_push(out, w->id[head]));
            continue;
        }
        /* a character outside the vocabulary */
        {
            bool bytes_ok = h->byte_fallback;
            for (size_t j = 0; j < w->len[head] && bytes_ok; j++) {
                bytes_ok = h->byte_ids[(unsigned char)s[w->start[head] + j]] >= 0;
            }
            if (bytes_ok) {
                for (size_t j = 0; j < w->len[head]; j++) {
                    QR_TRY(ivec_push(out, h->byte_ids[(unsigned char)s[w->start[head] + j]]));
                }
            } else if (h->unk >= 0) {
                QR_TRY(ivec_push(out, h->unk));
            } else {
                return qr_fail(QR_ERR_INPUT,
                               "%s: the character \"%.*s\" has no token and the tokenizer has "
                               "neither byte fallback nor an unk_token",
                               source, (int)w->len[head], s + w->start[head]);
            }
        }
    }
    return QR_OK;
}

/* Spans of the regex matches of re in s[off..off+n) and the gaps between them (Isolated). */
static qr_status regex_split(const pcre2_code *re, scratch_t *w, const char *s, size_t off,
                             size_t n, svec_t *out)
{
    size_t pos = 0, prev = 0;
    while (pos <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)(s + off), n, pos, PCRE2_NO_UTF_CHECK, w->md, NULL);
        PCRE2_SIZE *ov;
        size_t ms, me;
        if (rc == PCRE2_ERROR_NOMATCH) {
            break;
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return qr_fail(QR_ERR_INPUT, "pre-tokenizer regular expression failed: %s",
                           (const char *)msg);
        }
        ov = pcre2_get_ovector_pointer(w->md);
        ms = ov[0];
        me = ov[1];
        if (prev < ms) {
            QR_TRY(svec_push(out, off + prev, ms - prev));
        }
        if (me > ms) {
            QR_TRY(svec_push(out, off + ms, me - ms));
            pos = me;
        } else { /* an empty match: move on by one character, as JavaScript's matchAll does */
            uint32_t cp;
            size_t cl = me < n ? utf8_next((const unsigned char *)s + off + me, n - me, &cp) : 1;
            pos = me + (cl ? cl : 1);
        }
        prev = me;
    }
    if (prev < n) {
        QR_TRY(svec_push(out, off + prev, n - prev));
    }
    return QR_OK;
}

/* Pre-tokenize s (n bytes) and encode each pre-token. */
static qr_status encode_subsection(const qr_hf *h, scratch_t *w, const char *s, size_t n,
                                   size_t section_index, ivec_t *out, const char *source)
{
    buf_t *cur = &w->a, *nxt = &w->b;
    svec_t *pc = &w->pa, *pn = &w->pb;
    size_t first = out->n;
    cur->n = 0;
    pc->n = 0;
    QR_TRY(buf_put(cur, s, n));
    QR_TRY(svec_push(pc, 0, n));
    for (int64_t k = 0; k < h->n_pre; k++) {
        const pre_t *p = &h->pre[k];
        pn->n = 0;
        if (p->kind == QR_HF_PRE_SPLIT) {
            for (size_t i = 0; i < pc->n; i++) {
                QR_TRY(regex_split(p->re, w, cur->p, pc->p[i].off, pc->p[i].len, pn));
            }
        } else if (p->kind == QR_HF_PRE_BYTE_LEVEL) {
            /* optional prefix space and GPT-2 split, then every byte to its character */
            nxt->n = 0;
            for (size_t i = 0; i < pc->n; i++) {
                svec_t parts = {NULL, 0, 0};
                size_t base = nxt->n;
                qr_status st = QR_OK;
                buf_t src = {NULL, 0, 0};
                if (p->add_prefix_space && (pc->p[i].len == 0 || cur->p[pc->p[i].off] != ' ')) {
                    st = buf_put(&src, " ", 1);
                }
                if (st == QR_OK) {
                    st = buf_put(&src, cur->p + pc->p[i].off, pc->p[i].len);
                }
                if (st == QR_OK) {
                    st = p->re ? regex_split(p->re, w, src.p, 0, src.n, &parts)
                               : svec_push(&parts, 0, src.n);
                }
                for (size_t j = 0; j < parts.n && st == QR_OK; j++) {
                    size_t o0 = nxt->n;
                    for (size_t q = 0; q < parts.p[j].len && st == QR_OK; q++) {
                        unsigned char c = (unsigned char)src.p[parts.p[j].off + q];
                        st = buf_put(nxt, h->bl[c], h->bl_len[c]);
                    }
                    if (st == QR_OK) {
                        st = svec_push(pn, o0, nxt->n - o0);
                    }
                }
                (void)base;
                free(parts.p);
                free(src.p);
                QR_TRY(st);
            }
        } else { /* METASPACE: spaces to the replacement, prefix per the scheme */
            size_t rl = strlen(p->replacement);
            nxt->n = 0;
            for (size_t i = 0; i < pc->n; i++) {
                size_t o0 = nxt->n;
                const char *t = cur->p + pc->p[i].off;
                size_t tl = pc->p[i].len;
                bool starts = tl >= rl && memcmp(t, p->replacement, rl) == 0;
                bool pre = p->prepend == QR_HF_PREPEND_ALWAYS ||
                           (p->prepend == QR_HF_PREPEND_FIRST && section_index == 0);
                if (!starts && !(tl > 0 && t[0] == ' ') && pre) {
                    QR_TRY(buf_put(nxt, p->replacement, rl));
                }
                for (size_t j = 0; j < tl; j++) {
                    if (t[j] == ' ') {
                        QR_TRY(buf_put(nxt, p->replacement, rl));
                    } else {
                        QR_TRY(buf_put(nxt, t + j, 1));
                    }
                }
                QR_TRY(svec_push(pn, o0, nxt->n - o0));
            }
        }
        if (p->kind != QR_HF_PRE_SPLIT) {
            buf_t *t = cur;
            cur = nxt;
            nxt = t;
        }
        {
            svec_t *t = pc;
            pc = pn;
            pn = t;
        }
    }
    for (size_t i = 0; i < pc->n; i++) {
        QR_TRY(bpe_word(h, w, cur->p + pc->p[i].off, pc->p[i].len, out, source));
    }
    if (h->fuse_unk && h->unk >= 0) {
        size_t j = first;
        for (size_t i = first; i < out->n; i++) {
            if (out->p[i] == h->unk && j > first && out->p[j - 1] == h->unk) {
                continue;
            }
            out->p[j++] = out->p[i];
        }
        out->n = j;
    }
    return QR_OK;
}

/* Split text[0..n) on the entries of m (longest match at each position); sections are appended
 * to secs, an added-token section as (index + 1) in kinds, plain text as 0. Then lstrip/rstrip. */
static qr_status split_added(const qr_hf *h, const matcher_t *m, const char *text, size_t n,
                             svec_t *secs, ivec_t *kinds)
{
    size_t start = 0, i = 0, first = secs->n;
    while (i < n) {
        int32_t k = m->n > 0 ? matcher_at(m, text + i, n - i) : -1;
        if (k < 0) {
            i++;
            continue;
        }
        if (i > start) {
            QR_TRY(svec_push(secs, start, i - start));
            QR_TRY(ivec_push(kinds, 0));
        }
        QR_TRY(svec_push(secs, i, m->len[k]));
        QR_TRY(ivec_push(kinds, m->added[k] + 1));
        i += m->len[k];
        start = i;
    }
    if (start < n) {
        QR_TRY(svec_push(secs, start, n - start));
        QR_TRY(ivec_push(kinds, 0));
    }
    for (size_t s = first; s < secs->n; s++) {
        const qr_hf_added *a;
        if (kinds->p[s] == 0) {
            continue;
        }
        a = &h->added[kinds->p[s] - 1];
        if (a->lstrip && s > first && kinds->p[s - 1] == 0) {
            span_t *p = &secs->p[s - 1];
            for (;;) { /* drop trailing white space, one character at a time */
                size_t back = 1;
                uint32_t cp = 0;
                while (back < p->len && back < 4 &&
                       ((unsigned char)text[p->off + p->len - back] & 0xc0) == 0x80) {
                    back++;
                }
                if (p->len == 0 ||
                    utf8_next((const unsigned char *)text + p->off + p->len - back, back, &cp) !=
                        back ||
                    !js_space(cp)) {
                    break;
                }
                p->len -= back;
            }
        }
        if (a->rstrip && s + 1 < secs->n && kinds->p[s + 1] == 0) {
            span_t *p = &secs->p[s + 1];
            uint32_t cp;
            size_t cl;
            while (p->len > 0 &&
                   (cl = utf8_next((const unsigned char *)text + p->off, p->len, &cp)) > 0 &&
                   js_space(cp)) {
                p->off += cl;
                p->len -= cl;
            }
        }
    }
    return QR_OK;
}

qr_status qr_hf_encode(const qr_hf *h, const char *text, size_t len, const char *source,
                       int32_t **tokens, size_t *n_out)
{
    qr_status st = QR_OK;
    scratch_t w;
    ivec_t out = {NULL, 0, 0}, kinds = {NULL, 0, 0}, kinds2 = {NULL, 0, 0};
    svec_t secs = {NULL, 0, 0}, secs2 = {NULL, 0, 0};
    const char *src = source ? source : "text";
    memset(&w, 0, sizeof w);
    *tokens = NULL;
    *n_out = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t cl = utf8_next((const unsigned char *)text + i, len - i, &cp);
        if (cl == 0) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: invalid UTF-8 at byte offset %zu (byte 0x%02X; expected UTF-8 "
                           "text, which tokenizer.json tokenizers require)",
                           src, i, (unsigned char)text[i]);
        }
        i += cl;
    }
    w.md = pcre2_match_data_create(4, NULL);
    if (!w.md) {
        return qr_fail(QR_ERR_NOMEM, "tokenizer: out of memory for regex match data");
    }
    QR_CHECK(split_added(h, &h->raw, text, len, &secs, &kinds));
    for (size_t s = 0; s < secs.n; s++) {
        const char *t = text + secs.p[s].off;
        size_t tl = secs.p[s].len;
        int32_t a;
        if (tl == 0) {
            continue;
        }
        if (kinds.p[s] > 0) {
            QR_CHECK(ivec_push(&out, h->added[kinds.p[s] - 1].id));
            continue;
        }
        if ((a = added_exact(h, t, tl)) >= 0) {
            QR_CHECK(ivec_push(&out, h->added[a].id));
            continue;
        }
        QR_CHECK(apply_norm(h, t, tl, &w.norm));
        if (w.norm.n == 0) {
            continue;
        }
        secs2.n = 0;
        kinds2.n = 0;
        QR_CHECK(split_added(h, &h->normalized, w.norm.p, w.norm.n, &secs2, &kinds2));
        for (size_t j = 0; j < secs2.n; j++) {
            const char *u = w.norm.p + secs2.p[j].off;
            size_t ul = secs2.p[j].len;
            if (ul == 0) {
                continue;
            }
            if (kinds2.p[j] > 0) {
                QR_CHECK(ivec_push(&out, h->added[kinds2.p[j] - 1].id));
            } else if ((a = added_exact(h, u, ul)) >= 0) {
                QR_CHECK(ivec_push(&out, h->added[a].id));
            } else {
                QR_CHECK(encode_subsection(h, &w, u, ul, s, &out, src));
            }
        }
    }
    if (out.n == 0) {
        QR_CHECK(ivec_push(&out, 0));
        out.n = 0;
    }
    *tokens = out.p;
    *n_out = out.n;
    out.p = NULL;
done:
    free(out.p);
    free(kinds.p);
    free(kinds2.p);
    free(secs.p);
    free(secs2.p);
    free(w.id);
    free(w.next);
    free(w.prev);
    free(w.start);
    free(w.len);
    free(w.heap.v);
    free(w.a.p);
    free(w.b.p);
    free(w.norm.p);
    free(w.pa.p);
    free(w.pb.p);
    pcre2_match_data_free(w.md);
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
    return -1;
}

qr_status qr_hf_decode(const qr_hf *h, const int32_t *tokens, size_t n, bool strip_space,
                       char **text, size_t *len)
{
    qr_status st = QR_OK;
    buf_t b = {NULL, 0, 0};
    size_t lead = 0;
    *text = NULL;
    *len = 0;
    QR_CHECK(buf_put(&b, "", 0));
    for (size_t i = 0; i < n; i++) {
        int32_t id = tokens[i];
        const char *p;
        size_t pl;
        bool special = false;
        if (id < 0 || id >= h->n_ids || !h->piece[id]) {
            st = qr_fail(QR_ERR_INPUT, "token %zu: id %d has no piece (expected 0..%lld)", i,
                         (int)id, (long long)h->n_ids - 1);
            goto done;
        }
        for (int64_t k = 0; k < h->n_added && !special; k++) {
            special = h->added[k].special && h->added[k].id == id;
        }
        if (special) {
            continue;
        }
        p = h->piece[id];
        pl = h->plen[id];
        if (h->byte_level) {
            for (size_t j = 0; j < pl;) {
                uint32_t cp = 0;
                size_t cl = utf8_next((const unsigned char *)p + j, pl - j, &cp);
                if (cl && cp < 324 && h->bl_rev[cp] >= 0) {
                    char c = (char)h->bl_rev[cp];
                    QR_CHECK(buf_put(&b, &c, 1));
                } else {
                    QR_CHECK(buf_put(&b, p + j, cl ? cl : 1));
                }
                j += cl ? cl : 1;
            }
        } else if (pl == 6 && memcmp(p, "<0x", 3) == 0 && p[5] == '>' && hex_digit(p[3]) >= 0 &&
                   hex_digit(p[4]) >= 0) {
            char c = (char)(hex_digit(p[3]) * 16 + hex_digit(p[4]));
            QR_CHECK(buf_put(&b, &c, 1));
        } else {
            for (size_t j = 0; j < pl;) {
                if (pl - j >= 3 && memcmp(p + j, "\xe2\x96\x81", 3) == 0) {
                    QR_CHECK(buf_put(&b, " ", 1));
                    j += 3;
                } else {
                    QR_CHECK(buf_put(&b, p + j, 1));
                    j++;
                }
            }
        }
    }
    if (strip_space && !h->byte_level && b.n > 0 && b.p[0] == ' ') {
        lead = 1;
    }
    memmove(b.p, b.p + lead, b.n - lead + 1);
    *len = b.n - lead;
    *text = b.p;
    b.p = NULL;
done:
    free(b.p);
    return st;
}
