#!/usr/bin/env bash
# Build jansson with the fuzzers' instrumentation, as a static library.
#
#   fuzz/build-jansson.sh WORKDIR OUTDIR [CC]
#
# libFuzzer only sees coverage in code compiled with -fsanitize=fuzzer-no-link;
# linked against the system's libjansson the fuzzers would be blind inside the
# JSON parser, which is where most of a payload's bytes go. So the source of
# the very jansson version installed here (libjansson-dev) is fetched from the
# distribution's source packages and compiled with the same sanitizers.
#
# Writes OUTDIR/libjansson.a, OUTDIR/jansson.h and OUTDIR/jansson_config.h.
# WORKDIR keeps the downloaded source, so rebuilds work offline.
#
# The source package is fetched with apt-get through a private apt state in
# WORKDIR: "deb-src" twins of the machine's own "deb" entries, a private
# package list and cache. Nothing under /etc/apt or /var/lib/apt is touched.
# Offline, point JANSSON_SOURCE_DIR at an unpacked jansson source tree (any
# tree with jansson's CMakeLists.txt) instead.
set -euo pipefail

if (( $# < 2 )); then
        echo "usage: $0 WORKDIR OUTDIR [CC]" >&2
        exit 2
fi
work=$(mkdir -p "$1" && cd "$1" && pwd)
out=$(mkdir -p "$2" && cd "$2" && pwd)
cc=${3:-clang}
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
flags+=" -fno-omit-frame-pointer -g -O1"

die() {
        echo "build-jansson: $*" >&2
        exit 1
}

# apt-get with every piece of state it writes kept under $work/apt.
private_apt() {
        apt-get -q \
                -o Dir::Etc::SourceList="$work/apt/sources.list" \
                -o Dir::Etc::SourceParts=/dev/null \
                -o Dir::State::Lists="$work/apt/lists" \
                -o Dir::Cache="$work/apt/cache" \
                -o APT::Sandbox::User=root \
                "$@"
}

# One "deb-src" line for each repository the machine installs packages from.
write_sources() {
        mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial"
        # --no-release-info: from the configuration, even before any apt-get update
        apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' \
                'Created-By: Packages' | sort -u |
                while read -r uri release component; do
                        [[ -n "$uri" ]] && echo "deb-src $uri $release $component"
                done >"$work/apt/sources.list"
        [[ -s "$work/apt/sources.list" ]] || die "apt knows no package repository"
}

# dpkg-source when dpkg-dev is installed, else the same steps by hand.
unpack() {
        local dsc=$1 dest=$2
        if command -v dpkg-source >/dev/null; then
                dpkg-source --no-check -x "$dsc" "$dest" >/dev/null
                return
        fi
        mkdir -p "$dest"
        tar -xf "$(ls ./*.orig.tar.*)" -C "$dest" --strip-components=1
        tar -xf "$(ls ./*.debian.tar.*)" -C "$dest"
        if [[ -f "$dest/debian/patches/series" ]]; then
                grep -v '^\s*\(#\|$\)' "$dest/debian/patches/series" | while read -r p _; do
                        patch -d "$dest" -p1 -s <"$dest/debian/patches/$p"
                done
        fi
}

fetch_source() {
        local pkg version
        pkg=$(dpkg-query -W -f='${source:Package}' libjansson-dev 2>/dev/null) ||
                die "libjansson-dev is not installed (scripts/install-deps.sh)"
        version=$(dpkg-query -W -f='${source:Version}' libjansson-dev)
        echo "build-jansson: fetching source package $pkg $version" >&2
        write_sources
        private_apt update >"$work/apt-update.log" 2>&1 ||
                die "apt-get update failed (see $work/apt-update.log); offline? set JANSSON_SOURCE_DIR"
        rm -rf "$work/dl" && mkdir -p "$work/dl"
        (cd "$work/dl" && private_apt source --download-only "$pkg=$version") \
                >"$work/apt-source.log" 2>&1 ||
                die "apt-get source $pkg=$version failed (see $work/apt-source.log)"
        (cd "$work/dl" && unpack "$(ls ./*.dsc)" "$work/source.tmp")
        rm -rf "$work/source" && mv "$work/source.tmp" "$work/source"
        # 20 MB of package lists and the tarballs are no longer needed
        rm -rf "$work/apt/lists" "$work/dl" "$work"/*.orig.tar.*
        echo "$pkg $version" >"$work/source/.fetched-version"
}

src=${JANSSON_SOURCE_DIR:-}
if [[ -z "$src" ]]; then
        src=$work/source
        [[ -f "$src/CMakeLists.txt" && -f "$src/.fetched-version" ]] || fetch_source
fi
[[ -f "$src/CMakeLists.txt" ]] || die "$src is not a jansson source tree"
command -v cmake >/dev/null || die "cmake is needed to build jansson"

rm -rf "$work/build"
mkdir -p "$work/build"
(cd "$work/build" &&
        CC=$cc cmake "$src" -DCMAKE_BUILD_TYPE=None -DCMAKE_C_FLAGS="$flags" \
                -DJANSSON_BUILD_SHARED_LIBS=OFF -DJANSSON_BUILD_DOCS=OFF \
                -DJANSSON_EXAMPLES=OFF -DJANSSON_WITHOUT_TESTS=ON \
                -DJANSSON_COVERAGE=OFF &&
        cmake --build . -j"$(nproc)") >"$work/build.log" 2>&1 ||
        die "building jansson failed (see $work/build.log)"

cp "$work/build/lib/libjansson.a" "$out/libjansson.a"
cp "$work/build/include/jansson.h" "$work/build/include/jansson_config.h" "$out/"
echo "build-jansson: instrumented jansson from $src ($(grep -o '"[0-9.]*"' \
        "$out/jansson.h" | head -1)) in $out/libjansson.a" >&2
