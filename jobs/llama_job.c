/* llama_job.c: model, tokenizer and input for the forward-pass subcommands (see llama_job.h). */
#include "jobs/llama_job.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fs.h"
#include "io/llama_load.h"
#include "io/tokenizer_bin.h"
#include "io/tokenizer_json.h"
#include "io/tokens.h"

qr_status qr_llama_job_open(const char *model_path, qr_llama_job *job)
{
    return qr_llama_job_open_slice(model_path, 0, -1, true, true, job);
}

qr_status qr_llama_job_open_slice(const char *model_path, int64_t layer_begin, int64_t layer_end,
                                  bool embedding, bool head, qr_llama_job *job)
{
    qr_status st = QR_OK;
    memset(job, 0, sizeof *job);
    job->bos = QR_TOKEN_BOS;
    QR_CHECK(qr_model_open(model_path, &job->model));
    if (layer_end < 0) {
        layer_end = qr_model_get_config(job->model)->n_layers;
    }
    QR_CHECK(qr_llama_load_slice(job->model, layer_begin, layer_end, embedding, head, &job->w));
done:
    if (st != QR_OK) {
        qr_llama_job_close(job);
    }
    return st;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Read the tokenizer file at path by its kind. */
static qr_status read_tokenizer_file(qr_llama_job *job, const char *path)
{
    if (ends_with(path, ".json")) {
        QR_TRY(qr_tokenizer_json_read(path, &job->tok));
        if (qr_tokenizer_vocab_size(job->tok) > job->w.cfg.vocab_size) {
            int64_t n = qr_tokenizer_vocab_size(job->tok);
            qr_tokenizer_free(&job->tok);
            return qr_fail(QR_ERR_INPUT,
                           "%s: token ids beyond the model's vocabulary (expected ids below the "
                           "config's vocab_size %lld, found ids up to %lld)",
                           path, (long long)job->w.cfg.vocab_size, (long long)n - 1);
        }
        return QR_OK;
    }
    if (ends_with(path, ".model")) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: a SentencePiece tokenizer.model (protobuf), which qrecon does not read "
                       "(expected tokenizer.json: Hugging Face downloads carry one, and "
                       "transformers' AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR) "
                       "writes one; or --token-file FILE with token ids)",
                       path);
    }
    return qr_tokenizer_bin_read(path, job->w.cfg.vocab_size, &job->tok);
}

qr_status qr_llama_job_tokenizer(qr_llama_job *job, const char *tokenizer_path)
{
    const char *model_path = qr_model_path(job->model);
    const char *path = tokenizer_path ? tokenizer_path : qr_model_tokenizer_path(job->model);
    char dir[4096], json[4096], spm[4096];
    int32_t bos, eos;
    if (job->tok) {
        return QR_OK;
    }
    if (!path) {
        /* the folder of the model (a llama2.c model is a file) */
        if (qr_fs_is_dir(model_path)) {
            snprintf(dir, sizeof dir, "%s", model_path);
        } else {
            const char *slash = strrchr(model_path, '/');
            snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - model_path) : 1,
                     slash ? model_path : ".");
        }
        QR_TRY(qr_fs_join(json, sizeof json, dir, "tokenizer.json"));
        QR_TRY(qr_fs_join(spm, sizeof spm, dir, "tokenizer.model"));
        if (qr_fs_exists(json)) {
            path = json;
        } else if (qr_fs_exists(spm)) {
            path = spm;
        } else {
            return qr_fail(QR_ERR_INPUT,
                           "%s: no tokenizer beside the model (looked for tokenizer.bin, tok*.bin "
                           "and tokenizer.json in %s; expected one, or --tokenizer FILE naming a "
                           "tokenizer.json or a llama2.c tokenizer.bin, or --token-file FILE with "
                           "token ids instead of --text)",
                           model_path, dir);
        }
    }
    QR_TRY(read_tokenizer_file(job, path));
    bos = qr_tokenizer_bos(job->tok);
    eos = qr_tokenizer_eos(job->tok);
    job->bos = bos >= 0 ? bos : eos >= 0 ? eos : QR_TOKEN_BOS;
    return QR_OK;
}

void qr_llama_job_close(qr_llama_job *job)
{
    qr_tokenizer_free(&job->tok);
    qr_llama_weights_free(&job->w);
    qr_model_close(&job->model);
}

qr_status qr_llama_job_input(qr_llama_job *job, const qr_input_opts *opts, int32_t **ids, size_t *n)
{
    qr_status st = QR_OK;
    char *text = NULL;
    size_t size = 0;
    *ids = NULL;
    *n = 0;
    if (opts->token_path) {
        /* The window start comes from the tokenizer when there is one; id 1 otherwise. */
        if (qr_llama_job_tokenizer(job, opts->tokenizer_path) != QR_OK) {
            job->bos = QR_TOKEN_BOS;
        }
        QR_CHECK(qr_tokens_read(opts->token_path, job->w.cfg.vocab_size, ids, n));
        if (*n == 0) {
            st = qr_fail(QR_ERR_INPUT, "%s: empty token file (expected at least one token id)",
                         opts->token_path);
        }
        goto done;
    }
    if (opts->n_texts > 1 || opts->weighted) {
        return qr_fail(QR_ERR_INPUT,
                       "--text: one file without a weight expected here (found %d, %s); only "
                       "capture mixes several texts",
                       opts->n_texts, opts->weighted ? "weighted" : "unweighted");
    }
    QR_CHECK(qr_llama_job_tokenizer(job, opts->tokenizer_path));
    QR_CHECK(qr_fs_read_all(opts->text_path, QR_TEXT_FILE_MAX, &text, &size));
    if (size == 0) {
        st = qr_fail(QR_ERR_INPUT, "%s: empty text (expected at least one character)",
                     opts->text_path);
        goto done;
    }
    {
        qr_encode_opts eo = {true, opts->unknown_to_zero, opts->text_path};
        QR_CHECK(qr_tokenizer_encode(job->tok, text, size, &eo, ids, n));
    }
done:
    if (st != QR_OK) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    free(text);
    return st;
}

void qr_window_tokens(const int32_t *ids, size_t n, int64_t L, int64_t w, int32_t bos,
                      int32_t *window, int64_t *len)
{
    size_t begin = (size_t)w * (size_t)(L - 1), take = 0;
    window[0] = bos;
    if (begin < n) {
        take = n - begin < (size_t)(L - 1) ? n - begin : (size_t)(L - 1);
        memcpy(window + 1, ids + begin, take * sizeof *ids);
    }
    *len = (int64_t)take + 1;
}

#define CLI(f) offsetof(qr_llama_cli, f)
static const qr_opt model_rows[] = {
    {"model", QR_OPT_STR, CLI(model_path), "DIR", "Hugging Face folder or llama2.c checkpoint"},
    {"tokenizer", QR_OPT_STR, CLI(input.tokenizer_path), "FILE",
     "tokenizer.json or llama2.c tokenizer.bin",
     "tokenizer.bin beside the model, else tokenizer.json"},
};
/* The rows after --text, shared by the single-text and the repeatable-text tables. */
/* clang-format off */
#define QR_INPUT_ROWS_REST                                                                         \
    {"token-file", QR_OPT_STR, CLI(input.token_path), "FILE",                                      \
     "token ids instead of text: raw little-endian uint32, or decimal ids\n"                       \
     "separated by whitespace when the name ends in .txt"},                                        \
    {"unknown-to-zero", QR_OPT_FLAG, CLI(input.unknown_to_zero), NULL,                             \
     "encode characters the vocabulary lacks as id 0 (<unk>) instead of\n"                         \
     "refusing the text (for vocabularies without byte fallback)"},                                \
    {"seq-len", QR_OPT_INT, CLI(seq_len), "N",                                                     \
     "window length in tokens, BOS included, at most the model's context", .imin = 2,              \
     .imax = INT32_MAX}
/* clang-format on */
static const qr_opt input_rows[] = {
    {"text", QR_OPT_STR, CLI(input.text_path), "FILE",
     "UTF-8 text, encoded with the model's tokenizer"},
    QR_INPUT_ROWS_REST,
};
static const qr_opt inputs_rows[] = {
    {"text", QR_OPT_LIST, CLI(texts), "FILE",
     "UTF-8 text, encoded with the model's tokenizer; may be repeated: eval\n"
     "reports each text on its own, capture mixes them (FILE:W weighted)"},
    QR_INPUT_ROWS_REST,
};
#undef QR_INPUT_ROWS_REST
#undef CLI

qr_opt_table qr_llama_model_opt_table(qr_llama_cli *c, const char *heading)
{
    qr_opt_table t = QR_OPT_TABLE(model_rows, c, heading);
    return t;
}

qr_opt_table qr_llama_input_opt_table(qr_llama_cli *c, const char *heading)
{
    qr_opt_table t = QR_OPT_TABLE(input_rows, c, heading);
    return t;
}

qr_opt_table qr_llama_inputs_opt_table(qr_llama_cli *c, const char *heading)
{
    qr_opt_table t = QR_OPT_TABLE(inputs_rows, c, heading);
    return t;
}

bool qr_input_one_source(const qr_input_opts *in)
{
    return !in->text_path != !in->token_path;
}

const char *qr_input_source_path(const qr_input_opts *in)
{
    return in->text_path ? in->text_path : in->token_path;
}

const char *qr_input_source_kind(const qr_input_opts *in)
{
    return in->text_path ? "text" : "tokens";
}

void qr_model_share_identity(MPI_Comm comm, qr_model *m)
{
    char id[64] = "";
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    if (rank == 0) {
        snprintf(id, sizeof id, "%s", qr_model_identity(m));
    }
    MPI_Bcast(id, (int)sizeof id, MPI_CHAR, 0, comm);
    if (rank != 0) {
        qr_model_set_identity(m, id);
    }
}
