#!/usr/bin/env bash
# haul diff checks what the bucket really holds (issue 12 items 3, 4, 9):
# --check-sha256 finds an object replaced with same-size different bytes and
# the same metadata (single-part by its MD5 ETag, multipart by the ETag
# rebuilt at the recorded part size) without a GET; --download finds the
# one no ETag can check; the summary counts each method; a link object whose
# target is gone is a difference; keys the backup index records but the
# bucket lacks are reported.
. "$(dirname "$0")/lib.sh"

run mb "s3://$BUCKET"; ok $RC "mb"
SRC="$SCRATCH/src"; STATE="$SCRATCH/state"; P="v"
mkdir -p "$SRC/h"
mkfile "$SRC/one.txt" 3000
mkfile "$SRC/two.txt" 5000
mkfile "$SRC/big.bin" $((11 * 1024 * 1024))
mkfile "$SRC/h/x" 4000
ln "$SRC/h/x" "$SRC/h/y"
run backup --check-sha256 --part-size 5M --state-dir "$STATE" "$SRC" "s3://$BUCKET/$P"
ok $RC "backup (big.bin multipart in 5 MiB parts, h/x and h/y one inode)"

# The summary of a --json run, as "md5 multipart checksum download unverified sha256-only".
methods() {
    printf '%s\n' "$OUT" | python3 -c '
import json, sys
for l in sys.stdin:
    try: j = json.loads(l)
    except ValueError: continue
    if j.get("kind") == "summary":
        c = j["checked_by"]
        print(c["md5"], c["multipart_md5"], c["checksum"], c["download"], j["unverified"], j["sha256_metadata_only"])'
}
# GETs of objects under the prefix in a --debug run's stderr (the listing is a GET of the bucket).
object_gets() { printf '%s\n' "$ERR" | grep -cE "GET http://[^ ]*/$BUCKET/$P/" ; }

run diff --debug --json --check-sha256 --state-dir "$STATE" "$SRC" "s3://$BUCKET/$P"
is "$RC" 0 "diff --check-sha256 of the fresh backup: exit 0"
is "$(methods)" "3 1 0 0 0 0" "3 files checked by MD5 ETag, big.bin by multipart ETag, none unverified"
like "$OUT" '"links_checked":1' "the link object's target was checked"
is "$(object_gets)" 0 "no object is downloaded without --download"

# Replace objects in the bucket with other bytes of the same size, keeping
# every piece of metadata (so size, mtime and haul's sha256 all still match).
# replace KEY FILE [PART_SIZE [DROP_META]]: PART_SIZE > 0 uploads multipart.
replace() {
    python3 - "$BUCKET" "$1" "$2" "${3:-0}" "${4:-}" <<'PY'
import boto3, os, sys
bucket, key, path, part, drop = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
meta = s3.head_object(Bucket=bucket, Key=key)["Metadata"]
if drop:
    meta.pop(drop, None)
data = bytearray(open(path, "rb").read())
for off in range(0, len(data), 1 << 20):
    data[off] ^= 0x55                     # other bytes, same size
if not part:
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data), Metadata=meta)
    sys.exit(0)
up = s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata=meta)["UploadId"]
parts = []
for n, off in enumerate(range(0, len(data), part), 1):
    r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=bytes(data[off:off + part]))
    parts.append({"ETag": r["ETag"], "PartNumber": n})
s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": parts})
PY
}

replace "$P/one.txt" "$SRC/one.txt"; ok $? "one.txt replaced (single PUT, same size and metadata)"
replace "$P/big.bin" "$SRC/big.bin" $((5 * 1024 * 1024)); ok $? "big.bin replaced (multipart in 5 MiB parts, same metadata)"
run diff --state-dir "$STATE" "$SRC" "s3://$BUCKET/$P"
is "$RC" 0 "size and mtime cannot see the replaced objects"
run diff --debug --check-sha256 --state-dir "$STATE" "$SRC" "s3://$BUCKET/$P"
is "$RC" 1 "diff --check-sha256 finds them: exit 1"
like "$OUT" "^M $P/one.txt \(md5\)" "the single-part object differs by its MD5 ETag"
like "$OUT" "M $P/big.bin \(multipart-md5\)" "the multipart object differs by its ETag rebuilt at the recorded part size"
like "$ERR" "bytes checked against the bucket: 3 by MD5 ETag, 1 by multipart MD5 ETag, 0 by checksum, 0 by download; 0 not verified" \
    "the summary counts each method"
is "$(object_gets)" 0 "still no object downloaded"

# Multipart in 6 MiB parts by another tool, without haul's part size: no
# ETag can check it, haul's own sha256 metadata (copied) still matches.
replace "$P/big.bin" "$SRC/big.bin" $((6 * 1024 * 1024)) haul-part-size; ok $? "big.bin replaced in 6 MiB parts, part size not recorded"
run diff --json --check-sha256 --state-dir "$STATE" "$SRC" "s3://$BUCKET/$P"
is "$(methods)" "3 0 0 0 1 1" "big.bin is not verified (sha256 metadata only)"
like "$OUT" "\"kind\":\"unverified\",\"key\":\"$P/big.bin\",\"why\":\"multipart ETag without a recorded part size" \
    "--json lists it with the reason"
run diff -v --check-sha256 --state-dir "$STATE" "$SRC" "s3://$BUCKET/$P"
like "$OUT" "\? $P/big.bin \(multipart ETag without a recorded part size" "-v lists it too"
like "$ERR" "1 not verified \(1 by haul's sha256 metadata only\)" "the summary says it was not verified"
run diff --debug --json --download --state-dir "$STATE" "$SRC" "s3://$BUCKET/$P"
is "$RC" 1 "diff --download: exit 1"
like "$OUT" "\"kind\":\"changed\",\"key\":\"$P/big.bin\",\"why\":\"bytes\"" "--download finds the object no ETag can check"
like "$OUT" "\"kind\":\"changed\",\"key\":\"$P/one.txt\",\"why\":\"bytes\"" "and the single-part one"
is "$(methods)" "0 0 0 4 0 0" "4 objects read back"
is "$(object_gets)" 4 "one GET per regular file, none for the link object"

# A link object whose target is gone: the holder removed locally and from
# the bucket (what backup --delete did at 000c418, audit H2).
if [ -n "$("$HAUL" stat "s3://$BUCKET/$P/h/y" 2>/dev/null | grep -i hardlink)" ]; then
    link=h/y; holder=h/x
else
    link=h/x; holder=h/y
fi
rm "$SRC/$holder"
"$HAUL" rm -q "s3://$BUCKET/$P/$holder"
run diff --state-dir "$STATE" "$SRC" "s3://$BUCKET/$P"
is "$RC" 1 "a dangling link object is a difference: exit 1"
like "$OUT" "^! $P/$link \(hard link to $P/$holder, which the bucket lacks\)" "it names both keys"
like "$ERR" "1 hard-link object" "the summary counts it"

# The backup index still records the holder the bucket lacks.
like "$OUT" "^I $P/$holder \(index says stored, bucket lacks\)" "the index's key the bucket lacks is listed"
like "$ERR" "index says stored, bucket lacks: 1; run backup --rescan-remote" "the summary says how to fix it"
run diff --json --state-dir "$SCRATCH/other-state" "$SRC" "s3://$BUCKET/$P"
like "$OUT" '"index_checked":false,"index_only":0' "without that state dir no index is compared"

# Audit M4: a FIFO renamed over a file between the walk and the open never
# hangs diff --check-sha256.  nobody swaps 200 file/FIFO pairs
# (RENAME_EXCHANGE) for at most 60 s on the CPU where diff runs niced, so
# diff is often preempted between its stat and its open; diff runs up to 6
# times (a hang: 20 s without an answer; a run takes 1-6 s) and stops at
# the first hang.
F="$SCRATCH/fifo"; mkdir -p "$F/u"
for i in $(seq 0 199); do echo "data $i" > "$F/u/f$i"; mkfifo "$F/u/l$i"; done
chown -R nobody "$F/u"; chmod o+x "$SCRATCH" "$F"   # nobody reaches u/
run backup -q --state-dir "$STATE" "$F" "s3://$BUCKET/fifo"; ok $RC "backup of the files (the FIFOs are skipped)"
cat > "$SCRATCH/swap.c" <<'C'
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
/* swap DIR N SECONDS STOPFILE: exchanges DIR/fI and DIR/lI (I < N) in turn
 * until SECONDS passed or STOPFILE exists. */
int main(int argc, char **argv)
{
    if (argc != 5)
        return 2;
    int n = atoi(argv[2]), dfd = open(argv[1], O_RDONLY | O_DIRECTORY);
    time_t end = time(NULL) + atoi(argv[3]);
    char a[32], b[32];
    for (long k = 0; dfd >= 0; k++) {
        snprintf(a, sizeof a, "f%ld", k % n);
        snprintf(b, sizeof b, "l%ld", k % n);
        renameat2(dfd, a, dfd, b, RENAME_EXCHANGE);
        if (k % 4096 == 0 && (time(NULL) >= end || access(argv[4], F_OK) == 0))
            break;
    }
    return 0;
}
C
cc -O2 -o "$SCRATCH/swap" "$SCRATCH/swap.c"; ok $? "the racer builds"
taskset -c 0 runuser -u nobody -- "$SCRATCH/swap" "$F/u" 200 60 "$SCRATCH/swap.stop" &
SWAP=$!
hung=0; runs=0; start=$SECONDS
while [ $hung -eq 0 ] && [ $runs -lt 6 ] && [ $((SECONDS - start)) -lt 40 ]; do
    timeout 20 taskset -c 0 nice -n 19 "$HAUL" diff -q --check-sha256 --state-dir "$STATE" "$F" "s3://$BUCKET/fifo" \
        >/dev/null 2>>"$SCRATCH/fifo.err"
    [ $? -eq 124 ] && hung=1
    runs=$((runs + 1))
done
touch "$SCRATCH/swap.stop"; wait $SWAP
met=$(grep -c "not a regular file" "$SCRATCH/fifo.err")
is "$hung" 0 "no diff --check-sha256 run hung on a FIFO swapped in ($runs runs, $met opens met one)"
done_testing
