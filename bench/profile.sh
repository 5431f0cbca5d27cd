#!/usr/bin/env bash
# Where does cashpayd's time go? Profiles one daemon under the benchmark load.
#
#   bench/profile.sh [--cashpayd PATH] [--perf] [--duration D] [--connections N] OUT_DIR
#
# Default: valgrind --tool=callgrind (instruction counts, exact call tree;
# the daemon runs ~50x slower, so the load is whatever it can take), then
# callgrind_annotate's inclusive list into OUT_DIR/callgrind.txt.
# --perf: perf record -e cpu-clock (wall-clock samples, kernel included, per
# thread), for machines where hardware counters are not available to perf
# stat; reports by thread and by symbol into OUT_DIR/perf-*.txt.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cashpayd=$SOURCE_ROOT/build/cashpayd
tool=callgrind
duration=20s
conns=64
while (($#)); do
        case $1 in
        --cashpayd) cashpayd=$2; shift ;;
        --perf) tool=perf ;;
        --duration) duration=$2; shift ;;
        --connections) conns=$2; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) break ;;
        esac
        shift
done
(($# == 1)) || die "usage: profile.sh [options] OUT_DIR"
out=$(mkdir -p "$1" && cd "$1" && pwd)
need wrk wrk
if [[ $tool == perf ]]; then need perf linux-perf; else need valgrind valgrind; fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cashpayd-profile.XXXXXX")
trap 'end_jobs; rm -rf "$WORK"' EXIT
gen_bodies "$WORK/bodies.txt" $(($(seconds "$duration") * 60000 + 2000))
echo "$BENCH_SECRET" >"$WORK/secret"
port=$(free_port)
printf '[http]\nlisten = 127.0.0.1:%s\nmax_connections_per_ip = 0\n[admin]\nlisten =\n[webhook]\nsecret_file = %s/secret\n[database]\npath = %s/db/cashpay.db\nsynchronous = full\n[log]\nlevel = notice\n' \
        "$port" "$WORK" "$WORK" >"$WORK/cashpayd.conf"

if [[ $tool == perf ]]; then
        "$cashpayd" --config "$WORK/cashpayd.conf" 2>"$WORK/cashpayd.log" &
        pid=$!
        wait_port "$port" "$pid" || die "cashpayd did not start"
        perf record -e cpu-clock -F 2000 -p "$pid" -o "$out/perf.data" -- \
                sleep $(($(seconds "$duration") + 1)) >/dev/null 2>&1 &
        perf_pid=$!
else
        valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
                "$cashpayd" --config "$WORK/cashpayd.conf" 2>"$WORK/cashpayd.log" &
        pid=$!
        wait_port "$port" "$pid" || die "cashpayd did not start under valgrind"
fi
run_wrk "http://127.0.0.1:$port/cashpay/webhook" "$conns" "$duration" "$WORK/bodies.txt" keepalive "$out/wrk.txt"
[[ $tool == perf ]] && wait "$perf_pid"
stop_pid "$pid" || die "cashpayd did not stop"
echo "webhooks acknowledged while profiled: $(($(result_field "$out/wrk.txt" requests) - $(result_field "$out/wrk.txt" non2xx)))"

if [[ $tool == perf ]]; then
        perf report -i "$out/perf.data" --stdio --no-children -s pid -g none >"$out/perf-threads.txt" 2>/dev/null
        perf report -i "$out/perf.data" --stdio --no-children -s comm,dso,sym -g none \
                --percent-limit 0.3 >"$out/perf-symbols.txt" 2>/dev/null
        echo "wrote $out/perf-threads.txt and $out/perf-symbols.txt"
else
        callgrind_annotate --inclusive=yes "$out/callgrind.out" >"$out/callgrind.txt" 2>/dev/null
        echo "wrote $out/callgrind.txt"
fi
