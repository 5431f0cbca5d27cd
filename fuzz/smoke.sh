#!/usr/bin/env bash
# One fuzzer for a short time from its seeds, as a test (the meson "fuzz"
# suite): fails on any crash, leak, timeout or broken invariant, and then
# prints the input that did it. The seed directory is only read; what the run
# finds goes to a temporary directory that is removed afterwards.
#   fuzz/smoke.sh FUZZER SEED_DIR SECONDS
set -uo pipefail

if (( $# != 3 )); then
        echo "usage: $0 FUZZER SEED_DIR SECONDS" >&2
        exit 2
fi
exe=$1 seeds=$2 seconds=$3
name=$(basename "$seeds")
dict="$(dirname "$0")/dict/$name.dict"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/corpus" "$tmp/artifacts"

args=(-max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048
      -print_final_stats=1 -artifact_prefix="$tmp/artifacts/")
[[ -f "$dict" ]] && args+=(-dict="$dict")

"$exe" "${args[@]}" "$tmp/corpus" "$seeds" >"$tmp/log" 2>&1
status=$?

grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec)' "$tmp/log"
if (( status != 0 )) || compgen -G "$tmp/artifacts/*" >/dev/null; then
        echo "fuzz-$name: FAILED (exit $status)"
        tail -n 60 "$tmp/log"
        for f in "$tmp"/artifacts/*; do
                [[ -f "$f" ]] || continue
                echo "--- $(basename "$f") (base64; decode into a file and run: $exe FILE)"
                base64 -w 76 "$f"
        done
        exit 1
fi
echo "fuzz-$name: ok"
