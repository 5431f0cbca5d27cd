#!/usr/bin/env python3
"""cashpayctl api check and sync against cashpay-sim over loopback.

Both token sources, every broken token answer and a hanging token endpoint,
API answers that break the charge rules (never recorded as truth), 200 with
HTML, a 3 MiB answer, a redirect, retries with backoff, one renewal and one
retry on a 401, coalescing of one charge asked for twice, keep-alive reuse,
and no token or secret in any output or in the database file.
"""
import http.client
import json
import os
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

SIM = os.environ["CASHPAY_SIM"]
CTL = os.environ["CASHPAYCTL"]
STATIC_TOKEN = "static_tok_Zx81mQ2"
CLIENT_ID = "shop"
CLIENT_SECRET = "client-secret-Hk39"
ISSUED = re.compile(rb"sim_[A-Za-z0-9_-]{20,}")


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def check_eq(actual, expected, what):
    check(actual == expected, f"{what}: got {actual!r}, want {expected!r}")


class Sim:
    """One cashpay-sim in its own process group."""

    def __init__(self, tmp):
        self.tmp = tmp
        args = [sys.executable, SIM, "--listen", "127.0.0.1:0", "--verify", "none",
                "--client-id", CLIENT_ID, "--client-secret-file", write(tmp, "client", CLIENT_SECRET),
                "--static-token-file", write(tmp, "static", STATIC_TOKEN)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=open(os.path.join(tmp, "sim.log"), "ab"),
                                     start_new_session=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        check(ready, "cashpay-sim did not start")
        line = self.proc.stdout.readline().decode().strip()
        check(line.startswith("cashpay-sim listening on http://127.0.0.1:"), line)
        self.port = int(line.rsplit(":", 1)[1])

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc.stdout.close()

    def call(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            h = dict(headers or {})
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                h["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=h)
            answer = conn.getresponse()
            raw = answer.read()
            return answer.status, json.loads(raw) if raw else None
        finally:
            conn.close()

    def control(self, path, body=None):
        status, obj = self.call("POST" if body is not None else "GET", "/_sim/" + path, body)
        check_eq(status, 200, f"control {path}")
        return obj

    def create(self, amount=2000):
        status, obj = self.call("POST", "/v1/charges",
                                {"amount": amount, "currency": "YER", "description": "a watch",
                                 "post_url": "http://127.0.0.1:9/hook",
                                 "redirect_url": "http://127.0.0.1:9/return"},
                                {"Authorization": "Bearer " + STATIC_TOKEN})
        check_eq(status, 201, f"create {obj}")
        return obj["id"]

    def stats(self):
        return self.control("stats")


def fetch_attempts(stats):
    """GETs of a charge the simulator answered, whatever it answered."""
    return sum(stats["requests"].get("GET /v1/charges/{id}", {}).values())


def write(tmp, name, content):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(content + "\n")
    return path


OUTPUTS = []  # every byte cashpayctl printed, for the secrets check


def ctl(*args, timeout=30):
    proc = subprocess.run([CTL, "--config", CONF, *args], capture_output=True, timeout=timeout)
    OUTPUTS.append(proc.stdout + proc.stderr)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def configure(token="url", request_timeout=2, extra="", public_url="https://shop.example"):
    source = (f"token_file = {TMP}/static\n" if token == "file" else
              f"token_url = http://127.0.0.1:{S.port}/oauth/token\nclient_id = {CLIENT_ID}\n"
              f"client_secret_file = {TMP}/client\n")
    with open(CONF, "w") as f:
        f.write(f"[database]\npath = {DB}\n[cashpay]\napi_url = http://127.0.0.1:{S.port}/v1\n"
                f"public_url = {public_url}\n{source}request_timeout = {request_timeout}\n{extra}"
                f"[checkout]\nlisten =\n")


def db():
    return sqlite3.connect(DB)


def order_status(charge_id):
    with db() as conn:
        row = conn.execute("SELECT status FROM orders WHERE charge_id = ?", (charge_id,)).fetchone()
    return row[0] if row else None


def last_fetch(charge_id):
    with db() as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM api_fetches WHERE charge_id = ? ORDER BY id DESC "
                            "LIMIT 1", (charge_id,)).fetchone()


# ---- api check ---------------------------------------------------------------

def test_check_token_file():
    configure("file")
    rc, out, err = ctl("api", "check")
    check_eq(rc, 0, f"api check: {out} {err}")
    check("token from     token_file" in out and "the API works" in out, out)
    check(STATIC_TOKEN not in out + err, "token printed")


def test_check_token_url_json():
    configure("url")
    rc, out, _ = ctl("--json", "api", "check")
    check_eq(rc, 0, out)
    doc = json.loads(out)
    check_eq((doc["ok"], doc["http_status"], doc["token"], doc["token_source"]),
             (True, 404, True, "token_url"), "check document")
    check(doc["token_expires"].endswith("Z"), doc)
    check_eq(S.stats()["token_requests"], 1, "one token request")


def test_check_broken_token_answers():
    configure("url")
    for fault, why in [("not-json", "not a JSON object"), ("html", "not a JSON object"),
                       ("no-access-token", "access_token is missing"),
                       ("wrong-token-type", "token_type is not Bearer"),
                       ("bad-expires-in", "expires_in"), ("500", "answered 500"),
                       ("401", "answered 401"), ("close", "token endpoint:")]:
        S.control("config", {"token_fault": fault})
        rc, out, _ = ctl("api", "check")
        check_eq(rc, 1, f"{fault}: {out}")
        check(why in out and "the API cannot be used" in out, f"{fault}: {out}")
        check_eq(fetch_attempts(S.stats()), 0, f"{fault}: no API request without a token")
        S.control("reset", {})


def test_check_hanging_token_endpoint():
    configure("url", request_timeout=1)
    S.control("config", {"token_fault": "hang", "hang_ms": 5000})
    started = time.monotonic()
    rc, out, _ = ctl("api", "check")
    took = time.monotonic() - started
    check_eq(rc, 1, out)
    check(took < 3.5, f"a hanging token endpoint held api check {took:.1f}s (timeout 1 s)")
    check("timeout" in out.lower() or "timed out" in out.lower(), out)


def test_check_rejected_token_file():
    write(TMP, "wrong-token", "not-the-token")
    configure("file")
    with open(CONF) as f:
        text = f.read().replace(f"{TMP}/static", f"{TMP}/wrong-token")
    with open(CONF, "w") as f:
        f.write(text)
    rc, out, _ = ctl("api", "check")
    check_eq(rc, 1, out)
    check("401 even with a renewed token" in out, out)


# ---- sync --------------------------------------------------------------------

def test_sync_records_through_the_state_machine():
    configure("url")
    cid = S.create(2000)
    rc, out, _ = ctl("sync", cid)
    check_eq(rc, 0, out)
    check_eq(order_status(cid), "INITIATED", "first sighting")
    S.control(f"charges/{cid}/pay", {})
    rc, out, _ = ctl("--json", "sync", cid)
    check_eq(rc, 0, out)
    doc = json.loads(out)
    check_eq((doc[0]["status"], doc[0]["result"]), ("CAPTURED", "applied"), "sync result")
    check_eq(order_status(cid), "CAPTURED", "order captured")
    with db() as conn:
        events = conn.execute("SELECT source, fetch_id IS NOT NULL, delivery_id FROM order_events "
                              "WHERE charge_id = ? ORDER BY id", (cid,)).fetchall()
        fetches = conn.execute("SELECT reason, http_status, status FROM api_fetches "
                               "WHERE charge_id = ? ORDER BY id", (cid,)).fetchall()
    check_eq(events, [("api", 1, None), ("api", 1, None)], "events of source api")
    check_eq(fetches, [("manual", 200, "INITIATED"), ("manual", 200, "CAPTURED")], "fetch rows")
    rc, out, _ = ctl("--json", "events", "--charge", cid)
    feed = json.loads(out)["events"]
    check_eq([(e["source"], e["to_status"], e["fetch_id"] is not None, e["delivery_id"])
              for e in feed], [("api", "INITIATED", True, None), ("api", "CAPTURED", True, None)],
             "the change feed says where each change came from")
    # again: duplicate, recorded, nothing changes
    rc, out, _ = ctl("sync", cid)
    check("duplicate" in out, out)


def test_sync_unknown_and_several():
    configure("url")
    a, b = S.create(10), S.create(20)
    S.control("stats/reset", {})
    rc, out, _ = ctl("sync", a, b, "chg_unknown_1", a)
    check_eq(rc, 1, f"an unknown charge fails the command: {out}")
    check("unknown to CashPay" in out, out)
    check_eq(order_status("chg_unknown_1"), None, "no order for a 404")
    st = S.stats()
    check_eq(fetch_attempts(st), 3, f"the same charge asked twice is one request: {st}")
    # three at once need three connections (HTTP/1.1), plus the token's
    check(st["connections_accepted"] <= 4, f"one connection per request at most: {st}")


def test_bad_answers_never_truth():
    configure("url")
    cid = S.create(2000)
    ctl("sync", cid)
    S.control(f"charges/{cid}/pay", {})
    cases = [({"api_fault": "html"}, "not application/json"),
             ({"api_fault": "huge"}, "larger than max_response"),
             ({"api_fault": "redirect", "redirect_to": "http://127.0.0.1:9/elsewhere"},
              "redirects are refused"),
             ({"api_fault": "404"}, "no such charge")]
    cases += [({"api_fault": "malformed", "malformed": kind}, "not a valid charge")
              for kind in ["amount-string", "amount-fraction", "amount-negative", "bad-id",
                           "bad-status", "bad-currency", "missing-created", "duplicate-key",
                           "truncated", "array"]]
    cases.append(({"api_fault": "malformed", "malformed": "wrong-id"}, "another charge"))
    for switches, why in cases:
        S.control("config", switches)
        rc, out, _ = ctl("--json", "sync", cid)
        check_eq(rc, 1, f"{switches}: {out}")
        check_eq(order_status(cid), "INITIATED", f"{switches}: order unchanged")
        row = last_fetch(cid)
        check(row["status"] is None and why in (row["error"] or ""),
              f"{switches}: fetch row {dict(row)}")
        S.control("config", {"api_fault": "none"})
    with db() as conn:
        check_eq(conn.execute("SELECT count(*) FROM order_events WHERE charge_id = ?",
                              (cid,)).fetchone()[0], 1, "no event from a bad answer")
        check_eq(conn.execute("SELECT max(length(body)) FROM api_fetches").fetchone()[0] <= 65536,
                 True, "bodies kept truncated")
    rc, out, _ = ctl("sync", cid)
    check_eq((rc, order_status(cid)), (0, "CAPTURED"), "the truth once the API tells it")


def test_retries_with_backoff_and_giving_up():
    configure("url")
    cid = S.create(2000)
    S.control("config", {"api_fault": "503", "api_fault_count": 2, "api_fault_on": "fetch"})
    S.control("stats/reset", {})
    rc, out, _ = ctl("sync", cid)
    check_eq(rc, 0, f"two 503s then an answer: {out}")
    st = S.stats()
    check_eq(fetch_attempts(st), 3, "three attempts")
    # one after the other: the API connection is kept alive and reused
    check_eq(st["connections_accepted"], 2, f"token + one API connection: {st}")
    S.control("config", {"api_fault": "500", "api_fault_count": 0})
    S.control("stats/reset", {})
    started = time.monotonic()
    rc, out, _ = ctl("sync", cid)
    check_eq(rc, 1, out)
    check_eq(fetch_attempts(S.stats()), 3, "a failing GET is tried three times")
    check(time.monotonic() - started >= 0.7, "with backoff between the attempts")
    check_eq(last_fetch(cid)["http_status"], 500, "the last answer recorded")


def test_401_renews_once_and_retries_once():
    configure("url")
    cid = S.create(2000)
    S.control("stats/reset", {})
    S.control("config", {"api_fault": "401", "api_fault_count": 1, "api_fault_on": "fetch"})
    rc, out, _ = ctl("sync", cid)
    check_eq(rc, 0, f"a 401, a new token, the answer: {out}")
    st = S.stats()
    check_eq((st["token_requests"], fetch_attempts(st)), (2, 2), f"one renewal, one retry: {st}")
    S.control("config", {"api_fault": "401", "api_fault_count": 0})
    S.control("stats/reset", {})
    rc, out, _ = ctl("--json", "sync", cid)
    check_eq(rc, 1, out)
    st = S.stats()
    check_eq((st["token_requests"], fetch_attempts(st)), (2, 2), f"and no more: {st}")
    check_eq(json.loads(out)[0]["error"], "answered 401 even with a renewed token", "error")


def test_hanging_api_times_out():
    configure("url", request_timeout=1)
    cid = S.create(2000)
    S.control("config", {"api_fault": "hang", "hang_ms": 10000})
    started = time.monotonic()
    rc, out, _ = ctl("sync", cid)
    took = time.monotonic() - started
    check_eq(rc, 1, out)
    check(took < 6, f"three 1 s attempts took {took:.1f}s")
    check(last_fetch(cid)["http_status"] is None, "no answer recorded as none")


def iso(seconds_ago):
    t = time.time() - seconds_ago
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def test_reconcile_sweep():
    configure("url")
    paid, pending, old, fresh = (S.create(n) for n in (1, 2, 3, 4))
    rc, out, _ = ctl("sync", paid, pending, old, fresh)
    check_eq(rc, 0, out)
    with db() as conn:
        for cid, age in ((paid, 600), (pending, 600), (old, 4 * 86400), (fresh, 10)):
            conn.execute("UPDATE orders SET first_seen_at = ?, updated_at = ? WHERE charge_id = ?",
                         (iso(age), iso(age), cid))
    S.control(f"charges/{paid}/pay", {})
    S.control(f"charges/{old}/pay", {})
    S.control("stats/reset", {})
    rc, out, _ = ctl("--json", "reconcile", "--dry-run")
    check_eq(rc, 0, out)
    doc = json.loads(out)
    check_eq((doc["due"], sorted(o["charge_id"] for o in doc["orders"])),
             (2, sorted([paid, pending])), "due: untouched 5 min, not given up")
    check_eq(fetch_attempts(S.stats()), 0, "a dry run fetches nothing")
    rc, out, _ = ctl("--json", "reconcile")
    check_eq(rc, 0, out)
    check_eq(sorted((r["charge_id"], r["status"]) for r in json.loads(out)),
             sorted([(paid, "CAPTURED"), (pending, "INITIATED")]), "swept")
    check_eq([order_status(c) for c in (paid, pending, old, fresh)],
             ["CAPTURED", "INITIATED", "INITIATED", "INITIATED"], "statuses")
    with db() as conn:
        src = conn.execute("SELECT e.source, f.reason FROM order_events e JOIN api_fetches f "
                           "ON f.id = e.fetch_id WHERE e.charge_id = ? AND e.to_status = "
                           "'CAPTURED'", (paid,)).fetchone()
        nxt = conn.execute("SELECT next_check_at FROM orders WHERE charge_id = ?",
                           (pending,)).fetchone()[0]
    check_eq(src, ("api", "reconcile"), "captured by the reconciler")
    # ten minutes old: looked at again in ten minutes (the interval doubles with the age)
    wait = time.mktime(time.strptime(nxt[:19], "%Y-%m-%dT%H:%M:%S")) - time.mktime(
        time.gmtime())
    check(540 <= wait <= 660, f"next check in {wait:.0f} s")
    rc, out, _ = ctl("--json", "reconcile", "--dry-run")
    check_eq(json.loads(out)["due"], 0, "nothing due right after a sweep")


def charge_create(ref, amount=2000, currency="YER", *more):
    rc, out, err = ctl("--json", "charge", "create", "--order-ref", ref, "--amount", str(amount),
                       "--currency", currency, *more)
    return rc, (json.loads(out) if rc == 0 else None), err


def sim_charge(cid):
    return S.control(f"charges/{cid}")


def test_charge_create_and_its_repeats():
    configure("url")
    rc, doc, err = charge_create("order-42", 2000, "YER", "--description", "Purchase of a watch")
    check_eq(rc, 0, err)
    cid, rref = doc["charge_id"], doc["return_ref"]
    check(doc["created"] and doc["transaction_url"].endswith("/pay/" + cid), doc)
    check(re.fullmatch(r"[A-Za-z0-9_-]{22}", rref), f"return_ref of 128 random bits: {rref}")
    at_sim = sim_charge(cid)
    check_eq(at_sim["post_url"], "https://shop.example/cashpay/webhook", "post_url")
    check_eq(at_sim["redirect_url"], "https://shop.example/cashpay/return?ref=" + rref,
             "redirect_url")
    with db() as conn:
        order = conn.execute("SELECT status, order_ref, return_ref, next_check_at IS NOT NULL "
                             "FROM orders WHERE charge_id = ?", (cid,)).fetchone()
        events = conn.execute("SELECT source, from_status, to_status FROM order_events "
                              "WHERE charge_id = ?", (cid,)).fetchall()
        req = conn.execute("SELECT state, charge_id, idempotency_key, attempts FROM "
                           "charge_requests WHERE order_ref = 'order-42'").fetchall()
    check_eq(order, ("INITIATED", "order-42", rref, 1), "order recorded")
    check_eq(events, [("checkout", None, "INITIATED")], "checkout event")
    check_eq((req[0][0], req[0][1], req[0][3]), ("created", cid, 1), "request row")
    check_eq(at_sim["idempotency_key"], req[0][2], "the key recorded is the key sent")
    # a double click: the same charge, nothing new at CashPay
    creates = S.stats()["charge_creates"]
    rc, again, _ = charge_create("order-42", 2000, "YER")
    check_eq((rc, again["charge_id"], again["created"]), (0, cid, False), "same charge")
    check_eq(S.stats()["charge_creates"], creates, "nothing sent")
    rc, _, err = charge_create("order-42", 2500, "YER")
    check("another amount or currency" in err and rc == 1, err)
    S.control(f"charges/{cid}/pay", {})
    ctl("sync", cid)
    rc, _, err = charge_create("order-42", 2000, "YER")
    check(rc == 1 and "already paid" in err, err)


def test_charge_create_after_failure_and_a_lost_answer():
    configure("url")
    rc, doc, _ = charge_create("order-f", 100)
    S.control(f"charges/{doc['charge_id']}/decline", {})
    ctl("sync", doc["charge_id"])
    # FAILED: a new charge for the same order_ref
    rc, doc2, err = charge_create("order-f", 100)
    check_eq(rc, 0, err)
    check(doc2["charge_id"] != doc["charge_id"] and doc2["created"], "a new charge")
    # created at CashPay, answer lost (the connection hangs past request_timeout):
    # the retry sends the same key, and CashPay replays the charge it made
    configure("url", request_timeout=1)
    S.control("config", {"api_fault": "hang", "hang_ms": 2500, "api_fault_on": "create",
                         "api_fault_count": 1, "api_fault_after": True})
    rc, _, err = charge_create("order-lost", 700)
    check(rc == 1 and "same Idempotency-Key" in err, err)
    with db() as conn:
        key, state = conn.execute("SELECT idempotency_key, state FROM charge_requests "
                                  "WHERE order_ref = 'order-lost'").fetchone()
    check_eq(state, "pending", "left pending")
    check_eq(order_status_by_ref("order-lost"), None, "no order before CashPay confirmed one")
    rc, doc3, err = charge_create("order-lost", 700)
    check_eq(rc, 0, err)
    st = S.stats()
    check_eq(st["creates_by_idempotency_key"].get(key), 2, "the same key twice")
    at_sim = [c for c in S.control("charges")["charges"] if c["idempotency_key"] == key]
    check_eq(len(at_sim), 1, "one charge at CashPay for the order")
    check_eq(doc3["charge_id"], at_sim[0]["charge"]["id"], "and it is the one recorded")


def test_charge_create_refused_and_bad_input():
    configure("url", public_url="http://127.0.0.1:99999")
    rc, _, err = charge_create("order-r", 100)
    check(rc == 1 and "refused the charge (422)" in err, err)
    with db() as conn:
        check_eq(conn.execute("SELECT state, http_status FROM charge_requests WHERE order_ref = "
                              "'order-r'").fetchall(), [("refused", 422)], "refused row")
    configure("url")
    rc, doc, err = charge_create("order-r", 100)
    check_eq(rc, 0, f"after a refusal a new request: {err}")
    for args, why in [(["--order-ref", "a b", "--amount", "1", "--currency", "YER"], "order_ref"),
                      (["--order-ref", "x", "--amount", "0", "--currency", "YER"], "--amount"),
                      (["--order-ref", "x", "--amount", "1.5", "--currency", "YER"], "--amount"),
                      (["--order-ref", "x", "--amount", "1", "--currency", "yer"], "currency"),
                      (["--order-ref", "x", "--amount", "1"], "needs --order-ref")]:
        rc, _, err = ctl("charge", "create", *args)
        check(rc == 2 and why in err, f"{args}: {rc} {err}")
    S.control("config", {"api_fault": "html", "api_fault_on": "create"})
    rc, _, err = charge_create("order-h", 100)
    check(rc == 1 and "not application/json" in err, err)
    check_eq(order_status_by_ref("order-h"), None, "no order from an HTML answer")


def order_status_by_ref(ref):
    with db() as conn:
        row = conn.execute("SELECT status FROM orders WHERE order_ref = ?", (ref,)).fetchone()
    return row[0] if row else None


def test_no_secret_anywhere():
    blob = b"".join(OUTPUTS)
    for wal in ("", "-wal"):
        if os.path.exists(DB + wal):
            with open(DB + wal, "rb") as f:
                blob += f.read()
    for secret in (STATIC_TOKEN, CLIENT_SECRET):
        check(secret.encode() not in blob, f"{secret} found in output or database")
    check(not ISSUED.search(blob), "an issued token found in output or database")
    check(len(OUTPUTS) > 20, "the check saw the outputs")


def main():
    tests = [v for k, v in globals().items() if k.startswith("test_") and k != "test_no_secret_anywhere"]
    failures = 0
    for test in tests + [test_no_secret_anywhere]:
        S.control("reset", {})
        started = time.monotonic()
        try:
            test()
            print(f"ok   {test.__name__} ({time.monotonic() - started:.2f}s)", flush=True)
        except Exception as e:
            failures += 1
            print(f"FAIL {test.__name__}: {e}", flush=True)
    return failures


if __name__ == "__main__":
    TMP = tempfile.mkdtemp(prefix="cashpay-api-ctl-")
    CONF = os.path.join(TMP, "cashpayd.conf")
    DB = os.path.join(TMP, "cashpay.db")
    S = None
    failures = 1
    try:
        S = Sim(TMP)
        configure()
        rc, out, err = ctl("migrate")
        check_eq(rc, 0, err)
        failures = main()
    finally:
        if S:
            S.stop()
        if failures:
            with open(os.path.join(TMP, "sim.log"), "rb") as f:
                sys.stderr.write(f.read().decode(errors="replace")[-3000:])
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(1 if failures else 0)
