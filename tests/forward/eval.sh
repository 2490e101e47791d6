#!/bin/bash
# eval.sh: `qrecon eval` and `qrecon generate` end to end: JSON output, the same NLL from 1 and 2
# ranks (per-window sums added in window order), refused bad input, greedy text from the CLI.
set -u
data=${QRECON_TEST_DATA:-}
if [ -z "$data" ] || [ ! -d "$data/models" ]; then
    echo "skip: shared data folder '$data' not found"
    exit 77
fi
bin=$QRECON_BIN
mpi=${MPIEXEC:-mpiexec}
text=$data/text/tinystories_val_a.txt
model=$data/models/stories260K/llama2c
scratch=$(mktemp -d "${TMPDIR:-/tmp}/qrecon-eval.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
fail=0

for np in 1 2; do
    "$mpi" -n $np "$bin" eval --quiet --model "$model" --text "$text" --seq-len 256 \
        --max-tokens 3000 --json >"$scratch/np$np.json" 2>"$scratch/err" || {
        echo "FAIL: eval -n $np failed: $(cat "$scratch/err")" >&2
        exit 1
    }
    cat "$scratch/np$np.json"
done
# The JSON must parse, carry the window scheme, and give a sane NLL for this model (the full text
# gives about 1.5 nats/token; a 3000-token prefix stays within 1..2.5).
python3 - "$scratch/np1.json" "$scratch/np2.json" <<'PY' || fail=1
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
for k in ("nll_per_token", "perplexity", "seq_len", "windows", "tokens_scored"):
    assert k in a, f"missing key {k} in {a}"
assert a["seq_len"] == 256 and a["tokens_scored"] == 3000 and a["windows"] == 12, a
assert 1.0 < a["nll_per_token"] < 2.5, f"NLL/token {a['nll_per_token']} outside 1..2.5"
assert a["nll_per_token"] == b["nll_per_token"], \
    f"-n 1 and -n 2 disagree: {a['nll_per_token']} vs {b['nll_per_token']}"
print("ok: json keys, NLL %.4f from 1 and 2 ranks" % a["nll_per_token"])
PY

: >"$scratch/empty.txt"
"$bin" eval --model "$model" --text "$scratch/empty.txt" >"$scratch/out" 2>&1
rc=$?
if [ $rc -ne 2 ] || ! grep -q "empty text" "$scratch/out"; then
    echo "FAIL: empty text: expected exit 2 and 'empty text', found $rc: $(cat "$scratch/out")" >&2
    fail=1
fi
"$bin" eval --model "$model" --text "$text" --seq-len 600 >"$scratch/out" 2>&1
rc=$?
if [ $rc -ne 2 ] || ! grep -q "outside the model's context" "$scratch/out"; then
    echo "FAIL: --seq-len 600: expected exit 2, found $rc: $(cat "$scratch/out")" >&2
    fail=1
fi

story="Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
out=$("$bin" generate --model "$data/models/stories260K/hf" --steps 40 2>&1)
case "$out" in
"$story"*) echo "ok: generate: $out" ;;
*)
    echo "FAIL: generate: expected to start with '$story', found '$out'" >&2
    fail=1
    ;;
esac
exit $fail
