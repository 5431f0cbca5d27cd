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
work=$(mktemp -d /tmp/cashpayd-e2e.XXXXXX)
machine=cashpayd-e2e-$$
nspawn_pid=
log=$work/boot.log

skip() { echo "nspawn-e2e: SKIP: $*" >&2; exit 77; }
die() { echo "nspawn-e2e: FAIL: $*" >&2; exit 1; }

cleanup() {
        if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
                kill -TERM "$nspawn_pid" 2>/dev/null || true
                for _ in $(seq 1 60); do
                        kill -0 "$nspawn_pid" 2>/dev/null || break
                        sleep 0.5
                done
                kill -KILL "$nspawn_pid" 2>/dev/null || true
        fi
        if [ "${KEEP:-0}" = 1 ]; then
                echo "nspawn-e2e: kept $work" >&2
        else
                rm -rf "$work"
        fi
}
trap cleanup EXIT INT TERM

[ "$(id -u)" = 0 ] || skip "needs root"
for tool in systemd-nspawn nsenter python3 sqlite3 meson; do
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

# ---------------------------------------------------------------- boot
# The container gets its own network namespace (loopback only) and a tmpfs
# root; nothing it does reaches the host's /etc or /var.
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn --quiet --register=no --keep-unit \
        --directory=/ --volatile=yes --private-network --machine="$machine" \
        --bind-ro="$stage:/usr/local" \
        --bind-ro="$work/etc/cashpayd.conf:/etc/cashpayd/cashpayd.conf" \
        --bind-ro="$work/etc/webhook.secret:/etc/cashpayd/webhook.secret" \
        --bind-ro="$work/inside.sh:/opt/e2e/inside.sh" \
        --boot systemd.unit=multi-user.target systemd.firstboot=0 \
        </dev/null >"$log" 2>&1 &
nspawn_pid=$!

# The container's PID 1 is the systemd child of systemd-nspawn.
leader=
for _ in $(seq 1 100); do
        kill -0 "$nspawn_pid" 2>/dev/null || break
        for pid in $(ps -o pid= --ppid "$nspawn_pid" 2>/dev/null); do
                [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ] && leader=$pid
        done
        [ -n "$leader" ] && break
        sleep 0.1
done
if [ -z "$leader" ]; then
        tail -20 "$log" >&2
        skip "systemd-nspawn could not boot a container here (log above)"
fi

inside() { nsenter --target "$leader" --all -- "$@"; }
state=
for _ in $(seq 1 120); do
        state=$(inside systemctl is-system-running 2>/dev/null || true)
        case $state in running|degraded) break ;; esac
        sleep 0.5
done
case $state in
running|degraded) ;;
*) tail -20 "$log" >&2; skip "the container's systemd did not finish booting ($state)" ;;
esac
echo "nspawn-e2e: container booted ($state), systemd $(inside systemctl --version | head -1 | cut -d' ' -f2)"

# ---------------------------------------------------------------- checks
if inside /bin/sh /opt/e2e/inside.sh; then
        echo "nspawn-e2e: PASS"
else
        echo "nspawn-e2e: FAIL (boot log: $log; KEEP=1 keeps it)" >&2
        exit 1
fi
