# common.sh: sourced by the sequential test scripts. Argument: CKPT_COMPARE.
# Sets MODEL (real stories260K, Hugging Face folder), TEXT, WORK (removed at exit) and helpers;
# skips (77) when the shared data are absent.
set -u
CKPT_COMPARE=$1
MODEL="$QRECON_TEST_DATA/models/stories260K/hf"
TEXT="$QRECON_TEST_DATA/text/tinystories_train_sample.txt"
if [ ! -f "$MODEL/model.safetensors" ]; then
    echo "skip: $MODEL not found (shared data absent)"
    exit 77
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qrecon-sequential-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# 32 windows of 64 tokens (28 fit, 4 held out); small group and rank for d = 64.
INPUT=(--text "$TEXT" --seq-len 64 --tokens 2048)
QOPTS=(--method srr --group 32 --rank 8 --seed 3)

fail() {
    echo "FAIL: $*"
    exit 1
}

# seq NP OUT [extra options...]: the sequential job; output in $WORK/log.<basename OUT>.
seq_quantize() {
    local np=$1 out=$2
    shift 2
    "$MPIEXEC" -n "$np" "$QRECON_BIN" --progress lines quantize --model "$MODEL" "${INPUT[@]}" \
        --out "$out" "${QOPTS[@]}" "$@" >"$WORK/log.$(basename "$out")" 2>&1
}
