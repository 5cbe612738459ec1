#!/usr/bin/env bash
# haul diff --check-sha256 by the server's checksum (x-amz-checksum-*, HEAD
# with checksum mode) where no ETag can check the bytes: an SSE-KMS object
# (its ETag is not an MD5) with a SHA-256 checksum, and a multipart upload of
# another tool (no part size recorded) with a full-object CRC32.
#
# TEST DOUBLE: Ceph RGW 16 (the real server of the other tests) keeps no
# checksums, so this file runs against moto_server (an AWS emulator, started
# and stopped here), which keeps them as AWS does.
. "$(dirname "$0")/lib.sh"

MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m moto.server -H 127.0.0.1 -p "$MPORT" > "$SCRATCH/moto.log" 2>&1 &
MOTO_PID=$!
trap 'kill $MOTO_PID 2>/dev/null; _cleanup' EXIT
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$MPORT/" && break
    sleep 0.1
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$MPORT"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 # moto takes any
MB="checksum-$$"
run mb "s3://$MB"; ok $RC "mb on moto"

SRC="$SCRATCH/src"; STATE="$SCRATCH/state"
mkdir -p "$SRC"
mkfile "$SRC/kms.txt" 3000
mkfile "$SRC/big.bin" $((11 * 1024 * 1024))
# (one PUT each: moto answers CompleteMultipartUpload with a root element haul refuses)
run backup --check-sha256 --multipart-threshold 64M --state-dir "$STATE" "$SRC" "s3://$MB/c"
ok $RC "backup"; [ $RC -eq 0 ] || echo "# $ERR" | head -5

# reput KEY FILE FLIP: the object again with the same metadata, its bytes
# flipped (FLIP=1) or not; kms.txt as SSE-KMS with a SHA-256 checksum,
# big.bin multipart in 6 MiB parts with a full-object CRC32 and without
# haul's part size.
reput() {
    python3 - "$MB" "$1" "$2" "$3" <<'PY'
import boto3, os, sys
bucket, key, path, flip = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
meta = s3.head_object(Bucket=bucket, Key=key)["Metadata"]
meta.pop("haul-part-size", None)
data = bytearray(open(path, "rb").read())
if flip:
    data[len(data) // 2] ^= 0x55
if key.endswith(".txt"):
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data), Metadata=meta, ServerSideEncryption="aws:kms",
                  ChecksumAlgorithm="SHA256")
    sys.exit(0)
part = 6 << 20
up = s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata=meta, ChecksumAlgorithm="CRC32",
                                ChecksumType="FULL_OBJECT")["UploadId"]
parts = []
for n, off in enumerate(range(0, len(data), part), 1):
    r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=bytes(data[off:off + part]),
                       ChecksumAlgorithm="CRC32")
    parts.append({"ETag": r["ETag"], "PartNumber": n, "ChecksumCRC32": r["ChecksumCRC32"]})
s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": parts})
PY
}
reput "c/kms.txt" "$SRC/kms.txt" 0; ok $? "kms.txt stored again as SSE-KMS with a SHA-256 checksum"
reput "c/big.bin" "$SRC/big.bin" 0; ok $? "big.bin stored again in 6 MiB parts with a CRC32, no part size"
run diff --check-sha256 --state-dir "$STATE" "$SRC" "s3://$MB/c"
is "$RC" 0 "the same bytes: exit 0"
like "$ERR" "bytes checked against the bucket: 0 by MD5 ETag, 0 by multipart MD5 ETag, 2 by checksum, 0 by download; 0 not verified" \
    "both checked by the server's checksum"

reput "c/kms.txt" "$SRC/kms.txt" 1; ok $? "kms.txt replaced with other bytes"
reput "c/big.bin" "$SRC/big.bin" 1; ok $? "big.bin replaced with other bytes"
run diff --check-sha256 --state-dir "$STATE" "$SRC" "s3://$MB/c"
is "$RC" 1 "other bytes: exit 1"
like "$OUT" "M c/kms.txt \(checksum-sha256\)" "the SSE-KMS object differs by its SHA-256 checksum"
like "$OUT" "M c/big.bin \(checksum-crc32\)" "the multipart object differs by its full-object CRC32"
done_testing
