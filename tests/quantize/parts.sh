#!/bin/bash
# quantize.parts: what happens to <out>.parts/. By default a successful, verified assembly removes
# this job's part files, its lock and the folder; --keep-parts keeps them; --force removes the
# existing parts of this output's modules and starts over. Files that are not ours (another name in
# the folder) are never removed, and the folder then stays.
source "$(dirname "$0")/common.sh"
make_calib "$WORK/calib"
run() { # run OUT LOG [options...]
    local out=$1 log=$2
    shift 2
    "$MPIEXEC" -n 2 "$QRECON_BIN" --progress lines quantize --model "$MODEL" --calib "$WORK/calib" \
        --out "$out" "${QOPTS[@]}" "$@" >"$log" 2>&1 || { cat "$log"; fail "quantize $*"; }
}
# default: parts removed after the verified assembly
run "$WORK/d.h5" "$WORK/log.d"
[ -s "$WORK/d.h5" ] || fail "no checkpoint"
[ ! -e "$WORK/d.h5.parts" ] || { ls -la "$WORK/d.h5.parts"; fail "the parts folder was kept"; }
grep -q "d.h5 verified; removed its 35 part(s)" "$WORK/log.d" || { cat "$WORK/log.d"; fail "no removal line"; }
# --keep-parts: kept
run "$WORK/k.h5" "$WORK/log.k" --keep-parts
[ "$(ls "$WORK/k.h5.parts"/*.h5 | wc -l)" -eq 35 ] || fail "--keep-parts did not keep 35 parts"
# --force with foreign files beside the parts: ours removed and redone, theirs untouched
echo "mine" >"$WORK/k.h5.parts/notes.txt"
echo "theirs" >"$WORK/k.h5.parts/other.h5"
run "$WORK/k.h5" "$WORK/log.f" --force
grep -q "removed 35 part(s)" "$WORK/log.f" || { cat "$WORK/log.f"; fail "--force did not remove the parts"; }
grep -q "35 module(s) to do, 0 already done" "$WORK/log.f" || { cat "$WORK/log.f"; fail "--force did not start over"; }
left=$(cd "$WORK/k.h5.parts" && ls -A | tr '\n' ' ')
[ "$left" = "notes.txt other.h5 " ] || fail "after --force and removal, the folder holds '$left' (expected only the foreign files)"
[ "$(cat "$WORK/k.h5.parts/other.h5")" = theirs ] || fail "a foreign file was changed"
"$CKPT_COMPARE" "$WORK/d.h5" "$WORK/k.h5" >/dev/null || fail "the --force checkpoint differs from the first"
echo "quantize.parts: removed by default, kept with --keep-parts, --force starts over; foreign files kept"
