#!/usr/bin/env python3
"""The daemon reconciles stale INITIATED orders through the API (CONTRACT §8.5).

Against cashpay-sim with its webhooks dropped: a paid charge becomes
CAPTURED and a declined one FAILED within seconds, through the state
machine (an order_events row with source 'api', an api_fetches row); an
API that fails leaves the order INITIATED and looks again later
(next_check_at moves on) while signed webhooks keep being answered 200 at
once; /metrics counts all of it; and the daemon stops cleanly.
"""
import http.client
import json
import os
import re
import select
import subprocess
import sys
import time

from harness import (Daemon, SECRET, check, check_eq, claim_lease_ms, end_group, postgresql_only,
                     run_tests, spawn)

SIM = os.environ["CASHPAY_SIM"]
CTL = os.environ["CASHPAYCTL"]
TOKEN = "reconcile_static_tok_41"


class Sim:
    """cashpay-sim signing webhooks with the daemon's secret, in a process group."""

    def __init__(self, d):
        token = os.path.join(d.dir, "sim.token")
        with open(token, "w") as f:
            f.write(TOKEN + "\n")
        self.token_file = token
        self.proc = spawn([sys.executable, SIM, "--listen", "127.0.0.1:0", "--verify", "hmac",
                           "--secret-file", d.secret_path, "--static-token-file", token],
                          stdout=subprocess.PIPE,
                          stderr=open(os.path.join(d.dir, "sim.log"), "ab"))
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        check(ready, "cashpay-sim did not start")
        line = self.proc.stdout.readline().decode().strip()
        check(line.startswith("cashpay-sim listening on http://127.0.0.1:"), line)
        self.port = int(line.rsplit(":", 1)[1])

    def stop(self):
        end_group(self.proc.pid, timeout=5)
        self.proc.wait()
        self.proc.stdout.close()

    def control(self, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request("POST" if body is not None else "GET", "/_sim/" + path, body=data,
                         headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            raw = resp.read()
            check_eq(resp.status, 200, f"sim control {path}: {raw[:200]!r}")
            return json.loads(raw) if raw else None
        finally:
            conn.close()


def start(reconcile_after=1, tls=None, extra=None):
    d = Daemon(start=False, tls=tls)
    sim = Sim(d)
    d.write_config({
        **d.base_config,
        "cashpay.api_url": f"http://127.0.0.1:{sim.port}/v1",
        "cashpay.public_url": f"http://127.0.0.1:{d.port}",
        "cashpay.token_file": sim.token_file,
        "cashpay.request_timeout": "2",
        "cashpay.reconcile_after": str(reconcile_after),
        "webhook.confirm": "none",
        "checkout.listen": "",
        **(extra or {}),
    })
    try:
        d.start()
        sim.control("config", {"webhook_drop": True})
    except BaseException:
        # The test fails here; the next one must not find this one's simulator.
        sim.stop()
        d.kill_tree()
        d.close(passed=False)
        raise
    return d, sim


def create(d, ref, amount=2000):
    proc = subprocess.run([CTL, "--config", d.config_path, "--json", "charge", "create",
                           "--order-ref", ref, "--amount", str(amount), "--currency", "YER"],
                          capture_output=True, timeout=30)
    check_eq(proc.returncode, 0, proc.stderr.decode())
    return json.loads(proc.stdout)["charge_id"]


def order(d, cid):
    rows = d.query("SELECT status, next_check_at FROM orders WHERE charge_id = ?", cid)
    return rows[0] if rows else None


def wait_for(what, predicate, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def metrics(d):
    status, _, body = d.admin("/metrics")
    check_eq(status, 200, "/metrics")
    out = {}
    for line in body.decode().splitlines():
        m = re.match(r"^(cashpayd_(?:reconciled|api_requests|orders_initiated|api_request|"
                     r"token)[^ ]*) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def check_api_event(d, cid, to_status):
    events = d.query("SELECT source, to_status, fetch_id FROM order_events WHERE charge_id = ? "
                     "AND source = 'api'", cid)
    check_eq([(e["source"], e["to_status"]) for e in events], [("api", to_status)],
             f"{cid}: the api event")
    fetch = d.query("SELECT reason, http_status, status, error FROM api_fetches WHERE id = ?",
                    events[0]["fetch_id"])
    check_eq(fetch, [{"reason": "reconcile", "http_status": 200, "status": to_status,
                      "error": None}], f"{cid}: the fetch the event points at")
    check(not d.query("SELECT 1 FROM webhook_deliveries WHERE charge_id = ?", cid),
          f"{cid}: no webhook arrived (dropped)")


def finish(d, sim):
    passed = sys.exc_info()[0] is None
    if d.proc and d.proc.poll() is None:
        d.kill_tree()
    sim.stop()
    d.close(passed=passed)


def test_lost_webhooks_are_reconciled():
    d, sim = start()
    try:
        paid, declined = create(d, "order-paid"), create(d, "order-declined")
        check_eq(order(d, paid)["status"], "INITIATED", "created INITIATED")
        started = time.monotonic()
        sim.control(f"charges/{paid}/pay", {})
        sim.control(f"charges/{declined}/decline", {})
        wait_for("CAPTURED", lambda: order(d, paid)["status"] == "CAPTURED")
        wait_for("FAILED", lambda: order(d, declined)["status"] == "FAILED")
        took = time.monotonic() - started
        print(f"   both orders final {took:.1f} s after the payment (reconcile_after = 1)")
        check(took < 10, f"reconciled in {took:.1f} s")
        check_api_event(d, paid, "CAPTURED")
        check_api_event(d, declined, "FAILED")
        log = d.log_text()
        check(f"reconciled {paid}: the API says CAPTURED" in log, log[-2000:])
        check(TOKEN not in log, "no token in the log")
        check(sim.control("stats")["webhooks"]["dropped"] >= 2, "the sim dropped the webhooks")
        m = metrics(d)
        check(m['cashpayd_reconciled_total{outcome="captured"}'] >= 1, m)
        check(m['cashpayd_reconciled_total{outcome="failed"}'] >= 1, m)
        check(m['cashpayd_api_requests_total{endpoint="charges.get",code="200"}'] >= 2, m)
        check(m['cashpayd_api_requests_total{endpoint="charges.create",code="201"}'] == 0,
              "cashpayctl created the charges, not the daemon")
        check(m["cashpayd_api_request_seconds_count"] >= 2, m)
        check("cashpayd_orders_initiated_stale" in m, m)
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def test_failing_api_backs_off_and_intake_goes_on():
    d, sim = start()
    try:
        cid = create(d, "order-down")
        sim.control("config", {"api_fault": "503", "api_fault_on": "fetch"})
        sim.control(f"charges/{cid}/pay", {})
        failed = lambda: d.query("SELECT id, http_status, error FROM api_fetches "
                                 "WHERE charge_id = ? ORDER BY id", cid)
        first = wait_for("a failed fetch", failed)
        check_eq(first[0]["http_status"], 503, "recorded with CashPay's answer")
        check(first[0]["error"], "and why it is no charge")
        o = order(d, cid)
        check_eq(o["status"], "INITIATED", "a failing API changes nothing")
        next1 = o["next_check_at"]
        check(next1, "next_check_at set")

        # Webhooks are answered at once meanwhile.
        for i in range(20):
            t0 = time.monotonic()
            status, _ = d.post_json({"id": f"chg_intake_{i}", "status": "CAPTURED",
                                     "amount": 100, "currency": "YER", "created": 0})
            check_eq(status, 200, "webhook intake while the API fails")
            check(time.monotonic() - t0 < 1, "intake is not held up by the API")

        wait_for("a second failed fetch", lambda: len(failed()) >= 2)
        o = order(d, cid)
        check_eq(o["status"], "INITIATED", "still INITIATED")
        check(o["next_check_at"] > next1, f"next_check_at moved on: {next1} -> {o['next_check_at']}")
        m = metrics(d)
        check(m['cashpayd_reconciled_total{outcome="error"}'] >= 2, m)
        check(m['cashpayd_api_requests_total{endpoint="charges.get",code="503"}'] >= 2, m)
        check(m["cashpayd_orders_initiated_stale"] >= 0, m)

        sim.control("config", {"api_fault": "none"})
        wait_for("CAPTURED once the API is back", lambda: order(d, cid)["status"] == "CAPTURED",
                 timeout=20)
        check_api_event(d, cid, "CAPTURED")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def test_dead_api_stops_cleanly():
    """Fetches still open at SIGTERM are dropped, the order stays due."""
    d, sim = start()
    try:
        cid = create(d, "order-hang")
        sim.control("config", {"api_fault": "hang", "api_fault_on": "fetch"})
        wait_for("a fetch hanging at the sim", lambda: sim.control("stats")["api_inflight"] >= 1)
        t0 = time.monotonic()
        check_eq(d.stop(), 0, "exit status")
        check(time.monotonic() - t0 < 5, "stopped without waiting for the API")
        check_eq(order(d, cid)["status"], "INITIATED", "still INITIATED")
    finally:
        finish(d, sim)


def test_overlapping_creations_of_one_order_ref():
    """Two processes creating a charge for one order_ref at the same time
    (a retried checkout and an operator, say): both send the request's one
    Idempotency-Key, CashPay creates one charge, the one that records
    second finds the order the first recorded and answers with it (exit 0,
    "created": false), not an error."""
    d, sim = start(reconcile_after=3600)
    try:
        sim.control("config", {"api_latency_ms": 300})  # both in flight at once
        for k in range(3):
            ref = f"order-overlap-{k}"
            cmd = [CTL, "--config", d.config_path, "--json", "charge", "create",
                   "--order-ref", ref, "--amount", "2000", "--currency", "YER"]
            procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                     for _ in range(2)]
            answers = []
            for p in procs:
                out, err = p.communicate(timeout=60)
                check_eq(p.returncode, 0, f"{ref}: {err.decode()}")
                answers.append(json.loads(out))
            check_eq(len({a["charge_id"] for a in answers}), 1, f"{ref}: one charge for both")
            check_eq(sorted(a["created"] for a in answers), [False, True],
                     f"{ref}: one created it, the other found it")
            rows = d.query("SELECT state, charge_id FROM charge_requests WHERE order_ref = ?", ref)
            check_eq(rows, [{"state": "created", "charge_id": answers[0]["charge_id"]}],
                     f"{ref}: one request row")
            check_eq(order(d, answers[0]["charge_id"])["status"], "INITIATED", f"{ref}: the order")
        stats = sim.control("stats")
        check_eq(stats["charges_created"], 3, "one charge per order_ref at CashPay")
        check_eq(sorted(stats["creates_by_idempotency_key"].values()), [2, 2, 2],
                 "each sent twice with its one key")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


@postgresql_only("SQLite claims no lease")
def test_unrecorded_fetch_gives_its_claim_back():
    """On PostgreSQL: a look whose answer cannot be recorded (here a
    trigger refuses its api_fetches row) gives back the lease it claimed
    the order with, so the order is looked at again on its schedule (a few
    seconds on here), not after the lease (35.5 s at request_timeout = 2)."""
    d, sim = start()
    try:
        cid = create(d, "order-unrecorded")
        d.pg.execute("CREATE FUNCTION refuse_fetch() RETURNS trigger LANGUAGE plpgsql AS $$ "
                     "BEGIN RAISE EXCEPTION 'refused for the test'; END $$; "
                     "CREATE TRIGGER refuse_fetch BEFORE INSERT ON api_fetches FOR EACH ROW "
                     f"WHEN (NEW.charge_id = '{cid}') EXECUTE FUNCTION refuse_fetch()",
                     db=d.pg_db)
        sim.control(f"charges/{cid}/pay", {})
        wait_for("a look that could not be recorded",
                 lambda: f"could not record the reconciliation of {cid}" in d.log_text(),
                 timeout=30)
        left = d.pg.query("SELECT extract(epoch FROM next_check_at - now()) AS s FROM orders "
                          "WHERE charge_id = ?", cid, db=d.pg_db)[0]["s"]
        print(f"   next look {float(left):.1f} s after the failed record")
        check(float(left) < claim_lease_ms(request_timeout=2) / 2000,
              f"the lease given back: next look in {left} s")
        d.pg.execute("DROP TRIGGER refuse_fetch ON api_fetches", db=d.pg_db)
        wait_for("the order CAPTURED by a later look",
                 lambda: order(d, cid)["status"] == "CAPTURED", timeout=60)
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


if __name__ == "__main__":
    run_tests([v for k, v in list(globals().items()) if k.startswith("test_")])
