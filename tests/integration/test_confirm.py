#!/usr/bin/env python3
"""The daemon confirms webhooks with the API (CONTRACT §8.4, confirm = api).

Against cashpay-sim (its own webhooks dropped; the test sends the
webhooks): a signed webhook the API confirms is applied through the API's
charge (order_events source 'api' naming the delivery and the fetch); a
forged unsigned one under verify = none claiming CAPTURED for an unpaid
charge is answered 200 unconfirmed and changes nothing; a charge CashPay
does not know is unconfirmed; with the API failing the webhook is answered
503 deferred with Retry-After and nothing changes; an unconfirmed claim is
fetched again at the three looks (about 5 s, 30 s, 2 min after it, shrunk
here by a short reconcile_after), and an API that catches up in between is
recorded. Checked through SQLite.
"""
import json
import threading
import time

from harness import (charge, check, check_eq, claim_lease_ms, postgresql_only, random_charge_id,
                     run_tests)
from test_reconcile import create, finish, order, start, wait_for

import datetime

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
        cid, waiting = create(d, "order-hang"), create(d, "order-hang-at-stop")
        # After the bearer check: each hanging fetch is counted at the sim.
        sim.control("config", {"api_fault": "hang", "api_fault_on": "fetch",
                               "api_fault_after": True})
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
            answer=d.post(charge(waiting, "CAPTURED"))[0]))
        worker.start()
        # A charge of its own: the first fetch's retries may still hang, and a
        # fetch of the same charge would join them, with nothing to show that
        # the daemon has this webhook yet (rather than in its listen queue).
        wait_for("the waiting webhook's fetch hanging at the sim",
                 lambda: sim.control("stats")["fetches_by_charge"].get(waiting, 0) >= 1)
        t0 = time.monotonic()
        check_eq(d.stop(), 0, "exit status with a webhook waiting for the API")
        worker.join(10)
        check(time.monotonic() - t0 < 5, "stopped without waiting for the API")
        check_eq(result.get("answer"), 503, "the waiting webhook was answered 503")
        check_eq((order(d, cid)["status"], order(d, waiting)["status"]),
                 ("INITIATED", "INITIATED"), "both still INITIATED")
    finally:
        finish(d, sim)


def iso_ms(text):
    return round(datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000)


def sim_gets(sim):
    return sim.control("stats")["charge_fetches"]


# A claim's lease on PostgreSQL at start()'s request_timeout = 2 (the rest
# defaults): reconcile_lease_ms() in src/api/reconcile.c, 35.5 s.
LEASE_MS = claim_lease_ms(request_timeout=2)


def test_unconfirmed_claim_is_looked_at_three_times():
    """reconcile_after = 12 s shrinks the looks to 0.2 s, 1.2 s and 4.8 s
    after the claim (12/300 of 5 s, 30 s, 2 min); then the doubling schedule,
    at least reconcile_after later. Bounds below are lower ones only: a look
    is never early, however slow the machine."""
    d, sim = start(reconcile_after=12, extra={"webhook.confirm": "api"})
    try:
        cid = create(d, "order-looks")
        sim.control("stats/reset", {})  # from here on, this charge's fetches only
        status, body = d.post_json(charge(cid, "CAPTURED"))
        check_eq((status, body), (200, {"outcome": "unconfirmed"}), "the claim is unconfirmed")
        claimed = iso_ms(d.query("SELECT received_at FROM webhook_deliveries "
                                 "WHERE charge_id = ?", cid)[0]["received_at"])

        def looks():
            return d.query("SELECT requested_at, status FROM api_fetches WHERE charge_id = ? "
                           "AND reason = 'reconcile' ORDER BY id", cid)

        # Each look is planned at its exact offset from the claim (what is
        # planned, not when it ran): every next_check_at seen while the
        # looks go on is one of the three.
        # On PostgreSQL a look being made shows its claim instead: next_check_at
        # is the reconciler's lease, LEASE_MS past the moment it claimed the
        # order (pg-api.c), until the fetch is recorded. A lease is not a plan.
        planned, leases = set(), 0

        def three_looks():
            nonlocal leases
            at = iso_ms(order(d, cid)["next_check_at"]) - claimed
            if at >= LEASE_MS:
                leases += 1
            else:
                planned.add(at)
            return len(looks()) >= 3
        wait_for("three looks", three_looks, timeout=60)
        planned.discard(iso_ms(order(d, cid)["next_check_at"]) - claimed)  # after the third
        if leases:
            print(f"   saw a look's lease instead of a plan {leases} time(s)")
        check(planned and planned <= {200, 1200, 4800}, f"planned at the looks: {planned}")
        got = looks()[:3]
        for i, (least, row) in enumerate(zip([200, 1200, 4800], got)):
            check(iso_ms(row["requested_at"]) - claimed >= least - 1,
                  f"look {i + 1} not before {least} ms after the claim: {row['requested_at']}")
            check_eq(row["status"], "INITIATED", f"look {i + 1} saw INITIATED")
        check(sim_gets(sim) >= 4, "the sim was asked for the charge four times "
              f"(webhook and three looks): {sim_gets(sim)}")
        o = order(d, cid)
        check_eq(o["status"], "INITIATED", "still INITIATED")
        third = iso_ms(got[2]["requested_at"])
        if len(looks()) == 3:
            check(iso_ms(o["next_check_at"]) - third >= 12000 - 1,
                  f"then the doubling schedule: {o['next_check_at']} after {got[2]['requested_at']}")

        # An API that catches up between the looks is recorded by the next one.
        late = create(d, "order-late")
        status, body = d.post_json(charge(late, "CAPTURED"))
        check_eq(body, {"outcome": "unconfirmed"}, "unconfirmed at first")
        sim.control(f"charges/{late}/set", {"status": "CAPTURED"})
        wait_for("the order CAPTURED", lambda: order(d, late)["status"] == "CAPTURED", timeout=60)
        ev = d.query("SELECT source, fetch_id FROM order_events WHERE charge_id = ? AND "
                     "to_status = 'CAPTURED'", late)
        check_eq(len(ev), 1, "one CAPTURED event")
        check_eq(d.query("SELECT reason FROM api_fetches WHERE id = ?", ev[0]["fetch_id"]),
                 [{"reason": "reconcile"}], "recorded by a look, source api")
        check_eq(ev[0]["source"], "api", "source api")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def test_failed_answer_to_captured_claim_is_looked_at_again():
    """A claim of CAPTURED the API answers FAILED: the order is FAILED, and
    since FAILED -> CAPTURED is still applied, the charge is looked at
    again (0.2 s, 1.2 s, 4.8 s at reconcile_after = 12): CashPay's API
    catching up to CAPTURED is recorded, source api."""
    d, sim = start(reconcile_after=12, extra={"webhook.confirm": "api"})
    try:
        cid = create(d, "order-failed-first")
        sim.control(f"charges/{cid}/decline", {})
        status, body = d.post_json(charge(cid, "CAPTURED"))
        check_eq((status, body), (200, {"outcome": "unconfirmed"}), "the claim is unconfirmed")
        check_eq(order(d, cid)["status"], "FAILED", "the API's FAILED is recorded")
        sim.control(f"charges/{cid}/set", {"status": "CAPTURED"})
        wait_for("the order CAPTURED", lambda: order(d, cid)["status"] == "CAPTURED", timeout=60)
        ev = d.query("SELECT from_status, source, fetch_id FROM order_events WHERE charge_id = ? "
                     "AND to_status = 'CAPTURED'", cid)
        check_eq([(e["from_status"], e["source"]) for e in ev], [("FAILED", "api")],
                 "FAILED -> CAPTURED, from the API")
        check_eq(d.query("SELECT reason FROM api_fetches WHERE id = ?", ev[0]["fetch_id"]),
                 [{"reason": "reconcile"}], "recorded by a look")
        n = len(d.query("SELECT 1 FROM api_fetches WHERE charge_id = ?", cid))
        # past the last look's time (4.8 s after the claim): none comes once CAPTURED
        claimed = iso_ms(d.query("SELECT received_at FROM webhook_deliveries WHERE "
                                 "charge_id = ?", cid)[0]["received_at"]) / 1000
        time.sleep(max(0.0, claimed + 6 - time.time()))
        check_eq(len(d.query("SELECT 1 FROM api_fetches WHERE charge_id = ?", cid)), n,
                 "no look after CAPTURED")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


@postgresql_only("SQLite has no connection to drop")
def test_confirm_after_idle_connections_dropped():
    """On PostgreSQL: the daemon's connections terminated while idle (a
    server restart in a quiet hour): the next confirmed webhook, whose
    fetch is recorded in a transaction of its own, is applied on a new
    connection, not answered 503 for the dead one."""
    d, sim = start(extra=QUIET)
    try:
        for round_ in range(3):
            cid = create(d, f"order-idle-drop-{round_}")
            sim.control(f"charges/{cid}/pay", {})
            check(d.pg.terminate_connections(d.pg_db) >= 1, "the daemon's connections terminated")
            status, body = d.post_json(charge(cid, "CAPTURED"))
            check_eq((status, body), (200, {"outcome": "applied"}),
                     f"round {round_}: the first confirmed webhook after")
            check_eq(order(d, cid)["status"], "CAPTURED", f"round {round_}: order CAPTURED")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


if __name__ == "__main__":
    run_tests([v for k, v in list(globals().items()) if k.startswith("test_")])
