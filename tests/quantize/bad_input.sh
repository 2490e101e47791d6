#!/bin/bash
# quantize.bad_input: one shard with a wrong d_in for one layer (layers.2.mlp_in one column wider)
# makes every rank exit 2 with the same message, and no part is written for that layer's modules.
source "$(dirname "$0")/common.sh"
make_calib "$WORK/calib" --bad layers.2.mlp_in
QRECON_LOG_ALL_RANKS=1 quantize 3 "$WORK/bad.h5"
rc=$?
[ $rc -eq 2 ] || { cat "$WORK/log.bad.h5"; fail "exit $rc (expected 2)"; }
msgs=$(grep "error:" "$WORK/log.bad.h5")
count=$(echo "$msgs" | wc -l)
distinct=$(echo "$msgs" | sed 's/^qrecon: \[rank [0-9]*\/[0-9]*\] //' | sort -u | wc -l)
[ "$count" -eq 3 ] || { cat "$WORK/log.bad.h5"; fail "expected one error line from each of 3 ranks, found $count"; }
[ "$distinct" -eq 1 ] || { echo "$msgs"; fail "ranks printed different messages"; }
echo "$msgs" | head -1 | grep -q "layers.2.mlp_in" || { echo "$msgs"; fail "message does not name the dataset"; }
echo "$msgs" | head -1 | grep -q "shard-00002.h5" || { echo "$msgs"; fail "message does not name the shard"; }
for m in gate_proj up_proj; do
    [ ! -e "$WORK/bad.h5.parts/model.layers.2.mlp.$m.h5" ] || fail "a part was written for layers.2 $m"
done
[ ! -e "$WORK/bad.h5" ] || fail "a checkpoint was written"
echo "quantize.bad_input: $(echo "$msgs" | head -1)"
