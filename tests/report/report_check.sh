#!/usr/bin/env bash
# report_check.sh: `qrecon report` on real stories260K checkpoints (rtn, and lqer at two ranks: a
# rank sweep). Checks, each able to fail:
#  - every number in report.json equals the attribute stored in the checkpoint, read independently
#    with h5dump (17 significant digits), and report.csv holds the same numbers;
#  - the kernel check column comes from `qrecon validate --json`;
#  - layers.svg and rank.svg render with rsvg-convert at their declared sizes;
#  - progress in the non-terminal mode: one line per module and a final summary; --json-log has one
#    step event per module; --quiet prints no progress.
set -euo pipefail
: "${QRECON_BIN:?}" "${MPIEXEC:?}" "${QRECON_TEST_DATA:?}"
model=$QRECON_TEST_DATA/models/stories260K/hf
text=$QRECON_TEST_DATA/text/tinystories_train_sample.txt
[ -d "$model" ] || { echo "skip: $model not found"; exit 77; }
command -v h5dump >/dev/null || { echo "FAIL: h5dump (hdf5-tools) is not installed"; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
q=$QRECON_BIN
fail() { echo "FAIL: $*"; exit 1; }

"$q" --quiet capture --model "$model" --text "$text" --seq-len 128 --tokens 4096 --out "$dir/calib"
"$MPIEXEC" -n 2 "$q" --progress lines --json-log "$dir/q.jsonl" quantize --model "$model" \
    --calib "$dir/calib" --out "$dir/rtn.h5" --method rtn --group 32 2>"$dir/progress.txt"
for r in 2 4; do
    "$MPIEXEC" -n 2 "$q" --quiet quantize --model "$model" --calib "$dir/calib" \
        --out "$dir/lqer-r$r.h5" --method lqer --group 32 --rank "$r" 2>"$dir/quiet-$r.txt"
done
"$MPIEXEC" -n 2 "$q" --quiet validate "$dir/lqer-r4.h5" --calib "$dir/calib" \
    --json "$dir/lqer-r4.h5.validate.json" >/dev/null

# progress: 35 module lines, one summary, JSON events, and nothing with --quiet
n=$(grep -cE '^quantize \[[0-9]+/35\] model\.layers\.' "$dir/progress.txt" || true)
[ "$n" -eq 35 ] || fail "expected 35 progress lines, found $n"
grep -qE '^quantize done: 35/35 modules' "$dir/progress.txt" || fail "no final progress summary"
n=$(grep -c '"event":"step"' "$dir/q.jsonl" || true)
[ "$n" -eq 35 ] || fail "expected 35 JSON step events, found $n"
if grep -qE '^quantize \[' "$dir/quiet-2.txt"; then fail "--quiet printed progress"; fi

"$q" report "$dir/rtn.h5" "$dir/lqer-r2.h5" "$dir/lqer-r4.h5" --out "$dir/report" >/dev/null
for f in report.md report.csv report.json layers.svg rank.svg; do
    [ -s "$dir/report/$f" ] || fail "report/$f missing"
done

python3 - "$dir" <<'PY'
import csv, json, math, re, subprocess, sys
d = sys.argv[1]
rep = json.load(open(f"{d}/report/report.json"))
keys = {"weight_error": "metric.weight_error", "output_error": "metric.output_error",
        "output_error_a8": "metric.output_error_a8", "output_error_a4": "metric.output_error_a4",
        "sqnr_db": "metric.sqnr_db", "bits_per_weight": "bits_per_weight"}
dumps = {}
def stored(path, module, attr):
    """The attribute as h5dump prints it (an independent reader), parsed once per file."""
    if path not in dumps:
        out = subprocess.run(["h5dump", "-A", "-m", "%.17g", path], capture_output=True,
                             text=True, check=True).stdout
        values, group, name = {}, "", None
        for line in out.splitlines():
            g = re.match(r'\s*GROUP "([^"]*)"', line)
            a = re.match(r'\s*ATTRIBUTE "([^"]*)"', line)
            v = re.match(r"\s*\(0\):\s*([-+0-9.eEinfINFaA]+)\s*$", line)
            if g:
                group = g.group(1).strip("/")
            elif a:
                name = a.group(1)
            elif v and name:
                values[(group, name)] = float(v.group(1))
                name = None
        dumps[path] = values
    assert (module, attr) in dumps[path], f"{path}: no attribute {module}/{attr} in h5dump output"
    return dumps[path][(module, attr)]
rows = {(r["checkpoint"], r["module"]): r for r in csv.DictReader(open(f"{d}/report/report.csv"))}
checked = 0
assert [c["label"] for c in rep["checkpoints"]] == ["rtn", "lqer-r2", "lqer-r4"]
for ck in rep["checkpoints"]:
    assert len(ck["modules"]) == 35, f"{ck['label']}: {len(ck['modules'])} modules"
    for m in ck["modules"]:
        for jk, attr in keys.items():
            want = stored(ck["path"], m["name"], attr)
            got = m[jk]
            if math.isnan(want):
                assert got is None, (ck["label"], m["name"], jk, got)
                continue
            assert got == want, f"{ck['label']} {m['name']} {jk}: report {got!r} != stored {want!r}"
            c = rows[(ck["label"], m["name"])][jk]
            assert float(c) == want, f"CSV {ck['label']} {m['name']} {jk}: {c} != {want!r}"
            checked += 1
        want_check = "pass" if ck["label"] == "lqer-r4" else "-"
        assert m["kernel_check"] == want_check, (ck["label"], m["name"], m["kernel_check"])
print(f"report numbers equal the stored attributes: {checked} values checked")
PY

if ! command -v rsvg-convert >/dev/null; then
    apt-get install -y -qq --no-install-recommends librsvg2-bin >/dev/null 2>&1 || true
fi
command -v rsvg-convert >/dev/null || fail "rsvg-convert (librsvg2-bin) is not installed"
for f in layers rank; do
    rsvg-convert -o "$dir/$f.png" "$dir/report/$f.svg"
    read -r w h < <(python3 -c "import struct; d=open('$dir/$f.png','rb').read(24); print(*struct.unpack('>II', d[16:24]))")
    read -r sw sh < <(sed -n 's/.*<svg[^>]* width="\([0-9]*\)" height="\([0-9]*\)".*/\1 \2/p' "$dir/report/$f.svg" | head -1)
    [ "$w" = "$sw" ] && [ "$h" = "$sh" ] || fail "$f.png is ${w}x$h, the SVG declares ${sw}x$sh"
    [ "$(stat -c %s "$dir/$f.png")" -gt 8000 ] || fail "$f.png looks empty ($(stat -c %s "$dir/$f.png") bytes)"
done
echo PASS
