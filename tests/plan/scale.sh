#!/usr/bin/env bash
# plan.scale: `qrecon plan` on header-only Llama-3.1-70B and -405B folders (real config, names,
# shapes, BF16 and sharding over sparse files: tests/plan/header_only.py): the model is read from
# its headers alone; per-rank memory falls as the grid grows (the module is divided over it);
# 405B qera-exact at 1x1 needs what the issue measured (the float64 Gram of 53248 inputs and its
# factor: over 40 GiB per rank); with --mem-per-node the plan warns and names a grid that fits.
set -u
work=$(mktemp -d "${TMPDIR:-/tmp}/qrecon-plan-scale.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() {
    echo "plan.scale: $*" >&2
    exit 1
}
for size in 70b 405b; do
    python3 "$(dirname "$0")/header_only.py" "$work/$size" $size || fail "$size: header-only model"
    prev=
    for grid in 1x1 2x1 2x2 4x4 8x8; do
        P=${grid%x*} Q=${grid#*x}
        json=$("$QRECON_BIN" plan --model "$work/$size" --ranks $((P * Q)) --grid $grid \
            --method qera-exact --rank 64 --tokens 65536 --seq-len 2048 --json) ||
            fail "$size $grid: plan exited $?"
        mem=$(echo "$json" | python3 -c 'import json, sys; g = json.load(sys.stdin)["groups"][0]
print(g["mem_per_rank_bytes"] + g["mem_root_extra_bytes"])') || fail "$size $grid: JSON"
        echo "plan.scale: $size qera-exact --grid $grid: $((mem >> 20)) MiB per rank"
        [ -z "$prev" ] || [ "$mem" -lt "$prev" ] || fail "$size: memory per rank does not fall at $grid ($mem after $prev)"
        [ $size = 405b ] && [ $grid = 1x1 ] && { [ "$mem" -gt $((40 << 30)) ] || fail "405b 1x1: $mem bytes per rank, expected over 40 GiB"; }
        prev=$mem
    done
done
out=$("$QRECON_BIN" plan --model "$work/405b" --ranks 126 --method qera-exact --rank 64 \
    --tokens 65536 --seq-len 2048 --mem-per-node 256) || fail "--mem-per-node exited $?"
echo "$out" | grep -q "WARNING: memory: 64 ranks per node .* exceed 256.0 GiB per node; the smallest grid whose ranks fit is [0-9]*x[0-9]*" ||
    fail "no warning and grid advice for 405B at 1x1 on 256 GiB nodes: $out"
# Capture over the same slices: one rank would hold all 126 layers (about 1.5 TiB in float32); 126
# ranks hold one layer each plus a micro-batch, well under a 256 GiB node.
for n in 1 126; do
    cap=$("$QRECON_BIN" plan --model "$work/405b" --ranks $n --method qera-exact --rank 64 \
        --tokens 65536 --seq-len 2048 --json | python3 -c 'import json, sys
print(json.load(sys.stdin)["capture"]["max_mem_per_rank_bytes"])') || fail "405b capture plan on $n ranks"
    echo "plan.scale: 405b capture on $n rank(s): $((cap >> 30)) GiB per rank"
    [ $n = 1 ] && { [ "$cap" -gt $((1 << 40)) ] || fail "405b capture on 1 rank: $cap bytes, expected over 1 TiB"; }
    [ $n = 126 ] && { [ "$cap" -lt $((32 << 30)) ] || fail "405b capture on 126 ranks: $cap bytes per rank, expected under 32 GiB"; }
done
echo "plan.scale: per-rank memory falls with the grid; 405B 1x1 over 256 GiB nodes is refused advice; 405B capture fits a node"
