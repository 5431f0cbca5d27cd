#!/usr/bin/env bash
# Line and branch coverage of src/core reached by one fuzz target's corpus.
#
#   fuzz/coverage.sh TARGET [CORPUS_DIR]
#
# Builds build-fuzz-cov (the fuzz build plus clang's source-based coverage;
# BUILD_DIR overrides it), runs every input of the corpus once (default: the
# working corpus fuzz/out/TARGET/corpus that fuzz/run.sh grew, else the
# committed seeds) and prints llvm-cov's report for the core's files. The
# annotated source is written to fuzz/out/TARGET/coverage.txt.
set -euo pipefail

if (( $# < 1 || $# > 2 )); then
        echo "usage: $0 charge|verify|page|config|cidr|secrets [CORPUS_DIR]" >&2
        exit 2
fi
target=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD_DIR:-$root/build-fuzz-cov}
corpus=${2:-$root/fuzz/out/$target/corpus}
[[ -d "$corpus" ]] || corpus=$here/corpus/$target
out=$root/fuzz/out/$target
mkdir -p "$out"

tool() {
        command -v "$1-$(clang -dumpversion | cut -d. -f1)" || command -v "$1"
}
profdata=$(tool llvm-profdata) cov=$(tool llvm-cov)

if [[ ! -f "$build/build.ninja" ]]; then
        CC=clang meson setup "$build" "$root" -Dfuzz=true \
                -Db_sanitize=address,undefined -Db_lundef=false \
                -Dc_args="-fprofile-instr-generate -fcoverage-mapping" \
                -Dc_link_args="-fprofile-instr-generate" >"$out/coverage-setup.log"
fi
ninja -C "$build" "fuzz/fuzz-$target" >/dev/null

exe=$build/fuzz/fuzz-$target
raw=$out/coverage.profraw
rm -f "$raw"
# -runs=0: run the corpus once, mutate nothing
LLVM_PROFILE_FILE=$raw "$exe" -runs=0 -max_len=1048576 "$corpus" >"$out/coverage-run.log" 2>&1
"$profdata" merge -sparse "$raw" -o "$out/coverage.profdata"

# Only the code under test: not the harnesses, headers or jansson.
only_core=(-instr-profile="$out/coverage.profdata" -ignore-filename-regex='fuzz/(fuzz[-.]|jansson)|include/')
echo "fuzz-$target: $(find "$corpus" -type f | wc -l) inputs from $corpus"
"$cov" report "$exe" "${only_core[@]}" | grep -v -e '^Files which contain no functions' -e ' 0 .* 0 .*-$'
"$cov" show "$exe" "${only_core[@]}" >"$out/coverage.txt"
