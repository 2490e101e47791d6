#!/usr/bin/env python3
"""read_exports.py: readers of qrecon's export formats, written from the published descriptions
(Python standard library only), checked against a dump of the checkpoint (tests/export/ckpt_dump.c).

  read_exports.py ct DIR DUMP      compressed-tensors folder + PEFT adapter
  read_exports.py gguf DIR DUMP ROPE   model.gguf + lora.gguf (ROPE: hf or llama2c, the source's
                                       q/k row order)
  read_exports.py same-tensors A B     two GGUF files hold identical tensors

compressed-tensors "pack-quantized" (compressed_tensors/compressors/quantized_compressors/
pack_quantized.py): weight_packed int32 (out, ceil(in/8)), value c of a row in bits 4*(c%8) of
element c//8, stored as the signed INT4 value + 8; weight_zero_point int32 (ceil(out/8), groups)
packed the same way along dim 0; weight_scale (out, groups); weight_shape [out, in]; dequantized
(q - zp) * scale. Modules listed in quantization_config.ignore are dense `.weight`.
PEFT LoRA: base_model.model.<module>.lora_A.weight (r, in), .lora_B.weight (out, r), scale
lora_alpha / r (rank_pattern / alpha_pattern per module).
GGUF v3 (ggml docs/gguf.md): Q4_0 blocks of 32: f16 d, 16 bytes, byte j = q[j] | q[j+16] << 4,
value d * (q - 8); Q4_1: f16 d, f16 m, same nibbles, value d * q + m; ne[0] = columns.
Every module must dequantize to EXACTLY the dump (bit-for-bit float32); exits 1 on the first
difference, naming the module, the element and both values."""
import json
import os
import struct
import sys
from array import array


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def f32(x):
    """Round a Python float to float32."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def load_f32(path):
    a = array("f")
    with open(path, "rb") as f:
        a.frombytes(f.read())
    return a


def read_index(dump):
    mods = []
    with open(os.path.join(dump, "index.txt")) as f:
        for line in f:
            name, d_out, d_in, rank, group, asym = line.split()
            mods.append(dict(name=name, d_out=int(d_out), d_in=int(d_in), rank=int(rank),
                             group=int(group), asym=int(asym)))
    return mods


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    out = {}
    codes = {"F32": "f", "I32": "i", "I64": "q"}
    for name, t in header.items():
        b, e = t["data_offsets"]
        a = array(codes[t["dtype"]])
        a.frombytes(data[b:e])
        out[name] = (t["dtype"], t["shape"], a)
    return out


def compare(what, got, want):
    if len(got) != len(want):
        fail(f"{what}: {len(got)} values (expected {len(want)})")
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            fail(f"{what}: element {i} is {g!r} (expected {w!r})")


def check_ct(folder, dump):
    mods = read_index(dump)
    cfg = json.load(open(os.path.join(folder, "config.json")))
    qc = cfg["quantization_config"]
    if qc["quant_method"] != "compressed-tensors" or qc["format"] != "pack-quantized":
        fail(f"{folder}/config.json: quant_method/format {qc['quant_method']}/{qc['format']}")
    scheme = qc["config_groups"]["group_0"]
    wq = scheme["weights"]
    if wq["num_bits"] != 4 or wq["type"] != "int":
        fail(f"weights {wq}")
    ignore = set(qc["ignore"])
    if "lm_head" not in ignore:
        fail("lm_head is not in ignore")
    st = read_safetensors(os.path.join(folder, "model.safetensors"))
    n_packed = n_dense = 0
    for m in mods:
        name, rows, cols = m["name"], m["d_out"], m["d_in"]
        want = load_f32(os.path.join(dump, name + ".deq"))
        if name in ignore:
            dt, shape, w = st[name + ".weight"]
            if shape != [rows, cols]:
                fail(f"{name}.weight shape {shape}")
            compare(name + ".weight", w, want)
            n_dense += 1
            continue
        _, shape, packed = st[name + ".weight_packed"]
        _, sshape, scale = st[name + ".weight_scale"]
        _, _, wshape = st[name + ".weight_shape"]
        if list(wshape) != [rows, cols]:
            fail(f"{name}.weight_shape {list(wshape)}")
        groups = sshape[1]
        gsize = wq["group_size"] if wq["strategy"] == "group" else cols
        if groups * gsize != cols:
            fail(f"{name}: {groups} groups of {gsize} for {cols} columns")
        pc = (cols + 7) // 8
        if shape != [rows, pc]:
            fail(f"{name}.weight_packed shape {shape}")
        zp = None
        if not wq["symmetric"]:
            _, zshape, zpk = st[name + ".weight_zero_point"]
            if zshape != [(rows + 7) // 8, groups]:
                fail(f"{name}.weight_zero_point shape {zshape}")
            zp = [[((zpk[(r // 8) * groups + g] & 0xffffffff) >> (4 * (r % 8)) & 15) - 8
                   for g in range(groups)] for r in range(rows)]
        got = array("f")
        for r in range(rows):
            for c in range(cols):
                word = packed[r * pc + c // 8] & 0xffffffff
                q = ((word >> (4 * (c % 8))) & 15) - 8
                g = c // gsize
                z = zp[r][g] if zp else 0
                got.append(f32((q - z) * scale[r * groups + g]))
        compare(name + " (dequantized)", got, want)
        n_packed += 1
    # the PEFT adapter: B.A = L.R exactly (the factors themselves), at scale alpha / r = 1
    n_lora = 0
    lora_mods = [m for m in mods if m["rank"] > 0]
    if lora_mods:
        acfg = json.load(open(os.path.join(folder, "adapter", "adapter_config.json")))
        ad = read_safetensors(os.path.join(folder, "adapter", "adapter_model.safetensors"))
        if acfg["peft_type"] != "LORA" or acfg.get("use_rslora"):
            fail(f"adapter_config {acfg}")
        for m in lora_mods:
            name, r = m["name"], m["rank"]
            rr = acfg["rank_pattern"].get(name, acfg["r"])
            alpha = acfg["alpha_pattern"].get(name, acfg["lora_alpha"])
            if rr != r or alpha / rr != 1.0:
                fail(f"{name}: adapter rank {rr} alpha {alpha} (expected rank {r}, scale 1)")
            key = "base_model.model." + name
            _, ashape, A = ad[key + ".lora_A.weight"]
            _, bshape, B = ad[key + ".lora_B.weight"]
            if ashape != [r, m["d_in"]] or bshape != [m["d_out"], r]:
                fail(f"{name}: lora_A {ashape} lora_B {bshape}")
            compare(key + ".lora_A.weight", A, load_f32(os.path.join(dump, name + ".R")))
            compare(key + ".lora_B.weight", B, load_f32(os.path.join(dump, name + ".L")))
            n_lora += 1
    print(f"compressed-tensors: {n_packed} packed and {n_dense} dense module(s) dequantize "
          f"exactly to the checkpoint; adapter: {n_lora} module(s) with lora_A = R, lora_B = L")


# ---- GGUF ----------------------------------------------------------------------------------
GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
                12: "d"}


class Reader:
    def __init__(self, data):
        self.d, self.p = data, 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.d, self.p)
        self.p += struct.calcsize("<" + fmt)
        return v[0]

    def string(self):
        n = self.take("Q")
        s = self.d[self.p:self.p + n]
        self.p += n
        return s.decode("utf-8")

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("I"), self.take("Q")
            return [self.value(et) for _ in range(n)]
        return self.take(GGUF_SCALARS[t])


def read_gguf(path):
    data = open(path, "rb").read()
    r = Reader(data)
    if data[:4] != b"GGUF":
        fail(f"{path}: magic {data[:4]!r}")
    r.p = 4
    version, nt, nkv = r.take("I"), r.take("Q"), r.take("Q")
    if version != 3:
        fail(f"{path}: version {version}")
    kv = {}
    for _ in range(nkv):
        k = r.string()
        kv[k] = r.value(r.take("I"))
    infos = []
    for _ in range(nt):
        name = r.string()
        nd = r.take("I")
        ne = [r.take("Q") for _ in range(nd)]
        infos.append((name, ne, r.take("I"), r.take("Q")))
    align = kv.get("general.alignment", 32)
    base = (r.p + align - 1) // align * align
    tensors = {}
    for name, ne, typ, off in infos:
        if off % align:
            fail(f"{path}: tensor {name} offset {off} not aligned to {align}")
        tensors[name] = (ne, typ, base + off)
    return kv, tensors, data


def gguf_values(data, ne, typ, off):
    cols, rows = ne[0], (ne[1] if len(ne) > 1 else 1)
    out = array("f")
    if typ == 0:
        out.frombytes(data[off:off + 4 * cols * rows])
        return out
    bsize = {2: 18, 3: 20}[typ]
    p = off
    for _ in range(rows * cols // 32):
        d = struct.unpack_from("<e", data, p)[0]
        m = struct.unpack_from("<e", data, p + 2)[0] if typ == 3 else 0.0
        qs = data[p + bsize - 16:p + bsize]
        q = [b & 15 for b in qs] + [b >> 4 for b in qs]
        if typ == 2:
            out.extend(f32(d * (x - 8)) for x in q)
        else:
            out.extend(f32(d * x + m) for x in q)
        p += bsize
    return out


GGUF_MODULES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
                "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}


def gguf_name(name):
    parts = name.split(".")  # model.layers.L.(self_attn|mlp).X
    return f"blk.{parts[2]}.{GGUF_MODULES[parts[4]]}.weight"


def permute_rows(values, rows, cols, heads, rope):
    """Rows of an HF q/k matrix in GGUF order: GGUF row h*hd + 2i + j = HF row h*hd + j*hd/2 + i."""
    if rope != "hf" or heads == 0:
        return values
    hd = rows // heads
    out = array("f")
    for r in range(rows):
        h, w = divmod(r, hd)
        s = h * hd + (w % 2) * (hd // 2) + w // 2
        out.extend(values[s * cols:(s + 1) * cols])
    return out


def check_gguf(folder, dump, rope):
    mods = read_index(dump)
    kv, tensors, data = read_gguf(os.path.join(folder, "model.gguf"))
    for key in ["general.architecture", "llama.embedding_length", "llama.block_count",
                "llama.attention.head_count", "llama.attention.head_count_kv",
                "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"]:
        if key not in kv:
            fail(f"model.gguf: key {key} missing")
    toks, types = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.token_type"]
    if toks[1] != "<s>" or toks[2] != "</s>" or types[1] != 3 or types[0] != 2:
        fail(f"model.gguf: special pieces {toks[:3]} types {types[:3]}")
    heads = {"attn_q": kv["llama.attention.head_count"], "attn_k": kv["llama.attention.head_count_kv"]}
    n_q4 = n_f32 = 0
    for m in mods:
        gname = gguf_name(m["name"])
        ne, typ, off = tensors[gname]
        if ne != [m["d_in"], m["d_out"]]:
            fail(f"{gname}: ne {ne} (expected [{m['d_in']}, {m['d_out']}])")
        packed = m["group"] == 32 and m["d_in"] % 32 == 0
        want_type = (3 if m["asym"] else 2) if packed else 0
        if typ != want_type:
            fail(f"{gname}: ggml type {typ} (expected {want_type})")
        want = load_f32(os.path.join(dump, m["name"] + (".deq16" if packed else ".deq")))
        want = permute_rows(want, m["d_out"], m["d_in"], heads.get(gname.split(".")[2], 0), rope)
        compare(gname, gguf_values(data, ne, typ, off), want)
        n_q4 += packed
        n_f32 += not packed
    n_lora = 0
    if any(m["rank"] for m in mods):
        kv, tensors, data = read_gguf(os.path.join(folder, "lora.gguf"))
        if kv.get("general.type") != "adapter" or kv.get("adapter.type") != "lora":
            fail(f"lora.gguf: general.type {kv.get('general.type')} adapter.type "
                 f"{kv.get('adapter.type')}")
        for m in mods:
            if not m["rank"]:
                continue
            gname = gguf_name(m["name"])
            alpha = kv["adapter.lora.alpha"]
            if alpha not in (0.0, float(m["rank"])):
                fail(f"lora.gguf: alpha {alpha} gives scale {alpha / m['rank']} for {gname}")
            ne_a, ta, oa = tensors[gname + ".lora_a"]
            ne_b, tb, ob = tensors[gname + ".lora_b"]
            if ne_a != [m["d_in"], m["rank"]] or ne_b != [m["rank"], m["d_out"]]:
                fail(f"{gname}: lora_a ne {ne_a}, lora_b ne {ne_b}")
            compare(gname + ".lora_a", gguf_values(data, ne_a, ta, oa),
                    load_f32(os.path.join(dump, m["name"] + ".R")))
            L = permute_rows(load_f32(os.path.join(dump, m["name"] + ".L")), m["d_out"], m["rank"],
                             heads.get(gname.split(".")[2], 0), rope)
            compare(gname + ".lora_b", gguf_values(data, ne_b, tb, ob), L)
            n_lora += 1
    print(f"gguf: {n_q4} Q4 module(s) hold the checkpoint's codes (F16 scales) and {n_f32} F32 "
          f"module(s) its dequantized weight; lora.gguf: {n_lora} module(s) with lora_a = R, "
          f"lora_b = L")


def same_tensors(a, b):
    """Two GGUF files hold the same tensors (names, shapes, types, bytes)."""
    ka, ta, da = read_gguf(a)
    kb, tb, db = read_gguf(b)
    if sorted(ta) != sorted(tb):
        fail(f"{a} and {b}: different tensor names")
    for name, (ne, typ, off) in ta.items():
        ne2, typ2, off2 = tb[name]
        n = ne[0] * (ne[1] if len(ne) > 1 else 1)
        size = 4 * n if typ == 0 else n // 32 * {2: 18, 3: 20}[typ]
        if (ne, typ) != (ne2, typ2) or da[off:off + size] != db[off2:off2 + size]:
            fail(f"{a} and {b}: tensor {name} differs")
    print(f"gguf: {len(ta)} tensors identical in {a} and {b}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "same-tensors":
        same_tensors(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 4 and sys.argv[1] == "ct":
        check_ct(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "gguf":
        check_gguf(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
