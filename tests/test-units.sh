#!/bin/sh
# Checks the systemd units as shipped, without systemd running as PID 1:
#  - systemd-analyze verify finds nothing to say about them (any warning,
#    even an "unknown key, ignoring", fails the test);
#  - the service's exposure score (systemd-analyze security --offline) is at
#    most 1.0, and lower still with the socket-activated drop-in;
#  - systemd-sysusers creates the cashpay user and group from our file.
#
# usage: test-units.sh SERVICE SOCKET ADMIN_SOCKET CHECKOUT_SOCKET SYSUSERS DROPIN DAEMON
# SERVICE is the configured unit from the build directory; DAEMON the built
# cashpayd, which ExecStart= is pointed at so that verify finds a binary.
set -eu

[ $# -eq 7 ] || { echo "usage: $0 SERVICE SOCKET ADMIN_SOCKET CHECKOUT_SOCKET SYSUSERS DROPIN DAEMON" >&2; exit 2; }
service=$1 socket=$2 admin_socket=$3 checkout_socket=$4 sysusers=$5 dropin=$6
# ExecStart= needs an absolute path; meson may pass a relative one.
daemon=$(cd "$(dirname "$7")" && pwd)/$(basename "$7")
max_exposure=1.0
failures=0

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
        echo "FAIL: $*" >&2
        failures=$((failures + 1))
}

# A unit directory holding our units, ExecStart= pointing at the built binary.
make_unit_dir() {
        mkdir -p "$1"
        sed "s|^ExecStart=[^ ]*/cashpayd |ExecStart=$daemon |" "$service" > "$1/cashpayd.service"
        cp "$socket" "$admin_socket" "$checkout_socket" "$1/"
}

check_configured() {
        if grep -q '@[A-Z_]*@' "$service"; then
                fail "unsubstituted placeholder in $service"
        fi
        if ! grep -q "^ExecStart=$daemon " "$tmp/plain/cashpayd.service"; then
                fail "ExecStart= not rewritten to the built binary"
        fi
}

# verify prints warnings but still exits 0 for many mistakes: demand silence.
check_verify() {
        dir=$1
        out=$(cd "$dir" && systemd-analyze verify --man=no \
                cashpayd.service cashpayd.socket cashpayd-admin.socket \
                cashpayd-checkout.socket 2>&1) || {
                fail "systemd-analyze verify failed in $dir:"
                echo "$out" >&2
                return
        }
        if [ -n "$out" ]; then
                fail "systemd-analyze verify has warnings for $dir:"
                echo "$out" >&2
                return
        fi
        echo "verify $(basename "$dir"): clean"
}

# Sets $figure to the overall exposure of the service in $1 (e.g. "1.0").
exposure() {
        out=$(systemd-analyze security --offline=true --threshold=10 \
                "$1/cashpayd.service" 2>&1) && rc=0 || rc=$?
        figure=$(printf '%s\n' "$out" |
                 sed -n 's/.*Overall exposure level for cashpayd\.service: \([0-9.]*\).*/\1/p')
        if [ -z "$figure" ]; then
                printf '%s\n' "$out" >&2
                fail "no exposure figure for $1"
                figure=10.0
        fi
        # --threshold=10 makes systemd-analyze itself fail above 1.0.
        if [ "$rc" -ne 0 ]; then
                printf '%s\n' "$out" | grep '✗' >&2 || true
                fail "systemd-analyze security exited $rc for $1 (exposure $figure)"
        fi
}

check_exposure() {
        exposure "$tmp/plain"
        plain=$figure
        exposure "$tmp/activated"
        activated=$figure
        echo "exposure cashpayd.service: $plain"
        echo "exposure cashpayd.service + cashpayd-socket-activated.conf: $activated"
        awk -v f="$plain" -v m="$max_exposure" 'BEGIN { exit !(f <= m) }' ||
                fail "exposure $plain above $max_exposure"
        awk -v a="$activated" -v p="$plain" 'BEGIN { exit !(a < p) }' ||
                fail "socket-activated exposure $activated not below $plain"
}

check_sysusers() {
        mkdir -p "$tmp/root/etc"
        # Read from stdin: a relative path would be taken inside --root.
        if ! systemd-sysusers --root="$tmp/root" - < "$sysusers" > /dev/null 2>&1; then
                fail "systemd-sysusers failed on $sysusers"
                return
        fi
        if ! grep -q '^cashpay:x:[0-9]*:[0-9]*:CashPay webhook receiver:/var/lib/cashpayd:' \
                "$tmp/root/etc/passwd"; then
                fail "no cashpay user created"
        elif ! grep -q '^cashpay:x:[0-9]*:' "$tmp/root/etc/group"; then
                fail "no cashpay group created"
        else
                echo "sysusers: cashpay user and group created"
        fi
}

make_unit_dir "$tmp/plain"
make_unit_dir "$tmp/activated"
mkdir -p "$tmp/activated/cashpayd.service.d"
cp "$dropin" "$tmp/activated/cashpayd.service.d/"

check_configured
check_verify "$tmp/plain"
check_verify "$tmp/activated"
check_exposure
check_sysusers

if [ "$failures" -ne 0 ]; then
        echo "$failures check(s) failed" >&2
        exit 1
fi
echo "test-units: all checks passed"
