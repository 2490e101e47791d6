#!/bin/bash
# quantize.determinism: the checkpoint of stories260K is bit-identical (every module dataset, every
# copied tensor, every metric but the timings) for 1, 2, 3 (oversubscribed) and 4 ranks.
source "$(dirname "$0")/common.sh"
make_calib "$WORK/calib"
for np in 1 2 3 4; do
    quantize $np "$WORK/np$np.h5" || { cat "$WORK/log.np$np.h5"; fail "quantize under mpiexec -n $np"; }
    grep -q "quantize \[35/35\]" "$WORK/log.np$np.h5" || { cat "$WORK/log.np$np.h5"; fail "rank 0 did not print 35 progress lines under -n $np"; }
done
for np in 2 3 4; do
    "$CKPT_COMPARE" "$WORK/np1.h5" "$WORK/np$np.h5" || fail "-n $np differs from -n 1"
done
# The same command again finds every part done and reassembles the same checkpoint.
quantize 2 "$WORK/np2.h5" || fail "rerun of a finished job"
grep -q "0 module(s) to do, 35 already done" "$WORK/log.np2.h5" || { cat "$WORK/log.np2.h5"; fail "rerun redid modules"; }
"$CKPT_COMPARE" "$WORK/np1.h5" "$WORK/np2.h5" || fail "reassembled checkpoint differs"
# The root attributes describe the job (docs/checkpoint.md).
h5dump -a /model_config "$WORK/np1.h5" | grep -q '"dim":64,"hidden_dim":172,"n_layers":5' || fail "model_config attribute"
h5dump -a /options "$WORK/np1.h5" | grep -q '"method":"srr","wbits":4,"abits":8,"group":32' || fail "options attribute"
h5dump -a /complete "$WORK/np1.h5" | grep -q "(0): 1" || fail "complete attribute"
echo "quantize.determinism: -n 1, 2, 3, 4 give identical checkpoints"
