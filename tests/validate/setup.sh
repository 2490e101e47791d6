# validate.setup: calibration shards of stories260K (2 shards, held-out windows at the end) and one
# checkpoint per method / activation setting the other validate tests read.
. "$(dirname "$0")/common.sh"
rm -rf "$SCRATCH"
mkdir -p "$SCRATCH"
"$MPIEXEC" -n 2 "$QR" capture --model "$MODEL" --text "$DATA/text/tinystories_train_sample.txt" \
    --seq-len 128 --tokens 4096 --out "$CALIB" --quiet || fail "capture failed"
for c in $CKPTS; do
    method=${c%-*}
    abits=${c#*-a}
    "$QR" quantize --model "$MODEL" --calib "$CALIB" --out "$SCRATCH/$c.h5" --method "$method" \
        --abits "$abits" --group 32 --rank 4 --salient 8 --holdout 0.25 --quiet ||
        fail "quantize $c failed"
done
echo "made $CKPTS in $SCRATCH"
