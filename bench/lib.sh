# Shared by the bench scripts (sourced, not run;
# the globals it sets are theirs).
# shellcheck shell=bash disable=SC2034
#
# A run: start a receiver on a fresh database, point wrk at it for a fixed
# time, read its peak RSS, stop it, count what it stored, print one line.
# Only 127.0.0.1 is ever used, and every wait is bounded.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE_ROOT=$(cd "$BENCH_DIR/.." && pwd)
BENCH_SECRET=bench-secret-0123456789abcdef
WRK_THREADS=2

die() {
        echo "bench: $*" >&2
        exit 1
}

# end_jobs: end what this script still runs in the background (a receiver
# left behind by die, wrk), at exit.
end_jobs() {
        local pids
        pids=$(jobs -pr)
        [[ -z $pids ]] && return 0
        # shellcheck disable=SC2086
        kill -TERM $pids 2>/dev/null
        wait 2>/dev/null
}
trap end_jobs EXIT

need() {
        command -v "$1" >/dev/null || die "$1 is required (Debian package: $2)"
}

# set_config_keys FILE [SECTION.KEY=VALUE]... - each override written into
# the INI file FILE, its section added when missing.
set_config_keys() {
        local file=$1 kv
        shift
        for kv in "$@"; do
                /usr/bin/python3 - "$file" "$kv" <<'EOF'
import configparser, sys
path, kv = sys.argv[1], sys.argv[2]
key, value = kv.split("=", 1)
section, name = key.split(".", 1)
c = configparser.ConfigParser(interpolation=None)
c.read(path)
if not c.has_section(section):
    c.add_section(section)
c.set(section, name, value)
with open(path, "w") as f:
    c.write(f)
EOF
        done
}

free_port() {
        /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT PID: until something listens on 127.0.0.1:PORT (10 s at most).
wait_port() {
        local i
        for ((i = 0; i < 200; i++)); do
                kill -0 "$2" 2>/dev/null || return 1
                (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
                sleep 0.05
        done
        return 1
}

# stop_pid PID: SIGTERM, then wait up to 30 s; SIGKILL and fail after that.
stop_pid() {
        local i
        kill -TERM "$1" 2>/dev/null || return 0
        for ((i = 0; i < 300; i++)); do
                kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null; return 0; }
                sleep 0.1
        done
        kill -KILL "$1" 2>/dev/null
        wait "$1" 2>/dev/null
        return 1
}

# peak_rss_kib PID: VmHWM, the high-water mark of the resident set.
peak_rss_kib() {
        awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# cpu_ticks PID: user + system time so far, in clock ticks.
cpu_ticks() {
        awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# trace_rss PID WHILE_PID: VmRSS of PID in KiB once a second while WHILE_PID runs
# (bounded by wrk's own duration).
trace_rss() {
        while kill -0 "$2" 2>/dev/null; do
                sleep 1
                awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || return 0
        done
}

# scrape_metrics PORT INTERVAL WHILE_PID: GET /metrics from 127.0.0.1:PORT
# every INTERVAL seconds while WHILE_PID runs (bounded by wrk's own
# duration); prints how many scrapes succeeded. One long-lived process, as
# Prometheus is, so that a scraper's own start-up costs do not compete with
# the daemon for the CPUs. (The admin listener closes the connection after
# each answer, so every scrape opens a new one.)
scrape_metrics() {
        /usr/bin/python3 - "$@" <<'EOF'
import http.client, os, sys, time
port, interval, pid = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
conn, n = http.client.HTTPConnection("127.0.0.1", port, timeout=5), 0
def alive():
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False
while alive():
    try:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        r.read()
        n += r.status == 200
    except OSError:
        conn.close()
    time.sleep(interval)
print(n)
EOF
}

# gen_bodies FILE COUNT [PREFIX]
gen_bodies() {
        /usr/bin/python3 "$BENCH_DIR/gen-bodies.py" --secret "$BENCH_SECRET" --count "$2" \
                --prefix "${3:-b}" "$1" || die "cannot generate request bodies"
}

# prepare_run NAME CASHPAYD KEEP DURATION: check the tools, make $WORK
# (removed at exit unless KEEP is true) and enough distinct webhooks in
# $bodies for 60,000 a second, so none is sent twice.
prepare_run() {
        need wrk wrk
        need openssl openssl
        [[ -x $2 ]] || die "no cashpayd at $2 (build it, or pass --cashpayd PATH)"
        WORK=$(mktemp -d "${TMPDIR:-/tmp}/cashpayd-$1.XXXXXX")
        $3 || trap 'end_jobs; rm -rf "$WORK"' EXIT
        bodies=$WORK/bodies.txt
        gen_bodies "$bodies" $(($(seconds "$4") * 60000 + 2000))
}

# seconds DURATION: "10s", "2m" or "10" in seconds.
seconds() {
        case $1 in
        *m) echo $((${1%m} * 60)) ;;
        *s) echo "${1%s}" ;;
        *) echo "$1" ;;
        esac
}

# run_wrk URL CONNS DURATION BODIES MODE OUT: writes wrk's output to OUT.
run_wrk() {
        local threads=$WRK_THREADS close=
        ((threads > $2)) && threads=$2
        [[ $5 == close ]] && close=close
        # The script must see the thread count wrk really uses.
        wrk -t"$threads" -c"$2" -d"$3" --timeout 10s -s "$BENCH_DIR/webhooks.lua" "$1" \
                -- "$4" "$threads" $close >"$6" 2>&1
}

# result_field FILE NAME: a value of wrk's RESULT line.
result_field() {
        sed -n "s/^RESULT .*\<$2=\([0-9]*\).*/\1/p" "$1"
}

# count_stored DB: deliveries that were answered 200.
count_stored() {
        /usr/bin/python3 - "$1" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(db.execute("SELECT count(*) FROM webhook_deliveries WHERE http_status = 200").fetchone()[0])
EOF
}

print_header() {
        printf '%-12s %5s %-9s %11s %9s %9s %8s %9s %9s %9s %7s\n' \
                receiver conns conn-mode webhooks/s p50 p99 non-2xx acked stored peak-RSS cpu/req
}

ms() {
        awk -v us="$1" 'BEGIN { if (us < 10000) printf "%.2fms", us / 1000; else printf "%.1fms", us / 1000 }'
}

# report NAME CONNS MODE WRK_OUT STORED RSS_KIB CPU_TICKS: prints the line;
# fails when something was acknowledged that is not in the database.
# cpu/req is the receiver's own CPU time (user + system) per acknowledged
# webhook: unlike webhooks/s it hardly moves when something else runs.
report() {
        local out=$4 requests duration non2xx acked rate errs wraps cpu
        requests=$(result_field "$out" requests)
        [[ -n $requests ]] || { cat "$out" >&2; die "wrk did not finish (see above)"; }
        duration=$(result_field "$out" duration_us)
        non2xx=$(result_field "$out" non2xx)
        acked=$((requests - non2xx))
        rate=$(awk -v n="$acked" -v us="$duration" 'BEGIN { printf "%d", n / (us / 1e6) }')
        cpu=$(awk -v t="$7" -v hz="$(getconf CLK_TCK)" -v n="$acked" \
                'BEGIN { if (n > 0) printf "%.0fus", t / hz * 1e6 / n; else print "-" }')
        printf '%-12s %5d %-9s %11s %9s %9s %8d %9d %9d %8.1fM %7s\n' "$1" "$2" "$3" \
                "$rate" "$(ms "$(result_field "$out" p50_us)")" \
                "$(ms "$(result_field "$out" p99_us)")" "$non2xx" "$acked" "$5" \
                "$(awk -v k="$6" 'BEGIN { print k / 1024 }')" "$cpu"
        errs=$(($(result_field "$out" connect_err) + $(result_field "$out" read_err) +
                $(result_field "$out" write_err) + $(result_field "$out" timeouts)))
        wraps=$(result_field "$out" wraps)
        ((errs == 0)) || echo "          (socket errors: $(grep -m1 'Socket errors' "$out" | sed 's/^ *//'))"
        ((wraps == 0)) || echo "          (request list wrapped $wraps time(s): some webhooks were repeats)"
        LAST_ACKED=$acked
        LAST_RATE=$rate
        if ((${5} < acked)); then
                echo "bench: FAILED: $1 acknowledged $acked webhooks but stored only $5" >&2
                exit 1
        fi
}

# ---- the API half (confirm.sh, checkout.sh) ---------------------------------
# Both need $WORK, $sim and $cashpayd set; the simulator and the daemons are
# ended by end_jobs at exit like the rest.

# start_sim [ARG]...: cashpay-sim on a free port, with the client secret
# cashpayd gets its tokens with ($WORK/client-secret) and no webhooks, plus
# ARGs; sets SIM_PID and SIM_BASE, fails when it does not start.
start_sim() {
        local port
        port=$(free_port)
        SIM_BASE=http://127.0.0.1:$port
        echo bench-client-secret >"$WORK/client-secret"
        # shellcheck disable=SC2154 # the calling script's
        "$sim" --listen "127.0.0.1:$port" --verify none --client-id cashpayd-bench \
                --client-secret-file "$WORK/client-secret" --webhook-drop yes "$@" \
                >"$WORK/sim.out" 2>"$WORK/sim.log" &
        SIM_PID=$!
        wait_port "$port" "$SIM_PID" || die "cashpay-sim did not start: $(cat "$WORK/sim.log")"
}

# sim_control PATH [JSON]: GET (or POST JSON to) the simulator's /_sim/PATH.
sim_control() {
        if (($# > 1)); then
                curl -sS --fail -X POST -H 'Content-Type: application/json' --data-binary "$2" \
                        "$SIM_BASE/_sim/$1"
        else
                curl -sS --fail "$SIM_BASE/_sim/$1"
        fi
}

# json_field EXPR: evaluate EXPR over the JSON on stdin (as j).
json_field() {
        /usr/bin/python3 -c "import json, sys; j = json.load(sys.stdin); print($1)"
}

# api_config DIR PORT ADMIN: the configuration both share, to stdout: the
# listeners, a fresh database in DIR (synchronous = full) and the API at
# the simulator, tokens from its token endpoint, no reconciliation in the
# run's time.
api_config() {
        printf '[http]\nlisten = 127.0.0.1:%s\nmax_connections_per_ip = 0\n' "$2"
        printf '[admin]\nlisten = 127.0.0.1:%s\n' "$3"
        printf '[database]\npath = %s/db/cashpay.db\nsynchronous = full\n' "$1"
        printf '[cashpay]\napi_url = %s/v1\npublic_url = http://127.0.0.1:%s\n' "$SIM_BASE" "$2"
        printf 'token_url = %s/oauth/token\nclient_id = cashpayd-bench\n' "$SIM_BASE"
        printf 'client_secret_file = %s/client-secret\nreconcile_after = 3600\n' "$WORK"
        printf '[log]\nlevel = notice\n'
}

# start_daemon DIR PORT: cashpayd with DIR/cashpayd.conf (log in DIR),
# until PORT listens; sets DAEMON_PID.
start_daemon() {
        # shellcheck disable=SC2154 # the calling script's
        "$cashpayd" --config "$1/cashpayd.conf" 2>"$1/cashpayd.log" &
        DAEMON_PID=$!
        wait_port "$2" "$DAEMON_PID" || { cat "$1/cashpayd.log" >&2; die "cashpayd did not start"; }
}

# sim_api_stats STATS REQUESTS: what the simulator saw of the API client
# in its stats JSON STATS, REQUESTS of them: TCP connections accepted per
# 1,000 requests, token endpoint calls, the most requests at once.
sim_api_stats() {
        local accepted
        accepted=$(json_field 'j["connections_accepted"]' <<<"$1")
        echo "$accepted TCP connections ($(awk -v a="$accepted" -v f="$2" \
                'BEGIN { if (f > 0) printf "%.2f", a * 1000 / f; else print "-" }') per 1,000)," \
                "$(json_field 'j["token_requests"]' <<<"$1") token request(s)," \
                "api_inflight_max $(json_field 'j["api_inflight_max"]' <<<"$1")"
}
