# validate.methods: every checkpoint (rtn, lqer, serq, aser; W4A8 and W4A4) passes validate with
# exit 0, the JSON lists every module with pass = true, integer sums exact, stored errors compared.
. "$(dirname "$0")/common.sh"
for c in $CKPTS; do
    out=$SCRATCH/methods-$c
    "$QR" validate "$SCRATCH/$c.h5" --calib "$CALIB" --json "$out.json" --md "$out.md" --quiet \
        >"$out.txt" 2>&1
    rc=$?
    [ $rc -eq 0 ] || { cat "$out.txt"; fail "$c: validate exit $rc (expected 0)"; }
    n=$(table_rows "$out.txt" | wc -l)
    [ "$n" -eq 35 ] || fail "$c: table has $n module rows (expected 35)"
    npass=$(grep -c '"pass": true' "$out.json")
    # 35 modules plus the top-level pass
    [ "$npass" -eq 36 ] || fail "$c: $npass '\"pass\": true' in $out.json (expected 36)"
    grep -q '"int_mismatches": 0' "$out.json" || fail "$c: no integer comparison in the JSON"
    if grep -q '"int_mismatches": [1-9]' "$out.json"; then fail "$c: integer mismatches"; fi
    grep -q '"stored_checked": true' "$out.json" || fail "$c: stored errors were not compared"
    grep -q '^| model.layers.4.mlp.down_proj |' "$out.md" || fail "$c: Markdown table lacks rows"
    echo "$c: $(tail -2 "$out.txt" | head -1)"
done
