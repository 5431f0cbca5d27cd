#!/usr/bin/env python3
"""The whole Getting Started guide in a real browser (CONTRACT §2, §8).

The real daemon with [cashpay] api_url at cashpay-sim and confirm = api;
headless Chromium driven over the DevTools protocol (cdplib.py):

- the merchant's app creates a charge (POST /charges on the checkout
  listener, with its bearer); the browser opens its transaction_url at the
  simulator, presses Pay with the mouse, is sent to the daemon's return
  page (redirect_url, ?ref=) and sees "Payment received"; the webhook is
  confirmed with the API and the order is CAPTURED;
- the same with the simulator dropping the webhook: the return page fetches
  the charge from the API and still shows "Payment received"; the order is
  CAPTURED by an order_events row of source 'api' naming that fetch;
- a forged unsigned webhook (verify = none) claiming CAPTURED for a charge
  nobody paid is unconfirmed, the order stays INITIATED and its return page
  says the payment is being processed.

Each final page is photographed and the picture checked for the page's
state colour (as test_page_browser.py does). CASHPAYD_SCREENSHOT_DIR, when
set, keeps the pictures there; otherwise they go with the test's
temporary directory. A missing browser is a failure, not a skip.
"""
import http.client
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "integration"))
sys.path.insert(0, HERE)

from harness import check, check_eq, free_port, run_tests  # noqa: E402
from test_reconcile import finish, order, start, wait_for  # noqa: E402
from cdplib import Browser  # noqa: E402
import test_page_browser as pictures  # noqa: E402

TMP = tempfile.mkdtemp(prefix="guide-browser-")
SHOTS = os.environ.get("CASHPAYD_SCREENSHOT_DIR") or TMP

# The merchant's app authenticates to the checkout listener ([checkout] token_file).
APP_TOKEN = "guide-app-token-Vb81"
APP_TOKEN_FILE = os.path.join(TMP, "app.token")
with open(APP_TOKEN_FILE, "w") as f:
    f.write(APP_TOKEN + "\n")

# The webhooks' fetches and the return page's only: no reconciler sweep.
API = {"cashpay.reconcile_after": "3600", "webhook.confirm": "api"}


def start_guide(extra=None):
    """The daemon with its checkout listener (the app's bearer required)
    and the simulator beside it."""
    port = free_port()
    d, sim = start(extra={**API, "checkout.listen": f"127.0.0.1:{port}",
                          "checkout.token_file": APP_TOKEN_FILE, **(extra or {})})
    d.checkout_port = port
    return d, sim


def create_charge(d, ref, amount=2000):
    """Step 1 of the guide, as the merchant's app: POST /charges."""
    body = json.dumps({"order_ref": ref, "amount": amount, "currency": "YER",
                       "description": "Purchase of a watch"})
    conn = http.client.HTTPConnection("127.0.0.1", d.checkout_port, timeout=30)
    try:
        conn.request("POST", "/charges", body=body,
                     headers={"Content-Type": "application/json",
                              "Authorization": "Bearer " + APP_TOKEN})
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    check_eq(resp.status, 201, f"POST /charges: {raw[:300]!r}")
    created = json.loads(raw)
    check_eq((created["order_ref"], created["status"]), (ref, "INITIATED"), "the new charge")
    check(created["transaction_url"] and created["return_ref"], created)
    return created


def return_page(d):
    return f"http://127.0.0.1:{d.port}/cashpay/return?ref="


def pay_in_browser(b, created):
    """Steps 2 and 3: open the payment page, press Pay."""
    b.navigate(created["transaction_url"])
    b.wait_until("the payment page",
                 lambda url, text: url.startswith(created["transaction_url"]) and
                 created["charge_id"] in text and "Pay" in text)
    b.click("pay-button")


def check_picture(path, state):
    """The screenshot shows a page in @state's colour, not a blank one."""
    w, h, rows, bpp = pictures.read_png(path)
    accent = pictures.PAGES[state + ".html"][0]
    colours, distinct_rows, accent_pixels = pictures.analyse(rows, bpp, accent)
    print(f"   {os.path.basename(path)}: {w}x{h}, {colours} colours, {distinct_rows} rows, "
          f"{accent_pixels} pixels of the {state} colour")
    check(colours >= pictures.MIN_COLOURS and distinct_rows >= pictures.MIN_DISTINCT_ROWS,
          f"{path}: a blank page?")
    check(accent_pixels >= pictures.MIN_ACCENT_PIXELS, f"{path}: not the {state} page")


def final_page(b, d, created, title, shot, state):
    """Waits for the return page of @created to say @title (it refreshes
    itself), photographs it and checks the picture."""
    want = return_page(d) + created["return_ref"]
    url, text = b.wait_until(f'"{title}" on the return page',
                             lambda url, text: url == want and title in text)
    path = os.path.join(SHOTS, shot)
    b.screenshot(path)
    check_picture(path, state)
    return text


def events(d, cid):
    return d.query("SELECT from_status, to_status, source, delivery_id, fetch_id "
                   "FROM order_events WHERE charge_id = ? ORDER BY id", cid)


def test_paid_with_the_webhook():
    d, sim = start_guide()
    try:
        sim.control("config", {"webhook_drop": False})
        created = create_charge(d, "guide-paid")
        cid = created["charge_id"]
        check_eq(order(d, cid)["status"], "INITIATED", "the app's charge is an INITIATED order")
        with Browser() as b:
            pay_in_browser(b, created)
            final_page(b, d, created, "Payment received", "guide-paid.png", "success")
        wait_for("the webhook acknowledged",
                 lambda: sim.control("stats")["webhooks"]["acknowledged"] >= 1)
        o = d.query("SELECT status, captured_at FROM orders WHERE charge_id = ?", cid)[0]
        check_eq(o["status"], "CAPTURED", "the order")
        check(o["captured_at"], "captured_at set")
        deliveries = d.query("SELECT outcome, http_status FROM webhook_deliveries "
                             "WHERE charge_id = ?", cid)
        # The return page may have fetched the capture first: then the
        # (confirmed) webhook is a duplicate.
        check(len(deliveries) >= 1 and all(x["http_status"] == 200 and
                                           x["outcome"] in ("applied", "duplicate")
                                           for x in deliveries), deliveries)
        ev = events(d, cid)
        check_eq([(e["from_status"], e["to_status"], e["source"]) for e in ev],
                 [(None, "INITIATED", "checkout"), ("INITIATED", "CAPTURED", "api")],
                 "the order's history: created, then CAPTURED as the API says")
        check(ev[1]["fetch_id"], "the capture names its fetch")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def test_paid_with_the_webhook_dropped():
    d, sim = start_guide()
    try:
        created = create_charge(d, "guide-dropped")
        cid = created["charge_id"]
        with Browser() as b:
            pay_in_browser(b, created)
            final_page(b, d, created, "Payment received", "guide-webhook-dropped.png",
                       "success")
        check(sim.control("stats")["webhooks"]["dropped"] >= 1, "the sim dropped the webhook")
        check(not d.query("SELECT 1 FROM webhook_deliveries WHERE charge_id = ?", cid),
              "no webhook arrived")
        check_eq(order(d, cid)["status"], "CAPTURED", "the order")
        ev = events(d, cid)
        check_eq([(e["from_status"], e["to_status"], e["source"]) for e in ev],
                 [(None, "INITIATED", "checkout"), ("INITIATED", "CAPTURED", "api")],
                 "created, then CAPTURED from the API")
        fetch = d.query("SELECT reason, http_status, status FROM api_fetches WHERE id = ?",
                        ev[1]["fetch_id"])
        check_eq(fetch, [{"reason": "return", "http_status": 200, "status": "CAPTURED"}],
                 "the return page's fetch the event names")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def test_forged_webhook_for_an_unpaid_charge():
    d, sim = start_guide({"webhook.verify": "none"})
    try:
        created = create_charge(d, "guide-forged")
        cid = created["charge_id"]
        forged = {"id": cid, "status": "CAPTURED", "amount": 2000, "currency": "YER",
                  "description": "Purchase of a watch",
                  "transaction_url": created["transaction_url"], "created": 1672531200}
        status, body = d.post_json(forged, sign=False)
        check_eq((status, body), (200, {"outcome": "unconfirmed"}), "the forged webhook")
        with Browser() as b:
            b.navigate(return_page(d) + created["return_ref"])
            text = final_page(b, d, created, "Processing your payment", "guide-forged.png",
                              "pending")
        check("Payment received" not in text, "not paid")
        check_eq(order(d, cid)["status"], "INITIATED", "the order stays INITIATED")
        check_eq([(x["outcome"], x["claimed_status"]) for x in d.query(
            "SELECT outcome, claimed_status FROM webhook_deliveries WHERE charge_id = ?", cid)],
                 [("unconfirmed", "CAPTURED")], "the delivery")
        check_eq([e["to_status"] for e in events(d, cid)], ["INITIATED"], "no other event")
        check_eq(sim.control(f"charges/{cid}")["charge"]["status"], "INITIATED", "nobody paid")
        check_eq(d.stop(), 0, "exit status")
    finally:
        finish(d, sim)


def main():
    try:
        if SHOTS != TMP:
            os.makedirs(SHOTS, exist_ok=True)
        run_tests([test_paid_with_the_webhook, test_paid_with_the_webhook_dropped,
                   test_forged_webhook_for_an_unpaid_charge])
    finally:
        if SHOTS != TMP:
            print(f"screenshots in {SHOTS}", flush=True)
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
