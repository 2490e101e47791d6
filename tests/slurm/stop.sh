#!/bin/bash
# slurm.stop: the resumable stop inside `qrecon quantize`, without Slurm. mpiexec -n 2 runs the job
# in the background; once a part file exists the ranks get a signal:
#   (a) SIGUSR1 to both ranks (what srun forwards from the batch script's trap);
#   (b) --grid 1x2 (one rank group whose calls are collective), SIGTERM to rank 1 only.
# Every rank must exit 75 with "stopped ... rerun", leave no checkpoint and fewer than all parts,
# and not hang; rerunning the same command must do only the missing modules and give a checkpoint
# whose tensors equal those of an uninterrupted run.
source "$(dirname "$0")/common.sh"
# Long enough per module (ms) that the signal lands mid-run on the fast small model.
SLOW_MS=250
# A stop must end the job within this (s): a rank that waits forever on its group is a hang.
STOP_LIMIT=120

capture_direct "$WORK/calib"

# rank_pid JOB RANK: the qrecon process of RANK among the descendants of JOB (timeout, mpiexec,
# the rank wrappers).
rank_pid() {
    local todo=$1 p next
    while [ -n "$todo" ]; do
        next=
        for p in $todo; do
            if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = qrecon ] &&
                tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
                echo "$p"
                return 0
            fi
            next="$next $(pgrep -P "$p")"
        done
        todo=$(echo $next)
    done
    return 1
}

# stop_case NAME SIGNAL "RANKS TO SIGNAL" [quantize options]
stop_case() {
    local name=$1 sig=$2 targets=$3 out job n rc r pid t0 took
    shift 3
    out=$WORK/$name.h5
    mkdir -p "$WORK/rc.$name"
    quantize_direct "$WORK/calib" "$WORK/ref-$name.h5" "$@"
    # Each rank's own exit code goes to rc.NAME/RANK: mpiexec reports only one. mpiexec must not
    # kill the other rank's wrapper when the first rank exits 75, or its code is never recorded.
    OMPI_MCA_orte_abort_on_non_zero_status=0 \
        QRECON_TEST_SLOW_MS=$SLOW_MS QRECON_LOG_ALL_RANKS=1 timeout "$STOP_LIMIT" "$MPIEXEC" -n 2 \
        bash -c '"$0" "$@"; rc=$?; echo $rc >"'"$WORK/rc.$name"'/$OMPI_COMM_WORLD_RANK"; exit $rc' \
        "$QRECON_BIN" --progress lines quantize --model "$MODEL" --calib "$WORK/calib" \
        --out "$out" "${QOPTS[@]}" "$@" >"$WORK/log.$name" 2>&1 &
    job=$!
    n=$(wait_parts "$out.parts" "$job")
    [ "$n" -ge 1 ] || { cat "$WORK/log.$name"; fail "$name: no part file appeared"; }
    for r in $targets; do
        pid=$(rank_pid "$job" "$r") || { cat "$WORK/log.$name"; fail "$name: rank $r not found"; }
        kill -s "$sig" "$pid"
    done
    t0=$(date +%s.%N)
    rc=0
    wait "$job" || rc=$?
    took=$(elapsed "$t0")
    [ "$rc" -ne 124 ] || { cat "$WORK/log.$name"; fail "$name: the stopped job hung (killed after $STOP_LIMIT s)"; }
    # (mpiexec itself exits 0 with abort_on_non_zero_status off; the ranks' own codes are checked
    # below, and quantize.resume checks mpiexec's 75 in its default mode.)
    for r in 0 1; do
        [ "$(cat "$WORK/rc.$name/$r" 2>/dev/null)" = 75 ] ||
            { cat "$WORK/log.$name"; fail "$name: rank $r exited '$(cat "$WORK/rc.$name/$r" 2>/dev/null)' (expected 75)"; }
        grep -q "\[rank $r/2\] stopped: .*rerun the same command" "$WORK/log.$name" ||
            { cat "$WORK/log.$name"; fail "$name: rank $r did not report the resumable stop"; }
    done
    grep -q "error:" "$WORK/log.$name" && { cat "$WORK/log.$name"; fail "$name: a stop was reported as an error"; }
    [ ! -e "$out" ] || fail "$name: a checkpoint was assembled although the job stopped"
    n=$(find "$out.parts" -maxdepth 1 -name '*.h5' | wc -l)
    [ "$n" -lt "$NMODS" ] || fail "$name: all $NMODS modules were done before the stop took effect (raise SLOW_MS)"
    echo "$name: stopped by SIG$sig to rank(s) $targets with $n of $NMODS parts in ${took}s" \
        "(modules slowed to ${SLOW_MS}ms); every rank exit 75"

    "$MPIEXEC" -n 2 "$QRECON_BIN" --progress lines quantize --model "$MODEL" --calib "$WORK/calib" \
        --out "$out" "${QOPTS[@]}" "$@" >"$WORK/log.$name.2" 2>&1 ||
        { cat "$WORK/log.$name.2"; fail "$name: the resumed run failed"; }
    grep -q "$((NMODS - n)) module(s) to do, $n already done" "$WORK/log.$name.2" ||
        { cat "$WORK/log.$name.2"; fail "$name: the resumed run did not skip exactly the $n finished modules"; }
    "$CKPT_SAME" "$WORK/ref-$name.h5" "$out" || fail "$name: the resumed checkpoint differs from the uninterrupted run"
}

stop_case usr1 USR1 "0 1"
stop_case grid TERM "1" --grid 1x2
echo "slurm.stop: both stops exited 75 on every rank and resumed to identical checkpoints"
