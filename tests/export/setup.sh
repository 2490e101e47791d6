# export.setup: calibration shards of stories260K and the checkpoints the export tests read.
. "$(dirname "$0")/common.sh"
rm -rf "$SCRATCH"
mkdir -p "$SCRATCH"
"$QR" capture --model "$MODEL" --text "$DATA/text/tinystories_train_sample.txt" \
    --seq-len 128 --tokens 4096 --out "$SCRATCH/calib" --quiet || fail "capture failed"
for c in $CKPTS; do
    method=${c%-*}
    abits=${c#*-a}
    extra=""
    if [ "$method" = rtnasym ]; then
        method=rtn
        extra=--asym
    fi
    "$QR" quantize --model "$MODEL" --calib "$SCRATCH/calib" --out "$SCRATCH/$c.h5" \
        --method "$method" --abits "$abits" --group 32 --rank 4 $extra --quiet ||
        fail "quantize $c failed"
done
echo "made $CKPTS in $SCRATCH"
