# SPDX-License-Identifier: Apache-2.0
#
# bench/observability.sh - sourced by bench/healthz.sh and bench/invoke.sh
# (after bench/lib.sh): the cost of metrics and tracing, measured in the same
# run. mooringd runs with a config.yaml that turns both off
# (spec.metric.enabled: false, no tracing) and with one that turns both on
# (metrics, samplingRate 1, OTLP/HTTP export to a local receiver that answers
# 200), interleaved off/on three times, each a fresh daemon and one wrk run;
# the best run of each is kept (three, because on two CPUs shared with the
# client and the app one run in two can lose 5-20% to the scheduler). Prints throughput on/off (target: the cost stays
# under 5%, i.e. on/off >= 0.95), the daemon's CPU per request in both and the
# spans it exported and dropped; then (obs_cg_duration > 0) both once more
# under callgrind: instructions per request off and on, and their ratio, for
# the loop thread (what throughput follows: the exporter has a thread of its
# own) and for the whole process (the cost the exporter's thread only moves).

# obs_config off|on RECEIVER_PORT: writes $tmp/config/config.yaml
obs_config() {
        if [ "$1" = off ]; then
                cat >"$tmp/config/config.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: observability-off
spec:
  metric:
    enabled: false
EOF
        else
                cat >"$tmp/config/config.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: observability-on
spec:
  metric:
    enabled: true
  tracing:
    samplingRate: "1"
    otel:
      endpointAddress: "127.0.0.1:$2"
      isSecure: false
      protocol: http
EOF
        fi
}

# obs_receiver: starts the local collector stand-in on a free port: bench/echo-app with
# ECHO_APP_SINK=1 (answers an empty 200 to every POST and counts them, answers the count to GET),
# in C and on one epoll thread so that what the collector costs (it shares the machine's CPUs with
# everything else) stays small next to what mooringd's exporter costs; the runs print the CPU it used per
# request. Sets obs_rx_port and obs_rx_pid.
obs_receiver() {
        read -r obs_rx_port < <(free_ports 1)
        local sink
        sink=$(find_helper echo-app "${echo_app:-}")
        ECHO_APP_SINK=1 "$sink" "$obs_rx_port" </dev/null >"$tmp/receiver.log" 2>&1 &
        obs_rx_pid=$!
}

obs_receiver_stop() {
        [ -z "${obs_rx_pid:-}" ] || kill "$obs_rx_pid" 2>/dev/null || true
        obs_rx_pid=
}

# obs_trace_counts: "spans exported N, dropped N, queued N" from the running daemon's /metrics
obs_trace_counts() {
        curl -s --max-time 2 --unix-socket "${api_sock:-$tmp/runtime/mooringd.sock}" http://localhost/metrics 2>/dev/null |
                awk '$1 == "mooring_trace_spans_exported_total" { e = $2 } $1 == "mooring_trace_spans_dropped_total" { d = $2 }
                     $1 == "mooring_trace_queue_spans" { q = $2 }
                     END { if (e != "") printf "spans exported %s, dropped %s, queued %s", e, d, q }'
}

# obs_callgrind URL READY_FN [WRK ARGS...]: instructions per request, off and on, counted by
# callgrind (exact and independent of other load on the machine, unlike req/s). Collection
# is switched on once the daemon is up and off after the load plus the exporter's next
# send (so start-up is not counted, and the export of the spans of the load is), then the
# count is divided by the requests wrk made. Sets obs_ir[off] and obs_ir[on].
obs_callgrind() {
        local url=$1 ready=$2 mode out nreq ir cg saved_pin=("${srv_pin[@]}") saved_timeout=$ready_timeout
        shift 2
        if ! command -v valgrind >/dev/null 2>&1 || ! command -v callgrind_control >/dev/null 2>&1; then
                echo "(callgrind: valgrind not installed, instructions per request not measured)"
                return 0
        fi
        ready_timeout=$((ready_timeout * 6)) # start-up under valgrind is slow
        for mode in off on; do
                [ -z "$mooringd_pid" ] || stop_mooringd
                obs_config "$mode" "$obs_rx_port"
                cg=$tmp/cg.obs-$mode
                srv_pin=(valgrind --tool=callgrind --trace-children=yes --instr-atstart=no --separate-threads=yes
                         "--callgrind-out-file=$cg.%p")
                start_mooringd "$tmp/state"
                "$ready" || { show_mooringd_log; die "mooringd under callgrind did not come up (observability $mode)"; }
                callgrind_control -i on "$mooringd_pid" >/dev/null 2>&1
                out=$tmp/obs-cg-$mode.txt
                timeout $((obs_cg_duration + 30)) "${cli_pin[@]}" wrk -t1 -c"$connections" -d"${obs_cg_duration}s" "$@" "$url" \
                        >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed (observability $mode, callgrind)"; }
                sleep 1.5 # the exporter's send of the last spans (it sends at least every second)
                callgrind_control -i off "$mooringd_pid" >/dev/null 2>&1
                stop_mooringd
                nreq=$(awk '$2 == "requests" && $3 == "in" { print $1 }' "$out")
                # one file per thread (name ending in -01, -02, ...): the first is the loop thread, the
                # others the exporter's (on) and the worker pool's if it ran; the process is their sum
                ir=$(for f in "$cg".*; do awk '$1 == "totals:" || $1 == "summary:" { v = $2 } END { print v + 0 }' "$f"; done |
                        awk '{ s += $1 } END { print s + 0 }')
                irl=$(for f in "$cg".*-01; do awk '$1 == "totals:" || $1 == "summary:" { v = $2 } END { print v + 0 }' "$f"; done |
                        awk '{ s += $1 } END { print s + 0 }')
                obs_ir[$mode]=$(awk -v i="$ir" -v n="${nreq:-0}" 'BEGIN { if (n > 0) printf "%.0f", i / n; else print "nan" }')
                obs_irl[$mode]=$(awk -v i="$irl" -v n="${nreq:-0}" 'BEGIN { if (n > 0) printf "%.0f", i / n; else print "nan" }')
                obs_irn[$mode]=$nreq
        done
        srv_pin=("${saved_pin[@]}")
        ready_timeout=$saved_timeout
}

# obs_ticks /proc/.../stat: user+system CPU ticks of that process or thread
obs_ticks() {
        awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "$1"
}

# obs_us TICKS REQUESTS: microseconds of CPU per request
obs_us() {
        awk -v d="$1" -v hz="$clk_tck" -v n="${2:-0}" 'BEGIN { if (n > 0) printf "%.2f", d / hz * 1e6 / n; else print "nan" }'
}

# obs_compare URL READY_FN [WRK ARGS...]: the comparison; READY_FN waits until the freshly started
# daemon serves URL (and whatever it calls is healthy)
obs_compare() {
        local url=$1 ready=$2 mode out rps nreq t0 t1 lt0 lt1 rx0 rx1 us lus rxus rx_port run=0 spans
        shift 2
        declare -A obs_rps obs_us obs_all
        obs_receiver
        rx_port=$obs_rx_port
        echo "== observability cost: metrics + tracing (samplingRate 1, OTLP/HTTP to 127.0.0.1:$rx_port) on vs off"
        for mode in off on off on off on; do
                run=$((run + 1))
                [ -z "$mooringd_pid" ] || stop_mooringd
                obs_config "$mode" "$rx_port"
                start_mooringd "$tmp/state"
                "$ready" || { show_mooringd_log; die "mooringd did not come up (observability $mode)"; }
                out=$tmp/obs-$run-$mode.txt
                t0=$(obs_ticks "/proc/$mooringd_pid/stat")
                lt0=$(obs_ticks "/proc/$mooringd_pid/task/$mooringd_pid/stat")
                rx0=$(obs_ticks "/proc/$obs_rx_pid/stat")
                timeout $((duration + 30)) "${cli_pin[@]}" wrk -t1 -c"$connections" -d"${duration}s" "$@" "$url" >"$out" 2>&1 ||
                        { cat "$out" >&2; die "wrk failed (observability $mode)"; }
                t1=$(obs_ticks "/proc/$mooringd_pid/stat")
                lt1=$(obs_ticks "/proc/$mooringd_pid/task/$mooringd_pid/stat")
                rx1=$(obs_ticks "/proc/$obs_rx_pid/stat")
                rps=$(awk '$1 == "Requests/sec:" { print $2 }' "$out")
                nreq=$(awk '$2 == "requests" && $3 == "in" { print $1 }' "$out")
                us=$(obs_us $((t1 - t0)) "$nreq")
                lus=$(obs_us $((lt1 - lt0)) "$nreq")
                rxus=$(obs_us $((rx1 - rx0)) "$nreq")
                local spans_line=
                if [ "$mode" = on ]; then
                        sleep 1.2 # the exporter's next send
                        spans_line=$(obs_trace_counts)
                fi
                printf 'run %d  observability %-3s %10.2f req/s  %6s us CPU/req (loop thread %s, collector %s)%s\n' \
                        "$run" "$mode" "$rps" "$us" "$lus" "$rxus" "${spans_line:+  $spans_line}"
                obs_all[$mode]+="${obs_all[$mode]:+ }$rps"
                if [ -z "${obs_rps[$mode]:-}" ] || awk -v a="$rps" -v b="${obs_rps[$mode]}" 'BEGIN { exit !(a > b) }'; then
                        obs_rps[$mode]=$rps
                        obs_us[$mode]=$us
                fi
                check_mooringd_alive "observability run $run"
        done
        # the spans really went out: the receiver saw requests
        sleep 2
        spans=$(curl -s --max-time 2 "http://127.0.0.1:$rx_port/" || echo "?")
        stop_mooringd
        declare -A obs_ir obs_irl obs_irn
        [ "${obs_cg_duration:-0}" -eq 0 ] || obs_callgrind "$url" "$ready" "$@"
        obs_receiver_stop
        local ratio met
        ratio=$(awk -v a="${obs_rps[on]}" -v b="${obs_rps[off]}" 'BEGIN { printf "%.3f", a / b }')
        met=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.95) ? "met" : "NOT met" }')
        echo "best off: ${obs_rps[off]} req/s, ${obs_us[off]} us CPU/req; best on: ${obs_rps[on]} req/s, ${obs_us[on]} us CPU/req"
        echo "all runs (req/s): off ${obs_all[off]}; on ${obs_all[on]}; receiver got $spans export requests"
        echo "throughput on/off: $ratio (target >= 0.95, a cost under 5%: $met)"
        if [ -n "${obs_ir[on]:-}" ]; then
                echo "callgrind, instructions per request (user space, ${obs_cg_duration}s of wrk each, export included):"
                echo "  loop thread (what throughput follows): off ${obs_irl[off]}, on ${obs_irl[on]}," \
                     "on/off $(awk -v a="${obs_irl[on]}" -v b="${obs_irl[off]}" 'BEGIN { printf "%.3f", a / b }')"
                echo "  whole process (all threads, the exporter's included): off ${obs_ir[off]} (${obs_irn[off]} requests)," \
                     "on ${obs_ir[on]} (${obs_irn[on]} requests)," \
                     "on/off $(awk -v a="${obs_ir[on]}" -v b="${obs_ir[off]}" 'BEGIN { printf "%.3f", a / b }')"
        fi
        echo
}
