#!/bin/bash
# quantize.lock: a second job on the same output is refused (exit 2, naming the holder) while the
# first holds the lock; a lock of a dead process on this host is taken over, with a warning.
source "$(dirname "$0")/common.sh"
make_calib "$WORK/calib"
mkdir -p "$WORK/x.h5.parts"
# A live holder: a process of ours on this host.
sleep 300 &
holder=$!
echo "$(hostname) $holder" >"$WORK/x.h5.parts/LOCK"
quantize 2 "$WORK/x.h5"
rc=$?
[ $rc -eq 2 ] || { cat "$WORK/log.x.h5"; fail "second job on a locked output exited $rc (expected 2)"; }
grep -q "another job holds this output.*pid $holder" "$WORK/log.x.h5" || { cat "$WORK/log.x.h5"; fail "refusal does not name the holder"; }
ls "$WORK/x.h5.parts"/*.h5 >/dev/null 2>&1 && fail "the refused job wrote parts"
kill "$holder"
wait "$holder" 2>/dev/null
# The holder is gone: its lock is stale and taken over.
quantize 2 "$WORK/x.h5" || { cat "$WORK/log.x.h5"; fail "job after the holder ended"; }
grep -q "taking over a stale lock of pid $holder" "$WORK/log.x.h5" || { cat "$WORK/log.x.h5"; fail "takeover not reported"; }
[ ! -e "$WORK/x.h5.parts/LOCK" ] || fail "the lock was not released at the end"

# Two real jobs at once: the second is refused while the first runs.
QRECON_TEST_SLOW_MS=100 "$MPIEXEC" -n 2 "$QRECON_BIN" quantize --model "$MODEL" --calib "$WORK/calib" \
    --out "$WORK/y.h5" "${QOPTS[@]}" >"$WORK/log.first" 2>&1 &
first=$!
for _ in $(seq 1 400); do
    [ -e "$WORK/y.h5.parts/LOCK" ] && break
    sleep 0.05
done
quantize 1 "$WORK/y.h5"
rc=$?
wait "$first" || { cat "$WORK/log.first"; fail "the first job failed"; }
[ $rc -eq 2 ] || { cat "$WORK/log.y.h5"; fail "concurrent second job exited $rc (expected 2)"; }
grep -q "another job holds this output" "$WORK/log.y.h5" || { cat "$WORK/log.y.h5"; fail "no refusal message"; }
echo "quantize.lock: held locks refused, stale lock taken over"
