#!/usr/bin/env bash
# Throughput and latency of cashpayd under signed, unique webhooks.
#
#   bench/run.sh [options]
#     --cashpayd PATH      the daemon to measure (default: build/cashpayd)
#     --duration D         per run, wrk's -d (default 10s)
#     --connections "N…"   (default "1 16 64 256")
#     --modes "M…"         keepalive and/or close (default "keepalive close")
#     --schemes "S…"       http and/or https (default "http https"): https
#                          serves a self-signed P-256 certificate made for
#                          the run; close then pays a full TLS handshake per
#                          webhook (wrk resumes no session)
#     --set SECTION.KEY=V  extra cashpayd setting (repeatable)
#     --log-level L        (default notice)
#     --peer / --no-peer   also measure the Express peer at 64 connections
#                          (default: on unless --smoke)
#     --smoke              a 1 s run at 4 connections per scheme; fails unless
#                          something was acknowledged
#     --keep               keep the work directory (logs, databases)
#     --rss-trace          also print each run's RSS once a second (is it flat?)
#     --scrape SECONDS     GET the admin listener's /metrics every SECONDS
#                          while wrk runs (does scraping move the figures?)
#
# Each run starts cashpayd on a fresh database (synchronous = full), loads it
# with `wrk -t2 -cN -dD`, stops it, counts the deliveries stored with a 200
# and prints one line. It fails when a run acknowledged more webhooks than
# its database holds.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cashpayd=$SOURCE_ROOT/build/cashpayd
duration=10s
connections="1 16 64 256"
modes="keepalive close"
schemes="http https"
log_level=notice
peer=auto
smoke=false
keep=false
rss_trace=false
scrape=
extra=()

while (($#)); do
        case $1 in
        --cashpayd) cashpayd=$2; shift ;;
        --duration) duration=$2; shift ;;
        --connections) connections=$2; shift ;;
        --modes) modes=$2; shift ;;
        --schemes) schemes=$2; shift ;;
        --set) extra+=("$2"); shift ;;
        --log-level) log_level=$2; shift ;;
        --peer) peer=true ;;
        --no-peer) peer=false ;;
        --smoke) smoke=true ;;
        --keep) keep=true ;;
        --rss-trace) rss_trace=true ;;
        --scrape) scrape=$2; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
        esac
        shift
done
if $smoke; then
        duration=1s connections=4 modes=keepalive
        [[ $peer == auto ]] && peer=false
fi
[[ $peer == auto ]] && peer=true
prepare_run bench "$cashpayd" "$keep" "$duration"

# make_certificate DIR: a self-signed certificate for 127.0.0.1 in DIR.
make_certificate() {
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
                -keyout "$1/tls.key" -out "$1/tls.pem" -subj /CN=127.0.0.1 \
                -addext subjectAltName=IP:127.0.0.1 2>/dev/null || die "openssl req failed"
}

# write_config DIR PORT ADMIN SCHEME
write_config() {
        local dir=$1 port=$2 admin=$3 kv
        {
                # All the load comes from one address: no per-address limit.
                printf '[http]\nlisten = 127.0.0.1:%s\nmax_connections_per_ip = 0\n' "$port"
                if [[ $4 == https ]]; then
                        make_certificate "$dir"
                        printf 'tls_cert = %s/tls.pem\ntls_key = %s/tls.key\n' "$dir" "$dir"
                fi
                printf '[admin]\nlisten = 127.0.0.1:%s\n' "$admin"
                printf '[webhook]\nsecret_file = %s/secret\n' "$dir"
                printf '[database]\npath = %s/db/cashpay.db\nsynchronous = full\n' "$dir"
                printf '[log]\nlevel = %s\n' "$log_level"
        } >"$dir/cashpayd.conf"
        set_config_keys "$dir/cashpayd.conf" "${extra[@]+"${extra[@]}"}"
}

# run_one MODE CONNS SCHEME
run_one() {
        local dir=$WORK/cashpayd-$3-$1-$2 port admin pid wrk_pid scrape_pid rss cpu stored name
        mkdir -p "$dir"
        echo "$BENCH_SECRET" >"$dir/secret"
        port=$(free_port)
        admin=$(free_port)
        write_config "$dir" "$port" "$admin" "$3"
        "$cashpayd" --config "$dir/cashpayd.conf" 2>"$dir/cashpayd.log" &
        pid=$!
        wait_port "$port" "$pid" || { cat "$dir/cashpayd.log" >&2; die "cashpayd did not start"; }
        run_wrk "$3://127.0.0.1:$port/cashpay/webhook" "$2" "$duration" "$bodies" "$1" "$dir/wrk.txt" &
        wrk_pid=$!
        if [[ -n $scrape ]]; then
                scrape_metrics "$admin" "$scrape" "$wrk_pid" >"$dir/scrapes" &
                scrape_pid=$!
        fi
        if $rss_trace; then trace_rss "$pid" "$wrk_pid" >"$dir/rss.txt"; fi
        wait "$wrk_pid" || true
        [[ -n $scrape ]] && wait "$scrape_pid"
        rss=$(peak_rss_kib "$pid")
        cpu=$(cpu_ticks "$pid")
        curl -s "http://127.0.0.1:$admin/metrics" >"$dir/metrics.txt" || true
        stop_pid "$pid" || die "cashpayd did not stop within 30 s"
        stored=$(count_stored "$dir/db/cashpay.db")
        name=cashpayd
        [[ $3 == https ]] && name=cashpayd+tls
        report "$name" "$2" "$1" "$dir/wrk.txt" "$stored" "$rss" "$cpu"
        if $rss_trace; then
                echo "          RSS MiB once a second while wrk ran (it loads its requests first):" \
                        "$(awk '{ printf "%.1f ", $1 / 1024 }' "$dir/rss.txt")"
        fi
        if [[ -n $scrape ]]; then
                echo "          /metrics scraped $(cat "$dir/scrapes") times while wrk ran"
        fi
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
        "$(basename "$cashpayd") $("$cashpayd" --version | cut -d' ' -f2), wrk -t$WRK_THREADS -d$duration"
$smoke || /usr/bin/python3 "$BENCH_DIR/storage-floor.py" --seconds 2 "$SOURCE_ROOT/migrations" "$WORK" |
        sed 's/^/# /'
print_header
ours_64=
for scheme in $schemes; do
        for mode in $modes; do
                for conns in $connections; do
                        run_one "$mode" "$conns" "$scheme"
                        [[ $scheme == http && $mode == keepalive && $conns == 64 ]] &&
                                ours_64=$LAST_RATE
                done
        done
done
if $smoke && ((LAST_ACKED == 0)); then
        die "FAILED: the smoke run acknowledged no webhook"
fi
if $peer; then
        BENCH_WORK=$WORK BENCH_BODIES=$bodies "$BENCH_DIR/run-peer.sh" --duration "$duration" \
                --connections 64 --no-header
        if [[ -n $ours_64 && -s $WORK/peer-rate ]]; then
                awk -v a="$ours_64" -v b="$(cat "$WORK/peer-rate")" \
                        'BEGIN { if (b > 0) printf "cashpayd / express at 64 connections: %.1fx\n", a / b }'
        fi
fi
$keep && echo "work directory kept: $WORK"
exit 0
