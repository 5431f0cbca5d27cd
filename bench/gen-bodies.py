#!/usr/bin/python3
"""Write signed CashPay webhook requests for the load generator.

Usage: gen-bodies.py --secret SECRET --count N [--prefix P] OUT
       gen-bodies.py --secret SECRET --charges LIST OUT

Each line of OUT is "SIGNATURE<TAB>BODY": the hex HMAC-SHA256 of the body
(what cashpayd expects in X-CashPay-Signature by default) and a charge
object on one line. Every charge id is unique to the file (and to the
prefix, so runs on one database can use different prefixes). Each id is
sent twice, INITIATED and later CAPTURED; the CAPTURED one follows LAG
lines later, so the two kinds are interleaved the way a busy shop's
webhooks are, and a CAPTURED rarely overtakes its INITIATED even when
hundreds of connections run at once (if it does, the INITIATED is
answered "stale", which is still a committed 200).

N is the number of lines (requests); it is rounded up to an even number.

With --charges, LIST is cashpay-sim's GET /_sim/charges answer: one line per
charge, claiming exactly what the simulator holds (the charge object as its
API returns it), so that a confirm = api daemon finds every claim confirmed.
"""
import argparse
import hashlib
import hmac
import json
import sys

LAG = 512


def body(charge_id, status, n):
    return json.dumps({
        "id": charge_id,
        "status": status,
        "amount": 1000 + n % 9000,
        "currency": "YER",
        "description": "Purchase of a watch",
        "transaction_url": "https://pay.cashpay.example/session/" + charge_id[4:],
        "created": 1672531200 + n,
    }, separators=(",", ":"))


def order(pairs):
    """Indices of the lines: INITIATED j, then CAPTURED j-LAG, alternating."""
    for j in range(pairs + LAG):
        if j < pairs:
            yield j, "INITIATED"
        if j >= LAG:
            yield j - LAG, "CAPTURED"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--secret", required=True)
    ap.add_argument("--count", type=int)
    ap.add_argument("--charges")
    ap.add_argument("--prefix", default="b")
    ap.add_argument("out")
    args = ap.parse_args()
    key = args.secret.encode()
    if args.charges:
        with open(args.charges) as f:
            listed = json.load(f)["charges"]
        with open(args.out, "w") as f:
            for c in listed:
                raw = json.dumps(c["charge"], separators=(",", ":"))
                sig = hmac.new(key, raw.encode(), hashlib.sha256).hexdigest()
                f.write(f"{sig}\t{raw}\n")
        return
    if args.count is None or args.count < 2:
        sys.exit("gen-bodies: --count must be at least 2")
    pairs = (args.count + 1) // 2
    with open(args.out, "w") as f:
        for n, status in order(pairs):
            raw = body(f"chg_{args.prefix}{n:08d}", status, n)
            sig = hmac.new(key, raw.encode(), hashlib.sha256).hexdigest()
            f.write(f"{sig}\t{raw}\n")


if __name__ == "__main__":
    main()
