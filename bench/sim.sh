#!/usr/bin/env bash
# Throughput of cashpay-sim's GET /v1/charges/{id}: what the API side of a
# confirm = api benchmark can lean on.
#
#   bench/sim.sh [options]
#     --sim PATH            the simulator (default: src/sim/cashpay-sim)
#     --duration D          per run, wrk's -d (default 10s)
#     --connections "N…"    keep-alive connections (default "64 256")
#     --latency-ms "L…"     cashpay-sim --api-latency-ms per run (default "20")
#     --creates             also POST /v1/charges, each with its own
#                           Idempotency-Key (a new charge per request)
#
# Starts cashpay-sim on a free loopback port with a static bearer token,
# creates one charge, then for each latency and connection count runs
# `wrk -t2 -cN -dD --latency` against that charge and prints one line:
# requests/s, p50 and p99 latency, wrk's socket errors, the TCP connections
# the simulator accepted (keep-alive: about N) and the CPU it used. Fails
# when a run has non-2xx answers or socket errors, or (--creates) when a
# create did not make a new charge.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

sim=$SOURCE_ROOT/src/sim/cashpay-sim
duration=10s
connections="64 256"
latencies="20"
creates=0
while (($#)); do
        case $1 in
        --sim) sim=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        --latency-ms) latencies=$2; shift 2 ;;
        --creates) creates=1; shift ;;
        *) die "unknown option $1 (see the comment at the top of $0)" ;;
        esac
done
need wrk wrk
need curl curl
[[ -x $sim ]] || die "$sim is not executable"

work=$(mktemp -d "${TMPDIR:-/tmp}/cashpay-sim-bench.XXXXXX")
sim_pid=
cleanup() {
        [[ -n $sim_pid ]] && stop_pid "$sim_pid"
        rm -rf "$work"
}
trap cleanup EXIT

token=bench-token-$RANDOM$RANDOM
printf '%s\n' "$token" >"$work/token"
port=$(free_port)
base=http://127.0.0.1:$port

control() {  # control PATH [JSON]: a control API call, its answer on stdout
        if (($# > 1)); then
                curl -sS --fail -X POST -H 'Content-Type: application/json' --data-binary "$2" "$base/_sim/$1"
        else
                curl -sS --fail "$base/_sim/$1"
        fi
}

json_field() {  # json_field EXPR: evaluate EXPR over the JSON on stdin (as j)
        /usr/bin/python3 -c "import json, sys; j = json.load(sys.stdin); print($1)"
}

# wrk script for creates: every request its own Idempotency-Key (thread
# number and a counter), so each one makes a new charge.
write_create_script() {
        cat >"$work/create.lua" <<LUA
local n = 0
function setup(thread) thread:set("tid", tostring(math.random(1e9))) end
function request()
        n = n + 1
        return wrk.format("POST", "/v1/charges", {
                ["Content-Type"] = "application/json",
                ["Authorization"] = "Bearer $token",
                ["Idempotency-Key"] = "bench-" .. tid .. "-" .. n,
        }, '{"amount":2000,"currency":"YER","description":"bench","post_url":"http://127.0.0.1:9/hook","redirect_url":"http://127.0.0.1:9/return"}')
end
LUA
}

run() {  # run LATENCY CONNECTIONS [create]
        local latency=$1 conns=$2 what=${3:-fetch} out ticks0 ticks1 stats secs
        control config "{\"api_latency_ms\": $latency}" >/dev/null
        control stats/reset '{}' >/dev/null
        ticks0=$(cpu_ticks "$sim_pid")
        if [[ $what == create ]]; then
                out=$(wrk -t"$WRK_THREADS" -c"$conns" -d"$duration" --latency -s "$work/create.lua" \
                        "$base/v1/charges")
        else
                out=$(wrk -t"$WRK_THREADS" -c"$conns" -d"$duration" --latency \
                        -H "Authorization: Bearer $token" "$base/v1/charges/$charge_id")
        fi
        ticks1=$(cpu_ticks "$sim_pid")
        stats=$(control stats)
        secs=${duration%s}
        local rps p50 p99 errors non2xx accepted cpu
        rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")
        p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
        p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
        errors=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10; f = 1 } END { if (!f) print 0 }' <<<"$out")
        non2xx=$(awk '/Non-2xx/ { print $5; f = 1 } END { if (!f) print 0 }' <<<"$out")
        accepted=$(json_field 'j["connections_accepted"]' <<<"$stats")
        cpu=$(( (ticks1 - ticks0) * 100 / $(getconf CLK_TCK) / secs ))
        local label="GET /v1/charges/{id}"
        if [[ $what == create ]]; then
                label="POST /v1/charges"
                local made
                made=$(json_field 'j["charges_created"]' <<<"$stats")
                [[ $made == "$(json_field 'j["charge_creates"]' <<<"$stats")" ]] || failed=1
        fi
        printf 'cashpay-sim %-20s %3d connections, %2d ms latency: %6s req/s, p50 %s, p99 %s, %s socket errors, %s non-2xx, %s TCP connections, sim CPU %d%%\n' \
                "$label" "$conns" "$latency" "$rps" "$p50" "$p99" "$errors" "$non2xx" "$accepted" "$cpu"
        [[ $errors == 0 && $non2xx == 0 ]] || failed=1
}

"$sim" --listen "127.0.0.1:$port" --verify none --static-token-file "$work/token" \
        >"$work/sim.out" 2>"$work/sim.log" &
sim_pid=$!
wait_port "$port" "$sim_pid" || die "cashpay-sim did not start: $(cat "$work/sim.log")"
charge_id=$(curl -sS --fail -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        --data-binary '{"amount":2000,"currency":"YER","description":"bench",
                        "post_url":"http://127.0.0.1:9/hook","redirect_url":"http://127.0.0.1:9/return"}' \
        "$base/v1/charges" | json_field 'j["id"]')

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), wrk -t$WRK_THREADS -d$duration"
failed=0
write_create_script
for latency in $latencies; do
        for conns in $connections; do
                run "$latency" "$conns"
        done
done
if ((creates)); then
        for latency in $latencies; do
                for conns in $connections; do
                        run "$latency" "$conns" create
                done
        done
fi
exit "$failed"
