# validate.kernels: forcing each kernel path this CPU runs gives identical integer results (every
# group sum exact against the same reference) and bit-identical outputs, so identical errors.
. "$(dirname "$0")/common.sh"
for c in lqer-a4 serq-a8; do
    ref=""
    for k in ref avx2 avx512; do
        out=$SCRATCH/kernels-$c-$k
        "$QR" validate "$SCRATCH/$c.h5" --calib "$CALIB" --kernel "$k" --json "$out.json" \
            --quiet >"$out.txt" 2>&1
        rc=$?
        if [ $rc -eq 2 ] && grep -q "this CPU cannot run it" "$out.txt"; then
            echo "$c: $k not available on this CPU"
            continue
        fi
        [ $rc -eq 0 ] || { cat "$out.txt"; fail "$c --kernel $k: exit $rc (expected 0)"; }
        grep -q "\"kernel\": \"$k\"" "$out.json" || fail "$c: $k not recorded in the JSON"
        # the numbers of every module without the kernel name and the timings
        grep -E '"(int_|output_error|float_rel|a8|a4|float)' "$out.json" |
            grep -v seconds >"$out.numbers"
        if [ -z "$ref" ]; then
            ref=$out.numbers
        else
            cmp -s "$ref" "$out.numbers" || {
                diff "$ref" "$out.numbers" | head
                fail "$c: --kernel $k results differ from --kernel ref"
            }
        fi
        echo "$c: --kernel $k identical"
    done
done
