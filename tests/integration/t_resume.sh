#!/usr/bin/env bash
# An upload killed halfway (SIGKILL) is resumed by rerunning the same
# command: only the parts the server lacks are sent, and the object is
# identical.  A source changed in between starts over cleanly.  The kill
# point is made deterministic by faultproxy.py (a TEST DOUBLE in front of the
# real server) holding one part's request unanswered.
. "$(dirname "$0")/lib.sh"

run mb "s3://$BUCKET"; ok $RC "mb"
RULES="$SCRATCH/rules.json"; LOG="$RULES.log"
echo '[]' > "$RULES"
coproc PROXY { exec python3 "$ROOT/tests/integration/faultproxy.py" "${AWS_ENDPOINT_URL##*:}" "$RULES"; }
read -r port <&"${PROXY[0]}"
trap 'kill $PROXY_PID 2>/dev/null; _cleanup' EXIT
P="--endpoint-url http://127.0.0.1:$port"
STATE="$SCRATCH/state"
MIB=$((1024 * 1024))
mkfile "$SCRATCH/big" $((60 * MIB))   # 12 parts of 5 MiB

uploads() {
    python3 - "$BUCKET" <<'PY'
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
print(len(s3.list_multipart_uploads(Bucket=sys.argv[1]).get("Uploads", [])))
PY
}
parts_on_server() {
    python3 - "$BUCKET" <<'PY'
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
u = s3.list_multipart_uploads(Bucket=sys.argv[1])["Uploads"][0]
print(len(s3.list_parts(Bucket=sys.argv[1], Key=u["Key"], UploadId=u["UploadId"]).get("Parts", [])))
PY
}
# Waits (bounded) until the proxy has seen a request matching $1.
wait_for_request() {
    for _ in $(seq 1 600); do grep -q -- "$1" "$LOG" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}

kill_midway() {  # starts an upload that hangs on part 7 and kills it there
    : > "$LOG"
    echo '[{"method":"PUT","match":"partNumber=7&","action":"hang"}]' > "$RULES"
    "$HAUL" put $P -q --part-size 5M -j 2 --state-dir "$STATE" "$SCRATCH/big" "s3://$BUCKET/big" &
    pid=$!
    wait_for_request "partNumber=7&"; ok $? "upload reached part 7"
    # Let the other sender finish what it has in flight, then kill hard.
    for _ in $(seq 1 100); do [ "$(grep -c 'PUT.*partNumber' "$LOG")" -ge 8 ] && break; sleep 0.1; done
    kill -9 $pid; wait $pid 2>/dev/null
    echo '[]' > "$RULES"
}

kill_midway
is "$(ls "$STATE/uploads" | grep -c '\.upload$')" 1 "the killed upload left its journal"
is "$(uploads)" 1 "the killed upload is still open on the server"
have=$(parts_on_server)
[ "$have" -ge 1 ] && [ "$have" -lt 12 ]; ok $? "some parts ($have of 12) reached the server before the kill"

: > "$LOG"
run put $P --json --part-size 5M --state-dir "$STATE" "$SCRATCH/big" "s3://$BUCKET/big"
ok $RC "rerun of the same command succeeds"
is "$(grep -c 'PUT.*partNumber' "$LOG")" $((12 - have)) "the rerun sent only the $((12 - have)) missing parts"
like "$OUT" "\"parts_resumed\":$have" "the summary counts the resumed parts"
"$HAUL" get -q "s3://$BUCKET/big" "$SCRATCH/big.back"
cmp -s "$SCRATCH/big" "$SCRATCH/big.back"; ok $? "the resumed object is identical"
is "$(uploads)" 0 "no multipart upload left behind"
is "$(ls "$STATE/uploads" | grep -c '\.upload$')" 0 "journal removed after completion"

# The source changes between the kill and the rerun: start over, cleanly.
kill_midway
mkfile "$SCRATCH/big" $((60 * MIB))
: > "$LOG"
run put $P --json --part-size 5M --state-dir "$STATE" "$SCRATCH/big" "s3://$BUCKET/big"
ok $RC "rerun after the source changed succeeds"
like "$OUT" '"parts_resumed":0' "a changed source resumes nothing"
is "$(grep -c 'PUT.*partNumber' "$LOG")" 12 "a changed source sends all 12 parts"
"$HAUL" get -q "s3://$BUCKET/big" "$SCRATCH/big.back"
cmp -s "$SCRATCH/big" "$SCRATCH/big.back"; ok $? "the object holds the new content"
is "$(uploads)" 0 "the stale upload was aborted"

# A file that changes while it is being read is refused, nothing stored.
mkfile "$SCRATCH/moving" $((30 * MIB))
echo "[{\"method\":\"PUT\",\"match\":\"partNumber=2&\",\"action\":\"hold\",\"until\":\"$SCRATCH/go\"}]" > "$RULES"
: > "$LOG"
( wait_for_request "partNumber=2&" && echo more >> "$SCRATCH/moving" && touch "$SCRATCH/go" ) &
writer=$!
run put $P --no-resume --part-size 5M -j 2 "$SCRATCH/moving" "s3://$BUCKET/moving"
wait $writer
is "$RC" 1 "a file growing during the upload: exit 1"
like "$ERR" "changed while being read" "a file growing during the upload: says so"
run stat "s3://$BUCKET/moving"
is "$RC" 1 "a file growing during the upload: no object stored"
is "$(uploads)" 0 "a file growing during the upload: upload aborted"
# Ctrl-C (SIGINT) or SIGTERM in the middle of an upload: the part in flight
# is interrupted, the parts sent and the journal are kept, exit 128 + the
# signal, and the same command resumes, sending only what is missing.
interrupted_run() {  # SIGNAL EXIT: put of $SCRATCH/int hanging on part 5, interrupted there
    echo '[{"method":"PUT","match":"partNumber=5&","action":"hang"}]' > "$RULES"
    : > "$LOG"
    "$HAUL" put $P -q --part-size 5M -j 2 --state-dir "$STATE" "$SCRATCH/int" "s3://$BUCKET/int" 2>"$SCRATCH/int.err" &
    pid=$!
    wait_for_request "partNumber=5&"; ok $? "$1: upload reached part 5"
    # Let the other sender finish what it has in flight (bounded), then signal.
    for _ in $(seq 1 100); do [ "$(grep -c 'PUT.*partNumber' "$LOG")" -ge 6 ] && break; sleep 0.1; done
    kill -"$1" $pid; wait $pid; rc=$?
    echo '[]' > "$RULES"
    is "$rc" "$2" "$1: exit $2"
    like "$(cat "$SCRATCH/int.err")" "interrupted; the parts sent are kept, run the same command again" "$1: says the parts are kept"
    is "$(grep -c . "$SCRATCH/int.err")" 1 "$1: one line on stderr"
    is "$(uploads)" 1 "$1: the upload is still open on the server"
    is "$(ls "$STATE/uploads" | grep -c '\.upload$')" 1 "$1: the journal is kept"
    run stat "s3://$BUCKET/int"
    is "$RC" 1 "$1: no object yet"
}
mkfile "$SCRATCH/int" $((64 * MIB))   # 13 parts of 5 MiB
interrupted_run INT 130
have=$(parts_on_server)
[ "$have" -ge 4 ] && [ "$have" -lt 13 ]; ok $? "SIGINT: $have of 13 parts are on the server"
: > "$LOG"
run put $P --json --part-size 5M --state-dir "$STATE" "$SCRATCH/int" "s3://$BUCKET/int"
ok $RC "SIGINT: the rerun succeeds"
like "$OUT" "\"parts_resumed\":$have" "SIGINT: the rerun resumed the $have parts on the server"
is "$(grep -c 'PUT.*partNumber' "$LOG")" $((13 - have)) "SIGINT: the rerun sent only the $((13 - have)) missing parts"
"$HAUL" get -q "s3://$BUCKET/int" "$SCRATCH/int.back"
cmp -s "$SCRATCH/int" "$SCRATCH/int.back"; ok $? "SIGINT: the resumed object is intact"
is "$(uploads)" 0 "SIGINT: no multipart upload left after the rerun"
is "$(ls "$STATE/uploads" | grep -c '\.upload$')" 0 "SIGINT: journal removed after completion"

# SIGTERM, then the clean-up path: haul rm --uploads aborts the kept upload
# and removes its journal.
"$HAUL" rm -q "s3://$BUCKET/int"
interrupted_run TERM 143
run rm --uploads --state-dir "$STATE" "s3://$BUCKET/in"
is "$(uploads)" 1 "rm --uploads s3://B/in leaves the upload of key int (not under in/)"
run rm --uploads --state-dir "$STATE" "s3://$BUCKET/int"
ok $RC "rm --uploads s3://B/int"
like "$OUT" "abort upload: s3://$BUCKET/int .*its journal removed" "rm --uploads says what it aborted"
is "$(uploads)" 0 "rm --uploads: no multipart upload left"
is "$(ls "$STATE/uploads" | grep -c '\.upload$')" 0 "rm --uploads: the journal is removed"
run put $P --json --part-size 5M --state-dir "$STATE" "$SCRATCH/int" "s3://$BUCKET/int"
like "$OUT" '"parts_resumed":0' "after rm --uploads the next put starts over"
done_testing
