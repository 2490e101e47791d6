#!/bin/bash
# capture.mix: several calibration texts (`--text A:W --text B`): windows come from the texts in
# proportion to their weights, interleaved window by window (A:1 + B:1 gives A0 B0 A1 B1 ...;
# A:3 + B:1 gives A0 A1 B0 A2 ...: the largest deficit first, ties to the first text); the shards'
# source names both with their normalised weights; a weight <= 0 is refused.
set -u
data=${QRECON_TEST_DATA:-}
[ -d "$data/models" ] || { echo "skip: shared data folder '$data' not found"; exit 77; }
model=$data/models/stories260K/hf
A=$data/text/tinystories_val_a.txt
B=$data/text/wikitext2_valid.txt
work=$(mktemp -d "${TMPDIR:-/tmp}/qrecon-capture-mix.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cap() { # cap OUT --text ...: one rank, 8 windows of 32 tokens
    local out=$1
    shift
    "$QRECON_BIN" --quiet capture --model "$model" --seq-len 32 --tokens 256 --out "$work/$out" "$@" \
        >"$work/$out.log" 2>&1 || { cat "$work/$out.log"; fail "capture $out"; }
}
# win DIR K: the layer-0 input of window K (its 31 tokens after BOS), hashed
win() {
    h5dump -y -d /layers.0.attn_in -s $(($2 * 32 + 1)),0 -c 31,64 "$work/$1/shard-00000.h5" |
        sed -n '/DATA {/,/}/p' | md5sum
}
cap a --text "$A"
cap b --text "$B"
cap even --text "$A:1" --text "$B:1"
cap three --text "$A:3" --text "$B"
expect() { # expect MIX K SRC J: window K of MIX is window J of SRC
    [ "$(win "$1" "$2")" = "$(win "$3" "$4")" ] || fail "$1: window $2 is not window $4 of $3"
}
expect even 0 a 0
expect even 1 b 0
expect even 2 a 1
expect even 3 b 1
expect three 0 a 0
expect three 1 a 1
expect three 2 b 0
expect three 3 a 2
h5dump -A "$work/three/shard-00000.h5" | grep -q "$A:0.75,$B:0.25" || fail "source lacks the mix"
if "$QRECON_BIN" capture --model "$model" --text "$A:0" --out "$work/bad" >"$work/bad.log" 2>&1; then
    fail "weight 0 accepted"
fi
grep -q "weight of" "$work/bad.log" || { cat "$work/bad.log"; fail "no message for weight 0"; }
echo "capture.mix: windows interleaved by weight, source recorded, bad weights refused"
