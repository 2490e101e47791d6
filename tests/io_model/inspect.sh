#!/usr/bin/env bash
# inspect.sh CHECK_JSON (test io_model.inspect): `qrecon inspect` on the real model folders lists 35
# modules with the same shapes for the llama2.c and Hugging Face forms of one model; --json is valid
# JSON whose rows and totals agree (checked by CHECK_JSON, a jansson program); broken inputs written
# here (a truncated llama2.c file, a truncated safetensors file, a bad config.json, a missing path,
# a bad option) exit 2 with one line naming the file and the problem.
set -u
check_json=$1
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

# run NAME ARGS...: run qrecon with a deadline, stdout to $tmp/NAME.out, stderr to $tmp/NAME.err.
run() {
    local name=$1
    shift
    timeout 60 "$QRECON_BIN" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
}

models="babyllama105/hf-bf16-2shards babyllama105/llama2c stories260K/hf stories260K/llama2c"
for m in $models; do
    tag=$(echo "$m" | tr '/' '_')
    run "$tag" inspect "$data/models/$m"
    rc=$?
    if [ $rc -ne 0 ]; then
        bad "inspect $m: exit $rc: $(cat "$tmp/$tag.err")"
        continue
    fi
    grep -q '^quantizable modules (35)$' "$tmp/$tag.out" || bad "inspect $m: no 'quantizable modules (35)' header"
    rows=$(grep -cE '^  model\.layers\.[0-9]+\.(self_attn|mlp)\.[a-z]+_proj  ' "$tmp/$tag.out")
    [ "$rows" -eq 35 ] || bad "inspect $m: expected 35 module rows, found $rows"
    grep -qE '^  modules +35$' "$tmp/$tag.out" || bad "inspect $m: totals do not say 35 modules"
    run "$tag.json" inspect "$data/models/$m" --json
    rc=$?
    if [ $rc -ne 0 ]; then
        bad "inspect --json $m: exit $rc: $(cat "$tmp/$tag.json.err")"
        continue
    fi
    "$check_json" "$tmp/$tag.json.out" 35 >"$tmp/$tag.modules" || bad "inspect --json $m: inconsistent JSON"
done
echo "--- babyllama105 table (head) ---"
head -n 16 "$tmp/babyllama105_hf-bf16-2shards.out"

# The two forms of each model list the same modules with the same shapes and inputs.
for pair in "babyllama105/hf-bf16-2shards babyllama105/llama2c" "stories260K/hf stories260K/llama2c"; do
    set -- $pair
    a=$(echo "$1" | tr '/' '_').modules
    b=$(echo "$2" | tr '/' '_').modules
    cmp -s "$tmp/$a" "$tmp/$b" || bad "module lists differ between $1 and $2"
done
grep -q '^model.layers.0.self_attn.k_proj 32 64 layers.0.attn_in$' "$tmp/stories260K_hf.modules" ||
    bad "stories260K k_proj should be 32 x 64 reading layers.0.attn_in"
grep -q '^model.layers.4.mlp.down_proj 128 352 layers.4.down_in$' "$tmp/babyllama105_llama2c.modules" ||
    bad "babyllama105 down_proj should be 128 x 352 reading layers.4.down_in"
grep -q 'BF16' "$tmp/babyllama105_hf-bf16-2shards.out" || bad "babyllama105 HF should show BF16"

# expect_exit2 NAME PATTERN ARGS...: exit 2 and one error line matching PATTERN.
expect_exit2() {
    local name=$1 pattern=$2
    shift 2
    run "$name" "$@"
    local rc=$?
    [ $rc -eq 2 ] || bad "$name: expected exit 2, found $rc ($(cat "$tmp/$name.err"))"
    local lines
    lines=$(grep -c 'error: ' "$tmp/$name.err")
    [ "$lines" -eq 1 ] || bad "$name: expected one error line, found $lines"
    grep -qE "$pattern" "$tmp/$name.err" || bad "$name: message should match '$pattern': $(cat "$tmp/$name.err")"
    echo "$name: $(cat "$tmp/$name.err")"
}

mkdir "$tmp/trunc"
head -c 1000000 "$data/models/stories260K/llama2c/stories260K.bin" >"$tmp/trunc/model.bin"
expect_exit2 truncated_l2c 'model.bin: .*expected 1056540 bytes.*found 1000000 bytes' inspect "$tmp/trunc"
mkdir "$tmp/badheader"
{ printf '\x40\x00\x00\x00\xac\x00\x00\x00\x05\x00\x00\x00\x08\x00\x00\x00\x03\x00\x00\x00'
  tail -c +21 "$data/models/stories260K/llama2c/stories260K.bin"; } >"$tmp/badheader/model.bin"
expect_exit2 bad_header 'model.bin: .*n_kv_heads.*found 3' inspect "$tmp/badheader/model.bin"
mkdir "$tmp/trunc_st"
cp "$data/models/stories260K/hf/config.json" "$tmp/trunc_st/"
head -c 500000 "$data/models/stories260K/hf/model.safetensors" >"$tmp/trunc_st/model.safetensors"
expect_exit2 truncated_st 'model.safetensors' inspect "$tmp/trunc_st"
mkdir "$tmp/badconfig"
sed 's/"num_key_value_heads": 4/"num_key_value_heads": 3/' "$data/models/stories260K/hf/config.json" >"$tmp/badconfig/config.json"
cp "$data/models/stories260K/hf/model.safetensors" "$tmp/badconfig/"
expect_exit2 bad_config 'config.json: .*num_key_value_heads.*found 3' inspect "$tmp/badconfig"
expect_exit2 missing_path 'nowhere: not found' inspect "$tmp/nowhere"
expect_exit2 bad_option 'inspect: .*unknown option' inspect --bogus "$data/models/stories260K/hf"
expect_exit2 no_model 'inspect: expected a MODEL path' inspect

run help inspect --help
[ $? -eq 0 ] && grep -q '^usage: qrecon inspect MODEL' "$tmp/help.out" || bad "inspect --help"

if [ $fail -ne 0 ]; then
    exit 1
fi
echo "PASS: inspect lists 35 modules on all four real folders; JSON consistent; broken inputs exit 2"
