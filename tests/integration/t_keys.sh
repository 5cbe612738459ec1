#!/usr/bin/env bash
# Keys with spaces, unicode and the characters URLs treat specially work in
# every call, and other clients see the same keys.
. "$(dirname "$0")/lib.sh"

run mb "s3://$BUCKET"; ok $RC "mb"
echo "payload" > "$SCRATCH/p"
keys=("with space.txt" "ünïcødé/日本語.dat" "plus+percent%question?hash#.bin" "tilde~equals=amp&.x"
      "dir/../dot-dot-stays-literal" "semi;colon,comma'quote\"(paren)" "trailing space " "a//double/slash")
for k in "${keys[@]}"; do
    run put "$SCRATCH/p" "s3://$BUCKET/$k"
    ok $RC "put key '$k'"
    run get "s3://$BUCKET/$k" -
    is "$OUT" "payload" "get key '$k'"
    run stat "s3://$BUCKET/$k"
    ok $RC "stat key '$k'"
done

# aws cli lists exactly the keys haul wrote.
want=$(printf '%s\n' "${keys[@]}" | sort)
got=$(python3 - "$BUCKET" <<'PY'
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
for o in s3.list_objects_v2(Bucket=sys.argv[1])["Contents"]:
    print(o["Key"])
PY
)
is "$(echo "$got" | sort)" "$want" "boto3 lists the same keys haul wrote"
run ls --recursive --json "s3://$BUCKET"
got=$(echo "$OUT" | python3 -c 'import json,sys; [print(json.loads(l)["key"]) for l in sys.stdin]' | sort)
is "$got" "$want" "haul ls --json lists every key exactly"

# A prefix with unicode and a delimiter listing.
run ls "s3://$BUCKET/ünïcødé/"
like "$OUT" '日本語\.dat' "ls under a unicode prefix"
run ls "s3://$BUCKET"
like "$OUT" 'PRE +dir/' "ls without --recursive groups at /"

# Virtual-host addressing (bucket in the host name; RGW is set up for *.localhost).
VH="--endpoint-url http://localhost:${AWS_ENDPOINT_URL##*:} --addressing-style virtual"
run put $VH --debug "$SCRATCH/p" "s3://$BUCKET/vhost/a b.txt"
ok $RC "virtual-host put"
like "$ERR" "PUT http://$BUCKET\.localhost:[0-9]+/vhost/a%20b\.txt -> 200" "virtual-host put sends the bucket in the host name"
run get $VH "s3://$BUCKET/vhost/a b.txt" -
is "$OUT" "payload" "virtual-host get"
run rm $VH "s3://$BUCKET/vhost/a b.txt"; ok $RC "virtual-host rm"
run ls --debug "s3://$BUCKET/ünïcødé/"
like "$ERR" "GET http://127\.0\.0\.1:[0-9]+/$BUCKET\?" "path style by default for a custom endpoint"

run rm "s3://$BUCKET/plus+percent%question?hash#.bin"
ok $RC "rm a key with +%?#"
run stat "s3://$BUCKET/plus+percent%question?hash#.bin"
is "$RC" 1 "the removed key is gone"
done_testing
