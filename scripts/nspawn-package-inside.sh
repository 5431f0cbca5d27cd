#!/bin/sh
# The checks of nspawn-package.sh, run as root inside the booted container:
# the package installed, configured, upgraded, removed and purged with dpkg
# and systemctl, as an operator would. Prints one line per check; exits 1 if
# any failed.
#
# usage: nspawn-package-inside.sh VERSION UPGRADE_VERSION UPGRADE_SCHEMA
# The packages are /opt/pkg/cashpayd-old.deb (VERSION) and
# /opt/pkg/cashpayd-new.deb (UPGRADE_VERSION, whose schema version is
# UPGRADE_SCHEMA).
set -u

version=$1 upgrade=$2 schema=$3
conf=/etc/cashpayd/cashpayd.conf
ctl_conf=/run/pkg-ctl.conf
db=/var/lib/cashpayd/cashpay.db
. /opt/e2e/checks.sh
is_() { [ "$1" = "$2" ]; }
running() { is_ "$(prop cashpayd.service SubState)" running; }
not_failed() { ! systemctl is-failed --quiet cashpayd.service cashpayd.socket cashpayd-admin.socket; }
installed_version() { dpkg-query -W -f='${Status} ${Version}' cashpayd 2>/dev/null; }
sql() { sqlite3 -bail -cmd ".timeout 5000" "$db" "$1"; }
send() { # CHARGE_ID -> the outcome (or the HTTP status)
        cashpayctl --config "$ctl_conf" send --json --status CAPTURED --charge "$1" \
                --amount 2000 --currency YER 2>/dev/null |
                python3 -c 'import json,sys; r=json.load(sys.stdin); print((r.get("response") or {}).get("outcome") or r.get("http_status"))'
}
status_says() { systemctl status --no-pager cashpayd.service 2>&1 | grep -qF -- "$1"; }
dpkg_quiet() { DEBIAN_FRONTEND=noninteractive dpkg --force-confold "$@" >/run/pkg-dpkg.log 2>&1 ||
        { cat /run/pkg-dpkg.log; return 1; }; }

echo "--- a fresh machine (the container's tree is the host's, seen through an overlay)"
if dpkg-query -W cashpayd >/dev/null 2>&1; then dpkg --purge cashpayd >/dev/null 2>&1; fi
rm -rf /etc/cashpayd /var/lib/cashpayd
# A container image's "start no service" policy (policy-rc.d exiting 101)
# would keep the maintainer scripts from starting and stopping the service.
rm -f /usr/sbin/policy-rc.d
userdel cashpay 2>/dev/null || true
groupdel cashpay 2>/dev/null || true
check "no cashpay user before the install" sh -c '! getent passwd cashpay >/dev/null'

echo "--- install $version"
check "dpkg -i" dpkg_quiet -i /opt/pkg/cashpayd-old.deb
check "installed at $version" is_ "$(installed_version)" "install ok installed $version"
check "user and group cashpay created" sh -c 'getent passwd cashpay >/dev/null && getent group cashpay >/dev/null'
check "state directory from tmpfiles: 2770 cashpay:cashpay" \
        is_ "$(stat -c '%a %U:%G' /var/lib/cashpayd 2>&1)" "2770 cashpay:cashpay"
check "$conf is a conffile" sh -c "dpkg-query -W -f='\${Conffiles}' cashpayd | grep -q ' $conf '"
for f in /usr/sbin/cashpayd /usr/bin/cashpayctl /lib/systemd/system/cashpayd.service \
        /lib/systemd/system/cashpayd.socket /usr/lib/sysusers.d/cashpayd.conf \
        /usr/lib/tmpfiles.d/cashpayd.conf /usr/share/man/man8/cashpayd.8.gz \
        /usr/share/man/man5/cashpayd.conf.5.gz /usr/share/man/man1/cashpayctl.1.gz \
        /usr/share/bash-completion/completions/cashpayctl; do
        check "installed: $f" test -f "$f"
done
check "the service is enabled" is_ "$(systemctl is-enabled cashpayd.service)" enabled
check "the socket units are not" is_ "$(systemctl is-enabled cashpayd.socket cashpayd-admin.socket | sort -u)" disabled
check "without a secret it is not running" is_ "$(prop cashpayd.service ActiveState)" inactive
check "and not failed" not_failed
check "systemctl status names what to configure" \
        status_says "ConditionPathExists=/etc/cashpayd/webhook.secret was not met"
echo "    systemctl status cashpayd:"
systemctl status --no-pager cashpayd.service 2>&1 | sed -n '1,6s/^/      /p'

echo "--- configure a secret, start"
(umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' >/etc/cashpayd/webhook.secret)
sed 's|^\[webhook\]$|[webhook]\nsecret_file = /etc/cashpayd/webhook.secret|' "$conf" >"$ctl_conf"
check "systemctl start" systemctl start cashpayd.service
check "active (running)" running
check "signed webhook applied" is_ "$(send chg_pkg_one)" applied
check "the order is in the database" is_ "$(sql "SELECT status FROM orders WHERE charge_id = 'chg_pkg_one'")" CAPTURED
check "database owned by cashpay" is_ "$(stat -c '%U:%G' "$db")" cashpay:cashpay
echo "# edited by the operator" >>"$conf"
pid=$(prop cashpayd.service MainPID)

echo "--- upgrade to $upgrade"
check "dpkg -i the upgrade" dpkg_quiet -i /opt/pkg/cashpayd-new.deb
check "installed at $upgrade" is_ "$(installed_version)" "install ok installed $upgrade"
check "the service was restarted" eventually 10 sh -c "[ \"\$(systemctl show -P MainPID cashpayd.service)\" != $pid ] && [ \"\$(systemctl show -P SubState cashpayd.service)\" = running ]"
check "the database was migrated to schema $schema" is_ "$(sql 'PRAGMA user_version')" "$schema"
check "the new migration's table exists" is_ "$(sql 'SELECT count(*) FROM package_upgrade')" 0
check "the order survived the upgrade" is_ \
        "$(sql "SELECT status || ' ' || amount FROM orders WHERE charge_id = 'chg_pkg_one'")" "CAPTURED 2000"
check "the operator's edit of $conf survived" grep -qx "# edited by the operator" "$conf"
check "webhooks applied after the upgrade" is_ "$(send chg_pkg_two)" applied
check "nothing failed" not_failed

echo "--- remove"
check "dpkg --remove" dpkg_quiet --remove cashpayd
check "the service is stopped" is_ "$(prop cashpayd.service ActiveState)" inactive
check "the binaries are gone" sh -c '! test -e /usr/sbin/cashpayd && ! test -e /usr/bin/cashpayctl'
check "the database is kept" is_ "$(sql 'SELECT count(*) FROM orders')" 2
check "the configuration is kept" test -f "$conf"
check "the user is kept" sh -c 'getent passwd cashpay >/dev/null'

echo "--- purge"
check "dpkg --purge" dpkg_quiet --purge cashpayd
check "not installed any more" sh -c '! dpkg-query -W -f="\${Status}" cashpayd 2>/dev/null | grep -q installed'
check "/var/lib/cashpayd removed" sh -c '! test -e /var/lib/cashpayd'
check "/etc/cashpayd removed (with the secret)" sh -c '! test -e /etc/cashpayd'
check "no unit left behind" sh -c '! test -e /lib/systemd/system/cashpayd.service && ! test -e /etc/systemd/system/multi-user.target.wants/cashpayd.service'
check "no failed unit" sh -c '[ -z "$(systemctl list-units --failed --plain --no-legend "cashpayd*")" ]'

echo "--- $failures failed"
[ "$failures" = 0 ]
