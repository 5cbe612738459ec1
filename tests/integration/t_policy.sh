#!/usr/bin/env bash
# haul policy: the lifecycle rule that tiers large objects.  Ceph RGW 16.2
# stores the rule WITHOUT its ObjectSizeGreaterThan filter: haul must notice,
# remove the rule again and fail.  No server here keeps the filter, so the
# success path is shown through faultproxy.py (a TEST DOUBLE) answering the
# read-back with the rule as AWS S3 stores it.
. "$(dirname "$0")/lib.sh"

run mb "s3://$BUCKET"; ok $RC "mb"
run policy show "s3://$BUCKET"
ok $RC "policy show on a bucket without rules"
like "$OUT" "has no lifecycle rules" "policy show says there are none"

run policy apply --small-file-threshold 128K --storage-class-large GLACIER "s3://$BUCKET"
is "$RC" 1 "policy apply on RGW: refused"
like "$ERR" "without its ObjectSizeGreaterThan filter, so it would move EVERY object to GLACIER; the rule was removed again" "policy apply explains the dropped filter"
run policy show "s3://$BUCKET"
like "$OUT" "has no lifecycle rules" "the dangerous rule is gone again"

# Other rules are not clobbered without --replace.
python3 - "$BUCKET" <<'PY'
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
s3.put_bucket_lifecycle_configuration(Bucket=sys.argv[1], LifecycleConfiguration={"Rules": [
    {"ID": "site-expire-tmp", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled", "Expiration": {"Days": 7}}]})
PY
run policy apply "s3://$BUCKET"
is "$RC" 2 "policy apply with another rule present: usage error"
like "$ERR" "already has 1 other lifecycle rule" "names the other rule"
run policy show --json "s3://$BUCKET"
like "$OUT" '"id":"site-expire-tmp"' "the site's rule is untouched"

# Success path, through the test double answering the read-back as AWS does.
RULES="$SCRATCH/rules.json"; echo '[]' > "$RULES"
coproc PROXY { exec python3 "$ROOT/tests/integration/faultproxy.py" "${AWS_ENDPOINT_URL##*:}" "$RULES"; }
read -r port <&"${PROXY[0]}"
trap 'kill $PROXY_PID 2>/dev/null; _cleanup' EXIT
aws_rule='<LifecycleConfiguration><Rule><ID>haul-tier-large</ID><Filter><ObjectSizeGreaterThan>131072</ObjectSizeGreaterThan></Filter><Status>Enabled</Status><Transition><Days>0</Days><StorageClass>GLACIER</StorageClass></Transition></Rule></LifecycleConfiguration>'
# First GET (before) sees no rules: answer 404 first, then the AWS form.
python3 - "$RULES" "$aws_rule" <<'PY'
import json, sys
json.dump([{"method": "GET", "match": "lifecycle", "action": "status", "status": 404, "code": "NoSuchLifecycleConfiguration", "times": 1},
           {"method": "GET", "match": "lifecycle", "action": "malformed", "body": sys.argv[2]}], open(sys.argv[1], "w"))
PY
run policy apply --replace --endpoint-url "http://127.0.0.1:$port" "s3://$BUCKET"
ok $RC "policy apply succeeds when the server keeps the size filter"
like "$OUT" "larger than 131072 bytes -> GLACIER" "policy apply reports the rule"
done_testing
