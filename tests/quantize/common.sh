# common.sh: sourced by the quantize test scripts. Arguments: MAKE_CALIB CKPT_COMPARE.
# Sets MODEL (real stories260K, Hugging Face folder), WORK (a scratch folder removed at exit),
# and helpers; skips (77) when the shared data are absent.
set -u
MAKE_CALIB=$1
CKPT_COMPARE=$2
MODEL="$QRECON_TEST_DATA/models/stories260K/hf"
if [ ! -f "$MODEL/model.safetensors" ]; then
    echo "skip: $MODEL not found (shared data absent)"
    exit 77
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qrecon-quantize-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# The options every test run uses (small group and rank for d = 64).
QOPTS=(--method srr --group 32 --rank 8 --seed 3)

fail() {
    echo "FAIL: $*"
    exit 1
}

# make_calib DIR [--bad KEY]: 3 shards of 3 windows of 32 tokens.
make_calib() {
    local dir=$1
    shift
    "$MAKE_CALIB" "$MODEL" "$dir" 3 3 32 11 "$@" || fail "make_calib $dir"
}

# quantize NP OUT [extra options...]: run the job; output in $WORK/log.<basename OUT>.
quantize() {
    local np=$1 out=$2
    shift 2
    "$MPIEXEC" -n "$np" "$QRECON_BIN" --progress lines quantize --keep-parts --model "$MODEL" \
        --calib "$WORK/calib" --out "$out" "${QOPTS[@]}" "$@" >"$WORK/log.$(basename "$out")" 2>&1
}
