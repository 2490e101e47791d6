#!/bin/bash
# slurm.requeue: slurm/quantize.sbatch stopped mid-run by `scancel --signal=USR1 --batch` (what
# --signal=B:USR1@LEAD does ahead of a time limit). The trap forwards the signal to the srun step,
# the ranks stop after their current module (exit 75) and the script requeues the job; released
# from the requeue hold, the job resumes from the part files, doing only the missing modules, and
# completes. Its checkpoint's tensors equal a direct run's with the same options; the appended log
# shows both runs; a job waiting on it with afterok runs only after the resumed run.
source "$(dirname "$0")/common.sh"
# Long enough per module (ms) that the stop lands mid-run on the fast small model.
SLOW_MS=400
start_cluster
capture_direct "$WORK/calib"
quantize_direct "$WORK/calib" "$WORK/ref.h5"
mkdir -p "$WORK/logs"

out=$WORK/q.h5
id=$(QRECON_TEST_SLOW_MS=$SLOW_MS sbatch --parsable --export=ALL -n 2 -o "$WORK/logs/quantize-%j.log" \
    "$SLURM_DIR/quantize.sbatch" --progress lines --model "$MODEL" --calib "$WORK/calib" \
    --out "$out" "${QOPTS[@]}") || fail "sbatch quantize.sbatch"
log=$WORK/logs/quantize-$id.log
dep=$(sbatch --parsable --export=ALL -n 1 --dependency=afterok:"$id" --kill-on-invalid-dep=yes \
    -o "$WORK/logs/report-%j.log" "$SLURM_DIR/run.sbatch" report --out "$WORK/report" "$out") ||
    fail "sbatch the dependent report"

n=$(wait_parts "$out.parts" "")
[ "$n" -ge 1 ] || { show_jobs; cat "$log"; fail "no part file appeared"; }
scancel --signal=USR1 --batch "$id" || fail "scancel --signal=USR1 --batch $id"
t0=$(date +%s.%N)
for _ in $(seq 300); do
    [ "$(job_field "$id" Restarts)" = 1 ] && [ "$(job_field "$id" JobState)" = PENDING ] && break
    sleep 0.2
done
[ "$(job_field "$id" Restarts)" = 1 ] || { show_jobs; cat "$log"; fail "job $id was not requeued within 60 s of USR1"; }
n=$(find "$out.parts" -maxdepth 1 -name '*.h5' | wc -l)
[ "$n" -lt "$NMODS" ] || fail "all $NMODS modules were done before the stop took effect (raise SLOW_MS)"
[ ! -e "$out" ] || fail "a checkpoint was assembled although the job stopped"
[ "$(job_field "$dep" JobState)" = PENDING ] || { show_jobs; fail "the afterok job did not keep waiting across the requeue"; }
echo "stopped with $n of $NMODS parts; job $id requeued $(elapsed "$t0")s after USR1"

# Release the ~120 s requeue hold, once the stopped run's step daemons are gone: a restart within
# seconds reuses step id ID.0 while the old step still holds its PMIx socket, and the new step
# fails to launch (Slurm 22.05; the scripts then exit 1 instead of trusting srun's 0).
for _ in $(seq 300); do
    pgrep -f "^slurmstepd: \[$id\." >/dev/null || break
    sleep 0.1
done
scontrol update JobId="$id" StartTime=now || fail "scontrol update JobId=$id StartTime=now"
t0=$(date +%s.%N)
wait_jobs 300 "$id" "$dep"
echo "released: the resumed job and its afterok report ended $(elapsed "$t0")s later"
expect_completed "$WORK/logs/*.log" "$id" "$dep"

grep -q "start (restart 0)" "$log" && grep -q "start (restart 1)" "$log" ||
    { cat "$log"; fail "the log does not show both runs (open-mode append)"; }
grep -q "SIGUSR1: asking qrecon to stop" "$log" && grep -q "exited with 75" "$log" && grep -q "requeued job $id" "$log" ||
    { cat "$log"; fail "the log does not show the forwarded stop, exit 75 and the requeue"; }
grep -q "$((NMODS - n)) module(s) to do, $n already done" "$log" ||
    { cat "$log"; fail "the resumed run did not skip exactly the $n finished modules"; }
[ "$(grep -c 'exited with 0' "$log")" -eq 1 ] || { cat "$log"; fail "the log does not end with one successful run"; }
"$CKPT_SAME" "$WORK/ref.h5" "$out" || fail "the requeued checkpoint differs from the direct run"
[ -s "$WORK/report/report.md" ] || fail "the dependent report job wrote no report"

# A plain scancel (SIGTERM to the script and the ranks) stops the job for good: no requeue.
out=$WORK/c.h5
cid=$(QRECON_TEST_SLOW_MS=$SLOW_MS sbatch --parsable --export=ALL -n 2 -o "$WORK/logs/cancel-%j.log" \
    "$SLURM_DIR/quantize.sbatch" --model "$MODEL" --calib "$WORK/calib" --out "$out" "${QOPTS[@]}") ||
    fail "sbatch the job to cancel"
n=$(wait_parts "$out.parts" "")
[ "$n" -ge 1 ] || { show_jobs; fail "no part file appeared in the job to cancel"; }
scancel "$cid" || fail "scancel $cid"
wait_jobs 60 "$cid"
sleep 2
[ "$(job_field "$cid" JobState)" = CANCELLED ] && [ "$(job_field "$cid" Restarts)" = 0 ] ||
    { show_jobs; cat "$WORK/logs/cancel-$cid.log"; fail "a cancelled job was requeued (or did not end CANCELLED)"; }
grep -q "requeued job" "$WORK/logs/cancel-$cid.log" && { cat "$WORK/logs/cancel-$cid.log"; fail "the script requeued a cancelled job"; }
echo "slurm.requeue: USR1 -> exit 75 -> requeue -> resume gave the direct run's checkpoint"
