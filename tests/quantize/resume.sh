#!/bin/bash
# quantize.resume: kill -9 the job (a) after at least one part exists and before it ends and
# (b) during the assembly, and (c) stop it with SIGUSR1 (QRECON_TEST_KILL_AT=assemble:3 makes rank 0 SIGKILL itself after 3
# modules of the checkpoint are written); rerunning the same command completes the job, and the
# checkpoint is bit-identical to an uninterrupted run's.
source "$(dirname "$0")/common.sh"
make_calib "$WORK/calib"
quantize 2 "$WORK/ref.h5" || { cat "$WORK/log.ref.h5"; fail "uninterrupted run"; }

# (a) kill while quantizing. QRECON_TEST_SLOW_MS slows each module so the kill lands mid-run.
QRECON_TEST_SLOW_MS=150 "$MPIEXEC" -n 2 "$QRECON_BIN" quantize --model "$MODEL" \
    --calib "$WORK/calib" --out "$WORK/a.h5" "${QOPTS[@]}" >"$WORK/log.a1" 2>&1 &
job=$!
for _ in $(seq 1 600); do
    n=$(ls "$WORK/a.h5.parts"/*.h5 2>/dev/null | wc -l)
    [ "$n" -ge 1 ] && break
    sleep 0.05
done
# kill -9 every rank (Open MPI puts them in their own process groups) and mpiexec, by pid.
ranks=$(pgrep -P "$job")
for r in $ranks; do ranks="$ranks $(pgrep -P "$r")"; done
kill -9 $ranks "$job" 2>/dev/null
wait "$job" 2>/dev/null
for r in $ranks; do
    while kill -0 "$r" 2>/dev/null; do sleep 0.05; done
done
n=$(ls "$WORK/a.h5.parts"/*.h5 2>/dev/null | wc -l)
[ "$n" -ge 1 ] || fail "no part file appeared before the kill"
[ "$n" -lt 35 ] || fail "the job had finished every module before the kill (n=$n)"
[ ! -e "$WORK/a.h5" ] || fail "a checkpoint exists after a kill before assembly"
echo "killed with $n of 35 parts written"
quantize 2 "$WORK/a.h5" || { cat "$WORK/log.a.h5"; fail "resumed run"; }
grep -q "$((35 - n)) module(s) to do, $n already done" "$WORK/log.a.h5" ||
    { cat "$WORK/log.a.h5"; fail "the resumed run did not skip exactly the $n finished modules"; }
grep -q "stale lock" "$WORK/log.a.h5" || { cat "$WORK/log.a.h5"; fail "stale lock takeover not reported"; }
"$CKPT_COMPARE" "$WORK/ref.h5" "$WORK/a.h5" || fail "resumed checkpoint differs from the uninterrupted one"

# (b) kill during the assembly.
QRECON_TEST_KILL_AT=assemble:3 quantize 2 "$WORK/b.h5" && fail "the injected kill did not happen"
[ -e "$WORK/b.h5.tmp" ] || fail "no partial checkpoint after a kill during assembly"
[ ! -e "$WORK/b.h5" ] || fail "a checkpoint was renamed into place despite the kill"
quantize 2 "$WORK/b.h5" || { cat "$WORK/log.b.h5"; fail "rerun after the assembly kill"; }
grep -q "0 module(s) to do, 35 already done" "$WORK/log.b.h5" || { cat "$WORK/log.b.h5"; fail "rerun redid modules"; }
"$CKPT_COMPARE" "$WORK/ref.h5" "$WORK/b.h5" || fail "checkpoint after the assembly kill differs"

# (c) SIGUSR1 (what Slurm sends before a time limit) through mpiexec: every rank finishes its
# module and the job exits 75; the rerun resumes to the same checkpoint.
QRECON_TEST_SLOW_MS=150 "$MPIEXEC" -n 2 "$QRECON_BIN" quantize --model "$MODEL" \
    --calib "$WORK/calib" --out "$WORK/c.h5" "${QOPTS[@]}" >"$WORK/log.c1" 2>&1 &
job=$!
for _ in $(seq 1 600); do
    [ "$(ls "$WORK/c.h5.parts"/*.h5 2>/dev/null | wc -l)" -ge 1 ] && break
    sleep 0.05
done
kill -USR1 "$job"
wait "$job"
rc=$?
[ $rc -eq 75 ] || { cat "$WORK/log.c1"; fail "SIGUSR1: exit $rc (expected 75)"; }
grep -q "stopped on signal 10; rerun the same command to resume" "$WORK/log.c1" || { cat "$WORK/log.c1"; fail "no stop message"; }
[ ! -e "$WORK/c.h5.parts/LOCK" ] || fail "a stopped job left its lock"
quantize 2 "$WORK/c.h5" || { cat "$WORK/log.c.h5"; fail "rerun after SIGUSR1"; }
"$CKPT_COMPARE" "$WORK/ref.h5" "$WORK/c.h5" || fail "checkpoint after SIGUSR1 differs"
echo "quantize.resume: both kills and a SIGUSR1 stop resumed to identical checkpoints"
