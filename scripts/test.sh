#!/usr/bin/env bash
# Build cashpayd twice — a -Werror build and an ASan+UBSan build — and run
# the whole test suite in both; then run the fuzzers briefly in a third
# (clang) build. Ends with one line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --test || exit 1

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

build() {
        local dir=$1; shift
        rm -rf "$dir"
        meson setup "$dir" -Dwerror=true "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; return 1; }
        rm -f "$dir.setup.log"
        meson compile -C "$dir" || return 1
}

status=0
build build-ci --buildtype=debugoptimized || status=1
if (( status == 0 )); then
        meson test -C build-ci --print-errorlogs --num-processes 2 || status=1
fi
build build-asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false || status=1
if [[ -d build-asan/meson-logs ]] && [[ -f build-asan/build.ninja ]]; then
        meson test -C build-asan --print-errorlogs --num-processes 2 --timeout-multiplier 3 || status=1
fi

# The libFuzzer targets (clang), each for a few seconds from its seeds; the
# long runs are by hand (fuzz/README.md).
CC=clang build build-fuzz-ci --buildtype=debugoptimized -Dfuzz=true \
        -Db_sanitize=address,undefined -Db_lundef=false || status=1
if [[ -f build-fuzz-ci/build.ninja ]]; then
        meson test -C build-fuzz-ci --suite fuzz --print-errorlogs --num-processes 2 || status=1
fi

python3 scripts/count-tests.py build-ci build-asan build-fuzz-ci
count=$?
(( status == 0 && count == 0 ))
