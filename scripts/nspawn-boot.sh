# Sourced by the nspawn-*.sh tests: boot the host's own OS tree in a
# throwaway systemd-nspawn container with its own network namespace
# (loopback only), run commands in it, and stop it and remove $work on exit.
#
# Before sourcing, set $name (used in messages, the machine name and the
# temporary directory). Provides $work, skip, die, overlay_root, nspawn_boot
# and inside.
# Exit status convention: 0 passed, 1 failed, 77 this machine cannot boot a
# container (the reason is printed).

work=$(mktemp -d "${TMPDIR:-/tmp}/cashpayd-$name.XXXXXX")
machine=cashpayd-$name-$$
nspawn_pid=
leader=
mounts=
log=$work/boot.log

skip() { echo "$name: SKIP: $*" >&2; exit 77; }
die() { echo "$name: FAIL: $*" >&2; exit 1; }

nspawn_cleanup() {
        if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
                kill -TERM "$nspawn_pid" 2>/dev/null || true
                for _ in $(seq 1 60); do
                        kill -0 "$nspawn_pid" 2>/dev/null || break
                        sleep 0.5
                done
                kill -KILL "$nspawn_pid" 2>/dev/null || true
                wait "$nspawn_pid" 2>/dev/null || true
        fi
        # Innermost first; never remove $work while something is mounted in it.
        for m in $mounts; do
                umount "$m" 2>/dev/null || umount --lazy "$m" 2>/dev/null || true
        done
        for m in $mounts; do
                if mountpoint -q "$m"; then
                        echo "$name: $m is still mounted; left $work in place" >&2
                        return
                fi
        done
        if [ "${KEEP:-0}" = 1 ]; then
                echo "$name: kept $work" >&2
        else
                rm -rf "$work"
        fi
}
trap nspawn_cleanup EXIT
trap 'exit 1' INT TERM

[ "$(id -u)" = 0 ] || skip "needs root"
for tool in systemd-nspawn nsenter; do
        command -v "$tool" >/dev/null || skip "$tool is not installed"
done

# overlay_root: sets $root to the host's root file system made writable by
# an overlay whose upper layer is a tmpfs (systemd-nspawn refuses
# --volatile=overlay on /), for a container that installs packages. Only the
# root file system is seen: it must hold /usr, /etc and /var.
overlay_root() {
        for dir in /usr /etc /var /var/lib; do
                ! mountpoint -q "$dir" || skip "$dir is a mount of its own; an overlay of / would miss it"
        done
        mkdir -p "$work/layer" "$work/root"
        mount -t tmpfs -o size=1g,mode=0700 "$name-layer" "$work/layer" || skip "cannot mount a tmpfs"
        mounts="$work/layer"
        mkdir "$work/layer/upper" "$work/layer/work"
        mount -t overlay -o "lowerdir=/,upperdir=$work/layer/upper,workdir=$work/layer/work" \
                "$name-root" "$work/root" || skip "cannot mount an overlay of /"
        mounts="$work/root $mounts"
        root=$work/root
}

# nspawn_boot ROOT_OPTION... [NSPAWN_OPTION...]: boot a container
# (--directory=/ --volatile=yes: a tmpfs root with the host's /usr read-only;
# or --directory=$root after overlay_root), wait until its systemd has
# finished booting, and set $leader to its PID 1.
nspawn_boot() {
        SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn --quiet --register=no --keep-unit \
                --private-network --machine="$machine" \
                "$@" --boot systemd.unit=multi-user.target systemd.firstboot=0 \
                </dev/null >"$log" 2>&1 &
        nspawn_pid=$!

        # The container's PID 1 is the systemd child of systemd-nspawn.
        for _ in $(seq 1 100); do
                kill -0 "$nspawn_pid" 2>/dev/null || break
                for pid in $(ps -o pid= --ppid "$nspawn_pid" 2>/dev/null); do
                        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ] && leader=$pid
                done
                [ -n "$leader" ] && break
                sleep 0.1
        done
        if [ -z "$leader" ]; then
                tail -20 "$log" >&2
                skip "systemd-nspawn could not boot a container here (log above)"
        fi

        state=
        for _ in $(seq 1 120); do
                state=$(inside systemctl is-system-running 2>/dev/null || true)
                case $state in running|degraded) break ;; esac
                sleep 0.5
        done
        case $state in
        running|degraded) ;;
        *) tail -20 "$log" >&2; skip "the container's systemd did not finish booting ($state)" ;;
        esac
        echo "$name: container booted ($state), systemd $(inside systemctl --version | head -1 | cut -d' ' -f2)"
}

inside() { nsenter --target "$leader" --all -- "$@"; }
