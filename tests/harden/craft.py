"""craft.py: edit a safetensors file for the harden tests (see inputs.sh).

  craft.py nan SRC DST TENSOR ROW COL       copy SRC with one F32/F16/BF16 value set to NaN
  craft.py poke SRC DST TENSOR              copy SRC with the first value of TENSOR set to 0.5
  craft.py rename SRC DST OLD NEW           copy SRC with tensor OLD renamed NEW (any bytes)
  craft.py many DST COUNT                   a header listing COUNT empty F32 tensors
"""
import json
import struct
import sys


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + hlen]), bytearray(raw[8 + hlen :])


def save(path, header, data):
    text = json.dumps(header, ensure_ascii=False).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + bytes(data))


cmd = sys.argv[1]
if cmd == "nan":
    src, dst, name, row, col = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    header, data = load(src)
    t = header[name]
    size = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}[t["dtype"]]
    cols = t["shape"][1] if len(t["shape"]) > 1 else 1
    off = t["data_offsets"][0] + (row * cols + col) * size
    nan = {"F32": b"\x00\x00\xc0\x7f", "F16": b"\x00\x7e", "BF16": b"\xc0\x7f", "F64": b"\0" * 6 + b"\xf8\x7f"}
    data[off : off + size] = nan[t["dtype"]]
    save(dst, header, data)
elif cmd == "poke":  # one F32 value set to 0.5, the header unchanged
    src, dst, name = sys.argv[2], sys.argv[3], sys.argv[4]
    header, _ = load(src)
    raw = bytearray(open(src, "rb").read())
    off = 8 + struct.unpack("<Q", raw[:8])[0] + header[name]["data_offsets"][0]
    raw[off : off + 4] = struct.pack("<f", 0.5)
    open(dst, "wb").write(raw)
elif cmd == "rename":
    src, dst, old, new = sys.argv[2:6]
    header, data = load(src)
    header[new.encode().decode("unicode_escape")] = header.pop(old)
    save(dst, header, data)
elif cmd == "many":
    dst, count = sys.argv[2], int(sys.argv[3])
    header = {"t%d" % i: {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(count)}
    save(dst, header, b"")
else:
    sys.exit("unknown command " + cmd)
