"""The return page and the status endpoint: every case of the contract,
the security headers, HEAD, and that the browser can never change state."""
import json

from harness import Daemon, charge, check, check_eq, random_charge_id, run_tests

D = None
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def get(path, daemon=None, method="GET"):
    return (daemon or D).request(method, path)


def check_security_headers(headers, what):
    for name, value in SECURITY_HEADERS.items():
        check_eq(headers.get(name), value, f"{what}: {name}")


def test_captured_page():
    c = charge(status="CAPTURED", amount=1234567)
    D.post_json(c)
    status, headers, body = get(f"/cashpay/return?charge_id={c['id']}")
    check_eq(status, 200, "status")
    check(headers["Content-Type"].startswith("text/html"), "html")
    check_security_headers(headers, "captured")
    html = body.decode()
    check("Payment received" in html, "title")
    check("1,234,567" in html and "YER" in html, "amount with currency")
    check('http-equiv="refresh"' not in html, "no refresh once final")


def test_failed_page():
    c = charge(status="FAILED")
    D.post_json(c)
    status, headers, body = get(f"/cashpay/return?id={c['id']}")
    check_eq(status, 200, "status")
    check("Payment failed" in body.decode(), "title")


def test_pending_page_for_initiated_and_unknown():
    c = charge(status="INITIATED")
    D.post_json(c)
    for cid in (c["id"], random_charge_id()):
        status, headers, body = get(f"/cashpay/return?charge_id={cid}")
        check_eq(status, 200, "status")
        html = body.decode()
        check("Processing your payment" in html, "title")
        check('http-equiv="refresh" content="3"' in html, "refreshes every 3 s")
        check_security_headers(headers, "pending")


def test_bad_ids_are_400():
    for query in ("", "?charge_id=", "?charge_id=abc", "?charge_id=chg_a/b", "?charge_id=chg_%3Cscript%3E",
                  "?charge_id=chg_" + "a" * 129):
        status, headers, body = get("/cashpay/return" + query)
        check_eq(status, 400, f"status for {query!r}")
        check("<script>" not in body.decode(), "nothing reflected unescaped")
        check_security_headers(headers, "400")


def test_head_has_no_body():
    c = charge(status="CAPTURED")
    D.post_json(c)
    status, headers, body = get(f"/cashpay/return?charge_id={c['id']}", method="HEAD")
    check_eq(status, 200, "status")
    check_eq(body, b"", "no body")


def test_return_page_never_writes():
    cid = random_charge_id()
    get(f"/cashpay/return?charge_id={cid}")
    check_eq(D.query("SELECT count(*) AS n FROM orders WHERE charge_id = ?", cid)[0]["n"], 0, "no order")
    check_eq(D.request("POST", f"/cashpay/return?charge_id={cid}", b"x", {})[0], 405, "POST refused")


def test_status_endpoint():
    c = charge(status="CAPTURED")
    D.post_json(c)
    status, headers, body = get(f"/cashpay/status/{c['id']}")
    check_eq(status, 200, "status")
    check_eq(json.loads(body), {"charge_id": c["id"], "status": "CAPTURED"}, "body")
    check_eq(get(f"/cashpay/status/{random_charge_id()}")[0], 404, "unknown")
    check_eq(get("/cashpay/status/not-an-id")[0], 404, "malformed")


def test_redirects_with_templates():
    extra = {"return.success_url": "https://shop.example/thanks?order={order_ref}&c={charge_id}",
             "return.failure_url": "/checkout/failed/{charge_id}",
             "webhook.order_ref_field": "metadata.order_id",
             "return.shop_name": "Watch & Co <Aden>"}
    with Daemon(extra) as d:
        ok = charge(status="CAPTURED", metadata={"order_id": "A 1/2&3"})
        d.post_json(ok)
        status, headers, _ = d.request("GET", f"/cashpay/return?charge_id={ok['id']}")
        check_eq(status, 303, "success redirect")
        check_eq(headers["Location"], f"https://shop.example/thanks?order=A%201%2F2%263&c={ok['id']}",
                 "Location URL-encoded")
        bad = charge(status="FAILED")
        d.post_json(bad)
        status, headers, _ = d.request("GET", f"/cashpay/return?charge_id={bad['id']}")
        check_eq((status, headers["Location"]), (303, f"/checkout/failed/{bad['id']}"), "failure redirect")
        pending = charge(status="INITIATED")
        d.post_json(pending)
        status, _, body = d.request("GET", f"/cashpay/return?charge_id={pending['id']}")
        check_eq(status, 200, "pending is not redirected")
        html = body.decode()
        check("Watch &amp; Co &lt;Aden&gt;" in html, "shop name escaped")


if __name__ == "__main__":
    with Daemon() as daemon:
        D = daemon
        run_tests([v for k, v in list(globals().items()) if k.startswith("test_")])
