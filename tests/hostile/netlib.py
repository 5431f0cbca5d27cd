"""Raw-socket helpers for the network abuse tests.

The integration harness speaks HTTP through http.client, which refuses to
send most of what these tests are about. Here requests are bytes, written to
sockets that may be bound to any loopback address (127.0.0.2, 127.0.0.3, ...:
Linux routes all of 127.0.0.0/8 to the loopback interface), and responses are
parsed the way a careful client or proxy would: status line, headers, then
exactly Content-Length bytes (or a chunked body), so that "exactly one
response" means what an intermediary would see.
"""
import json
import os
import socket
import ssl
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
from harness import charge, check, check_eq, hmac_hex, run_tests  # noqa: E402,F401

SANITIZER_MARKERS = ("runtime error:", "AddressSanitizer", "LeakSanitizer")


# Ports of daemons serving HTTPS (CASHPAYD_TEST_TLS=1), with the client
# context that trusts their certificate: connect() speaks TLS to those.
TLS_CONTEXTS = {}


class Daemon(harness.Daemon):
    """The harness's daemon, whose log must end up free of sanitizer reports
    (UBSan reports and carries on: nothing else would notice)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.tls_context:
            TLS_CONTEXTS[self.port] = self.tls_context

    def stop(self, *args, **kwargs):
        rc = super().stop(*args, **kwargs)
        text = self.log_text()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                raise AssertionError(f"sanitizer report in the daemon's log:\n{text[-8000:]}")
        return rc


def connect(port, source="127.0.0.1", timeout=10):
    """A TCP connection to the daemon from the loopback address @source;
    a verified TLS one when that daemon serves HTTPS."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    ctx = TLS_CONTEXTS.get(port)
    if ctx:
        try:
            return ctx.wrap_socket(s, server_hostname="127.0.0.1")
        except BaseException:
            s.close()
            raise
    return s


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:60]!r}>"


class Reader:
    """Parses the responses arriving on one socket."""

    def __init__(self, sock, deadline=10.0):
        self.sock = sock
        self.buf = b""
        self.closed = False
        self.trailing = b""  # bytes after the last response, before the close
        self.deadline = time.monotonic() + deadline

    def _fill(self):
        if self.closed:
            return False
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no complete response before the deadline")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.buf += data
        return True

    def _line(self):
        while b"\r\n" not in self.buf:
            if not self._fill():
                return None
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exactly(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise AssertionError(f"connection closed inside a body ({len(self.buf)}/{n})")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def next(self):
        """The next response, or None when the server closed first."""
        line = self._line()
        if line is None:
            self.trailing, self.buf = self.buf, b""
            return None
        parts = line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise AssertionError(f"not a status line: {line[:80]!r}")
        headers = {}
        while True:
            h = self._line()
            if h is None:
                raise AssertionError("connection closed inside the response headers")
            if h == b"":
                break
            name, _, value = h.partition(b":")
            headers[name.strip().lower().decode()] = value.strip().decode("latin1")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._chunked()
        else:
            body = self._exactly(int(headers.get("content-length", "0")))
        return Response(int(parts[1]), headers, body)

    def _chunked(self):
        body = b""
        while True:
            size = int(self._line().split(b";")[0], 16)
            if size == 0:
                while self._line() not in (b"", None):
                    pass
                return body
            body += self._exactly(size)
            self._exactly(2)

    def quiet_for(self, seconds):
        """True when nothing more arrives within @seconds (connection open)."""
        if self.buf or self.closed:
            return False
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, BlockingIOError):
            return True
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
        self.buf += data
        return False

    def all(self, settle=None):
        """Every response until the server closes (or the deadline); with
        @settle, also stop once the connection stays quiet that long after a
        response (a kept-alive connection the server need not close)."""
        out = []
        while True:
            r = self.next()
            if r is None:
                return out
            out.append(r)
            if settle is not None and self.quiet_for(settle):
                return out


def exchange(port, data, source="127.0.0.1", half_close=True, deadline=10.0, ret_reader=False,
             settle=0.5):
    """Send @data, optionally half-close, return every response until close.
    The daemon may close before it has read everything: that is no error."""
    with connect(port, source) as s:
        try:
            s.sendall(data)
            # Over TLS a half-close is a close_notify, which Python's ssl
            # module cannot send without reading the peer's: then the
            # answers (or the close) end the exchange, and settle bounds it.
            if half_close and not isinstance(s, ssl.SSLSocket):
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        reader = Reader(s, deadline)
        responses = reader.all(settle)
        return (responses, reader) if ret_reader else responses


def webhook_request(daemon, payload=None, sign=True, extra_headers=b"", body=None,
                    framing=None, version=b"HTTP/1.1"):
    """A webhook POST as bytes. @framing replaces the Content-Length line."""
    raw = body if body is not None else json.dumps(payload or charge()).encode()
    head = b"POST /cashpay/webhook " + version + b"\r\nHost: cashpayd\r\n"
    head += b"Content-Type: application/json\r\n"
    if sign:
        head += b"X-CashPay-Signature: " + hmac_hex(daemon.secret, raw).encode() + b"\r\n"
    head += extra_headers
    head += framing if framing is not None else b"Content-Length: %d\r\n" % len(raw)
    return head + b"\r\n", raw


def chunked(raw, size=16):
    out = b""
    for i in range(0, len(raw), size):
        piece = raw[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def count(daemon, sql, *args):
    return daemon.query(sql, *args)[0]["n"]


def deliveries(daemon):
    return count(daemon, "SELECT count(*) AS n FROM webhook_deliveries")


def timed_post(daemon, timeout=5):
    """One signed webhook from 127.0.0.1; returns (status, seconds)."""
    head, raw = webhook_request(daemon)
    started = time.monotonic()
    try:
        # No half-close: libmicrohttpd takes end-of-file seen while a
        # request waits for its commit as an abort and answers nothing.
        with connect(daemon.port, timeout=timeout) as s:
            s.sendall(head + raw)
            response = Reader(s, timeout).next()
    except (OSError, TimeoutError) as e:
        return type(e).__name__, time.monotonic() - started
    return (response.status if response else "closed"), time.monotonic() - started


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))
