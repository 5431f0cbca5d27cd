#!/usr/bin/env bash
# confirm = api under load: webhooks that cashpayd confirms with cashpay-sim.
#
#   bench/confirm.sh [options]
#     --cashpayd PATH       the daemon (default: build/cashpayd)
#     --sim PATH            the simulator (default: src/sim/cashpay-sim)
#     --duration D          wrk's -d (default 10s)
#     --connections "N…"    keep-alive connections to the daemon (default 256)
#     --latency-ms L        cashpay-sim --api-latency-ms while wrk runs (default 20)
#     --seed-seconds S      how long charges are created at the simulator
#                           first (default 8; about 2,000 a second)
#     --set SECTION.KEY=V   extra cashpayd setting (repeatable), e.g.
#                           --set cashpay.max_inflight=64 (the contract's)
#     --keep                keep the work directory
#
# cashpay-sim starts with a client secret (cashpayd takes its tokens from
# the token endpoint, as in production) and sends no webhooks. Charges are
# created at it through its API (wrk, latency 0, one Idempotency-Key each),
# listed, and written as signed webhooks claiming exactly what the
# simulator holds (INITIATED, the charge's amount), so every claim is
# confirmed. Then, per connection count, cashpayd on a fresh database
# (synchronous = full, confirm = api) takes them from wrk while every one
# waits for its GET /v1/charges/{id} at the simulator. One line per run:
# confirmed webhooks/s, p50/p99, the outcomes stored, the simulator's
# fetches, TCP connections accepted per 1,000 API requests (keep-alive
# reuse: about max_inflight per run, not one per request), token endpoint
# calls, the daemon's peak RSS and CPU per webhook. When wrk's list runs
# out it starts again (`wraps`): those repeats are fetched and confirmed
# too, and stored as `duplicate`.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cashpayd=$SOURCE_ROOT/build/cashpayd
sim=$SOURCE_ROOT/src/sim/cashpay-sim
duration=10s
connections=256
latency=20
seed_seconds=8
keep=false
extra=()
while (($#)); do
        case $1 in
        --cashpayd) cashpayd=$2; shift ;;
        --sim) sim=$2; shift ;;
        --duration) duration=$2; shift ;;
        --connections) connections=$2; shift ;;
        --latency-ms) latency=$2; shift ;;
        --seed-seconds) seed_seconds=$2; shift ;;
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

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cashpayd-confirm.XXXXXX")
$keep || trap 'end_jobs; rm -rf "$WORK"' EXIT

echo "$BENCH_SECRET" >"$WORK/secret"
static=bench-static-$RANDOM$RANDOM
echo "$static" >"$WORK/static-token"
start_sim --static-token-file "$WORK/static-token"

# The charges, created through the simulator's API (the static token: the
# daemon's token endpoint calls are counted from zero later).
cat >"$WORK/create.lua" <<LUA
local n = 0
function setup(thread) thread:set("tid", tostring(math.random(1e9))) end
function request()
        n = n + 1
        return wrk.format("POST", "/v1/charges", {
                ["Content-Type"] = "application/json",
                ["Authorization"] = "Bearer $static",
                ["Idempotency-Key"] = "seed-" .. tid .. "-" .. n,
        }, '{"amount":' .. (1000 + n % 9000) .. ',"currency":"YER","description":"Purchase of a watch","post_url":"http://127.0.0.1:9/hook","redirect_url":"http://127.0.0.1:9/return"}')
end
LUA
wrk -t"$WRK_THREADS" -c64 -d"${seed_seconds}s" -s "$WORK/create.lua" "$SIM_BASE/v1/charges" \
        >"$WORK/seed.txt" 2>&1 || die "seeding failed: $(cat "$WORK/seed.txt")"
sim_control charges >"$WORK/charges.json"
seeded=$(json_field 'len(j["charges"])' <"$WORK/charges.json")
/usr/bin/python3 "$BENCH_DIR/gen-bodies.py" --secret "$BENCH_SECRET" --charges "$WORK/charges.json" \
        "$WORK/bodies.txt" || die "cannot write the webhooks"
sim_control config "{\"api_latency_ms\": $latency}" >/dev/null

write_config() {  # write_config DIR PORT ADMIN
        {
                api_config "$1" "$2" "$3"
                printf '[webhook]\nsecret_file = %s/secret\nconfirm = api\n' "$WORK"
                printf '[checkout]\nlisten =\n'
        } >"$1/cashpayd.conf"
        set_config_keys "$1/cashpayd.conf" "${extra[@]+"${extra[@]}"}"
}

outcomes() {  # outcomes DB: "applied=N duplicate=N ..." of the stored deliveries
        /usr/bin/python3 - "$1" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
rows = db.execute("SELECT outcome, count(*) FROM webhook_deliveries GROUP BY outcome ORDER BY 1")
print(" ".join(f"{o}={n}" for o, n in rows))
EOF
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
        "$(basename "$cashpayd") $("$cashpayd" --version | cut -d' ' -f2), wrk -t$WRK_THREADS -d$duration," \
        "cashpay-sim latency ${latency} ms, $seeded charges seeded${extra[*]:+, ${extra[*]}}"
print_header
for conns in $connections; do
        dir=$WORK/cashpayd-$conns
        mkdir -p "$dir"
        port=$(free_port)
        admin=$(free_port)
        write_config "$dir" "$port" "$admin"
        sim_control stats/reset '{}' >/dev/null
        sim_ticks0=$(cpu_ticks "$SIM_PID")
        start_daemon "$dir" "$port"
        run_wrk "http://127.0.0.1:$port/cashpay/webhook" "$conns" "$duration" "$WORK/bodies.txt" \
                keepalive "$dir/wrk.txt"
        rss=$(peak_rss_kib "$DAEMON_PID")
        cpu=$(cpu_ticks "$DAEMON_PID")
        sim_ticks1=$(cpu_ticks "$SIM_PID")
        curl -s "http://127.0.0.1:$admin/metrics" >"$dir/metrics.txt" || true
        stop_pid "$DAEMON_PID" || die "cashpayd did not stop within 30 s"
        stats=$(sim_control stats)
        stored=$(count_stored "$dir/db/cashpay.db")
        report cashpayd "$conns" keepalive "$dir/wrk.txt" "$stored" "$rss" "$cpu"
        fetches=$(json_field 'j["charge_fetches"]' <<<"$stats")
        echo "          outcomes: $(outcomes "$dir/db/cashpay.db"); sim: $fetches fetches," \
                "sim CPU $(( (sim_ticks1 - sim_ticks0) * 100 / $(getconf CLK_TCK) / $(seconds "$duration") ))%," \
                "$(sim_api_stats "$stats" "$fetches")"
done
$keep && echo "work directory kept: $WORK"
stop_pid "$SIM_PID" || true
((LAST_ACKED > 0)) || die "FAILED: the last run acknowledged nothing"
exit 0
