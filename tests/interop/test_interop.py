#!/usr/bin/python3
"""Standard Webhooks interoperability with the reference npm package.

Usage: test_interop.py NPM_PREFIX   ($CASHPAYCTL and $CASHPAYD name the programs)

Installs the npm package "standardwebhooks" into NPM_PREFIX (npm and the
registry must be reachable: without them this test fails, it never skips),
then checks both directions:
  (a) what `cashpayctl sign` prints verifies with the package;
  (b) what the package signs is accepted by a running cashpayd, and equals
      what cashpayctl computes for the same id and timestamp.
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402
from harness import check, check_eq  # noqa: E402

CTL = os.environ.get("CASHPAYCTL") or sys.exit("CASHPAYCTL is not set")
NODE_SCRIPT = os.path.join(HERE, "standardwebhooks.js")
PREFIX = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="sw-npm-")
WORK = tempfile.mkdtemp(prefix="cashpay-interop-")
KEY = bytes((7 * i + 3) % 256 for i in range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"an older secret, still accepted").decode()
CONFIG = os.path.join(WORK, "sw.conf")
BODIES = [
    json.dumps(harness.charge("chg_interop0001")).encode(),
    json.dumps(harness.charge("chg_interop0002", description="Montre \u00e9l\u00e9gante \u231a"),
               ensure_ascii=False).encode(),
    b'{"id":"chg_interop0003","status":"FAILED","amount":0,"currency":"USD","created":0}',
]


def node(*args, stdin):
    p = subprocess.run(["node", NODE_SCRIPT, PREFIX, *args], input=stdin, capture_output=True,
                       timeout=60)
    check_eq(p.returncode, 0, f"node {args[0]}: {p.stderr.decode()}")
    return json.loads(p.stdout)


def ctl_sign(body, *args):
    p = subprocess.run([CTL, "--config", CONFIG, "sign", *args], input=body,
                       capture_output=True, timeout=60)
    check_eq(p.returncode, 0, f"cashpayctl sign: {p.stderr.decode()}")
    return dict(line.split(": ", 1) for line in p.stdout.decode().splitlines())


def node_verify(body, headers):
    return node("verify", SECRET, stdin=json.dumps({"headers": headers,
                                                    "body": body.decode()}).encode())


def test_npm_install():
    npm = shutil.which("npm")
    check(npm is not None and shutil.which("node") is not None,
          "node and npm are required (packages nodejs, npm)")
    if os.path.isdir(os.path.join(PREFIX, "node_modules", "standardwebhooks")):
        return
    p = subprocess.run([npm, "install", "--prefix", PREFIX, "--no-audit", "--no-fund",
                        "standardwebhooks"], capture_output=True, timeout=300)
    check_eq(p.returncode, 0, f"npm install standardwebhooks: {p.stderr.decode()[-2000:]}")


def test_setup():
    with open(os.path.join(WORK, "sw.secret"), "w") as f:
        f.write(SECRET + "\n" + OLD_SECRET + "\n")
    with open(CONFIG, "w") as f:
        f.write("[webhook]\nverify = standard-webhooks\n"
                f"secret_file = {os.path.join(WORK, 'sw.secret')}\n")


def test_ctl_sign_verifies_with_package():
    for body in BODIES:
        headers = ctl_sign(body)
        check_eq(sorted(headers), ["webhook-id", "webhook-signature", "webhook-timestamp"],
                 "header names")
        check_eq(node_verify(body, headers), {"ok": True}, f"package verifies {body[:40]!r}")
        headers = ctl_sign(body, "--id", "msg_interop_fixed")
        check_eq(node_verify(body, headers), {"ok": True}, "with a chosen id")


def test_package_rejects_what_is_wrong():
    body = BODIES[0]
    headers = ctl_sign(body)
    check_eq(node_verify(body + b" ", headers)["ok"], False, "a changed body fails")
    bad = dict(headers, **{"webhook-id": headers["webhook-id"] + "x"})
    check_eq(node_verify(body, bad)["ok"], False, "a changed id fails")
    old = ctl_sign(body, "--timestamp", str(int(time.time()) - 3600))
    check_eq(node_verify(body, old)["ok"], False, "an hour-old timestamp fails")


def test_package_signature_equals_ctl():
    for body in BODIES:
        ts = str(int(time.time()))
        theirs = node("sign", SECRET, "msg_same", ts, stdin=body)
        ours = ctl_sign(body, "--id", "msg_same", "--timestamp", ts)
        check_eq(ours, theirs, "cashpayctl and the package compute the same headers")


def test_daemon_accepts_package_signatures():
    with harness.Daemon(extra_config={"webhook.verify": "standard-webhooks"},
                        secret=SECRET + "\n" + OLD_SECRET) as d:
        for body in BODIES:
            headers = node("sign", SECRET, "msg_" + json.loads(body)["id"],
                           str(int(time.time())), stdin=body)
            headers["Content-Type"] = "application/json"
            status, _, data = d.request("POST", "/cashpay/webhook", body, headers)
            check_eq((status, json.loads(data)), (200, {"outcome": "applied"}),
                     f"accepted {body[:40]!r}")
            status, _, data = d.request("POST", "/cashpay/webhook", body, headers)
            check_eq((status, json.loads(data)), (200, {"outcome": "duplicate"}),
                     "the same webhook-id again")
        # The rotated-out secret still verifies; a foreign one does not.
        body = json.dumps(harness.charge("chg_interop_old")).encode()
        headers = node("sign", OLD_SECRET, "msg_old", str(int(time.time())), stdin=body)
        headers["Content-Type"] = "application/json"
        status, _, _ = d.request("POST", "/cashpay/webhook", body, headers)
        check_eq(status, 200, "second secret of the file")
        foreign = "whsec_" + base64.b64encode(b"x" * 32).decode()
        headers = node("sign", foreign, "msg_foreign", str(int(time.time())), stdin=body)
        headers["Content-Type"] = "application/json"
        status, _, _ = d.request("POST", "/cashpay/webhook", body, headers)
        check_eq(status, 401, "a foreign secret")
        # And cashpayctl send under standard-webhooks.
        p = subprocess.run([CTL, "--config", d.config_path, "--json", "send", "--charge",
                            "chg_interop_send"], capture_output=True, timeout=60)
        check_eq(p.returncode, 0, f"send: {p.stdout!r} {p.stderr!r}")
        check_eq(json.loads(p.stdout)["response"], {"outcome": "applied"}, "send accepted")
        rows = d.query("SELECT message_id FROM webhook_deliveries WHERE charge_id = ?",
                       "chg_interop_send")
        check(rows and rows[0]["message_id"].startswith("msg_"), f"webhook-id stored: {rows}")


def main():
    try:
        harness.run_tests([
            test_npm_install,
            test_setup,
            test_ctl_sign_verifies_with_package,
            test_package_rejects_what_is_wrong,
            test_package_signature_equals_ctl,
            test_daemon_accepts_package_signatures,
        ])
    finally:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
