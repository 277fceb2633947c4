#!/usr/bin/env bash
# Build everything and run every test: installs missing Debian packages,
# builds the dev preset (-Werror), runs ctest, then builds the asan preset
# (ASan + UBSan) and runs the suite again under the sanitizers, then the
# media threads' test under ThreadSanitizer (tsan preset).
# usage: scripts/test.sh [--quick]   (--quick: dev preset only)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1
[ "${1:-}" = "--help" ] && { sed -n '2,6p' "$0"; exit 0; }
bash scripts/deps.sh
jobs=$(nproc)
status=0

# After a red run, repeat the lines that say why each test failed, so they
# are at the end of a long log (assertions, sanitizer reports, tracebacks).
digest() {
    local dir=$1 t
    [ -s "$dir/Testing/Temporary/LastTestsFailed.log" ] || return 0
    echo "=== why the failed tests failed ($dir) ==="
    while IFS=: read -r _ t; do
        echo "--- $t"
        awk -v t="$t" '$0 ~ "^[0-9]+/[0-9]+ Testing: " t "$" {on=1} on && /^"[^"]*" end time/ {on=0} on' \
            "$dir/Testing/Temporary/LastTest.log" |
            grep -E 'FAIL|ERROR|[Ee]rror|Assert|assert|Sanitizer|runtime error|Traceback|^E  |Exception|expected|!=' |
            grep -v -e '\[lua/' -e '\[C]: in' | tail -n 25 || true
    done <"$dir/Testing/Temporary/LastTestsFailed.log"
}
cmake --preset dev >/dev/null
cmake --build --preset dev -j"$jobs"
ctest --preset dev || { status=1; digest build/dev; }
if [ "$quick" = 0 ]; then
    cmake --preset asan >/dev/null
    cmake --build --preset asan -j"$jobs"
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1"
    export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    ctest --preset asan || { status=1; digest build/asan; }
    # ThreadSanitizer on the media threads (only unit.media is built)
    cmake --preset tsan >/dev/null
    cmake --build --preset tsan -j"$jobs"
    TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp:halt_on_error=0" \
        ctest --preset tsan || { status=1; digest build/tsan; }
fi
exit $status
