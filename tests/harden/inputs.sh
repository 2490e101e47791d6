#!/bin/bash
# inputs.sh CASE: hostile inputs at the command line (issue 16): non-finite weights (refused where
# the weights are read: eval, capture, quantize; inspect and plan do not read them), tensor names
# carrying terminal escape sequences, a header listing too many tensors, qrecon with no command.
# Each refused case must exit 2 with one error line that names the file (and tensor, row, column).
set -u
case_name=$1
make_calib=${2:-}
data=${QRECON_TEST_DATA:-}
if [ -z "$data" ] || [ ! -d "$data/models" ]; then
    echo "skip: shared data folder '$data' not found"
    exit 77
fi
bin=$QRECON_BIN
craft="python3 $QRECON_SRC/tests/harden/craft.py"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
hf=$data/models/stories260K/hf
text=$data/text/tinystories_val_a.txt
scratch=$(mktemp -d "${TMPDIR:-/tmp}/qrecon-harden-$case_name.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
fail=0

# expect2 WHAT PATTERN CMD...: exit 2, exactly one error line, matching PATTERN (grep -F).
expect2() {
    local what=$1 pattern=$2
    shift 2
    timeout 120 "$@" >"$scratch/out" 2>"$scratch/err"
    local rc=$? lines
    lines=$(grep -c 'error' "$scratch/err")
    if [ $rc -ne 2 ] || [ "$lines" -ne 1 ] || ! grep -qF -- "$pattern" "$scratch/err"; then
        echo "FAIL: $what: expected exit 2 and one error line with '$pattern', found exit $rc:" >&2
        cat "$scratch/err" >&2
        fail=1
    else
        echo "ok: $what -> $(cat "$scratch/err")"
    fi
}

model_copy() { mkdir -p "$1" && cp "$hf/config.json" "$hf/tokenizer.bin" "$1/"; }

case $case_name in
nocommand)
    expect2 "qrecon with no command" "no command given" "$bin"
    timeout 60 "$bin" --help >/dev/null 2>&1 || { echo "FAIL: --help must exit 0" >&2; fail=1; }
    ;;
nan_weights)
    q=model.layers.1.self_attn.q_proj.weight
    model_copy "$scratch/nan"
    $craft nan "$hf/model.safetensors" "$scratch/nan/model.safetensors" $q 5 7 || exit 1
    want="model.safetensors: tensor '$q': value at row 5, column 7 is not finite"
    expect2 "eval, NaN weight" "$want" "$bin" eval --model "$scratch/nan" --text "$text" \
        --seq-len 64 --max-tokens 256
    expect2 "capture, NaN weight" "$want" "$bin" capture --model "$scratch/nan" --text "$text" \
        --seq-len 64 --tokens 256 --out "$scratch/c"
    # Calibration rows under the NaN model's identity (capture would refuse the model): quantize
    # reaches the weights with every method; before, srr failed in dgelqf and rtn named no tensor.
    "$make_calib" "$scratch/nan" "$scratch/calib" 1 2 32 11 >/dev/null || exit 1
    for method in rtn srr; do
        expect2 "quantize --method $method, NaN weight" "$want" "$bin" quantize --model "$scratch/nan" \
            --calib "$scratch/calib" --out "$scratch/q-$method.h5" --method $method
    done
    model_copy "$scratch/nan_norm"
    $craft nan "$hf/model.safetensors" "$scratch/nan_norm/model.safetensors" model.norm.weight 3 0 ||
        exit 1
    expect2 "eval, NaN norm" "tensor 'model.norm.weight': element 3 is not finite" \
        "$bin" eval --model "$scratch/nan_norm" --text "$text" --seq-len 64 --max-tokens 256
    # llama2.c: the first value after the 28-byte header is the embedding (0, 0).
    cp "$data/models/stories260K/llama2c/"*.bin "$scratch/" 2>/dev/null
    l2c=$(ls "$data/models/stories260K/llama2c/"*.bin | grep -v tok | head -1)
    cp "$l2c" "$scratch/l2c.bin"
    printf '\x00\x00\x80\x7f' | dd of="$scratch/l2c.bin" bs=1 seek=28 conv=notrunc status=none
    cp "$data/models/stories260K/llama2c/tok512.bin" "$scratch/tok512.bin"
    expect2 "eval, llama2.c infinity" "value at row 0, column 0 is not finite" \
        "$bin" eval --model "$scratch/l2c.bin" --text "$text" --seq-len 64 --max-tokens 256
    ;;
escape)
    model_copy "$scratch/esc"
    $craft rename "$hf/model.safetensors" "$scratch/esc/model.safetensors" model.norm.weight \
        'model.norm.weight' || exit 1
    # An extra tensor whose name carries ESC [ 2 J (clear screen) and a bell: printed, not obeyed.
    python3 - "$scratch/esc/model.safetensors" <<'PY' || exit 1
import json, struct, sys
p = sys.argv[1]
raw = open(p, "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
h = json.loads(raw[8 : 8 + n]); data = raw[8 + n :]
end = max(v["data_offsets"][1] for k, v in h.items() if k != "__metadata__")
h["evil\x1b[2J\x07name"] = {"dtype": "F32", "shape": [1], "data_offsets": [end, end + 4]}
t = json.dumps(h).encode()
open(p, "wb").write(struct.pack("<Q", len(t)) + t + data[:end] + b"\0\0\0\0")
PY
    timeout 60 "$bin" inspect "$scratch/esc" >"$scratch/out" 2>&1 || {
        echo "FAIL: inspect of a model with an odd tensor name: $(cat "$scratch/out")" >&2
        exit 1
    }
    if grep -q $'\x1b' "$scratch/out" || grep -q $'\x07' "$scratch/out"; then
        echo "FAIL: inspect printed a raw escape sequence or bell" >&2
        fail=1
    fi
    grep -q 'evil?\[2J?name' "$scratch/out" || { echo "FAIL: expected the name as evil?[2J?name" >&2; fail=1; }
    # In an error message too: a missing config tensor named with an escape is printed cleaned.
    model_copy "$scratch/esc2"
    $craft rename "$hf/model.safetensors" "$scratch/esc2/model.safetensors" model.norm.weight \
        'x\x1b[31mred' || exit 1
    timeout 60 "$bin" inspect "$scratch/esc2/model.safetensors" >"$scratch/out" 2>&1
    if grep -q $'\x1b' "$scratch/out"; then
        echo "FAIL: an error message carried a raw escape sequence" >&2
        fail=1
    else
        echo "ok: names printed without control characters"
    fi
    ;;
identity)
    # Same header, one weight changed: the model identity (recorded by shards and checkpoints)
    # must change; it covers every byte, not just the header.
    model_copy "$scratch/a"
    model_copy "$scratch/b"
    $craft poke "$hf/model.safetensors" "$scratch/a/model.safetensors" model.norm.weight || exit 1
    cp "$hf/model.safetensors" "$scratch/b/model.safetensors"
    python3 - "$scratch/a/model.safetensors" "$scratch/b/model.safetensors" <<'PY' || exit 1
import struct, sys
a, b = (open(p, "rb").read() for p in sys.argv[1:])
n = struct.unpack("<Q", a[:8])[0]
assert a[: 8 + n] == b[: 8 + n] and a != b, "expected the same header and different weights"
PY
    ia=$("$bin" inspect "$scratch/a" | grep '^identity') || exit 1
    ib=$("$bin" inspect "$scratch/b" | grep '^identity') || exit 1
    if [ "$ia" = "$ib" ]; then
        echo "FAIL: same header, different weights, same identity ($ia)" >&2
        fail=1
    else
        echo "ok: identities differ: $ia / $ib"
    fi
    ;;
tensor_count)
    model_copy "$scratch/many"
    $craft many "$scratch/many/model.safetensors" 70000 || exit 1
    expect2 "70000 tensors" "header lists too many tensors (expected at most 65536" \
        "$bin" inspect "$scratch/many"
    ;;
outputs)
    # Outputs that would overwrite or sit among inputs are refused before any work (io/fs.c
    # qr_fs_check_output), and nothing is written: not the output, not <out>.tmp or <out>.parts.
    mpi=${MPIEXEC:-mpiexec}
    "$bin" capture --quiet --model "$hf" --text "$text" --seq-len 64 --tokens 256 \
        --out "$scratch/calib" >"$scratch/log" 2>&1 || { cat "$scratch/log"; exit 1; }
    "$bin" quantize --quiet --model "$hf" --calib "$scratch/calib" --method rtn \
        --out "$scratch/ck.h5" >"$scratch/log" 2>&1 || { cat "$scratch/log"; exit 1; }
    rm -rf "$scratch/ck.h5.parts"
    mkdir -p "$scratch/m" "$scratch/dir" "$scratch/rep"
    cp "$hf"/* "$scratch/m/"
    cp "$scratch/ck.h5" "$scratch/rep/ck.h5"
    sums=$(cd "$scratch" && md5sum m/* calib/* ck.h5)
    q=("$bin" quantize --model "$scratch/m" --calib "$scratch/calib" --method rtn)
    expect2 "quantize --out the source weights" "lies inside the input" "${q[@]}" --out "$scratch/m/model.safetensors"
    expect2 "quantize --out a calibration shard" "lies inside the input" "${q[@]}" --out "$scratch/calib/shard-00000.h5"
    expect2 "quantize --out an existing folder" "is a folder" "${q[@]}" --out "$scratch/dir"
    expect2 "quantize --out ''" "empty" "${q[@]}" --out ""
    expect2 "quantize --out in a missing folder" "its folder does not exist" "${q[@]}" --out "$scratch/no/x.h5"
    expect2 "validate --json the checkpoint" "is also an input" "$bin" validate "$scratch/ck.h5" \
        --calib "$scratch/calib" --json "$scratch/ck.h5"
    expect2 "validate --md inside the calibration" "lies inside the input" "$bin" validate \
        "$scratch/ck.h5" --calib "$scratch/calib" --md "$scratch/calib/x.md"
    expect2 "capture --out the model folder" "is also an input" "$bin" capture --model "$scratch/m" \
        --text "$text" --seq-len 64 --tokens 256 --out "$scratch/m"
    expect2 "capture --out a parent of the model" "holds the input" "$bin" capture --model "$scratch/m" \
        --text "$text" --seq-len 64 --tokens 256 --out "$scratch"
    expect2 "report --out the folder of the checkpoint" "holds the input" "$bin" report \
        "$scratch/rep/ck.h5" --out "$scratch/rep"
    expect2 "report --json the checkpoint" "is also an input" "$bin" report "$scratch/ck.h5" \
        --json "$scratch/ck.h5"
    expect2 "export --out the model folder" "is also an input" "$bin" export "$scratch/ck.h5" \
        --model "$scratch/m" --format compressed-tensors --out "$scratch/m"
    expect2 "quantize, 2 ranks, --out the weights" "lies inside the input" "$mpi" -n 2 "${q[@]}" \
        --out "$scratch/m/model.safetensors"
    [ "$sums" = "$(cd "$scratch" && md5sum m/* calib/* ck.h5)" ] || { echo "FAIL: an input changed" >&2; fail=1; }
    left=$(find "$scratch" -name '*.tmp*' -o -name '*.parts' -o -name 'x.*' -o -name '.tmp' | tr '\n' ' ')
    [ -z "$left" ] || { echo "FAIL: a refused command left: $left" >&2; fail=1; }
    ;;
*)
    echo "unknown case $case_name" >&2
    exit 1
    ;;
esac
exit $fail
