#!/usr/bin/env bash
# plan.cli: `qrecon plan` on the real stories260K model: text and JSON output, the same plan from
# 1 and 2 MPI ranks, and exit 2 with a clear message when N is not divisible by P*Q.
set -u
model="$QRECON_TEST_DATA/models/stories260K/hf"
if [ ! -d "$model" ]; then
    echo "skip: $model not found"
    exit 77
fi
fail() {
    echo "plan.cli: $*" >&2
    exit 1
}
out=$("$QRECON_BIN" plan --model "$model" --ranks 3 --tokens 4096 --rank 4) ||
    fail "plan --ranks 3 exited $? (expected 0)"
echo "$out"
echo "$out" | grep -q '^imbalance (max/mean): ' || fail "no imbalance line in: $out"
quant=$(echo "$out" | sed '/^capture over the same slices/,$d')
[ "$(echo "$quant" | grep -cE '^ +[0-9]+  [0-9]+-[0-9]+ ')" = 3 ] || fail "expected 3 group rows"
echo "$out" | grep -qE '^ +0  0-0 +0-1 +0-13 ' || fail "group 0 should hold layers 0-1 (modules 0-13)"
echo "$out" | grep -q '^advice: ' || fail "no advice line"
# capture's estimate over the same slices, in its own table
echo "$out" | grep -q '^capture over the same slices: ' || fail "no capture table"
echo "$out" | grep -qE '^capture: pipeline of 3 group\(s\): est\. ' || fail "no capture pipeline line"

json=$("$QRECON_BIN" plan --model "$model" --ranks 4 --grid 2x1 --json) || fail "--json exited $?"
python3 - "$json" <<'PY' || fail "JSON plan malformed: $json"
import json, sys
p = json.loads(sys.argv[1])
assert p["format"] == "qrecon-plan" and p["ranks"] == 4 and p["grid"] == [2, 1], p
g = p["groups"]
assert len(g) == 2 and g[0]["ranks"] == [0, 2] and g[1]["ranks"] == [2, 4], g
assert g[0]["layers"][0] == 0 and g[-1]["layers"][1] == 5 and g[0]["layers"][1] == g[1]["layers"][0], g
assert p["imbalance"] >= 1.0
c = p["capture"]
assert c["pipeline_groups"] == 2 and len(c["groups"]) == 2 and c["max_mem_per_rank_bytes"] > 0, c
PY

# The same plan whatever the number of MPI ranks that print it.
one=$("$QRECON_BIN" plan --model "$model" --ranks 4 --json)
two=$("$MPIEXEC" -n 2 "$QRECON_BIN" plan --model "$model" --ranks 4 --json) || fail "mpiexec -n 2 exited $?"
[ "$one" = "$two" ] || fail "plan printed under 2 MPI ranks differs from 1"

err=$("$QRECON_BIN" plan --model "$model" --ranks 3 --grid 2x1 2>&1)
code=$?
[ "$code" = 2 ] || fail "--ranks 3 --grid 2x1 exited $code (expected 2): $err"
echo "$err" | grep -q -- '--ranks 3: not divisible' || fail "unclear message: $err"
err=$("$QRECON_BIN" plan --model /nonexistent --ranks 2 2>&1)
[ $? = 2 ] || fail "a missing model should exit 2: $err"
echo "plan.cli: all checks passed"
