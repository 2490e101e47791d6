#!/usr/bin/env bash
# readme.demo: the README's main command, as a new user meets it, minus the install and build steps
# that `tools/setup.sh demo` runs before it: tools/demo.sh on the built binary must run the whole
# pipeline (inspect, capture, quantize on 2 ranks, validate, report, eval before and after) and end
# by printing where the report is and both perplexities.
set -euo pipefail
: "${QRECON_BIN:?}" "${QRECON_SRC:?}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
QRECON_DEMO_OUT=$out bash "$QRECON_SRC/tools/demo.sh" "$QRECON_BIN" >"$out.log" 2>&1 || {
    tail -40 "$out.log"
    echo "FAIL: tools/demo.sh exited non-zero"
    exit 1
}
tail -4 "$out.log"
grep -q "^report: .*/report/report.md" "$out.log" || { echo "FAIL: no report line"; exit 1; }
[ -s "$out/report/report.md" ] || { echo "FAIL: the report it names does not exist"; exit 1; }
before=$(sed -n 's/^perplexity, float: *//p' "$out.log")
after=$(sed -n 's/^perplexity, W4A8 [a-z-]*: *//p' "$out.log")
python3 -c "import sys; b, a = float(sys.argv[1]), float(sys.argv[2]); \
assert 1 < b < a < 2 * b, (b, a)" "$before" "$after" ||
    { echo "FAIL: perplexities before/after not plausible: '$before' '$after'"; exit 1; }
rm -f "$out.log"
echo "PASS: demo ran; perplexity $before -> $after"
