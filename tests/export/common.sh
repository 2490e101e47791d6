# common.sh: shared by the export script tests. $1 = scratch folder made by setup.sh.
set -u
SCRATCH=$1
QR=${QRECON_BIN:?}
DATA=${QRECON_TEST_DATA:-}
MODEL=$DATA/models/stories260K/hf
MODEL_L2C=$DATA/models/stories260K/llama2c
VAL_TEXT=$DATA/text/tinystories_val_a.txt
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ ! -d "$MODEL" ]; then
    echo "skip: $MODEL is absent"
    exit 77
fi
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
# The checkpoints setup.sh makes: name -> quantize options (all group 32, rank 4).
CKPTS="lqer-a8 lqer-a16 rtn-a8 rtnasym-a8"
