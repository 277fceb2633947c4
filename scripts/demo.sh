#!/usr/bin/env bash
# The main job: build, serve the slides in ../shared/testdata/wsi (or a
# generated slide when that folder is absent) and open the workstation on
# the first one; without a display, print the DeepZoom and IIIF URLs and
# save a rendered view to build/demo/view.png.
# usage: scripts/demo.sh [--port N] [SLIDE_OR_FOLDER...]
set -euo pipefail
cd "$(dirname "$0")/.."
port=8080
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then sed -n '2,7p' "$0"; exit 0; fi
if [ "${1:-}" = "--port" ]; then port=$2; shift 2; fi
bash scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)"
bin=build/release/core/consilium
view=build/release/viewer/consilium-view
paths=("$@")
if [ ${#paths[@]} -eq 0 ]; then
    if [ -d ../shared/testdata/wsi ]; then
        paths=(../shared/testdata/wsi)
    else
        echo "demo: ../shared/testdata/wsi not found; serving a generated 40000x30000 slide"
        paths=(synthetic:40000x30000)
    fi
fi
mkdir -p build/demo
rm -f build/demo/port
token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
"$bin" serve --port "$port" --port-file build/demo/port --token "$token" "${paths[@]}" \
    > build/demo/serve.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s build/demo/port ] && break; sleep 0.1; done
kill -0 $server 2>/dev/null || { cat build/demo/serve.log; exit 1; }
port=$(cat build/demo/port)
cat build/demo/serve.log | grep -v '^[0-9:.]* \[' || true
first=$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/slides" |
        /usr/bin/python3 -c 'import json,sys; s=[x for x in json.load(sys.stdin)["slides"] if x["status"]=="ok"]; print(s[0]["id"] if s else "")')
[ -n "$first" ] || { echo "demo: no readable slide"; exit 1; }
url="http://127.0.0.1:$port/slides/$first.dzi"
echo
echo "Open in the workstation:  $view --token $token $url"
echo "In a browser (OpenSeadragon): DZI  $url"
echo "                              IIIF http://127.0.0.1:$port/iiif/3/$first/info.json"
echo "(send 'Authorization: Bearer $token')"
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -x "$view" ]; then
    "$view" --token "$token" "$url"
else
    if [ -x "$view" ]; then
        SDL_VIDEODRIVER=dummy "$view" --token "$token" --overlays --screenshot build/demo/view.png \
            --size 1280x800 "$url" && echo "No display: a rendered view is in build/demo/view.png"
    fi
    if [ -t 0 ]; then
        echo "Serving until Ctrl-C."
        wait $server
    fi
fi
