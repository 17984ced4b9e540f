#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# bench/multihost.sh - mooring past one host, on one machine. Hosts are network
# namespaces joined by veth pairs on a bridge, inside a namespace of the
# script's own (it re-runs itself under `unshare --net`; root needed); they
# share a Redis for membership, and talk mutual TLS with certificates from
# `mooringctl ca`. In one run, with the same 1 KiB POST echo (bench/echo-app.c)
# running on host 2 and the load (wrk) on host 1:
#   (a) the app on host 2 called directly across the link,
#   (b) through mooringd: POST /v1.0/invoke/echo/method/echo on host 1's
#       mooringd (the caller's HttpPort), over mTLS to host 2's mooringd, to
#       the app,
#   (c) through nginx the same way: nginx on host 1 (plain HTTP in, HTTPS with
#       a client certificate out, upstream keep-alive) to nginx on host 2
#       (HTTPS in, client certificates verified, upstream keep-alive) to the
#       app; one worker each, as mooringd is one event loop;
# then actor method calls/s from host 1 to actors whose owner is host 2 (host
# 1 does not host the type), and the failover time after SIGKILL: with host 3
# up as well, an actor is activated, the daemon that owns it is killed, and
# host 1 calls it every 20 ms until another host answers (p50 and max over
# --tries tries; each try restarts the killed daemon first).
#
# Prints requests/s with the ratios (b)/(a) and (c)/(a), and the CPU the two
# proxies used per request (both hosts' mooringd, resp. both nginx).
#
# Usage: bench/multihost.sh [--mooringd PATH] [--mooringctl PATH] [--duration SEC]
#                           [--connections N] [--tries N] [--lease SEC] [--keep]

set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
# shellcheck source=bench/lib.sh
. "$script_dir/lib.sh"

mooringd=${MOORINGD:-$repo_root/build/daemon/mooringd}
mooringctl=${MOORINGCTL:-}
duration=10
connections=50
tries=10
lease=5
keep=0
ready_timeout=20
stop_timeout=15

usage() {
        cat <<EOF
usage: bench/multihost.sh [--mooringd PATH] [--mooringctl PATH] [--duration SEC] [--connections N]
                          [--tries N] [--lease SEC] [--keep]
  --mooringd PATH    daemon binary (default: \$MOORINGD or build/daemon/mooringd)
  --mooringctl PATH  mooringctl (default: next to the daemon's build dir)
  --duration SEC     length of each wrk run (default: 10)
  --connections N    wrk connections, one thread (default: 50)
  --tries N          failover tries (default: 10)
  --lease SEC        [Cluster] LeaseSec= of every host (default: 5, the daemon's default)
  --keep             keep the temporary directory
Needs root (network namespaces), iproute2, redis-server, nginx, wrk.
EOF
}

while [ $# -gt 0 ]; do
        case $1 in
        --mooringd) mooringd=$2; shift 2 ;;
        --mooringctl) mooringctl=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        --tries) tries=$2; shift 2 ;;
        --lease) lease=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
        esac
done

if [ "${MOORING_BENCH_OWN_NETNS:-}" != 1 ]; then
        [ "$(id -u)" -eq 0 ] || die "needs root: the hosts are network namespaces"
        require_tools unshare ip
        exec env MOORING_BENCH_OWN_NETNS=1 unshare --net -- bash "$0" --mooringd "$mooringd" \
                ${mooringctl:+--mooringctl "$mooringctl"} --duration "$duration" --connections "$connections" \
                --tries "$tries" --lease "$lease" $([ "$keep" -eq 1 ] && echo --keep)
fi

check_mooringd_binary
[ -n "$mooringctl" ] || mooringctl=$(cd "$(dirname "$mooringd")/.." && pwd)/clients/mooringctl
[ -x "$mooringctl" ] || die "mooringctl not found: $mooringctl (pass --mooringctl PATH)"
require_nginx_wrk
command -v redis-server >/dev/null 2>&1 || install_packages redis-server
require_tools ip curl python3

subnet=10.78.0
bridge_addr=$subnet.254
ns=()
pids=()         # every server started here, stopped by stop_servers
declare -A daemon_pid=()

stop_servers() {
        local p
        for p in "${daemon_pid[@]}" "${pids[@]}"; do
                kill -TERM "$p" 2>/dev/null || true
        done
        sleep 0.3
        for p in "${daemon_pid[@]}" "${pids[@]}"; do
                kill -KILL "$p" 2>/dev/null || true
        done
        for n in "${ns[@]}"; do
                ip netns del "$n" 2>/dev/null || true
        done
}

make_tmp mooring-multihost
echo_app=$(find_helper echo-app "")

in_ns() { local i=$1; shift; ip netns exec "${ns[$((i - 1))]}" "$@"; }
# the same, for a server started in the background: `ip netns exec` and env exec what they run, so
# $! is the server's own pid (a shell function run with & would be a subshell's)
ns_of() { echo "${ns[$(($1 - 1))]}"; }

# ---- the network ----
ip link set lo up
ip link add br-mh type bridge
ip addr add "$bridge_addr/24" dev br-mh
ip link set br-mh up
for i in 1 2 3; do
        n=mh$$h$i
        ip netns add "$n"
        ns+=("$n")
        ip link add "vh$i" type veth peer name eth0 netns "$n"
        ip -n "$n" link set lo up
        ip -n "$n" addr add "$subnet.$i/24" dev eth0
        ip -n "$n" link set eth0 up
        ip link set "vh$i" master br-mh
        ip link set "vh$i" up
done

# ---- Redis for membership ----
redis-server --port 6390 --bind "$bridge_addr" --save "" --appendonly no --protected-mode no \
        --dir "$tmp" >"$tmp/redis.log" 2>&1 &
pids+=($!)

# ---- certificates ----
pki=$tmp/pki
"$mooringctl" ca init --dir "$pki" --trust-domain public >/dev/null
for i in 1 2 3; do
        "$mooringctl" ca issue "h$i" --dir "$pki" --out "$pki" --ip "$subnet.$i" >/dev/null
done

# ---- apps on hosts 2 and 3: the echo app (invocation) and an actor app (echo-app declaring Cart) ----
for i in 2 3; do
        BENCH_LISTEN_ADDRESS=0.0.0.0 ip netns exec "$(ns_of "$i")" "$echo_app" 7000 >"$tmp/echo$i.log" 2>&1 &
        pids+=($!)
        ECHO_APP_DAPR_CONFIG='{"entities":["Cart"],"actorIdleTimeout":"1h"}' ip netns exec "$(ns_of "$i")" \
                "$echo_app" 7001 >"$tmp/cart$i.log" 2>&1 &
        pids+=($!)
done

# ---- the daemons ----
write_host() {
        local i=$1 d
        d=$tmp/h$i
        mkdir -p "$d/config/apps.d" "$d/state" "$d/run"
        cat >"$d/config/mooringd.conf" <<EOF
[Daemon]
LogLevel=warning
[Cluster]
HostId=h$i
PeerListen=$subnet.$i:3510
Membership=redis
MembershipConnection=$bridge_addr:6390
LeaseSec=$lease
CertificateFile=$pki/h$i.crt
KeyFile=$pki/h$i.key
TrustRootFile=$pki/ca.crt
EOF
        if [ "$i" -eq 1 ]; then
                printf '[App]\nHttpPort=3500\n' >"$d/config/apps.d/bench.conf"
        else
                printf '[App]\nAppAddress=http://127.0.0.1:7000\n' >"$d/config/apps.d/echo.conf"
                printf '[App]\nAppAddress=http://127.0.0.1:7001\n' >"$d/config/apps.d/cart.conf"
                # the actor state store every host shares (reminders live there)
                mkdir -p "$d/config/components"
                cat >"$d/config/components/actorstore.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: actorstore
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: "$bridge_addr:6390"
  - name: actorStateStore
    value: "true"
EOF
        fi
}

start_host() {
        local i=$1 d
        d=$tmp/h$i
        ip netns exec "$(ns_of "$i")" env -u NOTIFY_SOCKET -u LISTEN_FDS -u LISTEN_PID -u LISTEN_FDNAMES "$mooringd" \
                --config-dir "$d/config" --state-dir "$d/state" --runtime-dir "$d/run" --bus=none \
                --log-level warning </dev/null >>"$d/mooringd.log" 2>&1 &
        daemon_pid[$i]=$!
}

# host i's view: "h1 h2 ..." of the hosts that serve app (from GET /mooring/v1/cluster on its admin socket)
serving() {
        curl -s --unix-socket "$tmp/h$1/run/mooringd.sock" http://h/mooring/v1/cluster 2>/dev/null |
                python3 -c 'import json,sys
try: j = json.load(sys.stdin)
except Exception: sys.exit(0)
print(" ".join(sorted(h["id"] for h in j.get("hosts", []) if sys.argv[1] in h.get("apps", []))))' "$2"
}

wait_serving() {
        local i=$1 app=$2 want=$3 t0
        t0=$(now_ms)
        until [ "$(serving "$i" "$app")" = "$want" ]; do
                [ $(( $(now_ms) - t0 )) -lt $((ready_timeout * 1000)) ] ||
                        die "host $i never saw '$app' on '$want' (saw '$(serving "$i" "$app")'); logs in $tmp (--keep)"
                sleep 0.1
        done
}

for i in 1 2 3; do write_host "$i"; done
start_host 1
start_host 2
wait_serving 1 echo "h2"
wait_serving 1 cart "h2"

# ---- nginx pair with mutual TLS between them ----
mkdir -p "$tmp/nginx-1" "$tmp/nginx-2"
for k in 1 2; do
        temp=""
        for m in client_body proxy fastcgi uwsgi scgi; do temp+="${m}_temp_path $tmp/nginx-$k/$m; "; done
        eval "temp$k=\"\$temp\""
done
cat >"$tmp/nginx-1/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $tmp/nginx-1/nginx.pid;
error_log $tmp/nginx-1/error.log warn;
events { worker_connections 4096; }
http {
        access_log off;
        $temp1
        upstream h2 { server $subnet.2:8443; keepalive 64; }
        server {
                listen 127.0.0.1:8080;
                location / {
                        proxy_pass https://h2;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                        proxy_ssl_certificate $pki/h1.crt;
                        proxy_ssl_certificate_key $pki/h1.key;
                        proxy_ssl_trusted_certificate $pki/ca.crt;
                        proxy_ssl_verify on;
                        proxy_ssl_name h2;
                        proxy_ssl_session_reuse on;
                }
        }
}
EOF
cat >"$tmp/nginx-2/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $tmp/nginx-2/nginx.pid;
error_log $tmp/nginx-2/error.log warn;
events { worker_connections 4096; }
http {
        access_log off;
        $temp2
        upstream app { server 127.0.0.1:7000; keepalive 64; }
        server {
                listen $subnet.2:8443 ssl;
                ssl_certificate $pki/h2.crt;
                ssl_certificate_key $pki/h2.key;
                ssl_client_certificate $pki/ca.crt;
                ssl_verify_client on;
                location / {
                        proxy_pass http://app;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                }
        }
}
EOF
ip netns exec "$(ns_of 1)" "$nginx_bin" -c "$tmp/nginx-1/nginx.conf" >"$tmp/nginx-1/out.log" 2>&1 &
nginx1=$!
pids+=($nginx1)
ip netns exec "$(ns_of 2)" "$nginx_bin" -c "$tmp/nginx-2/nginx.conf" >"$tmp/nginx-2/out.log" 2>&1 &
nginx2=$!
pids+=($nginx2)

head -c 1024 /dev/zero | tr '\0' 'x' >"$tmp/body"
cat >"$tmp/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
local f = io.open(os.getenv("BODY_FILE"), "rb")
wrk.body = f:read("*a")
f:close()
EOF
cat >"$tmp/actors.lua" <<'EOF'
local n = 0
local f = io.open(os.getenv("BODY_FILE"), "rb")
local body = f:read("*a")
f:close()
request = function()
        n = n % 1000 + 1
        return wrk.format("PUT", "/v1.0/actors/Cart/a" .. n .. "/method/echo",
                          { ["Content-Type"] = "application/octet-stream" }, body)
end
EOF

# the answer to one POST must be the body: check each path before loading it
check_path() {
        local url=$1 got
        got=$(in_ns 1 curl -s -X POST --data-binary @"$tmp/body" -H 'Content-Type: application/octet-stream' "$url" | wc -c)
        [ "$got" -eq 1024 ] || die "$url answered $got bytes, not the 1,024 sent; logs in $tmp (--keep)"
}
check_path "http://$subnet.2:7000/echo"
check_path "http://127.0.0.1:3500/v1.0/invoke/echo/method/echo"
t0=$(now_ms)
until in_ns 1 curl -s -o /dev/null "http://127.0.0.1:8080/x" 2>/dev/null; do
        [ $(( $(now_ms) - t0 )) -lt 10000 ] || die "nginx did not start; see $tmp/nginx-*/"
        sleep 0.1
done
check_path "http://127.0.0.1:8080/echo"

# cpu_ticks PID...: utime+stime of those processes
cpu_ticks() {
        local s=0 p
        for p in "$@"; do
                s=$(( s + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat") ))
        done
        echo "$s"
}

# load NAME URL SCRIPT PIDS...: wrk from host 1; prints "rps cpu_us_per_request"
load() {
        local name=$1 url=$2 script=$3 out c0 c1 rps
        shift 3
        c0=$(cpu_ticks "$@")
        out=$(BODY_FILE=$tmp/body in_ns 1 wrk -t1 -c"$connections" -d"${duration}s" -s "$script" "$url")
        c1=$(cpu_ticks "$@")
        rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
        if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
                warn "$name: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ')"
        fi
        awk -v r="$rps" -v c=$((c1 - c0)) -v hz="$clk_tck" -v d="$duration" \
                'BEGIN { printf "%.0f %.1f\n", r, (r > 0 ? c / hz * 1e6 / (r * d) : 0) }'
}

# the processes whose CPU is counted: mooringd, and the nginx masters with their workers
ng_pids=("$nginx1" "$nginx2" $(pgrep -P "$nginx1" || true) $(pgrep -P "$nginx2" || true))
md_pids=("${daemon_pid[1]}" "${daemon_pid[2]}")

echo "bench/multihost.sh: ${duration}s per run, ${connections} connections, 1 KiB POST echo, load on host 1, app on host 2"
echo "machine load before: $(cut -d' ' -f1-3 /proc/loadavg)"
read -r a_rps _ < <(load direct "http://$subnet.2:7000/echo" "$tmp/post.lua")
read -r b_rps b_cpu < <(load mooringd "http://127.0.0.1:3500/v1.0/invoke/echo/method/echo" "$tmp/post.lua" "${md_pids[@]}")
read -r c_rps c_cpu < <(load nginx "http://127.0.0.1:8080/echo" "$tmp/post.lua" "${ng_pids[@]}")
read -r d_rps d_cpu < <(load actors "http://127.0.0.1:3500" "$tmp/actors.lua" "${md_pids[@]}")

printf '\n%-44s %10s %8s %22s\n' "path" "req/s" "ratio" "proxy CPU per request"
printf '%-44s %10s %8s %22s\n' "(a) app on host 2, directly" "$a_rps" "1.00" "-"
printf '%-44s %10s %8.2f %19s us\n' "(b) mooringd h1 -> mTLS -> mooringd h2" "$b_rps" "$(awk -v b="$b_rps" -v a="$a_rps" 'BEGIN{print b/a}')" "$b_cpu"
printf '%-44s %10s %8.2f %19s us\n' "(c) nginx h1 -> mTLS -> nginx h2" "$c_rps" "$(awk -v b="$c_rps" -v a="$a_rps" 'BEGIN{print b/a}')" "$c_cpu"
printf '%-44s %10s %8s %19s us\n' "actor calls, owner on host 2 (1,000 actors)" "$d_rps" "-" "$d_cpu"
echo "(proxy CPU: both hosts' mooringd, resp. both nginx, user+system per request)"

# ---- failover ----
stop_pid "$nginx1" nginx 5 >/dev/null 2>&1 || true
stop_pid "$nginx2" nginx 5 >/dev/null 2>&1 || true
start_host 3
wait_serving 1 cart "h2 h3"

# active Cart actors on host i (its app's metadata)
active_on() {
        curl -s --unix-socket "$tmp/h$1/run/apps/cart/http.sock" http://h/v1.0/metadata 2>/dev/null |
                python3 -c 'import json,sys
try: j = json.load(sys.stdin)
except Exception: print(0); sys.exit(0)
print(sum(a.get("count", 0) for a in (j.get("actorRuntime") or {}).get("activeActors", []) if a.get("type") == "Cart"))'
}

call_actor() { in_ns 1 curl -s -o /dev/null -w '%{http_code}' -m 2 -X PUT "http://127.0.0.1:3500/v1.0/actors/Cart/$1/method/echo"; }

times_ms=()
for k in $(seq 1 "$tries"); do
        id=fo-$$-$k
        before2=$(active_on 2)
        before3=$(active_on 3)
        [ "$(call_actor "$id")" = 200 ] || die "failover try $k: the first call to Cart/$id failed"
        if [ "$(active_on 2)" -gt "$before2" ]; then owner=2; elif [ "$(active_on 3)" -gt "$before3" ]; then owner=3; else
                die "failover try $k: no host shows Cart/$id active ($before2 -> $(active_on 2), $before3 -> $(active_on 3)): $(curl -s --unix-socket "$tmp/h2/run/apps/cart/http.sock" http://h/v1.0/metadata | head -c 400)"
        fi
        kill -KILL "${daemon_pid[$owner]}" 2>/dev/null || true
        t0=$(now_ms)
        until [ "$(call_actor "$id")" = 200 ]; do
                [ $(( $(now_ms) - t0 )) -lt $(( (lease + 20) * 1000 )) ] || die "failover try $k: Cart/$id never answered again"
                sleep 0.02
        done
        times_ms+=($(( $(now_ms) - t0 )))
        { wait "${daemon_pid[$owner]}" || true; } 2>/dev/null # bash reports the kill on its own stderr
        start_host "$owner"
        wait_serving 1 cart "h2 h3"
done
printf '%s\n' "${times_ms[@]}" | sort -n >"$tmp/failover"
p50=$(awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }' "$tmp/failover")
max=$(tail -1 "$tmp/failover")
echo
echo "actor failover after SIGKILL of its owner (LeaseSec=$lease, $tries tries): p50 ${p50} ms, max ${max} ms"
echo "machine load after: $(cut -d' ' -f1-3 /proc/loadavg)"
