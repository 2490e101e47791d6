/* config.h: a Hugging Face config.json (model_type llama, mistral or qwen2) read into the model
 * shape every later stage works from, and the shape checks that the llama2.c reader shares.
 *
 * Every field is type- and range-checked before it is used: sizes are positive and bounded (so that
 * any product of two or three of them fits in int64 and size_t), heads divide the hidden size when
 * head_dim is not given, kv heads divide heads. Not collective. */
#ifndef QR_IO_CONFIG_H
#define QR_IO_CONFIG_H

#include "src/model_config.h"
#include "src/status.h"

/* Upper bounds on the shape (each well above today's largest Llama-family models: 405B has dim
 * 16384, intermediate 53248, 126 layers, 128 heads, vocab 128256, 131072 positions). With these
 * bounds, vocab x dim and layers x hidden x dim stay below 2^56. */
#define QR_CONFIG_MAX_DIM (1 << 20)
#define QR_CONFIG_MAX_HIDDEN (1 << 22)
#define QR_CONFIG_MAX_LAYERS (1 << 12)
#define QR_CONFIG_MAX_HEADS (1 << 12)
#define QR_CONFIG_MAX_HEAD_DIM (1 << 14)
#define QR_CONFIG_MAX_VOCAB (1 << 24)
#define QR_CONFIG_MAX_SEQ (1 << 24)

/* Read `path` (a config.json) into *cfg (rope_style = HALF_SPLIT, the Hugging Face convention).
 * QR_ERR_INPUT with a message naming the file and the key for anything missing, mistyped, out of
 * range or unsupported; *cfg is only written on success. */
qr_status qr_config_read(const char *path, qr_model_config *cfg);

/* Check a filled config (from any source): the bounds above, heads dividing, head_dim even (RoPE
 * rotates pairs), positive finite rms_eps and rope_theta. `source` names the file in the message.
 */
qr_status qr_config_validate(const qr_model_config *cfg, const char *source);

/* The model types qr_config_read accepts, for messages: "llama, mistral, qwen2". */
const char *qr_config_supported_types(void);

/* "an object", "an array", "a string", ... for messages about a JSON value of the wrong type
 * (NULL: "null"). Shared by the readers of config.json and tokenizer.json. */
typedef struct json_t json_t;
const char *qr_json_type_name(const json_t *v);

#endif
