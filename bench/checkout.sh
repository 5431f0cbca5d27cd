#!/usr/bin/env bash
# The checkout listener under load: POST /charges (§8.3) against cashpay-sim.
#
#   bench/checkout.sh [options]
#     --cashpayd PATH       the daemon (default: build/cashpayd)
#     --sim PATH            the simulator (default: src/sim/cashpay-sim)
#     --duration D          wrk's -d (default 10s)
#     --connections "N…"    keep-alive connections to the listener (default "64 256")
#     --latency-ms L        cashpay-sim --api-latency-ms (default 20)
#     --set SECTION.KEY=V   extra cashpayd setting (repeatable)
#     --keep                keep the work directory
#
# cashpay-sim with a client secret (cashpayd takes its tokens from the token
# endpoint) and no webhooks; per connection count, cashpayd on a fresh
# database (synchronous = full) with [checkout] token_file set, and wrk
# with checkout.lua: every request a new order_ref, so each one is recorded
# in charge_requests, created at the simulator (POST /v1/charges with its
# Idempotency-Key) and recorded as an INITIATED order before its 201. One
# line per run: charges/s, p50/p99, orders stored (at least the 2xx, or it
# fails), then the simulator's creates, TCP connections accepted per 1,000
# API requests and token endpoint calls.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cashpayd=$SOURCE_ROOT/build/cashpayd
sim=$SOURCE_ROOT/src/sim/cashpay-sim
duration=10s
connections="64 256"
latency=20
keep=false
extra=()
while (($#)); do
        case $1 in
        --cashpayd) cashpayd=$2; shift ;;
        --sim) sim=$2; shift ;;
        --duration) duration=$2; shift ;;
        --connections) connections=$2; shift ;;
        --latency-ms) latency=$2; shift ;;
        --set) extra+=("$2"); shift ;;
        --keep) keep=true ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
        esac
        shift
done
need wrk wrk
need curl curl
[[ -x $cashpayd ]] || die "no cashpayd at $cashpayd (build it, or pass --cashpayd PATH)"
[[ -x $sim ]] || die "$sim is not executable"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cashpayd-checkout.XXXXXX")
$keep || trap 'end_jobs; rm -rf "$WORK"' EXIT

echo "$BENCH_SECRET" >"$WORK/secret"
app_token=bench-app-$RANDOM$RANDOM
echo "$app_token" >"$WORK/app-token"
start_sim --api-latency-ms "$latency"

write_config() {  # write_config DIR PORT ADMIN CHECKOUT
        {
                api_config "$1" "$2" "$3"
                printf '[webhook]\nsecret_file = %s/secret\n' "$WORK"
                printf '[checkout]\nlisten = 127.0.0.1:%s\ntoken_file = %s/app-token\n' "$4" "$WORK"
        } >"$1/cashpayd.conf"
        set_config_keys "$1/cashpayd.conf" "${extra[@]+"${extra[@]}"}"
}

count_orders() {  # count_orders DB: the orders the checkout recorded
        /usr/bin/python3 - "$1" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(db.execute("SELECT count(*) FROM orders WHERE order_ref IS NOT NULL").fetchone()[0])
EOF
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
        "$(basename "$cashpayd") $("$cashpayd" --version | cut -d' ' -f2), wrk -t$WRK_THREADS -d$duration," \
        "cashpay-sim latency ${latency} ms${extra[*]:+, ${extra[*]}}"
print_header | sed 's/webhooks\/s/ charges\/s/'
for conns in $connections; do
        dir=$WORK/cashpayd-$conns
        mkdir -p "$dir"
        port=$(free_port)
        admin=$(free_port)
        checkout=$(free_port)
        write_config "$dir" "$port" "$admin" "$checkout"
        sim_control stats/reset '{}' >/dev/null
        start_daemon "$dir" "$checkout"
        threads=$WRK_THREADS
        ((threads > conns)) && threads=$conns
        wrk -t"$threads" -c"$conns" -d"$duration" --timeout 10s -s "$BENCH_DIR/checkout.lua" \
                "http://127.0.0.1:$checkout/charges" -- "$app_token" >"$dir/wrk.txt" 2>&1
        rss=$(peak_rss_kib "$DAEMON_PID")
        cpu=$(cpu_ticks "$DAEMON_PID")
        stop_pid "$DAEMON_PID" || die "cashpayd did not stop within 30 s"
        stats=$(sim_control stats)
        report cashpayd "$conns" keepalive "$dir/wrk.txt" "$(count_orders "$dir/db/cashpay.db")" \
                "$rss" "$cpu"
        creates=$(json_field 'j["charge_creates"]' <<<"$stats")
        echo "          sim: $creates creates ($(json_field 'j["charges_created"]' <<<"$stats") new" \
                "charges), $(sim_api_stats "$stats" "$creates")"
done
$keep && echo "work directory kept: $WORK"
stop_pid "$SIM_PID" || true
((LAST_ACKED > 0)) || die "FAILED: the last run acknowledged nothing"
exit 0
