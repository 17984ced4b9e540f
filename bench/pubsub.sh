#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# bench/pubsub.sh - Dapr pub/sub through mooringd, publish -> deliver, for
# each broker: pubsub.sqlite (the embedded default, durable), pubsub.redis
# (Redis Streams), pubsub.mqtt3 (mosquitto) and pubsub.in-memory.  A
# publishing app POSTs 1 KiB JSON messages to /v1.0/publish on its HttpPort
# (bench/pubsub-pub.c); mooringd delivers them to a subscribing app
# (bench/pubsub-sub.c), which records the end-to-end latency of each.
# Measures publish and deliver throughput (msgs/s) and the p50/p99
# end-to-end latency at full load (closed loop, twice) and at half of the
# delivered peak rate (open loop); for Redis, against redis-benchmark XADD
# on the same redis-server in the same run (ratio).
#
# Usage: bench/pubsub.sh [--mooringd PATH] [--messages M] [--connections C]
#                        [--brokers LIST] [--latency-seconds S] [--rate R]
#                        [--drain S] [--strace] [--callgrind N] [--pubsub-pub PATH]
#                        [--pubsub-sub PATH] [--keep]
#
# Everything runs on 127.0.0.1 and Unix sockets under a temporary directory;
# every process started here is stopped by PID on exit (including on failure
# or Ctrl-C) and the temporary directory removed (unless --keep).  See
# bench/README.md for what the numbers mean.

set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
# shellcheck source=bench/lib.sh
. "$script_dir/lib.sh"

mooringd=${MOORINGD:-$repo_root/build/daemon/mooringd}
pubsub_pub=${PUBSUB_PUB:-}
pubsub_sub=${PUBSUB_SUB:-}
messages=50000
connections=64
brokers=sqlite,redis,mqtt3,in-memory
latency_seconds=10      # length of the half-rate round (fewer messages than M if shorter)
rate=                   # half-rate round: msgs/s; empty = half of the broker's best deliver rate
drain=60                # seconds to wait for the deliveries after the last publish answer
use_strace=0
keep=0
msg_size=1024           # bytes of every published body
strace_messages=10000   # messages in the sqlite run under strace
cg_messages=0           # messages per broker in an extra run under callgrind (0: none)
ready_timeout=10        # seconds to wait for a server to answer
active_timeout=30       # seconds to wait for the subscription to deliver a warm-up message
stop_timeout=15         # seconds to wait for mooringd after SIGTERM
max_seconds=120         # seconds at most of publishing per run (pubsub-pub --max-seconds)
target_embedded=30000   # msgs/s (issue 9), pubsub.sqlite with durability on, 1 KiB messages

usage() {
        cat <<EOF
usage: bench/pubsub.sh [--mooringd PATH] [--messages M] [--connections C] [--brokers LIST]
                       [--latency-seconds S] [--rate R] [--drain S] [--strace] [--callgrind N]
                       [--pubsub-pub PATH] [--pubsub-sub PATH] [--keep]
  --mooringd PATH       daemon binary (default: \$MOORINGD or build/daemon/mooringd)
  --messages M          messages per peak run, and redis-benchmark -n (default: 50000)
  --connections C       publisher keep-alive connections, and redis-benchmark -c (default: 64)
  --brokers LIST        comma-separated, in this order (default: sqlite,redis,mqtt3,in-memory)
  --latency-seconds S   length of the half-rate round (default: 10; at most M messages)
  --rate R              half-rate round at R msgs/s for every broker (default: half of
                        each broker's best deliver msgs/s)
  --drain S             wait at most S seconds for deliveries after publishing (default: 60)
  --strace              pubsub.sqlite: count fsync/fdatasync per message in an extra run
                        of min(M, $strace_messages) messages under strace -f -c (not a throughput figure)
  --callgrind N         every broker: one more run of N messages with mooringd under valgrind
                        --tool=callgrind, counting instructions per message published and
                        delivered for each thread (exact, whatever else loads the machine)
  --pubsub-pub PATH     publisher (default: \$PUBSUB_PUB, else bench/pubsub-pub next to the
                        daemon's build dir, else compiled from bench/pubsub-pub.c)
  --pubsub-sub PATH     subscribing app (default: \$PUBSUB_SUB, else bench/pubsub-sub next to
                        the daemon's build dir, else compiled from bench/pubsub-sub.c)
  --keep                keep the temporary directory (configs, logs, raw outputs)
EOF
}

while [ $# -gt 0 ]; do
        case $1 in
        --mooringd) [ $# -ge 2 ] || die "--mooringd needs a value"; mooringd=$2; shift 2 ;;
        --mooringd=*) mooringd=${1#*=}; shift ;;
        --messages) [ $# -ge 2 ] || die "--messages needs a value"; messages=$2; shift 2 ;;
        --messages=*) messages=${1#*=}; shift ;;
        --connections) [ $# -ge 2 ] || die "--connections needs a value"; connections=$2; shift 2 ;;
        --connections=*) connections=${1#*=}; shift ;;
        --brokers) [ $# -ge 2 ] || die "--brokers needs a value"; brokers=$2; shift 2 ;;
        --brokers=*) brokers=${1#*=}; shift ;;
        --latency-seconds) [ $# -ge 2 ] || die "--latency-seconds needs a value"; latency_seconds=$2; shift 2 ;;
        --latency-seconds=*) latency_seconds=${1#*=}; shift ;;
        --rate) [ $# -ge 2 ] || die "--rate needs a value"; rate=$2; shift 2 ;;
        --rate=*) rate=${1#*=}; shift ;;
        --drain) [ $# -ge 2 ] || die "--drain needs a value"; drain=$2; shift 2 ;;
        --drain=*) drain=${1#*=}; shift ;;
        --strace) use_strace=1; shift ;;
        --callgrind) [ $# -ge 2 ] || die "--callgrind needs a value"; cg_messages=$2; shift 2 ;;
        --callgrind=*) cg_messages=${1#*=}; shift ;;
        --pubsub-pub) [ $# -ge 2 ] || die "--pubsub-pub needs a value"; pubsub_pub=$2; shift 2 ;;
        --pubsub-pub=*) pubsub_pub=${1#*=}; shift ;;
        --pubsub-sub) [ $# -ge 2 ] || die "--pubsub-sub needs a value"; pubsub_sub=$2; shift 2 ;;
        --pubsub-sub=*) pubsub_sub=${1#*=}; shift ;;
        --keep) keep=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
        esac
done

[[ $messages =~ ^[1-9][0-9]*$ ]] || die "--messages must be a positive integer"
[[ $connections =~ ^[1-9][0-9]*$ ]] || die "--connections must be a positive integer"
[[ $latency_seconds =~ ^[1-9][0-9]*$ ]] || die "--latency-seconds must be a positive integer"
[ -z "$rate" ] || [[ $rate =~ ^[1-9][0-9]*$ ]] || die "--rate must be a positive integer (msgs/s)"
[[ $drain =~ ^[1-9][0-9]*$ ]] || die "--drain must be a positive integer (seconds)"
[[ $cg_messages =~ ^[0-9]+$ ]] || die "--callgrind must be a number of messages"
IFS=, read -r -a broker_list <<<"$brokers"
[ ${#broker_list[@]} -gt 0 ] || die "--brokers is empty"
for b in "${broker_list[@]}"; do
        case $b in sqlite|redis|mqtt3|in-memory) ;; *) die "unknown broker '$b' (expected sqlite, redis, mqtt3, in-memory)" ;; esac
done
has_broker() { [[ ",$brokers," == *",$1,"* ]]; }

# ---------------------------------------------------------------- tools

need_install=()
if has_broker redis; then
        command -v redis-server >/dev/null 2>&1 || need_install+=(redis-server)
        { command -v redis-benchmark >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; } || need_install+=(redis-tools)
fi
if has_broker mqtt3; then
        command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_install+=(mosquitto)
fi
if [ "$use_strace" -eq 1 ]; then
        command -v strace >/dev/null 2>&1 || need_install+=(strace)
fi
if [ "$cg_messages" -gt 0 ]; then
        { command -v valgrind >/dev/null 2>&1 && command -v callgrind_control >/dev/null 2>&1; } || need_install+=(valgrind)
fi
install_packages "${need_install[@]}"
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
require_tools curl python3 timeout awk

check_mooringd_binary

# ---------------------------------------------------------------- state & cleanup

redis_pid=
mosquitto_pid=
sub_pid=
strace_pid=

# called by cleanup (bench/lib.sh) once the client and mooringd are stopped
stop_servers() {
        if [ -n "$strace_pid" ]; then
                stop_pid "$strace_pid" strace 5 >/dev/null 2>&1
                strace_pid=
        fi
        if [ -n "$sub_pid" ]; then
                stop_pid "$sub_pid" pubsub-sub 5 >/dev/null 2>&1
                sub_pid=
        fi
        if [ -n "$redis_pid" ]; then
                stop_pid "$redis_pid" redis-server 5 >/dev/null 2>&1
                redis_pid=
        fi
        if [ -n "$mosquitto_pid" ]; then
                stop_pid "$mosquitto_pid" mosquitto 5 >/dev/null 2>&1
                mosquitto_pid=
        fi
}
make_tmp mooring-pubsub-bench

# proc_ticks PID: user+system CPU ticks of a process (all its threads); 0 if none
proc_ticks() {
        [ -n "$1" ] || { echo 0; return; }
        awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# pct TICKS MS: CPU ticks over a wall-clock span as % of one core
pct() { awk -v t="$1" -v hz="$clk_tck" -v ms="$2" 'BEGIN { printf "%.0f", (ms > 0) ? t / hz / (ms / 1000) * 100 : 0 }'; }

max_other=0
note_other() { [ "$1" -le "$max_other" ] || max_other=$1; }

# kv KEY LINE: the value of KEY=value in a one-line key=value output
kv() { awk -v k="$1" '{ for (i = 1; i <= NF; i++) { n = index($i, "="); if (n && substr($i, 1, n - 1) == k) print substr($i, n + 1) } }' <<<"$2"; }

# ---------------------------------------------------------------- helpers (publisher, subscribing app)

pubsub_pub=$(find_helper pubsub-pub "$pubsub_pub")
pubsub_sub=$(find_helper pubsub-sub "$pubsub_sub")

# ---------------------------------------------------------------- setup

mkdir -p "$tmp/config/apps.d" "$tmp/config/components" "$tmp/runtime" "$tmp/out" "$tmp/redis" "$tmp/mosquitto"
read -r pub_port sub_port redis_port mqtt_port < <(free_ports 4)
api_sock=$tmp/runtime/mooringd.sock

# the publisher: its HttpPort is where pubsub-pub POSTs
cat >"$tmp/config/apps.d/pub.conf" <<EOF
[App]
HttpPort=$pub_port
EOF
# the subscriber: mooringd asks it GET /dapr/subscribe once its probe finds it healthy
cat >"$tmp/config/apps.d/sub.conf" <<EOF
[App]
AppAddress=http://127.0.0.1:$sub_port
HealthProbeInterval=100ms
EOF

# the redis-benchmark payload: $msg_size bytes, as the bodies pubsub-pub sends
awk -v n="$msg_size" 'BEGIN { s = ""; for (i = 0; i < n; i++) s = s "x"; printf "%s", s }' >"$tmp/payload.bin"

fs_of() { df -PT "$1" 2>/dev/null | awk 'NR == 2 { print $2 " (" $1 " on " $7 ")" }'; }

declare -A ps_name=([sqlite]=pubsub [redis]=redis-pubsub [mqtt3]=mqtt-pubsub [in-memory]=memory-pubsub)
declare -A ps_type=([sqlite]=pubsub.sqlite [redis]=pubsub.redis [mqtt3]=pubsub.mqtt3 [in-memory]=pubsub.in-memory)

echo "== environment"
echo "host:           $(uname -srm), $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "mooringd:       $mooringd ($("$mooringd" --version 2>/dev/null | head -1 || echo 'version unknown'))"
echo "publisher:      $pubsub_pub, one epoll thread, $connections keep-alive HTTP/1.1 connections to the app pub's HttpPort 127.0.0.1:$pub_port"
echo "subscriber:     $pubsub_sub, one epoll thread, app sub at 127.0.0.1:$sub_port (HealthProbeInterval=100ms), answers {\"status\":\"SUCCESS\"} at once"
echo "messages:       POST /v1.0/publish/<pubsub>/bench, Content-Type: application/json, $msg_size-byte body {\"run\",\"seq\",\"ts\",\"pad\"}; must answer 204"
echo "peak runs:      $messages messages, closed loop, twice per broker; half-rate run: ${latency_seconds}s open loop (at most $messages messages)"
if has_broker redis; then
        echo "redis-server:   $(redis-server --version | sed 's/^Redis server //'), 127.0.0.1:$redis_port, --save '' --appendonly no (durability is Redis's own: none here)"
        echo "redis-benchmark: $(redis-benchmark --version 2>/dev/null | head -1 || echo '?'), -c $connections -n $messages -x XADD benchstream '*' data <$msg_size bytes> (one thread, one request in flight per connection)"
fi
if has_broker mqtt3; then
        echo "mosquitto:      $("$mosquitto_bin" -h 2>&1 | awk 'NR == 1 { print $3; exit }'), 127.0.0.1:$mqtt_port, persistence false, max_queued_messages 1000000, other settings default"
fi
echo "state dir fs:   $(fs_of "$tmp")"
echo "temp dir:       $tmp"
echo

# ---------------------------------------------------------------- broker servers

rcli() { redis-cli -h 127.0.0.1 -p "$redis_port" "$@"; }

start_redis() {
        redis-server --port "$redis_port" --bind 127.0.0.1 --protected-mode yes --save '' --appendonly no \
                --dir "$tmp/redis" --logfile "$tmp/redis/redis.log" --daemonize no </dev/null >/dev/null 2>&1 &
        redis_pid=$!
        local t0
        t0=$(now_ms)
        until [ "$(rcli ping 2>/dev/null || true)" = PONG ]; do
                if ! proc_alive "$redis_pid"; then cat "$tmp/redis/redis.log" >&2 2>/dev/null; die "redis-server exited at startup"; fi
                [ $(( $(now_ms) - t0 )) -lt $((ready_timeout * 1000)) ] || die "redis-server did not answer PING within ${ready_timeout}s"
                sleep 0.02
        done
}

# tcp_open PORT: something accepts connections on 127.0.0.1:PORT
tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_mosquitto() {
        cat >"$tmp/mosquitto/mosquitto.conf" <<EOF
listener $mqtt_port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000000
log_dest stderr
log_type error
log_type warning
EOF
        "$mosquitto_bin" -c "$tmp/mosquitto/mosquitto.conf" </dev/null >"$tmp/mosquitto/mosquitto.log" 2>&1 &
        mosquitto_pid=$!
        local t0
        t0=$(now_ms)
        until tcp_open "$mqtt_port"; do
                if ! proc_alive "$mosquitto_pid"; then cat "$tmp/mosquitto/mosquitto.log" >&2; die "mosquitto exited at startup"; fi
                [ $(( $(now_ms) - t0 )) -lt $((ready_timeout * 1000)) ] || die "mosquitto did not accept connections within ${ready_timeout}s"
                sleep 0.02
        done
}

has_broker redis && start_redis
has_broker mqtt3 && start_mosquitto

# ---------------------------------------------------------------- the subscribing app

start_sub() {
        "$pubsub_sub" "$sub_port" "$1" </dev/null >"$tmp/out/pubsub-sub-$2.log" 2>&1 &
        sub_pid=$!
        local t0 code
        t0=$(now_ms)
        while :; do
                code=$(http_code "http://127.0.0.1:$sub_port/")
                [ "$code" = 200 ] && return 0
                if ! proc_alive "$sub_pid"; then cat "$tmp/out/pubsub-sub-$2.log" >&2; die "pubsub-sub exited at startup"; fi
                [ $(( $(now_ms) - t0 )) -lt $((ready_timeout * 1000)) ] || die "pubsub-sub did not answer within ${ready_timeout}s"
                sleep 0.02
        done
}

stop_sub() {
        stop_pid "$sub_pid" pubsub-sub 5 >/dev/null 2>&1 || true
        sub_pid=
}

# sub_ctl METHOD PATH [MAX_TIME]: the subscriber's control answer (a stats line)
sub_ctl() {
        curl -s --max-time "${3:-5}" -X "$1" "http://127.0.0.1:$sub_port$2" 2>/dev/null || true
}

# ---------------------------------------------------------------- runs

declare -A best_pub best_pub50 best_pub99 best_del best_e50 best_e99 all_pub all_del
declare -A half_rate half_del half_e50 half_e99 half_max half_late
declare -A status_of fsync_note cg_note
declare -A wait_unique wait_dups            # per run id: what the wait saw (for late arrivals)
notes=()
bad_runs=0
run_id=0
run_no=0
cur_label=

# the previous run's final stats, from the answer of /control/start: late copies
check_late() {
        local prev=$1 id u d
        id=$(kv run "$prev")
        [ -n "$id" ] && [ "$id" -gt 0 ] 2>/dev/null || return 0
        [ -n "${wait_unique[$id]:-}" ] || return 0
        u=$(kv unique "$prev"); d=$(kv duplicates "$prev")
        if [ "$u" -gt "${wait_unique[$id]}" ]; then
                notes+=("run id $id: $((u - wait_unique[$id])) more messages arrived after the wait ended")
        fi
        if [ "$d" -gt "${wait_dups[$id]}" ]; then
                notes+=("run id $id: $((d - wait_dups[$id])) more duplicates arrived after the wait ended")
        fi
}

# measure_start / measure_end: CPU of mooringd, the subscriber, the broker
# server (redis-server or mosquitto), the clients (this shell's children
# reaped in between) and the rest of the machine
broker_pid=
measure_start() {
        m_b0=$(busy_ticks); m_m0=$(proc_ticks "$mooringd_pid"); m_s0=$(proc_ticks "$sub_pid")
        m_r0=$(proc_ticks "$broker_pid"); m_t0=$(now_ms)
        children_cpu_s >"$tmp/c0.txt"; m_c0=$(<"$tmp/c0.txt")
}
measure_end() {
        local b1 m1 s1 r1 t1 c1 ms
        children_cpu_s >"$tmp/c1.txt"; c1=$(<"$tmp/c1.txt")
        b1=$(busy_ticks); m1=$(proc_ticks "$mooringd_pid"); s1=$(proc_ticks "$sub_pid"); r1=$(proc_ticks "$broker_pid"); t1=$(now_ms)
        ms=$((t1 - m_t0))
        m_mcpu=$(pct $((m1 - m_m0)) "$ms")
        m_scpu=$(pct $((s1 - m_s0)) "$ms")
        m_rcpu=-
        [ -z "$broker_pid" ] || m_rcpu=$(pct $((r1 - m_r0)) "$ms")
        m_ccpu=$(awk -v a="$m_c0" -v b="$c1" -v ms="$ms" 'BEGIN { printf "%.0f", (b - a) / (ms / 1000) * 100 }')
        m_other=$(awk -v b=$((b1 - m_b0)) -v s=$((m1 - m_m0 + s1 - m_s0 + r1 - m_r0)) -v hz="$clk_tck" -v a="$m_c0" -v c="$c1" -v ms="$ms" \
                'BEGIN { o = (b - s) / hz - (c - a); if (o < 0) o = 0; printf "%.0f", (ms > 0) ? o / (ms / 1000) * 100 : 0 }')
        note_other "$m_other"
}

# run_round KEY KIND COUNT [RATE]: publish COUNT messages (KIND peak: closed
# loop; half: open loop at RATE; strace: closed loop, not kept), wait for
# their delivery, print one line and keep the figures
run_round() {
        local key=$1 kind=$2 count=$3 r=${4:-0} out err rc=0 pline sline prev
        local sent ok prps p50 p99 s50 s99 bad errs recon late lag tmo uniq dups stray badb del e50 e90 e99 emax gap maxc lost note="" cmds=""
        run_no=$((run_no + 1))
        run_id=$((run_id + 1))
        out=$tmp/out/pub-$run_no-$key-$kind.txt
        err=$tmp/out/pub-$run_no-$key-$kind.err
        prev=$(sub_ctl POST "/control/start?run=$run_id&count=$count")
        [ -n "$prev" ] || die "the subscribing app did not answer /control/start"
        check_late "$prev"
        [ "$key" != redis ] || rcli config resetstat >/dev/null
        local rate_args=()
        [ "$kind" != half ] || rate_args=(--rate "$r")
        measure_start
        timeout $((max_seconds + 30)) "$pubsub_pub" --tcp "127.0.0.1:$pub_port" --pubsub "${ps_name[$key]}" \
                --run "$run_id" --count "$count" --connections "$connections" --size "$msg_size" \
                --max-seconds "$max_seconds" "${rate_args[@]}" </dev/null >"$out" 2>"$err" &
        client_pid=$!
        wait "$client_pid" || rc=$?
        client_pid=
        pline=$(head -n 1 "$out")
        if [ -z "$pline" ]; then
                cat "$err" >&2
                check_mooringd_alive "$cur_label run $run_no"
                die "pubsub-pub printed nothing (status $rc)"
        fi
        ok=$(kv ok "$pline")
        # nothing can arrive that was not accepted: do not wait for it
        local wait_ms=$((drain * 1000))
        [ "$ok" -gt 0 ] || wait_ms=2000
        sline=$(sub_ctl GET "/control/wait?timeout_ms=$wait_ms" $((drain + 10)))
        measure_end
        [ -n "$sline" ] || die "the subscribing app did not answer /control/wait"
        wait_unique[$run_id]=$(kv unique "$sline"); wait_dups[$run_id]=$(kv duplicates "$sline")

        sent=$(kv sent "$pline"); prps=$(kv pub_rps "$pline"); p50=$(kv p50_ms "$pline"); p99=$(kv p99_ms "$pline")
        bad=$(kv bad_status "$pline"); errs=$(kv errors "$pline"); recon=$(kv reconnects "$pline")
        late=$(kv late_1ms "$pline"); lag=$(kv max_lag_ms "$pline"); tmo=$(kv timed_out "$pline")
        s50=$(kv svc_p50_ms "$pline"); s99=$(kv svc_p99_ms "$pline")
        uniq=$(kv unique "$sline"); dups=$(kv duplicates "$sline"); stray=$(kv stray "$sline"); badb=$(kv bad "$sline")
        del=$(kv deliver_rps "$sline"); e50=$(kv p50_ms "$sline"); e90=$(kv p90_ms "$sline"); e99=$(kv p99_ms "$sline")
        emax=$(kv max_ms "$sline"); gap=$(kv max_gap_ms "$sline"); maxc=$(kv delivery_conns "$sline")

        if [ "$ok" != "$count" ]; then
                note+="  PUBLISH: ok $ok/$count (sent $sent, bad status $bad, socket errors $errs, reconnects $recon, timed out $tmo)"
                daemon_problems+=("$cur_label run $run_no ($kind): publish ok $ok/$count (bad status $bad, socket errors $errs, timed out $tmo)")
                sed 's/^/    /' "$err"
        elif [ "$recon" != 0 ]; then
                note+="  reconnects $recon (the daemon closed keep-alive connections)"
        fi
        lost=$((ok - uniq))
        if [ "$uniq" -lt "$count" ]; then
                note+="  DELIVERED: $uniq/$count within ${drain}s"
                if [ "$lost" -gt 0 ]; then
                        daemon_problems+=("$cur_label run $run_no ($kind): $lost messages answered 204 but not delivered within ${drain}s (delivered $uniq of $count)")
                fi
        fi
        if [ "$ok" != "$count" ] || [ "$uniq" -lt "$count" ] || [ "$badb" != 0 ]; then
                bad_runs=$((bad_runs + 1))
        fi
        if [ "$dups" != 0 ]; then
                note+="  duplicates $dups"
                notes+=("$cur_label run $run_no ($kind): $dups duplicate deliveries")
        fi
        [ "$badb" = 0 ] || { note+="  unparseable deliveries $badb"; daemon_problems+=("$cur_label run $run_no: $badb deliveries without run/seq/ts in the body"); }
        [ "$stray" = 0 ] || note+="  stray $stray (warm-up or earlier runs)"
        if awk -v g="$gap" 'BEGIN { exit !(g >= 1000) }'; then
                notes+=("$cur_label run $run_no ($kind): no delivery for $gap ms at some point (stall)")
        fi
        if [ "$kind" = half ]; then
                note+="  publish from write: p50 $s50 p99 $s99 ms"
                [ "$late" = 0 ] || note+="  published >1 ms late: $late (max $lag ms)"
        fi
        if [ "$key" = redis ] && [ "$kind" != strace ]; then
                # what the daemon sent redis per message, and over how many connections
                cmds=$(rcli info commandstats | tr -d '\r' | awk -F'[:,=]' -v n="$count" \
                        '/^cmdstat_/ && $1 !~ /^cmdstat_(info|config|ping|flushall|del)/ { sub(/^cmdstat_/, "", $1); if (n > 0) printf "%s%s=%.2f", sep, $1, $3 / n; sep = " " }')
                note+="  redis commands/msg: ${cmds:-none}, redis clients: $(rcli info clients | tr -d '\r' | awk -F: '$1 == "connected_clients" { print $2 - 1 }')"
        fi

        local what=$kind
        [ "$kind" != half ] || what="@$r/s"
        printf 'run %2d  %-9s %-8s publish %9.1f msgs/s (p50 %7.3f p99 %8.3f ms)  deliver %9.1f msgs/s  e2e p50 %8.3f p90 %8.3f p99 %8.3f max %8.3f ms  max gap %7.1f ms  delivery conns %s  CPU mooringd %3s%% sub %3s%% broker %3s%% clients %3s%% other %3s%%%s\n' \
                "$run_no" "$key" "$what" "$prps" "$p50" "$p99" "$del" "$e50" "$e90" "$e99" "$emax" "$gap" "$maxc" \
                "$m_mcpu" "$m_scpu" "$m_rcpu" "$m_ccpu" "$m_other" "$note"

        case $kind in
        peak)
                all_pub[$key]+="${all_pub[$key]:+ }$prps"
                all_del[$key]+="${all_del[$key]:+ }$del"
                if [ -z "${best_pub[$key]:-}" ] || awk -v a="$prps" -v b="${best_pub[$key]}" 'BEGIN { exit !(a > b) }'; then
                        best_pub[$key]=$prps; best_pub50[$key]=$p50; best_pub99[$key]=$p99
                fi
                if [ -z "${best_del[$key]:-}" ] || awk -v a="$del" -v b="${best_del[$key]}" 'BEGIN { exit !(a > b) }'; then
                        best_del[$key]=$del; best_e50[$key]=$e50; best_e99[$key]=$e99
                fi
                ;;
        half)
                half_rate[$key]=$r; half_del[$key]=$del; half_e50[$key]=$e50; half_e99[$key]=$e99; half_max[$key]=$emax
                half_late[$key]=$late
                ;;
        esac
        check_mooringd_alive "$cur_label run $run_no"
}

# run_redis_benchmark: XADD of the same payload size on the same redis-server
rb_best=; rb_best50=; rb_best99=; rb_all=
run_redis_benchmark() {
        local out=$tmp/out/redis-benchmark-$((run_no + 1)).txt rc=0 rps p50 p99 max
        run_no=$((run_no + 1))
        rcli del benchstream >/dev/null
        broker_pid=$redis_pid
        measure_start
        timeout $((max_seconds * 2)) redis-benchmark -h 127.0.0.1 -p "$redis_port" -c "$connections" -n "$messages" -q --csv \
                -x XADD benchstream '*' data <"$tmp/payload.bin" >"$out" 2>&1 &
        client_pid=$!
        wait "$client_pid" || rc=$?
        client_pid=
        measure_end
        [ "$rc" -eq 0 ] || { cat "$out" >&2; die "redis-benchmark failed (status $rc)"; }
        # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
        read -r rps p50 p99 max < <(awk -F, '$1 ~ /^"XADD/ { gsub(/"/, ""); print $2, $5, $7, $8 }' "$out") ||
                { cat "$out" >&2; die "could not parse redis-benchmark output"; }
        printf 'run %2d  %-9s %-8s XADD    %9.1f ops/s  (p50 %7.3f p99 %8.3f max %8.3f ms)  CPU redis %3s%% client %3s%% other %3s%%  stream length after: %s\n' \
                "$run_no" redis-benchmark peak "$rps" "$p50" "$p99" "$max" "$m_rcpu" "$m_ccpu" "$m_other" "$(rcli xlen benchstream)"
        rcli del benchstream >/dev/null
        rb_all+="${rb_all:+ }$rps"
        if [ -z "$rb_best" ] || awk -v a="$rps" -v b="$rb_best" 'BEGIN { exit !(a > b) }'; then
                rb_best=$rps; rb_best50=$p50; rb_best99=$p99
        fi
}

# strace_round: pubsub.sqlite, a short closed-loop run with strace counting
# fsync/fdatasync of every mooringd thread; prints calls per message
strace_round() {
        local out=$tmp/out/strace.txt t0 tracer calls
        strace -f -c -e trace=fsync,fdatasync -o "$out" -p "$mooringd_pid" </dev/null >"$tmp/out/strace.log" 2>&1 &
        strace_pid=$!
        t0=$(now_ms)
        while :; do
                tracer=$(awk '$1 == "TracerPid:" { print $2 }' "/proc/$mooringd_pid/status" 2>/dev/null || echo 0)
                [ "$tracer" = "$strace_pid" ] && break
                if ! proc_alive "$strace_pid" || [ $(( $(now_ms) - t0 )) -ge $((ready_timeout * 1000)) ]; then
                        cat "$tmp/out/strace.log" >&2
                        stop_pid "$strace_pid" strace 5 >/dev/null 2>&1 || true
                        strace_pid=
                        fsync_note[sqlite]="strace could not attach"
                        return 0
                fi
                sleep 0.02
        done
        [ "$strace_messages" -le "$messages" ] || strace_messages=$messages
        echo "(under strace -f -c -e trace=fsync,fdatasync: throughput not representative)"
        run_round sqlite strace "$strace_messages"
        kill -INT "$strace_pid" 2>/dev/null || true
        wait "$strace_pid" 2>/dev/null || true
        strace_pid=
        # "% time seconds usecs/call calls [errors] syscall": calls is the 4th field
        calls=$(awk '$NF == "fsync" || $NF == "fdatasync" { printf "%s%s %s", sep, $NF, $4; sep = ", " }' "$out")
        local total
        total=$(awk '$NF == "fsync" || $NF == "fdatasync" { n += $4 } END { print n + 0 }' "$out")
        fsync_note[sqlite]="$(awk -v t="$total" -v m="$strace_messages" 'BEGIN { printf "%.3f", t / m }') fsync+fdatasync per message (${calls:-none}; $total calls for $strace_messages messages published, delivered and acked)"
        echo "strace: ${fsync_note[sqlite]}"
}

# callgrind_round BROKER: mooringd again, under callgrind with one output file per thread;
# collection is switched on once the subscription delivers and off after N messages were
# published and delivered (and their acks committed), so start-up is not counted. Prints the
# instructions per message of the loop thread, of the broker's writer thread (pubsub.sqlite's
# WorkQueue thread, the one that ran batch_run) and of the rest. Exact and independent of other
# load; batches under valgrind are not those of a full-speed run, so per-batch costs weigh a
# little differently.
callgrind_round() {
        local b=$1 cg=$tmp/cg-$b saved_timeout=$ready_timeout f ir label loop=0 writer=0 other=0 n
        n=$cg_messages
        srv_pin=(valgrind -q --tool=callgrind --separate-threads=yes --trace-children=yes --instr-atstart=no
                 "--callgrind-out-file=$cg.%p")
        ready_timeout=$((ready_timeout * 6)) # start-up under valgrind is slow
        mkdir -p "$tmp/state-$b-cg"
        start_mooringd "$tmp/state-$b-cg"
        srv_pin=()
        if ! wait_204 "$mooringd_pid" mooringd "http://127.0.0.1:$pub_port/v1.0/healthz" || ! warm_up "${ps_name[$b]}"; then
                show_mooringd_log
                ready_timeout=$saved_timeout
                stop_mooringd
                cg_note[$b]="not measured (mooringd under callgrind did not deliver)"
                return 0
        fi
        ready_timeout=$saved_timeout
        callgrind_control -i on "$mooringd_pid" >/dev/null 2>&1
        echo "(under callgrind: throughput not representative)"
        run_round "$b" callgrind "$n"
        sleep 1 # the acks of the last deliveries commit
        callgrind_control -i off "$mooringd_pid" >/dev/null 2>&1
        stop_mooringd
        for f in "$cg".*; do
                [ -f "$f" ] || continue
                ir=$(awk '$1 == "totals:" || $1 == "summary:" { v = $2 } END { print v + 0 }' "$f")
                case $f in
                *-01) loop=$((loop + ir)) ;;
                *) if grep -q 'batch_run' "$f"; then writer=$((writer + ir)); else other=$((other + ir)); fi ;;
                esac
        done
        per() { awk -v i="$1" -v n="$n" 'BEGIN { printf "%.0f", i / n }'; }
        label="loop thread $(per $loop)"
        [ "$b" != sqlite ] || label+=", writer thread $(per $writer)"
        label+=", other threads $(per $other), total $(per $((loop + writer + other))) instructions per message"
        cg_note[$b]="$label ($n messages published, delivered and acked)"
        echo "callgrind: ${cg_note[$b]}"
}

# warm_up: publish one message again and again until the subscriber gets one
# (the subscription is active), bounded by $active_timeout
warm_up() {
        local t0 code line n=0
        run_id=$((run_id + 1))
        check_late "$(sub_ctl POST "/control/start?run=$run_id&count=1")"
        t0=$(now_ms)
        while :; do
                n=$((n + 1))
                code=$(curl -s -o "$tmp/out/warmup.txt" --max-time 5 -w '%{http_code}' -H 'Content-Type: application/json' \
                        -d "{\"run\":$run_id,\"seq\":0,\"ts\":0,\"pad\":\"warm-up\"}" \
                        "http://127.0.0.1:$pub_port/v1.0/publish/$1/bench" 2>/dev/null || true)
                if [ "$code" != 204 ]; then
                        echo "warm-up publish answered $code: $(head -c 300 "$tmp/out/warmup.txt")" >&2
                        return 1
                fi
                line=$(sub_ctl GET "/control/wait?timeout_ms=500")
                [ "$(kv complete "$line")" = 1 ] && { echo "subscription active after $n warm-up publish(es), $(( $(now_ms) - t0 )) ms"; return 0; }
                check_mooringd_alive "warm-up"
                if [ $(( $(now_ms) - t0 )) -ge $((active_timeout * 1000)) ]; then
                        echo "no warm-up message reached the subscriber within ${active_timeout}s ($n published)" >&2
                        return 1
                fi
        done
}

# ---------------------------------------------------------------- per broker

write_component() {
        local b=$1 f=$tmp/config/components/pubsub.yaml
        rm -f "$f"
        case $b in
        sqlite) return 0 ;; # none: the built-in default "pubsub" (pubsub.sqlite)
        redis) md="  - name: redisHost
    value: 127.0.0.1:$redis_port" ;;
        mqtt3) md="  - name: url
    value: tcp://127.0.0.1:$mqtt_port" ;;
        in-memory) md= ;;
        esac
        {
                printf 'apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\nspec:\n  type: %s\n  version: v1\n' \
                        "${ps_name[$b]}" "${ps_type[$b]}"
                [ -z "$md" ] || printf '  metadata:\n%s\n' "$md"
        } >"$f"
}

# skip_broker BROKER WHY: the broker could not be measured
skip_broker() {
        status_of[$1]="NOT MEASURED: $2"
        echo "${ps_type[$1]}: NOT MEASURED: $2"
        daemon_problems+=("${ps_type[$1]}: not measured: $2")
        if [ -n "$mooringd_pid" ]; then stop_mooringd; fi
        stop_sub
        echo
}

for b in "${broker_list[@]}"; do
        cur_label=${ps_type[$b]}
        echo "== ${ps_type[$b]}$([ "$b" = sqlite ] && echo ' (built-in default "pubsub", journal_mode=WAL, synchronous=FULL)')"
        case $b in
        redis) broker_pid=$redis_pid; rcli flushall >/dev/null ;;
        mqtt3) broker_pid=$mosquitto_pid ;;
        *) broker_pid= ;;
        esac
        write_component "$b"
        mkdir -p "$tmp/state-$b"
        start_sub "${ps_name[$b]}" "$b"
        start_mooringd "$tmp/state-$b"
        if ! wait_204 "$mooringd_pid" mooringd "http://127.0.0.1:$pub_port/v1.0/healthz"; then
                show_mooringd_log
                skip_broker "$b" "mooringd did not come up"
                continue
        fi
        comps=$(curl -s --max-time 2 --unix-socket "$api_sock" http://localhost/mooring/v1/components || echo '(admin socket did not answer)')
        echo "mooringd components: $comps"
        if grep -q "no pub/sub driver for type" "$mooringd_log"; then
                grep "no pub/sub driver for type" "$mooringd_log" | head -n 2 | sed 's/^/    /'
                skip_broker "$b" "this mooringd has no ${ps_type[$b]} driver"
                continue
        fi
        if [ "$b" = sqlite ] && ! grep -q 'pubsub\.sqlite' <<<"$comps"; then
                notes+=("pubsub.sqlite: the components list does not name pubsub.sqlite; the default pubsub may be another engine")
        fi
        [ "$b" != sqlite ] || echo "database on: $(fs_of "$tmp/state-$b")"
        if ! warm_up "${ps_name[$b]}"; then
                show_mooringd_log
                skip_broker "$b" "the subscription never delivered (warm-up)"
                continue
        fi
        for _ in 1 2; do
                [ "$b" != redis ] || run_redis_benchmark
                run_round "$b" peak "$messages"
        done
        if [ -n "$rate" ]; then
                r=$rate
        else
                r=$(awk -v d="${best_del[$b]}" 'BEGIN { printf "%d", d / 2 }')
        fi
        if [ "$r" -ge 1 ]; then
                n=$(( r * latency_seconds ))
                [ "$n" -le "$messages" ] || n=$messages
                run_round "$b" half "$n" "$r"
        fi
        if [ "$b" = sqlite ] && [ "$use_strace" -eq 1 ]; then
                strace_round
        fi
        # the last run's late copies
        run_id=$((run_id + 1))
        check_late "$(sub_ctl POST "/control/start?run=$run_id&count=1")"
        rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$mooringd_pid/status")
        echo "mooringd VmRSS after the runs: $(awk -v k="$rss" 'BEGIN { printf "%.2f", k / 1024 }') MiB"
        [ "$b" != sqlite ] || echo "database files: $(cd "$tmp/state-$b" && find . -type f -name '*pubsub*' -printf '%P %s B; ' 2>/dev/null)"
        stop_mooringd
        [ "$cg_messages" -eq 0 ] || callgrind_round "$b"
        stop_sub
        status_of[$b]=measured
        echo
done

# ---------------------------------------------------------------- summary

echo "== summary ($messages messages of $msg_size B per peak run, $connections publisher connections; best of two peak runs; e2e = publish request written (peak) or due (half rate) -> delivery complete at the subscriber)"
printf '%-17s %11s %18s %11s %20s %11s %30s %7s\n' broker "publish/s" "publish p50/p99" "deliver/s" "e2e p50/p99 peak" "half rate" "e2e p50/p99/max @ half rate" "ratio"
for b in "${broker_list[@]}"; do
        if [ "${status_of[$b]:-}" != measured ]; then
                printf '%-17s %s\n' "${ps_type[$b]}" "${status_of[$b]:-not measured}"
                continue
        fi
        ratio=-
        if [ "$b" = redis ] && [ -n "$rb_best" ]; then
                ratio=$(awk -v a="${best_pub[$b]}" -v r="$rb_best" 'BEGIN { printf "%.2f", a / r }')
        fi
        half=-; hr=-
        if [ -n "${half_rate[$b]:-}" ]; then
                hr="${half_rate[$b]}/s"
                half=$(printf '%.2f/%.2f/%.1f ms' "${half_e50[$b]}" "${half_e99[$b]}" "${half_max[$b]}")
                # the delivered rate should equal the rate published at
                if awk -v d="${half_del[$b]}" -v r="${half_rate[$b]}" 'BEGIN { exit !(d < 0.9 * r) }'; then
                        notes+=("${ps_type[$b]} half-rate run: delivered ${half_del[$b]} msgs/s, less than the ${half_rate[$b]} msgs/s published")
                fi
        fi
        printf '%-17s %11.1f %18s %11.1f %20s %11s %30s %7s\n' "${ps_type[$b]}" "${best_pub[$b]}" \
                "$(printf '%.2f/%.2f ms' "${best_pub50[$b]}" "${best_pub99[$b]}")" "${best_del[$b]}" \
                "$(printf '%.1f/%.1f ms' "${best_e50[$b]}" "${best_e99[$b]}")" "$hr" "$half" "$ratio"
done
echo "all peak runs (publish msgs/s | deliver msgs/s):"
for b in "${broker_list[@]}"; do
        [ "${status_of[$b]:-}" = measured ] || continue
        echo "  ${ps_type[$b]}: ${all_pub[$b]} | ${all_del[$b]}"
done
if has_broker redis && [ "${status_of[redis]:-}" = measured ]; then
        echo "redis-benchmark XADD (same redis-server, same run): best $rb_best ops/s (p50 $rb_best50 ms, p99 $rb_best99 ms); all runs: $rb_all"
        echo "ratio mooringd publish (pubsub.redis) / redis-benchmark XADD: $(awk -v a="${best_pub[redis]}" -v r="$rb_best" 'BEGIN { printf "%.2f", a / r }')"
fi
if has_broker sqlite; then
        if [ "${status_of[sqlite]:-}" = measured ]; then
                met() { awk -v r="$1" -v t="$target_embedded" 'BEGIN { print (r >= t) ? "met" : "NOT met" }'; }
                echo "embedded broker (pubsub.sqlite, durable: synchronous=FULL) target >= $target_embedded msgs/s with 1 KiB messages: publish $(printf '%.1f' "${best_pub[sqlite]}") msgs/s ($(met "${best_pub[sqlite]}")), publish->deliver $(printf '%.1f' "${best_del[sqlite]}") msgs/s ($(met "${best_del[sqlite]}"))"
                [ -z "${fsync_note[sqlite]:-}" ] || echo "pubsub.sqlite fsyncs: ${fsync_note[sqlite]}"
        else
                echo "embedded broker (pubsub.sqlite) target >= $target_embedded msgs/s: not measured (${status_of[sqlite]:-})"
        fi
fi
for b in "${broker_list[@]}"; do
        if [ -n "${half_rate[$b]:-}" ] && [ "${half_late[$b]:-0}" != 0 ]; then
                echo "note: ${ps_type[$b]} half-rate run: ${half_late[$b]} messages were written more than 1 ms after they were due (no idle connection of $connections, or the publisher not scheduled in time); their wait counts in e2e"
        fi
done
for b in "${broker_list[@]}"; do
        [ -z "${cg_note[$b]:-}" ] || echo "callgrind ${ps_type[$b]}: ${cg_note[$b]}"
done
echo "mooringd stop after SIGTERM (ms): ${stop_times[*]:-}"
if [ "$max_other" -ge 20 ]; then
        echo "WARNING: other load used up to ${max_other}% of a core during some run: figures are disturbed, rerun on a quiet machine"
fi
echo

# ---------------------------------------------------------------- daemon log / problems

if [ ${#notes[@]} -gt 0 ]; then
        echo "notes (at-least-once delivery allows duplicates):"
        printf '  - %s\n' "${notes[@]}"
fi
for f in "$tmp"/mooringd-*.log; do
        [ -s "$f" ] || continue
        daemon_problems+=("$(basename "$f"): $(wc -l <"$f") line(s) logged at warning or above")
        echo "---- $(basename "$f") (first 20 lines) ----"
        head -n 20 "$f"
done
if [ -s "$tmp/mosquitto/mosquitto.log" ]; then
        echo "---- mosquitto log (first 10 lines) ----"
        head -n 10 "$tmp/mosquitto/mosquitto.log"
fi
print_daemon_problems
unmeasured=0
for b in "${broker_list[@]}"; do
        [ "${status_of[$b]:-}" = measured ] || unmeasured=$((unmeasured + 1))
done
[ "$bad_runs" -eq 0 ] && [ "$unmeasured" -eq 0 ]
