# common.sh: shared by the validate script tests. $1 = scratch folder made by setup.sh.
set -u
SCRATCH=$1
QR=${QRECON_BIN:?}
MPIEXEC=${MPIEXEC:-mpiexec}
DATA=${QRECON_TEST_DATA:-}
MODEL=$DATA/models/stories260K/hf
VAL_TEXT=$DATA/text/tinystories_val_a.txt
CALIB=$SCRATCH/calib
if [ ! -d "$MODEL" ]; then
    echo "skip: $MODEL is absent"
    exit 77
fi
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
# The checkpoints setup.sh makes: name -> quantize options.
CKPTS="rtn-a8 lqer-a8 lqer-a4 serq-a8 serq-a4 aser-a8"
# The module rows of a validate table (drops the header lines, which name the rank count and time).
table_rows() {
    grep '^model\.' "$1" || true
}
