# export.formats: every module of every export dequantizes to exactly the checkpoint's values,
# read back by readers written from the published formats (read_exports.py, stdlib Python);
# refusals exit 2 with one line; sampled generation through the INT4 kernels is seeded.
. "$(dirname "$0")/common.sh"
DUMP_BIN=$2
command -v python3 >/dev/null || { echo "skip: python3 is absent"; exit 77; }
OUT=$SCRATCH/formats
rm -rf "$OUT"
mkdir -p "$OUT"
for c in lqer-a8 rtnasym-a8; do
    mkdir -p "$OUT/$c.dump"
    "$DUMP_BIN" "$SCRATCH/$c.h5" "$OUT/$c.dump" || fail "ckpt_dump $c"
    "$QR" export "$SCRATCH/$c.h5" --model "$MODEL" --format gguf --out "$OUT/$c.gguf" \
        >"$OUT/$c.gguf.log" 2>&1 || { cat "$OUT/$c.gguf.log"; fail "export gguf $c"; }
    grep -q "qrecon: export: wrote .* tensors" "$OUT/$c.gguf.log" || fail "no summary line for $c"
    python3 "$HERE/read_exports.py" gguf "$OUT/$c.gguf" "$OUT/$c.dump" hf || fail "gguf $c"
    "$QR" export "$SCRATCH/$c.h5" --model "$MODEL" --format compressed-tensors \
        --out "$OUT/$c.ct" --quiet || fail "export compressed-tensors $c"
    [ -f "$OUT/$c.ct/tokenizer.bin" ] || fail "$c: tokenizer.bin not copied"
    python3 "$HERE/read_exports.py" ct "$OUT/$c.ct" "$OUT/$c.dump" || fail "compressed-tensors $c"
done
grep -q "scales rounded to F16: max |dW|" "$OUT/lqer-a8.gguf.log" || fail "no F16 scale figure"
grep -q "5 module(s) as dense F32" "$OUT/lqer-a8.gguf.log" || fail "down_proj fallback not reported"
[ -f "$OUT/rtnasym-a8.gguf/lora.gguf" ] && fail "rtn wrote an adapter"

# the float export of the Hugging Face folder (q/k rows permuted back to adjacent RoPE pairs) and of
# the llama2.c checkpoint (rows as stored) hold the same tensors
"$QR" export --model "$MODEL" --format gguf --out "$OUT/float-hf" --quiet || fail "export float hf"
"$QR" export --model "$MODEL_L2C" --format gguf --out "$OUT/float-l2c" --quiet ||
    fail "export float llama2c"
python3 "$HERE/read_exports.py" same-tensors "$OUT/float-hf/model.gguf" \
    "$OUT/float-l2c/model.gguf" || fail "float exports of the HF and llama2.c forms differ"

# refusals: one line naming the method or option and what would export, exit 2
"$QR" quantize --model "$MODEL" --calib "$SCRATCH/calib" --out "$OUT/rtn-g64.h5" --method rtn \
    --group 64 --quiet || fail "quantize rtn group 64"
"$QR" quantize --model "$MODEL" --calib "$SCRATCH/calib" --out "$OUT/aser.h5" --method aser \
    --rank 4 --quiet || fail "quantize aser"
"$QR" export "$OUT/rtn-g64.h5" --model "$MODEL" --format gguf --out "$OUT/x" 2>"$OUT/err.txt"
[ $? -eq 2 ] || fail "group 64 to gguf: exit status (expected 2)"
grep -q -- "--group 64 has no GGUF form.*quantize with --group 32" "$OUT/err.txt" ||
    fail "group 64 message: $(cat "$OUT/err.txt")"
[ "$(wc -l <"$OUT/err.txt")" -eq 1 ] || fail "group 64: more than one line"
"$QR" export "$OUT/rtn-g64.h5" --model "$MODEL" --format compressed-tensors --out "$OUT/g64.ct" \
    --quiet || fail "group 64 to compressed-tensors"
for f in gguf compressed-tensors; do
    "$QR" export "$OUT/aser.h5" --model "$MODEL" --format $f --out "$OUT/x" 2>"$OUT/err.txt"
    [ $? -eq 2 ] || fail "aser to $f: exit status (expected 2)"
    grep -q "method aser has no $f form.*rtn, gptq, lqer" "$OUT/err.txt" ||
        fail "aser message: $(cat "$OUT/err.txt")"
done
"$QR" export "$SCRATCH/lqer-a8.h5" --model "$MODEL_L2C" --format gguf --out "$OUT/x" 2>"$OUT/err.txt"
[ $? -eq 2 ] || fail "checkpoint of another model: exit status (expected 2)"
grep -q "quantized from another model" "$OUT/err.txt" || fail "model check: $(cat "$OUT/err.txt")"

# generate --ckpt: greedy is deterministic; a sampled run is reproducible by its seed
g() { "$QR" generate --model "$MODEL" --ckpt "$SCRATCH/lqer-a8.h5" --prompt "Once upon a time" \
    --steps 24 "$@"; }
a=$(g --temperature 0.9 --seed 7) || fail "generate sampled"
b=$(g --temperature 0.9 --seed 7) || fail "generate sampled"
c=$(g --temperature 0.9 --seed 8 --top-k 40) || fail "generate sampled"
[ "$a" = "$b" ] || fail "the same seed gave different text"
[ "$a" != "$c" ] || echo "note: seeds 7 and 8 gave the same text"
case "$a" in "Once upon a time"*) ;; *) fail "sampled text: $a" ;; esac
echo "formats: all exports read back exactly; refusals and seeded sampling checked"
