#!/usr/bin/env bash
# Make a large pyramidal JPEG TIFF from the real CMU tissue crop, for tests
# and benches: 40960 x 30720 (the CMU crop tiled, so every tile has real
# tissue detail), 256 px JPEG tiles (q 85), levels at downsample 1, 4, 16,
# 64 (as Aperio scanners write them) so that DeepZoom levels 2x, 8x, 32x match
# no slide level and must be made. Sizes divide exactly, so OpenSlide's
# downsamples are exact powers of four.
# usage: scripts/make-big-slide.sh OUT.tiff [WIDTH HEIGHT]
set -euo pipefail
out=${1:?usage: make-big-slide.sh OUT.tiff [WIDTH HEIGHT]}
w=${2:-40960}
h=${3:-30720}
here=$(cd "$(dirname "$0")/.." && pwd)
src=${CS_TESTDATA:-$here/../shared/testdata}/wsi/CMU-1-Small-Region.svs
if [ -s "$out" ] && [ "$out" -nt "$0" ]; then
    echo "make-big-slide: $out is up to date"
    exit 0
fi
command -v vips >/dev/null || { echo "make-big-slide: needs vips (apt-get install libvips-tools)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Source: the CMU crop; fall back to a generated pattern when it is absent.
if [ -f "$src" ]; then
    vips copy "$src[level=0]" "$tmp/src.v"
    vips extract_band "$tmp/src.v" "$tmp/rgb.v" 0 --n 3
else
    vips xyz "$tmp/xy.v" 2048 2048
    vips math2_const "$tmp/xy.v" "$tmp/rgb.v" pow 1 --format uchar
fi
sw=$(vipsheader -f width "$tmp/rgb.v"); sh=$(vipsheader -f height "$tmp/rgb.v")
vips replicate "$tmp/rgb.v" "$tmp/big.v" $(( (w + sw - 1) / sw )) $(( (h + sh - 1) / sh ))
vips crop "$tmp/big.v" "$tmp/crop.v" 0 0 "$w" "$h"
echo "make-big-slide: writing $out (${w}x${h}) ..."
parts=()
cur="$tmp/crop.v"
for i in 0 1 2 3; do
    vips tiffsave "$cur" "$tmp/l$i.tif" --tile --tile-width 256 --tile-height 256 \
        --compression jpeg --Q 85 --bigtiff
    parts+=("$tmp/l$i.tif")
    vips shrink "$cur" "$tmp/s$i.v" 4 4
    cur="$tmp/s$i.v"
done
command -v tiffcp >/dev/null || { echo "make-big-slide: needs tiffcp (apt-get install libtiff-tools)" >&2; exit 1; }
# -c jpeg:r:85 keeps JPEG in RGB-free YCbCr at q 85; tiffcp re-encodes tiles
tiffcp -m 0 -8 -c jpeg:85 "${parts[@]}" "$out.part"
# OpenSlide's generic-tiff reader takes directories after the first only when
# they are marked reduced-resolution (NewSubfileType = 1); tiffcp drops that.
for d in 1 2 3; do tiffset -d "$d" -s 254 1 "$out.part"; done
mv "$out.part" "$out"
echo "make-big-slide: done"
