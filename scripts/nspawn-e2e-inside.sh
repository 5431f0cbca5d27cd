#!/bin/sh
# The checks of nspawn-e2e.sh, run inside the booted container as root, the
# way an operator would: systemctl, journalctl, cashpayctl, curl, sqlite3.
# Prints one line per check; exits 1 if any failed.
set -u

conf=/etc/cashpayd/cashpayd.conf
db=/var/lib/cashpayd/cashpay.db
dropins=/run/systemd/system/cashpayd.service.d
. /opt/e2e/checks.sh
send() { # CHARGE_ID STATUS -> prints the outcome (or the HTTP status)
        cashpayctl --config "$conf" send --json --status "$2" --charge "$1" \
                --amount 2000 --currency YER 2>/dev/null |
                python3 -c 'import json,sys; r=json.load(sys.stdin); print((r.get("response") or {}).get("outcome") or r.get("http_status"))'
}
journal_has() { # UNIT TEXT [FIELD=VALUE...]
        unit=$1
        text=$2
        shift 2
        journalctl --sync 2>/dev/null
        journalctl -q -u "$unit" "$@" -o cat | grep -qF -- "$text"
}
status_has() { prop cashpayd.service StatusText | grep -qF -- "$1"; }
is_() { [ "$1" = "$2" ]; }
running() { is_ "$(prop cashpayd.service SubState)" running; }
# As another user, with its groups, without PAM (the container has no /etc/pam.d).
as_user() {
        user=$1
        shift
        setpriv --reuid="$(id -u "$user")" --regid="$(id -g "$user")" --init-groups --reset-env -- "$@"
}

echo "--- users, start, notify"
check "systemd-sysusers created user and group cashpay" getent passwd cashpay >/dev/null
check "Type=notify start succeeds (READY=1)" systemctl start cashpayd.service
check "active (running)" running
check "STATUS= shown by systemctl" eventually 3 status_has "deliveries 0, applied 0"
check "state directory 2770 cashpay:cashpay" \
        is_ "$(stat -c '%a %U:%G' /var/lib/cashpayd)" "2770 cashpay:cashpay"
check "database 0660 cashpay:cashpay" is_ "$(stat -c '%a %U:%G' "$db")" "660 cashpay:cashpay"
check "the secret arrives as a credential (\$CREDENTIALS_DIRECTORY)" \
        sh -c "tr '\\0' '\\n' </proc/$(prop cashpayd.service MainPID)/environ | grep -q '^CREDENTIALS_DIRECTORY='"

echo "--- a webhook, the journal"
check "signed webhook applied" is_ "$(send chg_e2e_one CAPTURED)" applied
check "journal entry found by CHARGE_ID=" eventually 3 journal_has cashpayd \
        "chg_e2e_one CAPTURED 2000 YER" CHARGE_ID=chg_e2e_one
check "journal fields OUTCOME= and DELIVERY_ID=" eventually 3 journal_has cashpayd \
        "applied" CHARGE_ID=chg_e2e_one OUTCOME=applied DELIVERY_ID=1
check "STATUS= counts it" eventually 3 status_has "deliveries 1, applied 1"
echo "    journalctl -u cashpayd CHARGE_ID=chg_e2e_one -o verbose (fields):"
journalctl -q -u cashpayd CHARGE_ID=chg_e2e_one -o verbose |
        grep -E '^ +(PRIORITY|SYSLOG_IDENTIFIER|CHARGE_ID|OUTCOME|DELIVERY_ID|REMOTE_ADDR|MESSAGE)=' |
        sed 's/^ */      /'

echo "--- reload"
check "systemctl reload" systemctl reload cashpayd.service
check "reload logged" eventually 5 journal_has cashpayd "configuration and secrets reloaded"
check "still running after the reload" running

echo "--- a new secret (LoadCredential= copies it when the service starts)"
# The container's /etc/cashpayd/webhook.secret is read-only: put the
# rotated file (old and new secret) over it, and sign with the new one only.
newsecret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
umask 077
{ cat /etc/cashpayd/webhook.secret; echo "$newsecret"; } >/run/e2e-rotated.secret
echo "$newsecret" >/run/e2e-new.secret
umask 022
mount --bind /run/e2e-rotated.secret /etc/cashpayd/webhook.secret
sed 's|^\[webhook\]$|[webhook]\nsecret_file = /run/e2e-new.secret|' "$conf" >/run/e2e-new.conf
send_new() {
        cashpayctl --config /run/e2e-new.conf send --json --status CAPTURED --charge "$1" \
                --amount 2000 --currency YER 2>/dev/null |
                python3 -c 'import json,sys; r=json.load(sys.stdin); print((r.get("response") or {}).get("outcome") or r.get("http_status"))'
}
systemctl reload cashpayd.service
sleep 0.5
echo "    after systemctl reload, the new secret gets: $(send_new chg_e2e_rot1)"
check "reload says the credential needs a restart" eventually 3 journal_has cashpayd \
        "copied when the service started"
check "systemctl restart" systemctl restart cashpayd.service
check "after a restart the new secret verifies" is_ "$(send_new chg_e2e_rot2)" applied
check "and the old one still does" is_ "$(send chg_e2e_rot3 CAPTURED)" applied

echo "--- the merchant's application in group cashpay"
useradd --system --no-create-home --groups cashpay merchant-app 2>/dev/null || true
check "the application reads orders" is_ \
        "$(as_user merchant-app sqlite3 "$db" "SELECT status FROM orders WHERE charge_id = 'chg_e2e_one'")" \
        CAPTURED
check "the application sets fulfilled_at" as_user merchant-app sqlite3 -bail -cmd ".timeout 5000" "$db" \
        "UPDATE orders SET fulfilled_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE charge_id = 'chg_e2e_one'"
check "fulfilled_at stored" is_ \
        "$(sqlite3 "$db" "SELECT fulfilled_at IS NOT NULL FROM orders WHERE charge_id = 'chg_e2e_one'")" 1
check "webhooks still applied afterwards" is_ "$(send chg_e2e_two CAPTURED)" applied
useradd --system --no-create-home outsider 2>/dev/null || true
check "a user outside the group cannot open it" is_ \
        "$(as_user outsider sqlite3 "$db" 'SELECT 1' 2>&1 | grep -c 'unable to open')" 1
echo "    exposure (systemd-analyze security, online):" \
        "$(systemd-analyze security cashpayd.service 2>/dev/null | sed -n 's/.*Overall exposure level for cashpayd.service: //p')"

echo "--- a stuck writer trips the watchdog, Restart= brings it back"
mkdir -p "$dropins"
cat >"$dropins/e2e-watchdog.conf" <<'EOF'
[Service]
WatchdogSec=2s
Environment=CASHPAYD_TEST_STALL_FILE=/var/lib/cashpayd/e2e-stall
EOF
systemctl daemon-reload
systemctl restart cashpayd.service
restarts=$(prop cashpayd.service NRestarts)
touch /var/lib/cashpayd/e2e-stall
check "a webhook stuck in the writer is answered 503" is_ "$(send chg_e2e_stuck CAPTURED)" 503
restarted() { [ "$(prop cashpayd.service NRestarts)" -gt "$restarts" ]; }
check "the watchdog fired and the service restarted" eventually 20 restarted
rm -f /var/lib/cashpayd/e2e-stall
check "journal says why" journal_has cashpayd "Watchdog timeout"
check "running again" eventually 10 running
check "webhooks applied after the restart" is_ "$(send chg_e2e_three CAPTURED)" applied
rm -f "$dropins/e2e-watchdog.conf"
systemctl daemon-reload

echo "--- clean stop"
check "systemctl stop" systemctl stop cashpayd.service 2>/dev/null
check "exit status 0, Result=success" \
        is_ "$(prop cashpayd.service ExecMainStatus) $(prop cashpayd.service Result)" "0 success"
check "drained and stopped cleanly" journal_has cashpayd "stopped cleanly"

echo "--- socket activation with PrivateNetwork=yes"
mkdir -p /etc/systemd/system/cashpayd.service.d
cp /usr/local/share/doc/cashpayd/examples/cashpayd-socket-activated.conf \
        /etc/systemd/system/cashpayd.service.d/socket-activated.conf
systemctl daemon-reload
check "both socket units listening" systemctl start cashpayd.socket cashpayd-admin.socket
check "service not started yet" is_ "$(prop cashpayd.service ActiveState)" inactive
check "the first webhook starts it and is applied" is_ "$(send chg_e2e_four CAPTURED)" applied
check "both listeners passed" journal_has cashpayd "1 public and 1 admin listener(s)"
check "/healthz on the admin socket" is_ \
        "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9180/healthz)" 200
pid=$(prop cashpayd.service MainPID)
check "the service has a network namespace of its own" \
        test "$(readlink "/proc/$pid/ns/net")" != "$(readlink /proc/1/ns/net)"
check "systemctl stop cashpayd.service" systemctl stop cashpayd.service 2>/dev/null
for unit in cashpayd.socket cashpayd-admin.socket; do
        check "$unit still listening after the stop" is_ "$(prop "$unit" SubState)" listening
done
check "the next webhook starts it again" is_ "$(send chg_e2e_five CAPTURED)" applied
check "stop service and sockets" systemctl stop cashpayd.service cashpayd.socket cashpayd-admin.socket
check "nothing failed" sh -c '! systemctl is-failed --quiet cashpayd.service cashpayd.socket cashpayd-admin.socket'
check "every applied webhook recorded" is_ "$(sqlite3 "$db" "SELECT count(*) FROM orders
        WHERE charge_id NOT IN ('chg_e2e_stuck', 'chg_e2e_rot1')")" 7

echo "--- $failures failed"
[ "$failures" = 0 ]
