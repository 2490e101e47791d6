#!/bin/bash
# slurm.pipeline: slurm/pipeline.sh on the real stories260K through a real one-node cluster.
# Submitted twice in a row, the second call reuses the four queued jobs; capture -> quantize ->
# validate -> report then all complete (afterok chain) and leave the shards, the checkpoint, the
# validate JSON and the report; a third call, after the end, submits nothing.
source "$(dirname "$0")/common.sh"
start_cluster
W=$WORK/pipe
run_pipeline() {
    bash "$SLURM_DIR/pipeline.sh" --model "$MODEL" --text "$TEXT" --work "$W" --ranks 2 \
        --tokens "$TOKENS" --seq-len "$SEQ_LEN" -- "${QOPTS[@]}"
}

ids=$(run_pipeline) || fail "pipeline.sh exited $?"
echo "first submit: $ids"
echo "$ids" | grep -qE '^capture=[0-9]+ quantize=[0-9]+ validate=[0-9]+ report=[0-9]+$' ||
    fail "pipeline.sh did not print four job ids (printed '$ids')"
again=$(run_pipeline 2>"$WORK/again.err") || fail "second pipeline.sh exited $?"
[ "$again" = "$ids" ] || { cat "$WORK/again.err"; fail "a re-run while queued printed '$again' (expected the same jobs: '$ids')"; }
[ "$(grep -c 'already queued, reused' "$WORK/again.err")" -eq 4 ] ||
    { cat "$WORK/again.err"; fail "a re-run while queued did not reuse all four jobs"; }

# shellcheck disable=SC2046
set -- $(echo "$ids" | tr ' =' '\n\n' | sed -n '2~2p')
wait_jobs 300 "$@"
expect_completed "$W/logs/*.log" "$@"

[ "$(find "$W/calib" -name 'shard-*.h5' | wc -l)" -eq 2 ] || fail "capture did not leave 2 shards in $W/calib"
[ -f "$W/model-w4.h5" ] || fail "no checkpoint $W/model-w4.h5"
[ -f "$W/model-w4.h5.validate.json" ] || fail "validate wrote no $W/model-w4.h5.validate.json"
for f in report.md report.csv report.json layers.svg; do
    [ -s "$W/report/$f" ] || fail "the report has no $f"
done
grep -q "model.layers.4.mlp.down_proj" "$W/report/report.md" ||
    { cat "$W/report/report.md"; fail "the report does not list the last module"; }
grep -q "35 passed, 0 failed" "$W"/logs/validate-*.log ||
    { cat "$W"/logs/validate-*.log; fail "validate did not pass all $NMODS modules"; }

before=$(scontrol show job -o | grep -c JobId=)
out=$(run_pipeline 2>"$WORK/third.err") || fail "pipeline.sh after the end exited $?"
after=$(scontrol show job -o | grep -c JobId=)
[ "$out" = "capture=done quantize=done validate=done report=done" ] ||
    { cat "$WORK/third.err"; fail "a re-run after the end printed '$out'"; }
[ "$after" -eq "$before" ] || { show_jobs; fail "a re-run after the end submitted $((after - before)) job(s)"; }
echo "slurm.pipeline: jobs $* completed; re-runs reused the queued jobs, then submitted nothing"
