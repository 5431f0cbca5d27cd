"""The webhook endpoint against a real daemon: every status code of the
contract, every outcome, and the delivery row each POST leaves behind."""
import json
import os
import socket
import time

from harness import (Daemon, charge, check, check_eq, hmac_hex, postgresql_only,
                     random_charge_id, read_to_end, run_tests)

D = None


def deliveries_for(charge_id):
    return D.query("SELECT * FROM webhook_deliveries WHERE charge_id = ? ORDER BY id", charge_id)


def last_delivery():
    return D.query("SELECT * FROM webhook_deliveries ORDER BY id DESC LIMIT 1")[0]


def count_deliveries():
    return D.query("SELECT count(*) AS n FROM webhook_deliveries")[0]["n"]


def test_applied_creates_order_event_and_delivery():
    c = charge(status="INITIATED")
    status, body = D.post_json(c)
    check_eq(status, 200, "status")
    check_eq(body, {"outcome": "applied"}, "body")
    order = D.query("SELECT * FROM orders WHERE charge_id = ?", c["id"])[0]
    check_eq(order["status"], "INITIATED", "order status")
    check_eq(order["amount"], 2000, "amount")
    check_eq(order["currency"], "YER", "currency")
    check_eq(order["description"], "Purchase of a watch", "description")
    check_eq(order["charge_created"], 1672531200, "created")
    check(order["first_seen_at"].endswith("Z") and len(order["first_seen_at"]) == 24,
          f"ISO time with ms: {order['first_seen_at']}")
    events = D.query("SELECT * FROM order_events WHERE charge_id = ?", c["id"])
    check_eq([(e["from_status"], e["to_status"]) for e in events], [(None, "INITIATED")], "events")
    rows = deliveries_for(c["id"])
    check_eq(len(rows), 1, "delivery rows")
    check_eq(rows[0]["outcome"], "applied", "delivery outcome")
    check_eq(rows[0]["http_status"], 200, "delivery http_status")
    check_eq(rows[0]["remote_addr"], "127.0.0.1", "remote_addr")
    check_eq(bytes(rows[0]["body"]), json.dumps(c).encode(), "raw body stored")
    check_eq(events[0]["delivery_id"], rows[0]["id"], "event points at the delivery")


def test_full_state_machine_over_http():
    cid = random_charge_id()
    steps = [
        ("INITIATED", "applied"),
        ("INITIATED", "duplicate"),
        ("FAILED", "applied"),
        ("CAPTURED", "applied"),      # money arrived late
        ("CAPTURED", "duplicate"),
        ("INITIATED", "stale"),
        ("FAILED", "conflict"),
    ]
    for status, outcome in steps:
        code, body = D.post_json(charge(cid, status=status))
        check_eq((code, body), (200, {"outcome": outcome}), f"{status}")
    order = D.query("SELECT * FROM orders WHERE charge_id = ?", cid)[0]
    check_eq(order["status"], "CAPTURED", "final status")
    check_eq(order["needs_review"], 1, "needs_review after CAPTURED -> FAILED")
    check(order["captured_at"] and order["failed_at"], "captured_at and failed_at set")
    events = D.query("SELECT from_status, to_status FROM order_events WHERE charge_id = ? ORDER BY id", cid)
    check_eq([(e["from_status"], e["to_status"]) for e in events],
             [(None, "INITIATED"), ("INITIATED", "FAILED"), ("FAILED", "CAPTURED")], "events")
    outcomes = [r["outcome"] for r in deliveries_for(cid)]
    check_eq(outcomes, [o for _, o in steps], "delivery outcomes")


def test_amount_mismatch_is_conflict():
    cid = random_charge_id()
    check_eq(D.post_json(charge(cid, status="INITIATED"))[1], {"outcome": "applied"}, "first")
    check_eq(D.post_json(charge(cid, status="CAPTURED", amount=1))[1], {"outcome": "conflict"}, "amount")
    check_eq(D.post_json(charge(cid, status="CAPTURED", currency="USD"))[1], {"outcome": "conflict"},
             "currency")
    order = D.query("SELECT status, needs_review FROM orders WHERE charge_id = ?", cid)[0]
    check_eq((order["status"], order["needs_review"]), ("INITIATED", 1), "no change, flagged")


def test_invalid_payloads_are_400_and_recorded():
    cases = [
        (b'{"id":"chg_x","status":"CAPTURED","amount":"2000","currency":"YER","created":1}', "amount"),
        (b'{"id":"chg_x","status":"CAPTURED","amount":20.5,"currency":"YER","created":1}', "amount"),
        (b'{"id":"chg_x","status":"captured","amount":1,"currency":"YER","created":1}', "status"),
        (b'{"id":"x","status":"CAPTURED","amount":1,"currency":"YER","created":1}', "id"),
        (b'{"id":"chg_x","status":"CAPTURED","amount":1,"currency":"yer","created":1}', "currency"),
        (b'[1,2,3]', ""),
        (b'{"id":"chg_x","id":"chg_y"}', ""),
        (b'not json', ""),
        (b'{"id":"chg_\xff","status":"CAPTURED"}', ""),
    ]
    for raw, field in cases:
        before = count_deliveries()
        status, _, data = D.post(raw)
        check_eq(status, 400, f"status for {raw!r}")
        body = json.loads(data)
        check_eq(body["error"], "invalid_payload", "error code")
        check(field in body["detail"], f"detail {body['detail']!r} names {field!r}")
        check_eq(count_deliveries(), before + 1, "one delivery row per POST")
        row = last_delivery()
        check_eq((row["outcome"], row["http_status"]), ("invalid", 400), "row")
        check_eq(bytes(row["body"]), raw, "body stored")


def test_valid_id_named_in_invalid_row():
    raw = json.dumps(charge("chg_namedinvalid", amount=-1)).encode()
    check_eq(D.post(raw)[0], 400, "status")
    check_eq(last_delivery()["charge_id"], "chg_namedinvalid", "charge id recorded")


def test_unauthorized():
    raw = json.dumps(charge()).encode()
    cases = [
        ({}, "missing"),
        ({"X-CashPay-Signature": "00" * 32}, "wrong"),
        ({"X-CashPay-Signature": hmac_hex("other-secret", raw)}, "other secret"),
        ({"X-CashPay-Signature": "zz"}, "garbage"),
    ]
    for headers, what in cases:
        h = {"Content-Type": "application/json"}
        h.update(headers)
        status, _, data = D.request("POST", "/cashpay/webhook", raw, h)
        check_eq(status, 401, f"status ({what})")
        check_eq(json.loads(data), {"error": "unauthorized"}, f"body ({what})")
        row = last_delivery()
        check_eq((row["outcome"], row["http_status"]), ("unauthorized", 401), f"row ({what})")
    check_eq(D.query("SELECT count(*) AS n FROM orders WHERE charge_id = ?",
                     json.loads(raw)["id"])[0]["n"], 0, "no order from unsigned bodies")


def test_sha256_prefix_and_uppercase_accepted():
    raw = json.dumps(charge()).encode()
    for sig in ("sha256=" + hmac_hex(D.secret, raw), hmac_hex(D.secret, raw).upper()):
        h = {"Content-Type": "application/json; charset=utf-8", "X-CashPay-Signature": sig}
        status, _, data = D.request("POST", "/cashpay/webhook", raw, h)
        check_eq(status, 200, f"status for {sig[:12]}")


def test_rejected_body_truncated():
    raw = json.dumps(charge(description="x" * 3000, padding="y" * 8000)).encode()
    h = {"Content-Type": "application/json", "X-CashPay-Signature": "bad"}
    check_eq(D.request("POST", "/cashpay/webhook", raw, h)[0], 401, "status")
    check_eq(len(last_delivery()["body"]), 4096, "truncated to 4 KiB")


def test_method_not_allowed():
    status, headers, _ = D.request("GET", "/cashpay/webhook")
    check_eq(status, 405, "GET")
    check_eq(headers.get("Allow"), "POST", "Allow header")
    check_eq(D.request("PUT", "/cashpay/webhook", b"{}", {"Content-Type": "application/json"})[0],
             405, "PUT")


def test_unsupported_media_type():
    before = count_deliveries()
    raw = json.dumps(charge()).encode()
    for ct in ("text/plain", "application/jsonx", "application/x-www-form-urlencoded"):
        h = {"Content-Type": ct, "X-CashPay-Signature": hmac_hex(D.secret, raw)}
        check_eq(D.request("POST", "/cashpay/webhook", raw, h)[0], 415, ct)
    check_eq(D.request("POST", "/cashpay/webhook", raw, {})[0], 415, "no content type")
    check_eq(count_deliveries(), before, "415 is not recorded")


def test_too_large_by_content_length():
    raw = b'{"a":"' + b"x" * 70000 + b'"}'
    status, _, _ = D.request("POST", "/cashpay/webhook", raw, {"Content-Type": "application/json"})
    check_eq(status, 413, "status")


def test_too_large_chunked():
    before = count_deliveries()

    def chunks():
        for _ in range(40):
            yield b"x" * 4096
    status, _, _ = D.request("POST", "/cashpay/webhook", chunks(),
                             {"Content-Type": "application/json"}, chunked=True)
    check_eq(status, 413, "status")
    check_eq(count_deliveries(), before, "413 is not recorded")


def test_too_large_chunked_unfinished():
    # The body never ends: the answer must come once max_body (65536) is
    # passed, not when the idle timeout closes the connection.
    before = count_deliveries()
    with socket.create_connection(("127.0.0.1", D.port), timeout=10) as s:
        s.sendall(b"POST /cashpay/webhook HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n" % 4096 + b"x" * 4096 + b"\r\n"
        passed_at = None
        for i in range(40):
            s.sendall(chunk)
            if passed_at is None and (i + 1) * 4096 > 65536:
                passed_at = time.monotonic()
        s.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b"}"):
            more = s.recv(65536)
            check(more, f"closed without a whole answer: {data!r}")
            data += more
        latency = time.monotonic() - passed_at
        check(data.startswith(b"HTTP/1.1 413 "), f"answer: {data[:80]!r}")
        check(b"\r\nconnection: close\r\n" in data.lower(), "Connection: close")
        check(data.endswith(b'\r\n\r\n{"error":"payload_too_large"}'), f"body: {data[-60:]!r}")
        check(latency < 1.0, f"413 arrived {latency:.3f}s after the limit was passed")
        print(f"     413 {latency * 1000:.1f} ms after the limit", flush=True)
        s.settimeout(2)
        check_eq(read_to_end(s), b"", "nothing after the answer, then the close")
    check_eq(count_deliveries(), before, "413 is not recorded")


def test_chunked_within_limit_accepted():
    raw = json.dumps(charge()).encode()
    h = D.sign_headers(raw)

    def chunks():
        yield raw[:10]
        yield raw[10:]
    status, _, data = D.request("POST", "/cashpay/webhook", chunks(), h, chunked=True)
    check_eq(status, 200, f"status {data!r}")


def raw_exchange(request_bytes):
    with socket.create_connection(("127.0.0.1", D.port), timeout=10) as s:
        s.sendall(request_bytes)
        s.shutdown(socket.SHUT_WR)
        return read_to_end(s)


def test_smuggling_shapes_rejected():
    raw = json.dumps(charge()).encode()
    sig = hmac_hex(D.secret, raw)
    head = (b"POST /cashpay/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-CashPay-Signature: " + sig.encode() + b"\r\n")
    two_lengths = head + b"Content-Length: %d\r\nContent-Length: 5\r\n\r\n" % len(raw) + raw
    length_and_chunked = (head + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(raw)
                          + b"%x\r\n" % len(raw) + raw + b"\r\n0\r\n\r\n")
    for name, req in (("two Content-Length", two_lengths), ("CL + chunked", length_and_chunked)):
        reply = raw_exchange(req)
        check(reply.startswith(b"HTTP/1.1 400"), f"{name}: {reply[:40]!r}")
        check_eq(reply.count(b"HTTP/1.1"), 1, f"{name}: exactly one response")


def test_unknown_path_404():
    check_eq(D.request("GET", "/nope")[0], 404, "status")


def test_order_ref_field():
    with Daemon({"webhook.order_ref_field": "metadata.order_id"}) as d:
        c = charge(metadata={"order_id": "ORD-42"})
        check_eq(d.post_json(c)[0], 200, "status")
        check_eq(d.query("SELECT order_ref FROM orders WHERE charge_id = ?", c["id"])[0]["order_ref"],
                 "ORD-42", "order_ref")


def test_allow_from():
    with Daemon({"webhook.allow_from": "10.0.0.0/8, 2001:db8::/32"}) as d:
        status, body = d.post_json(charge())
        check_eq((status, body), (403, {"error": "forbidden"}), "outside the allowlist")
        row = d.query("SELECT outcome, http_status FROM webhook_deliveries")[0]
        check_eq((row["outcome"], row["http_status"]), ("forbidden", 403), "row")
    with Daemon({"webhook.allow_from": "127.0.0.0/8"}) as d:
        check_eq(d.post_json(charge())[0], 200, "inside the allowlist")


def test_trusted_proxy_forwarded_for():
    with Daemon({"http.trusted_proxies": "127.0.0.1/32", "webhook.allow_from": "192.0.2.0/24"}) as d:
        status, _, _ = d.post(charge(), headers={"X-Forwarded-For": "203.0.113.9, 192.0.2.10"})
        check_eq(status, 200, "client behind a trusted proxy")
        check_eq(d.query("SELECT remote_addr FROM webhook_deliveries")[0]["remote_addr"],
                 "192.0.2.10", "remote_addr from X-Forwarded-For")
        status, _, _ = d.post(charge(), headers={"X-Forwarded-For": "198.51.100.1"})
        check_eq(status, 403, "forwarded address outside allowlist")
        # Whatever the client writes on the left must not matter, however long.
        padded = "192.0.2.99, " * 300 + "198.51.100.1"
        check_eq(d.post(charge(), headers={"X-Forwarded-For": padded})[0], 403, "left padding ignored")
        # Several trusted hops are skipped from the right.
    with Daemon({"http.trusted_proxies": "127.0.0.0/8", "webhook.allow_from": "192.0.2.0/24"}) as d:
        chain = "198.51.100.1, 192.0.2.10, 127.0.0.5"
        check_eq(d.post(charge(), headers={"X-Forwarded-For": chain})[0], 200, "proxy chain")
        check_eq(d.query("SELECT remote_addr FROM webhook_deliveries")[0]["remote_addr"], "192.0.2.10",
                 "nearest untrusted hop")


def test_timestamped_hmac():
    with Daemon({"webhook.timestamp_header": "X-CashPay-Timestamp"}) as d:
        raw = json.dumps(charge()).encode()
        # Whole seconds: the daemon's clock may tick once between taking ts
        # and checking it, which moves a future timestamp one second closer
        # (a past one further away), so 'just too far ahead' is 302.
        for offset, expected in ((0, 200), (-290, 200), (-301, 401), (302, 401)):
            ts = str(int(time.time()) + offset)
            sig = hmac_hex(d.secret, ts.encode() + b"." + raw)
            h = {"Content-Type": "application/json", "X-CashPay-Signature": sig,
                 "X-CashPay-Timestamp": ts}
            check_eq(d.request("POST", "/cashpay/webhook", raw, h)[0], expected, f"offset {offset}")
        h = {"Content-Type": "application/json", "X-CashPay-Signature": hmac_hex(d.secret, raw)}
        check_eq(d.request("POST", "/cashpay/webhook", raw, h)[0], 401, "timestamp missing")


def test_secret_rotation_file_with_two_secrets():
    with Daemon(secret="new-secret") as d:
        with open(d.secret_path, "w") as f:
            f.write("old-secret\nnew-secret\n")
        d.stop()
        d.start()
        for secret in ("old-secret", "new-secret"):
            raw = json.dumps(charge()).encode()
            h = {"Content-Type": "application/json", "X-CashPay-Signature": hmac_hex(secret, raw)}
            check_eq(d.request("POST", "/cashpay/webhook", raw, h)[0], 200, secret)


def test_sha512_base64():
    import base64
    import hashlib
    import hmac
    with Daemon({"webhook.algorithm": "sha512", "webhook.encoding": "base64"}) as d:
        raw = json.dumps(charge()).encode()
        sig = base64.b64encode(hmac.new(d.secret.encode(), raw, hashlib.sha512).digest()).decode()
        h = {"Content-Type": "application/json", "X-CashPay-Signature": sig}
        check_eq(d.request("POST", "/cashpay/webhook", raw, h)[0], 200, "sha512/base64")


def test_healthz_and_metrics():
    status, _, data = D.admin("/healthz")
    check_eq(status, 200, "healthz")
    status, headers, data = D.admin("/metrics")
    check_eq(status, 200, "metrics")
    text = data.decode()
    for needle in ('cashpayd_webhooks_total{outcome="applied"}', "cashpayd_http_responses_total{code=\"200\"}",
                   "cashpayd_commit_seconds_bucket", "cashpayd_build_info"):
        check(needle in text, f"metrics contain {needle}")


def daemon_with_db_password_credential(password):
    """A daemon whose [database] names no password_file, started with
    $CREDENTIALS_DIRECTORY/db-password holding @password, as systemd's
    LoadCredential=db-password:... leaves it (CONTRACT.md §9)."""
    d = Daemon(start=False)
    creds = os.path.join(d.dir, "credentials")
    os.mkdir(creds, 0o700)
    with open(os.path.join(creds, "db-password"), "w") as f:
        f.write(password + "\n")
    d.write_config({k: v for k, v in d.base_config.items() if k != "database.password_file"})
    d.env["CREDENTIALS_DIRECTORY"] = creds
    return d


@postgresql_only("SQLite has no password")
def test_database_password_from_systemd_credential():
    with open(D.pg.password_file) as f:
        password = f.read().strip()
    with daemon_with_db_password_credential(password) as d:
        d.start()
        c = charge(status="CAPTURED")
        check_eq(d.post_json(c), (200, {"outcome": "applied"}), "webhook over the credential's login")
        check_eq(d.query("SELECT status FROM orders WHERE charge_id = ?", c["id"]),
                 [{"status": "CAPTURED"}], "order stored")
        check(password not in d.log_text(), "the password is never logged")
    wrong = "not-the-db-password-0815"
    with daemon_with_db_password_credential(wrong) as d:
        d.launch([d.binary, "--config", d.config_path])
        rc = d.proc.wait(30)
        log = d.log_text()
        check(rc != 0, f"a wrong password ends the start (exit {rc})")
        check("password authentication failed" in log, log)
        check(wrong not in log, "the wrong password is not logged either")


if __name__ == "__main__":
    with Daemon() as daemon:
        D = daemon
        run_tests([v for k, v in list(globals().items()) if k.startswith("test_")])
