/* model.h: one view of a source model, whatever its form: a Hugging Face folder (config.json plus
 * model.safetensors or a sharded index) or a llama2.c v0 checkpoint (a .bin file, or a folder
 * holding one). Tensors are addressed by their Hugging Face names: model.embed_tokens.weight,
 * model.norm.weight, lm_head.weight (untied only), model.layers.L.input_layernorm.weight,
 * model.layers.L.post_attention_layernorm.weight, model.layers.L.self_attn.{q,k,v,o}_proj.weight,
 * model.layers.L.mlp.{gate,up,down}_proj.weight. A llama2.c model keeps its rows as stored, and
 * says so with config.rope_style = INTERLEAVED; a Hugging Face model has rope_style = HALF_SPLIT.
 * qwen2 models also have model.layers.L.self_attn.{q,k,v}_proj.bias. qr_model_open checks that
 * every one of these tensors exists with the shape the config implies and a float dtype, so later
 * stages need not check again. Not collective; the handle is read-only after open, so several ranks
 * may each open the same model. */
#ifndef QR_IO_MODEL_H
#define QR_IO_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"
#include "src/dtype.h"
#include "src/model_config.h"
#include "src/status.h"

typedef struct qr_model qr_model;

qr_status qr_model_open(const char *path, qr_model **out);
void qr_model_close(qr_model **m); /* NULL-safe, clears the pointer */

const qr_model_config *qr_model_get_config(const qr_model *m);
const char *qr_model_path(const qr_model *m);

/* Path of the tokenizer file that travels with the model (tokenizer.bin / tok*.bin beside it), or
 * NULL when there is none. */
const char *qr_model_tokenizer_path(const qr_model *m);

/* "xxh3-" and 16 hex digits identifying the source model: XXH3 of every file's name, size and
 * every byte (the weights included). Checkpoints and calibration shards record it. */
const char *qr_model_identity(const qr_model *m);
/* Take an identity computed elsewhere (another rank's qr_model_identity of the same files), so a
 * job hashes the model's bytes once, not once per rank. */
void qr_model_set_identity(qr_model *m, const char *identity);

/* stored (an identity read from a shard, part or checkpoint) is this model's: the identity above,
 * or the header-only identity files written before it recorded (16 hex digits), so those still
 * read. */
bool qr_model_identity_matches(const qr_model *m, const char *stored);

/* Number of tensors and the i-th tensor name (sorted by name). */
size_t qr_model_tensor_count(const qr_model *m);
const char *qr_model_tensor_name(const qr_model *m, size_t i);

/* Shape and stored dtype of a named tensor; QR_ERR_INPUT naming the model path when absent. */
qr_status qr_model_tensor_info(const qr_model *m, const char *name, qr_dtype *dtype, int *ndim,
                               int64_t shape[8]);

/* Read a whole tensor converted to float32 / float64; n must equal its element count. */
qr_status qr_model_read_f32(const qr_model *m, const char *name, float *dst, size_t n);
qr_status qr_model_read_f64(const qr_model *m, const char *name, double *dst, size_t n);

/* ---- additions ----------------------------------------------------------------------------------
 */

/* "safetensors" (a Hugging Face folder) or "llama2c". */
const char *qr_model_format(const qr_model *m);

/* The files the model was read from, in identity order: config.json then the shards sorted by name
 * (Hugging Face), or the one .bin (llama2.c); with their sizes in bytes. */
size_t qr_model_file_count(const qr_model *m);
const char *qr_model_file_path(const qr_model *m, size_t i);
uint64_t qr_model_file_size(const qr_model *m, size_t i);

/* The mapped tensor behind a name (NULL when absent): dtype, shape, nbytes and the raw
 * little-endian bytes, for readers that stream a slice instead of converting the whole tensor.
 * Owned by the model; valid until qr_model_close. */
const qr_st_tensor *qr_model_tensor(const qr_model *m, const char *name);

/* Read rows [row0, row0 + nrows) of a tensor (along its first dimension; elements of a vector)
 * converted to float32 / float64, so a rank can read only its block of a large matrix. n must equal
 * nrows x (elements per row); QR_ERR_INPUT naming the tensor when the rows are out of range. */
qr_status qr_model_read_rows_f32(const qr_model *m, const char *name, int64_t row0, int64_t nrows,
                                 float *dst, size_t n);
qr_status qr_model_read_rows_f64(const qr_model *m, const char *name, int64_t row0, int64_t nrows,
                                 double *dst, size_t n);

#endif
