"""Slow and numerous clients against the real daemon on loopback.

An idle timeout alone never closes a client that sends one byte per second:
libmicrohttpd restarts it on every byte. cashpayd gives each request a total
deadline ([http] request_timeout, headers and body together) and limits the
connections one address may hold ([http] max_connections_per_ip). With
attackers on several loopback addresses (127.0.0.2, 127.0.0.3, ...) holding
every connection they are allowed and trickling bytes into them, webhooks
from 127.0.0.1 must keep getting through in under a second.
"""
import socket
import threading
import time

from netlib import (Daemon, check, check_eq, connect, count, open_fds, run_tests, timed_post,
                    webhook_request)

IDLE = 2           # [http] timeout
DEADLINE = 3       # [http] request_timeout
PER_IP = 8         # [http] max_connections_per_ip
MAX_CONN = 64      # [http] max_connections

CONFIG = {
    "http.timeout": str(IDLE),
    "http.request_timeout": str(DEADLINE),
    "http.max_connections_per_ip": str(PER_IP),
    "http.max_connections": str(MAX_CONN),
    "log.level": "notice",
}

WEBHOOK_HEAD = (b"POST /cashpay/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-CashPay-Signature: 00\r\n")


def trickle_until_closed(sock, data, interval, limit):
    """Send @data one byte every @interval seconds; return the seconds until
    the server closed the connection, or None if it was still open at @limit."""
    started = time.monotonic()
    sock.setblocking(True)
    for byte in data:
        if time.monotonic() - started > limit:
            return None
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return time.monotonic() - started
        # Wait for the next byte, but notice a close at once.
        sock.settimeout(interval)
        try:
            # A response (e.g. 408/400) is as good as a close, if a close follows.
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except socket.timeout:
            pass
        except OSError:
            return time.monotonic() - started
    return None


def test_slow_headers_are_cut_at_the_deadline():
    with Daemon(CONFIG) as d:
        with connect(d.port, "127.0.0.2") as s:
            closed = trickle_until_closed(s, WEBHOOK_HEAD + b"X-Pad: " + b"p" * 200, 0.5, 12)
        check(closed is not None, "a 1 byte / 0.5 s header trickle was never closed")
        check(DEADLINE - 0.5 <= closed <= DEADLINE + 1.5, f"closed after {closed:.1f}s")
        check_eq(timed_post(d)[0], 200, "daemon serves afterwards")


def test_slow_body_is_cut_at_the_deadline():
    with Daemon(CONFIG) as d:
        with connect(d.port, "127.0.0.2") as s:
            s.sendall(WEBHOOK_HEAD + b"Content-Length: 500\r\n\r\n")
            closed = trickle_until_closed(s, b"{" + b" " * 499, 1.0, 12)
        check(closed is not None, "a 1 byte/s body was never closed")
        check(closed <= DEADLINE + 1.5, f"closed after {closed:.1f}s")
        check_eq(count(d, "SELECT count(*) AS n FROM webhook_deliveries"), 0, "nothing recorded")


def test_slow_chunked_body_is_cut_at_the_deadline():
    with Daemon(CONFIG) as d:
        with connect(d.port, "127.0.0.2") as s:
            s.sendall(WEBHOOK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
            closed = trickle_until_closed(s, b"1\r\n \r\n" * 100, 0.5, 12)
        check(closed is not None, "a slow chunked body was never closed")
        check(closed <= DEADLINE + 1.5, f"closed after {closed:.1f}s")


def test_keep_alive_is_not_cut_by_the_deadline():
    # The deadline is per request: a connection that keeps sending complete
    # requests lives longer than request_timeout.
    with Daemon(CONFIG) as d:
        from netlib import Reader, charge
        with connect(d.port) as s:
            reader = Reader(s, deadline=30)
            started = time.monotonic()
            n = 0
            while time.monotonic() - started < DEADLINE * 2:
                head, raw = webhook_request(d, charge())
                s.sendall(head + raw)
                check_eq(reader.next().status, 200, f"request {n}")
                n += 1
                time.sleep(0.5)
        check(n >= 2 * DEADLINE, f"{n} requests on one connection")


def test_idle_connections_are_closed():
    with Daemon(CONFIG) as d:
        socks = [connect(d.port, f"127.0.0.{2 + i % 4}") for i in range(20)]
        time.sleep(IDLE + 1.5)
        closed = 0
        for s in socks:
            s.settimeout(0.2)
            try:
                closed += s.recv(1) == b""
            except (socket.timeout, OSError):
                pass
            s.close()
        check_eq(closed, 20, "idle connections closed by the server")


class Attacker:
    """Holds as many connections as it can from @source, trickling bytes."""

    def __init__(self, port, source, conns, stop, body=False):
        self.port, self.source, self.conns, self.stop, self.body = port, source, conns, stop, body
        self.opened = self.refused = 0
        self.lifetimes = []  # seconds each connection lived before the server closed it
        self.thread = threading.Thread(target=self.run, daemon=True)

    def _open(self):
        try:
            s = connect(self.port, self.source, timeout=2)
            head = WEBHOOK_HEAD + b"Content-Length: 100000\r\n\r\n" if self.body else WEBHOOK_HEAD
            s.sendall(head if self.body else head[:20])
            self.opened += 1
            return [s, 20, time.monotonic()]
        except OSError:
            self.refused += 1
            return None

    def run(self):
        socks = []
        rounds = 0
        while not self.stop.is_set() and rounds < 400:  # bounded
            rounds += 1
            for _ in range(self.conns - len(socks)):  # top up, one try per missing slot
                entry = self._open()
                if entry is not None:
                    socks.append(entry)
            for entry in list(socks):
                s, pos, opened = entry
                try:
                    s.send(b" " if self.body else WEBHOOK_HEAD[pos:pos + 1] or b"X")
                    entry[1] += 1
                    s.settimeout(0.001)
                    if s.recv(4096) == b"":
                        raise OSError("closed")
                except socket.timeout:
                    pass
                except OSError:
                    self.lifetimes.append(time.monotonic() - opened)
                    s.close()
                    socks.remove(entry)
            self.stop.wait(0.5)
        for s, _, _ in socks:
            s.close()


def test_slowloris_from_several_addresses_keeps_webhooks_flowing():
    with Daemon(CONFIG) as d:
        stop = threading.Event()
        # Six addresses, each trying for twice its share: 96 connections
        # wanted, 48 allowed by the per-address limit, 64 in the daemon.
        attackers = [Attacker(d.port, f"127.0.0.{a}", 2 * PER_IP, stop, body=a % 2 == 0)
                     for a in range(2, 8)]
        for a in attackers:
            a.thread.start()
        time.sleep(1.0)
        results = []
        try:
            started = time.monotonic()
            while time.monotonic() - started < 2.5 * DEADLINE:
                results.append(timed_post(d, timeout=5))
                time.sleep(0.2)
        finally:
            stop.set()
            for a in attackers:
                a.thread.join(10)
        slow = [(s, round(t, 2)) for s, t in results if s != 200 or t >= 1.0]
        worst = max(t for _, t in results)
        lives = [t for a in attackers for t in a.lifetimes]
        refused = sum(1 for t in lives if t < 1.0)  # closed at once: over the per-address limit
        cut = [t for t in lives if t >= 1.0]        # closed later: the request deadline
        print(f"  {len(results)} legitimate webhooks, worst {worst:.3f}s; attackers connected "
              f"{sum(a.opened for a in attackers)} times: {refused} closed at once (per-address "
              f"limit), {len(cut)} cut after {min(cut, default=0):.1f}-{max(cut, default=0):.1f}s "
              f"(deadline {DEADLINE}s); daemon fds {open_fds(d.proc.pid)}")
        check_eq(slow, [], "every legitimate webhook got 200 in under 1 s")
        check(refused > 0, "the per-address limit refused connections")
        check(len(cut) >= 6 * PER_IP, "the deadline cut trickling connections")
        check(max(cut) <= DEADLINE + 1.5, f"no trickling connection outlived the deadline ({max(cut):.1f}s)")


def test_beyond_max_connections():
    # No per-address limit: connections past max_connections wait in the
    # kernel's backlog and get served once idle ones are closed.
    config = dict(CONFIG, **{"http.max_connections_per_ip": "0", "http.max_connections": "16"})
    with Daemon(config) as d:
        socks = []
        for i in range(60):
            try:
                socks.append(connect(d.port, f"127.0.0.{2 + i % 5}", timeout=2))
            except OSError:
                pass
        fds = open_fds(d.proc.pid)
        check(fds < 16 + 40, f"daemon holds {fds} descriptors with 16 allowed connections")
        check_eq(d.admin("/healthz")[0], 200, "admin listener answers meanwhile")
        for s in socks:
            s.close()
        status, elapsed = timed_post(d)
        check_eq(status, 200, "served after the flood of connections")
        check(elapsed < 1.0 + IDLE + DEADLINE, f"served in {elapsed:.2f}s")


def test_suspended_connections_answered_at_their_deadline():
    # libmicrohttpd never times out a suspended connection: each webhook
    # waiting for its commit has its own deadline ([database] commit_timeout).
    import os
    from netlib import Reader, charge
    d = Daemon({"log.level": "notice", "database.commit_timeout": "1000"}, start=False)
    stall = os.path.join(d.dir, "stall")
    d.env["CASHPAYD_TEST_STALL_FILE"] = stall
    passed = False
    try:
        d.start()
        check_eq(timed_post(d)[0], 200, "before the stall")
        open(stall, "w").close()  # the writer now hangs before its next commit
        results = []

        def one():
            head, raw = webhook_request(d, charge())
            started = time.monotonic()
            with connect(d.port, timeout=10) as s:
                s.sendall(head + raw)
                r = Reader(s, deadline=10).next()
            results.append((r.status if r else "closed", r.header("retry-after") if r else None,
                            time.monotonic() - started))

        threads = [threading.Thread(target=one) for _ in range(20)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        page = d.request("GET", "/cashpay/return?charge_id=chg_waiting")[0]
        for t in threads:
            t.join(15)
        worst = max(t for _, _, t in results)
        print(f"  20 webhooks while the writer hangs: {sorted(set((s, ra) for s, ra, _ in results))}, "
              f"answered within {worst:.2f}s")
        check_eq(len(results), 20, "every waiting webhook answered")
        check(all((s, ra) == (503, "5") for s, ra, _ in results), f"503 with Retry-After: {results[:3]}")
        check(worst < 1.0 + 1.0, f"answered at the deadline ({worst:.2f}s)")
        check_eq(page, 200, "the return page is served meanwhile")
        os.unlink(stall)
        status, elapsed = timed_post(d)
        check_eq(status, 200, "after the stall")
        passed = True
    finally:
        if os.path.exists(stall):
            os.unlink(stall)
        d.stop()
        d.close(passed)


def keep_alive_client(d, stop, acked, refused):
    """Signed webhooks back to back on one kept-alive connection, until the
    daemon closes it (or @stop, or a bounded count)."""
    from netlib import Reader, charge
    try:
        with connect(d.port, timeout=30) as s:
            reader = Reader(s, deadline=60)
            for _ in range(100000):
                if stop.is_set():
                    return
                c = charge()
                head, raw = webhook_request(d, c)
                s.sendall(head + raw)
                r = reader.next()
                if r is None:
                    return
                if r.status == 200:
                    acked.append(c["id"])
                else:
                    refused.append((r.status, r.header("connection")))
                    if r.header("connection") == "close":
                        return
    except OSError:
        return


def test_sigterm_under_endless_keep_alive_load():
    # Clients that never pause must not keep the drain from ending, and the
    # daemon must stop cleanly (it once aborted: libmicrohttpd refuses to
    # stop while a connection is suspended).
    import signal
    d = Daemon({"log.level": "notice", "database.commit_timeout": "1000"})
    try:
        stop = threading.Event()
        acked, refused = [], []
        clients = [threading.Thread(target=keep_alive_client, args=(d, stop, acked, refused))
                   for _ in range(8)]
        for t in clients:
            t.start()
        time.sleep(1.0)
        started = time.monotonic()
        rc = d.stop(signal.SIGTERM, timeout=20)
        stopped = time.monotonic() - started
        stop.set()
        for t in clients:
            t.join(30)
        print(f"  {len(acked)} acknowledged, stopped {stopped:.2f}s after SIGTERM, "
              f"refused while draining: {sorted(set(refused))}")
        check_eq(rc, 0, "exit status")
        check(stopped < 1.0 + 2.0 + 2.0, f"drain took {stopped:.1f}s")
        check(all(st == 503 for st, _ in refused), f"only 503 while draining: {refused[:5]}")
        stored = d.applied_charge_ids()
        check_eq(len(set(acked) - stored), 0, "every 200 stored")
        check("stopped cleanly" in d.log_text(), "clean stop logged")
    finally:
        d.stop()
        d.log.close()


if __name__ == "__main__":
    run_tests([test_slow_headers_are_cut_at_the_deadline, test_slow_body_is_cut_at_the_deadline,
               test_slow_chunked_body_is_cut_at_the_deadline, test_keep_alive_is_not_cut_by_the_deadline,
               test_idle_connections_are_closed,
               test_slowloris_from_several_addresses_keeps_webhooks_flowing,
               test_beyond_max_connections, test_suspended_connections_answered_at_their_deadline,
               test_sigterm_under_endless_keep_alive_load])
