#!/bin/bash
# quantize.plan_agrees: `qrecon plan` and `qrecon quantize` given the same options describe the same
# computation: the plan's method options (method, rank, group, salient, GPTQ, SVD mode, oversampling,
# power iterations, ...) equal the options the checkpoint records, for the defaults and for option
# sets that change a method-dependent default.
source "$(dirname "$0")/common.sh"
make_calib "$WORK/calib"
check() { # check NAME options...
    local name=$1
    shift
    "$QRECON_BIN" plan --model "$MODEL" --ranks 1 --json "$@" >"$WORK/$name.plan.json" 2>"$WORK/$name.plan.log" ||
        { cat "$WORK/$name.plan.log"; fail "$name: plan failed"; }
    "$MPIEXEC" -n 1 "$QRECON_BIN" quantize --model "$MODEL" --calib "$WORK/calib" \
        --out "$WORK/$name.h5" "$@" >"$WORK/$name.log" 2>&1 || { cat "$WORK/$name.log"; fail "$name: quantize failed"; }
    h5dump -a /options "$WORK/$name.h5" >"$WORK/$name.options.txt" || fail "$name: no options attribute"
    python3 - "$WORK/$name.plan.json" "$WORK/$name.options.txt" "$name" <<'PY' || exit 1
import json, re, sys
plan = json.load(open(sys.argv[1]))["method_options"]
text = open(sys.argv[2]).read()
# h5dump prints the JSON text quoted, with inner quotes escaped.
m = re.search(r'\(0\): "(.*)"', text, re.S)
ckpt = json.loads(m.group(1).replace('\\"', '"'))
bad = [k for k in plan if ckpt.get(k) != plan[k]]
if bad or not plan:
    print("FAIL: %s: plan and checkpoint differ in %s: plan %s, checkpoint %s" %
          (sys.argv[3], bad, {k: plan[k] for k in bad}, {k: ckpt.get(k) for k in bad}))
    sys.exit(1)
PY
    # each module's resolved rank and salient count (auto: the rule of qr_method_resolve)
    "$QRECON_BIN" report "$WORK/$name.h5" --out "$WORK/$name.rep" >/dev/null 2>&1 || fail "$name: report failed"
    python3 - "$WORK/$name.plan.json" "$WORK/$name.rep/report.json" "$name" <<'PY' || exit 1
import json, sys
plan = {m["name"]: m for m in json.load(open(sys.argv[1]))["module_list"]}
mods = json.load(open(sys.argv[2]))["checkpoints"][0]["modules"]
bad = [m["name"] for m in mods
       if (m["rank_used"], m["salient_used"]) != (plan[m["name"]]["rank"], plan[m["name"]]["salient"])]
if bad:
    print("FAIL: %s: per-module rank/salient differ from the plan's on %s" % (sys.argv[3], bad[:3]))
    sys.exit(1)
PY
}
check defaults
check aser --method aser --rank 8
check serq --method serq --salient 16
check aser-auto --method aser
check serq-auto --method serq
check qera --method qera-exact --rank 4 --svd exact --group 32
check gptq --method rtn --gptq --group 64 --seed 5
echo "quantize.plan_agrees: plan and quantize agree on every option set"
