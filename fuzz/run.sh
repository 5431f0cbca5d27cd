#!/usr/bin/env bash
# Build one fuzz target and run it for a while on a copy of its corpus.
#
#   fuzz/run.sh TARGET SECONDS      TARGET: charge, verify, page, config, cidr or secrets
#
# The build directory is build-fuzz (BUILD_DIR overrides it), set up with
# clang, ASan and UBSan on first use. The working corpus is
# fuzz/out/TARGET/corpus: the committed seeds are copied in and whatever the
# fuzzer finds new stays there, so a later run goes on where this one ended
# (FRESH=1 starts again from the seeds). Crashes land in
# fuzz/out/TARGET/artifacts. Extra libFuzzer flags can be given in
# FUZZ_FLAGS. Ends with executions, speed, coverage and findings.
set -euo pipefail

if (( $# != 2 )); then
        echo "usage: $0 charge|verify|page|config|cidr|secrets SECONDS" >&2
        exit 2
fi
target=$1 seconds=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD_DIR:-$root/build-fuzz}
[[ -d "$here/corpus/$target" ]] || { echo "unknown target: $target" >&2; exit 2; }

out=$root/fuzz/out/$target
[[ "${FRESH:-0}" == 1 ]] && rm -rf "$out"
mkdir -p "$out/corpus" "$out/artifacts"

build_log=$out/build.log
if [[ ! -f "$build/build.ninja" ]]; then
        CC=clang meson setup "$build" "$root" -Dfuzz=true \
                -Db_sanitize=address,undefined -Db_lundef=false >"$build_log" 2>&1 ||
                { cat "$build_log"; exit 1; }
fi
ninja -C "$build" "fuzz/fuzz-$target" >>"$build_log" 2>&1 || { cat "$build_log"; exit 1; }
cp -n "$here/corpus/$target"/* "$out/corpus/" 2>/dev/null || true

args=(-max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048
      -print_final_stats=1 -artifact_prefix="$out/artifacts/")
[[ -f "$here/dict/$target.dict" ]] && args+=(-dict="$here/dict/$target.dict")
# shellcheck disable=SC2206 # FUZZ_FLAGS is a list of flags
args+=(${FUZZ_FLAGS:-})

before=$(find "$out/artifacts" -type f | wc -l)
log=$out/last-run.log
echo "fuzz-$target: ${seconds}s on $(find "$out/corpus" -type f | wc -l) inputs; log in $log"
status=0
"$build/fuzz/fuzz-$target" "${args[@]}" "$out/corpus" >"$log" 2>&1 || status=$?

stat() { sed -n "s/^stat::$1: *//p" "$log"; }
done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
echo "executions:  $(stat number_of_executed_units)"
echo "exec/s:      $(stat average_exec_per_sec)"
echo "coverage:    $(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9A-Za-z]+' <<<"$done_line" ||
                     grep -E '^#[0-9]+' "$log" | tail -1)"
echo "peak RSS:    $(stat peak_rss_mb) MB"
new=$(( $(find "$out/artifacts" -type f | wc -l) - before ))
echo "findings:    $new new (exit $status)"
if (( status != 0 )); then
        grep -E 'ERROR: |SUMMARY: |check failed|runtime error' "$log" | head -5 || true
        grep -E '^artifact_prefix|Test unit written' "$log" || true
        exit 1
fi
