# common.sh: sourced by the progress tests. Sets WORK (a scratch folder removed at exit) and makes
# $WORK/m, a synthetic model of very uneven modules (dim 256, MLP 2048: down_proj's whitening of
# d_in 2048 costs ~40x q_proj's), and $WORK/calib, its capture on seeded random token ids (no
# shared data needed). Argument: the number of layers.
set -u
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qrecon-progress-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

fail() {
    echo "FAIL: $*"
    exit 1
}

make_model() {
    local layers=$1
    "$QRECON_BIN" --quiet synth --out "$WORK/m" --dim 256 --hidden 2048 --layers "$layers" \
        --vocab 512 >/dev/null || fail "synth"
    python3 -c 'import random; random.seed(1); print(" ".join(str(random.randrange(2, 512)) for _ in range(6000)))' \
        >"$WORK/ids.txt" || fail "token ids"
    "$QRECON_BIN" --quiet capture --model "$WORK/m" --token-file "$WORK/ids.txt" --seq-len 128 \
        --tokens 4096 --out "$WORK/calib" || fail "capture"
}
