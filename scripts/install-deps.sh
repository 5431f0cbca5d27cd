#!/usr/bin/env bash
# Install what building, running and testing cashpayd needs, from Debian's
# packages. Does nothing when everything is already there.
#   scripts/install-deps.sh          build and run
#   scripts/install-deps.sh --test   also what the test suite uses
set -euo pipefail

packages=(
        gcc pkg-config meson ninja-build python3
        libmicrohttpd-dev libgnutls28-dev libjansson-dev libsqlite3-dev sqlite3 libsystemd-dev
        libinih-dev libssl-dev libcurl4-openssl-dev libpq-dev openssl curl
)
if [[ "${1:-}" == "--test" ]]; then
        packages+=(systemd systemd-container chromium clang libclang-rt-14-dev valgrind faketime fiu-utils
                   wrk bash-completion)
        # A PostgreSQL server the suite starts itself (initdb, pg_ctl, psql).
        packages+=(postgresql)
        # The fuzz build compiles jansson from its Debian source package.
        packages+=(cmake dpkg-dev)
        # The Debian package is built, checked and installed in a container.
        packages+=(build-essential debhelper lintian git)
        # Node.js (for the Standard Webhooks reference library) may come from
        # elsewhere; take Debian's only when there is none.
        command -v node >/dev/null || packages+=(nodejs)
        command -v npm >/dev/null || packages+=(npm)
fi

missing=()
for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
        echo "installing: ${missing[*]}"
        if [[ $(id -u) -ne 0 ]]; then
                echo "run as root (or install these packages yourself)" >&2
                exit 1
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
