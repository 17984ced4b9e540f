#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# bench/actors.sh - Dapr actors through mooringd. The app is bench/echo-app.c
# declaring actor types in its GET /dapr/config (ECHO_APP_DAPR_CONFIG); every
# actor call (method, reminder) it gets is answered 200 at once. In one run:
#
#   1. method calls/s: wrk PUTs with a 1 KiB body, spread over 1,000 actor ids,
#      (a) straight to the app's /actors/{type}/{id}/method/echo, and
#      (b) through mooringd's /v1.0/actors/{type}/{id}/method/echo on the
#      calling app's HttpPort; prints (b)/(a) and mooringd's CPU per call;
#   2. activation latency: sequential calls to new actor ids (each one an
#      activation) against calls to one active actor, p50/p90/p99;
#   3. reminders: N one-shot reminders (default 100,000, over 1,000 actor types
#      of N/1,000 actors each, so each type's stored record stays small) all due
#      at the same moment; the daemon's RSS with them registered, and how fast
#      they fire (until none is left), against the app's direct call rate (a).
#      With --partitions N the app asks for N reminder storage partitions per
#      type (remindersStoragePartitions), so each stored record is N times smaller.
#
# Usage: bench/actors.sh [--mooringd PATH] [--duration SEC] [--connections N]
#                        [--reminders N] [--partitions N] [--echo-app PATH] [--pin] [--keep]
#
# Everything runs on 127.0.0.1; every process started here is stopped on exit.
# The machine may be shared: the figures say what this run measured, nothing more.

set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
# shellcheck source=bench/lib.sh
. "$script_dir/lib.sh"

mooringd=${MOORINGD:-$repo_root/build/daemon/mooringd}
echo_app=${ECHO_APP:-}
duration=10
connections=50
reminders=100000
partitions=0
keep=0
pin=0
ready_timeout=10
stop_timeout=15

usage() {
        cat <<EOF
usage: bench/actors.sh [--mooringd PATH] [--duration SEC] [--connections N] [--reminders N]
                       [--partitions N] [--echo-app PATH] [--pin] [--keep]
  --mooringd PATH    daemon binary (default: \$MOORINGD or build/daemon/mooringd)
  --duration SEC     length of each wrk run (default: 10)
  --connections N    wrk connections (default: 50)
  --reminders N      reminders registered for the fire-rate round (default: 100000)
  --partitions N     the app's remindersStoragePartitions (default: 0, one record per type)
  --echo-app PATH    the app (default: bench/echo-app next to the daemon's build dir)
  --pin              clients on CPU 0, servers on the last CPU
  --keep             keep the temporary directory
EOF
}

while [ $# -gt 0 ]; do
        case $1 in
        --mooringd) mooringd=$2; shift 2 ;;
        --mooringd=*) mooringd=${1#*=}; shift ;;
        --duration) duration=$2; shift 2 ;;
        --duration=*) duration=${1#*=}; shift ;;
        --connections) connections=$2; shift 2 ;;
        --connections=*) connections=${1#*=}; shift ;;
        --reminders) reminders=$2; shift 2 ;;
        --reminders=*) reminders=${1#*=}; shift ;;
        --partitions) partitions=$2; shift 2 ;;
        --partitions=*) partitions=${1#*=}; shift ;;
        --echo-app) echo_app=$2; shift 2 ;;
        --echo-app=*) echo_app=${1#*=}; shift ;;
        --keep) keep=1; shift ;;
        --pin) pin=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
        esac
done
[[ $duration =~ ^[1-9][0-9]*$ ]] || die "--duration must be a positive integer (seconds)"
[[ $connections =~ ^[1-9][0-9]*$ ]] || die "--connections must be a positive integer"
[[ $reminders =~ ^[1-9][0-9]*$ ]] || die "--reminders must be a positive integer"
[[ $partitions =~ ^[0-9]+$ ]] || die "--partitions must be a number"

command -v wrk >/dev/null 2>&1 || install_packages wrk
setup_pinning
require_tools curl python3 timeout awk
check_mooringd_binary

echo_pid=
stop_servers() {
        if [ -n "$echo_pid" ]; then
                stop_pid "$echo_pid" echo-app 5 >/dev/null 2>&1
                echo_pid=
        fi
}
make_tmp mooring-actors
echo_app=$(find_helper echo-app "$echo_app")

mkdir -p "$tmp/config/apps.d" "$tmp/state" "$tmp/runtime"
read -r echo_port bench_port host_port < <(free_ports 3)
api_sock=$tmp/runtime/mooringd.sock
cat >"$tmp/config/mooringd.conf" <<EOF
[Daemon]
ApiSocket=$api_sock
EOF
cat >"$tmp/config/apps.d/host.conf" <<EOF
[App]
AppAddress=http://127.0.0.1:$echo_port
HttpPort=$host_port
HealthCheckPath=/healthz
HealthProbeInterval=100ms
EOF
cat >"$tmp/config/apps.d/bench.conf" <<EOF
[App]
HttpPort=$bench_port
EOF
types=$(python3 -c 'import json, sys; print(json.dumps({"entities": ["Bench"] + [f"R{i}" for i in range(1000)], "actorIdleTimeout": "1h", "remindersStoragePartitions": int(sys.argv[1])}))' "$partitions")

echo "== environment"
echo "host:        $(uname -srm), $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "load:        $(cut -d' ' -f1-3 /proc/loadavg) (the machine may be shared with other work)"
echo "mooringd:    $mooringd"
echo "app:         $echo_app, 127.0.0.1:$echo_port, hosts Bench and R0..R999 (reminder storage partitions: $partitions)"
echo

ECHO_APP_DAPR_CONFIG=$types "${srv_pin[@]}" "$echo_app" "$echo_port" </dev/null >"$tmp/echo-app.log" 2>&1 &
echo_pid=$!
for _ in $(seq 200); do [ "$(http_code "http://127.0.0.1:$echo_port/healthz")" = 200 ] && break; sleep 0.02; done

start_mooringd "$tmp/state"
for _ in $(seq 500); do
        curl -s --unix-socket "$api_sock" http://localhost/mooring/v1/actors 2>/dev/null |
                grep -q '"type":"R999","app":"host","active":0,"reminders":0,"idleTimeoutSec":3600,"reentrancy":false,"reminderState":"loaded"' && break
        check_mooringd_alive "start-up"
        sleep 0.05
done
curl -s --unix-socket "$api_sock" http://localhost/mooring/v1/actors | grep -q '"Bench"' ||
        { show_mooringd_log; die "the app's actor types were not hosted"; }

daemon_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$mooringd_pid/stat"; }
clk_tck=$(getconf CLK_TCK)

# ---------------------------------------------------------------- 1. method calls/s
body=$(head -c 1024 /dev/zero | tr '\0' 'a')
mk_lua() { # $1: path prefix before the id
        cat <<EOF
wrk.method = "PUT"
wrk.body = "$body"
wrk.headers["Content-Type"] = "application/octet-stream"
request = function()
        return wrk.format(nil, "$1" .. math.random(1000) .. "/method/echo")
end
EOF
}
mk_lua "/actors/Bench/" >"$tmp/direct.lua"
mk_lua "/v1.0/actors/Bench/" >"$tmp/mooringd.lua"
run_wrk() { # $1 name, $2 url, $3 lua -> requests/s on stdout
        "${cli_pin[@]}" wrk -t1 -c"$connections" -d"${duration}s" -s "$3" "$2" >"$tmp/wrk-$1.txt" 2>&1
        awk '/^Requests\/sec/ { print $2 }' "$tmp/wrk-$1.txt"
}
echo "== 1. actor method calls, 1 KiB PUT bodies over 1,000 actor ids, wrk -t1 -c$connections -d${duration}s"
direct_rps=$(run_wrk direct "http://127.0.0.1:$echo_port" "$tmp/direct.lua")
t0=$(daemon_cpu_ticks)
mooringd_rps=$(run_wrk mooringd "http://127.0.0.1:$bench_port" "$tmp/mooringd.lua")
t1=$(daemon_cpu_ticks)
reqs=$(awk '/requests in/ { print $1 }' "$tmp/wrk-mooringd.txt")
non2xx=$(awk '/Non-2xx/ { print $NF }' "$tmp/wrk-mooringd.txt")
echo "(a) direct to the app:    $direct_rps calls/s"
echo "(b) through mooringd:     $mooringd_rps calls/s (non-2xx: ${non2xx:-0})"
awk -v a="$direct_rps" -v b="$mooringd_rps" 'BEGIN { printf "ratio (b)/(a):            %.3f\n", b / a }'
awk -v t="$((t1 - t0))" -v hz="$clk_tck" -v n="$reqs" \
        'BEGIN { printf "mooringd CPU per call:    %.1f us (%d calls)\n", t / hz * 1e6 / n, n }'
echo

# ---------------------------------------------------------------- 2 and 3: python client on keep-alive connections
python3 - "$bench_port" "$api_sock" "$reminders" "$mooringd_pid" "$direct_rps" "$host_port" <<'EOF'
import http.client, json, socket, sys, threading, time

port, api_sock, n_rem, pid, direct_rps = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
host_port = int(sys.argv[6])  # reminders are managed by the app hosting the type, as in Dapr

def conn(p=None):
    return http.client.HTTPConnection("127.0.0.1", p or port, timeout=60)

def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))]

def call(c, path, body=b"x", method="PUT"):
    c.request(method, path, body=body)
    r = c.getresponse()
    r.read()
    return r.status

print("== 2. activation latency: 2,000 sequential calls, one keep-alive connection")
c = conn()
for i in range(200):
    call(c, "/v1.0/actors/Bench/warm/method/echo")
warm, new = [], []
for i in range(2000):
    t = time.perf_counter()
    assert call(c, "/v1.0/actors/Bench/warm/method/echo") == 200
    warm.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    assert call(c, f"/v1.0/actors/Bench/new-{i}/method/echo") == 200
    new.append((time.perf_counter() - t) * 1000)
print(f"active actor (reference): p50 {pct(warm, .5):.3f} ms  p90 {pct(warm, .9):.3f} ms  p99 {pct(warm, .99):.3f} ms")
print(f"new actor ids:            p50 {pct(new, .5):.3f} ms  p90 {pct(new, .9):.3f} ms  p99 {pct(new, .99):.3f} ms"
      "   (Dapr v1.0 published p90 3 ms, p99 6.2 ms with two sidecars)")
print()

def rss_kb():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

def written():
    # bytes the daemon (all its threads: the store's writer too) had sent to storage
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])

def ticks():
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    return int(v[11]) + int(v[12])

class UC(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("localhost", timeout=60)
    def connect(self):
        s = socket.socket(socket.AF_UNIX)
        s.connect(api_sock)
        self.sock = s

def remaining():
    c = UC()
    c.request("GET", "/mooring/v1/actors")
    t = json.loads(c.getresponse().read())
    c.close()
    return sum(x["reminders"] for x in t if x["type"].startswith("R"))

print(f"== 3. {n_rem} one-shot reminders over 1,000 types x {max(1, n_rem // 1000)} actors, all due at one moment")
rss0 = rss_kb()
reg_c0, reg_w0 = ticks(), written()
start = time.time()
due_at = None
errors = []
threads = 16
lead = max(20.0, n_rem / 800.0)  # enough time to register them all first
due_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + lead))
def register(k):
    c = conn(host_port)
    body = json.dumps({"dueTime": due_at, "data": {"n": 1}}).encode()
    for i in range(k, n_rem, threads):
        try:
            st = call(c, f"/v1.0/actors/R{i % 1000}/a{i // 1000}/reminders/r{i}", body, "PUT")
        except Exception as e:
            errors.append(str(e)); c = conn(host_port); continue
        if st != 204:
            errors.append(st)
ts = [threading.Thread(target=register, args=(k,)) for k in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
reg_s = time.time() - start
reg_cpu, reg_w = (ticks() - reg_c0) / 100.0, written() - reg_w0
print(f"registered:  {n_rem - len(errors)} in {reg_s:.1f} s ({(n_rem - len(errors)) / reg_s:.0f}/s through HTTP, {threads} clients"
      f" each waiting for its commit), errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
print(f"mooringd CPU while registering: {reg_cpu:.2f} s = {reg_cpu / max(1, n_rem) * 1e6:.1f} us per registration;"
      f" written to storage {reg_w / 2**20:.0f} MiB = {reg_w / max(1, n_rem) / 1024:.1f} KiB per registration")
if errors:
    sys.exit(1)
left = remaining()
print(f"stored:      {left} reminders; mooringd RSS {rss_kb() / 1024:.1f} MiB (was {rss0 / 1024:.1f} MiB before registering)")
due_epoch = time.mktime(time.strptime(due_at, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
if time.time() > due_epoch:
    print("warning: registration took longer than the lead time; the rate below includes registration")
while time.time() < due_epoch:
    time.sleep(0.05)
t0, c0, w0 = time.time(), ticks(), written()
while True:
    left = remaining()
    if left == 0 or time.time() - t0 > 600:
        break
    time.sleep(0.05)
el = time.time() - t0
cpu = (ticks() - c0) / 100.0
time.sleep(1)  # the last removals are committed
wr = written() - w0
print(f"fired:       {n_rem - left} in {el:.2f} s = {(n_rem - left) / el:.0f} reminders/s"
      f"   (Dapr 1.17 published 15.5k/s; target >= 50k/s)")
print(f"reference:   the app alone took {direct_rps:.0f} calls/s from wrk in round 1; ratio {((n_rem - left) / el) / direct_rps:.3f}")
print(f"mooringd CPU while firing: {cpu:.2f} s = {cpu / max(1, n_rem - left) * 1e6:.1f} us per reminder; RSS {rss_kb() / 1024:.1f} MiB;"
      f" written to storage {wr / 2**20:.0f} MiB = {wr / max(1, n_rem - left) / 1024:.1f} KiB per reminder")
EOF
echo
stop_mooringd
print_daemon_problems
