#!/usr/bin/env bash
# haul takes its settings where AWS users keep them: ~/.aws/credentials and
# ~/.aws/config profiles, AWS_PROFILE, --profile, S3_ENDPOINT_URL, AWS_CA_BUNDLE.
# (Signing with AWS_SESSION_TOKEN is proven by the SigV4 unit tests: RGW
# accepts any token for plain keys, so it cannot show it here.)
. "$(dirname "$0")/lib.sh"

run mb "s3://$BUCKET"; ok $RC "mb"
mkdir -p "$HOME/.aws"
cat > "$HOME/.aws/credentials" <<EOT
[default]
aws_access_key_id = $AWS_ACCESS_KEY_ID
aws_secret_access_key = $AWS_SECRET_ACCESS_KEY

[broken]
aws_access_key_id = $AWS_ACCESS_KEY_ID
aws_secret_access_key = not-the-secret
EOT
cat > "$HOME/.aws/config" <<EOT
[default]
region = us-east-1
endpoint_url = $AWS_ENDPOINT_URL

[profile broken]
region = us-east-1
s3 =
  endpoint_url = $AWS_ENDPOINT_URL
EOT

out=$(env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_ENDPOINT_URL "$HAUL" ls "s3://$BUCKET" 2>&1); rc=$?
is "$rc" 0 "credentials and endpoint from ~/.aws (default profile)"
out=$(env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_ENDPOINT_URL AWS_PROFILE=broken "$HAUL" ls "s3://$BUCKET" 2>&1); rc=$?
is "$rc" 1 "AWS_PROFILE selects the broken profile"
like "$out" "SignatureDoesNotMatch" "the broken profile's secret was used (endpoint from its nested s3 section)"
out=$("$HAUL" ls --profile broken "s3://$BUCKET" 2>&1); rc=$?
is "$rc" 1 "--profile overrides the environment's keys"
out=$(env -u AWS_ENDPOINT_URL S3_ENDPOINT_URL="$AWS_ENDPOINT_URL" HOME=/nonexistent "$HAUL" ls "s3://$BUCKET" 2>&1); rc=$?
is "$rc" 0 "S3_ENDPOINT_URL names the endpoint"
out=$(env -u AWS_ENDPOINT_URL HOME=/nonexistent "$HAUL" ls --endpoint-url "$AWS_ENDPOINT_URL" "s3://$BUCKET" 2>&1); rc=$?
is "$rc" 0 "--endpoint-url names the endpoint"
out=$(AWS_CA_BUNDLE=/nonexistent/ca.pem "$HAUL" ls "s3://$BUCKET" 2>&1); rc=$?
is "$rc" 0 "AWS_CA_BUNDLE is ignored for an http endpoint"
done_testing
