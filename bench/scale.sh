#!/usr/bin/env bash
# Does throughput stay flat as the database grows?
#
#   bench/scale.sh [--cashpayd PATH] [--sizes "10000 100000 1000000"]
#                  [--connections 64] [--duration 10s] [--keep]
#
# For each size N: a fresh database migrated by cashpayd, pre-filled in one
# SQL transaction with N orders the way cashpayd would have left them (each
# INITIATED then CAPTURED: two deliveries with their bodies and two events;
# all but the newest thousand fulfilled) and flushed to disk, then cashpayd
# on it under wrk as in run.sh (synchronous = full), one line per size. Fails
# when a run stored fewer webhooks than it acknowledged.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cashpayd=$SOURCE_ROOT/build/cashpayd
sizes="10000 100000 1000000"
conns=64
duration=10s
keep=false
while (($#)); do
        case $1 in
        --cashpayd) cashpayd=$2; shift ;;
        --sizes) sizes=$2; shift ;;
        --connections) conns=$2; shift ;;
        --duration) duration=$2; shift ;;
        --keep) keep=true ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
        esac
        shift
done
prepare_run scale "$cashpayd" "$keep" "$duration"

# prefill DB N: N orders, 2N deliveries, 2N events in one transaction.
prefill() {
        /usr/bin/python3 - "$1" "$2" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
n = int(sys.argv[2])
db.execute("PRAGMA synchronous = OFF")  # setting the scene, not measured
db.execute("BEGIN")
ts = "strftime('%Y-%m-%dT%H:%M:%fZ', 1735689600 + i / 10.0, 'unixepoch')"
series = f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n})"
body = ("'{\"id\":\"chg_fill' || printf('%09d', i) || '\",\"status\":\"' || st || "
        "'\",\"amount\":' || (1000 + i % 9000) || ',\"currency\":\"YER\",\"description\":"
        "\"Purchase of a watch\",\"created\":' || (1672531200 + i) || '}'")
db.execute(f"""INSERT INTO webhook_deliveries (id, received_at, remote_addr, charge_id,
        claimed_status, outcome, http_status, body)
        {series}, k(st, o) AS (VALUES ('INITIATED', 1), ('CAPTURED', 2))
        SELECT 2 * i - 2 + o, {ts}, '127.0.0.1', 'chg_fill' || printf('%09d', i), st,
               'applied', 200, CAST({body} AS BLOB)
        FROM s, k ORDER BY i, o""")
db.execute(f"""INSERT INTO orders (charge_id, status, amount, currency, description,
        transaction_url, charge_created, first_seen_at, updated_at, captured_at, fulfilled_at)
        {series}
        SELECT 'chg_fill' || printf('%09d', i), 'CAPTURED', 1000 + i % 9000, 'YER',
               'Purchase of a watch', 'https://pay.cashpay.example/session/' || i,
               1672531200 + i, {ts}, {ts}, {ts}, CASE WHEN i <= {n} - 1000 THEN {ts} END
        FROM s""")
db.execute(f"""INSERT INTO order_events (charge_id, from_status, to_status, delivery_id,
        recorded_at)
        {series}, k(f, t, o) AS (VALUES (NULL, 'INITIATED', 1), ('INITIATED', 'CAPTURED', 2))
        SELECT 'chg_fill' || printf('%09d', i), f, t, 2 * i - 2 + o, {ts}
        FROM s, k ORDER BY i, o""")
db.execute("COMMIT")
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
db.close()
# Written without syncing: flush it now, or the kernel's writeback of a
# gigabyte competes with the measured run's fsyncs.
import os
fd = os.open(sys.argv[1], os.O_RDONLY)
os.fsync(fd)
os.close(fd)
EOF
}

# count_new DB: deliveries of this run answered 200 (the pre-filled ids end at 2N).
count_new() {
        /usr/bin/python3 - "$1" "$2" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(db.execute("SELECT count(*) FROM webhook_deliveries WHERE id > ? AND http_status = 200",
                 (2 * int(sys.argv[2]),)).fetchone()[0])
EOF
}

start_daemon() {
        local dir=$1
        "$cashpayd" --config "$dir/cashpayd.conf" 2>>"$dir/cashpayd.log" &
        pid=$!
        wait_port "$port" "$pid" || { cat "$dir/cashpayd.log" >&2; die "cashpayd did not start"; }
}

# run_size N
run_size() {
        local dir=$WORK/size-$1 rss cpu stored t0 fill_s size
        mkdir -p "$dir"
        echo "$BENCH_SECRET" >"$dir/secret"
        port=$(free_port)
        printf '[http]\nlisten = 127.0.0.1:%s\nmax_connections_per_ip = 0\n[admin]\nlisten =\n[webhook]\nsecret_file = %s/secret\n[database]\npath = %s/cashpay.db\nsynchronous = full\n[log]\nlevel = notice\n' \
                "$port" "$dir" "$dir" >"$dir/cashpayd.conf"
        start_daemon "$dir" # creates and migrates the database
        stop_pid "$pid" || die "cashpayd did not stop"
        t0=$(date +%s)
        prefill "$dir/cashpay.db" "$1"
        fill_s=$(($(date +%s) - t0))
        size=$(du -m "$dir/cashpay.db" | cut -f1)
        start_daemon "$dir"
        run_wrk "http://127.0.0.1:$port/cashpay/webhook" "$conns" "$duration" "$bodies" keepalive "$dir/wrk.txt"
        rss=$(peak_rss_kib "$pid")
        cpu=$(cpu_ticks "$pid")
        stop_pid "$pid" || die "cashpayd did not stop within 30 s"
        stored=$(count_new "$dir/cashpay.db" "$1")
        printf '%-9s %9d orders (%5d MiB, filled in %3ds): ' size "$1" "$size" "$fill_s"
        report cashpayd "$conns" keepalive "$dir/wrk.txt" "$stored" "$rss" "$cpu"
}

printf '%-59s' "" && print_header
for n in $sizes; do
        run_size "$n"
done
$keep && echo "work directory kept: $WORK"
exit 0
