#!/usr/bin/env bash
# A hostile or broken S3 side (issue 12 items 8, 10, 11): a missing bucket,
# refused credentials or an unreachable endpoint stop backup, restore and
# diff after one message; an endpoint that stops answering midway stops the
# run after 8 stalls in a row (--stall-timeout), nothing half-recorded, and
# the next run finishes; a backup interrupted by SIGINT keeps its multipart
# upload for the rerun; a repeated continuation token, a 2xx answer over
# 4 MiB and a lost CompleteMultipartUpload answer are handled.  Faults the
# real server cannot make come from faultproxy.py, a TEST DOUBLE in front of
# the real RGW.
. "$(dirname "$0")/lib.sh"

run mb "s3://$BUCKET"; ok $RC "mb"
RULES="$SCRATCH/rules.json"; LOG="$RULES.log"
echo '[]' > "$RULES"
coproc PROXY { exec python3 "$ROOT/tests/integration/faultproxy.py" "${AWS_ENDPOINT_URL##*:}" "$RULES"; }
read -r port <&"${PROXY[0]}"
trap 'kill $PROXY_PID 2>/dev/null; _cleanup' EXIT
P="--endpoint-url http://127.0.0.1:$port"
MIB=$((1024 * 1024))
lines() { printf '%s' "$1" | grep -c .; }
json_field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])[sys.argv[1]])' "$1"; }
uploads() {
    python3 - "$BUCKET" <<'PY'
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
print(len(s3.list_multipart_uploads(Bucket=sys.argv[1]).get("Uploads", [])))
PY
}
wait_for_request() {  # bounded: until the proxy has seen a request matching $1
    for _ in $(seq 1 300); do grep -q -- "$1" "$LOG" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}

# 2,000 small files in 20 directories.
T="$SCRATCH/tree"
python3 - "$T" <<'PY'
import os, sys
for d in range(20):
    os.makedirs(os.path.join(sys.argv[1], "d%02d" % d))
    for f in range(100):
        with open(os.path.join(sys.argv[1], "d%02d" % d, "f%03d" % f), "w") as fh:
            fh.write("%d/%d\n" % (d, f))
PY
ENTRIES=2021   # 2,000 files, 20 directories and the prefix's own marker

# ---- bucket-level failures: one message, exit 1, fast --------------------
bucket_level() {  # DESCRIPTION PATTERN COMMAND...: at most 3 stderr lines, exit 1, within 30 s
    local what=$1 pattern=$2; shift 2
    local t0=$SECONDS
    OUT=$(timeout 30 "$HAUL" "$@" 2>"$SCRATCH/.err"); RC=$?
    ERR=$(cat "$SCRATCH/.err")
    is "$RC" 1 "$what: exit 1"
    ok "$([ "$(lines "$ERR")" -le 3 ] && echo 0 || echo 1)" "$what: at most 3 lines on stderr (got $(lines "$ERR"))"
    like "$ERR" "$pattern" "$what: the message names the cause"
    ok "$([ $((SECONDS - t0)) -le 20 ] && echo 0 || echo 1)" "$what: done in $((SECONDS - t0)) s"
}
ST="--state-dir $SCRATCH/state"
bucket_level "backup to a missing bucket" "NoSuchBucket" backup $ST "$T" "s3://$BUCKET-missing/p"
AWS_SECRET_ACCESS_KEY=wrong-secret bucket_level "backup with a wrong secret" \
    "SignatureDoesNotMatch.*check AWS_SECRET_ACCESS_KEY" backup $ST "$T" "s3://$BUCKET/p"
AWS_ACCESS_KEY_ID=NOSUCHKEY0000000000 bucket_level "backup with an unknown access key" \
    "InvalidAccessKeyId" backup $ST "$T" "s3://$BUCKET/p"
# (The first request is the index marker's HEAD, then a listing tells the
# bucket's failure from the object's: either names the endpoint.)
bucket_level "backup to an unreachable endpoint" \
    "s3://$BUCKET: cannot reach http://127.0.0.1:1 on 8 requests in a row .*; stopping|s3://$BUCKET(/p/.haul/index-id|/)?: Failed to connect to 127.0.0.1 port 1.*endpoint http://127.0.0.1:1" \
    backup $ST --endpoint-url http://127.0.0.1:1 "$T" "s3://$BUCKET/p"
run ls "s3://$BUCKET/p/"
is "$OUT" "" "nothing was stored by the failed runs"

# ---- a stall midway: 8 stalls in a row stop the run -------------------------
# The proxy passes 301 PUTs (the first writes the index's marker,
# PREFIX/.haul/index-id), then accepts and never answers.
echo '[{"method":"PUT","action":"pass","times":301},{"method":"PUT","action":"hang"}]' > "$RULES"
: > "$LOG"
t0=$SECONDS
OUT=$(timeout 60 "$HAUL" backup $P $ST --json --stall-timeout 1 "$T" "s3://$BUCKET/p" 2>"$SCRATCH/.err"); RC=$?
ERR=$(cat "$SCRATCH/.err")
is "$RC" 1 "stalled endpoint: exit 1"
is "$ERR" "haul backup: s3://$BUCKET: no answer from http://127.0.0.1:$port for 1 s on 8 requests in a row; stopping" \
    "stalled endpoint: one message naming the endpoint, the stall time and the count"
ok "$([ $((SECONDS - t0)) -le 15 ] && echo 0 || echo 1)" "stalled endpoint: stopped in $((SECONDS - t0)) s"
first=$(echo "$OUT" | json_field uploaded)
is "$first" 300 "stalled endpoint: exactly the 300 answered objects count as uploaded"
echo '[]' > "$RULES"
: > "$LOG"
run backup $P $ST --json "$T" "s3://$BUCKET/p"
is "$RC" 0 "the next run, the server answering again, exits 0"
is "$(echo "$OUT" | json_field uploaded)" $((ENTRIES - first)) "... uploading only the $((ENTRIES - first)) entries the stalled run did not confirm"
run restore "s3://$BUCKET/p" --into "$SCRATCH/back"
ok $RC "restore of the finished backup"
diff -r "$T" "$SCRATCH/back" >/dev/null; ok $? "... the restored tree matches"

# ---- object-level refusals are the objects' own (issue 12 item 8) ---------
# A policy denying PutObject under q/deny/ only: 30 refusals in a row stop
# nothing (a bucket listing, once per streak, is answered), each key gets
# its line, the 100 other files are uploaded on the first run.
# (The others sit deeper, so the walk reaches them after the denied ones.)
Q="$SCRATCH/qtree"; mkdir -p "$Q/deny" "$Q/ok/a/b"
for i in $(seq -w 1 30); do echo "d$i" > "$Q/deny/f$i"; done
for i in $(seq -w 1 100); do echo "o$i" > "$Q/ok/a/b/f$i"; done
echo '[{"method":"PUT","match":"/q/deny/","action":"status","status":403,"code":"AccessDenied"}]' > "$RULES"
: > "$LOG"
OUT=$(timeout 60 "$HAUL" backup $P --state-dir "$SCRATCH/qstate" "$Q" "s3://$BUCKET/q" 2>"$SCRATCH/.err"); RC=$?
ERR=$(cat "$SCRATCH/.err")
echo '[]' > "$RULES"
is "$RC" 1 "30 object-level AccessDenied: exit 1"
ok "$(grep -q "in a row" "$SCRATCH/.err" && echo 1 || echo 0)" "... the run is not stopped"
is "$(grep -c "s3://$BUCKET/q/deny/f[0-9]*: AccessDenied" "$SCRATCH/.err")" 30 "... each denied key has its line"
count_keys() {
    python3 - "$BUCKET" "$1" <<'PY'
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
n = 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[1], Prefix=sys.argv[2]):
    n += len(page.get("Contents", []))
print(n)
PY
}
is "$(count_keys q/ok/a/b/f)" 100 "... every other file is uploaded"

# ---- a short blip: each request's own retries ride it out -------------------
# The first 10 PUTs of files (16 workers at once) have their connection dropped
# unanswered; counting failed attempts would stop the run.
echo '[{"method":"PUT","match":"/blip/f","action":"drop","times":10}]' > "$RULES"
: > "$LOG"
run backup $P --state-dir "$SCRATCH/bstate" --num-smallfile-workers 16 "$Q/ok/a/b" "s3://$BUCKET/blip"
echo '[]' > "$RULES"
is "$RC" 0 "10 connections dropped at once: the backup exits 0"
is "$(grep -c -- '-> drop' "$LOG")" 10 "... after 10 dropped requests"
is "$(count_keys blip/f)" 100 "... every file is uploaded"

# restore and diff: the listing works, then every GET / HEAD stalls.
echo '[{"method":"GET","match":"list-type","action":"pass"},{"method":"GET","action":"hang"},{"method":"HEAD","action":"hang"}]' > "$RULES"
t0=$SECONDS
OUT=$(timeout 60 "$HAUL" restore $P --stall-timeout 1 "s3://$BUCKET/p" "$SCRATCH/back2" 2>"$SCRATCH/.err"); RC=$?
ERR=$(cat "$SCRATCH/.err")
is "$RC" 1 "restore from a stalled endpoint: exit 1"
like "$ERR" "no answer from http://127.0.0.1:$port for 1 s on 8 requests in a row; stopping" "... says why"
ok "$([ "$(lines "$ERR")" -le 3 ] && [ $((SECONDS - t0)) -le 15 ] && echo 0 || echo 1)" \
    "... at most 3 lines, in $((SECONDS - t0)) s"
t0=$SECONDS
OUT=$(timeout 60 "$HAUL" diff $P --stall-timeout 1 "$T" "s3://$BUCKET/p" 2>"$SCRATCH/.err"); RC=$?
ERR=$(cat "$SCRATCH/.err" | grep -v '^diff: ')
is "$RC" 2 "diff against a stalled endpoint: exit 2 (trouble, as diff(1))"
like "$ERR" "no answer from http://127.0.0.1:$port for 1 s on 8 requests in a row; stopping" "... says why"
ok "$([ "$(lines "$ERR")" -le 3 ] && [ $((SECONDS - t0)) -le 15 ] && echo 0 || echo 1)" \
    "... at most 3 lines, in $((SECONDS - t0)) s"
echo '[]' > "$RULES"

# Ctrl-C on a backup whose requests hang: it stops at once, exit 130, one
# line, no entry counted as failed.
echo '[{"method":"PUT","action":"pass","times":100},{"method":"PUT","action":"hang"}]' > "$RULES"
: > "$LOG"
"$HAUL" backup $P --state-dir "$SCRATCH/istate" --json "$T" "s3://$BUCKET/p2" >"$SCRATCH/i.out" 2>"$SCRATCH/i.err" &
pid=$!
wait_for_request "PUT.* -> hang"; ok $? "backup: requests hang"
t0=$SECONDS
kill -INT $pid; wait $pid; rc=$?
echo '[]' > "$RULES"
is "$rc" 130 "backup interrupted while requests hang: exit 130"
ok "$([ $((SECONDS - t0)) -le 5 ] && echo 0 || echo 1)" "... at once ($((SECONDS - t0)) s)"
is "$(cat "$SCRATCH/i.err")" "haul backup: interrupted; run the same command again to go on" "... one line"
is "$(json_field errors < "$SCRATCH/i.out")" 0 "... no entry counted as failed"

# ---- SIGINT during a backup's large file ------------------------------------
L="$SCRATCH/large"; mkdir -p "$L"; mkfile "$L/big" $((40 * MIB)); echo small > "$L/small"
LS="--state-dir $SCRATCH/lstate"
echo '[{"method":"PUT","match":"partNumber=4&","action":"hang"}]' > "$RULES"
: > "$LOG"
"$HAUL" backup $P $LS --part-size 5M -j 2 "$L" "s3://$BUCKET/l" >/dev/null 2>"$SCRATCH/int.err" &
pid=$!
wait_for_request "partNumber=4&"; ok $? "backup: the large file reached part 4"
for _ in $(seq 1 100); do [ "$(grep -c 'PUT.*partNumber' "$LOG")" -ge 5 ] && break; sleep 0.1; done
kill -INT $pid; wait $pid; rc=$?
echo '[]' > "$RULES"
is "$rc" 130 "backup interrupted by SIGINT: exit 130"
is "$(cat "$SCRATCH/int.err")" "haul backup: interrupted; run the same command again to go on" \
    "... one line, no entry reported as failed"
is "$(uploads)" 1 "... the multipart upload is kept"
is "$(ls "$SCRATCH/lstate/uploads" | grep -c '\.upload$')" 1 "... and its journal"
sent=$(grep -c 'PUT.*partNumber' "$LOG")
: > "$LOG"
run backup $P $LS --part-size 5M -v "$L" "s3://$BUCKET/l"
ok $RC "the rerun succeeds"
like "$ERR" "s3://$BUCKET/l/big: resuming upload" "... resuming the kept upload"
ok "$([ "$(grep -c 'PUT.*partNumber' "$LOG")" -lt 8 ] && echo 0 || echo 1)" \
    "... sending $(grep -c 'PUT.*partNumber' "$LOG") of the 8 parts (the first run had sent $sent)"
"$HAUL" get -q "s3://$BUCKET/l/big" "$SCRATCH/big.back"
cmp -s "$L/big" "$SCRATCH/big.back"; ok $? "... the object is intact"
is "$(uploads)" 0 "... no multipart upload left"

# A stream from stdin has no journal to resume from: on SIGINT its upload
# is aborted (nothing left to bill), exit 130.
echo '[{"method":"PUT","match":"partNumber=2&","action":"hang"}]' > "$RULES"
: > "$LOG"
head -c $((20 * MIB)) /dev/urandom > "$SCRATCH/stream"
"$HAUL" put $P -q --part-size 5M - "s3://$BUCKET/stream" < "$SCRATCH/stream" 2>"$SCRATCH/stream.err" &
pid=$!
wait_for_request "partNumber=2&"; ok $? "stdin put: reached part 2"
kill -INT $pid; wait $pid; rc=$?
echo '[]' > "$RULES"
is "$rc" 130 "stdin put interrupted by SIGINT: exit 130"
is "$(uploads)" 0 "... its upload (no journal) is aborted"

# ---- listings and CompleteMultipartUpload (audit L8) ------------------------
echo '[{"method":"GET","match":"list-type=2","action":"malformed","body":"<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>again</NextContinuationToken><Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>"}]' > "$RULES"
OUT=$(timeout 20 "$HAUL" ls $P "s3://$BUCKET/" 2>"$SCRATCH/.err"); RC=$?
ERR=$(cat "$SCRATCH/.err")
is "$RC" 1 "a repeated continuation token: exit 1, no endless loop"
like "$ERR" "same continuation token twice" "... says so"

python3 - "$RULES" <<'PY'
import json, sys
body = "<ListBucketResult>" + "<Contents><Key>%s</Key><Size>1</Size></Contents>" % ("k" * 1000) * 5000 + "</ListBucketResult>"
json.dump([{"method": "GET", "match": "list-type=2", "action": "malformed", "body": body}], open(sys.argv[1], "w"))
PY
run ls $P "s3://$BUCKET/"
is "$RC" 1 "a listing answer over 4 MiB: exit 1"
like "$ERR" "ListObjectsV2 s3://$BUCKET/: the answer is over 4194304 bytes" "... says it was cut, not that it is malformed"

# ListParts repeating its marker while a killed upload is taken up: the
# upload starts over instead of listing forever.
mkfile "$SCRATCH/k" $((20 * MIB))
echo '[{"method":"PUT","match":"partNumber=3&","action":"hang"}]' > "$RULES"
: > "$LOG"
"$HAUL" put $P -q --part-size 5M -j 1 --state-dir "$SCRATCH/kstate" "$SCRATCH/k" "s3://$BUCKET/k" 2>/dev/null &
pid=$!
wait_for_request "partNumber=3&"; ok $? "an upload reached part 3"
kill -9 $pid; wait $pid 2>/dev/null
echo '[{"method":"GET","match":"uploadId=","action":"malformed","body":"<ListPartsResult><IsTruncated>true</IsTruncated><NextPartNumberMarker>1</NextPartNumberMarker><Part><PartNumber>1</PartNumber><ETag>\"00000000000000000000000000000000\"</ETag><Size>5242880</Size></Part></ListPartsResult>"}]' > "$RULES"
OUT=$(timeout 30 "$HAUL" put $P -v --json --part-size 5M --state-dir "$SCRATCH/kstate" "$SCRATCH/k" "s3://$BUCKET/k" 2>"$SCRATCH/.err"); RC=$?
ERR=$(cat "$SCRATCH/.err")
echo '[]' > "$RULES"
is "$RC" 0 "ListParts repeating its marker: the put still succeeds, no endless loop"
like "$ERR" "part marker 1 does not advance past 1" "... saying why the upload was not resumed"
like "$OUT" '"parts_resumed":0' "... starting over"
"$HAUL" get -q "s3://$BUCKET/k" "$SCRATCH/k.back"
cmp -s "$SCRATCH/k" "$SCRATCH/k.back"; ok $? "... the object is intact"

# ListMultipartUploads repeating its markers: rm --uploads fails, no endless loop.
echo '[{"method":"GET","match":"uploads","action":"malformed","body":"<ListMultipartUploadsResult><IsTruncated>true</IsTruncated><NextKeyMarker>a</NextKeyMarker><NextUploadIdMarker>b</NextUploadIdMarker></ListMultipartUploadsResult>"}]' > "$RULES"
OUT=$(timeout 20 "$HAUL" rm $P --uploads "s3://$BUCKET" 2>"$SCRATCH/.err"); RC=$?
ERR=$(cat "$SCRATCH/.err")
echo '[]' > "$RULES"
is "$RC" 1 "ListMultipartUploads repeating its markers: exit 1, no endless loop"
like "$ERR" "ListMultipartUploads s3://$BUCKET: the server gave the same markers twice" "... says so"

# The first CompleteMultipartUpload reaches the server but its answer is
# lost; the retry is answered NoSuchUpload (as AWS does): HEAD shows the
# parts' ETag, so the put succeeded.
mkfile "$SCRATCH/m" $((12 * MIB))
echo '[{"method":"POST","match":"uploadId=","action":"reset","after":0,"times":1},
       {"method":"POST","match":"uploadId=","action":"status","status":404,"code":"NoSuchUpload","times":1}]' > "$RULES"
: > "$LOG"
run put $P --no-resume --part-size 5M "$SCRATCH/m" "s3://$BUCKET/m"
echo '[]' > "$RULES"
is "$RC" 0 "CompleteMultipartUpload answer lost, retry answered NoSuchUpload: put succeeds"
is "$(grep -c 'POST.*uploadId=' "$LOG")" 2 "... after one retry"
"$HAUL" get -q "s3://$BUCKET/m" "$SCRATCH/m.back"
cmp -s "$SCRATCH/m" "$SCRATCH/m.back"; ok $? "... the object is intact"
is "$(uploads)" 0 "... no multipart upload left"

# ---- restore scratch files on a shared state directory (audit L9) -----------
RS="$SCRATCH/rstate"; mkdir -p "$RS"
host=$(hostname | tr -c 'A-Za-z0-9.\n' '_')
dead=$(sh -c 'echo $$')   # a pid that just ended
touch "$RS/restore-$dead-aaaaaa.db" "$RS/restore-otherhost-$dead-bbbbbb.db" "$RS/restore-$host-$dead-cccccc.db"
run restore --state-dir "$RS" "s3://$BUCKET/l" "$SCRATCH/rback"
ok $RC "restore with a shared state directory"
[ -e "$RS/restore-otherhost-$dead-bbbbbb.db" ]; ok $? "... another host's scratch file is left alone"
[ -e "$RS/restore-$dead-aaaaaa.db" ]; ok $? "... a scratch file of unknown host is left alone"
[ ! -e "$RS/restore-$host-$dead-cccccc.db" ]; ok $? "... this host's file of a dead process is removed"

# ---- the upload journal's directory is synced after the rename (audit L9) ---
if command -v strace >/dev/null; then
    mkfile "$SCRATCH/j" $((6 * MIB))
    strace -f -y -e trace=fsync,rename -o "$SCRATCH/strace" \
        "$HAUL" put -q --part-size 5M --state-dir "$SCRATCH/jstate" "$SCRATCH/j" "s3://$BUCKET/j"
    like "$(grep -A3 'rename(.*\.upload\.tmp' "$SCRATCH/strace")" "fsync\([0-9]+</[^>]*/jstate/uploads>\) = 0" \
        "journal_save fsyncs the uploads directory after the rename"
fi
done_testing
