# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash disable=SC2034,SC2154  # variables are set and read by the sourcing scripts
#
# bench/lib.sh - helpers shared by bench/healthz.sh and bench/state.sh,
# sourced by both (never run on its own): error reporting, process liveness
# and stopping, the exit/interrupt cleanup, free loopback ports, HTTP
# polling, starting/stopping/checking mooringd, CPU accounting and the final
# "mooringd problems seen" summary.
#
# The caller sets, before using the helpers that read them:
#   keep           1: keep $tmp on exit; 0: remove it
#   mooringd       daemon binary (check_mooringd_binary makes it absolute)
#   ready_timeout  seconds wait_204 polls before giving up
#   stop_timeout   seconds stop_mooringd waits after SIGTERM before SIGKILL
#   srv_pin        array, optional: command prefix for mooringd (e.g.
#                  taskset -c N); empty (the default set here) for none
#   stop_servers   function, optional: called by cleanup after mooringd is
#                  stopped, to stop the caller's own servers (nginx, redis)
#
# It keeps, for the caller to read (and set, for client_pid):
#   tmp            temporary directory, made by make_tmp; start_mooringd
#                  uses $tmp/config and $tmp/runtime
#   client_pid     PID of the running load client (under timeout(1)); cleanup
#                  stops it first
#   mooringd_pid, mooringd_log, mooringd_run, mooringd_started_ms,
#   last_stop_ms, daemon_problems (array), stop_times (array), clk_tck

srv_pin=()
client_pid=
mooringd_pid=
mooringd_log=
mooringd_run=0
daemon_problems=()
stop_times=()
clk_tck=$(getconf CLK_TCK)

# messages are prefixed with the script's name (healthz.sh, state.sh)
die() { echo "${0##*/}: error: $*" >&2; exit 1; }
warn() { echo "${0##*/}: warning: $*" >&2; }

# require_tools TOOL...: each must be on $PATH
require_tools() {
        local t
        for t in "$@"; do
                command -v "$t" >/dev/null 2>&1 || die "missing required tool: $t"
        done
}

# check_mooringd_binary: $mooringd must be executable; make it an absolute
# path and warn when it links a sanitizer runtime
check_mooringd_binary() {
        [ -x "$mooringd" ] || die "mooringd binary not found or not executable: $mooringd (build it, or pass --mooringd PATH / MOORINGD=PATH)"
        case $mooringd in /*) ;; *) mooringd=$PWD/$mooringd ;; esac

        if ldd "$mooringd" 2>/dev/null | grep -Eq 'lib(asan|ubsan|tsan|lsan)'; then
                warn "$mooringd links a sanitizer runtime ($(ldd "$mooringd" | grep -Eo 'lib(asan|ubsan|tsan|lsan)[^ ]*' | sort -u | tr '\n' ' '))"
                warn "numbers below are NOT representative; use a release build: meson setup build -Db_sanitize=none -Dbuildtype=release"
        fi
}

proc_alive() {
        # true while the process exists and is not a zombie waiting to be reaped
        local pid=$1 st
        [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
        st=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null) || return 1
        [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# stop_pid PID NAME TIMEOUT: SIGTERM, wait up to TIMEOUT s, then SIGKILL
# (with a warning).  Sets last_stop_ms; returns the exit status it collected.
stop_pid() {
        local pid=$1 name=$2 limit=$3 t0 rc=0
        [ -n "$pid" ] || return 0
        t0=$(date +%s%N)
        kill -TERM "$pid" 2>/dev/null || true
        while proc_alive "$pid"; do
                if [ $(( ($(date +%s%N) - t0) / 1000000000 )) -ge "$limit" ]; then
                        warn "$name (pid $pid) still running ${limit}s after SIGTERM; sending SIGKILL"
                        kill -KILL "$pid" 2>/dev/null || true
                        break
                fi
                sleep 0.05
        done
        wait "$pid" 2>/dev/null || rc=$?
        last_stop_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
        return $rc
}

# cleanup: the EXIT trap (see make_tmp).  Stops the client, then
# mooringd, then whatever stop_servers stops; removes $tmp unless $keep.
cleanup() {
        local rc=$?
        trap - EXIT INT TERM HUP
        set +e
        if [ -n "$client_pid" ]; then
                # timeout(1) passes SIGTERM on to the client
                kill -TERM "$client_pid" 2>/dev/null
                wait "$client_pid" 2>/dev/null
                client_pid=
        fi
        if [ -n "$mooringd_pid" ]; then
                stop_pid "$mooringd_pid" mooringd 5 >/dev/null 2>&1
                mooringd_pid=
        fi
        if declare -F stop_servers >/dev/null; then
                stop_servers
        fi
        if [ "$keep" -eq 1 ]; then
                echo "kept temporary directory: $tmp" >&2
        else
                rm -rf "$tmp"
        fi
        exit $rc
}

# make_tmp PREFIX: create the temporary directory $tmp (under $TMPDIR or
# /tmp) and run cleanup on exit from then on, including failure and Ctrl-C
make_tmp() {
        tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
        trap cleanup EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        trap 'exit 129' HUP
}

# free_ports N: N distinct loopback TCP ports that were free a moment ago
free_ports() {
        python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# http_code URL [curl args...]
http_code() {
        local url=$1; shift
        curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$@" "$url" 2>/dev/null || true
}

# wait_204 PID NAME URL [curl args...]: poll until URL answers 204,
# bounded by $ready_timeout; fails early if PID exits.
wait_204() {
        local pid=$1 name=$2 url=$3 t0 code=000
        shift 3
        t0=$(now_ms)
        while :; do
                code=$(http_code "$url" "$@")
                [ "$code" = 204 ] && return 0
                if ! proc_alive "$pid"; then
                        echo "$name exited while waiting for it to answer $url (last HTTP status: $code)" >&2
                        return 1
                fi
                if [ $(( $(now_ms) - t0 )) -ge $((ready_timeout * 1000)) ]; then
                        echo "$name did not answer 204 on $url within ${ready_timeout}s (last HTTP status: $code)" >&2
                        return 1
                fi
                sleep 0.02
        done
}

show_mooringd_log() {
        [ -n "$mooringd_log" ] && [ -s "$mooringd_log" ] || return 0
        echo "---- last lines of $mooringd_log ----" >&2
        tail -n 40 "$mooringd_log" >&2
        echo "----" >&2
}

# start_mooringd STATE_DIR: start mooringd in the background (under
# "${srv_pin[@]}") with $tmp/config and $tmp/runtime, logging to
# $tmp/mooringd-N.log
start_mooringd() {
        mooringd_run=$((mooringd_run + 1))
        mooringd_log=$tmp/mooringd-$mooringd_run.log
        # never let the daemon talk to a supervisor this script is running under
        "${srv_pin[@]}" env -u NOTIFY_SOCKET -u LISTEN_FDS -u LISTEN_PID -u LISTEN_FDNAMES -u WATCHDOG_USEC -u WATCHDOG_PID \
                "$mooringd" --config-dir "$tmp/config" --state-dir "$1" \
                --runtime-dir "$tmp/runtime" --bus=none --log-level warning \
                </dev/null >"$mooringd_log" 2>&1 &
        mooringd_pid=$!
        mooringd_started_ms=$(now_ms)
}

stop_mooringd() {
        local rc=0
        stop_pid "$mooringd_pid" mooringd "$stop_timeout" || rc=$?
        mooringd_pid=
        if [ $rc -ne 0 ]; then
                warn "mooringd exited with status $rc after SIGTERM (took ${last_stop_ms} ms)"
                show_mooringd_log
                daemon_problems+=("run $mooringd_run: exit status $rc after SIGTERM")
        fi
        stop_times+=("$last_stop_ms")
}

check_mooringd_alive() {
        if ! proc_alive "$mooringd_pid"; then
                local rc=0
                wait "$mooringd_pid" 2>/dev/null || rc=$?
                mooringd_pid=
                show_mooringd_log
                die "mooringd died during $1 (exit status $rc)"
        fi
}

# children_cpu_s: user+system seconds of this shell's reaped children (bash
# "times"; it must run in this shell, not in a $(...) subshell)
children_cpu_s() {
        times >"$tmp/times.txt"
        awk 'NR == 2 {
                s = 0
                for (i = 1; i <= 2; i++) { split($i, a, "m"); s += a[1] * 60 + a[2] }
                printf "%.3f", s }' "$tmp/times.txt"
}

# busy_ticks: non-idle CPU ticks of the whole machine (all CPUs: the
# /proc/stat "cpu" line)
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }

# print_daemon_problems: the closing list of daemon_problems (or "none")
print_daemon_problems() {
        if [ ${#daemon_problems[@]} -gt 0 ]; then
                echo "mooringd problems seen:"
                printf '  - %s\n' "${daemon_problems[@]}"
        else
                echo "mooringd problems seen: none"
        fi
}

# install_packages PKG...: installs Debian packages that a benchmark needs (as root
# with apt-get), or dies saying what to install. A package "nginx-light" falls back
# to "nginx" where the light flavour is gone (newer Debian releases).
install_packages() {
        [ $# -gt 0 ] || return 0
        if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
                die "missing $*: install them (Debian: apt-get install $*) or run as root to let this script do it"
        fi
        echo "installing missing tools: $*" >&2
        local pkgs=("$@")
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}" >&2; then
                pkgs=("${pkgs[@]/nginx-light/nginx}")
                DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}" >&2 ||
                        die "apt-get install ${pkgs[*]} failed"
        fi
}

# require_nginx_wrk: nginx and wrk for the scripts that compare against nginx; sets nginx_bin.
require_nginx_wrk() {
        local missing=()
        command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
        command -v wrk >/dev/null 2>&1 || missing+=(wrk)
        install_packages "${missing[@]}"
        nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
}

# setup_pinning: with pin=1, srv_pin/cli_pin put servers on the last CPU and the client on CPU 0.
setup_pinning() {
        srv_pin=()
        cli_pin=()
        [ "${pin:-0}" -eq 1 ] || return 0
        command -v taskset >/dev/null 2>&1 || die "--pin needs taskset (util-linux)"
        local ncpu
        ncpu=$(nproc)
        [ "$ncpu" -ge 2 ] || die "--pin needs at least 2 CPUs"
        srv_pin=(taskset -c $((ncpu - 1)))
        cli_pin=(taskset -c 0)
}

# find_helper NAME GIVEN: GIVEN if set, else bench/NAME in the daemon's build
# dir, else bench/NAME.c compiled into $tmp with $CC (default cc)
find_helper() {
        local name=$1 given=$2 cand cc
        if [ -n "$given" ]; then
                [ -x "$given" ] || die "$name not executable: $given"
                case $given in /*) echo "$given" ;; *) echo "$PWD/$given" ;; esac
                return
        fi
        cand=$(cd "$(dirname "$mooringd")/.." && pwd)/bench/$name
        if [ -x "$cand" ]; then
                echo "$cand"
                return
        fi
        cc=${CC:-cc}
        command -v "$cc" >/dev/null 2>&1 || die "no $name next to $mooringd and no C compiler ($cc) to build bench/$name.c"
        "$cc" -O2 -std=gnu11 -o "$tmp/$name" "$script_dir/$name.c" >&2 || die "could not build bench/$name.c"
        echo "$tmp/$name"
}
