#!/bin/sh
# End to end under a real systemd: boot the host's own OS tree in a container
# (systemd-nspawn --volatile=yes: a throwaway root on tmpfs, the host's /usr
# read-only), with cashpayd installed by 'meson install' bound over
# /usr/local, and drive the installed units as an operator would: sysusers,
# LoadCredential=, Type=notify, STATUS=, the journal fields, reload, the
# database shared with a second user, a stuck writer tripping the watchdog
# and Restart=, socket activation with the PrivateNetwork= drop-in, and
# clean stops that leave the socket units listening.
#
# Usage (as root): scripts/nspawn-e2e.sh [BUILD_DIR]
# BUILD_DIR defaults to a fresh build in a temporary directory. Needs
# systemd-container (systemd-nspawn), util-linux (nsenter), python3 and
# sqlite3. Exit status: 0 when every check passed, 1 when one failed, 77 when
# this machine cannot boot a container (the reason is printed).
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
name=nspawn-e2e
. "$src/scripts/nspawn-boot.sh"
for tool in python3 sqlite3 meson; do
        command -v "$tool" >/dev/null || skip "$tool is not installed"
done

# ---------------------------------------------------------------- install
build=${1:-$work/build}
if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$src" --prefix=/usr/local --buildtype=debugoptimized >"$work/setup.log" \
                || die "meson setup failed (see $work/setup.log)"
fi
meson compile -C "$build" >"$work/compile.log" || die "build failed (see $work/compile.log)"
DESTDIR="$work/stage" meson install -C "$build" --no-rebuild >"$work/install.log" \
        || die "meson install failed"
stage=$work/stage/usr/local
[ -x "$stage/sbin/cashpayd" ] || die "meson install used another prefix than /usr/local"

# /etc/cashpayd as the operator writes it: the shipped example plus a few
# settings, and a secret file only root can read.
mkdir -p "$work/etc"
cp "$stage/etc/cashpayd/cashpayd.conf" "$work/etc/cashpayd.conf"
cat >>"$work/etc/cashpayd.conf" <<'EOF'

# nspawn-e2e: a stuck writer trips the watchdog after 2*500+1000+1000 ms.
[database]
busy_timeout = 500
commit_timeout = 1000
EOF
python3 -c 'import secrets; print(secrets.token_hex(32))' >"$work/etc/webhook.secret"
chmod 0600 "$work/etc/webhook.secret"
cp "$src/scripts/nspawn-e2e-inside.sh" "$work/inside.sh"
cp "$src/scripts/nspawn-checks.sh" "$work/checks.sh"

# ---------------------------------------------------------------- boot
# The container gets its own network namespace (loopback only) and a tmpfs
# root; nothing it does reaches the host's /etc or /var.
nspawn_boot --directory=/ --volatile=yes \
        --bind-ro="$stage:/usr/local" \
        --bind-ro="$work/etc/cashpayd.conf:/etc/cashpayd/cashpayd.conf" \
        --bind-ro="$work/etc/webhook.secret:/etc/cashpayd/webhook.secret" \
        --bind-ro="$work/inside.sh:/opt/e2e/inside.sh" \
        --bind-ro="$work/checks.sh:/opt/e2e/checks.sh"

# ---------------------------------------------------------------- checks
if inside /bin/sh /opt/e2e/inside.sh; then
        echo "nspawn-e2e: PASS"
else
        echo "nspawn-e2e: FAIL (boot log: $log; KEEP=1 keeps it)" >&2
        exit 1
fi
