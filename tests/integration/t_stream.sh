#!/usr/bin/env bash
# Pipes of unknown length upload as multipart with bounded memory, and
# downloads stream to stdout in order.
. "$(dirname "$0")/lib.sh"

run mb "s3://$BUCKET"; ok $RC "mb"
MIB=$((1024 * 1024))
mkfile "$SCRATCH/src" $((40 * MIB + 12345))
want=$(sha256sum < "$SCRATCH/src" | cut -d' ' -f1)

out=$(cat "$SCRATCH/src" | "$HAUL" put --json --part-size 6M - "s3://$BUCKET/stream" 2>&1); rc=$?
ok $rc "put from a pipe"
like "$out" '"parts":7' "a 40 MiB pipe goes as 7 parts of 6 MiB"
got=$("$HAUL" get "s3://$BUCKET/stream" - 2>/dev/null | sha256sum | cut -d' ' -f1)
is "$got" "$want" "get to stdout: identical bytes"
got=$(awscli s3 cp "s3://$BUCKET/stream" - | sha256sum | cut -d' ' -f1)
is "$got" "$want" "aws cli reads the streamed upload"

# A small pipe is one PUT.
out=$(echo "tiny" | "$HAUL" put --json - "s3://$BUCKET/tiny"); ok $? "tiny pipe"
like "$out" '"parts":0' "a small pipe is a single PUT"

# Stdout in order for a ranged download with small ranges and many workers.
got=$("$HAUL" get --part-size 5M -j 6 "s3://$BUCKET/stream" - 2>/dev/null | sha256sum | cut -d' ' -f1)
is "$got" "$want" "ranged download to stdout keeps the order"

# A reader that stops early: haul exits with an error, not a crash.
"$HAUL" get "s3://$BUCKET/stream" - 2>"$SCRATCH/err" | head -c 10 >/dev/null
rc=${PIPESTATUS[0]}
is "$rc" 1 "closed stdout: exit 1"
like "$(cat "$SCRATCH/err")" "Broken pipe|writing" "closed stdout: says why"

# Empty stdin makes an empty object.
: | "$HAUL" put -q - "s3://$BUCKET/empty"; ok $? "empty pipe"
run stat --json "s3://$BUCKET/empty"
like "$OUT" '"size":0' "empty pipe gives a 0-byte object"
done_testing
