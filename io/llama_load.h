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
/* Only layers [layer_begin, layer_end), the embedding when `embedding`, the final norm and the
 * classifier when `head` (qr_llama_weights_alloc_slice): a capture rank group holds no more than
 * its layer slice. Only those tensors are read. */
qr_status qr_llama_load_slice(const qr_model *m, int64_t layer_begin, int64_t layer_end,
                              bool embedding, bool head, qr_llama_weights *w);

#endif
