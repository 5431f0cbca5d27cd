"""The admin listener under clients that connect and do not finish a request.

/healthz and /metrics are how monitoring sees the daemon, so a few clients
that open connections and send nothing, half a request, or a header one
byte at a time must not keep a monitor out. Each request has a deadline
([admin] request_timeout), which a trickle of bytes does not restart, and
the connections are bounded ([admin] max_connections): a well-behaved
client is answered at once while there is room, and waits no longer than
the deadline when there is not.
"""
import select
import signal
import socket
import time

from harness import Daemon, check, check_eq, read_to_end, run_tests

DEADLINE = 2      # [admin] request_timeout
MAX_CONN = 8      # [admin] max_connections
SLACK = 1.5       # the main loop expires deadlines every 100 ms; a loaded machine

CONFIG = {
    "admin.request_timeout": str(DEADLINE),
    "admin.max_connections": str(MAX_CONN),
    "log.level": "info",
}


def connect(d):
    s = socket.create_connection(("127.0.0.1", d.admin_port), timeout=5)
    s.setblocking(False)
    return s


def closed_by_server(sock):
    """True once the server has closed @sock (end of file or a reset)."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def timed_healthz(d, timeout=5):
    started = time.monotonic()
    status, _, _ = d.request("GET", "/healthz", port=d.admin_port)
    return status, time.monotonic() - started


def watch(d, idle, trickling, limit):
    """Until every socket in @idle and @trickling is closed (or @limit
    seconds): one byte every 0.25 s into each of @trickling, and a /healthz
    from a well-behaved client every 0.5 s. Returns the seconds each socket
    took to be closed (None: still open) and the slowest /healthz."""
    started = time.monotonic()
    closed = {}
    slowest = 0.0
    next_byte = next_health = started
    socks = idle + trickling
    while len(closed) < len(socks) and time.monotonic() - started < limit:
        now = time.monotonic()
        if now >= next_byte:
            for s in trickling:
                if s not in closed:
                    try:
                        s.send(b"x")
                    except OSError:
                        closed[s] = now - started
            next_byte = now + 0.25
        if now >= next_health:
            status, took = timed_healthz(d)
            check_eq(status, 200, "/healthz while slow clients hold connections")
            slowest = max(slowest, took)
            next_health = time.monotonic() + 0.5
        readable, _, _ = select.select([s for s in socks if s not in closed], [], [], 0.05)
        for s in readable:
            if closed_by_server(s):
                closed[s] = time.monotonic() - started
    return [closed.get(s) for s in socks], slowest


def test_idle_and_half_requests_are_closed_at_the_deadline():
    with Daemon(CONFIG) as d:
        idle = [connect(d) for _ in range(2)]
        half = [connect(d) for _ in range(2)]
        for s in half:
            s.send(b"GET /metr")  # half a request line, then nothing
        headers = [connect(d) for _ in range(2)]
        for s in headers:
            s.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ")
        times, slowest = watch(d, idle + half, headers, DEADLINE + 6)
        for what, took in zip(["idle"] * 2 + ["half request"] * 2 + ["trickled header"] * 2,
                              times):
            check(took is not None, f"{what} connection still open after "
                                    f"{DEADLINE + 6} s")
            check(DEADLINE - 0.5 <= took <= DEADLINE + SLACK,
                  f"{what} connection closed after {took:.2f} s, not {DEADLINE} s")
        check(slowest < 1.0, f"/healthz took {slowest:.2f} s while slow clients were connected")
        for s in idle + half + headers:
            s.close()
        # The daemon logs after it has closed them: the clients can see the
        # close a moment before the line reaches the log.
        wait_until = time.monotonic() + 5
        while "admin listener: closed" not in d.log_text() and time.monotonic() < wait_until:
            time.sleep(0.05)
        check("admin listener: closed" in d.log_text(), "the expiry is logged")


def test_a_full_listener_frees_a_slot_at_the_deadline():
    """With every allowed connection held by a silent client, the next
    client is not served until the deadline frees a slot: the bound holds,
    and it costs a monitor at most one deadline."""
    with Daemon(CONFIG) as d:
        silent = [connect(d) for _ in range(MAX_CONN)]
        time.sleep(0.3)  # all accepted before the well-behaved client connects
        status, took = timed_healthz(d)
        check_eq(status, 200, "/healthz once a slot is free")
        check(took >= DEADLINE - 0.8, f"answered after {took:.2f} s although "
                                      f"{MAX_CONN} connections were held")
        check(took <= DEADLINE + SLACK, f"answered only after {took:.2f} s")
        wait_until = time.monotonic() + SLACK
        while not all(closed_by_server(s) for s in silent) and time.monotonic() < wait_until:
            time.sleep(0.05)
        check(all(closed_by_server(s) for s in silent), "the silent clients were closed")
        for s in silent:
            s.close()
        status, took = timed_healthz(d)
        check(status == 200 and took < 1.0, f"/healthz afterwards: {status} in {took:.2f} s")


def test_a_request_sent_slowly_within_the_deadline_is_served():
    """The deadline is for the whole request, not a cut at the first pause:
    a request that arrives in pieces before it is due is answered."""
    with Daemon(CONFIG) as d:
        s = socket.create_connection(("127.0.0.1", d.admin_port), timeout=5)
        for piece in [b"GET /hea", b"lthz HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"]:
            s.sendall(piece)
            time.sleep(DEADLINE * 0.2)
        data = read_to_end(s)
        check(data.startswith(b"HTTP/1.1 200 "), f"answer: {data[:100]!r}")
        s.close()


def test_a_trickled_body_is_cut_at_the_deadline():
    """No admin route takes a body; one announced and trickled does not
    hold the connection past the deadline either."""
    with Daemon(CONFIG) as d:
        s = connect(d)
        s.send(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        times, _ = watch(d, [], [s], DEADLINE + 6)
        check(times[0] is not None and times[0] <= DEADLINE + SLACK,
              f"a trickled body held the connection for {times[0]} s")
        s.close()


def test_reload_keeps_the_limits():
    """The limits shape the listener: a reload that changes them is refused."""
    with Daemon(CONFIG) as d:
        d.write_config(dict(CONFIG, **{"admin.request_timeout": "9"}))
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reload of" not in d.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        check("[admin] request_timeout" in d.log_text() and "restart" in d.log_text(),
              "reload refused naming the key:\n" + d.log_text())
        s = connect(d)
        started = time.monotonic()
        select.select([s], [], [], DEADLINE + 6)
        took = time.monotonic() - started
        check(closed_by_server(s) and took <= DEADLINE + SLACK,
              f"the old deadline still holds ({took:.2f} s)")
        s.close()


if __name__ == "__main__":
    run_tests([
        test_idle_and_half_requests_are_closed_at_the_deadline,
        test_a_full_listener_frees_a_slot_at_the_deadline,
        test_a_request_sent_slowly_within_the_deadline_is_served,
        test_a_trickled_body_is_cut_at_the_deadline,
        test_reload_keeps_the_limits,
    ])
