#!/bin/bash
# tokenizer_test.sh CASE TOK_DUMP FIXTURES: qrecon's tokenizer.json encoder against the reference,
# @huggingface/tokenizers 0.2.0 (npm, test-only, installed by `tools/setup.sh tokenizer-refs` into
# ${QRECON_NPM_CACHE:-~/.cache/qrecon-npm}/tokenizer-refs), on tokenizer.json files that
# make_fixtures.mjs builds under FIXTURES from the Llama-2 / Llama-3 vocabularies the npm packages
# llama-tokenizer-js 1.2.2 and llama3-tokenizer-js 1.2.0 ship (nothing is committed).
#   reference    every line of every ../shared/data/text/*.txt, and two whole files, token for token
#   adversarial  every line of adversarial.txt (emoji, combining marks, CJK, runs of spaces, odd
#                white space, special-token literals), token for token
#   fixtures     only build the fixtures (the archs tests use them)
#   errors       invalid UTF-8, a folder without a tokenizer, a tokenizer.model, an unsupported
#                tokenizer.json: exit 2 and a message that says what to do
# Exit 77 (skipped) only when node/npm or the npm install are unavailable, or the shared data is
# absent (reference).
set -u
case_name=$1
dump=$2
fixtures=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=${QRECON_SRC:-$here/../..}
refs=${QRECON_NPM_CACHE:-$HOME/.cache/qrecon-npm}/tokenizer-refs
scratch=$(mktemp -d "${TMPDIR:-/tmp}/qrecon-tokenizer-$case_name.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
fail=0

need_refs() {
    if ! command -v node >/dev/null; then
        echo "skip: node is not installed (tools/setup.sh test installs it)"
        exit 77
    fi
    # one install / fixture build at a time when tests run in parallel
    mkdir -p "$(dirname "$refs")" "$(dirname "$fixtures")"
    exec 9>"$fixtures.lock"
    flock 9
    if [ ! -f "$refs/.complete" ] && ! "$src/tools/setup.sh" tokenizer-refs >"$scratch/npm.log" 2>&1; then
        echo "skip: the npm references could not be installed: $(tail -3 "$scratch/npm.log")"
        exit 77
    fi
    # Built once per build tree.
    if [ ! -f "$fixtures/qwen2/tokenizer.json" ]; then
        local tmp="$fixtures.tmp.$$"
        rm -rf "$tmp"
        node "$here/make_fixtures.mjs" "$refs" "$tmp" || { echo "FAIL: make_fixtures.mjs"; exit 1; }
        mv -T "$tmp" "$fixtures" 2>/dev/null || rm -rf "$tmp"
    fi
    flock -u 9
}

# compare TOKENIZER TEXT MODE: reference ids vs qrecon's, line by line.
compare() {
    local tok=$1 text=$2 mode=$3 name
    name="$tok/$(basename "$text") ($mode)"
    node "$here/encode.mjs" "$refs" "$fixtures/$tok" "$text" "$mode" >"$scratch/ref" ||
        { echo "FAIL: $name: the reference failed"; fail=1; return; }
    "$dump" "$fixtures/$tok/tokenizer.json" "$text" "$mode" >"$scratch/got" ||
        { echo "FAIL: $name: qrecon's encoder failed"; fail=1; return; }
    if cmp -s "$scratch/ref" "$scratch/got"; then
        echo "ok: $name: $(wc -l <"$scratch/ref") line(s), $(wc -w <"$scratch/ref") tokens equal"
    else
        local line
        line=$(cmp "$scratch/ref" "$scratch/got" | sed -n 's/.*line \([0-9]*\).*/\1/p')
        echo "FAIL: $name: first difference at line $line"
        echo "  text:      $(sed -n "${line}p" "$text" | cut -c1-200)"
        echo "  reference: $(sed -n "${line}p" "$scratch/ref" | cut -c1-200)"
        echo "  qrecon:    $(sed -n "${line}p" "$scratch/got" | cut -c1-200)"
        fail=1
    fi
}

# expect_bad WHAT PATTERN CMD...: exit 2 and a message matching PATTERN.
expect_bad() {
    local what=$1 pattern=$2
    shift 2
    "$@" >"$scratch/out" 2>&1
    local rc=$?
    if [ $rc -ne 2 ]; then
        echo "FAIL: $what: expected exit 2, found $rc: $(cat "$scratch/out")"
        fail=1
    elif ! grep -q -- "$pattern" "$scratch/out"; then
        echo "FAIL: $what: expected a message matching '$pattern', found: $(cat "$scratch/out")"
        fail=1
    else
        echo "ok: $what -> $(head -1 "$scratch/out")"
    fi
}

case $case_name in
fixtures) # only build FIXTURES (for the archs tests)
    need_refs
    ;;
reference)
    data=${QRECON_TEST_DATA:-}
    if [ -z "$data" ] || [ ! -d "$data/text" ]; then
        echo "skip: shared data folder '$data' not found"
        exit 77
    fi
    need_refs
    for tok in llama2 llama3 qwen2; do
        for text in "$data"/text/*.txt; do
            compare "$tok" "$text" lines
        done
    done
    # capture and eval tokenize a whole file at once (newlines inside the text)
    compare llama2 "$data/text/tinystories_val_a.txt" whole
    compare llama3 "$data/text/tinystories_val_a.txt" whole
    ;;
adversarial)
    need_refs
    for tok in llama2 llama3 qwen2; do
        compare "$tok" "$here/adversarial.txt" lines
    done
    # BOS / EOS from tokenizer_config.json (Qwen2 has no BOS)
    for pair in "llama2:1 2" "llama3:128000 128001" "qwen2:-1 128000"; do
        got=$("$dump" "$fixtures/${pair%%:*}/tokenizer.json" --bos-eos)
        [ "$got" = "${pair#*:}" ] || { echo "FAIL: ${pair%%:*} BOS EOS: expected ${pair#*:}, found $got"; fail=1; }
    done
    ;;
errors)
    need_refs
    printf 'valid start \xff\xfe then invalid' >"$scratch/bad.txt"
    expect_bad "invalid UTF-8" "invalid UTF-8 at byte offset 12" \
        "$dump" "$fixtures/llama3/tokenizer.json" "$scratch/bad.txt" whole
    printf 'truncated \xe6\x97' >"$scratch/bad2.txt"
    expect_bad "truncated UTF-8" "invalid UTF-8 at byte offset 10" \
        "$dump" "$fixtures/llama2/tokenizer.json" "$scratch/bad2.txt" whole
    mkdir -p "$scratch/wp"
    echo '{"model": {"type": "WordPiece", "vocab": {"a": 0}}}' >"$scratch/wp/tokenizer.json"
    expect_bad "a WordPiece tokenizer.json" 'model type "WordPiece" is not supported' \
        "$dump" "$scratch/wp/tokenizer.json" --bos-eos
    sed 's/"Isolated"/"MergedWithPrevious"/' "$fixtures/llama3/tokenizer.json" >"$scratch/wp/tokenizer.json"
    expect_bad "a Split pre-tokenizer with another behavior" 'behavior "MergedWithPrevious"' \
        "$dump" "$scratch/wp/tokenizer.json" --bos-eos
    # qrecon on a model folder without a usable tokenizer
    bin=$QRECON_BIN
    "$bin" synth --quiet --out "$scratch/m" --dim 64 --hidden 128 --layers 1 --heads 4 \
        --kv-heads 2 --vocab 512 >/dev/null || { echo "FAIL: synth"; exit 1; }
    echo "Once upon a time" >"$scratch/t.txt"
    expect_bad "capture without a tokenizer" "looked for tokenizer.bin, tok\*.bin and tokenizer.json.*--tokenizer FILE.*--token-file FILE" \
        "$bin" capture --quiet --model "$scratch/m" --text "$scratch/t.txt" --out "$scratch/c" --seq-len 8 --tokens 8
    expect_bad "eval without a tokenizer" "--token-file" \
        "$bin" eval --quiet --model "$scratch/m" --text "$scratch/t.txt" --seq-len 8
    : >"$scratch/m/tokenizer.model"
    expect_bad "a folder with only tokenizer.model" "SentencePiece tokenizer.model (protobuf), which qrecon does not read (expected tokenizer.json" \
        "$bin" eval --quiet --model "$scratch/m" --text "$scratch/t.txt" --seq-len 8
    expect_bad "tokenizer.json ids beyond the model's vocabulary" "token ids beyond the model's vocabulary" \
        "$bin" eval --quiet --model "$scratch/m" --text "$scratch/t.txt" --seq-len 8 \
        --tokenizer "$fixtures/llama2/tokenizer.json"
    ;;
*)
    echo "unknown case $case_name"
    exit 2
    ;;
esac
exit $fail
