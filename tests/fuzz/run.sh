#!/bin/bash
# run.sh HARNESS SEEDS SECONDS: run one libFuzzer harness for SECONDS from the seed corpus (read
# only; new inputs go to a scratch folder) and print the executions it made. A crash keeps the
# crashing input (crash-*) in the scratch folder, whose path is printed, and fails the test.
set -u
harness=$1
seeds=$2
seconds=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/qrecon-fuzz.XXXXXX")
mkdir -p "$work/corpus"
# The harness's one input file per execution: in memory when /dev/shm is there (3x the executions).
files=$work
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    files=$(mktemp -d /dev/shm/qrecon-fuzz.XXXXXX)
fi
cd "$work" || exit 1
TMPDIR=$files "$harness" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -timeout=10 -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" "$seeds" \
    >"$work/log" 2>&1
rc=$?
execs=$(grep -m1 'stat::number_of_executed_units' "$work/log" | awk '{print $2}')
echo "$(basename "$harness"): ${execs:-?} executions in $seconds s, corpus $(ls "$work/corpus" | wc -l) new inputs, exit $rc"
[ "$files" != "$work" ] && rm -rf "$files"
if [ $rc -ne 0 ]; then
    tail -40 "$work/log"
    echo "crash input kept in $work"
    exit 1
fi
rm -rf "$work" "$files"
