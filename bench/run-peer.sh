#!/usr/bin/env bash
# The Express + better-sqlite3 peer under the same load as cashpayd.
#
#   bench/run-peer.sh [--duration D] [--connections "N…"] [--modes "M…"]
#
# Installs express@4 and better-sqlite3@12 with npm into bench/results/npm
# (ignored by git; BENCH_NPM_DIR overrides) the first time, then measures
# the peer exactly as run.sh measures cashpayd: fresh database, wrk with the
# same script and signed bodies, one line per run. run.sh calls it with
# BENCH_WORK and BENCH_BODIES set to share its work directory and bodies.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

duration=10s
connections=64
modes=keepalive
header=true
while (($#)); do
        case $1 in
        --duration) duration=$2; shift ;;
        --connections) connections=$2; shift ;;
        --modes) modes=$2; shift ;;
        --no-header) header=false ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
        esac
        shift
done
need wrk wrk
need node nodejs
need npm npm

npm_dir=${BENCH_NPM_DIR:-$BENCH_DIR/results/npm}
peer_dir=$BENCH_DIR/peers/express
if [[ ! -d $npm_dir/node_modules/better-sqlite3 || ! -d $npm_dir/node_modules/express ]]; then
        mkdir -p "$npm_dir"
        cp "$peer_dir/package.json" "$npm_dir/"
        npm install --prefix "$npm_dir" --no-audit --no-fund --loglevel=error >&2 ||
                die "npm install of the peer's packages failed"
fi

WORK=${BENCH_WORK:-}
if [[ -z $WORK ]]; then
        WORK=$(mktemp -d "${TMPDIR:-/tmp}/cashpayd-bench-peer.XXXXXX")
        trap 'end_jobs; rm -rf "$WORK"' EXIT
fi
bodies=${BENCH_BODIES:-}
if [[ -z $bodies ]]; then
        bodies=$WORK/bodies.txt
        gen_bodies "$bodies" $(($(seconds "$duration") * 60000 + 2000))
fi

# run_one MODE CONNS
run_one() {
        local dir=$WORK/express-$1-$2 port pid rss cpu stored
        mkdir -p "$dir"
        echo "$BENCH_SECRET" >"$dir/secret"
        port=$(free_port)
        NODE_PATH=$npm_dir/node_modules node "$peer_dir/server.js" "$port" "$dir/peer.db" \
                "$dir/secret" "$SOURCE_ROOT/migrations" 2>"$dir/peer.log" &
        pid=$!
        wait_port "$port" "$pid" || { cat "$dir/peer.log" >&2; die "the Express peer did not start"; }
        run_wrk "http://127.0.0.1:$port/cashpay/webhook" "$2" "$duration" "$bodies" "$1" "$dir/wrk.txt"
        rss=$(peak_rss_kib "$pid")
        cpu=$(cpu_ticks "$pid")
        stop_pid "$pid" || die "the Express peer did not stop within 30 s"
        stored=$(count_stored "$dir/peer.db")
        report express "$2" "$1" "$dir/wrk.txt" "$stored" "$rss" "$cpu"
}

$header && print_header
for mode in $modes; do
        for conns in $connections; do
                run_one "$mode" "$conns"
                [[ $mode == keepalive && $conns == 64 ]] && echo "$LAST_RATE" >"$WORK/peer-rate"
        done
done
exit 0
