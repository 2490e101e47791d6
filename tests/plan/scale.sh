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
echo "plan.scale: per-rank memory falls with the grid; 405B 1x1 over 256 GiB nodes is refused advice"
