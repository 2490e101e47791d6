#!/bin/bash
# capture.sh CASE CHECK [CKPT_COMPARE]: drives `qrecon capture` (and mpiexec) on the real models;
# CHECK is the capture_check helper, CKPT_COMPARE tests/quantize/ckpt_compare. Each case says what
# it expected and what it found when it fails.
set -u
case_name=$1
check=$2
ckpt_compare=${3:-}
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
    # The same windows from 1, 2 and 3 ranks of one group (every rank holds every layer and
    # captures its share of the windows): identical rows, in order, when concatenated.
    capture 1 "$scratch/n1" "${common[@]}"
    capture 2 "$scratch/n2" "${common[@]}" --grid 2x1
    capture 3 "$scratch/n3" "${common[@]}" --grid 3x1
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
pipeline)
    # The layers cut into the plan's slices, one group per slice, hidden states passed group to
    # group: the same bits as one rank holding the whole model, for 1-4 ranks, for groups of two
    # ranks, and for micro-batches of several windows.
    capture 1 "$scratch/ref" "${common[@]}"
    for np in 1 2 3 4; do
        capture $np "$scratch/p$np" "${common[@]}"
        n=$(ls "$scratch/p$np" | wc -l)
        [ "$n" -eq "$np" ] || die "-n $np: expected $np shard(s), one per layer slice, found $(ls "$scratch/p$np")"
        "$check" compare "$scratch/ref" "$scratch/p$np" 0 || exit 1
        echo "ok: -n $np: $(ls "$scratch/p$np" | tr '\n' ' ')"
    done
    capture 4 "$scratch/g2" "${common[@]}" --grid 2x1 --micro-batch 3
    [ "$(ls "$scratch/g2" | wc -l)" -eq 4 ] || die "-n 4 --grid 2x1: expected 2 slices x 2 shards, found $(ls "$scratch/g2")"
    "$check" compare "$scratch/ref" "$scratch/g2" 0 || exit 1
    capture 3 "$scratch/b" --model "$baby" --text "$text" --seq-len 64 --tokens 640 \
        --unknown-to-zero --micro-batch 4
    capture 1 "$scratch/b1" --model "$baby" --text "$text" --seq-len 64 --tokens 640 \
        --unknown-to-zero
    "$check" compare "$scratch/b1" "$scratch/b" 0 || exit 1
    # q/k/v biases (qwen2) and llama3 RoPE scaling through the slices too (synthetic, token ids)
    seq 2 1999 | awk '{ printf "%d ", ($1 * 7919) % 997 + 2 }' >"$scratch/ids.txt"
    for arch in "--arch qwen2 --rope-theta 1000000" "--rope-theta 500000 --rope-scaling llama3"; do
        # shellcheck disable=SC2086
        "$bin" synth --quiet --out "$scratch/syn" --dim 64 --hidden 128 --layers 3 --heads 4 \
            --kv-heads 2 --vocab 1000 $arch >/dev/null 2>&1 || die "synth $arch"
        for np in 1 3; do
            rm -rf "$scratch/s$np"
            capture $np "$scratch/s$np" --model "$scratch/syn" --token-file "$scratch/ids.txt" \
                --seq-len 64 --tokens 1024 --micro-batch 2
        done
        "$check" compare "$scratch/s1" "$scratch/s3" 0 || die "$arch: 3 slices differ from 1 rank"
        echo "ok: synthetic $arch: 3 slices = 1 rank"
    done
    "$check" slices "$scratch/p3" "$scratch" || exit 1
    "$check" versions "$scratch/ref/shard-00000.h5" "$scratch" || exit 1
    ;;
pipeline_quantize)
    # Quantize from a pipelined capture gives the checkpoint a one-rank capture gives, whether the
    # quantize job's slices match the capture's (-n k from -n k) or not (-n 2 from -n 3).
    [ -x "$ckpt_compare" ] || die "no ckpt_compare given"
    q=(--method srr --group 32 --rank 8 --seed 3)
    quant() { # NP CALIB OUT
        "$mpi" -n "$1" "$bin" quantize --quiet --model "$stories" --calib "$2" --out "$3" \
            "${q[@]}" >"$scratch/qlog" 2>&1 || die "quantize -n $1 from $2 failed: $(cat "$scratch/qlog")"
    }
    capture 1 "$scratch/c1" "${common[@]}"
    quant 1 "$scratch/c1" "$scratch/ref.h5"
    for np in 2 3 4; do
        capture $np "$scratch/c$np" "${common[@]}"
        quant $np "$scratch/c$np" "$scratch/q$np.h5"
        "$ckpt_compare" "$scratch/ref.h5" "$scratch/q$np.h5" ||
            die "quantize -n $np from a $np-slice capture differs from the one-rank capture's"
        echo "ok: quantize -n $np from a $np-slice capture: the same checkpoint"
    done
    quant 2 "$scratch/c3" "$scratch/x.h5"
    "$ckpt_compare" "$scratch/ref.h5" "$scratch/x.h5" ||
        die "quantize -n 2 from a 3-slice capture differs"
    echo "ok: quantize -n 2 from a 3-slice capture: the same checkpoint"
    ;;
resume)
    # kill -9 at the end of a pipelined capture (the last slice's rank dies before its shard is
    # whole): the rerun keeps the complete shards and writes only the missing one.
    capture 1 "$scratch/ref" "${common[@]}"
    QRECON_TEST_KILL_AT=capture:last "$mpi" -n 3 "$bin" capture --quiet --out "$scratch/k" \
        "${common[@]}" >"$scratch/klog" 2>&1 && die "the killed capture exited 0"
    ls "$scratch/k"
    [ -f "$scratch/k/shard-l00000-00002-00000.h5" ] && [ -f "$scratch/k/shard-l00002-00004-00000.h5" ] ||
        die "expected the first two slices' shards complete after the kill, found $(ls "$scratch/k")"
    [ ! -f "$scratch/k/shard-l00004-00005-00000.h5" ] || die "the killed rank's shard is complete"
    before=$(stat -c %Y.%i "$scratch/k"/shard-l0000[02]-*.h5 | tr '\n' ' ')
    "$mpi" -n 3 "$bin" capture --out "$scratch/k" "${common[@]}" >"$scratch/log" 2>&1 ||
        die "rerun failed: $(cat "$scratch/log")"
    grep -q "2 shard(s) of the same capture already complete" "$scratch/log" ||
        die "the rerun did not keep the two complete shards: $(cat "$scratch/log")"
    grep -q "written to 1 shard(s) (2 kept)" "$scratch/log" ||
        die "the rerun did not write only the missing shard: $(cat "$scratch/log")"
    after=$(stat -c %Y.%i "$scratch/k"/shard-l0000[02]-*.h5 | tr '\n' ' ')
    [ "$before" = "$after" ] || die "kept shards were rewritten ($before vs $after)"
    ls "$scratch/k" | grep -q tmp && die "a .tmp file was left behind"
    "$check" compare "$scratch/ref" "$scratch/k" 0 || exit 1
    # A rerun of a complete capture writes nothing; other options replace every shard.
    "$mpi" -n 3 "$bin" capture --out "$scratch/k" "${common[@]}" >"$scratch/log" 2>&1 ||
        die "second rerun failed"
    grep -q "written to 0 shard(s) (3 kept)" "$scratch/log" || die "complete rerun: $(cat "$scratch/log")"
    capture 3 "$scratch/k" --model "$stories" --text "$text" --seq-len 128 --tokens 1024
    capture 1 "$scratch/ref8" --model "$stories" --text "$text" --seq-len 128 --tokens 1024
    "$check" compare "$scratch/ref8" "$scratch/k" 0 || exit 1
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
    bad_np=3 expect_bad "more ranks per group than windows" "expected at least one window per rank" \
        --model "$stories" --text "$text" --seq-len 128 --tokens 256 --grid 3x1 --out "$scratch/o6"
    expect_bad "a flag given twice" "option '--tokens' given twice" "${common[@]}" --tokens 256 \
        --out "$scratch/o7"
    bad_np=3 expect_bad "a grid that does not divide the ranks" "not a multiple of the group" \
        "${common[@]}" --grid 2x1 --out "$scratch/o8"
    expect_bad "missing --out" "expected --model, --out" --model "$stories" --text "$text"
    for d in o1 o2 o3 o5 o6 o7 o8; do
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
