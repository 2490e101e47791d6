# validate.bad_input: usage errors and a mismatched calibration exit 2 with one message naming the
# problem; a missing checkpoint names the file.
. "$(dirname "$0")/common.sh"
expect2() {
    local what=$1 pattern=$2
    shift 2
    "$QR" validate "$@" --quiet >"$SCRATCH/bad.out" 2>&1
    rc=$?
    [ $rc -eq 2 ] || { cat "$SCRATCH/bad.out"; fail "$what: exit $rc (expected 2)"; }
    grep -q -- "$pattern" "$SCRATCH/bad.out" || {
        cat "$SCRATCH/bad.out"
        fail "$what: message lacks '$pattern'"
    }
}
expect2 "no --calib" "--calib" "$SCRATCH/rtn-a8.h5"
expect2 "no checkpoint" "CKPT" --calib "$CALIB"
expect2 "missing checkpoint" "$SCRATCH/none.h5" "$SCRATCH/none.h5" --calib "$CALIB"
expect2 "unknown kernel" "--kernel" "$SCRATCH/rtn-a8.h5" --calib "$CALIB" --kernel sse
expect2 "bad --tokens" "--tokens" "$SCRATCH/rtn-a8.h5" --calib "$CALIB" --tokens 0
# another calibration (fewer windows): not the one the checkpoint was fitted on
"$QR" capture --model "$MODEL" --text "$VAL_TEXT" --seq-len 128 --tokens 1024 \
    --out "$SCRATCH/other-calib" --quiet || fail "capture failed"
expect2 "other calibration" "calibration identity" "$SCRATCH/rtn-a8.h5" --calib "$SCRATCH/other-calib"
# --max-err below the real errors: ran fine, modules over the limit fail (exit 4)
"$QR" validate "$SCRATCH/rtn-a8.h5" --calib "$CALIB" --max-err 0.01 --quiet >"$SCRATCH/maxerr.txt"
rc=$?
[ $rc -eq 4 ] || fail "--max-err 0.01: exit $rc (expected 4)"
grep -q "max-err" "$SCRATCH/maxerr.txt" || fail "--max-err failures not marked in the table"
echo "bad input: all exit 2 with a message; --max-err exits 4"
