#!/usr/bin/env python3
"""The return page asks the API about an INITIATED charge (CONTRACT §2, §8.5).

Against cashpay-sim with its webhooks dropped and reconciliation far off
(reconcile_after = 3600): the first load of the return page after paying
shows "Payment received", recorded through the writer (an api_fetches row
with reason 'return', an order_events row with source 'api'); a second
load within `refresh` seconds does not ask again; a charge the database
does not know is fetched too; `?ref=` (the order's return_ref) finds the
order and wins over charge_id, an unknown ref is a 400; a hanging API holds the page at most about
2 s (then "processing"); no more than max_inflight pages are held; and
SIGTERM while a page is held answers it and exits at once. Over HTTPS too
(the poll() loop).
"""
import http.client
import json
import subprocess
import threading
import time

from harness import check, check_eq, run_tests
from test_reconcile import CTL, TOKEN, create, finish, order, start, wait_for

PAGE = "/cashpay/return?charge_id="


def fetches(d, cid):
    return d.query("SELECT reason, http_status, status FROM api_fetches WHERE charge_id = ? "
                   "ORDER BY id", cid)


def load(d, cid):
    t0 = time.monotonic()
    status, _, body = d.request("GET", PAGE + cid)
    return status, body.decode(), time.monotonic() - t0


def test_first_load_shows_the_payment():
    d, sim = start(reconcile_after=3600)
    try:
        cid = create(d, "order-return")
        sim.control(f"charges/{cid}/pay", {})
        status, body, took = load(d, cid)
        print(f"   first load after paying: {took * 1000:.0f} ms")
        check_eq(status, 200, "return page")
        check("Payment received" in body, body[:400])
        check_eq(order(d, cid)["status"], "CAPTURED", "recorded in the database")
        check_eq(fetches(d, cid), [{"reason": "return", "http_status": 200,
                                    "status": "CAPTURED"}], "one api_fetches row")
        events = d.query("SELECT source, to_status FROM order_events WHERE charge_id = ? "
                         "AND source = 'api'", cid)
        check_eq(events, [{"source": "api", "to_status": "CAPTURED"}], "the api event")

        # A charge still INITIATED: fetched on the first load, not on the second.
        other = create(d, "order-return-2")
        before = sim.control("stats")["charge_fetches"]
        for _ in range(2):
            status, body, _ = load(d, other)
            check_eq(status, 200, "pending page")
            check("Payment received" not in body, "still processing")
        check_eq(len(fetches(d, other)), 1, "one fetch within refresh")
        check_eq(sim.control("stats")["charge_fetches"] - before, 1, "the sim was asked once")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def create_at_sim(sim, d):
    """A charge the daemon's database does not know (made past cashpayctl)."""
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    try:
        body = json.dumps({"amount": 1500, "currency": "YER",
                           "post_url": f"http://127.0.0.1:{d.port}/cashpay/webhook",
                           "redirect_url": f"http://127.0.0.1:{d.port}/cashpay/return"})
        conn.request("POST", "/v1/charges", body=body,
                     headers={"Content-Type": "application/json",
                              "Authorization": "Bearer " + TOKEN})
        resp = conn.getresponse()
        raw = resp.read()
        check_eq(resp.status, 201, raw[:200])
        return json.loads(raw)["id"]
    finally:
        conn.close()


def test_unknown_charge_is_fetched():
    d, sim = start(reconcile_after=3600)
    try:
        cid = create_at_sim(sim, d)
        check_eq(order(d, cid), None, "not in the database")
        sim.control(f"charges/{cid}/pay", {})
        status, body, _ = load(d, cid)
        check_eq(status, 200, "return page")
        check("Payment received" in body, body[:400])
        check_eq(order(d, cid)["status"], "CAPTURED", "recorded from the API")
        check_eq([f["reason"] for f in fetches(d, cid)], ["return"], "one fetch")
        # A charge CashPay does not know either: asked once, "processing".
        status, body, _ = load(d, "chg_nobodyknowsthis1")
        check_eq(status, 200, "pending page")
        check_eq([f["http_status"] for f in fetches(d, "chg_nobodyknowsthis1")], [404],
                 "the 404 is recorded")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def create_with_ref(d, ref, description):
    proc = subprocess.run([CTL, "--config", d.config_path, "--json", "charge", "create",
                           "--order-ref", ref, "--amount", "2000", "--currency", "YER",
                           "--description", description], capture_output=True, timeout=30)
    check_eq(proc.returncode, 0, proc.stderr.decode())
    out = json.loads(proc.stdout)
    check(len(out["return_ref"]) >= 22, f"a return_ref: {out}")
    return out["charge_id"], out["return_ref"]


def test_return_ref_finds_the_order():
    """?ref= (the order's return_ref, §8.3) wins over charge_id/id; an unknown ref is a 400."""
    d, sim = start(reconcile_after=3600)
    try:
        cid, rref = create_with_ref(d, "order-ref-1", "Watch <b>&</b> strap")
        sim.control(f"charges/{cid}/pay", {})
        # A stray charge_id next to the ref does not matter: the ref wins.
        status, _, raw = d.request("GET", f"/cashpay/return?ref={rref}&charge_id=chg_other")
        body = raw.decode()
        check_eq(status, 200, "return page by ref")
        check("Payment received" in body, body[:400])
        check(cid in body, "the order's charge shown")
        check("Watch &lt;b&gt;&amp;&lt;/b&gt; strap" in body, "description escaped")
        check("<b>" not in body, "nothing unescaped")
        check_eq(fetches(d, cid), [{"reason": "return", "http_status": 200,
                                    "status": "CAPTURED"}], "fetched through the page")
        check_eq(order(d, cid)["status"], "CAPTURED", "recorded")

        # Still INITIATED, by ref: fetched once, "processing".
        other, oref = create_with_ref(d, "order-ref-2", "x")
        status, _, raw = d.request("GET", f"/cashpay/return?ref={oref}")
        check_eq(status, 200, "pending page by ref")
        check("Payment received" not in raw.decode(), "processing")
        check_eq(len(fetches(d, other)), 1, "fetched once")

        before = sim.control("stats")["charge_fetches"]
        for bad in ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "%3Cscript%3E", "", "a" * 65):
            status, _, raw = d.request("GET", f"/cashpay/return?ref={bad}&charge_id={cid}")
            check_eq(status, 400, f"unknown or bad ref {bad[:20]!r}")
            check("<script>" not in raw.decode(), "nothing reflected unescaped")
        check_eq(sim.control("stats")["charge_fetches"] - before, 0, "no fetch for a bad ref")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def test_hanging_api_holds_at_most_2s_and_stop_answers():
    d, sim = start(reconcile_after=3600)
    try:
        cid = create(d, "order-return-hang")
        sim.control("config", {"api_fault": "hang", "api_fault_on": "fetch"})
        status, body, took = load(d, cid)
        print(f"   load with the API hanging: {took * 1000:.0f} ms")
        check_eq(status, 200, "pending page")
        check("Payment received" not in body, "processing")
        check(1.8 < took < 2.5, f"held about 2 s: {took:.2f} s")

        # A page held at SIGTERM is answered, and the daemon exits promptly.
        other = create(d, "order-return-hang-2")
        result = {}
        t = threading.Thread(target=lambda: result.update(r=load(d, other)))
        t.start()
        wait_for("a held page", lambda: sim.control("stats")["api_inflight"] >= 2)
        t0 = time.monotonic()
        check_eq(d.stop(), 0, "exit status")
        stopped = time.monotonic() - t0
        t.join(5)
        print(f"   SIGTERM with a page held: exit after {stopped * 1000:.0f} ms")
        check(stopped < 1.5, f"stopped promptly: {stopped:.2f} s")
        check("r" in result and result["r"][0] in (200, 503), f"the held page was answered: "
              f"{result.get('r', (None,))[0]}")
    finally:
        finish(d, sim)


def test_held_pages_are_bounded():
    """Beyond max_inflight held pages, a page answers from the database at once."""
    d, sim = start(reconcile_after=3600, extra={"cashpay.max_inflight": "1"})
    try:
        held, other = create(d, "order-held-1"), create(d, "order-held-2")
        sim.control("config", {"api_fault": "hang", "api_fault_on": "fetch"})
        t = threading.Thread(target=lambda: load(d, held))
        t.start()
        wait_for("a held page", lambda: sim.control("stats")["api_inflight"] >= 1)
        status, body, took = load(d, other)
        print(f"   a second page while one is held (max_inflight = 1): {took * 1000:.0f} ms")
        check_eq(status, 200, "pending page")
        check(took < 1, f"answered at once: {took:.2f} s")
        t.join(5)
        check_eq(fetches(d, other), [], "not fetched")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def test_over_https():
    d, sim = start(reconcile_after=3600, tls=True)
    try:
        cid = create(d, "order-return-tls")
        sim.control(f"charges/{cid}/pay", {})
        status, body, _ = load(d, cid)
        check_eq(status, 200, "return page over HTTPS")
        check("Payment received" in body, body[:400])
        check_eq(len(fetches(d, cid)), 1, "one api_fetches row")
        hung = create(d, "order-return-tls-hang")
        sim.control("config", {"api_fault": "hang", "api_fault_on": "fetch"})
        status, body, took = load(d, hung)
        print(f"   HTTPS load with the API hanging: {took * 1000:.0f} ms")
        check_eq(status, 200, "pending page")
        check(1.8 < took < 2.5, f"held about 2 s: {took:.2f} s")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


if __name__ == "__main__":
    run_tests([test_first_load_shows_the_payment, test_unknown_charge_is_fetched,
               test_return_ref_finds_the_order,
               test_hanging_api_holds_at_most_2s_and_stop_answers, test_held_pages_are_bounded,
               test_over_https])
