#!/usr/bin/env bash
# bench/broker.sh: how many work-unit messages a real RabbitMQ broker on this
# machine carries for haul's dist queue, through build/tests/dist_probe.  One
# command, about a minute:
#
#   make all && bench/broker.sh
#
# Units are FILES batches of 64 relative paths (~1.3 KiB each, persistent,
# on durable queues).  Measured, each on a fresh job prefix:
#  1. publish + confirm, confirms awaited every 1000 messages (dist_flush
#     batched, as the coordinator should publish)
#  2. publish + confirm, a flush after every message (worst case)
#  3. consume + ack, one consumer, prefetch 64
#  4. consume + ack, two consumers in parallel (the broker is the limit?)
#  5. the full worker protocol per unit: consume, publish a result, wait for
#     its confirm, ack (one confirm round trip, and the broker's fsync, per unit)
#  6. the same with one result per up to 64 units (what workers should do:
#     dist.h's result carries many unit ids)
# The implied files/s is msgs/s x 64.  Broker CPU (beam.smp utime+stime from
# /proc) is read before and after each step.  Results: the table is printed
# and written to bench/results/broker-DATE.md.
#
# Environment: BENCH_UNITS [20000] (steps 1, 3, 4, 6), BENCH_SLOW_UNITS [2000]
# (steps 2, 5), BENCH_OUT [bench/results/broker-YYYY-MM-DD.md]; the broker
# from scripts/broker (started here if not running, then stopped again).
set -euo pipefail
cd "$(dirname "$0")/.."
PROBE=build/tests/dist_probe
[ -x "$PROBE" ] || { echo "bench/broker.sh: build first (make all)" >&2; exit 1; }
UNITS=${BENCH_UNITS:-20000}
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
SLOW=${BENCH_SLOW_UNITS:-2000}
OUT=${BENCH_OUT:-bench/results/broker-$(date -u +%Y-%m-%d).md}

started=0
if ! scripts/broker status >/dev/null 2>&1; then
    scripts/broker start
    started=1
fi
trap '[ "$started" = 1 ] && scripts/broker stop' EXIT
eval "$(scripts/broker env)"
beam=$(cat "${HAUL_BROKER_DIR:-/tmp/haul-broker}/pids/beam.pid")

# CPU seconds used so far by the broker's Erlang VM (recorded by scripts/broker).
broker_cpu() {
    local s f
    s=$(cat "/proc/$beam/stat")
    # after "comm) ": state is field 0, utime field 11, stime field 12
    read -r -a f <<<"${s##*) }"
    awk -v t="$((f[11] + f[12]))" -v h="$(getconf CLK_TCK)" 'BEGIN{printf "%.1f", t/h}'
}

rows=()
# run NAME UNITS COMMAND...: runs it, takes msgs/s from its last line.
run() {
    local name=$1 n=$2 c0 c1 t0 t1 line rate
    shift 2
    c0=$(broker_cpu)
    t0=$(date +%s.%N)
    line=$("$@" | tail -n 1)
    t1=$(date +%s.%N)
    c1=$(broker_cpu)
    rate=$(sed -n 's/.*: \([0-9]*\) msgs\/s$/\1/p' <<<"$line")
    local wall
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
    echo "$name: $line (broker CPU $(awk -v a="$c0" -v b="$c1" 'BEGIN{printf "%.1f", b-a}') s)" >&2
    rows+=("| $name | $n | $rate | $((rate * 64)) | $wall | $(awk -v a="$c0" -v b="$c1" 'BEGIN{printf "%.1f", b-a}') |")
}

P="haul.bench-$$"
run "publish + confirm (flush every 1000)" "$UNITS" "$PROBE" --prefix "$P.a" publish "$UNITS" --flush-every 1000
run "publish + confirm (flush every message)" "$SLOW" "$PROBE" --prefix "$P.b" publish "$SLOW" --flush-every 1
run "consume + ack, 1 consumer, prefetch 64" "$UNITS" "$PROBE" --prefix "$P.a" consume --quiet --idle-ms 1000
"$PROBE" --prefix "$P.c" publish "$UNITS" --flush-every 1000 >/dev/null
# Two consumers: the rate is the total over the wall time of the pair.
two_consumers() {
    local a b
    "$PROBE" --prefix "$P.c" consume --quiet --idle-ms 1000 >"/tmp/haul-bench-broker-$$.a" &
    a=$!
    "$PROBE" --prefix "$P.c" consume --quiet --idle-ms 1000 >"/tmp/haul-bench-broker-$$.b" &
    b=$!
    wait "$a" "$b"
    # Each consumer's own span excludes its 1 s idle wait; take the longer.
    local n1 n2 s1 s2
    n1=$(sed -n 's/^consumed \([0-9]*\) units.* in \([0-9.]*\) s.*/\1 \2/p' "/tmp/haul-bench-broker-$$.a")
    n2=$(sed -n 's/^consumed \([0-9]*\) units.* in \([0-9.]*\) s.*/\1 \2/p' "/tmp/haul-bench-broker-$$.b")
    rm -f "/tmp/haul-bench-broker-$$.a" "/tmp/haul-bench-broker-$$.b"
    read -r c1 s1 <<<"$n1"
    read -r c2 s2 <<<"$n2"
    awk -v a="$c1" -v b="$c2" -v s="$s1" -v t="$s2" \
        'BEGIN{m = s > t ? s : t; printf "consumed %d units by 2 consumers (%d + %d) in %.3f s: %.0f msgs/s\n", a+b, a, b, m, (a+b)/m}'
}
run "consume + ack, 2 consumers, prefetch 64" "$UNITS" two_consumers
"$PROBE" --prefix "$P.d" publish "$SLOW" --flush-every 1000 >/dev/null
run "worker protocol: consume, result + confirm, ack" "$SLOW" "$PROBE" --prefix "$P.d" consume --results --quiet --idle-ms 1000
"$PROBE" --prefix "$P.e" publish "$UNITS" --flush-every 1000 >/dev/null
run "worker protocol, one result per <=64 units" "$UNITS" "$PROBE" --prefix "$P.e" consume --results --results-every 64 --quiet --idle-ms 1000
for s in a b c d e; do "$PROBE" --prefix "$P.$s" delete >/dev/null; done

mkdir -p "$(dirname "$OUT")"
{
    echo "# Broker throughput for haul's dist queue ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo
    echo "RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server) (Debian, scripts/broker, one node on 127.0.0.1), librabbitmq $(dpkg-query -W -f='${Version}' librabbitmq4);"
    echo "$(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)); probe and broker on the same machine."
    echo "Units: FILES batches of 64 relative paths, ~1.3 KiB, persistent (delivery mode 2) on durable queues."
    echo "Load average (1, 5, 15 min) before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared: other jobs' load shows here)."
    echo "Files/s = msgs/s x 64. Broker CPU: beam.smp user+sys seconds during the step. Command: bench/broker.sh"
    echo
    echo "| step | units | msgs/s | files/s (x64) | wall s | broker CPU s |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    printf '%s\n' "${rows[@]}"
} | tee "$OUT"
echo "bench/broker.sh: wrote $OUT" >&2
