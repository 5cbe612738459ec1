#!/usr/bin/env bash
# Distributed runs trust only signed jobs inside a worker's allowed roots
# (issue 13 items 1, 2 and 4; audit H4), against the real broker:
#   - a worker without --allow does not start (exit 2); key files that are
#     not 0600 are refused; a distributed run without a key refuses to start
#     unless --insecure-no-key;
#   - a job outside --allow (here /…/allowed2 next to the allowed /…/allowed:
#     containment by path components) is refused: `clone --pass delete`
#     deletes nothing, the coordinator prints the refusal as it comes and
#     exits 1 after --refuse-timeout naming why; the same units are left for
#     a worker that may take them, which then finishes the run;
#   - a backup to a prefix outside the allowed s3:// prefix is refused alike;
#   - a job and units signed with another key, or not signed at all (a
#     forger on the broker), are dropped with one log line, nothing done;
#   - a signed run works end to end (bytes equal), and the worker says in one
#     line at start what it serves, without the broker's password.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/brokerlib.sh"
JOB="t-hostile-dist-$$"
QUEUES="haul.$JOB"
B=(--broker "$HAUL_BROKER" --job "$JOB")

A=$SCRATCH/allowed; O=$SCRATCH/allowed2
mkdir -p "$A/src/d" "$O/src" "$O/dst"
for i in 1 2 3; do mkfile "$A/src/d/f$i" 3000; done
mkfile "$A/src/big" 200000
echo keep >"$O/src/keep"; echo keep >"$O/dst/keep"
for i in 1 2 3; do echo "victim $i" >"$O/dst/victim$i"; done

# ---- refusing to start ----
OUT=$(timeout 10 "$HAUL" worker "${B[@]}" --threads 1 2>&1); RC=$?
is "$RC" 2 "a worker without --allow refuses to start (exit 2)"
like "$OUT" "--allow PATH or --allow s3://BUCKET.*--allow-any" "... saying what to give"

cp "$HAUL_KEY_FILE" "$SCRATCH/open.key"; chmod 644 "$SCRATCH/open.key"
OUT=$(timeout 10 "$HAUL" worker "${B[@]}" --allow "$A" --key-file "$SCRATCH/open.key" 2>&1); RC=$?
is "$RC" 2 "a worker with a key file of mode 0644 refuses to start"
like "$OUT" "open.key: mode 0644 lets others read or change the secret: chmod 600" "... naming the file and the fix"
OUT=$(timeout 10 "$HAUL" clone "${B[@]}" --key-file "$SCRATCH/open.key" "$A/src" "$A/dst0" 2>&1); RC=$?
is "$RC" 2 "so does a coordinator"
OUT=$(HAUL_KEY_FILE= timeout 10 "$HAUL" clone "${B[@]}" "$A/src" "$A/dst0" 2>&1); RC=$?
is "$RC" 2 "a distributed clone without a key file refuses to start"
like "$OUT" "needs --key-file FILE.*--insecure-no-key" "... pointing to --key-file and --insecure-no-key"
OUT=$(HAUL_KEY_FILE= timeout 10 "$HAUL" ctl "${B[@]}" status 2>&1); RC=$?
is "$RC" 2 "so does ctl"

# ---- a job outside the allowed roots ----
ALLOW=(--allow "$A" --allow "s3://$BUCKET/ok")
start_worker wa
wait_workers 1; ok $? "worker wa (--allow $A, s3://$BUCKET/ok) answers"
line=$(grep -m1 "serving job" "$SCRATCH/wa.log")
like "$line" "^haul worker wa: serving job $JOB at amqp://[^:/@]*(:\*\*\*)?@127\.0\.0\.1:[0-9]+/.*; allowed: $A, s3://$BUCKET/ok; messages signed" \
    "the worker says in one line what it serves"
ok "$(case $HAUL_BROKER in amqp://*:*@*) pw=${HAUL_BROKER#amqp://*:}; pw=${pw%%@*}; grep -qF ":$pw@" "$SCRATCH/wa.log"; [ $? = 1 ] ;; esac; echo $?)" \
    "... without the broker's password"

t0=$SECONDS
OUT=$(timeout 60 "$HAUL" clone "${B[@]}" --pass delete --refuse-timeout 4 "$O/src" "$O/dst" 2>"$SCRATCH/.err"); RC=$?
ERR=$(cat "$SCRATCH/.err")
is "$RC" 1 "clone --pass delete of a tree outside --allow: exit 1"
like "$ERR" "worker wa refuses the job's units .*: SRC $O/src is not in this worker's --allow list" \
    "... the coordinator prints the refusal, naming the worker and why"
like "$ERR" "no worker took the job in 4 s \(--refuse-timeout\): worker wa: SRC $O/src is not in" \
    "... and exits naming the reason"
ok "$([ $((SECONDS - t0)) -le 20 ] && echo 0 || echo 1)" "... within the refuse timeout (took $((SECONDS - t0)) s)"
is "$(ls "$O/dst" | tr '\n' ' ')" "keep victim1 victim2 victim3 " "... and nothing was deleted"
like "$(cat "$SCRATCH/wa.log")" "cannot serve this job here: SRC $O/src is not in this worker's --allow list" \
    "the worker logs why it refuses"

# The units wait for a worker that may take them.
"$HAUL" clone "${B[@]}" --pass all --refuse-timeout 60 "$O/src" "$O/dst" >"$SCRATCH/o.out" 2>"$SCRATCH/o.err" &
coord=$!
for i in $(seq 150); do grep -q "refuses the job's units" "$SCRATCH/o.err" && break; sleep 0.1; done
like "$(cat "$SCRATCH/o.err")" "worker wa refuses" "a second run is refused by wa too"
ALLOW=(--allow "$O")
start_worker wo
wait "$coord"; is "$?" 0 "a worker allowed there (--allow $O) takes the units and finishes the run"
is "$(ls "$O/dst" | tr '\n' ' ')" "keep " "... doing the delete pass wa refused"

kill "$PID_wo"; wait "$PID_wo" 2>/dev/null

# A backup outside the allowed prefix: s3://BUCKET/okay is not below s3://BUCKET/ok.
"$HAUL" mb "s3://$BUCKET" >/dev/null
OUT=$(timeout 60 "$HAUL" backup "${B[@]}" --refuse-timeout 4 --state-dir "$SCRATCH/state" "$A/src" "s3://$BUCKET/okay" 2>&1); RC=$?
is "$RC" 1 "a backup to s3://$BUCKET/okay (allowed: s3://$BUCKET/ok) exits 1"
like "$OUT" "worker wa: s3://$BUCKET/okay/? is not in this worker's --allow list" "... naming the bucket and prefix"
is "$("$HAUL" ls -r "s3://$BUCKET/" 2>/dev/null | grep -vc '/\.haul/index-id')" 0 "... and nothing was stored (but the coordinator's index marker)"

# ---- a signed run, end to end ----
rm -rf "$A/dst"
OUT=$(timeout 120 "$HAUL" clone "${B[@]}" --pass all --json "$A/src" "$A/dst" 2>"$SCRATCH/.err"); RC=$?
is "$RC" 0 "a signed clone inside --allow exits 0 (the units refused earlier are dropped: their runs are over)"
ok "$(diff -r "$A/src" "$A/dst" >/dev/null; echo $?)" "... the bytes are equal"

# ---- forged jobs: another key, or none ----
(umask 077; openssl rand -hex 32 >"$SCRATCH/other.key")
dead0=$("$PROBE" --prefix "haul.$JOB" depth dead | sed 's/ready=\([0-9]*\).*/\1/')
mkdir -p "$A/empty"
HAUL_KEY_FILE=$SCRATCH/other.key "$HAUL" clone "${B[@]}" --pass delete --allow-empty-src \
    --state-dir "$SCRATCH/fstate" "$A/empty" "$A/src" >"$SCRATCH/f.out" 2>&1 &
forger=$!
for i in $(seq 150); do grep -q "dropping a work unit" "$SCRATCH/wa.log" && break; sleep 0.1; done
like "$(cat "$SCRATCH/wa.log")" "dropping a work unit that does not verify with this --key-file \(forged, or signed with another key\)" \
    "a unit signed with another key is dropped with a log line"
HAUL_KEY_FILE= "$HAUL" clone "${B[@]}" --insecure-no-key --pass delete --allow-empty-src \
    --state-dir "$SCRATCH/fstate2" "$A/empty" "$A/src" >"$SCRATCH/f2.out" 2>&1 &
forger2=$!
for i in $(seq 150); do
    [ "$("$PROBE" --prefix "haul.$JOB" depth dead | sed 's/ready=\([0-9]*\).*/\1/')" -ge $((dead0 + 2)) ] && break
    sleep 0.1
done
is "$("$PROBE" --prefix "haul.$JOB" depth dead | sed 's/ready=\([0-9]*\).*/\1/')" $((dead0 + 2)) \
    "that unit and an unsigned one went to the dead-letter queue"
# The coordinator with the other key (a misconfigured one) hears no result; it says where its units went.
for i in $(seq 250); do grep -q "went to the dead-letter queue" "$SCRATCH/f.out" && break; sleep 0.1; done
like "$(cat "$SCRATCH/f.out")" "unit\(s\) went to the dead-letter queue during this run: .*signed with another --key-file" \
    "... and its coordinator says, while it waits, that its units went to the dead-letter queue"
kill "$forger" "$forger2"; wait "$forger" "$forger2" 2>/dev/null
is "$(grep -c "dropping a work unit" "$SCRATCH/wa.log")" 1 "... said once, not once per unit"
ok "$([ -f "$A/src/big" ] && [ -f "$A/src/d/f1" ]; echo $?)" "... and nothing was deleted"
# An unsigned unit straight from the broker.
"$PROBE" --prefix "haul.$JOB" publish 1 --start 77 >/dev/null
for i in $(seq 100); do
    [ "$("$PROBE" --prefix "haul.$JOB" depth dead | sed 's/ready=\([0-9]*\).*/\1/')" -ge $((dead0 + 3)) ] && break
    sleep 0.1
done
is "$("$PROBE" --prefix "haul.$JOB" depth dead | sed 's/ready=\([0-9]*\).*/\1/')" $((dead0 + 3)) \
    "an unsigned unit published on the broker (dist_probe) is dropped too"

run ctl "${B[@]}" stop
wait "$PID_wa"; is "$?" 0 "worker wa exited 0 after a signed ctl stop"
done_testing
