#!/bin/bash
# quantize.options: parts made with other options, another calibration or another source model are
# refused with exit 2 and a message naming the differing option; nothing is overwritten.
source "$(dirname "$0")/common.sh"
make_calib "$WORK/calib"
quantize 1 "$WORK/o.h5" || { cat "$WORK/log.o.h5"; fail "first run"; }
before=$(cat "$WORK/o.h5.parts"/*.h5 | md5sum)
check() { # check WHAT PATTERN -- options...
    local what=$1 pattern=$2
    shift 3
    # The changed option replaces its value in QOPTS (a flag given twice is refused).
    local saved=("${QOPTS[@]}") i opt=$1 val=${2:-}
    for ((i = 0; i < ${#QOPTS[@]}; i++)); do
        [ "${QOPTS[i]}" = "$opt" ] && QOPTS[i + 1]=$val && set --
    done
    quantize 2 "$WORK/o.h5" "$@"
    local rc=$?
    QOPTS=("${saved[@]}")
    [ $rc -eq 2 ] || { cat "$WORK/log.o.h5"; fail "$what: exit $rc (expected 2)"; }
    grep -q -- "$pattern" "$WORK/log.o.h5" || { cat "$WORK/log.o.h5"; fail "$what: message does not say: $pattern"; }
}
check "other rank" "option 'rank' differs (expected 16, found 8)" -- --rank 16
check "other group" "option 'group' differs (expected 64, found 32)" -- --group 64
check "gptq" "option 'gptq' differs (expected 1, found 0)" -- --gptq
check "other seed" "option 'seed' differs (expected 4, found 3)" -- --seed 4
# Another calibration capture (other values): its identity differs.
"$MAKE_CALIB" "$MODEL" "$WORK/calib2" 3 3 32 12 || fail "make_calib calib2"
"$MPIEXEC" -n 2 "$QRECON_BIN" quantize --model "$MODEL" --calib "$WORK/calib2" --out "$WORK/o.h5" \
    "${QOPTS[@]}" >"$WORK/log.cal" 2>&1
[ $? -eq 2 ] && grep -q "option 'calibration' differs" "$WORK/log.cal" || { cat "$WORK/log.cal"; fail "another calibration was accepted"; }
# Another source model: the llama2.c form of the same weights has another identity.
L2C="$QRECON_TEST_DATA/models/stories260K/llama2c/stories260K.bin"
"$MAKE_CALIB" "$L2C" "$WORK/calib3" 3 3 32 11 || fail "make_calib calib3"
"$MPIEXEC" -n 2 "$QRECON_BIN" quantize --model "$L2C" --calib "$WORK/calib3" --out "$WORK/o.h5" \
    "${QOPTS[@]}" >"$WORK/log.src" 2>&1
[ $? -eq 2 ] && grep -q "option 'source_model' differs" "$WORK/log.src" || { cat "$WORK/log.src"; fail "another source model was accepted"; }
after=$(cat "$WORK/o.h5.parts"/*.h5 | md5sum)
[ "$before" = "$after" ] || fail "refused jobs changed the existing parts"
[ ! -e "$WORK/o.h5.parts/LOCK" ] || fail "a refused job left the lock behind"
echo "quantize.options: every differing option named"
