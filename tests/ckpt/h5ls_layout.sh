#!/bin/bash
# h5ls_layout.sh EXE EXPECTED: assemble a checkpoint with the ckpt.assemble program under mpiexec -n 2
# and compare `h5ls -r` of it with the documented listing (docs/checkpoint.md) in EXPECTED.
set -u
exe=$1
expected=$2
command -v h5ls >/dev/null || { echo "skip: h5ls not installed (apt-get install hdf5-tools)"; exit 77; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/qrecon-ckpt-h5ls.XXXXXX")
trap 'rm -rf "$dir"' EXIT
if ! "$MPIEXEC" -n 2 "$exe" --keep "$dir" >"$dir/log" 2>&1; then
    echo "FAIL: assembling the checkpoint failed:"; cat "$dir/log"; exit 1
fi
h5ls -r "$dir/ckpt.h5" >"$dir/listing.txt"
if ! diff -u "$expected" "$dir/listing.txt"; then
    echo "FAIL: h5ls -r listing differs from the documented layout ($expected)"; exit 1
fi
echo "ckpt.h5ls_layout: listing matches $expected"
