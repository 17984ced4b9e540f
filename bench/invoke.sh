#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# bench/invoke.sh - Dapr service invocation through mooringd: the same echo
# app (bench/echo-app.c) is loaded with 1 KiB POST bodies
#   (a) directly,
#   (b) through mooringd (POST /v1.0/invoke/echo/method/echo on the calling
#       app's HttpPort),
#   (c) through nginx as a reverse proxy with one worker and upstream
#       keep-alive,
# in the same run: peak throughput with wrk (interleaved, best of two), then
# latency at a fixed rate, half of (b)'s peak, with the open-loop generator
# bench/rate-load.c.  Prints the throughput ratios (b)/(a) and (c)/(a) and
# the p50/p99 latency that (b) and (c) add over (a).
#
# Usage: bench/invoke.sh [--mooringd PATH] [--duration SEC] [--connections N]
#                        [--rate R] [--pin] [--echo-app PATH]
#                        [--rate-load PATH] [--keep]
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
echo_app=${ECHO_APP:-}
rate_load=${RATE_LOAD:-}
duration=10
connections=50
rate=                   # latency round: requests/s; empty = half of (b)'s peak
keep=0
pin=0
body_size=1024          # bytes of every POST body
warmup=1                # seconds of each latency run sent but not recorded
observability=1         # also measure metrics + tracing on vs off (bench/observability.sh)
observability_only=0    # only that
obs_cg_duration=5       # seconds of wrk per mode under callgrind in that comparison (0: none)
ready_timeout=10        # seconds to wait for a server to answer
stop_timeout=15         # seconds to wait for mooringd after SIGTERM

usage() {
        cat <<EOF
usage: bench/invoke.sh [--mooringd PATH] [--duration SEC] [--connections N] [--rate R] [--pin]
                       [--echo-app PATH] [--rate-load PATH] [--keep]
  --mooringd PATH    daemon binary (default: \$MOORINGD or build/daemon/mooringd)
  --duration SEC     length of each wrk run and of each latency run (default: 10)
  --connections N    connections, one wrk thread; also the latency generator's pool (default: 50)
  --rate R           latency round at R requests/s (default: half of (b)'s peak)
  --pin              pin the clients to CPU 0 and the servers (echo app, nginx,
                     mooringd) to the last CPU (taskset)
  --echo-app PATH    the echo app (default: \$ECHO_APP, else bench/echo-app next to the
                     daemon's build dir, else compiled from bench/echo-app.c)
  --rate-load PATH   the latency generator (default: \$RATE_LOAD, else bench/rate-load
                     next to the daemon's build dir, else compiled from bench/rate-load.c)
  --keep             keep the temporary directory (configs, logs, raw outputs)
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
        --duration) [ $# -ge 2 ] || die "--duration needs a value"; duration=$2; shift 2 ;;
        --duration=*) duration=${1#*=}; shift ;;
        --connections) [ $# -ge 2 ] || die "--connections needs a value"; connections=$2; shift 2 ;;
        --connections=*) connections=${1#*=}; shift ;;
        --rate) [ $# -ge 2 ] || die "--rate needs a value"; rate=$2; shift 2 ;;
        --rate=*) rate=${1#*=}; shift ;;
        --echo-app) [ $# -ge 2 ] || die "--echo-app needs a value"; echo_app=$2; shift 2 ;;
        --echo-app=*) echo_app=${1#*=}; shift ;;
        --rate-load) [ $# -ge 2 ] || die "--rate-load needs a value"; rate_load=$2; shift 2 ;;
        --rate-load=*) rate_load=${1#*=}; shift ;;
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
[ -z "$rate" ] || [[ $rate =~ ^[1-9][0-9]*$ ]] || die "--rate must be a positive integer (requests/s)"

# ---------------------------------------------------------------- tools

require_nginx_wrk
setup_pinning
require_tools curl python3 timeout setsid awk cmp

check_mooringd_binary

# ---------------------------------------------------------------- state & cleanup

nginx_pid=
echo_pid=

# called by cleanup (bench/lib.sh) once the client and mooringd are stopped
stop_servers() {
        [ -z "${obs_rx_pid:-}" ] || kill "$obs_rx_pid" 2>/dev/null || true
        if [ -n "$nginx_pid" ]; then
                stop_pid "$nginx_pid" nginx 5 >/dev/null 2>&1
                # nginx was started in its own session/process group (setsid):
                # make sure its worker is gone too
                kill -KILL -- "-$nginx_pid" 2>/dev/null
                nginx_pid=
        fi
        if [ -n "$echo_pid" ]; then
                stop_pid "$echo_pid" echo-app 5 >/dev/null 2>&1
                echo_pid=
        fi
}
make_tmp mooring-invoke

# ---------------------------------------------------------------- helpers (echo app, load generator)

echo_app=$(find_helper echo-app "$echo_app")
rate_load=$(find_helper rate-load "$rate_load")

# ---------------------------------------------------------------- setup

mkdir -p "$tmp/config/apps.d" "$tmp/state" "$tmp/runtime" "$tmp/nginx" "$tmp/out"
read -r echo_port bench_port nginx_port < <(free_ports 3)
api_sock=$tmp/runtime/mooringd.sock

cat >"$tmp/config/mooringd.conf" <<EOF
[Daemon]
ApiSocket=$api_sock
EOF
# the callee: the echo app
cat >"$tmp/config/apps.d/echo.conf" <<EOF
[App]
AppAddress=http://127.0.0.1:$echo_port
EOF
# the caller: its HttpPort is where wrk sends the invocations
cat >"$tmp/config/apps.d/bench.conf" <<EOF
[App]
HttpPort=$bench_port
EOF

# the 1 KiB body, for wrk (static: no Lua call per request) and for the checks;
# rate-load builds the same bytes (a-z repeated)
awk -v n="$body_size" 'BEGIN { s = ""; for (i = 0; i < n; i++) s = s sprintf("%c", 97 + i % 26); printf "%s", s }' >"$tmp/body.bin"
cat >"$tmp/post.lua" <<EOF
wrk.method = "POST"
wrk.body = "$(cat "$tmp/body.bin")"
wrk.headers["Content-Type"] = "application/octet-stream"
EOF

# nginx: one worker (mooringd serves HTTP on one event-loop thread), no
# logging, keep-alive to the client and to the upstream, never closed by the
# server during a run.
nginx_v=$("$nginx_bin" -V 2>&1)
case $nginx_v in *"--without-http_proxy_module"*) die "$nginx_bin was built without the proxy module" ;; esac
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
        upstream echo_app {
                server 127.0.0.1:$echo_port;
                keepalive 64;
                keepalive_requests 1000000;
                keepalive_timeout 120s;
        }
        server {
                listen 127.0.0.1:$nginx_port;
                location / {
                        proxy_pass http://echo_app;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                }
        }
}
EOF

direct_url="http://127.0.0.1:$echo_port/echo"
mooringd_url="http://127.0.0.1:$bench_port/v1.0/invoke/echo/method/echo"
nginx_url="http://127.0.0.1:$nginx_port/echo"
declare -A url=([direct]=$direct_url [mooringd]=$mooringd_url [nginx]=$nginx_url)
declare -A label=([direct]="(a) direct" [mooringd]="(b) mooringd" [nginx]="(c) nginx")

echo "== environment"
echo "host:        $(uname -srm), $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "mooringd:    $mooringd ($("$mooringd" --version 2>/dev/null | head -1 || echo 'version unknown'))"
echo "echo app:    $echo_app, 127.0.0.1:$echo_port (one epoll thread)"
echo "nginx:       $("$nginx_bin" -v 2>&1 | sed 's/^nginx version: //'), worker_processes 1, proxy_pass to the echo app with upstream keepalive 64"
echo "wrk:         $(wrk --version 2>&1 | head -1 | awk '{ print $2 }'), -t1 -c$connections -d${duration}s --latency, POST with a $body_size-byte body, keep-alive, same for all three"
echo "rate-load:   $rate_load, open loop, $connections keep-alive connections, ${warmup}s warm-up + ${duration}s recorded"
echo "targets:     (a) $direct_url"
echo "             (b) $mooringd_url"
echo "             (c) $nginx_url"
if [ "$pin" -eq 1 ]; then
        echo "pinning:     wrk and rate-load on CPU 0; echo app, nginx and mooringd on CPU $(($(nproc) - 1))"
else
        echo "pinning:     none (pass --pin to put the clients and the servers on separate CPUs)"
fi
echo "temp dir:    $tmp"
echo

# ---------------------------------------------------------------- start servers

# wait_code PID NAME URL CODE: poll until URL answers CODE, bounded by $ready_timeout
wait_code() {
        local pid=$1 name=$2 u=$3 want=$4 t0 code=000
        t0=$(now_ms)
        while :; do
                code=$(http_code "$u")
                [ "$code" = "$want" ] && return 0
                if ! proc_alive "$pid"; then
                        echo "$name exited while waiting for it to answer $u (last HTTP status: $code)" >&2
                        return 1
                fi
                if [ $(( $(now_ms) - t0 )) -ge $((ready_timeout * 1000)) ]; then
                        echo "$name did not answer $want on $u within ${ready_timeout}s (last HTTP status: $code)" >&2
                        return 1
                fi
                sleep 0.02
        done
}

"${srv_pin[@]}" "$echo_app" "$echo_port" </dev/null >"$tmp/echo-app.log" 2>&1 &
echo_pid=$!
if ! wait_code "$echo_pid" echo-app "http://127.0.0.1:$echo_port/" 200; then
        cat "$tmp/echo-app.log" >&2
        die "the echo app did not come up"
fi

setsid "${srv_pin[@]}" "$nginx_bin" -p "$tmp/nginx/" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" \
        </dev/null >"$tmp/nginx/stdout.log" 2>&1 &
nginx_pid=$!
if ! wait_code "$nginx_pid" nginx "http://127.0.0.1:$nginx_port/" 200; then
        cat "$tmp/nginx/error.log" "$tmp/nginx/stdout.log" >&2 2>/dev/null || true
        die "nginx did not come up"
fi

start_mooringd "$tmp/state"
if ! wait_204 "$mooringd_pid" mooringd "http://127.0.0.1:$bench_port/v1.0/healthz"; then
        show_mooringd_log
        die "mooringd did not come up (app bench, HttpPort=$bench_port)"
fi
# the callee must be known healthy before invocations reach it: probe it now
t0=$(now_ms)
until curl -s --max-time 2 --unix-socket "$api_sock" -X POST http://localhost/mooring/v1/apps/echo/probe 2>/dev/null |
        grep -q '"health":"healthy"'; do
        check_mooringd_alive "the health probe of app echo"
        if [ $(( $(now_ms) - t0 )) -ge $((ready_timeout * 1000)) ]; then
                show_mooringd_log
                die "mooringd did not find app echo healthy within ${ready_timeout}s: $(curl -s --max-time 2 --unix-socket "$api_sock" http://localhost/mooring/v1/apps || true)"
        fi
        sleep 0.05
done

# every target must echo the body back before anything is measured
for t in direct mooringd nginx; do
        code=$(curl -s -o "$tmp/out/check-$t.body" -D "$tmp/out/check-$t.head" --max-time 5 -w '%{http_code}' \
                -H 'Content-Type: application/octet-stream' --data-binary "@$tmp/body.bin" "${url[$t]}" || true)
        if [ "$code" != 200 ] || ! cmp -s "$tmp/out/check-$t.body" "$tmp/body.bin"; then
                [ "$t" != mooringd ] || show_mooringd_log
                if [ "$t" = mooringd ] && [ "$code" = 404 ]; then
                        die "POST ${url[$t]} answered 404 ($(head -c 300 "$tmp/out/check-$t.body")): this mooringd has no service invocation API"
                fi
                die "POST ${url[$t]} answered $code, not 200 with the $body_size bytes sent: $(head -c 300 "$tmp/out/check-$t.body")"
        fi
done
echo "check: all three targets answer 200 and echo the $body_size-byte body"
echo

# a fresh daemon answers, and has found the callee healthy
invoke_ready() {
        wait_204 "$mooringd_pid" mooringd "http://127.0.0.1:$bench_port/v1.0/healthz" || return 1
        local t0
        t0=$(now_ms)
        until curl -s --max-time 2 --unix-socket "$api_sock" -X POST http://localhost/mooring/v1/apps/echo/probe \
                2>/dev/null | grep -q '"health":"healthy"'; do
                [ $(( $(now_ms) - t0 )) -lt $((ready_timeout * 1000)) ] || return 1
                sleep 0.05
        done
}

if [ "$observability_only" -eq 1 ]; then
        stop_mooringd
        obs_compare "$mooringd_url" invoke_ready -s "$tmp/post.lua"
        print_daemon_problems
        exit 0
fi

# ---------------------------------------------------------------- CPU accounting

# to_ms VALUE: wrk latency ("812.00us", "1.20ms", "2.00s") to milliseconds
to_ms() {
        awk -v v="$1" 'BEGIN {
                n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
                if (u == "us") n /= 1000; else if (u == "s") n *= 1000
                else if (u == "m") n *= 60000; else if (u == "h") n *= 3600000
                printf "%.3f", n }'
}

# proxy_ticks TARGET: user+system CPU ticks of the proxy in front of the echo
# app (mooringd: all its threads; nginx: master and worker; direct: none)
proxy_ticks() {
        local pids p total=0 t
        case $1 in
        mooringd) pids=$mooringd_pid ;;
        nginx) pids="$nginx_pid $(cat /proc/"$nginx_pid"/task/*/children 2>/dev/null)" ;;
        *) pids= ;;
        esac
        for p in $pids; do
                t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null) || t=0
                total=$((total + ${t:-0}))
        done
        echo "$total"
}
echo_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$echo_pid/stat"; }

# pct TICKS MS: CPU ticks over MS milliseconds, as % of one core
pct() { awk -v t="$1" -v hz="$clk_tck" -v ms="$2" 'BEGIN { printf "%.0f", (ms > 0) ? t / hz / (ms / 1000) * 100 : 0 }'; }

max_other=0
bad_runs=0

# measure_start / measure_end NAME: CPU of the echo app, the proxy, the client
# (this shell's children reaped in between) and the rest of the machine
measure_start() {
        m_b0=$(busy_ticks); m_e0=$(echo_ticks); m_p0=$(proxy_ticks "$1"); m_t0=$(now_ms)
        children_cpu_s >"$tmp/c0.txt"; m_c0=$(<"$tmp/c0.txt")
}
measure_end() {
        local b1 e1 p1 t1 c1 ms
        children_cpu_s >"$tmp/c1.txt"; c1=$(<"$tmp/c1.txt")
        b1=$(busy_ticks); e1=$(echo_ticks); p1=$(proxy_ticks "$1"); t1=$(now_ms)
        ms=$((t1 - m_t0))
        m_ecpu=$(pct $((e1 - m_e0)) "$ms")
        m_pcpu=$(pct $((p1 - m_p0)) "$ms")
        [ "$1" != direct ] || m_pcpu=-
        m_ccpu=$(awk -v a="$m_c0" -v b="$c1" -v ms="$ms" 'BEGIN { printf "%.0f", (b - a) / (ms / 1000) * 100 }')
        # CPU used on the machine by anything else than the servers and the
        # client (other processes, interrupts): a noise indicator
        m_other=$(awk -v b=$((b1 - m_b0)) -v s=$((e1 - m_e0 + p1 - m_p0)) -v hz="$clk_tck" -v a="$m_c0" -v c="$c1" -v ms="$ms" \
                'BEGIN { o = (b - s) / hz - (c - a); if (o < 0) o = 0; printf "%.0f", (ms > 0) ? o / (ms / 1000) * 100 : 0 }')
        [ "$m_other" -le "$max_other" ] || max_other=$m_other
}

# ---------------------------------------------------------------- round 1: peak throughput (wrk)

declare -A best_rps best_p50 best_p99 best_ecpu best_pcpu best_ccpu best_other all_rps
run_no=0
run_wrk() {
        local name=$1 out rps p50 p99 errs non2xx wrk_rc=0
        run_no=$((run_no + 1))
        out=$tmp/out/wrk-$run_no-$name.txt
        measure_start "$name"
        # in the background + wait, so that SIGTERM/SIGINT reach the traps at once
        timeout $((duration + 30)) "${cli_pin[@]}" wrk -t1 -c"$connections" -d"${duration}s" --latency \
                -s "$tmp/post.lua" "${url[$name]}" >"$out" 2>&1 &
        client_pid=$!
        wait "$client_pid" || wrk_rc=$?
        client_pid=
        measure_end "$name"
        if [ "$wrk_rc" -ne 0 ]; then
                cat "$out" >&2
                if [ "$name" = mooringd ]; then check_mooringd_alive "wrk run $run_no"; fi
                die "wrk against $name failed"
        fi
        rps=$(awk '$1 == "Requests/sec:" { print $2 }' "$out")
        p50=$(awk '$1 == "50%" { print $2; exit }' "$out")
        p99=$(awk '$1 == "99%" { print $2; exit }' "$out")
        errs=$(awk '/Socket errors:/ { sub(/^.*Socket errors: */, ""); print }' "$out")
        non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
        if [ -z "$rps" ] || [ -z "$p50" ] || [ -z "$p99" ]; then
                cat "$out" >&2
                die "could not parse wrk output for $name"
        fi
        p50=$(to_ms "$p50"); p99=$(to_ms "$p99")
        printf 'run %d  %-13s %10.2f req/s  p50 %7.3f ms  p99 %7.3f ms  echo CPU %3s%%  proxy CPU %3s%%  wrk CPU %3s%%  other CPU %3s%%%s%s\n' \
                "$run_no" "${label[$name]}" "$rps" "$p50" "$p99" "$m_ecpu" "$m_pcpu" "$m_ccpu" "$m_other" \
                "${errs:+  socket errors: $errs}" "${non2xx:+  non-2xx: $non2xx}"
        if [ -n "$errs$non2xx" ]; then
                bad_runs=$((bad_runs + 1))
                if [ "$name" = mooringd ]; then
                        daemon_problems+=("wrk run $run_no: ${errs:+socket errors: $errs }${non2xx:+non-2xx responses: $non2xx}")
                fi
        fi
        all_rps[$name]+="${all_rps[$name]:+ }$rps"
        if [ -z "${best_rps[$name]:-}" ] || awk -v a="$rps" -v b="${best_rps[$name]}" 'BEGIN { exit !(a > b) }'; then
                best_rps[$name]=$rps; best_p50[$name]=$p50; best_p99[$name]=$p99
                best_ecpu[$name]=$m_ecpu; best_pcpu[$name]=$m_pcpu; best_ccpu[$name]=$m_ccpu; best_other[$name]=$m_other
        fi
        if [ "$name" = mooringd ]; then check_mooringd_alive "wrk run $run_no"; fi
}

echo "== round 1: peak throughput, wrk -t1 -c$connections, POST $body_size B, interleaved (a, b, c, a, b, c)"
for _ in 1 2; do
        for t in direct mooringd nginx; do run_wrk "$t"; done
done
echo

echo "== round 1: best of two runs each (by req/s)"
printf '%-14s %12s %10s %10s %10s %10s %9s\n' target req/s "p50 (ms)" "p99 (ms)" "echo CPU" "proxy CPU" "wrk CPU"
for t in direct mooringd nginx; do
        printf '%-14s %12.2f %10.3f %10.3f %9s%% %9s%% %8s%%\n' "${label[$t]}" "${best_rps[$t]}" "${best_p50[$t]}" \
                "${best_p99[$t]}" "${best_ecpu[$t]}" "${best_pcpu[$t]}" "${best_ccpu[$t]}"
done
echo "(latency here is wrk's, closed loop at $connections connections: mostly queueing at saturation; see round 2)"
echo "all runs (req/s): (a) ${all_rps[direct]}; (b) ${all_rps[mooringd]}; (c) ${all_rps[nginx]}"
ratio_b=$(awk -v a="${best_rps[mooringd]}" -v b="${best_rps[direct]}" 'BEGIN { printf "%.2f", a / b }')
ratio_c=$(awk -v a="${best_rps[nginx]}" -v b="${best_rps[direct]}" 'BEGIN { printf "%.2f", a / b }')
echo

# ---------------------------------------------------------------- round 2: latency at half load (rate-load)

if [ -z "$rate" ]; then
        rate=$(awk -v r="${best_rps[mooringd]}" 'BEGIN { printf "%d", r / 2 }')
        rate_from="half of (b)'s peak, ${best_rps[mooringd]} req/s"
else
        rate_from="--rate"
fi
[ "$rate" -ge 1 ] || die "latency rate would be $rate requests/s"

declare -A lat_p50 lat_p99 lat_p999 lat_max lat_svc99 lat_rps lat_ecpu lat_pcpu lat_ccpu all_p99
run_rate() {
        local name=$1 out err rc=0 line note="" hp path
        local rps p50 p90 p99 p999 max s50 s99 ok meas bad badb errs unans recon late lag
        run_no=$((run_no + 1))
        out=$tmp/out/rate-$run_no-$name.txt
        err=$tmp/out/rate-$run_no-$name.err
        hp=${url[$name]#http://}; path=/${hp#*/}; hp=${hp%%/*}
        measure_start "$name"
        timeout $((warmup + duration + 30)) "${cli_pin[@]}" "$rate_load" --tcp "$hp" --path "$path" --rate "$rate" \
                --duration "$duration" --warmup "$warmup" --connections "$connections" --body-size "$body_size" \
                </dev/null >"$out" 2>"$err" &
        client_pid=$!
        wait "$client_pid" || rc=$?
        client_pid=
        measure_end "$name"
        line=$(head -n 1 "$out")
        if [ -z "$line" ]; then
                cat "$err" >&2
                if [ "$name" = mooringd ]; then check_mooringd_alive "latency run $run_no"; fi
                die "rate-load against $name printed nothing (status $rc)"
        fi
        kv() { awk -v k="$1" '{ for (i = 1; i <= NF; i++) { split($i, a, "="); if (a[1] == k) print a[2] } }' <<<"$line"; }
        rps=$(kv rps); p50=$(kv p50_ms); p90=$(kv p90_ms); p99=$(kv p99_ms); p999=$(kv p999_ms); max=$(kv max_ms)
        s50=$(kv svc_p50_ms); s99=$(kv svc_p99_ms); ok=$(kv ok); meas=$(kv measured); bad=$(kv bad_status)
        badb=$(kv bad_body); errs=$(kv errors); unans=$(kv unanswered); recon=$(kv reconnects); late=$(kv late_1ms)
        lag=$(kv max_lag_ms)
        if [ "$ok" != "$meas" ]; then
                note="  ok $ok/$meas (bad status $bad, bad body $badb, socket errors $errs, unanswered $unans, reconnects $recon)"
                bad_runs=$((bad_runs + 1))
                [ "$name" != mooringd ] || daemon_problems+=("latency run $run_no:$note")
                sed 's/^/    /' "$err"
        elif [ "$recon" != 0 ]; then
                note="  reconnects $recon (the server closed keep-alive connections)"
        fi
        if [ "$late" != 0 ]; then
                note+="  sent >1 ms late: $late (max $lag ms)"
        fi
        printf 'run %d  %-13s %9.1f req/s  p50 %7.3f  p90 %7.3f  p99 %7.3f  p99.9 %7.3f  max %8.3f ms  (from write: p50 %6.3f p99 %6.3f)  echo CPU %3s%%  proxy CPU %3s%%  client CPU %3s%%  other CPU %3s%%%s\n' \
                "$run_no" "${label[$name]}" "$rps" "$p50" "$p90" "$p99" "$p999" "$max" "$s50" "$s99" \
                "$m_ecpu" "$m_pcpu" "$m_ccpu" "$m_other" "$note"
        all_p99[$name]+="${all_p99[$name]:+ }$p99"
        if [ -z "${lat_p99[$name]:-}" ] || awk -v a="$p99" -v b="${lat_p99[$name]}" 'BEGIN { exit !(a < b) }'; then
                lat_p50[$name]=$p50; lat_p99[$name]=$p99; lat_p999[$name]=$p999; lat_max[$name]=$max
                lat_svc99[$name]=$s99; lat_rps[$name]=$rps
                lat_ecpu[$name]=$m_ecpu; lat_pcpu[$name]=$m_pcpu; lat_ccpu[$name]=$m_ccpu
        fi
        if [ "$name" = mooringd ]; then check_mooringd_alive "latency run $run_no"; fi
}

echo "== round 2: latency at $rate req/s ($rate_from), open loop, interleaved (a, b, c, a, b, c); ms from when each request was due"
for _ in 1 2; do
        for t in direct mooringd nginx; do run_rate "$t"; done
done
echo

echo "== round 2: best of two runs each (by p99), at $rate req/s"
printf '%-14s %10s %9s %9s %9s %9s %10s %10s %11s %9s %10s %11s\n' target req/s "p50 (ms)" "p99 (ms)" "p99.9" "max" \
        "added p50" "added p99" "p99 (write)" "echo CPU" "proxy CPU" "client CPU"
for t in direct mooringd nginx; do
        if [ "$t" = direct ]; then
                a50=-; a99=-
        else
                a50=$(awk -v x="${lat_p50[$t]}" -v y="${lat_p50[direct]}" 'BEGIN { printf "%+.3f", x - y }')
                a99=$(awk -v x="${lat_p99[$t]}" -v y="${lat_p99[direct]}" 'BEGIN { printf "%+.3f", x - y }')
        fi
        printf '%-14s %10.1f %9.3f %9.3f %9.3f %9.3f %10s %10s %11.3f %8s%% %9s%% %10s%%\n' "${label[$t]}" "${lat_rps[$t]}" \
                "${lat_p50[$t]}" "${lat_p99[$t]}" "${lat_p999[$t]}" "${lat_max[$t]}" "$a50" "$a99" "${lat_svc99[$t]}" \
                "${lat_ecpu[$t]}" "${lat_pcpu[$t]}" "${lat_ccpu[$t]}"
done
echo "all runs (p99 ms): (a) ${all_p99[direct]}; (b) ${all_p99[mooringd]}; (c) ${all_p99[nginx]}"
for t in direct nginx; do
        if awk -v r="$rate" -v p="${best_rps[$t]}" 'BEGIN { exit !(r > 0.9 * p) }'; then
                echo "note: $rate req/s is within 10% of ${label[$t]}'s peak (${best_rps[$t]} req/s): it is close to saturation in round 2"
        fi
done
echo

# ---------------------------------------------------------------- results

added() { awk -v x="$1" -v y="$2" 'BEGIN { printf "%.3f", x - y }'; }
add50_b=$(added "${lat_p50[mooringd]}" "${lat_p50[direct]}")
add99_b=$(added "${lat_p99[mooringd]}" "${lat_p99[direct]}")
add50_c=$(added "${lat_p50[nginx]}" "${lat_p50[direct]}")
add99_c=$(added "${lat_p99[nginx]}" "${lat_p99[direct]}")
met_ratio=$(awk -v r="$ratio_b" 'BEGIN { print (r >= 0.5) ? "met" : "NOT met" }')
met_vs_nginx=$(awk -v b="${best_rps[mooringd]}" -v c="${best_rps[nginx]}" 'BEGIN { print (b >= c) ? "met" : "NOT met" }')
met_p99=$(awk -v a="$add99_b" 'BEGIN { print (a <= 0.2) ? "met" : "NOT met" }')

echo "== results ($body_size-byte POST echo, same run)"
echo "throughput (b)/(a) mooringd/direct: $ratio_b (target >= 0.50: $met_ratio)"
echo "throughput (c)/(a) nginx/direct:    $ratio_c"
echo "throughput (b) >= (c): $(printf '%.2f' "${best_rps[mooringd]}") vs $(printf '%.2f' "${best_rps[nginx]}") req/s (target (b)/(a) >= (c)/(a): $met_vs_nginx)"
echo "added latency at $rate req/s, (b) mooringd: p50 $add50_b ms, p99 $add99_b ms (target p99 <= 0.200 ms: $met_p99)"
echo "added latency at $rate req/s, (c) nginx:    p50 $add50_c ms, p99 $add99_c ms"
for t in direct mooringd nginx; do
        if [ "${best_ccpu[$t]}" -ge 90 ] && [ "${best_pcpu[$t]}" != - ] && [ "${best_pcpu[$t]}" -lt 90 ]; then
                echo "note: in ${label[$t]}'s best wrk run wrk used ${best_ccpu[$t]}% of a core and the proxy ${best_pcpu[$t]}%: the single wrk thread may have been the limit"
        fi
done
if [ "${best_ccpu[direct]}" -ge 90 ]; then
        echo "note: wrk used ${best_ccpu[direct]}% of a core against (a): the reference may be limited by the client, which makes the ratios conservative"
fi
if [ "${best_other[direct]}" -ge 20 ] || [ "${best_other[mooringd]}" -ge 20 ] || [ "${best_other[nginx]}" -ge 20 ]; then
        echo "WARNING: other load used ${best_other[direct]}% / ${best_other[mooringd]}% / ${best_other[nginx]}% of a core during the best wrk runs: throughput figures are disturbed, rerun on a quiet machine"
elif [ "$max_other" -ge 20 ]; then
        echo "note: other load used up to ${max_other}% of a core in some run; the best wrk runs kept above had less than 20%"
fi
echo

# ---------------------------------------------------------------- round 3: system calls per call

# A short extra wrk run of each proxy under strace -c (its timing is not a figure: strace slows
# every system call down). Callgrind (bench/invoke-cpu.sh) counts user space exactly; this is the
# kernel side: the system calls each proxy makes per proxied call.
syscalls_per_call() {
        local name=$1 pids p st_pid out n args=()
        case $name in
        mooringd) pids=$mooringd_pid ;;
        nginx) pids="$nginx_pid $(cat /proc/"$nginx_pid"/task/*/children 2>/dev/null)" ;;
        esac
        for p in $pids; do args+=(-p "$p"); done
        strace -c -f "${args[@]}" -o "$tmp/out/strace-$name.txt" 2>/dev/null &
        st_pid=$!
        sleep 1 # attached
        out=$tmp/out/wrk-strace-$name.txt
        timeout 40 "${cli_pin[@]}" wrk -t1 -c"$connections" -d3s -s "$tmp/post.lua" "${url[$name]}" >"$out" 2>&1 || true
        kill -INT "$st_pid" 2>/dev/null || true
        wait "$st_pid" 2>/dev/null || true
        n=$(awk '/requests in/ { print $1 }' "$out")
        if [ -z "$n" ] || [ "$n" -eq 0 ] || [ ! -s "$tmp/out/strace-$name.txt" ]; then
                echo "  $name: no figure (wrk or strace failed)"
                return
        fi
        awk -v n="$n" -v who="$name" '
                $NF == "total" { total = $4 / n; next }
                /^[ 0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+/ { top = top sprintf(" %s %.2f", $NF, $4 / n) }
                END { printf "  %-9s %6.2f system calls per call (%d calls):%s\n", who, total, n, top }' \
                <(sort -k4 -rn "$tmp/out/strace-$name.txt")
}
if command -v strace >/dev/null 2>&1; then
        echo
        echo "== round 3: system calls per proxied call (strace -c -f, 3 s of wrk each; timings not used)"
        syscalls_per_call mooringd
        syscalls_per_call nginx
else
        echo "system calls per call: not measured (no strace; Debian: strace)"
fi

stop_mooringd
echo "mooringd stop after SIGTERM (ms): ${stop_times[*]}"

if [ "$observability" -eq 1 ]; then
        echo
        obs_compare "$mooringd_url" invoke_ready -s "$tmp/post.lua"
fi

# ---------------------------------------------------------------- daemon log / problems

for f in "$tmp"/mooringd-*.log; do
        [ -s "$f" ] || continue
        daemon_problems+=("$(basename "$f"): $(wc -l <"$f") line(s) logged at warning or above")
        echo "---- $(basename "$f") (first 20 lines) ----"
        head -n 20 "$f"
done
if [ -s "$tmp/nginx/error.log" ]; then
        echo "---- nginx error.log (first 10 lines) ----"
        head -n 10 "$tmp/nginx/error.log"
fi
print_daemon_problems
[ "$bad_runs" -eq 0 ]
