#!/usr/bin/env bash
# Build cashpayd and run it in the foreground on loopback with a development
# configuration and a database under ./dev/, with cashpay-sim, a stand-in
# CashPay, beside it. Prints how to create a charge, pay it in a browser and
# see the order arrive, and how to send a signed test webhook by hand. Stop
# both with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
[[ -f build/build.ninja ]] || meson setup build --buildtype=debugoptimized >/dev/null
meson compile -C build >/dev/null

dev=$PWD/dev
sim_url=http://127.0.0.1:8090
mkdir -p "$dev"
# The webhook secret both sides share, and the simulator's API credentials.
for f in webhook.secret api.token client.secret; do
        if [[ ! -s $dev/$f ]]; then
                (umask 077; openssl rand -hex 32 >"$dev/$f")
        fi
done
cat >"$dev/cashpayd.conf" <<CONF
; Development configuration written by scripts/dev-run.sh.
[http]
listen = 127.0.0.1:8080

[admin]
listen = 127.0.0.1:9180

[webhook]
secret_file = $dev/webhook.secret
; none here so that the hand-made test webhooks printed below (for charges
; cashpay-sim never made) are taken as signed; remove it (auto, which means
; api with api_url set) to have every webhook confirmed with cashpay-sim.
confirm = none

[database]
path = $dev/cashpay.db

[return]
shop_name = Development Shop

; The CashPay API is cashpay-sim's (OAuth2 client credentials): the daemon
; fetches stale INITIATED orders and the return page's charge from it, and
; cashpayctl api check, sync and reconcile use it.
[cashpay]
api_url = $sim_url/v1
public_url = http://127.0.0.1:8080
token_url = $sim_url/oauth/token
client_id = dev-shop
client_secret_file = $dev/client.secret

; The shop's server asks cashpayd for charges here (POST /charges); on
; loopback, so no token_file.
[checkout]
listen = 127.0.0.1:9181

[log]
level = debug
CONF

# cashpay-sim signs its webhooks with the daemon's secret the way
# verify = hmac (the default) checks them, so what it sends is accepted.
sim_pid=
stop_sim() {
        [[ -n $sim_pid ]] || return 0
        kill -TERM "$sim_pid" 2>/dev/null || true
        wait "$sim_pid" 2>/dev/null || true
}
trap stop_sim EXIT
rm -f "$dev/cashpay-sim.out"  # a listening line left by the last run is not this one's
src/sim/cashpay-sim --listen "${sim_url#http://}" --secret-file "$dev/webhook.secret" \
        --client-id dev-shop --client-secret-file "$dev/client.secret" \
        --static-token-file "$dev/api.token" >"$dev/cashpay-sim.out" &
sim_pid=$!
for ((i = 0; i < 100; i++)); do
        grep -q "listening on" "$dev/cashpay-sim.out" 2>/dev/null && break
        kill -0 "$sim_pid" 2>/dev/null || { echo "cashpay-sim did not start" >&2; exit 1; }
        sleep 0.1
done
grep -q "listening on" "$dev/cashpay-sim.out" || { echo "cashpay-sim did not start" >&2; exit 1; }

secret=$(head -n 1 "$dev/webhook.secret")
cat <<MSG
cashpayd is starting on http://127.0.0.1:8080 (admin: http://127.0.0.1:9180/metrics,
checkout listener: http://127.0.0.1:9181/charges)
database: $dev/cashpay.db
cashpay-sim, a stand-in CashPay, is on $sim_url (its webhooks are logged below)

Walk through CashPay's guide from another terminal:

 1. Create a charge for order 42, as the shop's server does: cashpayd's
    checkout listener asks CashPay and records the order; this prints the
    transaction_url to send the customer to (run it twice: the same charge):

  curl -sS http://127.0.0.1:9181/charges -H 'Content-Type: application/json' \\
       -d '{"order_ref":"42","amount":2000,"currency":"YER","description":"Purchase of a watch"}' |
       python3 -c 'import json, sys; print(json.load(sys.stdin)["transaction_url"])'

    or from the command line, the same way:

  ./build/cashpayctl --config dev/cashpayd.conf charge create --order-ref 43 \\
       --amount 2000 --currency YER --description "Purchase of a watch"

 2. Open that URL in a browser and press Pay. CashPay sends your browser to
    the return page and cashpayd the signed webhook at the same time: the
    page says "Processing your payment" until the webhook has landed, then
    (it reloads itself) "Payment received".

 3. See the order: ./build/cashpayctl --config dev/cashpayd.conf orders

cashpayctl talks to the same CashPay API:

  ./build/cashpayctl --config dev/cashpayd.conf api check

Lose a webhook and see the payment recovered from the API: tell CashPay to
drop webhooks (cashpay-sim --help lists every switch), then create and pay a
charge as above. The return page asks the API, so it still says "Payment
received"; without a browser, cashpayd fetches the stale order itself after
[cashpay] reconcile_after (300 s), or fetch it now:

  curl -sS $sim_url/_sim/config -d '{"webhook_drop":true}'
  curl -sS -X POST $sim_url/_sim/charges/CHARGE_ID/pay
  ./build/cashpayctl --config dev/cashpayd.conf sync CHARGE_ID

Or send cashpayd a signed test webhook yourself:

  ./build/cashpayctl --config dev/cashpayd.conf send --status CAPTURED --amount 2000 --currency YER

or by hand with curl and openssl:

  body='{"id":"chg_test123","status":"CAPTURED","amount":2000,"currency":"YER","created":1672531200}'
  sig=\$(printf '%s' "\$body" | openssl dgst -sha256 -hmac '$secret' -r | cut -d' ' -f1)
  curl -sS http://127.0.0.1:8080/cashpay/webhook -H 'Content-Type: application/json' \\
       -H "X-CashPay-Signature: \$sig" --data-binary "\$body"

Then open http://127.0.0.1:8080/cashpay/return?charge_id=chg_test123

MSG
./build/cashpayd --config "$dev/cashpayd.conf"
