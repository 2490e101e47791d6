#!/usr/bin/env bash
# report_plots.sh WRITER: the report's rank.svg and layers.svg rendered with a real renderer
# (rsvg-convert) and their axes checked from the SVG's tick labels:
#  - rank.svg: the x axis spans the sweep (ranks 2..8), not the RTN checkpoint's stored --rank 32;
#    RTN is a dashed reference line;
#  - layers.svg: the seven panels share one y range, with at least MIN_TICKS labelled ticks each.
set -eu
MIN_TICKS=5 # 1-2-5 ticks over the ~2 decades of the errors give 6 or more; decades alone give 3
writer=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$writer" "$dir/rank.svg" "$dir/layers.svg"
if ! command -v rsvg-convert >/dev/null; then
    apt-get install -y -qq --no-install-recommends librsvg2-bin >/dev/null 2>&1 ||
        { echo "skip: rsvg-convert (librsvg2-bin) cannot be installed"; exit 77; }
fi
for f in rank layers; do
    rsvg-convert -o "$dir/$f.png" "$dir/$f.svg"
done
python3 - "$dir" "$MIN_TICKS" <<'PY'
import re, struct, sys
d, min_ticks = sys.argv[1], int(sys.argv[2])
def png_size(p):
    b = open(p, "rb").read(32)
    assert b[:8] == b"\x89PNG\r\n\x1a\n", p + ": not a PNG"
    return struct.unpack(">II", b[16:24])
def svg_size(t):
    m = re.search(r'<svg[^>]* width="(\d+)" height="(\d+)"', t)
    return int(m.group(1)), int(m.group(2))
def ticks(t, anchor):
    return [float(v) for v in re.findall(r'text-anchor="%s">([-0-9.e+]+)</text>' % anchor, t)]
ok = True
rank = open(f"{d}/rank.svg").read()
layers = open(f"{d}/layers.svg").read()
for name, t in (("rank", rank), ("layers", layers)):
    if png_size(f"{d}/{name}.png") != svg_size(t):
        print(f"{name}.png: {png_size(f'{d}/{name}.png')} != the SVG's {svg_size(t)}"); ok = False
xt = ticks(rank, "middle")
print(f"rank.svg x ticks {xt}")
if not xt or max(xt) > 8 or min(xt) < 2:
    print("FAIL: rank.svg's x axis does not span the sweep 2..8"); ok = False
if 'class="reference"' not in rank:
    print("FAIL: rank.svg has no RTN reference line"); ok = False
panels = layers.split('font-weight="bold">')[1:]
sets = [tuple(ticks(p, "end")) for p in panels]
print(f"layers.svg: {len(panels)} panels, y ticks of the first {sets[0] if sets else None}")
if len(panels) != 7 or len(set(sets)) != 1:
    print("FAIL: layers.svg's panels do not share one y range"); ok = False
if sets and len(sets[0]) < min_ticks:
    print(f"FAIL: {len(sets[0])} y ticks per panel (fewer than {min_ticks})"); ok = False
sys.exit(0 if ok else 1)
PY
echo PASS
