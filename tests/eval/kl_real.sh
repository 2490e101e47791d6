#!/usr/bin/env bash
# kl_real.sh: `qrecon eval --ckpt` against the float model, and `qrecon report` with its figures,
# on the real stories260K (rtn, srr at ranks 2 and 4: a rank sweep) and babyllama105 (rtn), with
# the TinyStories validation text and WikiText-2 in one run, a few hundred tokens each.
# Structural facts and consistency only (which method wins is not a safe assertion on so few
# tokens), each able to fail:
#  - one JSON object per --text, each with every figure; ΔNLL is the difference of the two NLLs
#    printed; perplexities are exp(NLL); min <= median <= p99 <= max; 0 <= top-1 <= 1; KL > 0;
#  - the float side equals `qrecon eval` without --ckpt (same windows, same digits);
#  - 1 and 2 ranks give the same figures;
#  - CKPT.eval.json: format, identity, both texts; a second eval of one text keeps the other;
#    --sidecar none writes nothing; --sidecar without --ckpt exits 2;
#  - report.md has the quality table, report.json the same numbers as the sidecar, kl.svg renders;
#    a sidecar of other bytes (copied beside another checkpoint) is left out with a warning.
set -euo pipefail
: "${QRECON_BIN:?}" "${MPIEXEC:?}" "${QRECON_TEST_DATA:?}"
data=$QRECON_TEST_DATA
small=$data/models/stories260K/hf
baby=$data/models/babyllama105/llama2c
calib_text=$data/text/tinystories_train_sample.txt
texts=(--text "$data/text/tinystories_val_a.txt" --text "$data/text/wikitext2_valid.txt")
for p in "$small" "$baby" "$data/text/wikitext2_valid.txt"; do
    [ -e "$p" ] || { echo "skip: $p not found"; exit 77; }
done
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
q=$QRECON_BIN
fail() { echo "FAIL: $*"; exit 1; }
# Few tokens keep the test short: 384 scored tokens per text in windows of 128.
ev=(--max-tokens 384 --seq-len 128)

"$q" --quiet capture --model "$small" --text "$calib_text" --seq-len 128 --tokens 2048 \
    --out "$dir/calib"
"$q" --quiet quantize --model "$small" --calib "$dir/calib" --out "$dir/rtn.h5" --method rtn \
    --group 32 --abits 8
for r in 2 4; do
    "$q" --quiet quantize --model "$small" --calib "$dir/calib" --out "$dir/srr-r$r.h5" \
        --method srr --group 32 --rank $r --abits 8
done

# float-only figures of the same windows, to compare with the float side of --ckpt
"$q" --quiet eval --model "$small" "${texts[@]}" "${ev[@]}" --json >"$dir/float.jsonl"
for c in rtn srr-r2 srr-r4; do
    "$q" --quiet eval --model "$small" --ckpt "$dir/$c.h5" "${texts[@]}" "${ev[@]}" --json \
        >"$dir/$c.jsonl"
done
"$MPIEXEC" -n 2 "$q" --quiet eval --model "$small" --ckpt "$dir/rtn.h5" "${texts[@]}" "${ev[@]}" \
    --json --sidecar none >"$dir/rtn-np2.jsonl"

# babyllama105 (character level: characters outside its vocabulary become <unk>)
"$q" --quiet capture --model "$baby" --text "$calib_text" --unknown-to-zero --seq-len 128 \
    --tokens 2048 --out "$dir/calib-baby"
"$q" --quiet quantize --model "$baby" --calib "$dir/calib-baby" --out "$dir/baby-rtn.h5" \
    --method rtn --group 32 --abits 8
"$q" --quiet eval --model "$baby" --ckpt "$dir/baby-rtn.h5" "${texts[@]}" --unknown-to-zero \
    "${ev[@]}" --json >"$dir/baby-rtn.jsonl"

python3 - "$dir" <<'PY'
import json, math, sys
d = sys.argv[1]
FIELDS = ["nll_per_token", "perplexity", "float_nll_per_token", "float_perplexity", "delta_nll",
          "delta_nll_se", "kl_mean", "kl_mean_se", "kl_median", "kl_p99", "kl_max",
          "top1_agreement", "top1_agreement_se", "tokens_scored", "name", "ckpt"]
# The JSON carries 10 significant digits: differences of printed values agree to ~1e-9.
PRINTED = 1e-8
def lines(name):
    with open(f"{d}/{name}.jsonl") as f:
        return [json.loads(l) for l in f if l.strip()]
def fail(msg):
    print("FAIL:", msg); sys.exit(1)
flt = lines("float")
if len(flt) != 2 or "kl_mean" in flt[0]:
    fail(f"float eval: expected 2 objects without KL, found {len(flt)}")
for c in ["rtn", "srr-r2", "srr-r4", "baby-rtn"]:
    objs = lines(c)
    if [o.get("name") for o in objs] != ["tinystories_val_a.txt", "wikitext2_valid.txt"]:
        fail(f"{c}: expected one object per text in order, found {[o.get('name') for o in objs]}")
    for o in objs:
        w = f"{c} on {o['name']}"
        miss = [k for k in FIELDS if k not in o or o[k] is None]
        if miss: fail(f"{w}: missing {miss}")
        if o["tokens_scored"] != 384: fail(f"{w}: {o['tokens_scored']} tokens scored, expected 384")
        if abs(o["delta_nll"] - (o["nll_per_token"] - o["float_nll_per_token"])) > PRINTED:
            fail(f"{w}: delta_nll {o['delta_nll']} is not the difference of the NLLs")
        for p, n in (("perplexity", "nll_per_token"), ("float_perplexity", "float_nll_per_token")):
            if abs(o[p] - math.exp(o[n])) > PRINTED * o[p]: fail(f"{w}: {p} is not exp({n})")
        if not (0 < o["kl_median"] <= o["kl_p99"] <= o["kl_max"]):
            fail(f"{w}: KL median {o['kl_median']} p99 {o['kl_p99']} max {o['kl_max']} out of order")
        if not (0 < o["kl_mean"] <= o["kl_max"]): fail(f"{w}: KL mean {o['kl_mean']}")
        if not (0 <= o["top1_agreement"] <= 1): fail(f"{w}: top-1 {o['top1_agreement']}")
    if c != "baby-rtn":
        for o, f in zip(objs, flt):
            if o["float_nll_per_token"] != f["nll_per_token"]:
                fail(f"{c}: float side {o['float_nll_per_token']} != eval without --ckpt {f['nll_per_token']}")
one, two = lines("rtn"), lines("rtn-np2")
for a, b in zip(one, two):
    for k in FIELDS:
        if a[k] != b[k]: fail(f"rtn on {a['name']}: {k} {a[k]} (1 rank) != {b[k]} (2 ranks)")
for c in ["rtn", "srr-r2", "srr-r4", "baby-rtn"]:
    for o in lines(c):
        print(f"{c:8s} {o['name']:22s} KL mean {o['kl_mean']:.5f} median {o['kl_median']:.5f} "
              f"p99 {o['kl_p99']:.5f} top-1 {o['top1_agreement']:.4f} dNLL {o['delta_nll']:+.5f}")
PY

# The sidecar: written beside each checkpoint, merged by text name, optional.
python3 - "$dir/rtn.h5.eval.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["format"] == "qrecon-eval" and s["version"] == 1, s.get("format")
assert s["checkpoint_identity"].startswith("xxh3-"), s["checkpoint_identity"]
assert [t["name"] for t in s["texts"]] == ["tinystories_val_a.txt", "wikitext2_valid.txt"]
PY
"$q" --quiet eval --model "$small" --ckpt "$dir/rtn.h5" --text "$data/text/wikitext2_valid.txt" \
    --max-tokens 127 --seq-len 128 >/dev/null
python3 - "$dir/rtn.h5.eval.json" <<'PY' || fail "sidecar merge"
import json, sys
t = json.load(open(sys.argv[1]))["texts"]
assert [x["name"] for x in t] == ["tinystories_val_a.txt", "wikitext2_valid.txt"], t
assert t[0]["tokens_scored"] == 384 and t[1]["tokens_scored"] == 127, t
PY
"$q" --quiet eval --model "$small" --ckpt "$dir/srr-r2.h5" --text "$data/text/wikitext2_valid.txt" \
    "${ev[@]}" --sidecar none >/dev/null
n=$(python3 -c "import json; print(len(json.load(open('$dir/srr-r2.h5.eval.json'))['texts']))")
[ "$n" = 2 ] || fail "--sidecar none changed the sidecar ($n texts)"
rc=0
"$q" --quiet eval --model "$small" --text "$calib_text" --sidecar "$dir/x.json" >/dev/null \
    2>"$dir/err" || rc=$?
[ $rc = 2 ] && grep -q "need --ckpt" "$dir/err" || fail "--sidecar without --ckpt: exit $rc"

# report: the quality table, the same numbers in report.json, kl.svg; a stale sidecar left out
cp "$dir/rtn.h5" "$dir/copy.h5"
cp "$dir/srr-r4.h5.eval.json" "$dir/copy.h5.eval.json"
"$q" report "$dir/rtn.h5" "$dir/srr-r2.h5" "$dir/srr-r4.h5" "$dir/copy.h5" --out "$dir/report" \
    >/dev/null 2>"$dir/report.err"
grep -q "copy.h5.eval.json belongs to an earlier version" "$dir/report.err" ||
    fail "no warning for the stale sidecar: $(cat "$dir/report.err")"
grep -q "^## Model quality against the float model" "$dir/report/report.md" ||
    fail "report.md has no quality section"
n=$(grep -cE '^\| (rtn|srr-r2|srr-r4) \| [a-z]+ \| (tinystories_val_a|wikitext2_valid)\.txt \|' \
    "$dir/report/report.md" || true)
[ "$n" = 6 ] || fail "report.md: expected 6 quality rows, found $n"
python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
r = {c["label"]: c for c in json.load(open(f"{d}/report/report.json"))["checkpoints"]}
if "quality" in r["copy"]: print("FAIL: the stale sidecar's figures are in report.json"); sys.exit(1)
for label in ["rtn", "srr-r2", "srr-r4"]:
    side = {t["name"]: t for t in json.load(open(f"{d}/{label}.h5.eval.json"))["texts"]}
    for qf in r[label]["quality"]:
        for k in ["kl_mean", "kl_median", "kl_p99", "delta_nll", "top1_agreement", "perplexity",
                  "float_perplexity", "tokens_scored"]:
            a, b = qf[k], side[qf["name"]][k]
            if abs(a - b) > 1e-9 * max(1.0, abs(b)):
                print(f"FAIL: {label} {qf['name']} {k}: report {a} sidecar {b}"); sys.exit(1)
PY
[ -s "$dir/report/kl.svg" ] || fail "report/kl.svg missing for a rank sweep"
if command -v rsvg-convert >/dev/null; then
    rsvg-convert -o "$dir/kl.png" "$dir/report/kl.svg"
    [ "$(stat -c %s "$dir/kl.png")" -gt 8000 ] || fail "kl.png looks empty"
else
    echo "note: rsvg-convert is not installed; kl.svg not rendered"
fi
echo PASS
