#!/usr/bin/env bash
# ckpt_identity.sh OLD_QRECON NEW_QRECON [WORK]: quantize stories260K and babyllama105 with every
# method (rtn, rtn --gptq, lqer, qera-approx, qera-exact, aser, serq, flrq, srr; rank 4, group 32,
# 2 ranks) with two builds of qrecon from the same calibration, and compare the checkpoints with
# h5dump, timing attributes (seconds_*) aside. A refactoring that changes no result prints
# "identical" for all 18 and exits 0. Needs ../shared/data beside the repository.
set -euo pipefail
old=$1 new=$2
work=${3:-$(mktemp -d "${TMPDIR:-/tmp}/qrecon-identity.XXXXXX")}
data=$(cd "$(dirname "$0")/../.." && pwd)/shared/data
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1
mkdir -p "$work"
strip_timing() { # the dump without ATTRIBUTE blocks whose name holds "seconds"
    h5dump "$1" | tail -n +2 | awk '
        skip > 0 { depth += gsub(/{/, "{") - gsub(/}/, "}"); if (depth <= 0) skip = 0; next }
        /ATTRIBUTE "[^"]*seconds[^"]*"/ { skip = 1; depth = gsub(/{/, "{") - gsub(/}/, "}"); next }
        { print }'
}
status=0
for m in stories260K:models/stories260K/hf babyllama105:models/babyllama105/hf-bf16-2shards; do
    name=${m%%:*} dir=$data/${m#*:}
    "$old" capture --model "$dir" --text "$data/text/tinystories_train_sample.txt" --seq-len 128 \
        --tokens 4096 --unknown-to-zero --out "$work/calib-$name" >/dev/null
    for meth in rtn rtn-gptq lqer qera-approx qera-exact aser serq flrq srr; do
        args=(--method "${meth%-gptq}" --rank 4 --group 32)
        [ "$meth" = rtn-gptq ] && args+=(--gptq)
        for v in old new; do
            out=$work/$v-$name-$meth.h5
            rm -rf "$out" "$out.parts"
            mpiexec -n 2 "${!v}" quantize --model "$dir" --calib "$work/calib-$name" --out "$out" \
                "${args[@]}" >"$out.log" 2>&1
        done
        if cmp -s <(strip_timing "$work/old-$name-$meth.h5") <(strip_timing "$work/new-$name-$meth.h5"); then
            echo "identical  $name $meth"
        else
            echo "DIFFERENT  $name $meth"
            status=1
        fi
    done
done
exit $status
