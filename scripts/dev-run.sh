#!/usr/bin/env bash
# Build cashpayd and run it in the foreground on loopback with a development
# configuration and a database under ./dev/. Prints how to send it a signed
# test webhook. Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
[[ -f build/build.ninja ]] || meson setup build --buildtype=debugoptimized >/dev/null
meson compile -C build >/dev/null

dev=$PWD/dev
mkdir -p "$dev"
if [[ ! -s $dev/webhook.secret ]]; then
        (umask 077; openssl rand -hex 32 >"$dev/webhook.secret")
fi
cat >"$dev/cashpayd.conf" <<CONF
; Development configuration written by scripts/dev-run.sh.
[http]
listen = 127.0.0.1:8080

[admin]
listen = 127.0.0.1:9180

[webhook]
secret_file = $dev/webhook.secret

[database]
path = $dev/cashpay.db

[return]
shop_name = Development Shop

[log]
level = debug
CONF

secret=$(head -n 1 "$dev/webhook.secret")
cat <<MSG
cashpayd is starting on http://127.0.0.1:8080 (admin: http://127.0.0.1:9180/metrics)
database: $dev/cashpay.db

Send it a signed test webhook from another terminal:

  ./build/cashpayctl --config dev/cashpayd.conf send --status CAPTURED --amount 2000 --currency YER

or by hand with curl and openssl:

  body='{"id":"chg_test123","status":"CAPTURED","amount":2000,"currency":"YER","created":1672531200}'
  sig=\$(printf '%s' "\$body" | openssl dgst -sha256 -hmac '$secret' -r | cut -d' ' -f1)
  curl -sS http://127.0.0.1:8080/cashpay/webhook -H 'Content-Type: application/json' \\
       -H "X-CashPay-Signature: \$sig" --data-binary "\$body"

Then open http://127.0.0.1:8080/cashpay/return?charge_id=chg_test123
and look at the orders: ./build/cashpayctl --config dev/cashpayd.conf orders

MSG
exec ./build/cashpayd --config "$dev/cashpayd.conf"
