#!/usr/bin/env bash
# A distributed backup (--broker) to a missing bucket stops after one
# message on the coordinator, as a local one does (issue 12 item 8), instead
# of one line per file the workers could not store.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/brokerlib.sh"
JOB="t-hostile-dbackup-$$"
QUEUES="haul.$JOB"
B=(--broker "$HAUL_BROKER" --job "$JOB")

T="$SCRATCH/tree"; mkdir -p "$T"
for i in $(seq 1 300); do echo "$i" > "$T/f$i"; done
ALLOW+=(--allow "s3://$BUCKET-missing") # the worker may serve it: the bucket's absence is the point
start_worker w1
wait_workers 1; ok $? "a worker is attached"
t0=$SECONDS
OUT=$(timeout 60 "$HAUL" backup "${B[@]}" --state-dir "$SCRATCH/state" "$T" "s3://$BUCKET-missing/p" 2>"$SCRATCH/.err"); RC=$?
ERR=$(cat "$SCRATCH/.err")
is "$RC" 1 "distributed backup to a missing bucket: exit 1"
ok "$([ "$(printf '%s' "$ERR" | grep -c .)" -le 3 ] && echo 0 || echo 1)" \
    "... at most 3 lines on stderr (got $(printf '%s' "$ERR" | grep -c .))"
like "$ERR" "s3://$BUCKET-missing/.*NoSuchBucket" "... naming the bucket and NoSuchBucket"
ok "$([ $((SECONDS - t0)) -le 20 ] && echo 0 || echo 1)" "... in $((SECONDS - t0)) s"
done_testing
