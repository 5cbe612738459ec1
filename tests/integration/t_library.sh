#!/usr/bin/env bash
# The library API: examples/haul_stream.c (built by make) streams an object in
# and out with libhaul.a; a failed or abandoned write leaves nothing behind.
# Also the sizes a production tool once failed on (32-80 MB with small parts).
. "$(dirname "$0")/lib.sh"
EX="$(dirname "$HAUL")/examples/haul_stream"

run mb "s3://$BUCKET"; ok $RC "mb"
MIB=$((1024 * 1024))
mkfile "$SCRATCH/in" $((37 * MIB + 7))
want=$(sha256sum < "$SCRATCH/in" | cut -d' ' -f1)

"$EX" put "s3://$BUCKET/lib" < "$SCRATCH/in"; ok $? "library: stream stdin into an object"
got=$("$EX" get "s3://$BUCKET/lib" | sha256sum | cut -d' ' -f1)
is "$got" "$want" "library: stream the object back, identical"
got=$("$HAUL" get "s3://$BUCKET/lib" - | sha256sum | cut -d' ' -f1)
is "$got" "$want" "haul get reads what the library wrote"

# Reading a missing object fails at open with the key named.
err=$("$EX" get "s3://$BUCKET/missing" 2>&1 >/dev/null); rc=$?
is "$rc" 1 "library: missing object fails"
like "$err" "s3://$BUCKET/missing: not found" "library: missing object named"

# Input that cannot be read: the example calls haul_abort; no object appears.
"$EX" put "s3://$BUCKET/aborted" < "$SCRATCH" 2>/dev/null
is "$?" 1 "library: unreadable input fails"
run stat "s3://$BUCKET/aborted"
is "$RC" 1 "library: haul_abort leaves no object"

# A writer that dies before haul_close never creates the object (the upload
# is only completed by haul_close).
"$EX" put "s3://$BUCKET/killed" < /dev/urandom & pid=$!
for _ in $(seq 1 100); do
    n=$(python3 - "$BUCKET" <<'PY'
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
print(len(s3.list_multipart_uploads(Bucket=sys.argv[1]).get("Uploads", [])))
PY
)
    [ "$n" -ge 1 ] && break; sleep 0.1
done
kill -TERM $pid; wait $pid 2>/dev/null
run stat "s3://$BUCKET/killed"
is "$RC" 1 "a writer killed before haul_close created no object"
run rb --force "s3://$BUCKET"
ok $RC "rb --force removes a bucket holding an unfinished multipart upload"
run mb "s3://$BUCKET"

# 32-80 MB with 5 MiB parts: every part but the last is at least 5 MiB
# (one of them read with O_DIRECT: aligned reads, a short last block).
for size in 32000000 48000001 80000000; do
    mkfile "$SCRATCH/s" $size
    direct=""; [ $size = 48000001 ] && direct="--direct"
    run put --part-size 5M --json $direct "$SCRATCH/s" "s3://$BUCKET/s$size"
    ok $RC "put of $size bytes with 5 MiB parts $direct"
    got=$("$HAUL" get "s3://$BUCKET/s$size" - | sha256sum | cut -d' ' -f1)
    is "$got" "$(sha256sum < "$SCRATCH/s" | cut -d' ' -f1)" "$size bytes identical"
done
done_testing
