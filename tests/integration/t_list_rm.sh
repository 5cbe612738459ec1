#!/usr/bin/env bash
# Listings page through more than 1000 keys; rm --recursive deletes them in
# DeleteObjects batches; mb/rb.
. "$(dirname "$0")/lib.sh"

run mb "s3://$BUCKET"; ok $RC "mb"
# 1,205 small objects written by boto3 (quicker than 1,205 processes).
python3 - "$BUCKET" <<'PY'
import boto3, os, sys
from concurrent.futures import ThreadPoolExecutor
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
keys = ["many/%04d" % i for i in range(1200)] + ["other/%d" % i for i in range(5)]
with ThreadPoolExecutor(16) as ex:
    list(ex.map(lambda k: s3.put_object(Bucket=sys.argv[1], Key=k, Body=k.encode()), keys))
PY
ok $? "1205 objects written by boto3"

run ls --recursive "s3://$BUCKET/many/"
is "$(echo "$OUT" | wc -l)" 1200 "ls --recursive pages past 1000 keys"
is "$(echo "$OUT" | awk '{print $NF}' | sort -u | wc -l)" 1200 "no key listed twice"
run ls --recursive --summarize "s3://$BUCKET"
like "$OUT" "Total Objects: 1205" "summarize counts every object"

run rm --recursive --dry-run "s3://$BUCKET/other/"
is "$(echo "$OUT" | grep -c '(dry run) delete')" 5 "dry run lists what it would delete"
run ls --recursive "s3://$BUCKET/other/"
is "$(echo "$OUT" | wc -l)" 5 "dry run deletes nothing"

run rm --recursive --json "s3://$BUCKET/many/"
ok $RC "rm --recursive"
is "$OUT" '{"deleted":1200,"failed":0}' "rm --recursive reports 1200 deleted"
run ls --recursive "s3://$BUCKET/many/"
is "$OUT" "" "prefix is empty afterwards"
run ls --recursive "s3://$BUCKET/other/"
is "$(echo "$OUT" | wc -l)" 5 "other prefix untouched"

run ls
like "$OUT" " $BUCKET\$" "ls without a URL lists buckets"
run rb --force "s3://$BUCKET"
ok $RC "rb --force empties and removes the bucket"
run ls
ok $(echo "$OUT" | grep -c " $BUCKET\$") "bucket gone from the list"
done_testing
