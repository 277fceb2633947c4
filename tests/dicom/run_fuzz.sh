#!/bin/bash
# ctest fuzz.dicom: build cs_dicom + cs_base with clang's libFuzzer and ASan
# (the main build uses gcc), seed it with the DICOM corpus, run it for
# CS_FUZZ_SECONDS (60) and fail on any crash, leak or timeout.
# Skipped (exit 77) in the ASan preset: the dev preset already runs it.
set -euo pipefail
if [ "${CS_SANITIZE:-0}" = "1" ] || [ "${CS_SANITIZE:-0}" = "ON" ]; then
  echo "SKIP: the fuzz run is the dev preset's (CS_SANITIZE=1 here: it would run twice)"
  exit 77
fi
for t in clang clang++; do
  command -v $t >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
SRC=${CS_SRC:?}; DATA=${CS_TESTDATA:?}/dicom; OUT=${CS_WORK:-/tmp}/fuzz_dicom
SECONDS_TO_RUN=${CS_FUZZ_SECONDS:-60}
mkdir -p "$OUT/obj" "$OUT/corpus" "$OUT/seeds"
# libFuzzer's runtime is in libclang-rt-14-dev (only recommended by clang)
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char *, unsigned long) { return 0; }\n' \
  > "$OUT/probe.cc"
if ! clang++ -fsanitize=fuzzer,address "$OUT/probe.cc" -o "$OUT/probe" 2>"$OUT/probe.log"; then
  echo "SKIP: clang cannot link libFuzzer (install libclang-rt-14-dev): $(head -1 "$OUT/probe.log")"
  exit 77
fi
INC="-I$SRC/codecs/include -I$SRC/core/include -I$SRC/codecs/dicom -I/usr/include/openjpeg-2.5"
FLAGS="-g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -D_GNU_SOURCE"
objs=()
build() { # src lang
  local src=$1 o="$OUT/obj/$(basename "$1").o"
  if [ ! -e "$o" ] || [ "$src" -nt "$o" ] || [ "$SRC/codecs/dicom/dicom_internal.h" -nt "$o" ] \
     || [ "$SRC/codecs/include/cs/dicom.h" -nt "$o" ]; then
    if [ "$2" = c ]; then clang -std=c11 $FLAGS $INC -c "$src" -o "$o"
    else clang++ -std=c++17 $FLAGS $INC -c "$src" -o "$o"; fi
  fi
  objs+=("$o")
}
for f in "$SRC"/codecs/dicom/dicom_shim.cpp; do build "$f" cxx; done
for f in codec.c ljpeg.c jls.c render.c deid_profile.c; do build "$SRC/codecs/dicom/$f" c; done
for f in err.c log.c buf.c queue.c thread.c; do build "$SRC/core/base/$f" c; done
build "$SRC/tests/dicom/fuzz_dicom.c" c
clang++ -fsanitize=fuzzer,address,undefined "${objs[@]}" -o "$OUT/fuzz_dicom" \
  -ldcmjpeg -lijg8 -lijg12 -lijg16 -ldcmimgle -ldcmdata -loflog -lofstd \
  -lcharls -lopenjp2 -lturbojpeg -lz -lpthread -lm
cp -f "$DATA"/*.dcm "$OUT/seeds/"
echo "fuzzing for ${SECONDS_TO_RUN}s with $(ls "$OUT/seeds" | wc -l) seeds"
cd "$OUT"
# -max_len keeps mutations of the 2 MB seeds affordable; leaks are errors.
ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ./fuzz_dicom -max_total_time="$SECONDS_TO_RUN" -max_len=1048576 -timeout=30 \
  -rss_limit_mb=2560 -print_final_stats=1 corpus seeds 2>&1 | tail -40
exit "${PIPESTATUS[0]}"
