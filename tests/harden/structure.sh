#!/bin/bash
# structure.sh CKPT_EDIT: validate and report check a checkpoint's structure against its header
# before anything else (io/ckpt_check.c): a deleted module, a deleted or reshaped norm, NaN
# embeddings (in a file without checksums) are each refused with exit 2 naming the problem; before,
# validate reported "34/34 passed" and report exited 0.
set -u
edit=$1
data=${QRECON_TEST_DATA:-}
if [ -z "$data" ] || [ ! -d "$data/models" ]; then
    echo "skip: shared data folder '$data' not found"
    exit 77
fi
bin=$QRECON_BIN
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
model=$data/models/stories260K/hf
text=$data/text/tinystories_val_a.txt
w=$(mktemp -d "${TMPDIR:-/tmp}/qrecon-structure.XXXXXX")
trap 'rm -rf "$w"' EXIT
fail=0
"$bin" capture --quiet --model "$model" --text "$text" --seq-len 64 --tokens 256 --out "$w/calib" \
    >"$w/log" 2>&1 || { cat "$w/log"; exit 1; }
"$bin" quantize --quiet --model "$model" --calib "$w/calib" --method rtn --out "$w/ck.h5" \
    >"$w/log" 2>&1 || { cat "$w/log"; exit 1; }
"$bin" validate "$w/ck.h5" --calib "$w/calib" --quiet --tokens 128 >"$w/log" 2>&1 ||
    { cat "$w/log"; echo "FAIL: the undamaged checkpoint must validate" >&2; exit 1; }

check() { # NAME PATTERN OP PATH
    local name=$1 pattern=$2
    cp "$w/ck.h5" "$w/$name.h5"
    "$edit" "$w/$name.h5" "$3" "$4" || { fail=1; return; }
    for cmd in validate validate-np2 validate-np3 report; do
        if [ $cmd = validate ]; then
            timeout 120 "$bin" validate "$w/$name.h5" --calib "$w/calib" --quiet --tokens 128 >"$w/out" 2>&1
        elif [ $cmd != report ]; then # the reads are shared over the ranks: the one that finds it tells all
            timeout 120 "${MPIEXEC:-mpiexec}" -n "${cmd#validate-np}" "$bin" validate "$w/$name.h5" \
                --calib "$w/calib" --quiet --tokens 128 >"$w/out" 2>&1
        else
            timeout 120 "$bin" report "$w/$name.h5" --md "$w/$name.md" >"$w/out" 2>&1
        fi
        local rc=$?
        if [ $rc -ne 2 ] || [ "$(grep -c 'error:' "$w/out")" -ne 1 ] || ! grep -qF -- "$pattern" "$w/out"; then
            echo "FAIL: $cmd, $name: expected exit 2 and one line with '$pattern', found exit $rc:" >&2
            cat "$w/out" >&2
            fail=1
        else
            echo "ok: $cmd, $name -> $(grep 'error:' "$w/out")"
        fi
    done
}
check deleted_module "34 quantized module(s) (expected 35" delete /model.layers.2.mlp.up_proj
check deleted_norm "tensor 'model.norm.weight' is missing" delete /tensors/model.norm.weight
check reshaped_norm "tensor 'model.layers.1.input_layernorm.weight' has the wrong shape" \
    reshape /tensors/model.layers.1.input_layernorm.weight
check nan_embedding "model.embed_tokens.weight value[0] is not finite" nan \
    /tensors/model.embed_tokens.weight
exit $fail
