#!/bin/bash
# slurm.sweep: slurm/sweep.sh over three method:rank entries on the real stories260K through a
# real one-node cluster: every array task completes with its own checkpoint (method and rank as
# asked; the srr one equal to a direct run with the same options), and the dependent report job
# compares all three side by side.
source "$(dirname "$0")/common.sh"
start_cluster
capture_direct "$WORK/calib"
SWEEP="rtn:0 lqer:4 srr:8"

ids=$(bash "$SLURM_DIR/sweep.sh" --calib "$WORK/calib" --model "$MODEL" --out "$WORK/sweep" \
    --ranks 2 --sweep "$SWEEP" -- --group 32 --seed 5) || fail "sweep.sh exited $?"
echo "submitted: $ids"
echo "$ids" | grep -qE '^array=[0-9]+ report=[0-9]+$' || fail "sweep.sh printed '$ids' (expected array=ID report=ID)"
array=$(echo "$ids" | sed 's/^array=\([0-9]*\) .*/\1/')
report=$(echo "$ids" | sed 's/.* report=//')
quantize_direct "$WORK/calib" "$WORK/ref.h5"

wait_jobs 300 "$report"
tasks=$(scontrol show job -o "$array" | grep -o '\bJobId=[0-9]*' | cut -d= -f2)
[ "$(echo "$tasks" | wc -w)" -eq 3 ] || { show_jobs; fail "array $array has $(echo "$tasks" | wc -w) tasks (expected 3)"; }
# shellcheck disable=SC2086
wait_jobs 60 $tasks
# shellcheck disable=SC2086
expect_completed "$WORK/sweep/logs/*.log" $tasks "$report"

for e in $SWEEP; do
    m=${e%%:*} r=${e##*:}
    ck=$WORK/sweep/$m-r$r.h5
    [ -f "$ck" ] || fail "no checkpoint $ck for sweep entry $e"
    grep -qE "^\| $m-r$r \| $m \| W4A8 \| 32 \| $r \| 35 \|" "$WORK/sweep/report/report.md" ||
        { cat "$WORK/sweep/report/report.md"; fail "the report's summary has no row for $m rank $r"; }
done
[ "$(find "$WORK/sweep" -maxdepth 1 -name '*.h5' | wc -l)" -eq 3 ] || fail "the sweep left other than 3 checkpoints"
"$CKPT_SAME" "$WORK/ref.h5" "$WORK/sweep/srr-r8.h5" || fail "the sweep's srr rank 8 checkpoint differs from the direct run"
echo "slurm.sweep: array $array made 3 checkpoints, report $report compares them"
