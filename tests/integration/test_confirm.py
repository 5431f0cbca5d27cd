#!/usr/bin/env python3
"""The daemon confirms webhooks with the API (CONTRACT §8.4, confirm = api).

Against cashpay-sim (its own webhooks dropped; the test sends the
webhooks): a signed webhook the API confirms is applied through the API's
charge (order_events source 'api' naming the delivery and the fetch); a
forged unsigned one under verify = none claiming CAPTURED for an unpaid
charge is answered 200 unconfirmed and changes nothing; a charge CashPay
does not know is unconfirmed; with the API failing the webhook is answered
503 deferred with Retry-After and nothing changes. Checked through SQLite.
"""
import json
import threading
import time

from harness import charge, check, check_eq, random_charge_id, run_tests
from test_reconcile import create, finish, order, start, wait_for

# The reconciler stays out of the way: only the webhooks' fetches run.
QUIET = {"cashpay.reconcile_after": "3600", "webhook.confirm": "api"}


def delivery(d, cid):
    return d.query("SELECT id, outcome, http_status, claimed_status, body FROM "
                   "webhook_deliveries WHERE charge_id = ? ORDER BY id", cid)


def fetches(d, cid):
    return d.query("SELECT reason, delivery_id, http_status, status, error FROM api_fetches "
                   "WHERE charge_id = ? ORDER BY id", cid)


def test_confirmed_webhook_is_applied():
    d, sim = start(extra=QUIET)
    try:
        cid = create(d, "order-confirmed")
        sim.control(f"charges/{cid}/pay", {})
        t0 = time.monotonic()
        status, body = d.post_json(charge(cid, "CAPTURED"))
        took = time.monotonic() - t0
        print(f"   confirmed webhook answered in {took * 1000:.0f} ms")
        check_eq((status, body), (200, {"outcome": "applied"}), "confirmed: the usual outcome")
        check_eq(order(d, cid)["status"], "CAPTURED", "order CAPTURED")
        rows = delivery(d, cid)
        check_eq([(r["outcome"], r["http_status"], r["claimed_status"]) for r in rows],
                 [("applied", 200, "CAPTURED")], "the delivery row")
        check_eq(json.loads(rows[0]["body"])["id"], cid, "the webhook's raw body kept")
        check_eq(fetches(d, cid), [{"reason": "webhook", "delivery_id": rows[0]["id"],
                                    "http_status": 200, "status": "CAPTURED", "error": None}],
                 "the api_fetches row")
        ev = d.query("SELECT source, delivery_id, fetch_id FROM order_events "
                     "WHERE charge_id = ? AND to_status = 'CAPTURED'", cid)
        check_eq(len(ev), 1, "one CAPTURED event")
        check_eq((ev[0]["source"], ev[0]["delivery_id"]), ("api", rows[0]["id"]),
                 "the event is the API's, naming the delivery")
        check(ev[0]["fetch_id"], "and the fetch")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def test_forged_unsigned_webhook_is_unconfirmed():
    d, sim = start(extra={**QUIET, "webhook.verify": "none"})
    try:
        cid = create(d, "order-unpaid")
        status, resp_headers, raw = d.post(charge(cid, "CAPTURED"), sign=False)
        check_eq((status, json.loads(raw)), (200, {"outcome": "unconfirmed"}),
                 "a forged claim is answered 200 unconfirmed")
        o = order(d, cid)
        check_eq(o["status"], "INITIATED", "the order stays INITIATED")
        check(o["next_check_at"], "looked at again soon")
        check_eq([(r["outcome"], r["claimed_status"]) for r in delivery(d, cid)],
                 [("unconfirmed", "CAPTURED")], "the delivery keeps the claim")
        f = fetches(d, cid)
        check_eq([(x["reason"], x["status"]) for x in f], [("webhook", "INITIATED")],
                 "the fetch saw INITIATED")
        check(not d.query("SELECT 1 FROM order_events WHERE charge_id = ? AND "
                          "to_status = 'CAPTURED'", cid), "no CAPTURED event")
        check("unconfirmed, the CashPay API says INITIATED" in d.log_text(), "logged")

        # CashPay does not know the charge at all: unconfirmed, nothing else.
        ghost = random_charge_id()
        status, body = d.post_json(charge(ghost, "CAPTURED"), sign=False)
        check_eq((status, body), (200, {"outcome": "unconfirmed"}), "API 404: unconfirmed")
        check(not d.query("SELECT 1 FROM orders WHERE charge_id = ?", ghost), "no order")
        check_eq([x["http_status"] for x in fetches(d, ghost)], [404], "the 404 recorded")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def test_failing_api_defers():
    d, sim = start(extra=QUIET)
    try:
        cid = create(d, "order-deferred")
        sim.control(f"charges/{cid}/pay", {})
        sim.control("config", {"api_fault": "503", "api_fault_on": "fetch"})
        status, resp_headers, raw = d.post(charge(cid, "CAPTURED"))
        check_eq((status, json.loads(raw)), (503, {"outcome": "deferred"}),
                 "API failing: 503 deferred")
        check("Retry-After" in resp_headers, f"Retry-After: {resp_headers}")
        o = order(d, cid)
        check_eq(o["status"], "INITIATED", "nothing changed")
        check_eq([(r["outcome"], r["http_status"]) for r in delivery(d, cid)],
                 [("deferred", 503)], "the deferred delivery row")
        check(all(x["status"] is None for x in fetches(d, cid)), "no charge in the fetch")
        check(o["next_check_at"], "queued for reconciliation")

        # The API back: CashPay's retry is confirmed.
        sim.control("config", {"api_fault": "none"})
        status, body = d.post_json(charge(cid, "CAPTURED"))
        check_eq((status, body), (200, {"outcome": "applied"}), "the retry confirmed")
        check_eq(order(d, cid)["status"], "CAPTURED", "then CAPTURED")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def test_hanging_api_within_commit_timeout_and_stop():
    """A webhook waits for its fetch at most commit_timeout (then 503, not
    acknowledged); one still waiting at SIGTERM is answered, and the daemon
    exits cleanly."""
    d, sim = start(extra={**QUIET, "database.commit_timeout": "1000"})
    try:
        cid = create(d, "order-hang")
        sim.control("config", {"api_fault": "hang", "api_fault_on": "fetch"})
        t0 = time.monotonic()
        status, resp_headers, raw = d.post(charge(cid, "CAPTURED"))
        took = time.monotonic() - t0
        print(f"   hanging API: answered {status} after {took * 1000:.0f} ms")
        check_eq(status, 503, "not acknowledged")
        check("Retry-After" in resp_headers, f"Retry-After: {resp_headers}")
        check(0.9 < took < 2.5, f"within commit_timeout: {took:.2f} s")
        check_eq(order(d, cid)["status"], "INITIATED", "nothing changed")

        result = {}
        worker = threading.Thread(target=lambda: result.update(
            answer=d.post(charge(cid, "CAPTURED"))[0]))
        worker.start()
        wait_for("a fetch hanging at the sim", lambda: sim.control("stats")["api_inflight"] >= 1)
        t0 = time.monotonic()
        check_eq(d.stop(), 0, "exit status with a webhook waiting for the API")
        worker.join(10)
        check(time.monotonic() - t0 < 5, "stopped without waiting for the API")
        check_eq(result.get("answer"), 503, "the waiting webhook was answered 503")
        check_eq(order(d, cid)["status"], "INITIATED", "still INITIATED")
    finally:
        finish(d, sim)


if __name__ == "__main__":
    run_tests([v for k, v in list(globals().items()) if k.startswith("test_")])
