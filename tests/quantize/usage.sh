#!/bin/bash
# quantize.usage: bad options exit 2 with a message naming the option, on every rank alike;
# --help exits 0.
source "$(dirname "$0")/common.sh"
make_calib "$WORK/calib"
expect2() { # expect2 PATTERN NP options...
    local pattern=$1 np=$2
    shift 2
    "$MPIEXEC" -n "$np" "$QRECON_BIN" quantize "$@" >"$WORK/log" 2>&1
    local rc=$?
    [ $rc -eq 2 ] || { cat "$WORK/log"; fail "'$*' exited $rc (expected 2)"; }
    grep -q -- "$pattern" "$WORK/log" || { cat "$WORK/log"; fail "'$*': message lacks: $pattern"; }
}
base=(--model "$MODEL" --calib "$WORK/calib" --out "$WORK/u.h5")
expect2 "--model and --out are required" 1 --model "$MODEL"
expect2 "expected exactly one of --calib, --text and --token-file" 1 --model "$MODEL" --out "$WORK/u.h5"
expect2 "unknown option '--wbits'" 1 "${base[@]}" --wbits 4
expect2 "option '--rank' given twice" 1 "${base[@]}" --rank 4 --rank 8
expect2 "model.layers.0.self_attn.q_proj: rank (expected auto or 0..64, found 80)" 1 "${base[@]}" --rank 80
expect2 "--rank: expected auto or an integer" 1 "${base[@]}" --rank many
expect2 "model.layers.0.self_attn.q_proj: --bits 4.5 is below what the main matrix of srr stores" 1 \
    "${base[@]}" --bits 4.5 --group 32
expect2 "model.layers.0.self_attn.q_proj: --bits 6 (expected at most 6 bits per weight" 1 \
    "${base[@]}" --bits 6 --group 32 --rank 16
expect2 "--gptq-damp: expected a number" 1 "${base[@]}" --gptq --gptq-damp 2
expect2 "--abits: expected 4, 8 or 16" 1 "${base[@]}" --abits 6
expect2 "--method: expected rtn" 1 "${base[@]}" --method magic
expect2 "--svd: expected auto, exact or randomized" 1 "${base[@]}" --svd fast
expect2 "--holdout: expected a number in \[0, 0.9\]" 1 "${base[@]}" --holdout 2
expect2 "--grid 3x1: the job size 2 is not a multiple" 2 "${base[@]}" --grid 3x1
expect2 "unknown option '--bogus'" 2 "${base[@]}" --bogus
expect2 "--holdout 0.9: keeps 9 of 9 calibration windows" 1 "${base[@]}" --holdout 0.9
expect2 "not a folder" 1 --model "$MODEL" --calib "$WORK/nothing" --out "$WORK/u.h5"
"$MPIEXEC" -n 1 "$QRECON_BIN" quantize --help >"$WORK/log" 2>&1 || fail "--help failed"
grep -q "usage: mpiexec -n N qrecon quantize" "$WORK/log" || fail "--help text missing"
# the generated help prints the rule of the auto defaults
grep -q "r = floor(E m n / (16 (m + n)))" "$WORK/log" || fail "--help lacks the rank rule"
grep -q "fallback-rtn" "$WORK/log" || fail "--help lacks --fallback-rtn"
echo "quantize.usage: all option errors named"
