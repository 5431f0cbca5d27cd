"""The daemon's resident memory stays flat over many requests.

A warm-up fills SQLite's page caches and the allocator's arenas; after it,
RSS_REQUESTS more requests (default 20000; 100000 by hand) of every kind
(new charges, duplicates, bad signatures, invalid payloads, oversized bodies,
return pages, status lookups, smuggling shapes, pipelined and kept-alive)
must not grow VmRSS by more than RSS_MAX_GROWTH_KIB (default 8 MiB). VmRSS
is printed at the start, half-way and the end (figures for NETWORK.md).
"""
import os
import threading
import time

from netlib import (Daemon, Reader, charge, check, connect, open_fds, run_tests, vm_rss_kib,
                    webhook_request)

REQUESTS = int(os.environ.get("RSS_REQUESTS", "20000"))
WARMUP = int(os.environ.get("RSS_WARMUP", "5000"))
MAX_GROWTH_KIB = int(os.environ.get("RSS_MAX_GROWTH_KIB", str(8 * 1024)))
CLIENTS = 8


def request_for(d, i, known):
    """The i-th request of the mix, and whether the connection survives it."""
    kind = i % 10
    if kind in (0, 1, 2):
        c = charge(status="INITIATED")
        known.append(c["id"])
        return b"".join(webhook_request(d, c)), True
    if kind == 3 and known:
        return b"".join(webhook_request(d, charge(known[-1], status="CAPTURED"))), True
    if kind == 4:
        return b"".join(webhook_request(d, charge(), sign=False)), True
    if kind == 5:
        return b"".join(webhook_request(d, body=b'{"id":"chg_x","amount":"1"}')), True
    if kind == 6:
        cid = known[-1] if known else "chg_none"
        return b"GET /cashpay/return?charge_id=" + cid.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n", True
    if kind == 7:
        cid = known[-1] if known else "chg_none"
        return b"GET /cashpay/status/" + cid.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n", True
    if kind == 8:  # answered 413 from the headers: the connection closes
        head, _ = webhook_request(d, body=b"", framing=b"Content-Length: 999999\r\n")
        return head, False
    # a smuggling shape: 400 and a close
    head, raw = webhook_request(d, framing=b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")
    return head + raw, False


def client(d, first, count, errors):
    known = []
    i = first
    end = first + count
    while i < end:
        try:
            with connect(d.port, timeout=30) as s:
                reader = Reader(s, deadline=600)
                while i < end:
                    data, keep = request_for(d, i, known)
                    i += 1
                    s.sendall(data)
                    r = reader.next()
                    if r is None or r.status >= 500:
                        errors.append(r.status if r else "closed")
                    if not keep:
                        break
        except OSError as e:
            errors.append(type(e).__name__)
            i += 1


def run(d, first, count):
    errors = []
    per = count // CLIENTS
    threads = [threading.Thread(target=client, args=(d, first + k * per, per, errors))
               for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_rss_is_flat():
    with Daemon({"log.level": "warning"}) as d:
        pid = d.proc.pid
        errors = run(d, 0, WARMUP)
        figures = [(0, vm_rss_kib(pid))]
        started = time.monotonic()
        half = REQUESTS // 2
        errors += run(d, WARMUP, half)
        figures.append((half, vm_rss_kib(pid)))
        errors += run(d, WARMUP + half, REQUESTS - half)
        figures.append((REQUESTS, vm_rss_kib(pid)))
        seconds = time.monotonic() - started
        print("  VmRSS after a warm-up of %d requests: %s; %.0f requests/s, %d descriptors" % (
            WARMUP, ", ".join(f"{n}: {kib / 1024:.1f} MiB" for n, kib in figures),
            REQUESTS / seconds, open_fds(pid)))
        check(not errors, f"server errors or closes: {errors[:10]} ({len(errors)})")
        growth = figures[-1][1] - figures[0][1]
        check(growth < MAX_GROWTH_KIB, f"VmRSS grew {growth} KiB over {REQUESTS} requests")


if __name__ == "__main__":
    run_tests([test_rss_is_flat])
