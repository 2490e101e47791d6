/* llama_job.h: what capture, eval and generate share: open a model with its forward-pass weights
 * and tokenizer, read the input (text through the tokenizer, or a token-id file), and cut it into
 * windows that start with BOS.
 *
 * Windows: the whole input is tokenized once (with the " " dummy prefix, as llama2.c does, or as
 * tokenizer.json says; no BOS), giving ids t_0 .. t_{m-1}; window w is BOS followed by t_{w(L-1)}
 * .. t_{(w+1)(L-1)-1}, L = the window length (--seq-len). Capture keeps only full windows; eval
 * also runs the last, shorter one. Not collective: every rank computes the same result from the
 * same files. */
#ifndef QR_JOBS_LLAMA_JOB_H
#define QR_JOBS_LLAMA_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "io/model.h"
#include "jobs/options.h"
#include "src/llama.h"
#include "src/tokenizer.h"

/* Largest text file accepted (the whole file is read and tokenized at once). */
#define QR_TEXT_FILE_MAX ((size_t)1 << 30)

typedef struct {
    qr_model *model;
    qr_llama_weights w;
    qr_tokenizer *tok; /* NULL until needed (a token-file input has no use for it) */
    int32_t bos;       /* first token of every window: the tokenizer's BOS, else its EOS (Qwen2
                        * has no BOS; lm-evaluation-harness starts with EOS then); 1 without one */
} qr_llama_job;

/* Open the model and load its float32 weights. */
qr_status qr_llama_job_open(const char *model_path, qr_llama_job *job);
/* Open the model and load only layers [layer_begin, layer_end) (layer_end < 0: to the last), with
 * the embedding and the head as asked (io/llama_load.h qr_llama_load_slice). */
qr_status qr_llama_job_open_slice(const char *model_path, int64_t layer_begin, int64_t layer_end,
                                  bool embedding, bool head, qr_llama_job *job);
/* Read the tokenizer: tokenizer_path (a tokenizer.json by its ".json" name, else a llama2.c
 * tokenizer.bin), or when NULL the one beside the model: tokenizer.bin / tok*.bin, else
 * tokenizer.json. tokenizer.model (SentencePiece protobuf) is refused with a message pointing to
 * tokenizer.json; no tokenizer at all names what was looked for and points to --tokenizer and
 * --token-file. Sets job->bos. */
qr_status qr_llama_job_tokenizer(qr_llama_job *job, const char *tokenizer_path);
void qr_llama_job_close(qr_llama_job *job); /* NULL-safe on its members */

/* Most --text options one command line takes. */
#define QR_INPUT_MAX_TEXTS 16

typedef struct {
    const char *text_path; /* exactly one of text_path and token_path (capture: the first) */
    const char *token_path;
    const char *tokenizer_path; /* NULL: the model's */
    bool unknown_to_zero;
    int n_texts;                             /* --text given this many times (capture mixes) */
    const char *texts[QR_INPUT_MAX_TEXTS];   /* their paths, in order */
    double text_weights[QR_INPUT_MAX_TEXTS]; /* --text FILE:W weights (1 when not given) */
    bool weighted;                           /* some --text carried a weight */
} qr_input_opts;

/* The options capture, eval and generate share: their rows are written once (llama_job.c) and
 * parsed into this struct, which the commands embed. */
typedef struct {
    const char *model_path; /* --model */
    qr_input_opts input;    /* --text, --token-file, --tokenizer, --unknown-to-zero */
    int64_t seq_len;        /* --seq-len: window length, BOS included (the command's default) */
    qr_opt_list texts;      /* --text of qr_llama_inputs_opt_table (input.text_path unset) */
} qr_llama_cli;

/* --model and --tokenizer: every command that runs the model. */
qr_opt_table qr_llama_model_opt_table(qr_llama_cli *c, const char *heading);
/* --text, --token-file, --unknown-to-zero, --seq-len: the commands that read an input. */
qr_opt_table qr_llama_input_opt_table(qr_llama_cli *c, const char *heading);
/* The same rows with --text repeatable (QR_OPT_LIST into c->texts): eval. */
qr_opt_table qr_llama_inputs_opt_table(qr_llama_cli *c, const char *heading);
/* Exactly one of --text and --token-file was given. */
bool qr_input_one_source(const qr_input_opts *in);
/* The input's path (text or token file) and its kind ("text" or "tokens"). */
const char *qr_input_source_path(const qr_input_opts *in);
const char *qr_input_source_kind(const qr_input_opts *in);

/* Read the input into *ids (no BOS; caller frees), *n of them. An empty text or token file is
 * QR_ERR_INPUT naming the file; so is a mix of texts (opts->n_texts > 1 or weighted: capture reads
 * those through jobs/text_mix.h). */
qr_status qr_llama_job_input(qr_llama_job *job, const qr_input_opts *opts, int32_t **ids,
                             size_t *n);

/* window (len) = bos + the ids of window w for window length L; *len is L, or less for the last
 * partial window; 1 when w is past the end. */
void qr_window_tokens(const int32_t *ids, size_t n, int64_t L, int64_t w, int32_t bos,
                      int32_t *window, int64_t *len);

/* Collective over comm: rank 0 hashes the model's files for its identity (a read of every byte)
 * and every other rank takes it, so a job reads the weights once for it, not once per rank. */
void qr_model_share_identity(MPI_Comm comm, qr_model *m);

#endif
