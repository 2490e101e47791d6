#!/bin/bash
# capture.sh CASE CHECK: drives `qrecon capture` (and mpiexec) on the real models; CHECK is the
# capture_check helper. Each case says what it expected and what it found when it fails.
set -u
case_name=$1
check=$2
data=${QRECON_TEST_DATA:-}
if [ -z "$data" ] || [ ! -d "$data/models" ]; then
    echo "skip: shared data folder '$data' not found"
    exit 77
fi
bin=$QRECON_BIN
mpi=${MPIEXEC:-mpiexec}
text=$data/text/tinystories_val_a.txt
stories=$data/models/stories260K/hf
baby=$data/models/babyllama105/llama2c
scratch=$(mktemp -d "${TMPDIR:-/tmp}/qrecon-capture-$case_name.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
fail=0

die() {
    echo "FAIL: $*" >&2
    exit 1
}

# capture NP DIR ARGS...: run a capture under mpiexec -n NP, quiet, failing the test on error.
capture() {
    local np=$1 out=$2
    shift 2
    "$mpi" -n "$np" "$bin" capture --quiet --out "$out" "$@" >"$scratch/log" 2>&1 ||
        die "capture -n $np into $out failed: $(cat "$scratch/log")"
}

# expect_bad WHAT PATTERN ARGS...: the command must exit 2, print PATTERN, and leave no shard.
expect_bad() {
    local what=$1 pattern=$2
    shift 2
    "$mpi" -n "${bad_np:-1}" "$bin" capture --quiet "$@" >"$scratch/out" 2>&1
    local rc=$?
    if [ $rc -ne 2 ]; then
        echo "FAIL: $what: expected exit 2, found $rc: $(cat "$scratch/out")" >&2
        fail=1
    elif ! grep -q -- "$pattern" "$scratch/out"; then
        echo "FAIL: $what: expected a message matching '$pattern', found: $(cat "$scratch/out")" >&2
        fail=1
    else
        echo "ok: $what -> $(grep -m1 error "$scratch/out")"
    fi
}

common=(--model "$stories" --text "$text" --seq-len 128 --tokens 1280)

case $case_name in
rmsnorm)
    capture 1 "$scratch/a" "${common[@]}"
    "$check" rmsnorm "$scratch/a" "$stories" || exit 1
    capture 1 "$scratch/b" --model "$baby" --text "$text" --seq-len 256 --tokens 2048 \
        --unknown-to-zero
    "$check" rmsnorm "$scratch/b" "$baby" || exit 1
    ;;
ranks)
    # The same windows from 1, 2 and 3 ranks: identical rows, in order, when concatenated.
    capture 1 "$scratch/n1" "${common[@]}"
    capture 2 "$scratch/n2" "${common[@]}"
    capture 3 "$scratch/n3" "${common[@]}"
    ls "$scratch/n2"
    [ -f "$scratch/n2/shard-00000.h5" ] && [ -f "$scratch/n2/shard-00001.h5" ] ||
        die "expected shard-00000.h5 and shard-00001.h5 from -n 2"
    ls "$scratch/n2" | grep -q tmp && die "a .tmp file was left behind"
    "$check" compare "$scratch/n1" "$scratch/n2" 0 || exit 1
    "$check" compare "$scratch/n1" "$scratch/n3" 0 || exit 1
    "$check" reader_errors "$scratch/n2" "$scratch" || exit 1
    # Re-capturing with fewer ranks into the same folder replaces the old shards.
    capture 1 "$scratch/n2" "${common[@]}"
    [ "$(ls "$scratch/n2" | wc -l)" -eq 1 ] || die "stale shards left: $(ls "$scratch/n2")"
    "$check" compare "$scratch/n1" "$scratch/n2" 0 || exit 1
    ;;
determinism)
    for np in 1 2; do
        capture $np "$scratch/x$np" "${common[@]}"
        capture $np "$scratch/y$np" "${common[@]}"
        for f in "$scratch/x$np"/*; do
            cmp "$f" "$scratch/y$np/$(basename "$f")" ||
                die "-n $np: $(basename "$f") differs between two identical runs"
        done
        echo "ok: -n $np: $(ls "$scratch/x$np" | wc -l) shard(s) byte-identical across runs"
    done
    ;;
token_file)
    # Text -> shards -> the captured ids as a raw uint32 file -> shards again: the same rows.
    capture 1 "$scratch/t" "${common[@]}"
    "$check" tokens "$scratch/t" "$scratch/ids.u32" || exit 1
    capture 2 "$scratch/k" --model "$stories" --token-file "$scratch/ids.u32" --seq-len 128 \
        --tokens 1280
    "$check" compare "$scratch/t" "$scratch/k" 0 || exit 1
    ;;
f16)
    # float16 storage: within binary16 rounding (relative 2^-11 = 4.9e-4) of the float32 capture.
    capture 1 "$scratch/f32" "${common[@]}"
    capture 1 "$scratch/f16" "${common[@]}" --dtype f16
    "$check" compare "$scratch/f32" "$scratch/f16" 1e-3 || exit 1
    s32=$(stat -c %s "$scratch/f32/shard-00000.h5")
    s16=$(stat -c %s "$scratch/f16/shard-00000.h5")
    echo "shard bytes: f32 $s32, f16 $s16"
    [ $((s16 * 10)) -lt $((s32 * 6)) ] || die "f16 shard not smaller (f32 $s32, f16 $s16 bytes)"
    ;;
writer)
    "$check" writer "$scratch" || exit 1
    ;;
bad_input)
    : >"$scratch/empty.txt"
    expect_bad "empty text" "empty text" --model "$stories" --text "$scratch/empty.txt" \
        --out "$scratch/o1"
    expect_bad "--seq-len above the maximum" "maximum context (expected at most 512" \
        --model "$stories" --text "$text" --seq-len 1024 --out "$scratch/o2"
    printf 'Hi there.\nBye.' >"$scratch/newline.txt"
    expect_bad "unencodable byte" "byte 0x0A at offset 9" --model "$baby" \
        --text "$scratch/newline.txt" --seq-len 8 --out "$scratch/o3"
    capture 1 "$scratch/o4" --model "$baby" --text "$text" --seq-len 64 --tokens 256 \
        --unknown-to-zero
    expect_bad "folder with another model's shards" "holds shards of another model" \
        "${common[@]}" --out "$scratch/o4"
    expect_bad "text shorter than a window" "not enough for one window" --model "$stories" \
        --text "$scratch/newline.txt" --seq-len 64 --out "$scratch/o5"
    bad_np=3 expect_bad "more ranks than windows" "expected at least one window per rank" \
        --model "$stories" --text "$text" --seq-len 128 --tokens 256 --out "$scratch/o6"
    expect_bad "a flag given twice" "option '--tokens' given twice" "${common[@]}" --tokens 256 \
        --out "$scratch/o7"
    expect_bad "missing --out" "expected --model, --out" --model "$stories" --text "$text"
    for d in o1 o2 o3 o5 o6 o7; do
        if ls "$scratch/$d"/shard-* >/dev/null 2>&1; then
            echo "FAIL: $d: a refused capture left shards behind" >&2
            fail=1
        fi
    done
    [ -f "$scratch/o4/shard-00000.h5" ] || { echo "FAIL: the other model's shard was removed" >&2; fail=1; }
    ;;
*)
    die "unknown case $case_name"
    ;;
esac
exit $fail
