#!/usr/bin/env bash
# The same webhook load on SQLite and on PostgreSQL, one instance and two.
#
#   bench/postgresql.sh [options]
#     --cashpayd PATH      the daemon (default: build/cashpayd)
#     --duration D         per run, wrk's -d (default 10s)
#     --connections N      keep-alive connections in all (default 64); with
#                          two instances each gets N/2 of them
#     --runs "R…"          sqlite, pg1 and/or pg2 (default all three)
#     --set SECTION.KEY=V  extra cashpayd setting (repeatable)
#     --pg-set NAME=VALUE  extra PostgreSQL setting (repeatable), e.g.
#                          --pg-set synchronous_commit=off to see the disk's share
#     --pg-bindir DIR      initdb, pg_ctl, psql (default: the newest
#                          /usr/lib/postgresql/N/bin)
#     --pg-user USER       run as root: the account the server runs as
#                          (default nobody; PostgreSQL refuses root)
#     --smoke              1 s per run at 4 connections; fails unless every
#                          run acknowledged something
#     --keep               keep the work directory (logs, server, databases)
#
# The script starts its own PostgreSQL (initdb and pg_ctl in its work
# directory, 127.0.0.1 on a free port, fsync on, synchronous_commit on) and
# per run a fresh database: `sqlite` one cashpayd on a fresh SQLite file
# (synchronous = full), `pg1` one cashpayd on PostgreSQL, `pg2` two on one
# database, each loaded by a wrk of its own with half the connections and
# webhooks of its own. Every 2xx must be stored, or it fails. After each
# run: the server's commits per second (pg_stat_database.xact_commit from
# before the daemons started to after their connections closed, over wrk's
# time), webhooks per commit (the daemons' batch_size histogram), the
# server's CPU share, and what the daemons' backends were doing
# (pg_stat_activity sampled every 0.2 s). Everything it started - daemons,
# wrk, the server - is ended at exit, also on failure or Ctrl-C.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cashpayd=$SOURCE_ROOT/build/cashpayd
duration=10s
connections=64
runs="sqlite pg1 pg2"
smoke=false
keep=false
pg_bindir=
pg_user=nobody
extra=()
pg_extra=()
while (($#)); do
        case $1 in
        --cashpayd) cashpayd=$2; shift ;;
        --duration) duration=$2; shift ;;
        --connections) connections=$2; shift ;;
        --runs) runs=$2; shift ;;
        --set) extra+=("$2"); shift ;;
        --pg-set) pg_extra+=("$2"); shift ;;
        --pg-bindir) pg_bindir=$2; shift ;;
        --pg-user) pg_user=$2; shift ;;
        --smoke) smoke=true ;;
        --keep) keep=true ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
        esac
        shift
done
$smoke && duration=1s connections=4
if [[ -z $pg_bindir ]]; then
        pg_bindir=$(find /usr/lib/postgresql -maxdepth 3 -path '*/bin/initdb' 2>/dev/null |
                sort -V | tail -1 | xargs -r dirname)
fi
[[ -n $pg_bindir && -x $pg_bindir/initdb ]] ||
        die "PostgreSQL server binaries not found (Debian package: postgresql; or --pg-bindir)"
need psql postgresql-client
need setpriv util-linux
prepare_run postgresql "$cashpayd" "$keep" "$duration"
# Each instance of pg2 sends webhooks of its own (other charge ids).
gen_bodies "$WORK/bodies-2.txt" $(($(seconds "$duration") * 60000 + 2000)) c

# ---------------------------------------------------------------- the server

pg=$WORK/pg
pg_port=$(free_port)
pg_pid=
pg_password=bench-pg-$RANDOM$RANDOM

# as_pg CMD...: CMD as the server's account (only when run as root).
as_pg() {
        if ((EUID == 0)); then
                setpriv --reuid="$(id -u "$pg_user")" --regid="$(id -g "$pg_user")" --clear-groups \
                        -- env -i PATH=/usr/bin:/bin LC_ALL=C.UTF-8 "$@"
        else
                env -i PATH=/usr/bin:/bin LC_ALL=C.UTF-8 "$@"
        fi
}

# sql DB STATEMENT: one result, unaligned, over the server's private socket.
sql() {
        env -i PATH=/usr/bin:/bin LC_ALL=C.UTF-8 "$pg_bindir/psql" -X -q -A -t -v ON_ERROR_STOP=1 \
                -h "$pg/sock" -p "$pg_port" -U postgres -d "$1" -c "$2"
}

start_server() {
        local owner=
        chmod 755 "$WORK"  # the server's account reaches its directory
        mkdir -p "$pg/data" "$pg/sock"
        chmod 700 "$pg/data"
        echo "$pg_password" >"$pg/password"
        echo "$pg_password" >"$pg/initdb-pw"
        touch "$pg/server.log"
        ((EUID == 0)) && owner=$(id -u "$pg_user"):$(id -g "$pg_user")
        [[ -n $owner ]] && chown "$owner" "$pg/data" "$pg/sock" "$pg/initdb-pw" "$pg/server.log"
        # password authentication over TCP, as deployed; trust on the socket for psql
        as_pg "$pg_bindir/initdb" -D "$pg/data" --username=postgres --pwfile="$pg/initdb-pw" \
                --encoding=UTF8 --locale=C --no-sync --auth-host=scram-sha-256 --auth-local=trust \
                >"$pg/initdb.log" 2>&1 || { cat "$pg/initdb.log" >&2; die "initdb failed"; }
        rm -f "$pg/initdb-pw"
        {
                echo "listen_addresses = '127.0.0.1'"
                echo "port = $pg_port"
                echo "unix_socket_directories = '$pg/sock'"
                echo "fsync = on"  # acknowledged means committed, on both engines
                echo "synchronous_commit = on"
                local kv
                for kv in "${pg_extra[@]+"${pg_extra[@]}"}"; do
                        echo "${kv%%=*} = ${kv#*=}"
                done
        } >>"$pg/data/postgresql.auto.conf"
        as_pg "$pg_bindir/pg_ctl" start -w -t 60 -D "$pg/data" -l "$pg/server.log" >/dev/null ||
                { cat "$pg/server.log" >&2; die "PostgreSQL did not start"; }
        pg_pid=$(head -1 "$pg/data/postmaster.pid")
}

# stop_server: pg_ctl stop, then SIGKILL to whatever of the postmaster's
# tree is still there (its children are found by parent pid).
stop_server() {
        local pid=$pg_pid children i
        [[ -n $pid ]] || return 0
        pg_pid=
        as_pg "$pg_bindir/pg_ctl" stop -w -t 30 -m fast -D "$pg/data" >/dev/null 2>&1 || true
        kill -0 "$pid" 2>/dev/null || return 0
        kill -STOP "$pid" 2>/dev/null
        children=$(pgrep -P "$pid" || true)
        # shellcheck disable=SC2086
        kill -KILL "$pid" $children 2>/dev/null
        for ((i = 0; i < 100; i++)); do
                kill -0 "$pid" 2>/dev/null || return 0
                sleep 0.1
        done
        echo "bench: PostgreSQL (pid $pid) survived SIGKILL" >&2
}

cleanup() {
        end_jobs
        stop_server
        $keep || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# server_ticks: CPU time so far of the postmaster and its children (clock ticks).
server_ticks() {
        local p t=0
        for p in "$pg_pid" $(pgrep -P "$pg_pid" || true); do
                t=$((t + $(cpu_ticks "$p")))
        done
        echo "$t"
}

# ---------------------------------------------------------------- the runs

# write_config DIR PORT ADMIN DB: DB empty for SQLite.
write_config() {
        {
                printf '[http]\nlisten = 127.0.0.1:%s\nmax_connections_per_ip = 0\n' "$2"
                printf '[admin]\nlisten = 127.0.0.1:%s\n' "$3"
                printf '[webhook]\nsecret_file = %s/secret\n' "$1"
                if [[ -z $4 ]]; then
                        printf '[database]\npath = %s/db/cashpay.db\nsynchronous = full\n' "$1"
                else
                        printf '[database]\nbackend = postgresql\npassword_file = %s\n' "$pg/password"
                        printf 'url = host=127.0.0.1 port=%s dbname=%s user=postgres\n' "$pg_port" "$4"
                fi
                printf '[log]\nlevel = notice\n'
        } >"$1/cashpayd.conf"
        set_config_keys "$1/cashpayd.conf" "${extra[@]+"${extra[@]}"}"
}

# metric FILE NAME: a sample's value from a /metrics scrape.
metric() {
        awk -v n="$2" '$1 == n { print $2; exit }' "$1"
}

# sample_waits DB WHILE_PID...: what the daemons' backends are doing, every
# 0.2 s while the load runs; one "state/wait_event" per backend and sample.
sample_waits() {
        local db=$1
        shift
        while kill -0 "$@" 2>/dev/null; do
                sql postgres "SELECT CASE WHEN state = 'active' THEN coalesce(wait_event_type || ':' ||
                        wait_event, 'active:CPU') ELSE replace(state, ' ', '-') || coalesce(':' || wait_event, '') END
                        FROM pg_stat_activity WHERE datname = '$db' AND backend_type = 'client backend'
                        AND pid <> pg_backend_pid()" 2>/dev/null || true
                sleep 0.2
        done
}

# commits DB: the server's committed transactions in DB so far.
commits() {
        sql postgres "SELECT xact_commit FROM pg_stat_database WHERE datname = '$1'"
}

# wait_backends_gone DB: until the daemons' connections have closed (their
# statistics are flushed as they exit); 10 s at most.
wait_backends_gone() {
        local i
        for ((i = 0; i < 100; i++)); do
                [[ $(sql postgres "SELECT count(*) FROM pg_stat_activity WHERE datname = '$1'
                        AND pid <> pg_backend_pid()") == 0 ]] && return 0
                sleep 0.1
        done
        echo "bench: connections to $1 still open after 10 s" >&2
}

dbs=0
# run_case NAME INSTANCES: NAME sqlite, or postgresql on a fresh database.
run_case() {
        local name=$1 n=$2 db='' i dir conns pids=() wrks=() ports=() admins=() c0 c1 s0 s1 \
                acked=0 rate=0 stored batches=0 batch_sum=0 commit_sum=0 label
        if [[ $name == postgresql ]]; then
                db=bench$((++dbs))
                sql postgres "CREATE DATABASE $db" >/dev/null
                c0=$(commits "$db")
        fi
        conns=$((connections / n))
        ((conns > 0)) || conns=1
        for ((i = 1; i <= n; i++)); do
                dir=$WORK/$name-$n-$i
                mkdir -p "$dir"
                echo "$BENCH_SECRET" >"$dir/secret"
                ports[i]=$(free_port)
                admins[i]=$(free_port)
                write_config "$dir" "${ports[i]}" "${admins[i]}" "$db"
                "$cashpayd" --config "$dir/cashpayd.conf" 2>"$dir/cashpayd.log" &
                pids[i]=$!
        done
        for ((i = 1; i <= n; i++)); do
                wait_port "${ports[i]}" "${pids[i]}" ||
                        { cat "$WORK/$name-$n-$i/cashpayd.log" >&2; die "cashpayd did not start"; }
        done
        [[ -n $db ]] && s0=$(server_ticks)
        for ((i = 1; i <= n; i++)); do
                local file=$bodies
                ((i == 2)) && file=$WORK/bodies-2.txt
                run_wrk "http://127.0.0.1:${ports[i]}/cashpay/webhook" "$conns" "$duration" "$file" \
                        keepalive "$WORK/$name-$n-$i/wrk.txt" &
                wrks[i]=$!
        done
        [[ -n $db ]] && { sample_waits "$db" "${wrks[@]}" >"$WORK/$name-$n-waits.txt" & }
        for ((i = 1; i <= n; i++)); do
                wait "${wrks[i]}" || true
        done
        [[ -n $db ]] && s1=$(server_ticks)
        for ((i = 1; i <= n; i++)); do
                dir=$WORK/$name-$n-$i
                peak_rss_kib "${pids[i]}" >"$dir/rss"
                cpu_ticks "${pids[i]}" >"$dir/cpu"
                curl -s "http://127.0.0.1:${admins[i]}/metrics" >"$dir/metrics.txt" || true
        done
        for ((i = 1; i <= n; i++)); do
                stop_pid "${pids[i]}" || die "cashpayd did not stop within 30 s"
        done
        wait  # the sampler
        if [[ -n $db ]]; then
                wait_backends_gone "$db"
                c1=$(commits "$db")
        fi
        for ((i = 1; i <= n; i++)); do
                dir=$WORK/$name-$n-$i
                if [[ -z $db ]]; then
                        stored=$(count_stored "$dir/db/cashpay.db")
                else
                        # the instances' webhooks differ in their charge ids' prefix
                        stored=$(sql "$db" "SELECT count(*) FROM webhook_deliveries WHERE
                                http_status = 200 AND charge_id LIKE 'chg_$([[ $i == 2 ]] && echo c || echo b)%'")
                fi
                label=$name
                ((n > 1)) && label="$name#$i/$n"
                report "$label" "$conns" keepalive "$dir/wrk.txt" "$stored" "$(cat "$dir/rss")" \
                        "$(cat "$dir/cpu")"
                ((LAST_ACKED > 0)) || ! $smoke || die "FAILED: $label acknowledged nothing"
                acked=$((acked + LAST_ACKED))
                rate=$((rate + LAST_RATE))
                batches=$((batches + $(metric "$dir/metrics.txt" cashpayd_batch_size_count)))
                batch_sum=$((batch_sum + $(metric "$dir/metrics.txt" cashpayd_batch_size_sum)))
                commit_sum=$(awk -v a="$commit_sum" -v b="$(metric "$dir/metrics.txt" \
                        cashpayd_commit_seconds_sum)" 'BEGIN { print a + b }')
        done
        awk -v r="$rate" -v n="$n" -v b="$batches" -v s="$batch_sum" -v t="$commit_sum" \
                'BEGIN { printf "          %s%d webhooks/s; %.1f webhooks per batch, %.2f ms per batch commit (mean)",
                         (n > 1 ? "together " : ""), r, (b > 0 ? s / b : 0), (b > 0 ? t * 1000 / b : 0) }'
        if [[ -n $db ]]; then
                awk -v c="$((c1 - c0))" -v d="$(seconds "$duration")" -v t="$((s1 - s0))" \
                        -v hz="$(getconf CLK_TCK)" -v a="$acked" \
                        'BEGIN { printf "; server: %d commits/s, CPU %.0f%% of one core, %.0fus per webhook",
                                 c / d, t / hz / d * 100, (a > 0 ? t / hz * 1e6 / a : 0) }'
                echo
                echo "          backends (samples): $(sort "$WORK/$name-$n-waits.txt" | uniq -c | sort -rn |
                        head -6 | awk '{ printf "%s%s %d", (NR > 1 ? ", " : ""), $2, $1 }')"
                $keep || sql postgres "DROP DATABASE $db" >/dev/null
        else
                echo
        fi
        case $name-$n in
        sqlite-1) rate_sqlite=$rate ;;
        postgresql-1) rate_pg1=$rate ;;
        postgresql-2) rate_pg2=$rate ;;
        esac
}

start_server
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
        "$(basename "$cashpayd") $("$cashpayd" --version | cut -d' ' -f2), wrk -t$WRK_THREADS -d$duration," \
        "PostgreSQL $(sql postgres 'SHOW server_version'), $connections connections${extra[*]:+, ${extra[*]}}${pg_extra[*]:+, ${pg_extra[*]}}"
print_header
rate_sqlite='' rate_pg1='' rate_pg2=''
for r in $runs; do
        case $r in
        sqlite) run_case sqlite 1 ;;
        pg1) run_case postgresql 1 ;;
        pg2) run_case postgresql 2 ;;
        *) die "unknown run $r (sqlite, pg1, pg2)" ;;
        esac
done
if [[ -n $rate_sqlite && -n $rate_pg1 ]] && ((rate_sqlite > 0)); then
        echo "postgresql (1 instance) / sqlite: $((rate_pg1 * 100 / rate_sqlite)) %"
fi
if [[ -n $rate_pg1 && -n $rate_pg2 ]] && ((rate_pg1 > 0)); then
        echo "postgresql 2 instances / 1 instance: $((rate_pg2 * 100 / rate_pg1)) %"
fi
$keep && echo "work directory kept: $WORK (server stopped)"
exit 0
