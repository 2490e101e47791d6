# validate.corrupt: a copy of a checkpoint with one byte of ONE module's packed weight flipped
# (both nibbles moved by 8 levels) is refused with exit 2 before any kernel runs: the dataset's
# xxh3 checksum no longer matches (docs/hardening.md), and the message names exactly that module.
. "$(dirname "$0")/common.sh"
FLIP=$2
for c in lqer-a8 serq-a4; do
    for target in model.layers.2.mlp.up_proj model.layers.0.self_attn.k_proj; do
        bad=$SCRATCH/corrupt-$c.h5
        cp "$SCRATCH/$c.h5" "$bad"
        off=$("$FLIP" "$bad" "$target" 37 0x88) || fail "cannot flip a byte of $target"
        "$QR" validate "$bad" --calib "$CALIB" --quiet >"$bad.txt" 2>"$bad.err"
        rc=$?
        [ $rc -eq 2 ] || { cat "$bad.txt" "$bad.err"; fail "$c/$target: exit $rc (expected 2)"; }
        grep -q "module '$target'/main: dataset 'packed': checksum mismatch" "$bad.err" ||
            { cat "$bad.err"; fail "$c: the error message does not name $target and its checksum"; }
        echo "$c: byte at offset $off of $target: $(cat "$bad.err")"
    done
done
