#!/usr/bin/env python3
"""The checkout listener, POST /charges (CONTRACT §8.3), against cashpay-sim.

Every row of the §8.3 table: 201 created and recorded (order INITIATED
with order_ref and return_ref, a 'checkout' event, the charge_requests row
whose Idempotency-Key the sim saw), 200 for the same INITIATED charge with
nothing sent, 409 order_changed and already_paid, 400 for each kind of bad
body, 401 without the right bearer, 502 when CashPay refuses, 503 with
Retry-After when it fails, hangs or closes — and the retry sending the same
Idempotency-Key so that CashPay holds one charge. A FAILED order_ref gets a
new charge; twenty parallel requests for one order_ref make one charge; a
webhook faster than the 201 is handled normally; a request held at SIGTERM
is answered 503 and the daemon exits 0. Checked through SQLite.
"""
import http.client
import json
import os
import threading

from harness import check, check_eq, free_port, run_tests, sqlite_only
from test_reconcile import finish, start, wait_for

TOKEN = "checkout-app-token-7Hq2"
QUIET = {"cashpay.reconcile_after": "3600"}


def start_checkout(extra=None, webhooks=False):
    port = free_port()
    d, sim = start(extra={**QUIET, "checkout.listen": f"127.0.0.1:{port}", **(extra or {})})
    d.checkout_port = port
    if webhooks:
        sim.control("config", {"webhook_drop": False})
    return d, sim


def post(d, body, headers=None, method="POST", path="/charges"):
    """One request to the checkout listener: (status, headers, parsed body)."""
    raw = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    h = {"Content-Type": "application/json"} if raw is not None else {}
    h.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", d.checkout_port, timeout=30)
    try:
        conn.request(method, path, body=raw, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        doc = json.loads(data) if data else None
        return resp.status, dict(resp.getheaders()), doc
    finally:
        conn.close()


def order_body(ref, amount=2000, currency="YER", **more):
    return {"order_ref": ref, "amount": amount, "currency": currency, **more}


def requests_of(d, ref):
    return d.query("SELECT state, charge_id, idempotency_key, attempts, http_status FROM "
                   "charge_requests WHERE order_ref = ? ORDER BY id", ref)


def sim_charges_for_key(sim, key):
    return [c for c in sim.control("charges")["charges"] if c["idempotency_key"] == key]


def checkout_metric(d, code):
    status, _, body = d.admin("/metrics")
    check_eq(status, 200, "/metrics")
    line = f'cashpayd_checkout_requests_total{{code="{code}"}} '
    for text in body.decode().splitlines():
        if text.startswith(line):
            return float(text[len(line):])
    raise AssertionError(f"no {line.strip()} in /metrics")


def test_created_then_repeats_and_conflicts():
    d, sim = start_checkout(webhooks=True)
    try:
        status, headers, doc = post(d, order_body("order-1", description="Purchase of a watch"))
        check_eq(status, 201, f"created: {doc}")
        check_eq(headers.get("Content-Type"), "application/json", "JSON answer")
        cid, rref = doc["charge_id"], doc["return_ref"]
        check_eq(set(doc), {"charge_id", "status", "order_ref", "amount", "currency",
                            "transaction_url", "return_ref"}, "the 201 shape")
        check_eq((doc["status"], doc["order_ref"], doc["amount"], doc["currency"]),
                 ("INITIATED", "order-1", 2000, "YER"), "the 201 fields")
        check(doc["transaction_url"].endswith("/pay/" + cid), doc["transaction_url"])
        check(len(rref) >= 22 and all(c.isalnum() or c in "-_" for c in rref), rref)
        at_sim = sim.control(f"charges/{cid}")
        check(at_sim["redirect_url"].endswith("/cashpay/return?ref=" + rref), at_sim)
        check_eq(at_sim["charge"]["description"], "Purchase of a watch", "description sent")
        o = d.query("SELECT status, order_ref, return_ref FROM orders WHERE charge_id = ?", cid)
        check_eq(o, [{"status": "INITIATED", "order_ref": "order-1", "return_ref": rref}],
                 "the order recorded before the 201")
        ev = d.query("SELECT source, from_status, to_status FROM order_events "
                     "WHERE charge_id = ?", cid)
        check_eq(ev, [{"source": "checkout", "from_status": None, "to_status": "INITIATED"}],
                 "the checkout event")
        req = requests_of(d, "order-1")
        check_eq([(r["state"], r["charge_id"], r["attempts"]) for r in req],
                 [("created", cid, 1)], "the request row")
        check_eq(at_sim["idempotency_key"], req[0]["idempotency_key"], "the key sent is recorded")

        # a double click: the same charge, nothing sent
        creates = sim.control("stats")["charge_creates"]
        status, _, again = post(d, order_body("order-1", description="Purchase of a watch"))
        check_eq((status, again), (200, doc), "200 with the same charge")
        check_eq(sim.control("stats")["charge_creates"], creates, "nothing sent to CashPay")

        status, _, doc2 = post(d, order_body("order-1", amount=2500))
        check_eq((status, doc2), (409, {"error": "order_changed", "charge_id": cid}),
                 "another amount")
        status, _, doc2 = post(d, order_body("order-1", currency="USD"))
        check_eq((status, doc2), (409, {"error": "order_changed", "charge_id": cid}),
                 "another currency")

        # paid: the webhook arrives, and the order_ref is done
        sim.control(f"charges/{cid}/pay", {})
        wait_for("the CAPTURED webhook", lambda: d.query(
            "SELECT 1 FROM orders WHERE charge_id = ? AND status = 'CAPTURED'", cid))
        status, _, doc3 = post(d, order_body("order-1"))
        check_eq((status, doc3), (409, {"error": "already_paid", "charge_id": cid}),
                 "already paid")
        check_eq(checkout_metric(d, 201), 1, "counted: 201")
        check_eq(checkout_metric(d, 409), 3, "counted: 409")
        check("checkout order-1 2000 YER: 201 " + cid in d.log_text(), "logged")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def test_failed_order_gets_a_new_charge():
    d, sim = start_checkout(webhooks=True)
    try:
        status, _, doc = post(d, order_body("order-f", 100))
        check_eq(status, 201, f"{doc}")
        sim.control(f"charges/{doc['charge_id']}/decline", {})
        wait_for("the FAILED webhook", lambda: d.query(
            "SELECT 1 FROM orders WHERE charge_id = ? AND status = 'FAILED'", doc["charge_id"]))
        status, _, doc2 = post(d, order_body("order-f", 100))
        check_eq(status, 201, f"a new charge: {doc2}")
        check(doc2["charge_id"] != doc["charge_id"], "another charge id")
        check(doc2["return_ref"] != doc["return_ref"], "another return_ref")
        check_eq([r["state"] for r in requests_of(d, "order-f")], ["created", "created"],
                 "two request rows")
        check_eq(sim.control("stats")["charges_created"], 2, "two charges at CashPay")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


BAD_BODIES = [
    (b"{", "invalid JSON at line 1"),
    (b"[1]", "JSON object"),
    (b'"order"', "JSON object"),
    (b'{"order_ref":"a","order_ref":"b","amount":1,"currency":"YER"}', "duplicate"),
    (b'{"amount":1,"currency":"YER"}', "order_ref is missing"),
    (b'{"order_ref":"a","currency":"YER"}', "amount is missing"),
    (b'{"order_ref":"a","amount":1}', "currency is missing"),
    (b'{"order_ref":42,"amount":1,"currency":"YER"}', "order_ref must be a string"),
    (b'{"order_ref":"a","amount":"2000","currency":"YER"}', "amount must be an integer"),
    (b'{"order_ref":"a","amount":20.5,"currency":"YER"}', "amount must be an integer"),
    (b'{"order_ref":"a","amount":2e3,"currency":"YER"}', "amount must be an integer"),
    (b'{"order_ref":"a","amount":true,"currency":"YER"}', "amount must be an integer"),
    (b'{"order_ref":"a","amount":null,"currency":"YER"}', "amount must be an integer"),
    (b'{"order_ref":"a","amount":0,"currency":"YER"}', "amount must be an integer from 1"),
    (b'{"order_ref":"a","amount":-5,"currency":"YER"}', "amount must be an integer from 1"),
    (b'{"order_ref":"a","amount":9007199254740992,"currency":"YER"}', "amount must be"),
    (b'{"order_ref":"a","amount":1,"currency":["YER"]}', "currency must be a string"),
    (b'{"order_ref":"a","amount":1,"currency":"yer"}', "currency must be three capital"),
    (b'{"order_ref":"a","amount":1,"currency":"YERR"}', "currency must be three capital"),
    (b'{"order_ref":"a","amount":1,"currency":"YER","description":7}',
     "description must be a string"),
    (b'{"order_ref":"a","amount":1,"currency":"YER","description":"a\\nb"}',
     "control characters"),
    (json.dumps(order_body("a", 1, description="x" * 4097)).encode(), "at most 4096"),
    (b'{"order_ref":"a b","amount":1,"currency":"YER"}', "order_ref must be 1 to 128"),
    (b'{"order_ref":"","amount":1,"currency":"YER"}', "order_ref must be 1 to 128"),
    (json.dumps(order_body("r" * 129, 1)).encode(), "order_ref must be 1 to 128"),
    (b'{"order_ref":"a","amount":1,"currency":"YER","ammount":2}', 'unknown field "ammount"'),
    (b'{"order_ref":"a\\u0000b","amount":1,"currency":"YER"}', "NUL character"),
    (b'{"order_ref":"\xff","amount":1,"currency":"YER"}', "invalid UTF-8"),
    (("{\"order_ref\":\"a\",\"amount\":1,\"currency\":\"YER\",\"" + "x" * 63 + "\u00e9\":1}").encode(),
     "unknown field (a name of 65 bytes)"),
]


def test_bad_requests():
    d, sim = start_checkout()
    try:
        for raw, why in BAD_BODIES:
            status, _, doc = post(d, raw)
            check_eq((status, doc and doc.get("error")), (400, "invalid_request"), f"{raw[:60]!r}")
            check(why in doc["detail"], f"{raw[:60]!r}: detail {doc['detail']!r} names {why!r}")
        status, headers, _ = post(d, None, method="GET")
        check_eq((status, headers.get("Allow")), (405, "POST"), "GET: 405 with Allow")
        status, _, _ = post(d, order_body("a"), path="/charges/x")
        check_eq(status, 404, "another path")
        status, _, _ = post(d, order_body("a"), path="/")
        check_eq(status, 404, "the root")
        status, _, _ = post(d, b"order_ref=a", headers={"Content-Type": "text/plain"})
        check_eq(status, 415, "not JSON")
        status, _, _ = post(d, b"{}", headers={"Content-Type": "application/json; charset=utf-8"})
        check_eq(status, 400, "a charset parameter is fine")
        status, _, _ = post(d, json.dumps(order_body("a", 1, description="x" * 40000)).encode())
        check_eq(status, 413, "over max_body")
        check_eq(d.query("SELECT COUNT(*) AS n FROM charge_requests"), [{"n": 0}],
                 "no request row from a bad request")
        check_eq(sim.control("stats")["charge_creates"], 0, "nothing sent to CashPay")
        check_eq(checkout_metric(d, 400), len(BAD_BODIES) + 1, "counted: 400")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def test_bearer():
    port = free_port()
    d, sim = start(extra={**QUIET, "checkout.listen": f"127.0.0.1:{port}"})
    try:
        # the token file is part of the config: restart with it
        token_file = os.path.join(d.dir, "checkout.token")
        with open(token_file, "w") as f:
            f.write("old-token-rotating-out\n" + TOKEN + "\n")
        check_eq(d.stop(), 0, "first run")
        d.write_config({**d.base_config, **current_api_config(d, sim),
                        "checkout.listen": f"127.0.0.1:{port}",
                        "checkout.token_file": token_file})
        d.start()
        d.checkout_port = port
        for headers, what in [({}, "missing"), ({"Authorization": "Bearer nope"}, "wrong"),
                              ({"Authorization": "Bearer " + TOKEN[:-1]}, "a prefix"),
                              ({"Authorization": "Bearer " + TOKEN + "x"}, "longer"),
                              ({"Authorization": "Basic " + TOKEN}, "another scheme"),
                              ({"Authorization": TOKEN}, "no scheme")]:
            status, _, doc = post(d, order_body("order-b"), headers=headers)
            check_eq((status, doc), (401, {"error": "unauthorized"}), f"bearer {what}")
        status, _, doc = post(d, order_body("order-b"), headers={"Authorization": "Bearer " + TOKEN})
        check_eq(status, 201, f"the right bearer: {doc}")
        status, _, doc = post(d, order_body("order-b"),
                              headers={"Authorization": "bearer old-token-rotating-out"})
        check_eq(status, 200, f"the other token of the file: {doc}")
        check_eq(len(requests_of(d, "order-b")), 1, "no row from refused requests")
        check(TOKEN not in d.log_text(), "the token is never logged")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def current_api_config(d, sim):
    return {
        "cashpay.api_url": f"http://127.0.0.1:{sim.port}/v1",
        "cashpay.public_url": f"http://127.0.0.1:{d.port}",
        "cashpay.token_file": sim.token_file,
        "cashpay.request_timeout": "2",
        "webhook.confirm": "none",
        **QUIET,
    }


def test_unavailable_then_one_charge():
    d, sim = start_checkout()
    try:
        for fault in ["503", "500", "close"]:
            sim.control("config", {"api_fault": fault, "api_fault_on": "create"})
            status, headers, doc = post(d, order_body("order-u", 900))
            check_eq((status, doc), (503, {"error": "cashpay_unavailable"}), f"fault {fault}")
            check(headers.get("Retry-After"), f"Retry-After with fault {fault}: {headers}")
        # created at CashPay, but the answer is lost (hangs past request_timeout)
        sim.control("config", {"api_fault": "hang", "hang_ms": 3000, "api_fault_after": True})
        status, headers, doc = post(d, order_body("order-u", 900))
        check_eq((status, doc), (503, {"error": "cashpay_unavailable"}), "hang")
        check(headers.get("Retry-After"), "Retry-After after a hang")
        req = requests_of(d, "order-u")
        check_eq([(r["state"], r["attempts"]) for r in req], [("pending", 4)],
                 "one pending row, every attempt on it")
        check_eq(d.query("SELECT COUNT(*) AS n FROM orders WHERE order_ref = 'order-u'"),
                 [{"n": 0}], "no order before CashPay answered with a charge")
        key = req[0]["idempotency_key"]
        check_eq(len(sim_charges_for_key(sim, key)), 1, "the hang created it at CashPay")

        sim.control("config", {"api_fault": "none", "api_fault_after": False})
        status, _, doc = post(d, order_body("order-u", 900))
        check_eq(status, 201, f"the retry: {doc}")
        stats = sim.control("stats")
        # (the sim counts keys of the creates it got to: the lost answer and the retry)
        check_eq(stats["creates_by_idempotency_key"].get(key), 2, "both with the one key")
        at_sim = sim_charges_for_key(sim, key)
        check_eq(len(at_sim), 1, "one charge at CashPay")
        check_eq(doc["charge_id"], at_sim[0]["charge"]["id"], "and it is the one answered")
        check_eq(stats["charges_created"], 1, "one charge in all")
        check_eq(checkout_metric(d, 503), 4, "counted: 503")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def test_refused():
    d, sim = start_checkout()
    try:
        sim.control("config", {"api_fault": "422", "api_fault_on": "create", "api_fault_count": 1})
        status, _, doc = post(d, order_body("order-r", 100))
        check_eq((status, doc["error"], doc["status"]), (502, "cashpay_refused", 422), f"{doc}")
        check(doc["detail"], f"a detail: {doc}")
        check_eq([(r["state"], r["http_status"]) for r in requests_of(d, "order-r")],
                 [("refused", 422)], "the refused row")
        status, _, doc = post(d, order_body("order-r", 100))
        check_eq(status, 201, f"after a refusal a new request: {doc}")
        check_eq([r["state"] for r in requests_of(d, "order-r")], ["refused", "created"],
                 "a new row")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


@sqlite_only("moves the SQLite file away; a PostgreSQL server has none")
def test_unrecorded_is_never_sent():
    """The writer records the creations waiting at one moment in one
    transaction, and sends nothing before it commits: with the database
    file moved away that transaction cannot begin, the request is answered
    503 unavailable and CashPay never hears of it; with the file back the
    same order_ref is created once."""
    d, sim = start_checkout()
    try:
        away = d.db_path + ".away"
        os.rename(d.db_path, away)
        try:
            status, _, doc = post(d, order_body("order-db", 700))
        finally:
            os.rename(away, d.db_path)
        check_eq((status, doc), (503, {"error": "unavailable"}), "no database")
        check_eq(sim.control("stats")["charge_creates"], 0, "nothing sent to CashPay")
        check_eq(requests_of(d, "order-db"), [], "no request row")
        status, _, doc = post(d, order_body("order-db", 700))
        check_eq(status, 201, f"with the file back: {doc}")
        check_eq(sim.control("stats")["charge_creates"], 1, "one create")
        check_eq([r["state"] for r in requests_of(d, "order-db")], ["created"], "one row")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def test_parallel_requests_make_one_charge():
    d, sim = start_checkout(extra={"cashpay.max_inflight": "64"})
    try:
        sim.control("config", {"api_latency_ms": 300})
        results = [None] * 20

        def one(i):
            results[i] = post(d, order_body("order-p", 4200))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        statuses = sorted(r[0] for r in results)
        check_eq(statuses, [200] * 19 + [201], "one 201, nineteen 200")
        ids = {r[2]["charge_id"] for r in results}
        check_eq(len(ids), 1, "all the same charge")
        stats = sim.control("stats")
        check_eq((stats["charge_creates"], stats["charges_created"]), (1, 1),
                 "one request to CashPay, one charge")
        check_eq(len(requests_of(d, "order-p")), 1, "one request row")
        check_eq(d.query("SELECT COUNT(*) AS n FROM orders WHERE order_ref = 'order-p'"),
                 [{"n": 1}], "one order")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def test_webhook_before_the_201():
    d, sim = start_checkout(webhooks=True)
    try:
        sim.control("config", {"api_fault": "hang", "hang_ms": 3000, "api_fault_on": "create",
                               "api_fault_after": True, "api_fault_count": 1})
        status, _, _ = post(d, order_body("order-w", 300))
        check_eq(status, 503, "the answer lost")
        key = requests_of(d, "order-w")[0]["idempotency_key"]
        cid = sim_charges_for_key(sim, key)[0]["charge"]["id"]
        sim.control(f"charges/{cid}/webhook", {})
        wait_for("the INITIATED webhook", lambda: d.query(
            "SELECT 1 FROM orders WHERE charge_id = ?", cid))
        status, _, doc = post(d, order_body("order-w", 300))
        check_eq((status, doc["charge_id"]), (201, cid), f"then the 201: {doc}")
        o = d.query("SELECT status, order_ref, return_ref FROM orders WHERE charge_id = ?", cid)
        check_eq(o, [{"status": "INITIATED", "order_ref": "order-w",
                      "return_ref": doc["return_ref"]}], "the webhook's order gained the refs")
        check_eq([r["source"] for r in d.query(
            "SELECT source FROM order_events WHERE charge_id = ? ORDER BY id", cid)],
            ["webhook"], "one INITIATED event, the webhook's")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def test_sigterm_with_a_held_request():
    d, sim = start_checkout(extra={"cashpay.request_timeout": "20"})
    try:
        sim.control("config", {"api_fault": "hang", "hang_ms": 30000, "api_fault_on": "create"})
        result = {}
        worker = threading.Thread(target=lambda: result.update(
            answer=post(d, order_body("order-s", 100))))
        worker.start()
        wait_for("a create hanging at the sim", lambda: sim.control("stats")["api_inflight"] >= 1)
        check_eq(d.stop(), 0, "exit status with a held request")
        worker.join(10)
        status, headers, doc = result["answer"]
        check_eq(status, 503, f"the held request answered: {doc}")
        check(headers.get("Retry-After"), f"with Retry-After: {headers}")
        check_eq([r["state"] for r in requests_of(d, "order-s")], ["pending"],
                 "the request stays pending for its retry")
    finally:
        finish(d, sim)


def test_held_requests_are_bounded():
    """At most max_inflight requests wait for CashPay; one more is answered
    503 at once, and the waiting ones 503 at SIGTERM."""
    d, sim = start_checkout(extra={"cashpay.max_inflight": "2", "cashpay.request_timeout": "20"})
    try:
        sim.control("config", {"api_fault": "hang", "hang_ms": 30000, "api_fault_on": "create"})
        results = {}
        workers = [threading.Thread(target=lambda ref=ref: results.update(
            {ref: post(d, order_body(ref, 100))})) for ref in ("order-h1", "order-h2")]
        for w in workers:
            w.start()
        wait_for("two creates hanging at the sim",
                 lambda: sim.control("stats")["api_inflight"] >= 2)
        status, headers, doc = post(d, order_body("order-h3", 100))
        check_eq((status, doc), (503, {"error": "cashpay_unavailable"}), "the third, at once")
        check(headers.get("Retry-After"), "with Retry-After")
        check_eq(requests_of(d, "order-h3"), [], "and nothing recorded for it")
        check_eq(d.stop(), 0, "exit status")
        for w in workers:
            w.join(10)
        check_eq(sorted(r[0] for r in results.values()), [503, 503], "the held ones at SIGTERM")
    finally:
        finish(d, sim)


if __name__ == "__main__":
    run_tests([
        test_created_then_repeats_and_conflicts,
        test_failed_order_gets_a_new_charge,
        test_bad_requests,
        test_bearer,
        test_unavailable_then_one_charge,
        test_refused,
        test_unrecorded_is_never_sent,
        test_parallel_requests_make_one_charge,
        test_webhook_before_the_201,
        test_sigterm_with_a_held_request,
        test_held_requests_are_bounded,
    ])
