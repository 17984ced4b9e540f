#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# bench/grpc.sh - Dapr's gRPC API against the HTTP/1.1 API, in the same run.
#
# One mooringd with an app "bench" (HttpPort= and GrpcPort=, both loopback) and
# an app "callee" behind bench/echo-app. The same client, h2load (Debian
# nghttp2-client), runs each operation against both front-ends, interleaved:
#
#   GetState       gRPC  POST /dapr.proto.runtime.v1.Dapr/GetState (h2c)
#                  HTTP  GET /v1.0/state/statestore/k            (h2load --h1)
#   InvokeService  gRPC  POST /dapr.proto.runtime.v1.Dapr/InvokeService -> echo app
#                  HTTP  POST /v1.0/invoke/callee/method/echo    -> echo app
#
# The store is state.in-memory so the front-ends, not SQLite, are what differs.
# Per run: requests/s, mooringd CPU (user+system, /proc/PID/stat) per request in
# microseconds, and "other CPU" (the rest of the machine) as a noise figure. The
# result line per operation is the ratio gRPC/HTTP of requests per CPU-second of
# mooringd ("per core"); the target is >= 1.00. gRPC runs use one stream per
# connection (-m 1) like the HTTP/1.1 runs; the -m 1 ratio is the result line.
# Each operation also has a multiplexed gRPC run (-m 10: ten streams at a time
# on each connection, as gRPC SDK clients such as grpc-go, grpcio and grpc-java
# send concurrent calls; a tenth of the connections, so that as many calls are in
# flight as in the HTTP/1.1 run), whose ratio to the same HTTP/1.1 run is
# printed on a line of its own below the result line.
#
# --callgrind runs mooringd under valgrind's callgrind instead (instrumented only
# while h2load runs, one round, --requests defaults to 20000) and prints the
# instructions mooringd executes per request of each run, their ratio gRPC/HTTP,
# and the top functions by self cost of each run. Instruction counts are exact
# and do not move with the load of the machine; they leave out the kernel.
# Build with symbols: meson setup build-rel -Dbuildtype=release -Db_ndebug=true -Ddebug=true
#
# --strace adds, per run, the system calls mooringd made per request (strace -c
# attached for the run; it slows the daemon, so its req/s and CPU figures mean
# nothing then).
#
# usage: bench/grpc.sh [--mooringd PATH] [--echo-app PATH] [--requests N]
#                      [--connections C] [--rounds N] [--callgrind] [--strace]
#                      [--only get|invoke] [--top N] [--keep]
#
# --rounds N (default 2): the interleaved rounds; each figure is the best of them.
# --only get|invoke: run one operation's pair (gRPC and HTTP/1.1) only.
set -euo pipefail
script_dir=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$script_dir/lib.sh"

mooringd=${MOORINGD:-build/daemon/mooringd}
echo_app=${ECHO_APP:-}
requests=
connections=20
callgrind=0
strace=0
rounds=2
top=12
keep=0
only=
ready_timeout=10
stop_timeout=10

while [ $# -gt 0 ]; do
        case $1 in
        --mooringd) mooringd=$2; shift 2 ;;
        --echo-app) echo_app=$2; shift 2 ;;
        --requests) requests=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        --callgrind) callgrind=1; shift ;;
        --strace) strace=1; shift ;;
        --rounds) rounds=$2; shift 2 ;;
        --top) top=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        --only) only=$2; shift 2 ;;
        -h|--help) sed -n '3,42p' "$0"; exit 0 ;;
        *) die "unknown option: $1" ;;
        esac
done

case $only in
"" | get | invoke) ;;
*) die "--only takes get or invoke, not: $only" ;;
esac
do_get() { [ "$only" != invoke ]; }
do_invoke() { [ "$only" != get ]; }

if [ -z "$requests" ]; then
        requests=200000
        [ "$callgrind" -eq 0 ] || requests=20000
fi
require_tools h2load curl python3 awk
[ "$callgrind" -eq 0 ] || require_tools valgrind callgrind_control callgrind_annotate
[ "$strace" -eq 0 ] || require_tools strace
strace_runs=0
check_mooringd_binary
make_tmp mooring-grpc
echo_app=$(find_helper echo-app "$echo_app")
echo_pid=
stop_servers() {
        if [ -n "$echo_pid" ]; then
                stop_pid "$echo_pid" echo-app 5 >/dev/null 2>&1
                echo_pid=
        fi
}

read -r http_port grpc_port echo_port < <(free_ports 3)
mkdir -p "$tmp/config/apps.d" "$tmp/config/components" "$tmp/runtime" "$tmp/state"
printf '[App]\nHttpPort=%s\nGrpcPort=%s\n' "$http_port" "$grpc_port" >"$tmp/config/apps.d/bench.conf"
printf '[App]\nAppAddress=http://127.0.0.1:%s\n' "$echo_port" >"$tmp/config/apps.d/callee.conf"
cat >"$tmp/config/components/state.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.in-memory
  version: v1
EOF

# gRPC request bodies, framed (5-byte prefix), encoded by hand (protobuf wire format):
#   GetStateRequest{store_name=1:"statestore", key=2:"k"}
#   InvokeServiceRequest{id=1:"callee", message=3:InvokeRequest{method=1:"echo",
#       data=2:Any{value=2:<1 KiB>}, http_extension=4:{verb=1:POST(3)}}}
python3 - "$tmp" <<'EOF'
import sys
tmp = sys.argv[1]
def varint(n):
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out
def field(num, payload):
    return varint(num << 3 | 2) + varint(len(payload)) + payload
def frame(msg):
    return b"\x00" + len(msg).to_bytes(4, "big") + msg
body = b"x" * 1024
get = field(1, b"statestore") + field(2, b"k")
any_ = field(2, body)
invoke_req = field(1, b"echo") + field(2, any_) + field(4, varint(1 << 3 | 0) + varint(3))
invoke = field(1, b"callee") + field(3, invoke_req)
open(f"{tmp}/get.grpc", "wb").write(frame(get))
open(f"{tmp}/invoke.grpc", "wb").write(frame(invoke))
open(f"{tmp}/body.bin", "wb").write(body)
EOF

"$echo_app" "$echo_port" </dev/null >"$tmp/echo-app.log" 2>&1 &
echo_pid=$!
if [ "$callgrind" -eq 1 ]; then
        ready_timeout=60
        srv_pin=(valgrind --tool=callgrind --trace-children=yes --instr-atstart=no "--callgrind-out-file=$tmp/cg.out")
fi
start_mooringd "$tmp/state"
wait_204 "$mooringd_pid" mooringd "http://127.0.0.1:$http_port/v1.0/healthz" || { show_mooringd_log; die "mooringd did not come up"; }
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '[{"key":"k","value":{"v":"a value of some size, 64 bytes or so, to read"}}]' \
        "http://127.0.0.1:$http_port/v1.0/state/statestore")
[ "$code" = 204 ] || die "could not save the key to read (HTTP $code)"
# the callee must be healthy before invocations count
for _ in $(seq 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary @"$tmp/body.bin" \
                "http://127.0.0.1:$http_port/v1.0/invoke/callee/method/echo")
        [ "$code" = 200 ] && break
        sleep 0.1
done
[ "$code" = 200 ] || die "the echo app does not answer through mooringd (HTTP $code)"

# the gRPC bodies are right: one call of each answers grpc-status 0 (curl shows trailers with -D)
for rpc in GetState:get InvokeService:invoke; do
        hdrs=$(curl -s --http2-prior-knowledge -o /dev/null -D - -H 'content-type: application/grpc' -H 'te: trailers' \
                --data-binary @"$tmp/${rpc#*:}.grpc" "http://127.0.0.1:$grpc_port/dapr.proto.runtime.v1.Dapr/${rpc%%:*}")
        grep -qi '^grpc-status: 0' <<<"$hdrs" || die "gRPC ${rpc%%:*} does not answer grpc-status 0: $hdrs"
done

cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$mooringd_pid/stat"; }

# run NAME h2load-args...: prints one result line, sets last_rps and last_us
run() {
        local name=$1 t0 t1 b0 b1 s0 s1 out done_ rps us other ok st_pid= st_file=
        shift
        if [ "$strace" -eq 1 ]; then
                strace_runs=$((strace_runs + 1))
                st_file=$tmp/strace.$strace_runs
                strace -c -f -p "$mooringd_pid" -o "$st_file" 2>/dev/null &
                st_pid=$!
                sleep 1 # attached
        fi
        [ "$callgrind" -eq 0 ] || callgrind_control -i on "$mooringd_pid" >/dev/null 2>&1
        t0=$(cpu_ticks); b0=$(busy_ticks); s0=$(now_ms)
        out=$(h2load "$@" 2>&1) || true
        t1=$(cpu_ticks); b1=$(busy_ticks); s1=$(now_ms)
        check_mooringd_alive "$name"
        if [ "$callgrind" -eq 1 ]; then
                callgrind_control -d "$mooringd_pid" >/dev/null 2>&1
                callgrind_control -i off "$mooringd_pid" >/dev/null 2>&1
        fi
        done_=$(awk '/^requests:/ { print $8 }' <<<"$out")
        ok=$(awk '/^status codes:/ { print $3 }' <<<"$out")
        rps=$(awk '/^finished in/ { print $4 }' <<<"$out" | tr -d ',')
        us=$(awk -v t=$((t1 - t0)) -v n="${done_:-0}" -v hz="$clk_tck" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "nan" }')
        other=$(awk -v b=$((b1 - b0 - (t1 - t0))) -v ms=$((s1 - s0)) -v hz="$clk_tck" 'BEGIN { printf "%.0f", b / hz / (ms / 1000) * 100 }')
        printf '  %-34s %9s req/s  %7s us CPU/req  (2xx %s of %s; other CPU %s%%)\n' "$name" "$rps" "$us" "${ok:-0}" "${done_:-0}" "$other"
        if [ -n "$st_pid" ]; then
                kill -INT "$st_pid" 2>/dev/null || true
                wait "$st_pid" 2>/dev/null || true
                awk -v n="${done_:-0}" '/^[ 0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+/ && $NF != "total" { printf "    %6.2f %s\n", $4 / n, $NF }
                        $NF == "total" { printf "    %6.2f system calls per request\n", $4 / n }' "$st_file" | sort -rn | head -8
        fi
        last_rps=$rps
        last_us=$us
        last_done=${done_:-0}
}

grpc_args=(-n "$requests" -c "$connections" -t 1 -H 'content-type: application/grpc' -H 'te: trailers')
# multiplexed: as many calls in flight as the HTTP/1.1 runs (connections x 1), ten per connection
mux_connections=$(( connections >= 10 ? connections / 10 : 1 ))
grpc_mux_args=(-n "$requests" -c "$mux_connections" -t 1 -H 'content-type: application/grpc' -H 'te: trailers')
http_args=(--h1 -n "$requests" -c "$connections" -t 1)
declare -A best_us

measure() { # KEY NAME ARGS...: keeps the lower CPU per request of two runs
        local key=$1 name=$2
        shift 2
        run "$name" "$@"
        if [ -z "${best_us[$key]:-}" ] || awk -v a="$last_us" -v b="${best_us[$key]}" 'BEGIN { exit !(a < b) }'; then
                best_us[$key]=$last_us
        fi
}

ratio() { awk -v h="$1" -v g="$2" 'BEGIN { printf "%.2f", h / g }'; }

if [ "$callgrind" -eq 1 ]; then
        declare -A ir_per
        dumps=0
        # cg_run KEY NAME ARGS...: one h2load run, instructions per request from its dump
        cg_run() {
                local key=$1 name=$2 f total
                shift 2
                run "$name" "$@"
                dumps=$((dumps + 1))
                f="$tmp/cg.out.$dumps"
                [ -s "$f" ] || die "no callgrind dump for $name"
                total=$(grep -E '^(summary|totals):' "$f" | tail -1 | awk '{ print $2 }')
                ir_per[$key]=$(awk -v t="$total" -v n="${last_done:-0}" 'BEGIN { if (n > 0) printf "%.0f", t / n; else print "nan" }')
                echo "    ${ir_per[$key]} instructions per request; top functions by self cost per request:"
                callgrind_annotate --auto=no --threshold=100 --inclusive=no "$f" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | sed 's/ \[.*//' |
                        awk -v n="${last_done:-1}" '{ c = $1; gsub(",", "", c); f = $NF; sub(/^.*\/daemon\//, "", f); printf "      %7.0f  %s\n", c / n, f }' |
                        sed -n "2,$((top + 1))p"
        }
        echo "mooringd under callgrind: gRPC vs HTTP/1.1, $requests requests per run, $connections connections, h2load -t 1"
        if do_get; then
                cg_run get-http "HTTP/1.1 GET state" "${http_args[@]}" "http://127.0.0.1:$http_port/v1.0/state/statestore/k"
                cg_run get-grpc "gRPC GetState (-m 1)" "${grpc_args[@]}" -m 1 -d "$tmp/get.grpc" \
                        "http://127.0.0.1:$grpc_port/dapr.proto.runtime.v1.Dapr/GetState"
                cg_run get-grpc-m10 "gRPC GetState (-m 10)" "${grpc_mux_args[@]}" -m 10 -d "$tmp/get.grpc" \
                        "http://127.0.0.1:$grpc_port/dapr.proto.runtime.v1.Dapr/GetState"
                echo "instructions per request: GetState HTTP ${ir_per[get-http]}, gRPC ${ir_per[get-grpc]}" \
                     "(-m 10: ${ir_per[get-grpc-m10]})"
                echo "ratio gRPC/HTTP requests per instruction, GetState: $(ratio "${ir_per[get-http]}" "${ir_per[get-grpc]}")" \
                     "(multiplexed: $(ratio "${ir_per[get-http]}" "${ir_per[get-grpc-m10]}")) (user space only)"
        fi
        if do_invoke; then
                cg_run inv-http "HTTP/1.1 POST invoke (1 KiB)" "${http_args[@]}" -n $((requests / 4)) -d "$tmp/body.bin" \
                        "http://127.0.0.1:$http_port/v1.0/invoke/callee/method/echo"
                cg_run inv-grpc "gRPC InvokeService (1 KiB, -m 1)" "${grpc_args[@]}" -n $((requests / 4)) -m 1 \
                        -d "$tmp/invoke.grpc" "http://127.0.0.1:$grpc_port/dapr.proto.runtime.v1.Dapr/InvokeService"
                cg_run inv-grpc-m10 "gRPC InvokeService (1 KiB, -m 10)" "${grpc_mux_args[@]}" -n $((requests / 4)) -m 10 \
                        -d "$tmp/invoke.grpc" "http://127.0.0.1:$grpc_port/dapr.proto.runtime.v1.Dapr/InvokeService"
                echo "instructions per request: InvokeService HTTP ${ir_per[inv-http]}, gRPC ${ir_per[inv-grpc]}" \
                     "(-m 10: ${ir_per[inv-grpc-m10]})"
                echo "ratio gRPC/HTTP requests per instruction, InvokeService:" \
                     "$(ratio "${ir_per[inv-http]}" "${ir_per[inv-grpc]}") (user space only)"
                echo "  multiplexed (-m 10, as gRPC SDK clients send concurrent calls), InvokeService:" \
                     "$(ratio "${ir_per[inv-http]}" "${ir_per[inv-grpc-m10]}")"
        fi
        stop_mooringd
        print_daemon_problems
        exit 0
fi

echo "mooringd gRPC vs HTTP/1.1, $requests requests per run, $connections connections, h2load -t 1"
[ "$strace" -eq 0 ] || rounds=1
for round in $(seq "$rounds"); do
        echo "round $round:"
        if do_get; then
                measure get-http "HTTP/1.1 GET state" "${http_args[@]}" "http://127.0.0.1:$http_port/v1.0/state/statestore/k"
                measure get-grpc "gRPC GetState (-m 1)" "${grpc_args[@]}" -m 1 -d "$tmp/get.grpc" \
                        "http://127.0.0.1:$grpc_port/dapr.proto.runtime.v1.Dapr/GetState"
                measure get-grpc-m10 "gRPC GetState (-m 10)" "${grpc_mux_args[@]}" -m 10 -d "$tmp/get.grpc" \
                        "http://127.0.0.1:$grpc_port/dapr.proto.runtime.v1.Dapr/GetState"
        fi
        if do_invoke; then
                measure inv-http "HTTP/1.1 POST invoke (1 KiB)" "${http_args[@]}" -n $((requests / 4)) -d "$tmp/body.bin" \
                        "http://127.0.0.1:$http_port/v1.0/invoke/callee/method/echo"
                measure inv-grpc "gRPC InvokeService (1 KiB, -m 1)" "${grpc_args[@]}" -n $((requests / 4)) -m 1 \
                        -d "$tmp/invoke.grpc" "http://127.0.0.1:$grpc_port/dapr.proto.runtime.v1.Dapr/InvokeService"
                measure inv-grpc-m10 "gRPC InvokeService (1 KiB, -m 10)" "${grpc_mux_args[@]}" -n $((requests / 4)) -m 10 \
                        -d "$tmp/invoke.grpc" "http://127.0.0.1:$grpc_port/dapr.proto.runtime.v1.Dapr/InvokeService"
        fi
done
if do_get; then
        echo "best mooringd CPU per request (us): GetState HTTP ${best_us[get-http]}, gRPC ${best_us[get-grpc]}" \
             "(-m 10: ${best_us[get-grpc-m10]})"
        echo "ratio gRPC/HTTP requests per mooringd CPU-second, GetState: $(ratio "${best_us[get-http]}" "${best_us[get-grpc]}")" \
             "(multiplexed: $(ratio "${best_us[get-http]}" "${best_us[get-grpc-m10]}"))"
fi
if do_invoke; then
        echo "best mooringd CPU per request (us): InvokeService HTTP ${best_us[inv-http]}, gRPC ${best_us[inv-grpc]}" \
             "(-m 10: ${best_us[inv-grpc-m10]})"
        echo "ratio gRPC/HTTP requests per mooringd CPU-second, InvokeService: $(ratio "${best_us[inv-http]}" "${best_us[inv-grpc]}")"
        echo "  multiplexed (-m 10, as gRPC SDK clients send concurrent calls), InvokeService:" \
             "$(ratio "${best_us[inv-http]}" "${best_us[inv-grpc-m10]}")"
fi
echo "(target: >= 1.00; the 2xx count of a gRPC run counts HTTP 200s: check the daemon log for grpc errors with --keep)"
stop_mooringd
print_daemon_problems
