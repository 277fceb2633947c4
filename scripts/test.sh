#!/usr/bin/env bash
# Build everything and run every test: installs missing Debian packages,
# builds the dev preset (-Werror), runs ctest, then builds the asan preset
# (ASan + UBSan) and runs the suite again under the sanitizers.
# usage: scripts/test.sh [--quick]   (--quick: dev preset only)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1
[ "${1:-}" = "--help" ] && { sed -n '2,6p' "$0"; exit 0; }
bash scripts/deps.sh
jobs=$(nproc)
status=0
cmake --preset dev >/dev/null
cmake --build --preset dev -j"$jobs"
ctest --preset dev || status=1
if [ "$quick" = 0 ]; then
    cmake --preset asan >/dev/null
    cmake --build --preset asan -j"$jobs"
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1"
    export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    ctest --preset asan || status=1
fi
exit $status
