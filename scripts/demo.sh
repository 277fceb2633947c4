#!/usr/bin/env bash
# The main job: build, serve the slides in ../shared/testdata/wsi (or a
# generated slide when that folder is absent) with the plugins of plugins/
# and a store in build/demo/consilium.db, and open the workstation on the
# first one; without a display, draw a ruler, a polygon and a rectangle
# through the workstation's script mode, print what the server stored
# (measured in µm, labelled by the annotations plugin) and save the view
# to build/demo/view.png.
# Teleradiology: the same node is a DICOM node (AE CONSILIUM, store
# build/demo/store); the demo sends CT, MR, CR and US studies from
# ../shared/testdata/dicom to it with `consilium dicom send`, lists them over
# DICOMweb (QIDO-RS) and, without a display, saves the reading view of the
# CT at the lung preset with a ruler to build/demo/reading.png.
# Live video: a microscope-like source (a slide region panned like a stage)
# is streamed over encrypted SRT and recorded (build/demo/recording); a
# receiver reports its capture-to-decoded latency, the recording is
# verified, and without a display the video view is saved to
# build/demo/video.png.
# usage: scripts/demo.sh [--port N] [SLIDE_OR_FOLDER...]
set -euo pipefail
cd "$(dirname "$0")/.."
port=8080
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then sed -n '2,20p' "$0"; exit 0; fi
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
"$bin" serve --port "$port" --port-file build/demo/port --token "$token" \
    --db build/demo/consilium.db --plugins plugins "${paths[@]}" \
    --store build/demo/store --aet CONSILIUM --dicom-port 0 \
    > build/demo/serve.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s build/demo/port ] && break; sleep 0.1; done
kill -0 $server 2>/dev/null || { cat build/demo/serve.log; exit 1; }
port=$(cat build/demo/port)
cat build/demo/serve.log | grep -v '^[0-9:.]* \[' || true
dport=$(sed -n 's/^dicom: .* on port \([0-9]*\),.*/\1/p' build/demo/serve.log)
first=$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/slides" |
        /usr/bin/python3 -c 'import json,sys; s=[x for x in json.load(sys.stdin)["slides"] if x["status"]=="ok"]; print(s[0]["id"] if s else "")')
[ -n "$first" ] || { echo "demo: no readable slide"; exit 1; }
url="http://127.0.0.1:$port/slides/$first.dzi"
echo
echo "Open in the workstation:  $view --token $token $url"
echo "In a browser (OpenSeadragon): DZI  $url"
echo "                              IIIF http://127.0.0.1:$port/iiif/3/$first/info.json"
echo "(send 'Authorization: Bearer $token')"
# Teleradiology: a modality sends studies; the radiologist reads them.
dicom_demo() {
    local dw="http://127.0.0.1:$port/dicomweb" data=../shared/testdata/dicom
    [ -d "$data" ] && [ -n "$dport" ] || { echo "demo: no DICOM test data or port"; return 0; }
    echo
    echo "DICOM node CONSILIUM@127.0.0.1:$dport: a modality sends studies (C-STORE)"
    "$bin" dicom send "CONSILIUM@127.0.0.1:$dport" --aet MODALITY \
        "$data/CT_small.dcm" "$data/MR2_J2KR.dcm" "$data/RG3_J2KR.dcm" "$data/US1_UNCR.dcm" \
        "$data/emri_small_jpeg_ls_lossless.dcm"
    echo "Studies (QIDO-RS GET $dw/studies):"
    curl -s -H "Authorization: Bearer $token" "$dw/studies" | /usr/bin/python3 -c '
import json, sys
v = lambda o, t: (o.get(t, {}).get("Value") or [""])[0]
for s in json.load(sys.stdin):
    name = v(s, "00100010")
    name = name.get("Alphabetic", "") if isinstance(name, dict) else name
    print("  %-8s %-22s %-10s %-3s series, %-3s images  %s" % (
        v(s, "00080020"), name, ",".join(s.get("00080061", {}).get("Value", [])),
        v(s, "00201206"), v(s, "00201208"), v(s, "0020000D")))'
    local ct
    ct=$(/usr/bin/python3 -c 'import pydicom,sys; print(pydicom.dcmread(sys.argv[1], stop_before_pixels=True).StudyInstanceUID)' "$data/CT_small.dcm")
    echo "Read them:  $view --token $token $dw"
    if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -x "$view" ]; then
        printf '%s\n' "preset lung" "ruler 80 300 430 300" "state" > build/demo/read.txt
        SDL_VIDEODRIVER=dummy "$view" --token "$token" --study "$ct" --overlays --size 512x512 \
            --script build/demo/read.txt --screenshot build/demo/reading.png "$dw" |
            sed 's/^/  /' && echo "No display: the reading view (CT, lung window, ruler) is in build/demo/reading.png"
    fi
}
dicom_demo

# Live video: the slide's region as a panned "microscope" source, one
# encode fanned out to the receivers, recorded and verified.
video_demo() {
    local slide img vport pass rec
    slide=$(ls ../shared/testdata/wsi/*.svs 2>/dev/null | head -1)
    img=build/demo/tissue.png
    rec=build/demo/recording
    if [ -n "$slide" ]; then
        /usr/bin/python3 -c 'import openslide,sys; s=openslide.OpenSlide(sys.argv[1]); w,h=s.dimensions
x,y=max(0,w//2-1600),max(0,h//2-1000); s.read_region((x,y),0,(min(w,3200),min(h,2000))).convert("RGB").save(sys.argv[2])' "$slide" "$img"
    else
        ffmpeg -v error -y -f lavfi -i "mandelbrot=size=3200x2000" -frames:v 1 "$img"
    fi
    vport=$(/usr/bin/python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    pass=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    rm -rf "$rec"
    echo
    echo "Live video: srt://127.0.0.1:$vport (1280x720, 2 Mbit/s, encrypted), recording to $rec"
    CS_SRT_PASSPHRASE=$pass "$bin" stream --source "pan:$img" --size 1280x720 --bitrate 2M \
        --out "srt://:$vport" --latency 20 --record "$rec" --segment 4 --duration 14 \
        > build/demo/stream.json 2> build/demo/stream.log &
    local sender=$!
    sleep 1
    echo "A receiver (consilium stream --source srt://127.0.0.1:$vport --passphrase ...):"
    CS_SRT_PASSPHRASE=$pass "$bin" stream --source "srt://127.0.0.1:$vport" --latency 20 \
        --duration 4 | tail -1 | /usr/bin/python3 -c '
import json, sys
s = json.loads(sys.stdin.read())
print("  %dx%d %s, %d frames, first frame after %d ms, capture-to-decoded p50 %.1f ms, p95 %.1f ms"
      % (s["width"], s["height"], s["codec"], s["frames"], s["first_frame_ms"],
         s["latency_ms"]["p50"], s["latency_ms"]["p95"]))'
    if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -x "$view" ]; then
        CS_SRT_PASSPHRASE=$pass SDL_VIDEODRIVER=dummy "$view" --video "srt://127.0.0.1:$vport" \
            --latency 20 --size 960x540 --screenshot build/demo/video.png >/dev/null &&
            echo "No display: the live video view (with its stats) is in build/demo/video.png"
    else
        echo "Watch it:  CS_SRT_PASSPHRASE=$pass $view --video srt://127.0.0.1:$vport --latency 20"
    fi
    wait $sender || true
    "$bin" recording verify "$rec" > /dev/null 2> build/demo/verify.log || true
    sed 's/^/  /' build/demo/verify.log
}
video_demo

if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -x "$view" ]; then
    "$view" --token "$token" "$url"
else
    api="http://127.0.0.1:$port/slides/$first/annotations"
    have=$(curl -s -H "Authorization: Bearer $token" "$api" |
           /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)["annotations"]))')
    script=build/demo/draw.txt
    : > "$script"
    if [ "$have" = 0 ]; then # draw once; later runs show what the store kept
        printf '%s\n' "tool line" "down 470 560" "move 600 590" "up 780 640" \
            "tool polygon" "click 700 250" "click 800 230" "click 860 380" "dblclick 720 420" \
            "tool rect" "down 420 160" "move 480 200" "up 560 300" "wait 1500" > "$script"
    fi
    if [ -x "$view" ]; then
        SDL_VIDEODRIVER=dummy "$view" --token "$token" --overlays --script "$script" \
            --screenshot build/demo/view.png --size 1280x800 "$url" &&
            echo "No display: a rendered view is in build/demo/view.png"
    fi
    echo
    echo "Annotations on $first (GET $api):"
    curl -s -H "Authorization: Bearer $token" "$api" | /usr/bin/python3 -c '
import json, sys
for a in json.load(sys.stdin)["annotations"]:
    m = a.get("measure", {})
    size = ("%.1f um" % m["length_um"]) if "length_um" in m else \
           ("%.0f um2" % m["area_um2"]) if "area_um2" in m else ""
    print("  %-10s %-14s %-12s by %-8s rev %d" % (a["type"], a["label"], size, a["author"], a["rev"]))'
    echo "Plugins (GET /plugins):"
    curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/plugins" |
        /usr/bin/python3 -c '
import json, sys
for p in json.load(sys.stdin):
    print("  %-12s %-8s %s, %d strikes, %.0f KiB" % (p["name"], p["version"], p["state"],
          p["strikes"], p["memory"] / 1024))'
    if [ -t 0 ]; then
        echo "Serving until Ctrl-C."
        wait $server
    fi
fi
