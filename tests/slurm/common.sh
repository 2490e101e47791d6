# shellcheck shell=bash disable=SC2034
# common.sh: sourced by the Slurm test scripts. Argument: the ckpt_same tool.
# Sets MODEL and TEXT (the real stories260K and TinyStories text; skip 77 when the shared data are
# absent), WORK (a scratch folder, removed at exit with the test's cluster stopped first), the
# small sizes every run uses, and helpers to start the cluster and wait for jobs.
set -u
CKPT_SAME=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SLURM_DIR=${QRECON_SRC:-$HERE/../..}/slurm
MODEL="$QRECON_TEST_DATA/models/stories260K/hf"
TEXT="$QRECON_TEST_DATA/text/tinystories_train_sample.txt"
if [ ! -f "$MODEL/model.safetensors" ] || [ ! -f "$TEXT" ]; then
    echo "skip: $MODEL or $TEXT not found (shared data absent)"
    exit 77
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qrecon-slurm-test.XXXXXX")
# munged runs as user munge and must reach its socket folder under WORK.
chmod 0755 "$WORK"
CLUSTER=
cleanup() {
    [ -z "$CLUSTER" ] || bash "$HERE/cluster.sh" stop "$CLUSTER" || true
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# Small enough for the whole suite to run in minutes on 2 cores: 16 windows of 128 tokens.
TOKENS=2048
SEQ_LEN=128
QOPTS=(--method srr --group 32 --rank 8 --seed 5)
NMODS=35 # quantizable modules of stories260K: 5 layers x 7
export QRECON_BIN

fail() {
    echo "FAIL: $*"
    exit 1
}

# elapsed T0: seconds since T0 (from date +%s.%N), two decimals.
elapsed() {
    awk -v t0="$1" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.2f", t1 - t0 }'
}

# start_cluster: the one-node cluster under $WORK/cluster; exports SLURM_CONF. Skips (77) only when
# the Slurm packages cannot be installed.
start_cluster() {
    local conf rc=0
    CLUSTER=$WORK/cluster
    conf=$(bash "$HERE/cluster.sh" start "$CLUSTER") || rc=$?
    [ "$rc" -eq 77 ] && { echo "$conf"; exit 77; }
    [ "$rc" -eq 0 ] || fail "the test cluster did not start (cluster.sh exit $rc): $conf"
    export SLURM_CONF=$conf
}

# job_field ID FIELD: one field of `scontrol show job` (empty when the job is unknown).
job_field() {
    scontrol show job -o "$1" 2>/dev/null | head -1 | grep -o "\b$2=[^ ]*" | head -1 | cut -d= -f2
}

# show_jobs: what the test prints when it fails.
show_jobs() {
    echo "--- squeue"
    squeue 2>&1
    echo "--- jobs"
    scontrol show job -o 2>&1 | grep -oE 'JobId=[0-9]+|JobName=[^ ]*|JobState=[A-Z_]*|Reason=[^ ]*|Restarts=[0-9]+|ExitCode=[^ ]*' |
        paste -sd' ' | sed 's/ JobId=/\nJobId=/g'
}

# wait_jobs SECONDS ID...: wait until every job has ended; fail (printing the queue) on timeout.
wait_jobs() {
    local limit=$1 id state waiting
    shift
    for _ in $(seq $((limit * 5))); do
        waiting=0
        for id in "$@"; do
            state=$(job_field "$id" JobState)
            case "$state" in
            COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED) ;;
            *) waiting=1 ;;
            esac
        done
        [ "$waiting" -eq 0 ] && return 0
        sleep 0.2
    done
    show_jobs
    fail "jobs $* did not end within $limit s"
}

# expect_completed LOG_GLOB ID...: every job COMPLETED with exit code 0, else print its log and fail.
expect_completed() {
    local logs=$1 id
    shift
    for id in "$@"; do
        if [ "$(job_field "$id" JobState)" != COMPLETED ] || [ "$(job_field "$id" ExitCode)" != 0:0 ]; then
            show_jobs
            # shellcheck disable=SC2086
            tail -n 30 $logs 2>/dev/null
            fail "job $id ended $(job_field "$id" JobState) with exit code $(job_field "$id" ExitCode)"
        fi
    done
}

# capture_direct DIR: the calibration shards without Slurm (2 ranks, as the Slurm jobs use).
capture_direct() {
    "$MPIEXEC" -n 2 "$QRECON_BIN" --quiet capture --model "$MODEL" --text "$TEXT" \
        --seq-len "$SEQ_LEN" --tokens "$TOKENS" --out "$1" >"$WORK/capture.log" 2>&1 ||
        { cat "$WORK/capture.log"; fail "direct capture into $1"; }
}

# quantize_direct CALIB OUT [options]: the reference run without Slurm, 2 ranks.
quantize_direct() {
    local calib=$1 out=$2
    shift 2
    "$MPIEXEC" -n 2 "$QRECON_BIN" --progress lines quantize --model "$MODEL" --calib "$calib" \
        --out "$out" "${QOPTS[@]}" "$@" >"$out.log" 2>&1 ||
        { cat "$out.log"; fail "direct quantize into $out"; }
}

# wait_parts DIR PID: wait until a part file exists under DIR while PID runs; print their count.
wait_parts() {
    local n=0
    for _ in $(seq 1200); do
        n=$(find "$1" -maxdepth 1 -name '*.h5' 2>/dev/null | wc -l)
        [ "$n" -ge 1 ] && break
        [ -z "$2" ] || kill -0 "$2" 2>/dev/null || break
        sleep 0.05
    done
    echo "$n"
}
