#!/usr/bin/env bash
# Failures the real server cannot produce on demand come from faultproxy.py, a
# TEST DOUBLE between haul and RGW: 503 SlowDown, a connection reset midway
# through a download, a dropped connection, a malformed listing, an upload
# whose parts keep failing (it must be aborted, leaving no multipart upload),
# a backup --delete refused as a whole or for one key (the index keeps what
# was not deleted, so the next run deletes it).
. "$(dirname "$0")/lib.sh"

run mb "s3://$BUCKET"; ok $RC "mb"
RULES="$SCRATCH/rules.json"
echo '[]' > "$RULES"
upstream_port=${AWS_ENDPOINT_URL##*:}
coproc PROXY { exec python3 "$ROOT/tests/integration/faultproxy.py" "$upstream_port" "$RULES"; }
read -r port <&"${PROXY[0]}"
trap 'kill $PROXY_PID 2>/dev/null; _cleanup' EXIT
P="--endpoint-url http://127.0.0.1:$port"
MIB=$((1024 * 1024))
mkfile "$SCRATCH/f" $((12 * MIB))

echo '[{"method":"PUT","action":"status","status":503,"code":"SlowDown","times":2}]' > "$RULES"
run put $P --json "$SCRATCH/f" "s3://$BUCKET/slowdown"
ok $RC "503 SlowDown twice: the upload still succeeds"
like "$OUT" '"retries":[1-9]' "503 SlowDown: retries are counted"
"$HAUL" get -q "s3://$BUCKET/slowdown" "$SCRATCH/back"; cmp -s "$SCRATCH/f" "$SCRATCH/back"; ok $? "after SlowDown retries the object is intact"

echo '[{"method":"PUT","action":"status","status":503,"code":"SlowDown"}]' > "$RULES"
run put $P --max-attempts 3 "$SCRATCH/f" "s3://$BUCKET/always503"
is "$RC" 1 "503 on every try: exit 1 after the last attempt"
like "$ERR" "SlowDown.*HTTP 503" "503 on every try: names SlowDown"
run stat "s3://$BUCKET/always503"
is "$RC" 1 "503 on every try: no object was created"
python3 - "$BUCKET" <<'PY' > "$SCRATCH/uploads"
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
print(len(s3.list_multipart_uploads(Bucket=sys.argv[1]).get("Uploads", [])))
PY
is "$(cat "$SCRATCH/uploads")" 0 "failed multipart upload was aborted (ListMultipartUploads is empty)"

echo '[{"method":"GET","match":"slowdown","action":"reset","after":300000,"times":2}]' > "$RULES"
run get $P --json "s3://$BUCKET/slowdown" "$SCRATCH/reset"
ok $RC "connection reset midway through GETs: download succeeds"
cmp -s "$SCRATCH/f" "$SCRATCH/reset"; ok $? "after resets the bytes are identical"
like "$OUT" '"retries":[1-9]' "resets were retried"

echo '[{"method":"HEAD","action":"drop","times":1}]' > "$RULES"
run stat $P "s3://$BUCKET/slowdown"
ok $RC "a connection dropped before the answer is retried"

echo '[{"method":"GET","match":"list-type=2","action":"malformed","body":"<ListBucketResult><Contents><Key>k</Key><Size>abc</Size></Contents></ListBucketResult>"}]' > "$RULES"
run ls $P "s3://$BUCKET"
is "$RC" 1 "malformed listing: exit 1"
like "$ERR" "Size" "malformed listing: says what was wrong"

echo '[{"method":"GET","match":"list-type=2","action":"malformed","body":"<<<not xml"}]' > "$RULES"
run ls $P "s3://$BUCKET"
is "$RC" 1 "listing that is not XML: exit 1"

echo '[{"method":"GET","action":"status","status":500,"code":"InternalError","times":1}]' > "$RULES"
run get $P "s3://$BUCKET/slowdown" "$SCRATCH/after500"
ok $RC "one 500 InternalError is retried"
echo '[]' > "$RULES"

# backup --delete whose DeleteObjects is refused as a whole: exit 1, nothing
# counted as deleted, the object still there, and the next run (the fault
# gone) still deletes it: the index forgets nothing it did not delete.
# ("stay" stays: a DIR left empty would be refused before any delete, see
# t_hostile_delete.sh.)
T=$SCRATCH/tree; mkdir -p "$T"; mkfile "$T/keep" 100; mkfile "$T/gone" 100; mkfile "$T/stay" 100
ST="--state-dir $SCRATCH/state"
run backup $P $ST --json "$T" "s3://$BUCKET/del"
is "$RC" 0 "backup through the proxy"
rm "$T/gone"
echo '[{"method":"POST","match":"delete","action":"status","status":403,"code":"AccessDenied"}]' > "$RULES"
run backup $P $ST --json --delete "$T" "s3://$BUCKET/del"
is "$RC" 1 "--delete refused by the server: exit 1"
like "$ERR" "DeleteObjects s3://$BUCKET.*AccessDenied" "... saying which request and why"
is "$(echo "$OUT" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])["deleted"])')" 0 \
    "... counting nothing as deleted"
echo '[]' > "$RULES"
run stat $P "s3://$BUCKET/del/gone"
is "$RC" 0 "... the object is still there"
run backup $P $ST --json --delete "$T" "s3://$BUCKET/del"
is "$RC" 0 "the next run, the fault gone, exits 0"
run stat $P "s3://$BUCKET/del/gone"
is "$RC" 1 "... and deletes the object"
# The same when the answer names one key as failed (the body replaced after
# the request went through: the server did delete it).
rm "$T/keep"
echo '[{"method":"POST","match":"delete","action":"malformed","body":"<DeleteResult><Error><Key>del/keep</Key><Code>InternalError</Code><Message>try again</Message></Error></DeleteResult>"}]' > "$RULES"
run backup $P $ST --json --delete "$T" "s3://$BUCKET/del"
is "$RC" 1 "a key DeleteObjects reports failed: exit 1"
like "$ERR" "DeleteObjects s3://$BUCKET/del/keep: InternalError: try again" "... naming the key and the code"
echo '[]' > "$RULES"
run backup $P $ST --json --delete "$T" "s3://$BUCKET/del"
is "$(echo "$OUT" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])["deleted"])')" 1 \
    "the next run deletes it again (the index kept the key)"
done_testing
