#!/usr/bin/env bash
# svg_render.sh WRITER: render the chart with rsvg-convert (librsvg, Debian) and check the PNG has the
# SVG's size (800 x 700) and is not blank (a blank white PNG of that size compresses to a few KB).
set -eu
writer=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$writer" "$dir/chart.svg"
if ! command -v rsvg-convert >/dev/null; then
    apt-get install -y -qq --no-install-recommends librsvg2-bin >/dev/null 2>&1 ||
        { echo "skip: rsvg-convert (librsvg2-bin) cannot be installed"; exit 77; }
fi
rsvg-convert -o "$dir/chart.png" "$dir/chart.svg"
read -r w h < <(python3 -c "
import struct,sys
d=open('$dir/chart.png','rb').read(32)
assert d[:8]==b'\x89PNG\r\n\x1a\n', 'not a PNG'
print(*struct.unpack('>II', d[16:24]))")
size=$(stat -c %s "$dir/chart.png")
echo "rendered ${w}x${h}, $size bytes"
[ "$w" = 800 ] && [ "$h" = 700 ] || { echo "FAIL: expected 800x700, found ${w}x${h}"; exit 1; }
[ "$size" -gt 15000 ] || { echo "FAIL: PNG is $size bytes: the chart looks empty"; exit 1; }
grep -q '&lt;&amp;&gt; &quot;A&quot;' "$dir/chart.svg" || { echo "FAIL: legend text not escaped"; exit 1; }
echo PASS
