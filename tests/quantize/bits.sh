#!/bin/bash
# quantize.bits: `--bits B` on the real models (stories260K, babyllama105) for several methods:
# the checkpoint's parameter-weighted bits per weight is at most B, report's summary gives that
# weighted figure, and every module's rank and salient count are the ones `qrecon plan` resolved
# (the same rule). A budget below what a method's main matrix stores is refused (exit 2).
source "$(dirname "$0")/common.sh"
BABY="$QRECON_TEST_DATA/models/babyllama105/hf-bf16-2shards"
run_case() { # run_case MODEL TAG METHOD BITS
    local model=$1 tag=$2 method=$3 bits=$4 out="$WORK/$2-$3.h5"
    local opts=(--method "$method" --group 32 --bits "$bits")
    "$QRECON_BIN" plan --model "$model" --ranks 1 --json "${opts[@]}" >"$out.plan.json" 2>"$out.plan.log" ||
        { cat "$out.plan.log"; fail "$tag $method: plan failed"; }
    "$MPIEXEC" -n 1 "$QRECON_BIN" quantize --model "$model" --calib "$WORK/calib-$tag" --out "$out" \
        "${opts[@]}" >"$out.log" 2>&1 || { cat "$out.log"; fail "$tag $method --bits $bits: quantize failed"; }
    "$QRECON_BIN" report "$out" --out "$WORK/rep-$tag-$method" >/dev/null 2>&1 || fail "$tag $method: report failed"
    python3 - "$WORK/rep-$tag-$method/report.json" "$out.plan.json" "$bits" "$tag $method" <<'PY' || exit 1
import json, sys
rep = json.load(open(sys.argv[1]))["checkpoints"][0]
plan = {m["name"]: m for m in json.load(open(sys.argv[2]))["module_list"]}
B, what = float(sys.argv[3]), sys.argv[4]
mods = rep["modules"]
p = sum(m["d_out"] * m["d_in"] for m in mods)
w = sum(m["bits_per_weight"] * m["d_out"] * m["d_in"] for m in mods) / p
bad = []
if w > B:
    bad.append("weighted bits per weight %.6f > %g" % (w, B))
if abs(rep["summary"]["mean_bits_per_weight"] - w) > 1e-9:
    bad.append("report summary %.6f is not the weighted %.6f" % (rep["summary"]["mean_bits_per_weight"], w))
for m in mods:
    pm = plan[m["name"]]
    if m["bits_per_weight"] > B * (1 + 1e-9):
        bad.append("%s stores %.4f" % (m["name"], m["bits_per_weight"]))
    if m["rank_used"] != pm["rank"] or m["salient_used"] != pm["salient"]:
        bad.append("%s: checkpoint rank/salient %d/%d, plan %d/%d" % (m["name"], m["rank_used"], m["salient_used"], pm["rank"], pm["salient"]))
if bad:
    print("FAIL: %s --bits %g: %s" % (what, B, "; ".join(bad[:5])))
    sys.exit(1)
print("%s --bits %g: weighted %.4f bits per weight over %d modules" % (what, B, w, len(mods)))
PY
}
"$MAKE_CALIB" "$MODEL" "$WORK/calib-s" 2 2 32 11 || fail "make_calib stories260K"
run_case "$MODEL" s lqer 5.5
run_case "$MODEL" s aser 6.0
run_case "$MODEL" s serq 7.5
run_case "$MODEL" s srr 6.25
if [ -f "$BABY/config.json" ]; then
    "$MAKE_CALIB" "$BABY" "$WORK/calib-b" 2 2 32 11 || fail "make_calib babyllama105"
    run_case "$BABY" b qera-exact 5.5
    run_case "$BABY" b aser 5.75
    run_case "$BABY" b serq 6.5
else
    echo "note: $BABY absent: only stories260K checked"
fi
# SERQ's permutation and smoothing vector alone cost 64 / d_out bits: 2 on k_proj (32 x 64).
if "$MPIEXEC" -n 1 "$QRECON_BIN" quantize --model "$MODEL" --calib "$WORK/calib-s" \
    --out "$WORK/low.h5" --method serq --group 32 --bits 6 >"$WORK/low.log" 2>&1; then
    fail "serq --bits 6 on stories260K accepted"
fi
grep -q "below what the main matrix of serq stores" "$WORK/low.log" || { cat "$WORK/low.log"; fail "no message for a budget below the main matrix"; }
echo "quantize.bits: every checkpoint within its budget, plan and quantize agree per module"
