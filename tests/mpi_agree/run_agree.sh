#!/usr/bin/env bash
# run_agree.sh NP EXE: run the agreement program under mpiexec -n NP with a deadline; pass when every
# rank exits 2 and prints the same one-line error naming the truncated file.
set -u
np=$1
exe=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
QRECON_LOG_ALL_RANKS=1 timeout 120 "$MPIEXEC" -n "$np" "$exe" "$dir" >"$dir/out" 2>"$dir/err"
rc=$?
cat "$dir/err"
if [ "$rc" -eq 124 ]; then
    echo "FAIL: mpiexec -n $np hung (killed after 120 s)"
    exit 1
fi
if [ "$rc" -ne 2 ]; then
    echo "FAIL: expected exit code 2, found $rc"
    exit 1
fi
lines=$(grep -c 'error: .*truncated.safetensors' "$dir/err")
if [ "$lines" -ne "$np" ]; then
    echo "FAIL: expected one error line per rank ($np), found $lines"
    exit 1
fi
distinct=$(grep 'error: ' "$dir/err" | sed 's/.*error: //' | sort -u | wc -l)
if [ "$distinct" -ne 1 ]; then
    echo "FAIL: ranks printed different messages"
    exit 1
fi
echo "PASS: $np ranks exited 2 with the same message"
