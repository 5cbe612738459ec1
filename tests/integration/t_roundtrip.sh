#!/usr/bin/env bash
# Objects of every boundary size round-trip through haul, and through aws cli
# both ways (what haul writes, aws reads; what aws writes, haul reads).
. "$(dirname "$0")/lib.sh"

run mb "s3://$BUCKET"; ok $RC "mb s3://$BUCKET"

MIB=$((1024 * 1024))
for size in 0 1 $((5 * MIB - 1)) $((5 * MIB + 1)) $((100 * MIB)); do
    f="$SCRATCH/in-$size"
    mkfile "$f" $size
    want=$(sha256sum < "$f" | cut -d' ' -f1)

    run put --part-size 5M "$f" "s3://$BUCKET/haul/$size"
    ok $RC "haul put $size bytes"
    run get "s3://$BUCKET/haul/$size" "$SCRATCH/back-$size"
    ok $RC "haul get $size bytes"
    is "$(sha256sum < "$SCRATCH/back-$size" | cut -d' ' -f1)" "$want" "haul -> haul: $size bytes identical"

    got=$(awscli s3 cp "s3://$BUCKET/haul/$size" - | sha256sum | cut -d' ' -f1)
    is "$got" "$want" "haul put -> aws s3 cp: $size bytes identical"

    awscli s3 cp --quiet "$f" "s3://$BUCKET/aws/$size"
    run get "s3://$BUCKET/aws/$size" "$SCRATCH/fromaws-$size"
    ok $RC "haul get of an aws cli upload, $size bytes"
    is "$(sha256sum < "$SCRATCH/fromaws-$size" | cut -d' ' -f1)" "$want" "aws s3 cp -> haul get: $size bytes identical"
    rm -f "$f" "$SCRATCH/back-$size" "$SCRATCH/fromaws-$size"
done

# Multipart upload: the server's ETag is checked against the parts, and the
# download re-checks every byte against it.
mkfile "$SCRATCH/mp" $((23 * MIB))
run put --json --part-size 5M "$SCRATCH/mp" "s3://$BUCKET/mp"
like "$OUT" '"parts":5' "23 MiB with 5 MiB parts goes as 5 parts"
run get --json "s3://$BUCKET/mp" "$SCRATCH/mp.back"
like "$OUT" '"verified":true' "multipart download verified against the multipart ETag"
cmp -s "$SCRATCH/mp" "$SCRATCH/mp.back"; ok $? "multipart round trip identical"

# Metadata set by haul is read by boto3, and the reverse.
echo "hello" > "$SCRATCH/meta.txt"
run put -m Project=astro -m owner=ana --content-type text/plain --storage-class GLACIER "$SCRATCH/meta.txt" "s3://$BUCKET/meta.txt"
ok $RC "put with metadata, content type and storage class"
got=$(python3 - "$BUCKET" <<'PY'
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
h = s3.head_object(Bucket=sys.argv[1], Key="meta.txt")
print(h["Metadata"].get("project"), h["Metadata"].get("owner"), h["ContentType"], h.get("StorageClass", "STANDARD"))
s3.put_object(Bucket=sys.argv[1], Key="boto.txt", Body=b"from boto3", Metadata={"color": "blue"})
PY
)
is "$got" "astro ana text/plain GLACIER" "boto3 sees haul's metadata, content type and storage class"
run stat --json "s3://$BUCKET/boto.txt"
like "$OUT" '"color":"blue"' "haul stat sees boto3's metadata"
like "$OUT" '"size":10' "haul stat size"
run get "s3://$BUCKET/boto.txt" -
is "$OUT" "from boto3" "haul get to stdout"

# get into a directory keeps the key's name; put to a prefix keeps the file's.
mkdir "$SCRATCH/dir"
run put "$SCRATCH/meta.txt" "s3://$BUCKET/prefix/"
run get "s3://$BUCKET/prefix/meta.txt" "$SCRATCH/dir"
is "$(cat "$SCRATCH/dir/meta.txt")" "hello" "put to a prefix/ and get into a directory"

done_testing
