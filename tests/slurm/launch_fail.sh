#!/bin/bash
# slurm.launch_fail: srun returns 0 when its step never launches (seen with Slurm 22.05 and PMIx:
# a step whose PMIx socket path is taken). The scripts must not trust that 0: run.sbatch exits 1
# and leaves no QRECON_MARK, and quantize.sbatch exits 1 without requeueing. The socket path of
# the job's first step is taken by a plain file before the job starts.
source "$(dirname "$0")/common.sh"
start_cluster
mkdir -p "$WORK/logs"
spool=$(dirname "$SLURM_CONF")/spool

# block_step ID: take the PMIx socket path of step ID.0 and let the job start.
block_step() {
    touch "$spool/stepd.slurm.pmix.$1.0"
    scontrol release "$1" || fail "scontrol release $1"
}

id=$(QRECON_MARK=$WORK/mark sbatch --parsable --hold --export=ALL -n 1 -o "$WORK/logs/run-%j.log" \
    "$SLURM_DIR/run.sbatch" --version) || fail "sbatch run.sbatch"
block_step "$id"
qid=$(sbatch --parsable --hold --export=ALL -n 2 -o "$WORK/logs/quantize-%j.log" \
    "$SLURM_DIR/quantize.sbatch" --model "$MODEL" --calib "$WORK/none" --out "$WORK/q.h5") ||
    fail "sbatch quantize.sbatch"
block_step "$qid"
wait_jobs 120 "$id" "$qid"
for j in "$id" "$qid"; do
    log=$(ls "$WORK"/logs/*-"$j".log)
    grep -q "launch failed" "$log" || { cat "$log"; fail "job $j: the step launched although its socket path was taken (the test did not set up the failure)"; }
    grep -q "the step did not run" "$log" || { cat "$log"; fail "job $j: the script did not notice that the step never ran"; }
    [ "$(job_field "$j" JobState)" = FAILED ] && [ "$(job_field "$j" ExitCode)" = 1:0 ] ||
        { cat "$log"; fail "job $j ended $(job_field "$j" JobState) $(job_field "$j" ExitCode) (expected FAILED 1:0)"; }
done
[ ! -e "$WORK/mark" ] || fail "run.sbatch left QRECON_MARK although its step never ran"
[ "$(job_field "$qid" Restarts)" = 0 ] || fail "quantize.sbatch requeued a job whose step never ran"
echo "slurm.launch_fail: both scripts exit 1 when srun returns 0 for a step that never launched"
