/* llama_load.h: fill the dense weights of the forward pass (src/llama.h) from a source model
 * (io/model.h: a Hugging Face folder or a llama2.c checkpoint), converting every tensor to float32.
 * Not collective; each rank that runs the model loads its own copy. */
#ifndef QR_IO_LLAMA_LOAD_H
#define QR_IO_LLAMA_LOAD_H

#include "io/model.h"
#include "src/llama.h"

/* Allocate w for the model's config and read every tensor by its Hugging Face name, checking each
 * shape against the config (QR_ERR_INPUT naming the model path, the tensor, expected vs found).
 * On failure w is left freed. */
qr_status qr_llama_load(const qr_model *m, qr_llama_weights *w);

#endif
