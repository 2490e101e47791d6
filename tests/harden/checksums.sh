#!/bin/bash
# checksums.sh FLIP CKPT_COMPARE: a flipped byte in a part's L, scales or packed codes is refused
# when the part is reused (resume) and at assembly; in the checkpoint's L or a copied tensor by
# validate, report and eval; every refusal exits 2 naming the file and dataset. The rerun after
# removing the damaged part gives the uninterrupted checkpoint.
set -u
flip=$1
compare=$2
data=${QRECON_TEST_DATA:-}
if [ -z "$data" ] || [ ! -d "$data/models" ]; then
    echo "skip: shared data folder '$data' not found"
    exit 77
fi
bin=$QRECON_BIN
mpi=${MPIEXEC:-mpiexec}
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
model=$data/models/stories260K/hf
text=$data/text/tinystories_val_a.txt
w=$(mktemp -d "${TMPDIR:-/tmp}/qrecon-checksums.XXXXXX")
trap 'rm -rf "$w"' EXIT
fail=0
die() { echo "FAIL: $*" >&2; exit 1; }

expect2() {
    local what=$1 pattern=$2
    shift 2
    timeout 120 "$@" >"$w/out" 2>&1
    local rc=$?
    if [ $rc -ne 2 ] || [ "$(grep -c 'error:' "$w/out")" -ne 1 ] || ! grep -qF -- "$pattern" "$w/out"; then
        echo "FAIL: $what: expected exit 2 and one line with '$pattern', found exit $rc:" >&2
        cat "$w/out" >&2
        fail=1
    else
        echo "ok: $what -> $(grep 'error:' "$w/out")"
    fi
}

"$mpi" -n 2 "$bin" capture --quiet --model "$model" --text "$text" --seq-len 64 --tokens 512 \
    --out "$w/calib" >"$w/log" 2>&1 || die "capture: $(cat "$w/log")"
q=(quantize --quiet --keep-parts --model "$model" --calib "$w/calib" --method srr --rank 4 --group 32)
"$mpi" -n 2 "$bin" "${q[@]}" --out "$w/ref.h5" >"$w/log" 2>&1 || die "quantize: $(cat "$w/log")"
rm -f "$w/ref.h5.parts/LOCK"
up=model.layers.0.mlp.up_proj
for ds in L main/scales main/packed; do
    rm -rf "$w/q.h5" "$w/q.h5.parts"
    cp -r "$w/ref.h5.parts" "$w/q.h5.parts"
    "$flip" "$w/q.h5.parts/$up.h5" "$ds" 5 || die "flip $ds"
    expect2 "resume with a flipped byte in the part's $ds" "dataset '$(basename $ds)': checksum mismatch" \
        "$mpi" -n 2 "$bin" "${q[@]}" --out "$w/q.h5"
    [ ! -e "$w/q.h5" ] || { echo "FAIL: a checkpoint was assembled from a damaged part" >&2; fail=1; }
done
rm -f "$w/q.h5.parts/$up.h5" "$w/q.h5.parts/LOCK"
"$mpi" -n 2 "$bin" "${q[@]}" --out "$w/q.h5" >"$w/log" 2>&1 || die "rerun: $(cat "$w/log")"
"$compare" "$w/ref.h5" "$w/q.h5" >/dev/null || { echo "FAIL: rerun differs" >&2; fail=1; }

cp "$w/ref.h5" "$w/bad.h5"
"$flip" "$w/bad.h5" "/$up/L" 5 || die "flip checkpoint L"
expect2 "validate, flipped byte in the checkpoint's L" "dataset 'L': checksum mismatch" \
    "$bin" validate "$w/bad.h5" --calib "$w/calib" --tokens 128
cp "$w/ref.h5" "$w/bad2.h5"
"$flip" "$w/bad2.h5" "/tensors/model.norm.weight" 3 || die "flip checkpoint tensor"
expect2 "eval, flipped byte in a copied tensor" "model.norm.weight': checksum mismatch" \
    "$bin" eval --model "$model" --ckpt "$w/bad2.h5" --text "$text" --seq-len 64 --max-tokens 128
exit $fail
