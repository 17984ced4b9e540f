#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# bench/healthz.sh - throughput/latency of GET /v1.0/healthz served by
# mooringd, against nginx answering the same route with "return 204" in the
# same run, plus mooringd's resident memory with 1 and 100 apps, the
# libraries and files it maps, and optionally the same memory figures for a
# reference build (--reference: e.g. the commit before a change) measured in
# the same run, so a saving is shown as before/after on the same machine.
#
# Usage: bench/healthz.sh [--mooringd PATH] [--reference PATH] [--memory-only]
#                         [--duration SEC] [--connections N] [--pin] [--keep]
#
# Everything runs on 127.0.0.1; every process started here is stopped on
# exit (including on failure or Ctrl-C) and the temporary directory removed
# (unless --keep).  See bench/README.md for what the numbers mean.

set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
# shellcheck source=bench/lib.sh
. "$script_dir/lib.sh"
# shellcheck source=bench/observability.sh
. "$script_dir/observability.sh"

mooringd=${MOORINGD:-$repo_root/build/daemon/mooringd}
reference=${MOORINGD_REFERENCE:-}
memory_only=0
duration=10
connections=50
keep=0
pin=0
napps=100
observability=1         # also measure metrics + tracing on vs off (bench/observability.sh)
observability_only=0    # only that
obs_cg_duration=5       # seconds of wrk per mode under callgrind in that comparison (0: none)
ready_timeout=10        # seconds to wait for a server to answer
stop_timeout=15         # seconds to wait for mooringd after SIGTERM

usage() {
        cat <<EOF
usage: bench/healthz.sh [--mooringd PATH] [--reference PATH] [--memory-only] [--duration SEC] [--connections N] [--pin] [--keep]
  --mooringd PATH    daemon binary (default: \$MOORINGD or build/daemon/mooringd)
  --reference PATH   a second mooringd (e.g. built from the previous commit in a git worktree) whose
                     memory is measured in the same run, for before/after (default: \$MOORINGD_REFERENCE)
  --memory-only      skip the wrk runs (and nginx): memory figures only
  --duration SEC     length of each wrk run (default: 10)
  --connections N    wrk connections, one wrk thread (default: 50)
  --pin              pin wrk to CPU 0 and both servers to the last CPU (taskset)
  --keep             keep the temporary directory (configs, logs)
  --no-observability skip the metrics + tracing on/off comparison
  --observability-only
                     only the metrics + tracing on/off comparison
  --callgrind SEC    in that comparison, also count instructions per request under callgrind,
                     SEC seconds of load per mode (default: 5; 0: skip)
EOF
}

while [ $# -gt 0 ]; do
        case $1 in
        --mooringd) [ $# -ge 2 ] || die "--mooringd needs a value"; mooringd=$2; shift 2 ;;
        --mooringd=*) mooringd=${1#*=}; shift ;;
        --reference) [ $# -ge 2 ] || die "--reference needs a value"; reference=$2; shift 2 ;;
        --reference=*) reference=${1#*=}; shift ;;
        --memory-only) memory_only=1; shift ;;
        --duration) [ $# -ge 2 ] || die "--duration needs a value"; duration=$2; shift 2 ;;
        --duration=*) duration=${1#*=}; shift ;;
        --connections) [ $# -ge 2 ] || die "--connections needs a value"; connections=$2; shift 2 ;;
        --connections=*) connections=${1#*=}; shift ;;
        --keep) keep=1; shift ;;
        --no-observability) observability=0; shift ;;
        --observability-only) observability_only=1; shift ;;
        --callgrind) [ $# -ge 2 ] || die "--callgrind needs a value"; obs_cg_duration=$2; shift 2 ;;
        --callgrind=*) obs_cg_duration=${1#*=}; shift ;;
        --pin) pin=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
        esac
done

[[ $duration =~ ^[1-9][0-9]*$ ]] || die "--duration must be a positive integer (seconds)"
[[ $connections =~ ^[1-9][0-9]*$ ]] || die "--connections must be a positive integer"
[[ $obs_cg_duration =~ ^[0-9]+$ ]] || die "--callgrind must be a whole number of seconds"
[ "$observability_only" -eq 0 ] || [ "$observability" -eq 1 ] || die "--observability-only and --no-observability exclude each other"

# ---------------------------------------------------------------- tools

[ "$memory_only" -eq 1 ] || require_nginx_wrk
setup_pinning
require_tools curl python3 timeout setsid awk

check_mooringd_binary
if [ -n "$reference" ]; then
        # check_mooringd_binary works on $mooringd: borrow it for the reference
        main_mooringd=$mooringd
        mooringd=$reference
        check_mooringd_binary
        reference=$mooringd
        mooringd=$main_mooringd
fi

# ---------------------------------------------------------------- state & cleanup

nginx_pid=

# called by cleanup (bench/lib.sh) once the client (wrk) and mooringd are stopped
stop_servers() {
        [ -z "${obs_rx_pid:-}" ] || kill "$obs_rx_pid" 2>/dev/null || true
        if [ -n "$nginx_pid" ]; then
                stop_pid "$nginx_pid" nginx 5 >/dev/null 2>&1
                # nginx was started in its own session/process group (setsid):
                # make sure its worker is gone too
                kill -KILL -- "-$nginx_pid" 2>/dev/null
                nginx_pid=
        fi
}
make_tmp mooring-bench

# mem_sample KEY: record mooringd's memory figures (kB) under KEY
declare -A mem_rss mem_anon mem_file mem_pss mem_hwm mem_thr mem_ready
mem_sample() {
        local st=/proc/$mooringd_pid/status
        mem_rss[$1]=$(awk '$1 == "VmRSS:" { print $2 }' "$st")
        mem_anon[$1]=$(awk '$1 == "RssAnon:" { print $2 }' "$st")
        mem_file[$1]=$(awk '$1 == "RssFile:" { print $2 }' "$st")
        mem_hwm[$1]=$(awk '$1 == "VmHWM:" { print $2 }' "$st")
        mem_thr[$1]=$(awk '$1 == "Threads:" { print $2 }' "$st")
        mem_pss[$1]=$(awk '$1 == "Pss:" { print $2 }' "/proc/$mooringd_pid/smaps_rollup" 2>/dev/null || true)
        mem_ready[$1]=${2:-}
}

mib() { awk -v k="$1" 'BEGIN { printf "%.2f", k / 1024 }'; }

# map_table PID: resident kB per mapped file (libraries, the executable), summed
# over its mappings, from /proc/PID/smaps: "kB path" lines, largest first. This
# is what RssFile is made of, file by file.
map_table() {
        awk '/^[0-9a-f]+-[0-9a-f]+ / { name = (NF >= 6 && $6 ~ /^\//) ? $6 : ""; next }
             $1 == "Rss:" && name != "" { kb[name] += $2 }
             END { for (n in kb) printf "%d %s\n", kb[n], n }' "/proc/$1/smaps" | sort -rn
}

# via_table BINARY: "path name,name..." for every library in BINARY's load
# closure, naming the direct NEEDED entries of BINARY that pull it in (ldd of
# each), so the table below shows which libraries leave with which dependency.
via_table() {
        local n p dep
        for n in $(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
                p=$(ldd "$1" | awk -v n="$n" '$1 == n && $3 ~ /^\// { print $3 }')
                [ -n "$p" ] || continue
                { echo "$p"; ldd "$p" | awk '$3 ~ /^\// { print $3 }'; } | while read -r dep; do
                        echo "$(realpath "$dep") ${n%%.so*}"
                done
        done | awk '!seen[$1 " " $2]++ { if ($1 in v) v[$1] = v[$1] "," $2; else v[$1] = $2 }
                    END { for (f in v) print f, v[f] }'
}

# ---------------------------------------------------------------- setup

mkdir -p "$tmp/config/apps.d" "$tmp/state" "$tmp/runtime" "$tmp/nginx"
read -r nginx_port mooringd_port dead_port < <(free_ports 3)

write_bench_app() {
        rm -f "$tmp/config/apps.d/"*.conf
        cat >"$tmp/config/apps.d/bench.conf" <<EOF
[App]
AppAddress=http://127.0.0.1:$dead_port
HttpPort=$mooringd_port
EOF
}
write_bench_app

if [ "$memory_only" -eq 0 ]; then
# nginx: one worker (mooringd serves HTTP on one event-loop thread), no
# logging, keep-alive connections that are never closed by the server.
nginx_v=$("$nginx_bin" -V 2>&1)
temp_paths="client_body_temp_path $tmp/nginx/client_body;"
for m in proxy fastcgi uwsgi scgi; do
        case $nginx_v in *"--without-http_${m}_module"*) ;; *) temp_paths+=" ${m}_temp_path $tmp/nginx/$m;" ;; esac
done
cat >"$tmp/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events {
        worker_connections 4096;
}
http {
        access_log off;
        $temp_paths
        keepalive_requests 1000000;
        keepalive_timeout 120s;
        server {
                listen 127.0.0.1:$nginx_port;
                location = /v1.0/healthz {
                        return 204;
                }
        }
}
EOF
fi

echo "== environment"
echo "host:        $(uname -srm), $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "mooringd:    $mooringd ($("$mooringd" --version 2>/dev/null | head -1 || echo 'version unknown'))"
if [ -n "$reference" ]; then
        echo "reference:   $reference ($("$reference" --version 2>/dev/null | head -1 || echo 'version unknown')), memory only"
fi
if [ "$memory_only" -eq 0 ]; then
        echo "nginx:       $("$nginx_bin" -v 2>&1 | sed 's/^nginx version: //'), worker_processes 1 (fairness: same single core as mooringd's single event-loop thread)"
        echo "wrk:         $(wrk --version 2>&1 | head -1 | awk '{ print $2 }'), -t1 -c$connections -d${duration}s --latency, keep-alive, same for both targets"
else
        echo "wrk/nginx:   skipped (--memory-only)"
fi
if [ "$pin" -eq 1 ]; then
        echo "pinning:     wrk on CPU 0, nginx and mooringd on CPU $(($(nproc) - 1))"
else
        echo "pinning:     none (pass --pin to put wrk and the servers on separate CPUs)"
fi
echo "temp dir:    $tmp"
echo

# ---------------------------------------------------------------- start servers

if [ "$memory_only" -eq 0 ] && [ "$observability_only" -eq 0 ]; then
        setsid "${srv_pin[@]}" "$nginx_bin" -p "$tmp/nginx/" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" \
                </dev/null >"$tmp/nginx/stdout.log" 2>&1 &
        nginx_pid=$!
        if ! wait_204 "$nginx_pid" nginx "http://127.0.0.1:$nginx_port/v1.0/healthz"; then
                cat "$tmp/nginx/error.log" "$tmp/nginx/stdout.log" >&2 2>/dev/null || true
                die "nginx did not come up"
        fi
fi

start_mooringd "$tmp/state"
if ! wait_204 "$mooringd_pid" mooringd "http://127.0.0.1:$mooringd_port/v1.0/healthz"; then
        show_mooringd_log
        die "mooringd did not come up with 1 app (HttpPort=$mooringd_port)"
fi
mem_sample idle1 $(( $(now_ms) - mooringd_started_ms ))

# ---------------------------------------------------------------- wrk

# to_ms VALUE: wrk latency ("812.00us", "1.20ms", "2.00s") to milliseconds
to_ms() {
        awk -v v="$1" 'BEGIN {
                n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
                if (u == "us") n /= 1000; else if (u == "s") n *= 1000
                else if (u == "m") n *= 60000; else if (u == "h") n *= 3600000
                printf "%.3f", n }'
}

# server_ticks NAME [user|sys]: user+system (or only one) CPU ticks of the server's processes
# (mooringd: all its threads; nginx: master and its worker)
server_ticks() {
        local pids p total=0 t
        if [ "$1" = mooringd ]; then
                pids=$mooringd_pid
        else
                pids="$nginx_pid $(cat /proc/"$nginx_pid"/task/*/children 2>/dev/null)"
        fi
        for p in $pids; do
                t=$(awk -v f="${2:-all}" '{ sub(/^.*\) /, ""); print (f == "user") ? $12 : (f == "sys") ? $13 : $12 + $13 }' "/proc/$p/stat" 2>/dev/null) || t=0
                total=$((total + ${t:-0}))
        done
        echo "$total"
}

declare -A best_rps best_p50 best_p99 best_run best_cpu best_us best_wrk best_other
max_other=0
run_no=0
run_wrk() {
        local name=$1 url=$2 out rps p50 p99 errs non2xx t0 t1 u0 u1 c0 c1 b0 b1 nreq cpu us usr wrkcpu other
        run_no=$((run_no + 1))
        out=$tmp/wrk-$run_no-$name.txt
        b0=$(busy_ticks)
        t0=$(server_ticks "$name"); u0=$(server_ticks "$name" user)
        children_cpu_s >"$tmp/c0.txt"; c0=$(<"$tmp/c0.txt")
        # in the background + wait, so that SIGTERM/SIGINT reach the traps at once
        timeout $((duration + 30)) "${cli_pin[@]}" wrk -t1 -c"$connections" -d"${duration}s" --latency "$url" >"$out" 2>&1 &
        client_pid=$!
        wrk_rc=0
        wait "$client_pid" || wrk_rc=$?
        client_pid=
        if [ "$wrk_rc" -ne 0 ]; then
                cat "$out" >&2
                if [ "$name" = mooringd ]; then check_mooringd_alive "wrk run $run_no"; fi
                die "wrk against $name failed"
        fi
        t1=$(server_ticks "$name"); u1=$(server_ticks "$name" user)
        b1=$(busy_ticks)
        children_cpu_s >"$tmp/c1.txt"; c1=$(<"$tmp/c1.txt")
        rps=$(awk '$1 == "Requests/sec:" { print $2 }' "$out")
        nreq=$(awk '$2 == "requests" && $3 == "in" { print $1 }' "$out")
        p50=$(awk '$1 == "50%" { print $2; exit }' "$out")
        p99=$(awk '$1 == "99%" { print $2; exit }' "$out")
        errs=$(awk '/Socket errors:/ { sub(/^.*Socket errors: */, ""); print }' "$out")
        non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
        if [ -z "$rps" ] || [ -z "$p50" ] || [ -z "$p99" ]; then
                cat "$out" >&2
                die "could not parse wrk output for $name"
        fi
        p50=$(to_ms "$p50"); p99=$(to_ms "$p99")
        # server CPU as % of one core over the run, and CPU microseconds per request
        cpu=$(awk -v d=$((t1 - t0)) -v hz="$clk_tck" -v s="$duration" 'BEGIN { printf "%.0f", d / hz / s * 100 }')
        us=$(awk -v d=$((t1 - t0)) -v hz="$clk_tck" -v n="${nreq:-0}" 'BEGIN { if (n > 0) printf "%.2f", d / hz * 1e6 / n; else print "nan" }')
        usr=$(awk -v d=$((u1 - u0)) -v hz="$clk_tck" -v n="${nreq:-0}" 'BEGIN { if (n > 0) printf "%.2f", d / hz * 1e6 / n; else print "nan" }')
        wrkcpu=$(awk -v a="$c0" -v b="$c1" -v s="$duration" 'BEGIN { printf "%.0f", (b - a) / s * 100 }')
        # CPU used on the machine by anything else than this server and wrk
        # (other processes, interrupts): a noise indicator
        other=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) -v hz="$clk_tck" -v w="$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" -v s="$duration" \
                'BEGIN { o = (b - t) / hz - w; if (o < 0) o = 0; printf "%.0f", o / s * 100 }')
        printf 'run %d  %-8s  %10.2f req/s  p50 %6.3f ms  p99 %6.3f ms  server CPU %3s%%  %5s us/req (user %s)  wrk CPU %3s%%  other CPU %3s%%%s%s\n' \
                "$run_no" "$name" "$rps" "$p50" "$p99" "$cpu" "$us" "$usr" "$wrkcpu" "$other" \
                "${errs:+  socket errors: $errs}" "${non2xx:+  non-2xx: $non2xx}"
        if [ -n "$errs$non2xx" ] && [ "$name" = mooringd ]; then
                daemon_problems+=("wrk run $run_no: ${errs:+socket errors: $errs }${non2xx:+non-2xx responses: $non2xx}")
        fi
        if [ -z "${best_rps[$name]:-}" ] || awk -v a="$rps" -v b="${best_rps[$name]}" 'BEGIN { exit !(a > b) }'; then
                best_rps[$name]=$rps; best_p50[$name]=$p50; best_p99[$name]=$p99; best_run[$name]=$run_no
                best_cpu[$name]=$cpu; best_us[$name]=$us; best_wrk[$name]=$wrkcpu; best_other[$name]=$other
        fi
        [ "$other" -le "$max_other" ] || max_other=$other
        if [ "$name" = mooringd ]; then check_mooringd_alive "wrk run $run_no"; fi
}

if [ "$memory_only" -eq 0 ] && [ "$observability_only" -eq 0 ]; then
        echo "== GET /v1.0/healthz, interleaved runs (nginx, mooringd, nginx, mooringd)"
        nginx_url="http://127.0.0.1:$nginx_port/v1.0/healthz"
        mooringd_url="http://127.0.0.1:$mooringd_port/v1.0/healthz"
        run_wrk nginx "$nginx_url"
        run_wrk mooringd "$mooringd_url"
        run_wrk nginx "$nginx_url"
        run_wrk mooringd "$mooringd_url"
        mem_sample load1
        echo

        echo "== best of two runs each"
        printf '%-10s %14s %12s %12s %12s %12s\n' target req/s "p50 (ms)" "p99 (ms)" "server CPU" "CPU us/req"
        for t in nginx mooringd; do
                printf '%-10s %14.2f %12.3f %12.3f %11s%% %12s\n' "$t" "${best_rps[$t]}" "${best_p50[$t]}" "${best_p99[$t]}" \
                        "${best_cpu[$t]}" "${best_us[$t]}"
        done
        ratio=$(awk -v a="${best_rps[mooringd]}" -v b="${best_rps[nginx]}" 'BEGIN { printf "%.2f", a / b }')
        ratio_met=$(awk -v r="$ratio" 'BEGIN { print (r >= 1.0) ? "met" : "NOT met" }')
        echo "ratio mooringd/nginx: $ratio (target >= 1.00: $ratio_met)"
        for t in nginx mooringd; do
                if [ "${best_cpu[$t]}" -lt 90 ]; then
                        if [ "${best_wrk[$t]}" -ge 90 ]; then
                                echo "note: $t used ${best_cpu[$t]}% of a core in its best run while wrk used ${best_wrk[$t]}%: the single wrk thread was the limit; compare CPU us/req too"
                        else
                                echo "note: neither $t (${best_cpu[$t]}%) nor wrk (${best_wrk[$t]}%) used a full core in $t's best run; other load took ${best_other[$t]}% of a core"
                        fi
                fi
        done
        if [ "${best_other[nginx]}" -ge 20 ] || [ "${best_other[mooringd]}" -ge 20 ]; then
                echo "WARNING: other load used ${best_other[nginx]}% (nginx) / ${best_other[mooringd]}% (mooringd) of a core during the best runs: throughput figures are disturbed, rerun on a quiet machine"
        elif [ "$max_other" -ge 20 ]; then
                echo "note: other load used up to ${max_other}% of a core in some run; the best runs kept above had less than 20%"
        fi
        echo
fi

stop_mooringd

if [ "$memory_only" -eq 0 ] && [ "$observability" -eq 1 ]; then
        healthz_ready() { wait_204 "$mooringd_pid" mooringd "http://127.0.0.1:$mooringd_port/v1.0/healthz"; }
        obs_compare "http://127.0.0.1:$mooringd_port/v1.0/healthz" healthz_ready --latency
        rm -f "$tmp/config/config.yaml"
fi
if [ "$observability_only" -eq 1 ]; then
        print_daemon_problems
        exit 0
fi

# ---------------------------------------------------------------- 100 apps

# wait_sockets PID: all runtime/apps/app-NNN/http.sock exist, bounded
wait_sockets() {
        local t0 i missing
        t0=$(now_ms)
        while :; do
                missing=0
                for ((i = 0; i < napps; i++)); do
                        [ -S "$tmp/runtime/apps/$(printf 'app-%03d' "$i")/http.sock" ] || { missing=$((missing + 1)); break; }
                done
                [ $missing -eq 0 ] && return 0
                if ! proc_alive "$1"; then
                        echo "mooringd exited before creating all $napps app sockets" >&2
                        return 1
                fi
                if [ $(( $(now_ms) - t0 )) -ge $((ready_timeout * 1000)) ]; then
                        local n=0
                        for ((i = 0; i < napps; i++)); do
                                [ -S "$tmp/runtime/apps/$(printf 'app-%03d' "$i")/http.sock" ] && n=$((n + 1))
                        done
                        echo "only $n of $napps app sockets appeared within ${ready_timeout}s" >&2
                        return 1
                fi
                sleep 0.02
        done
}

# write_apps MODE: MODE=unix (Unix socket only) or tcp (Unix socket + HttpPort)
write_apps() {
        local mode=$1 i id ports=()
        rm -f "$tmp/config/apps.d/"*.conf
        if [ "$mode" = tcp ]; then read -r -a ports < <(free_ports "$napps"); fi
        app_ports=("${ports[@]}")
        for ((i = 0; i < napps; i++)); do
                id=$(printf 'app-%03d' "$i")
                {
                        echo "[App]"
                        echo "AppAddress=unix:$tmp/$id.sock"
                        if [ "$mode" = tcp ]; then echo "HttpPort=${ports[$i]}"; fi
                } >"$tmp/config/apps.d/$id.conf"
        done
}

# verify_all MODE: after the RSS reading, every app must answer 204
verify_all() {
        local mode=$1 i id ok=0 code bad=""
        for ((i = 0; i < napps; i++)); do
                id=$(printf 'app-%03d' "$i")
                if [ "$mode" = tcp ]; then
                        code=$(http_code "http://127.0.0.1:${app_ports[$i]}/v1.0/healthz")
                else
                        code=$(http_code "http://localhost/v1.0/healthz" --unix-socket "$tmp/runtime/apps/$id/http.sock")
                fi
                if [ "$code" = 204 ]; then ok=$((ok + 1)); else bad+=" $id:$code"; fi
        done
        echo "$ok"
        [ -z "$bad" ] || echo "apps not answering 204 ($mode):$bad" >&2
}

declare -A ok100
for mode in unix tcp; do
        write_apps "$mode"
        start_mooringd "$tmp/state"
        if ! wait_sockets "$mooringd_pid"; then
                show_mooringd_log
                die "mooringd did not come up with $napps apps ($mode)"
        fi
        if ! wait_204 "$mooringd_pid" mooringd "http://localhost/v1.0/healthz" --unix-socket "$tmp/runtime/apps/app-000/http.sock"; then
                show_mooringd_log
                die "mooringd with $napps apps ($mode) did not answer 204 on app-000/http.sock"
        fi
        if [ "$mode" = tcp ]; then
                for i in 0 $((napps - 1)); do
                        if ! wait_204 "$mooringd_pid" mooringd "http://127.0.0.1:${app_ports[$i]}/v1.0/healthz"; then
                                show_mooringd_log
                                die "mooringd with $napps apps did not answer 204 on app $i's HttpPort ${app_ports[$i]}"
                        fi
                done
        fi
        mem_sample "$mode" $(( $(now_ms) - mooringd_started_ms ))
        [ "$mode" != unix ] || map_table "$mooringd_pid" >"$tmp/maps-unix.txt"
        ok100[$mode]=$(verify_all "$mode")
        [ "${ok100[$mode]}" -eq "$napps" ] || daemon_problems+=("$napps apps ($mode): only ${ok100[$mode]} answered 204")
        check_mooringd_alive "the $napps-app check ($mode)"
        stop_mooringd
done

# ---------------------------------------------------------------- reference build (before/after)

# The same two configurations (1 app idle, 100 apps on Unix sockets) with the
# reference binary, in its own state directory (an older build may not read a
# newer one's databases), right after this build's, on the same machine.
if [ -n "$reference" ]; then
        main_mooringd=$mooringd
        mooringd=$reference
        write_bench_app
        start_mooringd "$tmp/state-ref"
        if ! wait_204 "$mooringd_pid" mooringd "http://127.0.0.1:$mooringd_port/v1.0/healthz"; then
                show_mooringd_log
                die "the reference mooringd did not come up with 1 app"
        fi
        mem_sample ref_idle1 $(( $(now_ms) - mooringd_started_ms ))
        stop_mooringd
        write_apps unix
        start_mooringd "$tmp/state-ref"
        if ! wait_sockets "$mooringd_pid" ||
           ! wait_204 "$mooringd_pid" mooringd "http://localhost/v1.0/healthz" --unix-socket "$tmp/runtime/apps/app-000/http.sock"; then
                show_mooringd_log
                die "the reference mooringd did not come up with $napps apps"
        fi
        mem_sample ref_unix $(( $(now_ms) - mooringd_started_ms ))
        map_table "$mooringd_pid" >"$tmp/maps-ref.txt"
        stop_mooringd
        mooringd=$main_mooringd
fi

# ---------------------------------------------------------------- memory report

# per_app KEY: (VmRSS with 100 apps - VmRSS with 1 app) / 99, and the same for RssAnon
per_app() {
        awk -v a="${mem_rss[$1]}" -v b="${mem_rss[idle1]}" -v c="${mem_anon[$1]}" -v d="${mem_anon[idle1]}" -v n="$napps" \
                'BEGIN { printf "%.1f KiB (anonymous: %.1f KiB)", (a - b) / (n - 1), (c - d) / (n - 1) }'
}
met() { awk -v k="$1" 'BEGIN { print (k <= 8 * 1024) ? "met" : "NOT met" }'; }
mem_row() {
        local k=$1 label=$2 m
        printf '%-34s' "$label"
        for m in "${mem_rss[$k]}" "${mem_anon[$k]}" "${mem_file[$k]}" "${mem_pss[$k]:-}" "${mem_hwm[$k]}"; do
                if [ -n "$m" ]; then printf ' %9s' "$(mib "$m")"; else printf ' %9s' n/a; fi
        done
        printf ' %7s' "${mem_thr[$k]}"
        if [ -n "${mem_ready[$k]}" ]; then printf ' %6s ms\n' "${mem_ready[$k]}"; else printf '\n'; fi
}

echo "== mooringd memory (/proc/PID/status and smaps_rollup, MiB, read right after readiness)"
printf '%-34s %9s %9s %9s %9s %9s %7s %9s\n' configuration VmRSS RssAnon RssFile Pss VmHWM threads "ready in"
mem_row idle1 "1 app (HttpPort), idle"
[ -z "${mem_rss[load1]:-}" ] || mem_row load1 "1 app, after the wrk runs"
mem_row unix "$napps apps, Unix socket each"
mem_row tcp "$napps apps, Unix socket + HttpPort"
echo "RSS with $napps apps (Unix sockets): $(mib "${mem_rss[unix]}") MiB (target <= 8 MiB: $(met "${mem_rss[unix]}")), per app: $(per_app unix)"
echo "RSS with $napps apps (+ HttpPort each): $(mib "${mem_rss[tcp]}") MiB (target <= 8 MiB: $(met "${mem_rss[tcp]}")), per app: $(per_app tcp)"
echo "(RssFile is mapped library/executable pages, shared with other processes using the same libraries; RssAnon is the daemon's own memory)"
echo "all $napps apps answered 204 afterwards: unix ${ok100[unix]}/$napps, tcp ${ok100[tcp]}/$napps"
echo "mooringd stop after SIGTERM (ms): ${stop_times[*]}"
echo

# delta A B FIELD: A - B in MiB for one of the mem_* arrays
delta() {
        local -n arr=$3
        awk -v a="${arr[$1]:-0}" -v b="${arr[$2]:-0}" 'BEGIN { printf "%+.2f", (a - b) / 1024 }'
}
if [ -n "$reference" ]; then
        echo "== before/after: the reference build against this one, same run (MiB)"
        printf '%-34s %9s %9s %9s %9s %9s %7s %9s\n' configuration VmRSS RssAnon RssFile Pss VmHWM threads "ready in"
        mem_row ref_idle1 "reference: 1 app, idle"
        mem_row idle1 "this build: 1 app, idle"
        mem_row ref_unix "reference: $napps apps"
        mem_row unix "this build: $napps apps"
        for k in idle1 unix; do
                label="1 app"; [ "$k" = idle1 ] || label="$napps apps"
                echo "change with $label: VmRSS $(delta "$k" "ref_$k" mem_rss), RssAnon $(delta "$k" "ref_$k" mem_anon)," \
                        "RssFile $(delta "$k" "ref_$k" mem_file), Pss $(delta "$k" "ref_$k" mem_pss) MiB"
        done
        echo
fi

# Every file mooringd maps with 100 apps and what of it is resident: what remains to
# be saved, library by library (a library gone from this build shows 0 in the first column).
echo "== files mapped with $napps apps (Unix sockets): resident kB per file, largest first"
via_table "$mooringd" >"$tmp/via.txt"
[ -n "$reference" ] || : >"$tmp/maps-ref.txt"
printf '%9s %9s  %-56s %s\n' "this" reference file "linked through (NEEDED of this build)"
awk 'FILENAME == ARGV[1] { via[$1] = $2; next }
     FILENAME == ARGV[2] { now[$2] = $1; order[++n] = $2; next }
     { ref[$2] = $1; if (!($2 in now)) order[++n] = $2 }
     END { for (i = 1; i <= n; i++) { f = order[i]
                   printf "%9d %9s  %-56s %s\n", now[f], (f in ref) ? ref[f] : "-", f, (f in via) ? via[f] : (now[f] ? "" : "(not mapped)") } }' \
        "$tmp/via.txt" "$tmp/maps-unix.txt" "$tmp/maps-ref.txt"
[ -z "$reference" ] || echo "(a file whose path differs between the builds, e.g. the executable, is listed twice)"
# what each direct dependency alone costs: files that only it pulls in would leave with it
echo "resident kB of the files pulled in by one NEEDED library alone (they go when it goes):"
awk 'FILENAME == ARGV[1] { if ($2 !~ /,/) only[$1] = $2; next }
     ($2 in only) { kb[only[$2]] += $1 }
     END { for (n in kb) printf "%9d  %s\n", kb[n], n }' "$tmp/via.txt" "$tmp/maps-unix.txt" | sort -rn
awk '{ t += $1 } END { printf "total resident in mapped files: %.2f MiB\n", t / 1024 }' "$tmp/maps-unix.txt"
echo

# ---------------------------------------------------------------- daemon log / problems

# Nothing listens behind the benchmark apps' AppAddress, so health-probe
# warnings about them are expected; anything else the daemon logs is listed.
expected_re='App is unhealthy'
expected=0
for f in "$tmp"/mooringd-*.log; do
        [ -s "$f" ] || continue
        n=$(grep -c -- "$expected_re" "$f" || true)
        expected=$((expected + n))
        if grep -v -q -- "$expected_re" "$f"; then
                daemon_problems+=("$(basename "$f"): $(grep -v -c -- "$expected_re" "$f") unexpected line(s) logged at warning or above")
                echo "---- $(basename "$f") (lines other than '$expected_re') ----"
                grep -v -- "$expected_re" "$f" | head -n 20
        fi
done
echo "expected daemon warnings ('$expected_re', no app listens behind AppAddress): $expected line(s)"
print_daemon_problems
