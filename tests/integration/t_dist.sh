#!/usr/bin/env bash
# The distributed work queue (src/dist) against a real RabbitMQ broker
# (scripts/broker; started here if it is not running, and then stopped at
# the end): publisher confirms, a consumer killed with SIGKILL mid-batch
# loses nothing (its unacked units come back redelivered to the next one),
# results reach the coordinator, malformed units land in the dead-letter
# queue with a log line, control messages reach workers, heartbeats need a
# busy worker to call dist_poll, and bad
# credentials or a broker that is down give a clear error.  Driven by
# build*/tests/dist_probe (tests/dist/dist_probe.c).
. "$(dirname "$0")/lib.sh"

. "$(dirname "$0")/brokerlib.sh"
PREFIX="haul.t-dist-$$"
QUEUES=$PREFIX
probe() { "$PROBE" --prefix "$PREFIX" "$@"; }

# Polls until `probe depth KIND` prints "ready=WANT" (at most 10 s).
wait_ready() {
    local kind=$1 want=$2 i got=""
    for i in $(seq 100); do
        got=$(probe depth "$kind" 2>&1)
        case $got in "ready=$want "*) return 0 ;; esac
        sleep 0.1
    done
    echo "#   depth $kind: $got (wanted ready=$want)"
    return 1
}

# Polls until `probe depth KIND` prints ready >= WANT (at most 10 s).
wait_ready_atleast() {
    local kind=$1 want=$2 i got="" n
    for i in $(seq 100); do
        got=$(probe depth "$kind" 2>&1)
        n=$(sed -n 's/^ready=\([0-9]*\) .*/\1/p' <<<"$got")
        [ -n "$n" ] && [ "$n" -ge "$want" ] && return 0
        sleep 0.1
    done
    echo "#   depth $kind: $got (wanted ready>=$want)"
    return 1
}

# Polls until the work queue has N consumers attached (at most 10 s).
wait_consumers() {
    local want=$1 i
    for i in $(seq 100); do
        case $(probe depth work 2>&1) in *" consumers=$want") return 0 ;; esac
        sleep 0.1
    done
    return 1
}

N=500
out=$(probe publish $N --flush-every 100 2>&1); rc=$?
ok $rc "publish $N units with publisher confirms"
like "$out" "^published $N units .* confirmed in" "publish reports all $N confirmed"
wait_ready work $N; ok $? "the work queue holds $N ready units"

# A consumer that dies by SIGKILL after 50 acks, holding a prefetched batch.
probe consume --die-after 50 --prefetch 64 >"$SCRATCH/a.out" 2>"$SCRATCH/a.err"; rc=$?
is "$rc" 137 "consumer A was killed by SIGKILL"
is "$(grep -c '^acked ' "$SCRATCH/a.out")" 50 "consumer A acked 50 units before dying"
like "$(cat "$SCRATCH/a.err")" "killing myself holding unit [0-9]+ unacked" "consumer A died holding an unacked unit"
# The broker requeues A's unacked deliveries when its connection drops.
# Delivery is at least once: an ack A sent just before SIGKILL may never be
# processed (the broker drops what it had not read when the socket resets),
# so up to a few of A's 50 acked units may come back too.  Before the
# requeue at most 449 are ready (A holds at least one); after it, all of
# them at once.
wait_ready_atleast work $((N - 50)); ok $? "A's unacked units are back in the queue"
requeued=$(probe depth work 2>&1 | sed -n 's/^ready=\([0-9]*\) .*/\1/p')
lost=$((requeued - (N - 50)))
ok $([ "$lost" -ge 0 ] && [ "$lost" -le 50 ] && echo 0 || echo 1) \
    "$requeued ready: A's held units plus $lost of its last acks the broker never processed"

# Consumer B takes the rest, acking units only after a confirmed result
# naming them (one result per up to 16 units).
probe consume --results --results-every 16 --idle-ms 1000 >"$SCRATCH/b.out" 2>"$SCRATCH/b.err"; rc=$?
ok $rc "consumer B consumed the rest"
is "$(grep -c '^acked ' "$SCRATCH/b.out")" "$requeued" "consumer B acked the $requeued ready units"
redelivered=$(grep -c 'redelivered=1' "$SCRATCH/b.out")
ok $([ "$redelivered" -ge 1 ] && [ "$redelivered" -le $((65 + lost)) ] && echo 0 || echo 1) \
    "B saw A's held units flagged redelivered ($redelivered, at most prefetch+1+$lost)"
is "$(grep -h '^acked ' "$SCRATCH/a.out" "$SCRATCH/b.out" | awk '{print $2}' | sort -un | wc -l)" $N \
    "every one of the $N unit ids was acked (nothing lost)"
is "$(grep -h '^acked ' "$SCRATCH/a.out" "$SCRATCH/b.out" | wc -l)" $((N + lost)) \
    "no unit was acked twice except the $lost whose ack was lost"
twice=$(grep -h '^acked ' "$SCRATCH/a.out" "$SCRATCH/b.out" | awk '{print $2}' | sort -n | uniq -d)
is "$(for id in $twice; do grep -c "^acked $id redelivered=1\$" "$SCRATCH/b.out"; done | grep -cx 1)" "$lost" \
    "each unit delivered twice came to B flagged redelivered"
wait_ready work 0; ok $? "the work queue is empty"
out=$(probe collect "$requeued" --timeout-ms 10000 2>&1); rc=$?
ok $rc "the coordinator collected a result for each of B's units"
like "$out" "$requeued distinct units" "results name $requeued distinct units"

# Untrusted input: garbage and a well-formed unit with a path escaping the root.
probe publish-raw "this is not a haul unit" >/dev/null; ok $? "published a garbage message"
evil=$(python3 -c '
import struct
path = b"../../etc/passwd"
m = b"HAUL" + bytes([1, 1]) + struct.pack(">Q", 9) + struct.pack(">H", 5) + b"probe"
m += bytes([1, 2]) + struct.pack(">I", 1) + struct.pack(">H", len(path)) + path
print(m.hex())')
probe publish-raw --hex "$evil" >/dev/null; ok $? "published a unit with a '..' path"
probe publish 3 --start 1000 >/dev/null
probe consume --idle-ms 1000 >"$SCRATCH/c.out" 2>"$SCRATCH/c.err"; rc=$?
ok $rc "consumer C survived both and exited normally"
is "$(grep -c '^acked ' "$SCRATCH/c.out")" 3 "consumer C still did the 3 good units"
is "$(grep -c 'rejecting a malformed work unit' "$SCRATCH/c.err")" 2 "consumer C logged each malformed unit"
like "$(cat "$SCRATCH/c.err")" "bad magic" "the log says why (bad magic)"
like "$(cat "$SCRATCH/c.err")" "'\.\.' path component" "the log says why ('..' component)"
wait_ready dead 2; ok $? "both malformed messages are in the dead-letter queue"
out=$(probe dead 2>&1)
like "$out" "this is not a haul unit" "the dead-letter queue holds the garbage as published"
like "$out" "2 dead messages" "the dead-letter queue can be drained"

# Control: a stop reaches a waiting worker through the fanout exchange.
probe consume --idle-ms 20000 >"$SCRATCH/d.out" 2>&1 &
worker=$!
wait_consumers 1; ok $? "worker D is attached to the work queue"
probe control stop >/dev/null; ok $? "published a control stop"
for i in $(seq 100); do kill -0 $worker 2>/dev/null || break; sleep 0.1; done
if kill -0 $worker 2>/dev/null; then kill $worker; fi
wait $worker; rc=$?
ok $rc "worker D exited 0"
like "$(cat "$SCRATCH/d.out")" "stopped by control message" "worker D stopped on the control message"

# Heartbeats: a worker busy on one unit for 7 s with a 2 s heartbeat keeps
# its connection by calling dist_poll; without it the broker drops the
# connection, the ack fails loudly and the unit goes back to the queue.
probe publish 1 --start 2000 >/dev/null
out=$(probe --heartbeat 2 consume --work-ms 7000 --poll-ms 500 --idle-ms 500 2>&1); rc=$?
ok $rc "a slow unit with dist_poll keeps its connection"
like "$out" "acked 2000 redelivered=0" "the slow unit was acked"
probe publish 1 --start 2001 >/dev/null
out=$(probe --heartbeat 2 consume --work-ms 7000 --idle-ms 500 2>&1); rc=$?
is "$rc" 1 "a slow unit without dist_poll loses the connection"
like "$out" "basic.ack: connection lost" "the failed ack says the connection was lost"
wait_ready work 1; ok $? "the unit is back in the work queue for another worker"
out=$(probe consume --idle-ms 500 2>&1)
like "$out" "acked 2001 redelivered=1" "the next worker gets it, flagged redelivered"

# Clear errors.
port=${HAUL_BROKER##*:}; port=${port%%/*}
out=$("$PROBE" --url "amqp://guest:wrongpass@127.0.0.1:$port/" --prefix "$PREFIX" depth 2>&1); rc=$?
is "$rc" 1 "wrong credentials: exit 1"
like "$out" "amqp://guest:\*\*\*@127.0.0.1:$port/: login: ACCESS_REFUSED" "wrong credentials: ACCESS_REFUSED, URL named"
case $out in *wrongpass*) ok 1 "the password is not printed" ;; *) ok 0 "the password is not printed" ;; esac
down=$port
for p in 5999 6999 15999 16999; do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { down=$p; break; }
done
out=$("$PROBE" --url "amqp://guest:guest@127.0.0.1:$down/" --prefix "$PREFIX" publish 1 2>&1); rc=$?
is "$rc" 1 "broker down: exit 1"
like "$out" "amqp://guest:\*\*\*@127.0.0.1:$down/: connection refused" "broker down: 'connection refused', URL named"
out=$("$PROBE" --url "http://nope/" depth 2>&1); rc=$?
is "$rc" 1 "not an amqp URL: exit 1"
like "$out" "not a broker URL" "not an amqp URL: says so"

# Queues deleted under an open handle (an operator cleaning up): clear
# errors, no crash, the handle stays usable for the next call.
out=$(probe lost-queue 2>&1); rc=$?
ok $rc "queues deleted under an open handle: no crash"
is "$(grep -c "^depth: rc=-6 .*NOT_FOUND - no queue '$PREFIX.work'" <<<"$out")" 2 \
    "depth says NOT_FOUND, twice (the handle survives it)"
like "$out" "publish: rc=-9 .*could not be routed \(NO_ROUTE\)" "a publish to a deleted queue fails at flush (NO_ROUTE)"

probe delete >/dev/null; ok $? "the job's queues are deleted"
done_testing
