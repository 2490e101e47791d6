#!/usr/bin/env bash
# inspect_mpi.sh NP (test io_model.inspect.npN): `mpiexec -n NP qrecon inspect` on a good model
# passes and prints the table once (rank 0); on a broken model folder written here every rank exits 2
# with the same message (checked with QRECON_LOG_ALL_RANKS=1), also when only rank 1 meets it, and
# nothing hangs.
set -u
np=$1
data=${QRECON_TEST_DATA:-}
if [ -z "$data" ] || [ ! -d "$data/models" ]; then
    echo "skip: shared data folder '$data' not found"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() {
    echo "FAIL: $*"
    fail=1
}

timeout 120 "$MPIEXEC" -n "$np" "$QRECON_BIN" inspect "$data/models/babyllama105/hf-bf16-2shards" \
    >"$tmp/good.out" 2>"$tmp/good.err"
rc=$?
[ $rc -ne 124 ] || bad "good model: mpiexec -n $np hung (killed after 120 s)"
[ $rc -eq 0 ] || bad "good model: expected exit 0, found $rc: $(cat "$tmp/good.err")"
n=$(grep -c '^quantizable modules (35)$' "$tmp/good.out")
[ "$n" -eq 1 ] || bad "good model: expected the table once (rank 0), found it $n times"

# A broken folder: a valid config.json and a safetensors file cut short.
mkdir "$tmp/broken"
cp "$data/models/stories260K/hf/config.json" "$tmp/broken/"
head -c 700000 "$data/models/stories260K/hf/model.safetensors" >"$tmp/broken/model.safetensors"
QRECON_LOG_ALL_RANKS=1 timeout 120 "$MPIEXEC" -n "$np" "$QRECON_BIN" inspect "$tmp/broken" \
    >"$tmp/bad.out" 2>"$tmp/bad.err"
rc=$?
cat "$tmp/bad.err"
[ $rc -ne 124 ] || bad "broken model: mpiexec -n $np hung (killed after 120 s)"
[ $rc -eq 2 ] || bad "broken model: expected exit 2, found $rc"
lines=$(grep -c 'error: .*broken/model.safetensors' "$tmp/bad.err")
[ "$lines" -eq "$np" ] || bad "broken model: expected one error line per rank ($np), found $lines"
distinct=$(grep 'error: ' "$tmp/bad.err" | sed 's/.*error: //' | sort -u | wc -l)
[ "$distinct" -eq 1 ] || bad "broken model: ranks printed different messages"
[ ! -s "$tmp/bad.out" ] || bad "broken model: nothing should go to stdout"

# Only rank 1 meets the broken folder (each rank picks its path from OMPI_COMM_WORLD_RANK): all
# ranks still exit 2 with rank 1's message, and rank 0 prints no table.
QRECON_LOG_ALL_RANKS=1 timeout 120 "$MPIEXEC" -n "$np" bash -c \
    'if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then p=$1; else p=$2; fi; exec "$QRECON_BIN" inspect "$p"' \
    inspect "$tmp/broken" "$data/models/stories260K/hf" >"$tmp/one.out" 2>"$tmp/one.err"
rc=$?
[ $rc -ne 124 ] || bad "rank 1 only: mpiexec -n $np hung (killed after 120 s)"
[ $rc -eq 2 ] || bad "rank 1 only: expected exit 2, found $rc"
lines=$(grep -c 'error: .*broken/model.safetensors' "$tmp/one.err")
[ "$lines" -eq "$np" ] || bad "rank 1 only: expected rank 1's error on every rank ($np), found $lines"
[ ! -s "$tmp/one.out" ] || bad "rank 1 only: rank 0 must not print the table"

if [ $fail -ne 0 ]; then
    exit 1
fi
echo "PASS: mpiexec -n $np inspect: table printed once; broken model exits 2 on every rank"
