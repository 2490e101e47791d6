#!/usr/bin/env bash
# equal_bits.sh BUILD_DIR [WORK] [MODELS]: every method against the combined method (joint) at
# equal parameter-weighted bits per weight (docs/methods.md, "Equal bits: every method against the
# combined method"). For each shared model: capture 16384 tokens of TinyStories training text
# (windows of 256; babyllama105 with --unknown-to-zero), then for --abits 8 and 4 quantize with
# every method under one `--bits B` budget per model (group 32; each seed method with and without
# --gptq, joint with its defaults; RTN+GPTQ for reference), and evaluate every checkpoint with
# `qrecon eval --ckpt` on 8192 tokens of tinystories_val_a.txt and of wikitext2_valid.txt in one
# run. Prints one Markdown table: KL mean, ΔNLL, top-1 agreement, parameter-weighted bits per
# weight (report.json's mean_bits_per_weight), quantize CPU seconds (user + sys of the quantize
# process, /usr/bin/time). Rows marked * are each method's better variant (+gptq or not) by the
# mean KL over the two texts. Environment: EQUAL_BITS_METHODS overrides the method list;
# EQUAL_BITS_REDO="joint ..." reruns only those variants and reuses the other results in WORK.
set -euo pipefail
build=$(cd "$1" && pwd)
work=${2:-/tmp/qrecon-equal-bits}
models=${3:-stories260K babyllama105}
data=$(cd "$(dirname "$0")/../../.." && pwd)/shared/data
[ -d "$data/models" ] || data=${QRECON_TEST_DATA:?no shared data}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1
q=$build/qrecon
methods=${EQUAL_BITS_METHODS:-lqer qera-approx qera-exact aser serq flrq srr}
mkdir -p "$work"
train=$data/text/tinystories_train_sample.txt
texts=(--text "$data/text/tinystories_val_a.txt" --text "$data/text/wikitext2_valid.txt")
# The budget per model: the least B (in steps of 0.25) at which every method runs on every module
# with group 32 and each correction gets rank >= 1 (SERQ's smoothing vector and permutation cost
# 64 / d_out bits per weight: 2 bits on stories260K's 32-row k/v, 1 bit on babyllama105's 64-row).
budget() { [ "$1" = stories260K ] && echo 7.0 || echo 6.0; }

# row MODEL ABITS LABEL CKPT QSECONDS: one line per text, tab-separated fields for the table
row() {
    local name=$1 ab=$2 label=$3 ck=$4 cpu=$5 bits
    "$q" report "$ck" --out "$ck.report" >/dev/null
    bits=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1]));
c=j["checkpoints"][0] if "checkpoints" in j else j
print("%.3f" % c["summary"]["mean_bits_per_weight"] if "summary" in c else c["mean_bits_per_weight"])' \
        "$ck.report/report.json" 2>/dev/null || echo "?")
    python3 - "$ck.eval.jsonl" "$name" "$ab" "$label" "$bits" "$cpu" <<'EOF'
import json, sys
path, name, ab, label, bits, cpu = sys.argv[1:]
for line in open(path):
    line = line.strip()
    if not line.startswith("{"):
        continue
    j = json.loads(line)
    text = "TinyStories" if j["name"].startswith("tinystories") else "WikiText-2"
    print("\t".join([name, "A" + ab, label, text, "%.5f" % j["kl_mean"], "%+.4f" % j["delta_nll"],
                     "%.4f" % j["top1_agreement"], bits, cpu]))
EOF
}

rows=$work/rows.tsv
: >"$rows"
for name in $models; do
    dir=$data/models/stories260K/hf
    [ "$name" = babyllama105 ] && dir=$data/models/babyllama105/hf-bf16-2shards
    extra=()
    [ "$name" = babyllama105 ] && extra=(--unknown-to-zero)
    B=$(budget "$name")
    [ -d "$work/calib-$name" ] || mpiexec -n 1 "$q" --quiet capture --model "$dir" --text "$train" \
        --seq-len 256 --tokens 16384 "${extra[@]}" --out "$work/calib-$name" >/dev/null
    for ab in 8 4; do
        variants=("rtn+gptq:--method rtn --gptq" "joint:--method joint")
        for m in $methods; do
            variants+=("$m:--method $m" "$m+gptq:--method $m --gptq")
        done
        for v in "${variants[@]}"; do
            label=${v%%:*}
            ck=$work/$name-a$ab-$label.h5
            if [ -n "${EQUAL_BITS_REDO:-}" ] && [ -s "$ck.eval.jsonl" ] &&
                [[ " $EQUAL_BITS_REDO " != *" $label "* ]]; then
                row "$name" "$ab" "$label" "$ck" "$(awk '{ printf "%.1f", $1 + $2 }' "$ck.time")" \
                    >>"$rows"
                continue
            fi
            rm -rf "$ck" "$ck.parts" "$ck.eval.json"
            bopt=(--bits "$B")
            [ "${label%%+*}" = rtn ] && bopt=()
            # shellcheck disable=SC2086 # ${v#*:} is the variant's options, split on purpose
            /usr/bin/time -f "%U %S" -o "$ck.time" "$q" --quiet quantize --model "$dir" \
                --calib "$work/calib-$name" --out "$ck" --group 32 --abits "$ab" "${bopt[@]}" \
                ${v#*:} >"$ck.log" 2>&1 || {
                echo "quantize $name A$ab $label failed: $(tail -1 "$ck.log")" >&2
                continue
            }
            cpu=$(awk '{ printf "%.1f", $1 + $2 }' "$ck.time")
            "$q" --quiet eval --model "$dir" --ckpt "$ck" "${texts[@]}" "${extra[@]}" \
                --max-tokens 8192 --seq-len 256 --json >"$ck.eval.jsonl" 2>"$ck.eval.log"
            row "$name" "$ab" "$label" "$ck" "$cpu" | tee -a "$rows" >&2
        done
    done
done
# The table: per model, A8 / A4 and text; each method's better variant (by mean KL over the two
# texts at that activation width) marked *.
python3 - "$rows" <<'EOF'
import sys, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by = collections.OrderedDict()
for r in rows:
    by.setdefault((r[0], r[1], r[2]), {})[r[3]] = r
best = {}
for (model, ab, label), t in by.items():
    base = label.split("+")[0]
    kl = sum(float(x[4]) for x in t.values()) / len(t)
    k = (model, ab, base)
    if k not in best or kl < best[k][1]:
        best[k] = (label, kl)
print("| model | act | method | bits/w | quantize CPU s | KL TinyStories | ΔNLL TinyStories | top-1 TinyStories | KL WikiText-2 | ΔNLL WikiText-2 | top-1 WikiText-2 |")
print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for (model, ab, label), t in by.items():
    star = "*" if best[(model, ab, label.split("+")[0])][0] == label else ""
    a = t.get("TinyStories", [""] * 9)
    b = t.get("WikiText-2", [""] * 9)
    lab = "**%s**" % label if label == "joint" else label + star
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        model, ab, lab, a[7], a[8], a[4], a[5], a[6], b[4], b[5], b[6]))
EOF
