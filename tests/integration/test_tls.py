"""HTTPS on the public listener: [http] tls_cert and tls_key.

Every client here trusts only a throwaway CA and checks the server's name,
as CashPay would. Covered: a webhook over TLS 1.3 and 1.2, older versions
and plain HTTP refused, the start-up errors (each naming its file), SIGHUP
with a renewed certificate (new connections get it, an open one keeps
going) and with a broken one (the old one stays), the expiry gauge and
warning, a client stalling mid-handshake, and cashpayctl send verifying
the server.
"""
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import shutil

from harness import Daemon, charge, check, check_eq, hmac_hex, run_tests
from tlslib import TestCA, connect, serial_of

CTL = os.environ.get("CASHPAYCTL")


def raw_post(sock, d, payload_bytes, keep_alive=True):
    """One signed webhook on @sock; returns (status, raw answer)."""
    head = (f"POST /cashpay/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload_bytes)}\r\n"
            f"X-CashPay-Signature: {hmac_hex(d.secret, payload_bytes)}\r\n"
            f"{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}\r\n")
    sock.sendall(head.encode() + payload_bytes)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        check(chunk, "connection closed before an answer")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split(b" ")[1]), body


def payload(charge_id=None):
    import json
    return json.dumps(charge(charge_id)).encode()


def wait_log(d, text, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in d.log_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged:\n{d.log_text()[-3000:]}")


def test_webhook_over_tls13_and_tls12():
    with Daemon(tls=True) as d:
        status, body = d.post_json(charge("chg_tls_one"))
        check_eq((status, body), (200, {"outcome": "applied"}), "webhook over HTTPS")
        for version, name in ((ssl.TLSVersion.TLSv1_3, "TLSv1.3"),
                              (ssl.TLSVersion.TLSv1_2, "TLSv1.2")):
            ctx = d.ca.client_context(minimum=version, maximum=version)
            with connect(ctx, d.port) as s:
                check_eq(s.version(), name, "negotiated version")
                status, _ = raw_post(s, d, payload())
                check_eq(status, 200, f"webhook over {name}")
        check_eq(len(d.applied_charge_ids()), 3, "applied deliveries")


def test_older_tls_and_plain_http_refused():
    with Daemon(tls=True) as d:
        # The client offers TLS 1.0 and 1.1 only (security level 0 lets
        # OpenSSL offer them): the server must be the one that says no.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(d.ca.ca_cert)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            with connect(ctx, d.port):
                raise AssertionError("a TLS 1.1 handshake succeeded")
        except ssl.SSLError as e:
            check("NO_PROTOCOLS_AVAILABLE" not in str(e), f"the client refused itself: {e}")
        except (ConnectionError, OSError) as e:
            check(not isinstance(e, ssl.SSLCertVerificationError), f"unexpected: {e}")
        with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
            s.sendall(b"GET /cashpay/status HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
            except (ConnectionResetError, socket.timeout):
                pass
        check(not answer.startswith(b"HTTP/"), f"plain HTTP answered on the HTTPS port: {answer!r}")
        status, _ = d.post_json(charge())
        check_eq(status, 200, "HTTPS still served")


def start_fails(extra, *expect):
    """The daemon refuses to start, and its error names what is wrong."""
    d = Daemon(extra_config=extra, start=False)
    try:
        d.start(wait=False)
        rc = d.proc.wait(20)
        check(rc != 0, "cashpayd started with a bad certificate")
        text = d.log_text()
        for e in expect:
            check(e in text, f"{e!r} not in the start-up error:\n{text}")
        out = subprocess.run([d.binary, "--check-config", "--config", d.config_path],
                             capture_output=True, text=True)
        check(out.returncode == 1, "--check-config passed a bad certificate")
        for e in expect:
            check(e in out.stderr, f"{e!r} not in --check-config's error: {out.stderr}")
    finally:
        d.log.close()
        shutil.rmtree(d.dir, ignore_errors=True)


def test_startup_errors_name_the_file():
    with tempfile.TemporaryDirectory(prefix="cashpayd-tls-") as tmp:
        ca = TestCA(tmp)
        cert, key, _ = ca.issue("good")
        other_cert, other_key, _ = ca.issue("other")
        expired, expired_key = ca.self_signed("expired", days=30, faketime="-60d")
        early, early_key = ca.self_signed("early", days=30, faketime="+10d")
        garbage = os.path.join(tmp, "garbage.pem")
        with open(garbage, "w") as f:
            f.write("not a certificate\n")
        missing = os.path.join(tmp, "missing.pem")
        start_fails({"http.tls_cert": missing, "http.tls_key": key},
                    missing, "No such file or directory")
        start_fails({"http.tls_cert": tmp, "http.tls_key": key}, tmp, "not a regular file")
        start_fails({"http.tls_cert": garbage, "http.tls_key": key}, garbage, "no PEM certificate")
        start_fails({"http.tls_cert": cert, "http.tls_key": garbage}, garbage, "private key")
        start_fails({"http.tls_cert": cert, "http.tls_key": other_key},
                    f"{other_key} is not the private key of the certificate in {cert}")
        start_fails({"http.tls_cert": expired, "http.tls_key": expired_key},
                    expired, "the certificate expired on")
        start_fails({"http.tls_cert": early, "http.tls_key": early_key},
                    early, "the certificate is not valid before")
        start_fails({"http.tls_cert": cert}, "tls_cert and tls_key are set together")
        check(os.path.exists(other_cert), "issued")


def test_unreadable_key_names_the_file():
    # As root every file is readable: read as nobody through setpriv.
    with tempfile.TemporaryDirectory(prefix="cashpayd-tls-") as tmp:
        os.chmod(tmp, 0o755)
        ca = TestCA(tmp)
        cert, key, _ = ca.issue("good")
        os.chmod(cert, 0o644)
        os.chmod(key, 0o600)
        conf = os.path.join(tmp, "c.conf")
        with open(conf, "w") as f:
            f.write(f"[http]\ntls_cert = {cert}\ntls_key = {key}\n"
                    f"[webhook]\nverify = none\ninsecure_no_verify = yes\n")
        os.chmod(conf, 0o644)
        binary = os.path.join(tmp, "cashpayd")  # the build may sit in a 0700 directory
        shutil.copy2(os.environ["CASHPAYD"], binary)
        os.chmod(binary, 0o755)
        out = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                              binary, "--check-config", "--config", conf],
                             capture_output=True, text=True)
        check_eq(out.returncode, 1, "--check-config with an unreadable key")
        check(f"cannot read the TLS key {key}: Permission denied" in out.stderr, out.stderr)


def test_sighup_renews_for_new_connections_only():
    with Daemon(tls=True) as d:
        first = d.ca.client_context()
        old = connect(first, d.port)
        status, _ = raw_post(old, d, payload())
        check_eq(status, 200, "first request on the kept-alive connection")
        old_serial = serial_of(old)
        cert, key, new_serial = d.ca.issue("server")  # the same paths, as certbot renews
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "TLS certificate reloaded for new connections")
        with connect(d.ca.client_context(), d.port) as s:
            check_eq(serial_of(s), new_serial, "a new connection's certificate")
            check_eq(raw_post(s, d, payload())[0], 200, "webhook on a new connection")
        status, _ = raw_post(old, d, payload())
        check_eq(status, 200, "the connection opened before the reload still works")
        check_eq(serial_of(old), old_serial, "and still has the old certificate")
        old.close()

        # A broken renewal: the log says why, the last good certificate stays.
        with open(cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\ntruncated\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, f"TLS certificate not reloaded, new connections still get the previous "
                    f"one: {cert}")
        with connect(d.ca.client_context(), d.port) as s:
            check_eq(serial_of(s), new_serial, "certificate after a broken renewal")
            check_eq(raw_post(s, d, payload())[0], 200, "webhook after a broken renewal")
        check(d.proc.poll() is None, "still running")


def test_expiry_gauge_and_warning():
    with tempfile.TemporaryDirectory(prefix="cashpayd-tls-") as tmp:
        ca = TestCA(tmp)
        cert, key, _ = ca.issue("short", days=7)
        with Daemon({"http.tls_cert": cert, "http.tls_key": key}) as d:
            d.tls_context = ca.client_context()
            _, _, body = d.admin("/metrics")
            lines = [line for line in body.decode().splitlines()
                     if line.startswith("cashpayd_tls_certificate_expiry_seconds ")]
            check_eq(len(lines), 1, "expiry gauge lines")
            left = int(lines[0].split()[1])
            check(7 * 86400 - 300 < left <= 7 * 86400, f"seconds left: {left}")
            wait_log(d, f"the TLS certificate from {cert} expires in ")
            check(re.search(r"expires in [67] day\(s\), on ", d.log_text()), d.log_text())
    with Daemon(tls=True) as d:
        _, _, body = d.admin("/metrics")
        check("cashpayd_tls_certificate_expiry_seconds" in body.decode(), "gauge with 90 days")
        check("expires in" not in d.log_text(), "no warning 90 days before expiry")
    with Daemon(tls=False) as d:
        _, _, body = d.admin("/metrics")
        check("cashpayd_tls_certificate_expiry_seconds" not in body.decode(),
              "no TLS gauge for plain HTTP")


def test_stalled_handshake_is_closed():
    timeout = 2
    with Daemon({"http.timeout": str(timeout), "http.request_timeout": str(timeout)},
                tls=True) as d:
        stalled = []
        started = time.monotonic()
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=15)
            s.sendall(b"\x16\x03\x01")  # the start of a handshake record, then nothing
            stalled.append(s)
        for s in stalled:
            answer = b""
            try:
                while chunk := s.recv(4096):
                    answer += chunk
            except ConnectionResetError:
                pass
            check(answer in (b"",) or answer.startswith(b"\x15"),
                  f"a stalled handshake got more than an alert: {answer!r}")
            s.close()
        took = time.monotonic() - started
        check(timeout - 0.5 < took < timeout + 2.5,
              f"stalled handshakes were closed after {took:.1f} s, timeout {timeout} s")
        status, _ = d.post_json(charge())
        check_eq(status, 200, "webhook after the stalled handshakes")


def test_cashpayctl_send_verifies_the_server():
    with Daemon(tls=True) as d:
        base = [CTL, "--config", d.config_path, "send", "--status", "CAPTURED",
                "--amount", "2000", "--currency", "YER"]
        url = f"https://127.0.0.1:{d.port}/cashpay/webhook"
        out = subprocess.run(base + ["--url", url, "--cacert", d.ca.ca_cert],
                             capture_output=True, text=True)
        check_eq(out.returncode, 0, f"send with --cacert: {out.stderr}")
        check("applied" in out.stdout, out.stdout)
        out = subprocess.run(base + ["--cacert", d.ca.ca_cert], capture_output=True, text=True)
        check_eq(out.returncode, 0, f"send to the default https:// URL: {out.stderr}")
        out = subprocess.run(base + ["--url", url], capture_output=True, text=True)
        check_eq(out.returncode, 1, "send to a server no trusted CA vouches for")
        check("certificate" in out.stderr, out.stderr)
        other = TestCA(tempfile.mkdtemp(prefix="ca-", dir=d.dir))
        out = subprocess.run(base + ["--url", f"https://localhost:{d.port}/cashpay/webhook",
                                     "--cacert", other.ca_cert], capture_output=True, text=True)
        check_eq(out.returncode, 1, "send with another CA")
        check_eq(len(d.applied_charge_ids()), 2, "only the verified sends arrived")


if __name__ == "__main__":
    run_tests([
        test_webhook_over_tls13_and_tls12,
        test_older_tls_and_plain_http_refused,
        test_startup_errors_name_the_file,
        test_unreadable_key_names_the_file,
        test_sighup_renews_for_new_connections_only,
        test_expiry_gauge_and_warning,
        test_stalled_handshake_is_closed,
        test_cashpayctl_send_verifies_the_server,
    ])
