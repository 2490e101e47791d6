#!/bin/bash
# pipeline.sh: submit capture -> quantize -> validate -> report as dependent Slurm jobs (afterok) and
# print their ids. Safe to re-run: a stage whose output is complete is not submitted again, and a
# stage whose job is still pending or running is reused instead of submitted twice.
#
#   slurm/pipeline.sh --model DIR --text FILE --work DIR [--ranks N] [--nodes N] [--tokens T]
#                     [--seq-len L] [--sbatch "extra sbatch options"] [-- quantize options]
#
# Outputs under WORK: calib/ (shards), model-w4.h5 (checkpoint), model-w4.h5.validate.json,
# report/ (report.md, report.csv, report.json, layers.svg), logs/.
set -euo pipefail
usage() { sed -n '2,12p' "$0"; exit 2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
model='' text='' work='' ranks=2 nodes=1 tokens=8192 seq_len=256 extra_sbatch=''
while [ $# -gt 0 ]; do
    case "$1" in
    --model) model=$2; shift 2 ;;
    --text) text=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    --seq-len) seq_len=$2; shift 2 ;;
    --sbatch) extra_sbatch=$2; shift 2 ;;
    --) shift; break ;;
    -h | --help) usage ;;
    *) echo "pipeline.sh: unknown option $1" >&2; usage ;;
    esac
done
[ -n "$model" ] && [ -n "$text" ] && [ -n "$work" ] || usage
mkdir -p "$work/logs" "$work/report"
work=$(cd "$work" && pwd)
ckpt=$work/model-w4.h5
tag=$(printf '%s' "$work" | cksum | cut -d' ' -f1) # one pipeline per work folder
export QRECON_BIN=${QRECON_BIN:-$(command -v qrecon || echo qrecon)}

# submit STAGE DONE_FILE DEPENDENCY SCRIPT ARGS...: print the job id ("" when DONE_FILE exists).
submit() {
    local stage=$1 done_file=$2 dep=$3 script=$4
    shift 4
    local name="qrecon-$stage-$tag" id
    if [ -e "$done_file" ]; then
        echo "$stage: done ($done_file exists), not submitted" >&2
        return 0
    fi
    # A job that will still run (also one requeued after a stop, or held) is reused.
    id=$(squeue -h -u "$(id -un)" -n "$name" -o %i \
        -t PENDING,RUNNING,CONFIGURING,SUSPENDED,REQUEUED,REQUEUE_HOLD,REQUEUE_FED,RESIZING |
        head -1)
    if [ -n "$id" ]; then
        echo "$stage: job $id is already queued, reused" >&2
        echo "$id"
        return 0
    fi
    # shellcheck disable=SC2086
    sbatch --parsable -J "$name" -o "$work/logs/$stage-%j.log" ${dep:+--dependency=afterok:$dep} \
        --kill-on-invalid-dep=yes $extra_sbatch "$@" "$here/$script" "${QRECON_ARGS[@]}"
}

QRECON_ARGS=(capture --model "$model" --text "$text" --seq-len "$seq_len" --tokens "$tokens"
    --out "$work/calib")
capture=$(QRECON_MARK="$work/calib/.complete" submit capture "$work/calib/.complete" "" \
    run.sbatch -N "$nodes" -n "$ranks" --export=ALL)
QRECON_ARGS=(--model "$model" --calib "$work/calib" --out "$ckpt" "$@")
quantize=$(submit quantize "$ckpt" "$capture" quantize.sbatch -N "$nodes" -n "$ranks" --export=ALL)
QRECON_ARGS=(validate "$ckpt" --calib "$work/calib" --json "$ckpt.validate.json")
validate=$(QRECON_MARK="$ckpt.validate.json" submit validate "$ckpt.validate.json" "$quantize" \
    run.sbatch -N "$nodes" -n "$ranks" --export=ALL)
QRECON_ARGS=(report --out "$work/report" "$ckpt")
report=$(QRECON_MARK="$work/report/.complete" submit report "$work/report/.complete" "$validate" \
    run.sbatch -n 1 --export=ALL)

echo "capture=${capture:-done} quantize=${quantize:-done} validate=${validate:-done} report=${report:-done}"
