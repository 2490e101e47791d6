#!/bin/bash
# pipeline.sh ARCH TOKENIZER_TEST FIXTURES TOK_DUMP: `qrecon synth` an ARCH-shaped folder (llama2: Llama-2's
# tokenizer.json and vocabulary size; llama3: Llama-3's, theta 5e5, rope_scaling llama3; qwen2:
# q/k/v biases, theta 1e6, the Qwen2-style tokenizer.json) with a real tokenizer.json from the
# tokenizer tests' fixtures, then run capture on 2 ranks and eval, and check:
#   - the captured windows hold the tokenizer's BOS (Qwen2: its EOS, having no BOS) followed by
#     exactly the ids @huggingface/tokenizers gives for the text;
#   - eval scores as many tokens as the reference encoding has;
#   - qwen2: quantize (rtn, 2 ranks) stores the biases unquantized in /tensors and eval --ckpt
#     runs with them (the checkpoint loader requires them).
set -u
arch=$1
tok_test=$2
fixtures=$3
dump=$4
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=$QRECON_BIN
mpi=${MPIEXEC:-mpiexec}
data=${QRECON_TEST_DATA:-}
refs=${QRECON_NPM_CACHE:-$HOME/.cache/qrecon-npm}/tokenizer-refs
if [ -z "$data" ] || [ ! -f "$data/text/tinystories_val_a.txt" ]; then
    echo "skip: shared data folder '$data' not found"
    exit 77
fi
bash "$tok_test" fixtures none "$fixtures"
rc=$?
[ $rc -eq 0 ] || exit $rc
scratch=$(mktemp -d "${TMPDIR:-/tmp}/qrecon-archs-$arch.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
die() {
    echo "FAIL: $arch: $*" >&2
    exit 1
}
run() { # run LOG CMD...: fail the test with the log on error
    local log=$1
    shift
    "$@" >"$scratch/$log" 2>&1 || die "$* failed: $(tail -5 "$scratch/$log")"
}

shape=(--dim 64 --hidden 128 --layers 2 --heads 4 --kv-heads 2 --seq-len 256 --dtype bf16)
case $arch in
llama2) tok=llama2 extra=(--vocab 32000) ;;
llama3) tok=llama3 extra=(--vocab 128256 --rope-theta 500000 --rope-scaling llama3) ;;
qwen2) tok=qwen2 extra=(--arch qwen2 --vocab 128256 --rope-theta 1000000) ;;
*) die "unknown arch" ;;
esac
m=$scratch/model
run synth.log "$bin" synth --quiet --out "$m" "${shape[@]}" "${extra[@]}" \
    --tokenizer "$fixtures/$tok/tokenizer.json"
[ -f "$m/tokenizer.json" ] && [ ! -f "$m/tokenizer.bin" ] || die "synth did not copy tokenizer.json"
if [ "$arch" = llama3 ]; then
    grep -q '"rope_type": "llama3"' "$m/config.json" || die "config.json lacks rope_scaling"
fi

# 3000 bytes of TinyStories: a few hundred tokens, 8 windows of 64
head -c 3000 "$data/text/tinystories_val_a.txt" >"$scratch/text.txt"
node "$here/../tokenizer/encode.mjs" "$refs" "$fixtures/$tok" "$scratch/text.txt" whole \
    >"$scratch/ref.txt" || die "reference encoding failed"
read -r -a ref <"$scratch/ref.txt"
read -r bos eos < <("$dump" "$m/tokenizer.json" --bos-eos)
start=$bos
[ "$bos" -ge 0 ] || start=$eos

L=64
# --grid 2x1: one group of 2 ranks splitting the windows (the default, one layer slice per rank,
# would write every window's tokens once per slice)
run capture.log "$mpi" -n 2 "$bin" capture --quiet --model "$m" --text "$scratch/text.txt" \
    --seq-len $L --tokens 512 --grid 2x1 --out "$scratch/calib"
: >"$scratch/got.txt"
for shard in "$scratch"/calib/shard-*.h5; do
    h5dump -d /tokens -b LE -o "$scratch/tok.bin" "$shard" >/dev/null || die "h5dump $shard"
    od -An -td4 -v "$scratch/tok.bin" | tr -s ' \n' '\n\n' | sed '/^$/d' >>"$scratch/got.txt"
done
n_got=$(wc -l <"$scratch/got.txt")
[ "$n_got" -eq 512 ] || die "capture: expected 512 token rows, found $n_got"
for ((w = 0; w < 512 / L; w++)); do
    expect="$start ${ref[*]:$((w * (L - 1))):$((L - 1))}"
    got=$(sed -n "$((w * L + 1)),$(((w + 1) * L))p" "$scratch/got.txt" | tr '\n' ' ' | sed 's/ $//')
    [ "$got" = "$expect" ] || die "capture window $w: expected [$expect], found [$got]"
done
echo "ok: $arch: capture: 8 windows = token $start + the reference ids (${#ref[@]} in the text)"

run eval.json "$bin" eval --model "$m" --text "$scratch/text.txt" --seq-len $L --json
scored=$(sed -n 's/.*"tokens_scored":\([0-9]*\).*/\1/p' "$scratch/eval.json")
nll=$(sed -n 's/.*"nll_per_token":\([0-9.]*\).*/\1/p' "$scratch/eval.json")
[ "$scored" = "${#ref[@]}" ] || die "eval scored $scored tokens, the reference encoding has ${#ref[@]}"
echo "ok: $arch: eval: $scored tokens scored, NLL/token $nll"

if [ "$arch" = qwen2 ]; then
    run quantize.log "$mpi" -n 2 "$bin" quantize --quiet --model "$m" --calib "$scratch/calib" \
        --out "$scratch/q.h5" --method rtn --group 32
    nb=$(h5ls -r "$scratch/q.h5" | grep -c '^/tensors/model\.layers\.[0-9]*\.self_attn\.[qkv]_proj\.bias ')
    [ "$nb" -eq 6 ] || die "checkpoint: expected 6 unquantized biases in /tensors, found $nb"
    run evalq.json "$bin" eval --model "$m" --ckpt "$scratch/q.h5" --text "$scratch/text.txt" \
        --seq-len $L --json
    nllq=$(sed -n 's/.*"nll_per_token":\([0-9.]*\).*/\1/p' "$scratch/evalq.json")
    echo "ok: $arch: quantize stored 6 biases; eval --ckpt NLL/token $nllq (float $nll)"
fi
exit 0
