# tests/integration/lib.sh: TAP helpers for haul's end-to-end tests, sourced
# by each t_*.sh.  Each test file runs in its own process (prove), against the
# real local S3 server (scripts/s3-server), in its own bucket and scratch dir.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HAUL=${HAUL:-$ROOT/build/haul}
TEST_NAME=$(basename "$0" .sh)
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/haul-$TEST_NAME.XXXXXX")
_n=0
_failed=0

eval "$("$ROOT/scripts/s3-server" env)"
# Tests must never reach the network: only the loopback server above.
case "$AWS_ENDPOINT_URL" in http://127.0.0.1:*) ;; *) echo "Bail out! endpoint $AWS_ENDPOINT_URL is not loopback"; exit 1;; esac
export HOME="$SCRATCH/home"; mkdir -p "$HOME"   # no stray ~/.aws from the machine

# A fresh bucket per test file, removed with everything in it at exit.
BUCKET="t-$(echo "$TEST_NAME" | tr '_' '-' | tr -cd 'a-z0-9-' | cut -c1-40)-$$"

_cleanup() {
    "$HAUL" rb --force -q "s3://$BUCKET" >/dev/null 2>&1 || true
    rm -rf "$SCRATCH"
}
trap _cleanup EXIT

# A failure's diagnostics (the description, which often carries a command's
# output, then got/expected) also go to stderr, as Test::More's do: prove
# shows stderr even when not verbose, so a CI log says why a test failed.
_diag() { printf '%s\n' "$@" | sed 's/^/# /' >&2; }
ok() {   # ok CONDITION-EXIT-CODE DESCRIPTION
    _n=$((_n + 1))
    if [ "$1" -eq 0 ]; then echo "ok $_n - $2"
    else echo "not ok $_n - $2"; _diag "  Failed test $_n - $2"; _failed=$((_failed + 1)); fi
}
is() {   # is GOT EXPECTED DESCRIPTION
    _n=$((_n + 1))
    if [ "$1" = "$2" ]; then echo "ok $_n - $3"
    else echo "not ok $_n - $3"; echo "#   got:      '$1'"; echo "#   expected: '$2'"
        _diag "  Failed test $_n - $3" "  got:      '$1'" "  expected: '$2'"; _failed=$((_failed + 1)); fi
}
like() { # like TEXT REGEX DESCRIPTION
    _n=$((_n + 1))
    if printf '%s' "$1" | grep -Eq -- "$2"; then echo "ok $_n - $3"
    else echo "not ok $_n - $3"; echo "#   text:    '$1'"; echo "#   pattern: '$2'"
        _diag "  Failed test $_n - $3" "  text:    '$1'" "  pattern: '$2'"; _failed=$((_failed + 1)); fi
}
done_testing() { echo "1..$_n"; [ "$_failed" -eq 0 ]; }

# Runs haul, keeping stdout in $OUT, stderr in $ERR and the exit code in $RC.
run() {
    OUT=$("$HAUL" "$@" 2>"$SCRATCH/.err"); RC=$?
    ERR=$(cat "$SCRATCH/.err")
}
# free_port: a TCP port on 127.0.0.1 nothing listens on, below the kernel's
# ephemeral range (32768 and up), so that no outgoing connection of another
# process takes it between this check and the listener's bind.
free_port() {
    python3 - <<'PY'
import random, socket
for _ in range(200):
    port = random.randint(20000, 32000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit("no free port")
PY
}

# Random bytes of a given size into a file.
mkfile() { head -c "$2" /dev/urandom > "$1"; }
# aws cli v1 (on PATH) against the local server, quiet.
awscli() { aws --endpoint-url "$AWS_ENDPOINT_URL" "$@"; }

# carbon_start: a Graphite receiver (tests/integration/carbon.py) on a free
# loopback port: CARBON_PORT, CARBON_PID; lines in $SCRATCH/carbon.good,
# lines breaking the protocol in $SCRATCH/carbon.bad.
carbon_start() {
    rm -f "$SCRATCH/carbon.port"
    : > "$SCRATCH/carbon.good"; : > "$SCRATCH/carbon.bad"
    python3 "$ROOT/tests/integration/carbon.py" "$SCRATCH/carbon.port" "$SCRATCH/carbon.good" "$SCRATCH/carbon.bad" &
    CARBON_PID=$!
    for _ in $(seq 1 250); do [ -s "$SCRATCH/carbon.port" ] && break; sleep 0.02; done
    CARBON_PORT=$(cat "$SCRATCH/carbon.port")
}
# carbon_last METRIC WANT: the last value received for METRIC, once it is
# WANT or after 5 s (the final report is sent as the command ends, and may
# still be on its way when the command has exited)
carbon_last() {
    local got=""
    for _ in $(seq 1 250); do
        got=$(grep "^$1 " "$SCRATCH/carbon.good" | tail -1 | cut -d' ' -f2)
        [ "$got" = "$2" ] && break
        sleep 0.02
    done
    echo "$got"
}
carbon_stop() { kill "$CARBON_PID"; wait "$CARBON_PID" 2>/dev/null; }
