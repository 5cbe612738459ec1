#!/usr/bin/env bash
# Wrong credentials, a missing bucket or key, an unreachable endpoint, a
# missing file and bad usage each give one clear line and the documented
# exit code (0 ok, 1 failed, 2 usage).
. "$(dirname "$0")/lib.sh"

run mb "s3://$BUCKET"; ok $RC "mb"
echo data > "$SCRATCH/f"

AWS_SECRET_ACCESS_KEY=wrong-secret run put "$SCRATCH/f" "s3://$BUCKET/k"
is "$RC" 1 "wrong secret: exit 1"
like "$ERR" "^haul put: PutObject s3://$BUCKET/k: SignatureDoesNotMatch.*check AWS_SECRET_ACCESS_KEY" "wrong secret: names the object, the S3 code and the fix"
is "$(echo "$ERR" | wc -l)" 1 "wrong secret: one line"

AWS_ACCESS_KEY_ID=NOSUCHKEY0000000000 run ls "s3://$BUCKET"
is "$RC" 1 "unknown access key: exit 1"
like "$ERR" "InvalidAccessKeyId.*check AWS_ACCESS_KEY_ID" "unknown access key: S3 code and the fix"

run put "$SCRATCH/f" "s3://no-such-bucket-$$/k"
is "$RC" 1 "missing bucket: exit 1"
like "$ERR" "s3://no-such-bucket-$$/k: NoSuchBucket" "missing bucket: named with the S3 code"

run get "s3://$BUCKET/missing-key" "$SCRATCH/out"
is "$RC" 1 "missing key: exit 1"
like "$ERR" "s3://$BUCKET/missing-key: not found \(HTTP 404" "missing key: named"
[ ! -e "$SCRATCH/out" ]; ok $? "missing key: no local file created"
ls -A "$SCRATCH" | grep -q haul-; ok $((! $?)) "missing key: no temporary file left"

start=$(date +%s)
run ls --endpoint-url http://127.0.0.1:1 --max-attempts 2 "s3://$BUCKET"
is "$RC" 1 "unreachable endpoint: exit 1"
like "$ERR" "ListObjectsV2 s3://$BUCKET/: .*(Connection refused|connect).*endpoint http://127.0.0.1:1" "unreachable endpoint: names the endpoint and cause"

run put "$SCRATCH/no-such-file" "s3://$BUCKET/k"
is "$RC" 1 "missing local file: exit 1"
like "$ERR" "no-such-file: No such file or directory" "missing local file: named"

AWS_ACCESS_KEY_ID= AWS_SECRET_ACCESS_KEY= run ls "s3://$BUCKET"
is "$RC" 1 "no credentials: exit 1"
like "$ERR" "no credentials: set AWS_ACCESS_KEY_ID" "no credentials: says where to put them"

run put "$SCRATCH/f"
is "$RC" 2 "missing argument: exit 2"
run put --no-such-option "$SCRATCH/f" "s3://$BUCKET/k"
is "$RC" 2 "unknown option: exit 2"
like "$ERR" "unknown option '--no-such-option'" "unknown option named"
run put "$SCRATCH/f" "not-an-s3-url"
is "$RC" 2 "bad URL: exit 2"
run put --part-size 1M "$SCRATCH/f" "s3://$BUCKET/k"
is "$RC" 2 "part size under 5 MiB: exit 2"
like "$ERR" "at least 5M" "part size under 5 MiB: explains the S3 minimum"
run frobnicate
is "$RC" 2 "unknown command: exit 2"

for c in put get ls stat rm mb rb; do
    run $c --help
    is "$RC" 0 "$c --help exits 0"
    like "$OUT" "^usage: haul $c" "$c --help prints its usage"
done
run --help; is "$RC" 0 "haul --help exits 0"

run rb "s3://$BUCKET-missing"
is "$RC" 1 "rb of a missing bucket: exit 1"
echo x | "$HAUL" put - "s3://$BUCKET/keep" >/dev/null
run rb "s3://$BUCKET"
is "$RC" 1 "rb of a non-empty bucket without --force: exit 1"
like "$ERR" "BucketNotEmpty" "rb names BucketNotEmpty"
done_testing
