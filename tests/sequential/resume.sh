#!/bin/bash
# sequential.resume: kill -9 a sequential job (2 ranks, one layer slice each) once it has written
# more than one layer's parts and before it ends; rerunning the same command reads the finished
# modules' parts back (recomputing the hidden states through them), quantizes only the rest, and
# gives a checkpoint identical (timings aside) to an uninterrupted run's; the verified checkpoint's
# parts are removed; --force after a kill starts over. SIGUSR1 stops it with exit 75, and the
# rerun also ends identical.
source "$(dirname "$0")/common.sh"
seq_quantize 2 "$WORK/ref.h5" || { cat "$WORK/log.ref.h5"; fail "uninterrupted run"; }
# as quantize: the checkpoint checked, then its parts, lock and folder removed
[ ! -e "$WORK/ref.h5.parts" ] || fail "the parts folder is left after a verified checkpoint"
grep -q "verified; removed its 35 part(s)" "$WORK/log.ref.h5" || { cat "$WORK/log.ref.h5"; fail "no removal line"; }

# run_until OUT N [signal]: start the job slowed down, wait for N parts, send the signal.
run_until() {
    local out=$1 want=$2 sig=${3:-KILL}
    QRECON_TEST_SLOW_MS=150 "$MPIEXEC" -n 2 "$QRECON_BIN" quantize --model "$MODEL" "${INPUT[@]}" \
        --out "$out" "${QOPTS[@]}" >"$WORK/log.first" 2>&1 &
    job=$!
    for _ in $(seq 1 1200); do
        [ "$(ls "$out.parts"/*.h5 2>/dev/null | wc -l)" -ge "$want" ] && break
        sleep 0.05
    done
    if [ "$sig" = KILL ]; then
        # every rank (Open MPI puts them in their own process groups) and mpiexec, by pid
        ranks=$(pgrep -P "$job")
        for r in $ranks; do ranks="$ranks $(pgrep -P "$r")"; done
        kill -9 $ranks "$job" 2>/dev/null
        wait "$job" 2>/dev/null
        for r in $ranks; do
            while kill -0 "$r" 2>/dev/null; do sleep 0.05; done
        done
        rc=137
    else
        kill -"$sig" "$job"
        wait "$job"
        rc=$?
    fi
}

# (a) kill -9 in layer 1 (layer 0's 7 parts and some of layer 1's written).
run_until "$WORK/a.h5" 9 KILL
n=$(ls "$WORK/a.h5.parts"/*.h5 2>/dev/null | wc -l)
[ "$n" -ge 9 ] || fail "fewer than 9 parts before the kill (n=$n)"
[ "$n" -lt 35 ] || fail "the job had finished every module before the kill (n=$n)"
[ ! -e "$WORK/a.h5" ] || fail "a checkpoint exists after a kill before assembly"
echo "killed with $n of 35 parts written"
seq_quantize 2 "$WORK/a.h5" || { cat "$WORK/log.a.h5"; fail "resumed run"; }
grep -q "$n module(s) already done" "$WORK/log.a.h5" ||
    { cat "$WORK/log.a.h5"; fail "the resumed run did not find exactly the $n finished modules"; }
[ "$(grep -c "part exists, read back" "$WORK/log.a.h5")" -eq "$n" ] ||
    { cat "$WORK/log.a.h5"; fail "the resumed run did not read back exactly $n parts"; }
"$CKPT_COMPARE" "$WORK/ref.h5" "$WORK/a.h5" || fail "resumed checkpoint differs from the uninterrupted one"

# --force after a kill: the parts go, the job starts over and ends the same.
run_until "$WORK/f.h5" 3 KILL
seq_quantize 2 "$WORK/f.h5" --force || { cat "$WORK/log.f.h5"; fail "--force run"; }
grep -q "0 module(s) already done" "$WORK/log.f.h5" || { cat "$WORK/log.f.h5"; fail "--force did not start over"; }
"$CKPT_COMPARE" "$WORK/ref.h5" "$WORK/f.h5" || fail "checkpoint after --force differs"

# (b) SIGUSR1 (Slurm's warning before a time limit): exit 75, then resume.
run_until "$WORK/b.h5" 3 USR1
[ "$rc" -eq 75 ] || { cat "$WORK/log.first"; fail "SIGUSR1: exit $rc (expected 75)"; }
grep -q "stopped on signal 10; rerun the same command to resume" "$WORK/log.first" ||
    { cat "$WORK/log.first"; fail "no stop message"; }
seq_quantize 2 "$WORK/b.h5" || { cat "$WORK/log.b.h5"; fail "run after the stop"; }
"$CKPT_COMPARE" "$WORK/ref.h5" "$WORK/b.h5" || fail "checkpoint after the stop differs"
echo "PASS"
