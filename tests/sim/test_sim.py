"""cashpay-sim over real HTTP on loopback: every endpoint and every switch.

Starts the simulator (path in $CASHPAY_SIM) on a free port, with a small
webhook receiver in this process to check what arrives and how it is
signed, and ends every process it started, also when a check fails.
"""
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import queue
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

SIM = os.environ.get("CASHPAY_SIM") or os.path.join(
    os.path.dirname(__file__), "..", "..", "src", "sim", "cashpay-sim")
CLIENT_ID = "shop-1"
CLIENT_SECRET = "client-secret-42"
STATIC_TOKEN = "static-token-abc"
HMAC_SECRET = "hmac-secret-0123456789"
SW_KEY = bytes(range(32))
SW_SECRET = "whsec_" + base64.b64encode(SW_KEY).decode()


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def check_eq(actual, expected, what):
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


class Receiver:
    """A webhook receiver: records each POST; answers from a script of
    status codes (then 200)."""

    def __init__(self):
        self.got = queue.Queue()
        self.script = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.got.put((time.monotonic(), self.path, dict(self.headers), body))
                status = outer.script.pop(0) if outer.script else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                page = b"<!doctype html><title>Shop</title><h1 id=landed>Back at the shop</h1>"
                if self.path == "/favicon.ico":  # a browser's, not a visit
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                outer.got.put((time.monotonic(), self.path, dict(self.headers), None))
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next(self, timeout=10):
        try:
            return self.got.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no webhook arrived") from None

    def nothing(self, wait=0.4):
        try:
            item = self.got.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected webhook {item[3]!r}")

    def drain(self):
        while not self.got.empty():
            self.got.get()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Sim:
    """One cashpay-sim process in its own process group."""

    def __init__(self, tmp, *flags):
        self.tmp = tmp
        args = [sys.executable, SIM, "--listen", "127.0.0.1:0",
                "--client-id", CLIENT_ID, "--client-secret-file", self.file("client", CLIENT_SECRET),
                "--static-token-file", self.file("static", STATIC_TOKEN)]
        self.proc = subprocess.Popen(args + list(flags), stdout=subprocess.PIPE,
                                     stderr=open(os.path.join(tmp, "sim.log"), "ab"),
                                     start_new_session=True)
        line = self.read_line(10)
        check(line.startswith("cashpay-sim listening on http://127.0.0.1:"), f"listening line {line!r}")
        self.port = int(line.rsplit(":", 1)[1])

    def file(self, name, content):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(content + "\n")
        return path

    def read_line(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                return self.proc.stdout.readline().decode().strip()
            if self.proc.poll() is not None:
                raise AssertionError(f"cashpay-sim exited with {self.proc.returncode}")
        raise AssertionError("cashpay-sim did not say it listens")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc.stdout.close()
        return self.proc.returncode

    def request(self, method, path, body=None, headers=None, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                headers = dict({"Content-Type": "application/json"}, **(headers or {}))
            conn.request(method, path, body=body, headers=headers or {})
            answer = conn.getresponse()
            return answer.status, dict(answer.getheaders()), answer.read()
        finally:
            conn.close()

    def json(self, method, path, body=None, headers=None):
        status, hdrs, raw = self.request(method, path, body, headers)
        return status, hdrs, json.loads(raw) if raw else None

    def control(self, path, body=None):
        status, _, obj = self.json("POST" if body is not None else "GET", "/_sim/" + path, body)
        check_eq(status, 200, f"control {path}")
        return obj

    def api(self, method, path, body=None, token=STATIC_TOKEN, headers=None):
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        return self.json(method, "/v1" + path, body, h)

    def create(self, post_url, key=None, **fields):
        body = {"amount": 2000, "currency": "YER", "description": "Purchase of a watch",
                "post_url": post_url, "redirect_url": "http://127.0.0.1:9/return?c={CHARGE_ID}"}
        body.update(fields)
        status, headers, obj = self.api("POST", "/charges", body,
                                        headers={"Idempotency-Key": key} if key else None)
        check_eq(status, 201, f"create {obj}")
        return obj

    def token(self, client_id=CLIENT_ID, secret=CLIENT_SECRET, body=b"grant_type=client_credentials",
              ctype="application/x-www-form-urlencoded", auth=True):
        headers = {"Content-Type": ctype}
        if auth:
            basic = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
        status, hdrs, raw = self.request("POST", "/oauth/token", body, headers)
        return status, hdrs, raw


def hmac_ok(secret, headers, body, algorithm="sha256", encoding="hex", ts_header=None):
    signed = body
    if ts_header:
        signed = headers[ts_header].encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, getattr(hashlib, algorithm)).digest()
    want = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    return hmac.compare_digest(headers.get("X-CashPay-Signature", ""), want)


# The tests. S is the main simulator (hmac, sha256, hex), R its receiver.

def test_help_documents_the_control_api():
    out = subprocess.run([sys.executable, SIM, "--help"], capture_output=True, text=True, timeout=20)
    check_eq(out.returncode, 0, "--help exit")
    for word in ("/_sim/config", "/_sim/charges/ID/pay", "--api-fault", "--webhook-reorder",
                 "--token-lifetime", "--static-token-file", "/oauth/token", "/_sim/stats"):
        check(word in out.stdout, f"--help mentions {word}")
    man_path = os.path.join(os.path.dirname(SIM), "..", "..", "docs", "cashpay-sim.1")
    with open(man_path) as f:
        man = f.read().replace("\\-", "-").replace("\\fB", "").replace("\\fR", "").replace("\\fI", "")
    flags = sorted(set(re.findall(r"(--[a-z][a-z0-9-]+)", out.stdout)))
    check(len(flags) > 30, f"--help lists the options ({len(flags)})")
    for flag in flags:
        check(flag in man, f"cashpay-sim(1) documents {flag}")
    for path in re.findall(r"(/_sim/[a-z/]+)", out.stdout):
        check(path.rstrip("/") in man, f"cashpay-sim(1) documents {path}")
    bad = subprocess.run([sys.executable, SIM, "--api-fault", "sometimes"], capture_output=True,
                         timeout=20)
    check_eq(bad.returncode, 2, "bad switch value is a usage error")
    nosecret = subprocess.run([sys.executable, SIM, "--verify", "hmac"], capture_output=True,
                              text=True, timeout=20)
    check_eq(nosecret.returncode, 1, "hmac without a secret file")
    check("--secret-file" in nosecret.stderr, "says what is missing")


def test_token_endpoint():
    status, headers, raw = S.token()
    check_eq(status, 200, "client credentials")
    answer = json.loads(raw)
    check_eq(sorted(answer), ["access_token", "expires_in", "token_type"], "token fields")
    check_eq((answer["token_type"], answer["expires_in"]), ("Bearer", 3300), "type and lifetime")
    check_eq(headers.get("Cache-Control"), "no-store", "no-store (RFC 6749 5.1)")
    check_eq(S.api("GET", "/charges/chg_nothere", token=answer["access_token"])[0], 404,
             "the issued token opens the API")
    status, headers, raw = S.token(secret="wrong")
    check_eq((status, json.loads(raw)["error"]), (401, "invalid_client"), "wrong secret")
    check("Basic" in headers.get("WWW-Authenticate", ""), "WWW-Authenticate on 401")
    check_eq(S.token(client_id="other")[0], 401, "wrong client id")
    check_eq(S.token(auth=False)[0], 401, "no client authentication")
    status, _, raw = S.token(body=b"grant_type=password")
    check_eq((status, json.loads(raw)["error"]), (400, "unsupported_grant_type"), "other grant")
    status, _, raw = S.token(body=b"scope=x")
    check_eq((status, json.loads(raw)["error"]), (400, "invalid_request"), "no grant_type")
    status, _, raw = S.token(body=b"grant_type=client_credentials&grant_type=client_credentials")
    check_eq((status, json.loads(raw)["error"]), (400, "invalid_request"), "grant_type twice")
    check_eq(S.token(ctype="application/json", body=b'{"grant_type":"client_credentials"}')[0], 400,
             "JSON body")
    check_eq(S.request("GET", "/oauth/token")[0], 405, "GET")
    stats = S.control("stats")
    check_eq((stats["token_requests"], stats["tokens_issued"]), (8, 1), "token counters")


def test_token_lifetime_and_early_expiry():
    S.control("config", {"token_lifetime": 2})
    token = json.loads(S.token()[2])
    check_eq(token["expires_in"], 2, "expires_in follows token_lifetime")
    check_eq(S.api("GET", "/charges/chg_x", token=token["access_token"])[0], 404, "fresh token")
    time.sleep(2.1)
    check_eq(S.api("GET", "/charges/chg_x", token=token["access_token"])[0], 401, "expired token")
    S.control("config", {"token_lifetime": 3300, "token_expires_in": False})
    token = json.loads(S.token()[2])
    check("expires_in" not in token, "token_expires_in=no leaves expires_in out")
    check_eq(S.control("tokens/expire", {})["expired"], 2, "tokens expired")
    check_eq(S.api("GET", "/charges/chg_x", token=token["access_token"])[0], 401, "expired early")
    check_eq(S.api("GET", "/charges/chg_x")[0], 404, "the static token stays valid")


def test_bearer_required():
    status, headers, obj = S.api("GET", "/charges/chg_x", token=None)
    check_eq((status, obj["error"]), (401, "invalid_token"), "no token")
    check("Bearer" in headers.get("WWW-Authenticate", ""), "WWW-Authenticate: Bearer")
    check_eq(S.api("GET", "/charges/chg_x", token="made-up")[0], 401, "unknown token")
    check_eq(S.json("GET", "/v1/charges/chg_x", headers={"Authorization": "Basic " + STATIC_TOKEN})[0],
             401, "another scheme")
    body = {"amount": 1, "currency": "YER", "post_url": R.url, "redirect_url": R.url}
    check_eq(S.api("POST", "/charges", body, token="made-up")[0], 401, "create without a good token")
    check_eq(len(S.control("charges")["charges"]), 0, "nothing created")


def test_create_and_fetch():
    charge = S.create(R.url, metadata={"order_id": "42"}, note="kept")
    check(charge["id"].startswith("chg_"), "id prefix")
    check_eq((charge["status"], charge["amount"], charge["currency"], charge["description"]),
             ("INITIATED", 2000, "YER", "Purchase of a watch"), "charge fields")
    check_eq(charge["transaction_url"], f"http://127.0.0.1:{S.port}/pay/{charge['id']}", "transaction_url")
    check(isinstance(charge["created"], int) and abs(charge["created"] - time.time()) < 60, "created")
    check_eq((charge["metadata"], charge["note"]), ({"order_id": "42"}, "kept"), "extra fields echoed")
    check("post_url" not in charge and "redirect_url" not in charge, "urls are not part of the charge")
    status, _, fetched = S.api("GET", "/charges/" + charge["id"])
    check_eq((status, fetched), (200, charge), "fetch")
    status, _, obj = S.api("GET", "/charges/chg_unknown")
    check_eq((status, obj["error"]), (404, "not_found"), "unknown charge")
    check_eq(S.api("GET", "/charges/not-a-charge-id")[0], 404, "malformed id")
    check_eq(S.api("PUT", "/charges/" + charge["id"])[0], 405, "PUT")
    internal = S.control("charges/" + charge["id"])
    check_eq(internal["redirect_url"], f"http://127.0.0.1:9/return?c={charge['id']}",
             "{CHARGE_ID} in redirect_url")


def test_create_validation():
    good = {"amount": 2000, "currency": "YER", "post_url": R.url, "redirect_url": R.url}
    bad = [({"amount": "2000"}, "amount"), ({"amount": 20.5}, "amount"), ({"amount": 0}, "amount"),
           ({"amount": True}, "amount"), ({"amount": 2**53}, "amount"), ({"currency": "yer"}, "currency"),
           ({"currency": "YERR"}, "currency"), ({"description": 5}, "description"),
           ({"description": "x" * 4097}, "description"), ({"post_url": "ftp://x/"}, "post_url"),
           ({"post_url": "http://127.0.0.1:99999/"}, "post_url"), ({"post_url": "http:///x"}, "post_url"),
           ({"redirect_url": "/relative"}, "redirect_url"), ({"status": "CAPTURED"}, "status"),
           ({"id": "chg_mine"}, "id"), ({"metadata": "x"}, "metadata")]
    for change, param in bad:
        status, _, obj = S.api("POST", "/charges", dict(good, **change))
        check_eq((status, obj["error"], obj["param"]), (422, "invalid_request", param), f"{change}")
    missing = dict(good)
    del missing["post_url"]
    check_eq(S.api("POST", "/charges", missing)[0], 422, "missing post_url")
    auth = {"Authorization": "Bearer " + STATIC_TOKEN}
    raw = [(b'{"amount":', "application/json", 400), (b'[1]', "application/json", 422),
           (b'{"amount":1,"amount":2}', "application/json", 400), (b'{"amount":NaN}', "application/json", 400),
           (json.dumps(good).encode(), "text/plain", 415),
           (b'{"a":"' + b"x" * 70000 + b'"}', "application/json", 413)]
    for body, ctype, want in raw:
        status, _, _ = S.request("POST", "/v1/charges", body, dict(auth, **{"Content-Type": ctype}))
        check_eq(status, want, f"body {body[:30]!r} as {ctype}")
    check_eq(len(S.control("charges")["charges"]), 0, "nothing created")
    status, _, obj = S.api("POST", "/charges", good, headers={"Idempotency-Key": "has space"})
    check_eq(status, 400, "bad Idempotency-Key")


def test_idempotency():
    a = S.create(R.url, key="order-42")
    status, headers, b = S.api("POST", "/charges", {"amount": 2000, "currency": "YER",
                               "description": "Purchase of a watch", "post_url": R.url,
                               "redirect_url": "http://127.0.0.1:9/return?c={CHARGE_ID}"},
                               headers={"Idempotency-Key": "order-42"})
    check_eq((status, b["id"]), (201, a["id"]), "same key, same body: same charge")
    check_eq(headers.get("Idempotent-Replayed"), "true", "replay marked")
    status, _, obj = S.api("POST", "/charges", {"amount": 2001, "currency": "YER", "post_url": R.url,
                           "redirect_url": R.url}, headers={"Idempotency-Key": "order-42"})
    check_eq((status, obj["error"]), (422, "idempotency_key_reused"), "same key, other body")
    c = S.create(R.url, key="order-43")
    check(c["id"] != a["id"], "another key, another charge")
    d = S.create(R.url)
    check(d["id"] not in (a["id"], c["id"]), "no key: a new charge")
    stats = S.control("stats")
    check_eq(stats["creates_by_idempotency_key"], {"order-42": 3, "order-43": 1}, "creates per key")
    check_eq((stats["charge_creates"], stats["charges_created"]), (5, 3), "create counters")


def test_payment_page_pay_and_signed_webhook():
    charge = S.create(R.url)
    status, headers, page = S.request("GET", f"/pay/{charge['id']}")
    check_eq(status, 200, "payment page")
    check(headers["Content-Type"].startswith("text/html"), "HTML")
    text = page.decode()
    for element in ("charge-id", "charge-amount", "charge-status", "pay-form", "pay-button",
                    "decline-form", "decline-button"):
        check(f'id="{element}"' in text, f"element {element}")
    check(charge["id"] in text and "Purchase of a watch" in text, "shows the charge")
    status, headers, _ = S.request("POST", f"/pay/{charge['id']}", b"action=pay",
                                   {"Content-Type": "application/x-www-form-urlencoded"})
    check_eq((status, headers["Location"]), (303, f"http://127.0.0.1:9/return?c={charge['id']}"),
             "redirect to redirect_url")
    _, path, hdrs, body = R.next()
    check_eq(path, "/hook", "post_url path")
    check_eq(hdrs["Content-Type"], "application/json", "webhook content type")
    check(hmac_ok(HMAC_SECRET, hdrs, body), "HMAC-SHA256 hex over the raw body")
    sent = json.loads(body)
    check_eq((sent["id"], sent["status"], sent["amount"]), (charge["id"], "CAPTURED", 2000), "webhook body")
    check_eq(S.api("GET", "/charges/" + charge["id"])[2]["status"], "CAPTURED", "API agrees")
    text = S.request("GET", f"/pay/{charge['id']}")[2].decode()
    check('id="return-link"' in text and 'id="pay-button"' not in text, "final page")
    status, headers, _ = S.request("POST", f"/pay/{charge['id']}", b"action=decline",
                                   {"Content-Type": "application/x-www-form-urlencoded"})
    check_eq(status, 303, "a final charge only redirects")
    R.nothing()
    check_eq(S.api("GET", "/charges/" + charge["id"])[2]["status"], "CAPTURED", "still CAPTURED")
    other = S.create(R.url)
    check_eq(S.request("POST", f"/pay/{other['id']}", b"action=steal")[0], 400, "bad action")
    S.request("POST", f"/pay/{other['id']}", b"action=decline")
    check_eq(json.loads(R.next()[3])["status"], "FAILED", "decline sends FAILED")
    check_eq(S.request("GET", "/pay/chg_unknown")[0], 404, "unknown payment page")
    check_eq(settled_webhooks(("sent", "acknowledged", "failed"), (2, 2, 0)), (2, 2, 0),
             "webhook counters")


def test_control_pay_decline_set_and_webhook():
    charge = S.create(R.url)
    obj = S.control(f"charges/{charge['id']}/pay", {})
    check_eq((obj["charge"]["status"], obj["changed"]), ("CAPTURED", True), "pay without a browser")
    check_eq(json.loads(R.next()[3])["status"], "CAPTURED", "its webhook")
    lost = S.create(R.url)
    S.control(f"charges/{lost['id']}/set", {"status": "CAPTURED"})
    R.nothing()
    check_eq(S.api("GET", "/charges/" + lost["id"])[2]["status"], "CAPTURED", "set without webhook")
    S.control(f"charges/{lost['id']}/set", {"amount": 1999, "currency": "USD"})
    check_eq(S.api("GET", "/charges/" + lost["id"])[2]["amount"], 1999, "amount changed")
    check_eq(S.json("POST", f"/_sim/charges/{lost['id']}/set", {"status": "PAID"})[0], 400, "bad set")
    S.control(f"charges/{lost['id']}/webhook", {"status": "INITIATED"})
    sent = json.loads(R.next()[3])
    check_eq((sent["id"], sent["status"]), (lost["id"], "INITIATED"), "claimed status sent")
    check_eq(S.api("GET", "/charges/" + lost["id"])[2]["status"], "CAPTURED", "charge unchanged")
    listed = S.control("charges")["charges"]
    check_eq(len(listed), 2, "list")
    check_eq(listed[0]["post_url"], R.url, "list shows post_url")
    check_eq(S.json("POST", "/_sim/charges/chg_none/pay", {})[0], 404, "unknown charge")
    check_eq(S.json("GET", "/_sim/nothing")[0], 404, "unknown control path")


def test_webhook_retries_with_backoff():
    S.control("config", {"webhook_backoff_ms": 50, "webhook_retries": 3})
    R.script = [500, 503]
    charge = S.create(R.url)
    S.control(f"charges/{charge['id']}/pay", {})
    times = [R.next()[0] for _ in range(3)]
    check(times[1] - times[0] >= 0.045 and times[2] - times[1] >= 0.095, f"backoff doubles {times}")
    R.nothing(0.3)
    log = [a for a in S.control("webhooks")["attempts"] if a["charge_id"] == charge["id"]]
    check_eq([(a["attempt"], a["code"]) for a in log], [(1, 500), (2, 503), (3, 200)], "attempt log")
    R.script = [500] * 10
    bounded = S.create(R.url)
    S.control(f"charges/{bounded['id']}/pay", {})
    for _ in range(4):
        R.next()
    R.nothing(0.6)
    R.script = []
    dead = S.create("http://127.0.0.1:1/closed")
    S.control("config", {"webhook_retries": 1})
    S.control(f"charges/{dead['id']}/pay", {})
    check_eq(settled_webhooks(("sent", "acknowledged", "failed", "given_up"), (9, 1, 8, 2)),
             (9, 1, 8, 2), "counters")
    errors = [a["error"] for a in S.control("webhooks")["attempts"] if a["charge_id"] == dead["id"]]
    check(len(errors) == 2 and "Connection" in errors[0], f"connection errors logged {errors}")


def test_webhook_drop_delay_duplicate_reorder():
    S.control("config", {"webhook_drop": True})
    a = S.create(R.url)
    S.control(f"charges/{a['id']}/pay", {})
    R.nothing()
    check_eq(S.control("stats")["webhooks"]["dropped"], 1, "dropped counted")
    S.control("config", {"webhook_drop": False, "webhook_delay_ms": 300})
    b = S.create(R.url)
    started = time.monotonic()
    S.control(f"charges/{b['id']}/pay", {})
    arrived = R.next()[0]
    check(arrived - started >= 0.3, f"delayed {arrived - started:.3f}s")
    S.control("config", {"webhook_delay_ms": 0, "webhook_duplicate": 2})
    c = S.create(R.url)
    S.control(f"charges/{c['id']}/pay", {})
    bodies = [R.next()[3] for _ in range(3)]
    check(len(set(bodies)) == 1 and json.loads(bodies[0])["id"] == c["id"], "three identical copies")
    R.nothing(0.3)
    S.control("config", {"webhook_duplicate": 0, "webhook_reorder": 2})
    d, e = S.create(R.url), S.create(R.url)
    S.control(f"charges/{d['id']}/pay", {})
    R.nothing(0.3)
    check_eq(S.control("stats")["webhooks"]["held"], 1, "held")
    S.control(f"charges/{e['id']}/decline", {})
    order = [json.loads(R.next()[3])["id"] for _ in range(2)]
    check_eq(order, [e["id"], d["id"]], "sent newest first")
    f = S.create(R.url)
    S.control(f"charges/{f['id']}/pay", {})
    R.nothing(0.3)
    check_eq(S.control("webhooks/release", {})["released"], 1, "release")
    check_eq(json.loads(R.next()[3])["id"], f["id"], "released webhook")
    g = S.create(R.url)
    S.control(f"charges/{g['id']}/pay", {})
    R.nothing(0.3)
    S.control("config", {"webhook_reorder": 0})
    check_eq(json.loads(R.next()[3])["id"], g["id"], "turning reorder off sends what it held")


def test_api_faults():
    charge = S.create(R.url)
    path = "/charges/" + charge["id"]
    for status in (400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504):
        S.control("config", {"api_fault": str(status)})
        got, headers, obj = S.api("GET", path)
        check(got == status and obj["error"], f"fault {status}: {got} {obj}")
        check_eq(headers.get("Retry-After"), "1" if status in (429, 503) else None, f"{status} Retry-After")
    S.control("config", {"api_fault": "401"})
    check("Bearer" in S.api("GET", path)[1].get("WWW-Authenticate", ""), "401 WWW-Authenticate")
    S.control("config", {"api_fault": "html"})
    status, headers, raw = S.request("GET", "/v1" + path, headers={"Authorization": "Bearer " + STATIC_TOKEN})
    check_eq((status, headers["Content-Type"].split(";")[0]), (200, "text/html"), "200 with HTML")
    S.control("config", {"api_fault": "huge"})
    status, _, raw = S.request("GET", "/v1" + path)
    check(status == 200 and len(raw) >= 3 * 1024 * 1024 and json.loads(raw)["id"] == charge["id"], "huge")
    S.control("config", {"api_fault": "redirect", "redirect_to": "http://127.0.0.2:9/x"})
    status, headers, _ = S.request("GET", "/v1" + path)
    check_eq((status, headers["Location"]), (302, "http://127.0.0.2:9/x"), "redirect elsewhere")
    S.control("config", {"api_fault": "close"})
    try:
        S.request("GET", "/v1" + path)
        raise AssertionError("close fault answered")
    except (http.client.RemoteDisconnected, ConnectionResetError):
        pass
    S.control("config", {"api_fault": "hang", "hang_ms": 300})
    started = time.monotonic()
    try:
        S.request("GET", "/v1" + path, timeout=5)
        raise AssertionError("hang fault answered")
    except (http.client.RemoteDisconnected, ConnectionResetError):
        pass
    check(0.28 <= time.monotonic() - started < 3, "hang held the request for hang_ms")
    S.control("config", {"api_fault": "none", "api_latency_ms": 200})
    started = time.monotonic()
    check_eq(S.api("GET", path)[0], 200, "slow but fine")
    check(time.monotonic() - started >= 0.2, "latency added")
    S.control("config", {"api_latency_ms": 0})


def test_api_fault_scope_count_and_after():
    charge = S.create(R.url)
    S.control("config", {"api_fault": "500", "api_fault_on": "create"})
    check_eq(S.api("GET", "/charges/" + charge["id"])[0], 200, "fetch unaffected")
    body = {"amount": 5, "currency": "YER", "post_url": R.url, "redirect_url": R.url}
    check_eq(S.api("POST", "/charges", body)[0], 500, "create fails")
    S.control("config", {"api_fault": "503", "api_fault_on": "all", "api_fault_count": 2})
    check_eq([S.api("GET", "/charges/" + charge["id"])[0] for _ in range(3)], [503, 503, 200],
             "a counted fault runs out")
    check_eq(S.control("config")["api_fault"], "none", "and clears itself")
    S.control("config", {"api_fault": "close", "api_fault_after": True, "api_fault_count": 1})
    try:
        S.api("POST", "/charges", body, headers={"Idempotency-Key": "lost-answer"})
        raise AssertionError("answer not lost")
    except (http.client.RemoteDisconnected, ConnectionResetError):
        pass
    created = [c for c in S.control("charges")["charges"] if c["idempotency_key"] == "lost-answer"]
    check_eq(len(created), 1, "the charge was created although the answer was lost")
    status, _, again = S.api("POST", "/charges", body, headers={"Idempotency-Key": "lost-answer"})
    check_eq((status, again["id"]), (201, created[0]["charge"]["id"]), "the retry gets the same charge")
    check_eq(S.control("stats")["charges_created"], 2, "one charge for that key")


def test_malformed_charges():
    charge = S.create(R.url)
    path = "/charges/" + charge["id"]
    broken = {"amount-string": lambda o: o["amount"] == "2000",
              "amount-fraction": lambda o: o["amount"] == 2000.5,
              "amount-negative": lambda o: o["amount"] == -1,
              "bad-id": lambda o: o["id"] == "ch_" + charge["id"][4:],
              "bad-status": lambda o: o["status"] == "PAID",
              "bad-currency": lambda o: o["currency"] == "yer",
              "missing-created": lambda o: "created" not in o,
              "wrong-id": lambda o: o["id"] != charge["id"] and o["id"].startswith("chg_"),
              "array": lambda o: isinstance(o, list)}
    for kind, broke in broken.items():
        S.control("config", {"api_fault": "malformed", "malformed": kind})
        status, _, obj = S.api("GET", path)
        check(status == 200 and broke(obj), f"malformed {kind}: {obj}")
        if kind not in ("bad-status", "array"):
            check_eq(obj["status"], "CAPTURED", f"{kind} claims CAPTURED")
    S.control("config", {"malformed": "duplicate-key"})
    raw = S.request("GET", "/v1" + path, headers={"Authorization": "Bearer " + STATIC_TOKEN})[2]
    check_eq(raw.count(b'"status"'), 2, "duplicate key")
    S.control("config", {"malformed": "truncated"})
    raw = S.request("GET", "/v1" + path, headers={"Authorization": "Bearer " + STATIC_TOKEN})[2]
    try:
        json.loads(raw)
        raise AssertionError("truncated JSON parses")
    except ValueError:
        pass
    S.control("config", {"api_fault": "malformed", "malformed": "amount-string", "api_fault_on": "create"})
    body = {"amount": 7, "currency": "YER", "post_url": R.url, "redirect_url": R.url}
    status, _, obj = S.api("POST", "/charges", body)
    check_eq((status, obj["amount"]), (201, "2000"), "a made-up malformed create answer")
    check_eq(len(S.control("charges")["charges"]), 1, "and no charge created")
    S.control("config", {"api_fault_after": True})
    status, _, obj = S.api("POST", "/charges", body)
    check_eq((status, obj["amount"], obj["status"]), (201, "7", "CAPTURED"), "the created charge, broken")
    check_eq(len(S.control("charges")["charges"]), 2, "created")


def test_token_faults():
    for fault, status in (("500", 500), ("503", 503), ("401", 401)):
        S.control("config", {"token_fault": fault})
        check_eq(S.token()[0], status, f"token fault {fault}")
    expect = {"html": lambda r: r.startswith(b"<!doctype html>"),
              "not-json": lambda r: not is_json(r),
              "no-access-token": lambda r: "access_token" not in json.loads(r),
              "wrong-token-type": lambda r: json.loads(r)["token_type"] != "Bearer",
              "bad-expires-in": lambda r: isinstance(json.loads(r)["expires_in"], str)}
    for fault, ok in expect.items():
        S.control("config", {"token_fault": fault})
        status, _, raw = S.token()
        check(status == 200 and ok(raw), f"token fault {fault}: {raw[:80]!r}")
    S.control("config", {"token_fault": "hang", "hang_ms": 200})
    try:
        S.token()
        raise AssertionError("token hang answered")
    except (http.client.RemoteDisconnected, ConnectionResetError):
        pass
    S.control("config", {"token_fault": "close", "token_fault_count": 1})
    try:
        S.token()
        raise AssertionError("token close answered")
    except (http.client.RemoteDisconnected, ConnectionResetError):
        pass
    check_eq(S.token()[0], 200, "counted token fault ran out")


def settled_webhooks(names, want, timeout=3):
    """The webhook counters @names once they equal @want, or as they are
    after @timeout (a receiver sees a webhook before its sender counts it)."""
    deadline = time.monotonic() + timeout
    while True:
        w = S.control("stats")["webhooks"]
        got = tuple(w[n] for n in names)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def read_all(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_many_connections_with_latency():
    """256 keep-alive connections at once with 100 ms of latency: every
    one is answered, in about the latency (timers, not a thread each)."""
    charge = S.create(R.url)
    S.control("config", {"api_latency_ms": 100})
    socks = [socket.create_connection(("127.0.0.1", S.port), timeout=10) for _ in range(256)]
    try:
        request = (f"GET /v1/charges/{charge['id']} HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {STATIC_TOKEN}\r\n\r\n").encode()
        started = time.monotonic()
        for s in socks:
            s.sendall(request)
        for s in socks:
            check(s.recv(65536).startswith(b"HTTP/1.1 200"), "answered")
        elapsed = time.monotonic() - started
        check(elapsed < 3, f"256 concurrent requests took {elapsed:.2f}s")
    finally:
        for s in socks:
            s.close()
    # create, config, the 256, and this stats request
    stats = S.control("stats")
    check_eq(stats["connections_accepted"], 259, "connections counted")
    check_eq((stats["api_inflight_max"], stats["api_inflight"]), (256, 0), "in flight at most, and now")


def is_json(raw):
    try:
        json.loads(raw)
        return True
    except ValueError:
        return False


def test_hang_released_by_switch():
    charge = S.create(R.url)
    S.control("config", {"api_fault": "hang", "hang_ms": 20000})
    result = {}

    def hang():
        started = time.monotonic()
        try:
            S.api("GET", "/charges/" + charge["id"])
        except (http.client.RemoteDisconnected, ConnectionResetError):
            result["closed_after"] = time.monotonic() - started
    t = threading.Thread(target=hang)
    t.start()
    time.sleep(0.3)
    S.control("config", {"api_fault": "none"})
    t.join(5)
    check(result.get("closed_after", 99) < 3, f"hanging request let go {result}")
    stats = S.control("stats")
    check_eq((stats["api_inflight"], stats["api_inflight_max"]), (0, 1), "the hung request is no longer in flight")


def test_switches_control_and_stats():
    cfg = S.control("config")
    check_eq(cfg["token_lifetime"], 3300, "start value")
    status, _, obj = S.json("POST", "/_sim/config", {"no_such_switch": 1})
    check_eq((status, obj["error"]), (400, "invalid_switch"), "unknown switch")
    check_eq(S.json("POST", "/_sim/config", {"api_fault": "sometimes"})[0], 400, "bad choice")
    check_eq(S.json("POST", "/_sim/config", {"webhook_delay_ms": -5, "api_latency_ms": 1})[0], 400,
             "negative integer")
    check_eq(S.control("config")["api_latency_ms"], 0, "a rejected change changes nothing")
    check_eq(S.json("POST", "/_sim/config", b"{nope", {"Content-Type": "application/json"})[0], 400,
             "bad JSON")
    S.control("stats/reset", {})
    charge = S.create(R.url)
    conn = http.client.HTTPConnection("127.0.0.1", S.port, timeout=5)
    for _ in range(20):
        conn.request("GET", "/v1/charges/" + charge["id"], headers={"Authorization": "Bearer " + STATIC_TOKEN})
        answer = conn.getresponse()
        answer.read()
        check_eq(answer.status, 200, "keep-alive fetch")
    conn.close()
    stats = S.control("stats")
    check_eq(stats["charge_fetches"], 20, "fetches")
    check_eq(stats["requests"]["GET /v1/charges/{id}"], {"200": 20}, "by endpoint and status")
    # create, the keep-alive connection, and this stats request: three connections.
    check_eq(stats["connections_accepted"], 3, "one connection for 20 keep-alive requests")
    S.control("config", {"api_fault": "500", "webhook_drop": True})
    S.control("reset", {})
    check_eq((S.control("config")["api_fault"], S.control("charges")["charges"]), ("none", []),
             "reset: start switches, no charges")


def test_hostile_requests():
    with socket.create_connection(("127.0.0.1", S.port), timeout=5) as s:
        s.sendall(b"GARBAGE\r\n\r\n")
        check(s.recv(100).startswith(b"HTTP/1.1 400"), "garbage answered 400")
    with socket.create_connection(("127.0.0.1", S.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n")
        check(s.recv(100).startswith(b"HTTP/1.1 431"), "too many headers")
    with socket.create_connection(("127.0.0.1", S.port), timeout=5) as s:
        s.sendall(b"POST /v1/charges HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        check(s.recv(100).startswith(b"HTTP/1.1 501"), "chunked body refused")
    with socket.create_connection(("127.0.0.1", S.port), timeout=5) as s:
        s.sendall(b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")
        check(s.recv(100).startswith(b"HTTP/1.1 400"), "bad Content-Length")
    with socket.create_connection(("127.0.0.1", S.port), timeout=5) as s:
        s.sendall(b"POST /v1/charges HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        s.shutdown(socket.SHUT_WR)
        check_eq(s.recv(100), b"", "a body cut short is closed without an answer")
    with socket.create_connection(("127.0.0.1", S.port), timeout=5) as s:
        get = b"GET /v1/charges/chg_x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + STATIC_TOKEN.encode()
        s.sendall(get + b"\r\n\r\n" + get + b"\r\nConnection: close\r\n\r\n")
        answers = read_all(s)
        check_eq(answers.count(b"HTTP/1.1 404 Not Found"), 2, "two pipelined requests answered in turn")
    with socket.create_connection(("127.0.0.1", S.port), timeout=5) as s:
        body = json.dumps({"amount": 5, "currency": "YER", "post_url": R.url, "redirect_url": R.url}).encode()
        s.sendall(b"POST /v1/charges HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + STATIC_TOKEN.encode() +
                  b"\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: " +
                  str(len(body)).encode() + b"\r\n\r\n")
        check(s.recv(100).startswith(b"HTTP/1.1 100 Continue"), "100 Continue")
        s.sendall(body)
        check(s.recv(100).startswith(b"HTTP/1.1 201"), "then the answer")
    with socket.create_connection(("127.0.0.1", S.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        check(s.recv(100).startswith(b"HTTP/1.1 400"), "two Content-Lengths")
    check_eq(S.request("GET", "/_sim/config")[0], 200, "still serving")
    check_eq(S.request("GET", "/nowhere")[0], 404, "unknown path")


def test_hmac_variants():
    receiver = Receiver()
    sim = Sim(TMP, "--secret-file", os.path.join(TMP, "hmac"), "--algorithm", "sha512",
              "--encoding", "base64", "--timestamp-header", "X-CashPay-Timestamp")
    try:
        charge = sim.create(receiver.url)
        sim.control(f"charges/{charge['id']}/pay", {})
        _, _, headers, body = receiver.next()
        ts = int(headers["X-CashPay-Timestamp"])
        check(abs(ts - time.time()) < 60, "timestamp is now")
        check(hmac_ok(HMAC_SECRET, headers, body, "sha512", "base64", "X-CashPay-Timestamp"),
              "HMAC-SHA512 base64 over TIMESTAMP.BODY")
        check(not hmac_ok(HMAC_SECRET, headers, body, "sha512", "base64"), "not over the body alone")
        sim.control("config", {"webhook_signature": "wrong"})
        sim.control(f"charges/{charge['id']}/webhook", {})
        _, _, headers, body = receiver.next()
        check(not hmac_ok(HMAC_SECRET, headers, body, "sha512", "base64", "X-CashPay-Timestamp"),
              "wrong signature")
        sim.control("config", {"webhook_signature": "missing"})
        sim.control(f"charges/{charge['id']}/webhook", {})
        check("X-CashPay-Signature" not in receiver.next()[2], "no signature")
    finally:
        check_eq(sim.stop(), 0, "SIGTERM exit")
        receiver.close()


def test_standard_webhooks_and_unsigned():
    receiver = Receiver()
    sim = Sim(TMP, "--verify", "standard-webhooks", "--secret-file", os.path.join(TMP, "whsec"))
    try:
        sim.control("config", {"webhook_duplicate": 1})
        charge = sim.create(receiver.url)
        sim.control(f"charges/{charge['id']}/pay", {})
        ids = set()
        for _ in range(2):
            _, _, headers, body = receiver.next()
            msg_id, ts = headers["webhook-id"], headers["webhook-timestamp"]
            signed = f"{msg_id}.{ts}.".encode() + body
            want = base64.b64encode(hmac.new(SW_KEY, signed, hashlib.sha256).digest()).decode()
            versions = dict(e.split(",", 1) for e in headers["webhook-signature"].split())
            check(hmac.compare_digest(versions["v1"], want), "v1 signature over id.timestamp.body")
            check(abs(int(ts) - time.time()) < 60, "timestamp")
            ids.add(msg_id)
        check_eq(len(ids), 1, "a duplicate keeps its webhook-id")
    finally:
        sim.stop()
        receiver.close()
    receiver = Receiver()
    sim = Sim(TMP, "--verify", "none", "--webhook-drop", "no", "--api-latency-ms", "1",
              "--client-id", "shop 1:ü", "--public-url", "https://pay.example.test/")
    try:
        check_eq(sim.control("config")["api_latency_ms"], 1, "switch set by flag")
        status, _, raw = sim.token(client_id="shop 1:ü")
        check_eq(status, 200, "a client id form-encoded before Basic (RFC 6749 2.3.1)")
        check_eq(sim.token(client_id="shop 1")[0], 401, "only that client id")
        check_eq(sim.create(receiver.url)["transaction_url"][:33], "https://pay.example.test/pay/chg_",
                 "--public-url is the base of transaction_url")
        charge = sim.create(receiver.url)
        sim.control(f"charges/{charge['id']}/pay", {})
        headers = receiver.next()[2]
        check(not any(h.lower().startswith(("webhook-", "x-cashpay")) for h in headers), "unsigned")
    finally:
        sim.stop()
        receiver.close()
    bad = subprocess.run([sys.executable, SIM, "--verify", "standard-webhooks", "--secret-file",
                          os.path.join(TMP, "hmac")], capture_output=True, text=True, timeout=20)
    check(bad.returncode == 1 and "whsec_" in bad.stderr, "a standard-webhooks secret needs whsec_")


def run(tests):
    failures = 0
    for test in tests:
        S.control("reset", {})
        R.script = []
        R.drain()
        started = time.monotonic()
        try:
            test()
            print(f"ok   {test.__name__} ({time.monotonic() - started:.2f}s)", flush=True)
        except Exception as e:
            failures += 1
            print(f"FAIL {test.__name__}: {e}", flush=True)
            import traceback
            traceback.print_exc()
    return failures


if __name__ == "__main__":
    TMP = tempfile.mkdtemp(prefix="cashpay-sim-test-")
    S = R = None
    failures = 1
    try:
        with open(os.path.join(TMP, "hmac"), "w") as f:
            f.write("# comment line\n\n  " + HMAC_SECRET + "  \nsecond-secret\n")
        with open(os.path.join(TMP, "whsec"), "w") as f:
            f.write(SW_SECRET + "\n")
        R = Receiver()
        S = Sim(TMP, "--secret-file", os.path.join(TMP, "hmac"))
        failures = run([v for k, v in list(globals().items()) if k.startswith("test_")])
    finally:
        if S:
            S.stop()
        if R:
            R.close()
        if failures:
            with open(os.path.join(TMP, "sim.log"), "rb") as f:
                sys.stderr.write(f.read().decode(errors="replace")[-4000:])
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(1 if failures else 0)
