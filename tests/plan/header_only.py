#!/usr/bin/env python3
"""header_only.py OUT_DIR 70b|405b: a Hugging Face folder with the real config, tensor names,
shapes, dtype (BF16) and sharding of Llama-3.1-70B or -405B, whose safetensors files hold real
headers over sparse data regions (truncate: nothing of the weights is written). For plan tests:
qrecon reads headers only, never the data, to plan a job."""
import json, os, sys

PRESETS = {  # hidden, intermediate, layers, heads, kv heads, vocab, shards (as published)
    "7b-1layer": (4096, 11008, 1, 32, 32, 512, 1),  # the README's `synth --preset 7b --layers 1`
    "70b": (8192, 28672, 80, 64, 8, 128256, 30),
    "405b": (16384, 53248, 126, 128, 8, 128256, 191),
}


def tensors(h, f, layers, heads, kv, vocab):
    hd = h // heads
    yield "model.embed_tokens.weight", [vocab, h]
    for l in range(layers):
        p = f"model.layers.{l}."
        yield p + "input_layernorm.weight", [h]
        yield p + "self_attn.q_proj.weight", [heads * hd, h]
        yield p + "self_attn.k_proj.weight", [kv * hd, h]
        yield p + "self_attn.v_proj.weight", [kv * hd, h]
        yield p + "self_attn.o_proj.weight", [h, heads * hd]
        yield p + "post_attention_layernorm.weight", [h]
        yield p + "mlp.gate_proj.weight", [f, h]
        yield p + "mlp.up_proj.weight", [f, h]
        yield p + "mlp.down_proj.weight", [h, f]
    yield "model.norm.weight", [h]
    yield "lm_head.weight", [vocab, h]


def main():
    out, preset = sys.argv[1], sys.argv[2]
    h, f, layers, heads, kv, vocab, n_shards = PRESETS[preset]
    os.makedirs(out, exist_ok=True)
    ts = list(tensors(h, f, layers, heads, kv, vocab))
    total = sum(2 * s[0] * (s[1] if len(s) > 1 else 1) for _, s in ts)
    per = total / n_shards
    shards, cur, size = [], [], 0
    for name, shape in ts:  # cut into shards of about equal bytes, in order
        cur.append((name, shape))
        size += 2 * shape[0] * (shape[1] if len(shape) > 1 else 1)
        if size >= per * (len(shards) + 1) and len(shards) < n_shards - 1:
            shards.append(cur)
            cur = []
    shards.append(cur)
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        header, off = {}, 0
        for name, shape in shard:
            n = 2 * shape[0] * (shape[1] if len(shape) > 1 else 1)
            header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + n]}
            off += n
            weight_map[name] = fname
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        with open(os.path.join(out, fname), "wb") as fh:
            fh.write(len(text).to_bytes(8, "little") + text)
            fh.truncate(8 + len(text) + off)
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as fh:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, fh)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h,
           "intermediate_size": f, "num_hidden_layers": layers, "num_attention_heads": heads,
           "num_key_value_heads": kv, "vocab_size": vocab, "max_position_embeddings": 131072,
           "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu",
           "tie_word_embeddings": False, "torch_dtype": "bfloat16", "bos_token_id": 128000,
           "eos_token_id": 128001}
    with open(os.path.join(out, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=1)


main()
