#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# bench/bindings.sh - Dapr bindings through mooringd, each against a
# reference measured in the same run on the same machine:
#
#  1. output bindings.http: calls/s of POST /v1.0/bindings/web
#     {"operation":"get"} (mooringd calls bench/echo-app with libcurl) against
#     wrk calling the same echo-app directly; ratio, p50/p99, and CPU per
#     call of mooringd;
#  2. input bindings.mqtt3: messages/s and end-to-end p50/p99 delivered to an
#     app through an MQTT input binding, next to pubsub.mqtt3 delivering to
#     an app on the same mosquitto in the same run. The same publisher feeds
#     both (bench/pubsub-pub.c, POST /v1.0/publish/mq/<topic>: the messages
#     reach mosquitto through pubsub.mqtt3 either way); only the reading side
#     differs: a pubsub subscription (topic "bench") or the binding (topic
#     "bbench"). bench/pubsub-sub.c measures both (it finds run/seq/ts in
#     the body, a CloudEvent in both cases).
#
# Usage: bench/bindings.sh [--mooringd PATH] [--duration S] [--connections C]
#                          [--messages M] [--keep]
# Everything runs on 127.0.0.1; every process started here is stopped by PID
# on exit, and the temporary directory removed (unless --keep). Timings are
# printed, never judged: see bench/README.md.

set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
# shellcheck source=bench/lib.sh
. "$script_dir/lib.sh"

mooringd=${MOORINGD:-$repo_root/build/daemon/mooringd}
duration=10
connections=32
messages=20000
keep=0
ready_timeout=10
stop_timeout=15
drain=60

while [ $# -gt 0 ]; do
        case $1 in
        --mooringd) mooringd=$2; shift 2 ;;
        --mooringd=*) mooringd=${1#*=}; shift ;;
        --duration) duration=$2; shift 2 ;;
        --duration=*) duration=${1#*=}; shift ;;
        --connections) connections=$2; shift 2 ;;
        --connections=*) connections=${1#*=}; shift ;;
        --messages) messages=$2; shift 2 ;;
        --messages=*) messages=${1#*=}; shift ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '3,25p' "$0"; exit 0 ;;
        *) die "unknown argument: $1" ;;
        esac
done

check_mooringd_binary
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
install_packages "${missing[@]}"
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
require_tools curl python3 awk

echo_pid= sub_pid= sub2_pid= mosquitto_pid=
stop_servers() {
        local p
        for p in "$echo_pid" "$sub_pid" "$sub2_pid" "$mosquitto_pid"; do
                [ -z "$p" ] || stop_pid "$p" helper 5 >/dev/null 2>&1 || true
        done
        echo_pid= sub_pid= sub2_pid= mosquitto_pid=
}
make_tmp mooring-bindings-bench

proc_ticks() { [ -n "$1" ] || { echo 0; return; }; awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
kv() { awk -v k="$1" '{ for (i = 1; i <= NF; i++) { n = index($i, "="); if (n && substr($i, 1, n - 1) == k) print substr($i, n + 1) } }' <<<"$2"; }

echo_app=$(find_helper echo-app "")
pubsub_pub=$(find_helper pubsub-pub "")
pubsub_sub=$(find_helper pubsub-sub "")

mkdir -p "$tmp/config/apps.d" "$tmp/config/components" "$tmp/runtime" "$tmp/state" "$tmp/out" "$tmp/mosquitto"
read -r pub_port echo_port sub_port sub2_port mqtt_port < <(free_ports 5)

cat >"$tmp/config/apps.d/pub.conf" <<EOF
[App]
HttpPort=$pub_port
[App]
HttpPort=$pub_port
EOF
# ps: reads pubsub "mq" topic "bench"; bd: reads the input binding "in" (topic "bbench")
cat >"$tmp/config/apps.d/ps.conf" <<EOF
[App]
AppAddress=http://127.0.0.1:$sub_port
HealthProbeInterval=100ms
EOF
cat >"$tmp/config/apps.d/bd.conf" <<EOF
[App]
AppAddress=http://127.0.0.1:$sub2_port
HealthProbeInterval=100ms
EOF
cat >"$tmp/config/components/web.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: web
spec:
  type: bindings.http
  version: v1
  metadata:
  - name: url
    value: http://127.0.0.1:$echo_port/item
EOF
cat >"$tmp/config/components/mq.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: mq
spec:
  type: pubsub.mqtt3
  version: v1
  metadata:
  - name: url
    value: tcp://127.0.0.1:$mqtt_port
EOF
cat >"$tmp/config/components/in.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: in
spec:
  type: bindings.mqtt3
  version: v1
  metadata:
  - name: url
    value: tcp://127.0.0.1:$mqtt_port
  - name: topic
    value: bbench
  - name: route
    value: /bench
  - name: direction
    value: input
scopes: [bd]
EOF

cat >"$tmp/mosquitto/mosquitto.conf" <<EOF
listener $mqtt_port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000000
log_dest stderr
log_type error
EOF
[ "$(id -u)" -ne 0 ] || echo "user root" >>"$tmp/mosquitto/mosquitto.conf"
"$mosquitto_bin" -c "$tmp/mosquitto/mosquitto.conf" </dev/null >"$tmp/mosquitto/log" 2>&1 &
mosquitto_pid=$!
"$echo_app" "$echo_port" </dev/null >"$tmp/out/echo.log" 2>&1 &
echo_pid=$!
"$pubsub_sub" "$sub_port" mq bench /bench </dev/null >"$tmp/out/sub-ps.log" 2>&1 &
sub_pid=$!
# its /dapr/subscribe names a pubsub that does not exist: only the binding feeds it
"$pubsub_sub" "$sub2_port" none none /bench </dev/null >"$tmp/out/sub-bd.log" 2>&1 &
sub2_pid=$!
t0=$(now_ms)
until [ "$(http_code "http://127.0.0.1:$sub2_port/")" = 200 ] && [ "$(http_code "http://127.0.0.1:$sub_port/")" = 200 ] &&
      (exec 3<>"/dev/tcp/127.0.0.1/$mqtt_port") 2>/dev/null; do
        [ $(( $(now_ms) - t0 )) -lt $((ready_timeout * 1000)) ] || die "mosquitto or the apps did not come up"
        sleep 0.05
done

start_mooringd "$tmp/state"
wait_204 "$mooringd_pid" mooringd "http://127.0.0.1:$pub_port/v1.0/healthz" || die "mooringd did not start"

echo "== environment"
echo "host:        $(uname -srm), $(nproc) CPUs (a shared machine: other jobs may run at the same time)"
echo "mooringd:    $mooringd"
echo "load:        wrk -t1 -c$connections -d${duration}s; pubsub-pub $connections connections, $messages messages of 1 KiB"
echo

# ---------------------------------------------------------------- 1. bindings.http
echo "== output bindings.http vs the same target called directly (echo-app)"
printf '%s\n' 'wrk.method = "POST"' \
        'wrk.body = [[{"operation":"get","metadata":{"path":"x"}}]]' \
        'wrk.headers["Content-Type"] = "application/json"' >"$tmp/post.lua"
code=$(http_code "http://127.0.0.1:$pub_port/v1.0/bindings/web" -X POST -d '{"operation":"get"}')
[ "$code" = 200 ] || die "POST /v1.0/bindings/web answered $code"

# run_wrk NAME URL [wrk args...]: one line of figures; keeps the calls/s in $tmp/out/rps-NAME
run_wrk() {
        local name=$1 url=$2 m0 m1 out rps reqs p50 p99
        shift 2
        m0=$(proc_ticks "$mooringd_pid")
        out=$(wrk -t1 -c"$connections" -d"${duration}s" --latency "$@" "$url")
        m1=$(proc_ticks "$mooringd_pid")
        echo "$out" >"$tmp/out/wrk-$name.txt"
        rps=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
        reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
        p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
        p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
        if grep -q 'Non-2xx' <<<"$out"; then
                daemon_problems+=("$name: $(grep 'Non-2xx' <<<"$out")")
        fi
        awk -v n="$name" -v r="$rps" -v a="$p50" -v b="$p99" -v t=$((m1 - m0)) -v hz="$clk_tck" -v q="$reqs" \
                'BEGIN { printf "%-16s %9.0f calls/s  p50 %8s  p99 %8s  mooringd CPU %6.1f us/call\n", n, r, a, b, (q > 0) ? t / hz * 1e6 / q : 0 }'
        echo "$rps" >"$tmp/out/rps-$name"
}
run_wrk direct "http://127.0.0.1:$echo_port/item/x"
run_wrk binding "http://127.0.0.1:$pub_port/v1.0/bindings/web" -s "$tmp/post.lua"
run_wrk direct-2 "http://127.0.0.1:$echo_port/item/x"
run_wrk binding-2 "http://127.0.0.1:$pub_port/v1.0/bindings/web" -s "$tmp/post.lua"
best() { sort -g "$tmp/out/rps-$1" "$tmp/out/rps-$1-2" | tail -1; }
awk -v b="$(best binding)" -v d="$(best direct)" \
        'BEGIN { printf "ratio bindings.http / direct calls/s (best of two runs each): %.3f\n\n", (d > 0) ? b / d : 0 }'
check_mooringd_alive "the bindings.http runs"

# ---------------------------------------------------------------- 2. input bindings.mqtt3 vs pubsub.mqtt3
echo "== input bindings.mqtt3 vs pubsub.mqtt3, same mosquitto, same publisher, same run"
# warm-up: one message each way, until both readers deliver (their subscriptions reached the broker)
warm() {
        local port=$1 topic=$2 t0 line
        t0=$(now_ms)
        curl -s -X POST "http://127.0.0.1:$port/control/start?run=999999&count=1" >/dev/null
        while :; do
                "$pubsub_pub" --tcp "127.0.0.1:$pub_port" --pubsub mq --topic "$topic" --run 999999 --count 1 \
                        --connections 1 >/dev/null 2>&1 || true
                line=$(curl -s --max-time 3 "http://127.0.0.1:$port/control/wait?timeout_ms=1000")
                [ "$(kv unique "$line")" != 1 ] || return 0
                [ $(( $(now_ms) - t0 )) -lt 30000 ] || die "no message reached the app through $topic (see $mooringd_log)"
        done
}
warm "$sub_port" bench
warm "$sub2_port" bbench
run=0
# run_mq LABEL APP_PORT TOPIC: publish $messages, wait for them at the app, one line of figures
run_mq() {
        local label=$1 port=$2 topic=$3 m0 m1 line
        run=$((run + 1))
        curl -s -X POST "http://127.0.0.1:$port/control/start?run=$run&count=$messages" >/dev/null
        m0=$(proc_ticks "$mooringd_pid")
        "$pubsub_pub" --tcp "127.0.0.1:$pub_port" --pubsub mq --topic "$topic" --run "$run" --count "$messages" \
                --connections "$connections" >"$tmp/out/pub-$run.txt" 2>&1 || true
        line=$(curl -s --max-time $((drain + 5)) "http://127.0.0.1:$port/control/wait?timeout_ms=$((drain * 1000))")
        m1=$(proc_ticks "$mooringd_pid")
        echo "$line" >"$tmp/out/sub-$run.txt"
        awk -v n="$label" -v r="$(kv deliver_rps "$line")" -v a="$(kv p50_ms "$line")" -v b="$(kv p99_ms "$line")" \
                -v u="$(kv unique "$line")" -v d="$(kv duplicates "$line")" -v m="$messages" -v t=$((m1 - m0)) -v hz="$clk_tck" \
                'BEGIN { printf "%-16s %8.0f msgs/s  p50 %7s ms  p99 %7s ms  delivered %d/%d (dups %d)  mooringd CPU %6.1f us/msg\n", n, r, a, b, u, m, d, (u > 0) ? t / hz * 1e6 / u : 0 }'
        echo "$(kv deliver_rps "$line")" >"$tmp/out/mq-$label"
}
run_mq pubsub.mqtt3 "$sub_port" bench
run_mq bindings.mqtt3 "$sub2_port" bbench
run_mq pubsub.mqtt3-2 "$sub_port" bench
run_mq bindings.mqtt3-2 "$sub2_port" bbench
awk -v b="$(sort -g "$tmp/out/mq-bindings.mqtt3" "$tmp/out/mq-bindings.mqtt3-2" | tail -1)" \
    -v p="$(sort -g "$tmp/out/mq-pubsub.mqtt3" "$tmp/out/mq-pubsub.mqtt3-2" | tail -1)" \
    'BEGIN { printf "ratio bindings.mqtt3 / pubsub.mqtt3 delivered msgs/s (best of two runs each): %.3f\n", (p > 0) ? b / p : 0 }'
check_mooringd_alive "the mqtt runs"
stop_mooringd
echo
print_daemon_problems
