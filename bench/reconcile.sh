#!/usr/bin/env bash
# The reconciler working through a backlog: RSS and time for N stale orders.
#
#   bench/reconcile.sh [options]
#     --cashpayd PATH       the daemon (default: build/cashpayd)
#     --sim PATH            the simulator (default: src/sim/cashpay-sim)
#     --orders N            stale INITIATED orders (default 10000)
#     --latency-ms L        cashpay-sim --api-latency-ms (default 20)
#     --set SECTION.KEY=V   extra cashpayd setting (repeatable)
#     --timeout S           give up after S seconds of reconciling (default 120)
#     --keep                keep the work directory
#
# Charges are created at cashpay-sim through its API (wrk, one
# Idempotency-Key each), one in four is then paid there (its webhook
# dropped: a lost webhook), and an INITIATED order is written for each of N
# of them into a database the daemon migrated, first seen and untouched for
# an hour. cashpayd then starts with reconcile_after = 60: every order is
# due. VmRSS is sampled every 0.2 s until every order has a reconcile fetch
# recorded; one line: the time that took, fetches/s, orders CAPTURED, RSS
# at the start, the most and the last.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cashpayd=$SOURCE_ROOT/build/cashpayd
sim=$SOURCE_ROOT/src/sim/cashpay-sim
orders=10000
latency=20
timeout=120
keep=false
extra=()
while (($#)); do
        case $1 in
        --cashpayd) cashpayd=$2; shift ;;
        --sim) sim=$2; shift ;;
        --orders) orders=$2; shift ;;
        --latency-ms) latency=$2; shift ;;
        --set) extra+=("$2"); shift ;;
        --timeout) timeout=$2; shift ;;
        --keep) keep=true ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
        esac
        shift
done
need wrk wrk
need curl curl
[[ -x $cashpayd ]] || die "no cashpayd at $cashpayd (build it, or pass --cashpayd PATH)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cashpayd-reconcile.XXXXXX")
$keep || trap 'end_jobs; rm -rf "$WORK"' EXIT
sim_port=$(free_port)
sim_base=http://127.0.0.1:$sim_port
token=bench-token-$RANDOM$RANDOM
echo "$token" >"$WORK/token"
echo "$BENCH_SECRET" >"$WORK/secret"

"$sim" --listen "127.0.0.1:$sim_port" --verify none --static-token-file "$WORK/token" \
        --webhook-drop yes >"$WORK/sim.out" 2>"$WORK/sim.log" &
sim_pid=$!
wait_port "$sim_port" "$sim_pid" || die "cashpay-sim did not start: $(cat "$WORK/sim.log")"

cat >"$WORK/create.lua" <<LUA
local n = 0
function setup(thread) thread:set("tid", tostring(math.random(1e9))) end
function request()
        n = n + 1
        return wrk.format("POST", "/v1/charges", {
                ["Content-Type"] = "application/json",
                ["Authorization"] = "Bearer $token",
                ["Idempotency-Key"] = "seed-" .. tid .. "-" .. n,
        }, '{"amount":' .. (1000 + n % 9000) .. ',"currency":"YER","description":"Purchase of a watch","post_url":"http://127.0.0.1:9/hook","redirect_url":"http://127.0.0.1:9/return"}')
end
LUA
seed=$(( orders / 2000 + 2 ))
wrk -t"$WRK_THREADS" -c64 -d"${seed}s" -s "$WORK/create.lua" "$sim_base/v1/charges" \
        >"$WORK/seed.txt" 2>&1 || die "seeding failed: $(cat "$WORK/seed.txt")"
curl -sS --fail "$sim_base/_sim/charges" >"$WORK/charges.json"

write_config() {  # write_config PORT ADMIN RECONCILE_AFTER
        local kv
        {
                printf '[http]\nlisten = 127.0.0.1:%s\n' "$1"
                printf '[admin]\nlisten = 127.0.0.1:%s\n' "$2"
                printf '[webhook]\nsecret_file = %s/secret\n' "$WORK"
                printf '[database]\npath = %s/db/cashpay.db\n' "$WORK"
                printf '[cashpay]\napi_url = %s/v1\npublic_url = http://127.0.0.1:%s\n' "$sim_base" "$1"
                printf 'token_file = %s/token\nreconcile_after = %s\n' "$WORK" "$3"
                printf '[checkout]\nlisten =\n'
                printf '[log]\nlevel = notice\n'
        } >"$WORK/cashpayd.conf"
        set_config_keys "$WORK/cashpayd.conf" "${extra[@]+"${extra[@]}"}"
}

# The schema, made by the daemon itself (then stopped).
port=$(free_port)
admin=$(free_port)
mkdir -p "$WORK/db"
write_config "$port" "$admin" 86400
"$cashpayd" --config "$WORK/cashpayd.conf" 2>"$WORK/migrate.log" &
pid=$!
wait_port "$port" "$pid" || { cat "$WORK/migrate.log" >&2; die "cashpayd did not start"; }
stop_pid "$pid" || die "cashpayd did not stop"

# N orders, an hour old; one charge in four paid at the simulator.
/usr/bin/python3 - "$WORK/charges.json" "$WORK/db/cashpay.db" "$orders" "$sim_base" <<'EOF' || die "seeding the orders failed"
import datetime, http.client, json, sqlite3, sys, urllib.parse
listed, path, n, base = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
charges = [c["charge"] for c in json.load(open(listed))["charges"]][:n]
if len(charges) < n:
    sys.exit(f"only {len(charges)} charges at the simulator")
hour_ago = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1))
stamp = hour_ago.strftime("%Y-%m-%dT%H:%M:%S.") + f"{hour_ago.microsecond // 1000:03d}Z"
db = sqlite3.connect(path)
with db:
    db.executemany("INSERT INTO orders (charge_id, status, amount, currency, first_seen_at, "
                   "updated_at) VALUES (?, 'INITIATED', ?, ?, ?, ?)",
                   [(c["id"], c["amount"], c["currency"], stamp, stamp) for c in charges])
u = urllib.parse.urlsplit(base)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
for c in charges[::4]:
    conn.request("POST", f"/_sim/charges/{c['id']}/pay", body=b"{}",
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"pay {c['id']}: {r.status}")
EOF
curl -sS --fail -X POST -H 'Content-Type: application/json' \
        --data-binary "{\"api_latency_ms\": $latency}" "$sim_base/_sim/config" >/dev/null
curl -sS --fail -X POST -H 'Content-Type: application/json' --data-binary '{}' \
        "$sim_base/_sim/stats/reset" >/dev/null

reconciled() {
        /usr/bin/python3 - "$WORK/db/cashpay.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=5)
print(db.execute("SELECT count(DISTINCT charge_id) FROM api_fetches WHERE reason = 'reconcile'").fetchone()[0])
EOF
}

write_config "$port" "$admin" 60
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
        "$(basename "$cashpayd") $("$cashpayd" --version | cut -d' ' -f2), $orders stale orders," \
        "cashpay-sim latency ${latency} ms${extra[*]:+, ${extra[*]}}"
t0=$(date +%s.%N)
"$cashpayd" --config "$WORK/cashpayd.conf" 2>"$WORK/cashpayd.log" &
pid=$!
wait_port "$port" "$pid" || { cat "$WORK/cashpayd.log" >&2; die "cashpayd did not start"; }
rss_start=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
: >"$WORK/rss.txt"
done_n=0
gave_up=0
i=0
while :; do
        awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" >>"$WORK/rss.txt"
        if ((i % 5 == 0)); then
                done_n=$(reconciled)
                ((done_n >= orders)) && break
        fi
        i=$((i + 1))
        awk -v a="$t0" -v b="$(date +%s.%N)" -v t="$timeout" 'BEGIN { exit !(b - a > t) }' &&
                { echo "gave up after ${timeout} s: $done_n of $orders reconciled"; gave_up=1; break; }
        sleep 0.2
done
t1=$(date +%s.%N)
ticks=$(cpu_ticks "$pid")
stop_pid "$pid" || die "cashpayd did not stop within 30 s"
captured=$(/usr/bin/python3 -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT count(*) FROM orders WHERE status = 'CAPTURED'\").fetchone()[0])" "$WORK/db/cashpay.db")
# the simulator's counters (its answer can be large: one entry per Idempotency-Key)
read -r fetches accepted < <(curl -sS --fail "$sim_base/_sim/stats" |
        /usr/bin/python3 -c 'import json, sys; j = json.load(sys.stdin); print(j["charge_fetches"], j["connections_accepted"])')
awk -v a="$t0" -v b="$t1" -v n="$done_n" -v cap="$captured" -v s="$rss_start" \
        -v cpu="$ticks" -v hz="$(getconf CLK_TCK)" -v f="$fetches" -v c="$accepted" '
        { if ($1 > max) max = $1; last = $1; k++ }
        END {
                printf "reconciled %d orders in %.1f s (%.0f/s; %s fetches, %s TCP connections at the sim), %d CAPTURED; daemon CPU %.1f s; VmRSS MiB: start %.1f, max %.1f, last %.1f (%d samples)\n",
                        n, b - a, n / (b - a), f, c, cap, cpu / hz, s / 1024, max / 1024, last / 1024, k
        }' "$WORK/rss.txt"
echo "          VmRSS MiB every 0.2 s: $(awk '{ printf "%.1f ", $1 / 1024 }' "$WORK/rss.txt" | fold -w 160)"
$keep && echo "work directory kept: $WORK"
stop_pid "$sim_pid" || true
exit "$gave_up"
