"""Signature timestamps against a daemon whose clock is off, with faketime.

The daemon runs under `faketime -f OFFSET` while this client signs with the
real time, so the daemon sees each timestamp OFFSET seconds away from its
"now". With the default tolerance of 300 s, 299 s either way is accepted and
301 s either way is refused (401, recorded as unauthorized, nothing applied),
for both timestamped HMAC and Standard Webhooks. The delivery rows' received_at
shows the daemon's clock really was shifted.
"""
import base64
import calendar
import hashlib
import hmac
import json
import os
import shutil
import time

from netlib import Daemon, charge, check, check_eq, run_tests  # first: it finds harness
import harness  # noqa: E402

SW_KEY = b"standard-webhooks-timing-key-0123"
SW_SECRET = "whsec_" + base64.b64encode(SW_KEY).decode()


def under_faketime(offset, config, secret=harness.SECRET):
    """A Daemon whose clock runs @offset seconds from the real one."""
    check(shutil.which("faketime"), "faketime is not installed")
    saved = harness.WRAPPER
    harness.WRAPPER = ["faketime", "-f", f"{offset:+d}s"] + saved
    # An ASan build wants its runtime first; libfaketime is preloaded before it.
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {"ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0"}
    try:
        return Daemon(config, secret=secret, env=env)
    finally:
        harness.WRAPPER = saved


def fresh_second_timestamp():
    """The current second, taken just after it began: the daemon compares
    whole seconds, so a request that crosses into the next real second
    meets a skew one second smaller than the test means. Starting at the top
    of a second leaves the request most of a second to arrive."""
    while time.time() % 1 > 0.05:
        time.sleep(0.01)
    return int(time.time())


def hmac_post(d, c):
    raw = json.dumps(c).encode()
    ts = fresh_second_timestamp()
    sig = hmac.new(d.secret.encode(), str(ts).encode() + b"." + raw, hashlib.sha256).hexdigest()
    h = {"Content-Type": "application/json", "X-CashPay-Signature": sig,
         "X-CashPay-Timestamp": str(ts)}
    return d.request("POST", "/cashpay/webhook", raw, h)[0], ts


def sw_post(d, c):
    raw = json.dumps(c).encode()
    ts = fresh_second_timestamp()
    msg_id = "msg_" + c["id"]
    mac = hmac.new(SW_KEY, f"{msg_id}.{ts}.".encode() + raw, hashlib.sha256).digest()
    h = {"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
         "webhook-signature": "v1," + base64.b64encode(mac).decode()}
    return d.request("POST", "/cashpay/webhook", raw, h)[0], ts


def daemon_received_at(d):
    """The daemon's clock (epoch seconds) when it took the last delivery."""
    row = d.query("SELECT received_at FROM webhook_deliveries ORDER BY id DESC LIMIT 1")[0]
    stamp = row["received_at"]  # 2026-11-25T20:31:38.123Z
    return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + int(stamp[20:23]) / 1000


SCHEMES = {
    "hmac": ({"webhook.timestamp_header": "X-CashPay-Timestamp"}, harness.SECRET, hmac_post),
    "standard-webhooks": ({"webhook.verify": "standard-webhooks"}, SW_SECRET, sw_post),
}


def check_offset(offset, expected):
    for scheme, (config, secret, post) in SCHEMES.items():
        for attempt in range(1, 6):
            if check_one_sample(offset, expected, scheme, config, secret, post):
                break
            # Not a retry into passing: the sample did not put the timestamp
            # @offset seconds from the daemon's clock, so it tested nothing.
            print(f"  {scheme}: request crossed into the next second; sample {attempt} discarded")
        else:
            check(False, f"{scheme}: no sample arrived within its second in 5 tries")


def check_one_sample(offset, expected, scheme, config, secret, post):
    """False when the request reached the daemon in a later real second
    than its timestamp (then its skew was not @offset); else checks it."""
    with under_faketime(offset, dict(config, **{"log.level": "notice"}), secret) as d:
        status, ts = post(d, charge())
        received = daemon_received_at(d)
        skew = received - time.time()
        print(f"  {scheme:18s} daemon clock {skew:+7.1f}s: {status}")
        check(abs(skew - offset) < 5, f"{scheme}: faketime shifted the daemon by {skew:.1f}s")
        if int(received - offset) != ts:
            return False
        check_eq(status, expected, f"{scheme} at {offset:+d}s")
        row = d.query("SELECT outcome, http_status, error FROM webhook_deliveries")[0]
        orders = d.query("SELECT count(*) AS n FROM orders")[0]["n"]
        if expected == 200:
            check_eq((row["outcome"], orders), ("applied", 1), f"{scheme}: applied")
        else:
            check_eq((row["outcome"], row["http_status"], orders), ("unauthorized", 401, 0),
                     f"{scheme}: refused and recorded")
            check("tolerance" in (row["error"] or ""), f"{scheme}: error {row['error']!r}")
        return True


def test_301_seconds_behind_refused():
    check_offset(-301, 401)


def test_301_seconds_ahead_refused():
    check_offset(301, 401)


def test_299_seconds_behind_accepted():
    check_offset(-299, 200)


def test_299_seconds_ahead_accepted():
    check_offset(299, 200)


if __name__ == "__main__":
    run_tests([test_301_seconds_behind_refused, test_301_seconds_ahead_refused,
               test_299_seconds_behind_accepted, test_299_seconds_ahead_accepted])
