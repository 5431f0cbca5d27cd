#!/bin/sh
# The Debian package end to end: build it with dpkg-buildpackage from a copy
# of this source tree, check it with lintian (no error, no warning), build it
# again with a higher version that carries one more migration, and drive
# both in a fresh container (the host's OS tree booted by systemd-nspawn
# on an overlay: every write lands in a tmpfs) as an operator
# would: install, configure a secret, start, send a signed webhook, upgrade,
# remove, purge. The checks run in nspawn-package-inside.sh.
#
# Usage (as root): scripts/nspawn-package.sh
# Needs dpkg-dev, debhelper, lintian, the build dependencies in
# debian/control, systemd-container and python3. Exit status: 0 when every
# check passed, 1 when one failed, 77 when this machine cannot boot a
# container (the reason is printed).
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
name=nspawn-package
. "$src/scripts/nspawn-boot.sh"
for tool in dpkg-buildpackage dh lintian python3 git; do
        command -v "$tool" >/dev/null || skip "$tool is not installed"
done
started=$(date +%s)

# ---------------------------------------------------------------- build
# A copy of the tree: dpkg-buildpackage writes into debian/ and next to the
# source directory, neither of which a test may touch.
copy_tree() { # DEST
        mkdir -p "$1"
        if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
                git -C "$src" ls-files -z --cached --others --exclude-standard |
                        (cd "$src" && xargs -0 tar -cf - --no-recursion --) | tar -xf - -C "$1"
        else
                tar -C "$src" -cf - --exclude='./build*' --exclude=./dev --exclude=./.git . |
                        tar -xf - -C "$1"
        fi
}
build_package() { # DIR: builds DIR/cashpayd into DIR/*.deb
        (cd "$1/cashpayd" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
                dpkg-buildpackage -us -uc -b >"$1/build.log" 2>&1) ||
                { tail -30 "$1/build.log" >&2; die "dpkg-buildpackage failed in $1"; }
}

copy_tree "$work/v1/cashpayd"
version=$(cd "$work/v1/cashpayd" && dpkg-parsechangelog -S Version)
upgrade=$version+e2e1

# The upgrade: the same tree with a changelog entry for a higher version and
# one migration more, so that the upgrade has a schema to migrate.
copy_tree "$work/v2/cashpayd"
python3 - "$work/v2/cashpayd" "$upgrade" <<'PY'
import pathlib, re, sys
root, version = pathlib.Path(sys.argv[1]), sys.argv[2]
mig = root / "migrations"
n = max(int(p.name[:4]) for p in mig.glob("[0-9][0-9][0-9][0-9]_*.sql")) + 1
name = f"{n:04d}_package_upgrade.sql"
(mig / name).write_text("CREATE TABLE package_upgrade (upgraded INTEGER NOT NULL) STRICT;\n")
build = mig / "meson.build"
text = build.read_text()
last = re.findall(r"'\d{4}_[^']*\.sql',", text)[-1]
build.write_text(text.replace(last, f"{last}\n        '{name}',"))
log = root / "debian/changelog"
entry = (f"cashpayd ({version}) unstable; urgency=medium\n\n"
         "  * Rebuilt by nspawn-package.sh with one more migration.\n\n"
         " -- cashpayd developers <cashpayd@packages.invalid>  "
         "Thu, 01 Jan 2099 00:00:00 +0000\n\n")
log.write_text(entry + log.read_text())
PY
schema=$(ls "$work/v2/cashpayd/migrations" | grep -c '^[0-9]\{4\}_.*\.sql$')

build_package "$work/v1"
build_package "$work/v2"
mkdir -p "$work/debs"
cp "$work/v1/cashpayd_${version}_"*.deb "$work/debs/cashpayd-old.deb"
cp "$work/v2/cashpayd_${upgrade}_"*.deb "$work/debs/cashpayd-new.deb"
echo "$name: built $version and $upgrade in $(( $(date +%s) - started )) s"

# ---------------------------------------------------------------- lintian
# lintian (2.116) leaves two mldbm-elf-* databases in TMPDIR: give it one
# inside $work, which goes at exit.
mkdir -p "$work/lintian-tmp"
lintian_out=$(TMPDIR=$work/lintian-tmp lintian --fail-on error,warning "$work/v1/"*.changes 2>&1) ||
        { echo "$lintian_out" >&2; die "lintian reports an error or a warning"; }
echo "$name: lintian: $(echo "$lintian_out" | grep -c '^[EW]:') errors and warnings" \
        "($(echo "$lintian_out" | grep -c '^[IPXO]:') other tags)"

# ---------------------------------------------------------------- boot
# The host's tree, writable through an overlay (dpkg writes to /usr, /etc
# and /var). --tmpfs=/usr/local: a 'meson install' on the host would
# otherwise put its own units and binaries in front of the package's.
cp "$src/scripts/nspawn-package-inside.sh" "$work/inside.sh"
cp "$src/scripts/nspawn-checks.sh" "$work/checks.sh"
overlay_root
nspawn_boot --directory="$root" --tmpfs=/usr/local \
        --bind-ro="$work/debs:/opt/pkg" \
        --bind-ro="$work/inside.sh:/opt/e2e/inside.sh" \
        --bind-ro="$work/checks.sh:/opt/e2e/checks.sh"

# ---------------------------------------------------------------- checks
if inside /bin/sh /opt/e2e/inside.sh "$version" "$upgrade" "$schema"; then
        echo "$name: PASS in $(( $(date +%s) - started )) s"
else
        echo "$name: FAIL (boot log: $log; KEEP=1 keeps it)" >&2
        exit 1
fi
