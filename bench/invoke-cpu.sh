#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# bench/invoke-cpu.sh - CPU per proxied call as instructions, mooringd against
# nginx on the same load, in the same run. Both proxies run under valgrind's
# callgrind (instructions retired in user space, counted exactly), in front of
# the same echo app (bench/echo-app.c), each loaded by wrk with the same 1 KiB
# POST for the same time. Prints instructions per call for each and their
# ratio, and where mooringd's go (the top functions, self cost).
#
# Why: wall-clock figures (bench/invoke.sh) move with whatever else the machine
# runs; on a shared 2-CPU machine they swing by 2x. Instruction counts do not
# (kernel time is not in them: see bench/invoke.sh's syscall line for that).
#
# Usage: bench/invoke-cpu.sh [--mooringd PATH] [--duration SEC] [--connections N]
#                            [--echo-app PATH] [--top N] [--keep]
# mooringd should be a release build with symbols (meson setup build-prof
# -Dbuildtype=release -Ddebug=true -Db_ndebug=true) for the function list.

set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
# shellcheck source=bench/lib.sh
. "$script_dir/lib.sh"

mooringd=${MOORINGD:-$repo_root/build/daemon/mooringd}
echo_app=${ECHO_APP:-}
duration=8
connections=20
top=15
keep=0
ready_timeout=60        # under valgrind start-up is slow
stop_timeout=30

while [ $# -gt 0 ]; do
        case $1 in
        --mooringd) mooringd=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        --echo-app) echo_app=$2; shift 2 ;;
        --top) top=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '3,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
        esac
done

require_nginx_wrk
command -v valgrind >/dev/null 2>&1 || install_packages valgrind
command -v callgrind_annotate >/dev/null 2>&1 || die "callgrind_annotate missing (Debian: valgrind)"
check_mooringd_binary
make_tmp mooring-invoke-cpu
echo_app=$(find_helper echo-app "$echo_app")

mkdir -p "$tmp/config/apps.d" "$tmp/state" "$tmp/runtime" "$tmp/nginx/tmp"
read -r echo_port bench_port nginx_port < <(free_ports 3)
printf '[Daemon]\nApiSocket=%s\n' "$tmp/runtime/mooringd.sock" >"$tmp/config/mooringd.conf"
printf '[App]\nAppAddress=http://127.0.0.1:%s\n' "$echo_port" >"$tmp/config/apps.d/echo.conf"
printf '[App]\nHttpPort=%s\n' "$bench_port" >"$tmp/config/apps.d/bench.conf"
body=$(awk 'BEGIN { s = ""; for (i = 0; i < 1024; i++) s = s sprintf("%c", 97 + i % 26); printf "%s", s }')
cat >"$tmp/post.lua" <<EOF
wrk.method = "POST"
wrk.body = "$body"
wrk.headers["Content-Type"] = "application/octet-stream"
EOF
t=$tmp/nginx
cat >"$t/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $t/nginx.pid;
error_log $t/error.log warn;
events { worker_connections 4096; }
http {
        access_log off;
        client_body_temp_path $t/tmp/cb; proxy_temp_path $t/tmp/p; fastcgi_temp_path $t/tmp/f;
        uwsgi_temp_path $t/tmp/u; scgi_temp_path $t/tmp/s;
        keepalive_requests 1000000; keepalive_timeout 120s;
        upstream echo_app { server 127.0.0.1:$echo_port; keepalive 64; keepalive_requests 1000000; keepalive_timeout 120s; }
        server {
                listen 127.0.0.1:$nginx_port;
                location / { proxy_pass http://echo_app; proxy_http_version 1.1; proxy_set_header Connection ""; }
        }
}
EOF

echo_pid=
nginx_pid=
stop_servers() {
        [ -z "$nginx_pid" ] || stop_pid "$nginx_pid" nginx 30 >/dev/null 2>&1
        [ -z "$echo_pid" ] || stop_pid "$echo_pid" echo-app 5 >/dev/null 2>&1
}

"$echo_app" "$echo_port" </dev/null >"$tmp/echo-app.log" 2>&1 &
echo_pid=$!
env -u NOTIFY_SOCKET -u LISTEN_FDS -u LISTEN_PID -u LISTEN_FDNAMES -u WATCHDOG_USEC -u WATCHDOG_PID \
        valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.mooringd" \
        "$mooringd" --config-dir "$tmp/config" --state-dir "$tmp/state" --runtime-dir "$tmp/runtime" \
        --bus=none --log-level warning </dev/null >"$tmp/mooringd.log" 2>&1 &
mooringd_pid=$!
valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.nginx" \
        "$nginx_bin" -p "$t/" -c "$t/nginx.conf" -e "$t/error.log" </dev/null >"$t/stdout.log" 2>&1 &
nginx_pid=$!

wait_up() { # URL CODE NAME
        local t0
        t0=$(now_ms)
        until [ "$(http_code "$1")" = "$2" ]; do
                [ $(( $(now_ms) - t0 )) -lt $((ready_timeout * 1000)) ] || die "$3 did not come up"
                sleep 0.2
        done
}
wait_up "http://127.0.0.1:$bench_port/v1.0/healthz" 204 mooringd
wait_up "http://127.0.0.1:$nginx_port/" 200 nginx
curl -s --unix-socket "$tmp/runtime/mooringd.sock" -X POST http://localhost/mooring/v1/apps/echo/probe >/dev/null

declare -A n
for target in mooringd nginx; do
        case $target in
        mooringd) u="http://127.0.0.1:$bench_port/v1.0/invoke/echo/method/echo" ;;
        nginx) u="http://127.0.0.1:$nginx_port/echo" ;;
        esac
        wrk -t1 -c"$connections" -d"${duration}s" -s "$tmp/post.lua" "$u" >"$tmp/wrk.$target"
        grep -q "Non-2xx" "$tmp/wrk.$target" && die "$target answered non-2xx: $(cat "$tmp/wrk.$target")"
        n[$target]=$(awk '/requests in/ { print $1 }' "$tmp/wrk.$target")
done
# graceful stops write the profiles
stop_pid "$mooringd_pid" mooringd "$stop_timeout" >/dev/null 2>&1 || true
mooringd_pid=
stop_pid "$nginx_pid" nginx "$stop_timeout" >/dev/null 2>&1 || true
nginx_pid=

ir() { grep -E '^(summary|totals):' "$1" | tail -1 | awk '{ print $2 }'; }
ir_m=$(ir "$tmp/cg.mooringd")
ir_n=0
for f in "$tmp"/cg.nginx*; do ir_n=$((ir_n + $(ir "$f"))); done
per_m=$((ir_m / n[mooringd]))
per_n=$((ir_n / n[nginx]))

echo "== instructions per proxied call (callgrind; 1 KiB POST echo, wrk -t1 -c$connections, ${duration}s each, same run)"
printf "%-10s %10s calls %14s instructions %8s per call\n" mooringd "${n[mooringd]}" "$ir_m" "$per_m"
printf "%-10s %10s calls %14s instructions %8s per call\n" nginx "${n[nginx]}" "$ir_n" "$per_n"
awk -v m="$per_m" -v x="$per_n" 'BEGIN { printf "ratio mooringd/nginx: %.2f (target <= 1.00)\n", m / x }'
echo "(start-up and shutdown are included in both; they are a few hundred thousand instructions)"
echo
echo "== where mooringd's go (self cost per call, top $top)"
callgrind_annotate --inclusive=no "$tmp/cg.mooringd" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | sed 's/ \[.*//' |
        awk -v n="${n[mooringd]}" '{ c = $1; gsub(",", "", c); f = $NF; sub(/^.*\/daemon\//, "", f); printf "%8d  %s\n", c / n, f }' |
        sed -n "2,$((top + 1))p"
