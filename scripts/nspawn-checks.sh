# The check helpers shared by nspawn-e2e-inside.sh and
# nspawn-package-inside.sh (sourced, POSIX sh): one line per check, failures
# counted in $failures.

failures=0

ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
check() {
        what=$1
        shift
        if "$@"; then ok "$what"; else fail "$what"; fi
}
# Retry a check for up to $1 seconds (the journal and STATUS= lag a little).
eventually() {
        secs=$1
        shift
        for _ in $(seq 1 $((secs * 5))); do
                "$@" && return 0
                sleep 0.2
        done
        return 1
}
prop() { systemctl show -P "$2" "$1"; }
