#!/usr/bin/env bash
# haul daemon and haul send: the s3daemon TCP protocol, the Unix socket with
# descriptor passing and its uid allow list, 200 concurrent senders, the
# journal surviving kill -9, hostile input, status, pause, clean shutdown.
# Needs root (to run a daemon as nobody); everything on 127.0.0.1.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ]; then echo "1..0 # SKIP needs root to run the daemon as another user"; exit 0; fi

run mb "s3://$BUCKET"; ok $RC "mb s3://$BUCKET"
chmod 711 "$SCRATCH"   # nobody may traverse to its own directory, no more
PORT=$(free_port)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; _cleanup' EXIT

# Polls a condition (a shell command) up to ~20 s.
wait_for() { for _ in $(seq 200); do eval "$1" && return 0; sleep 0.1; done; return 1; }
md5() { md5sum < "$1" | cut -d' ' -f1; }
obj_md5() { "$HAUL" get -q "s3://$BUCKET/$1" - 2>/dev/null | md5sum | cut -d' ' -f1; }
# Starts a daemon in the background: DAEMON_PID, socket $1, more options after.
start_daemon() {
    local sock=$1; shift
    "$@" &
    DAEMON_PID=$!
    PIDS+=("$DAEMON_PID")
    wait_for "[ -S '$sock' ]"
}
status_of() { "$HAUL" daemon --socket "$1" status 2>&1; }
field() { printf '%s\n' "$1" | awk -v k="$2" '$1 == k {print $2}'; }

# ---- 1. the s3daemon TCP protocol --------------------------------------
S1="$SCRATCH/root.sock"
LOG1="$SCRATCH/daemon1.log"
start_daemon "$S1" "$HAUL" daemon --socket "$S1" --state-dir "$SCRATCH/state1" --tcp --tcp-host 127.0.0.1 \
    --tcp-port "$PORT" --log "$LOG1" --read-timeout 2 2>"$SCRATCH/daemon1.err"
ok $? "daemon starts, socket appears"
is "$(stat -c %a "$S1")" "600" "socket is mode 0600"

tcp_send() { # tcp_send BYTES-AS-PYTHON-LITERAL -> prints the reply (or RESET)
    python3 - "$PORT" "$1" <<'PY'
import socket, sys
data = eval(sys.argv[2])  # test-authored expressions only
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
try:
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    print(out.decode("utf-8", "replace"))
except (ConnectionResetError, BrokenPipeError):
    print("RESET")
PY
}

mkfile "$SCRATCH/tcp.bin" 3000000
got=$(tcp_send "b'$SCRATCH/tcp.bin alias/$BUCKET/tcp/dir/file.bin\\n'")
is "$got" "Success" "TCP client gets Success"
is "$(obj_md5 tcp/dir/file.bin)" "$(md5 "$SCRATCH/tcp.bin")" "TCP upload is byte-identical (key with slashes)"
mkfile "$SCRATCH/big.bin" $((40 * 1024 * 1024))
got=$(tcp_send "b'$SCRATCH/big.bin x/$BUCKET/tcp/big.bin\\r\\n'")
is "$got" "Success" "TCP upload of 40 MiB (multipart through the streaming engine), CRLF line"
is "$(awscli s3 cp "s3://$BUCKET/tcp/big.bin" - | md5sum | cut -d' ' -f1)" "$(md5 "$SCRATCH/big.bin")" "40 MiB object identical (read back with aws cli)"

# ---- 5. malformed requests: answered (or closed), daemon keeps serving ---
got=$(tcp_send "b'$SCRATCH/tcp.bin alias/$BUCKET/no-newline'")
like "$got" "^Error: request ended without a newline" "no newline then close: error reply"
got=$(tcp_send "b'A' * (1024 * 1024)")
is "$got" "Error: request line longer than 8191 bytes" "1 MB of garbage: error reply"
got=$(tcp_send "b'$SCRATCH/tcp.bin nodest\\n'")
like "$got" "^Error: .*not ALIAS/BUCKET/KEY" "bad DEST: error reply"
got=$(tcp_send "b'$SCRATCH/tcp.bin alias/Bad_Bucket/k\\n'")
like "$got" "^Error: .*not a valid bucket name" "bad bucket name: error reply"
got=$(tcp_send "b'$SCRATCH/missing alias/$BUCKET/k\\n'")
like "$got" "^Error: .*missing: No such file or directory" "missing file: error reply"
got=$(tcp_send "b'$SCRATCH/tcp.bin\\x00evil alias/$BUCKET/k\\n'")
like "$got" "^Error: request holds a NUL byte" "NUL byte: error reply"
got=$(tcp_send "b'relative.bin alias/$BUCKET/k\\n'")
like "$got" "^Error: .*absolute path" "relative FILENAME: error reply"
got=$(tcp_send "b'/dev/zero alias/$BUCKET/k\\n'")
like "$got" "^Error: .*not a regular file" "a device: error reply"
# A client that never sends a line does not block others, and times out.
got=$(python3 - "$PORT" "$SCRATCH/tcp.bin" "$BUCKET" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
idle = socket.create_connection(("127.0.0.1", port))
idle.sendall(b"/partial/line/never/ended")
good = socket.create_connection(("127.0.0.1", port), timeout=20)
good.sendall(("%s a/%s/after-idle\n" % (sys.argv[2], sys.argv[3])).encode())
print(good.recv(100).decode(), end=" ")
idle.settimeout(20)
print(idle.recv(200).decode())
PY
)
like "$got" "^Success Error: no request line within 2000 ms$" "an idle client does not block a good one, and is timed out"
is "$(obj_md5 after-idle)" "$(md5 "$SCRATCH/tcp.bin")" "the request after the hostile ones arrived intact"
# The Unix socket's own protocol, spoken badly.
got=$(python3 - "$S1" <<'PY'
import socket, sys
for msg in (b"GET / HTTP/1.0\n", b"HAUL/1 SEND WAIT bucket-x key /abs/path\n", b"HAUL/1 STATUS 5 extra\n"):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(msg)
    print(s.recv(300).decode().strip())
PY
)
like "$got" "ERROR not a haul/1 request" "Unix socket: garbage gets ERROR"
like "$got" "ERROR no file descriptor came with the request" "Unix socket: SEND without a descriptor gets ERROR"
like "$got" "ERROR unknown request" "Unix socket: malformed STATUS gets ERROR"
# Over --max-clients: answered at once with an error, not left hanging.
run daemon run --socket "$SCRATCH/x.sock" --state-dir "$SCRATCH/state1"
is "$RC" "1" "a second daemon on the same state directory is refused (exit 1)"
like "$ERR" "another haul daemon uses the state directory" "... with a clear message"
run daemon --socket "$SCRATCH/y.sock" --state-dir "$SCRATCH/statey" --tcp --tcp-host 0.0.0.0 --tcp-port "$PORT"
is "$RC" "2" "a non-loopback TCP address is refused (exit 2)"
like "$ERR" "is not a loopback address" "... saying why"
S3DAEMON_HOST=192.0.2.1 "$HAUL" daemon --socket "$SCRATCH/y.sock" --state-dir "$SCRATCH/statey" --tcp 2>"$SCRATCH/e"
is "$?" "2" "a non-loopback S3DAEMON_HOST is refused"

# ---- haul send over the Unix socket, and --no-wait ---------------------
export HAUL_DAEMON_SOCKET="$S1"
mkfile "$SCRATCH/a.bin" 12345
run send "$SCRATCH/a.bin" "s3://$BUCKET/send/a.bin"
is "$RC:$OUT:$ERR" "0::" "haul send: exit 0, no output"
is "$(obj_md5 send/a.bin)" "$(md5 "$SCRATCH/a.bin")" "haul send: object identical"
run send "$SCRATCH/a.bin" "alias/$BUCKET/send/alias-form"
ok $RC "haul send accepts ALIAS/BUCKET/KEY"
run send "$SCRATCH/missing" "s3://$BUCKET/x"
is "$RC" "1" "haul send of a missing file: exit 1"
like "$ERR" "missing: No such file or directory" "... with the reason on stderr"
run send "$SCRATCH/a.bin" "s3://no-such-bucket-$$/x"
is "$RC" "1" "upload failure: exit 1"
like "$ERR" "NoSuchBucket|not found" "... with the server's reason"
run send "$SCRATCH/a.bin"
is "$RC" "2" "haul send with one argument: usage error, exit 2"
run send "$SCRATCH/a.bin" "s3://$BUCKET/x" --socket "$SCRATCH/nothing.sock"
is "$RC" "1" "no daemon on the socket: exit 1"
like "$ERR" "no haul daemon listening" "... saying so"

# ---- 3. 200 concurrent haul send ---------------------------------------
mkdir "$SCRATCH/many"
for i in $(seq 200); do head -c $((1000 + i * 97)) /dev/urandom > "$SCRATCH/many/f$i"; done
pids=()
for i in $(seq 200); do "$HAUL" send "$SCRATCH/many/f$i" "s3://$BUCKET/many/f$i" 2>>"$SCRATCH/many.err" & pids+=($!); done
fails=0
for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
is "$fails" "0" "200 concurrent haul send all exit 0"
bad=$(python3 - "$BUCKET" "$SCRATCH/many" <<'PY'
import boto3, hashlib, os, sys
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
bad = 0
for i in range(1, 201):
    want = hashlib.md5(open(os.path.join(sys.argv[2], "f%d" % i), "rb").read()).hexdigest()
    got = hashlib.md5(s3.get_object(Bucket=sys.argv[1], Key="many/f%d" % i)["Body"].read()).hexdigest()
    bad += want != got
print(bad)
PY
)
is "$bad" "0" "all 200 objects arrive intact (md5 of each)"

# The same large file to the same key twice at once: two multipart uploads,
# each with its own resume journal, both succeed.
mkfile "$SCRATCH/twice.bin" $((12 * 1024 * 1024))
"$HAUL" send "$SCRATCH/twice.bin" "s3://$BUCKET/twice" & p1=$!
"$HAUL" send "$SCRATCH/twice.bin" "s3://$BUCKET/twice" & p2=$!
wait $p1; r1=$?; wait $p2; r2=$?
is "$r1:$r2" "0:0" "the same file to the same key twice at once: both succeed"
is "$(obj_md5 twice)" "$(md5 "$SCRATCH/twice.bin")" "... and the object is intact"

st=$(status_of "$S1")
like "$st" "done +[0-9]+" "haul daemon status reports counts"
is "$(field "$st" queued):$(field "$st" in_flight)" "0:0" "status: nothing queued or in flight when idle"
like "$st" "failed: .*no-such-bucket" "status lists the last failures"

# ---- the per-object log ------------------------------------------------
n_ok=$(grep -cE '^[0-9T:-]+Z start=[0-9]+\.[0-9]{3} seconds=[0-9]+\.[0-9]{3} bytes=[0-9]+ s3://[^ ]+ ok$' "$LOG1")
is "$n_ok" "207" "text log: one ok line per object with start, seconds and bytes"
like "$(grep " s3://$BUCKET/tcp/big.bin " "$LOG1")" "bytes=41943040 s3://$BUCKET/tcp/big.bin ok$" "log line of the 40 MiB object"
like "$(grep -c "failed: " "$LOG1")" "^1$" "one failed line (the missing bucket)"
like "$(cat "$SCRATCH/state1/daemon/failed.log")" "no-such-bucket-$$/x: .*NoSuch" "failed-requests log names the request and reason"

# ---- clean shutdown -------------------------------------------------------
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID"; rc=$?
is "$rc" "0" "SIGTERM: daemon exits 0"
[ ! -e "$S1" ]; ok $? "SIGTERM: socket file removed"

# ---- 4. kill -9 with queued --no-wait requests: delivered after restart ----
S2="$SCRATCH/paused.sock"
start_daemon "$S2" "$HAUL" daemon --socket "$S2" --state-dir "$SCRATCH/state2" --paused --log "$SCRATCH/daemon2.log" 2>"$SCRATCH/daemon2.err"
ok $? "paused daemon starts"
mkdir "$SCRATCH/q"
for i in $(seq 20); do mkfile "$SCRATCH/q/f$i" $((5000 + i)); done
mkfile "$SCRATCH/q/big" $((20 * 1024 * 1024))
nw_fail=0
for f in $(seq 20) big; do
    [ "$f" = big ] && f=big || f="f$f"
    "$HAUL" send --no-wait --socket "$S2" "$SCRATCH/q/$f" "s3://$BUCKET/q/$f" || nw_fail=$((nw_fail + 1))
done
is "$nw_fail" "0" "21 haul send --no-wait return 0 at once"
st=$(status_of "$S2")
is "$(field "$st" queued):$(field "$st" done):$(field "$st" paused)" "21:0:1" "--no-wait returned before any upload: all 21 queued"
run stat "s3://$BUCKET/q/f1"
is "$RC" "1" "nothing uploaded while paused"
# One file is replaced (new inode) and one made unreadable to its sender
# before the restart: neither may be uploaded by path.
rm "$SCRATCH/q/f19"; echo "impostor" > "$SCRATCH/q/f19"
kill -9 "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null
ok 0 "daemon killed with SIGKILL holding 21 queued requests"
start_daemon "$S2" "$HAUL" daemon --socket "$S2" --state-dir "$SCRATCH/state2" --log "$SCRATCH/daemon2.log" --max-clients 3 2>>"$SCRATCH/daemon2.err"
ok $? "daemon restarts over the stale socket"
wait_for "st=\$(status_of '$S2'); [ \"\$(field \"\$st\" done)\" = 20 ] && [ \"\$(field \"\$st\" failed)\" = 1 ]"
ok $? "after restart the journal is finished: 20 done, 1 failed"
bad=0
for f in $(seq 18) 20 big; do [ "$f" = big ] || f="f$f"; [ "$(obj_md5 "q/$f")" = "$(md5 "$SCRATCH/q/$f")" ] || bad=$((bad + 1)); done
is "$bad" "0" "all 20 surviving --no-wait requests delivered intact after kill -9"
run stat "s3://$BUCKET/q/f19"
is "$RC" "1" "the replaced file was not uploaded"
like "$(cat "$SCRATCH/state2/daemon/failed.log")" "q/f19: .*file replaced or unreadable after restart" "failed log: file replaced after restart"
like "$(cat "$SCRATCH/daemon2.err")" "21 requests left by the previous run are queued again" "restart says what it replays"
# Over --max-clients (3 here): the next connection is answered with an
# error at once instead of hanging; once a slot frees, service resumes.
got=$(python3 - "$S2" <<'PY'
import socket, sys
idle = []
for _ in range(3):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); idle.append(s)
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(10)
print(s.recv(300).decode().strip())
PY
)
like "$got" "^ERROR daemon busy: 3 clients connected \(--max-clients\)" "over --max-clients: an immediate error line"
like "$(status_of "$S2")" "done +20" "after the idle clients leave, the daemon serves again"
# pause and resume at run time
run daemon --socket "$S2" pause; ok $RC "haul daemon pause"
"$HAUL" send --no-wait --socket "$S2" "$SCRATCH/q/f1" "s3://$BUCKET/q/later" 
is "$(field "$(status_of "$S2")" queued)" "1" "paused at run time: the request waits in the queue"
run daemon --socket "$S2" resume; ok $RC "haul daemon resume"
wait_for "[ \"\$(field \"\$(status_of '$S2')\" done)\" = 21 ]"; ok $? "resumed: the queued request is uploaded"
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID"; is "$?" "0" "second daemon: SIGTERM exits 0"

# ---- retries beyond the S3 client's own: a 503 twice, then for good ----
RULES="$SCRATCH/rules.json"; echo '[]' > "$RULES"
coproc PROXY { exec python3 "$ROOT/tests/integration/faultproxy.py" "${AWS_ENDPOINT_URL##*:}" "$RULES"; }
read -r pport <&"${PROXY[0]}"
PIDS+=("$PROXY_PID")
S4="$SCRATCH/retry.sock"
start_daemon "$S4" "$HAUL" daemon -v --socket "$S4" --state-dir "$SCRATCH/state4" --endpoint-url "http://127.0.0.1:$pport" \
    --max-attempts 1 --max-retries 3 --log "$SCRATCH/daemon4.log" 2>"$SCRATCH/daemon4.err"
ok $? "daemon behind the fault proxy starts"
echo '[{"method":"PUT","action":"status","status":503,"code":"SlowDown","times":2}]' > "$RULES"
run send --socket "$S4" "$SCRATCH/a.bin" "s3://$BUCKET/retried"
is "$RC:$ERR" "0:" "two 503s (client tries: 1): the daemon's own retries deliver it"
like "$(cat "$SCRATCH/daemon4.err")" "retried: .*SlowDown.*; retry 2 of 3" "the daemon logs its retries"
is "$(obj_md5 retried)" "$(md5 "$SCRATCH/a.bin")" "retried upload intact"
echo '[{"method":"PUT","action":"status","status":503,"code":"SlowDown"}]' > "$RULES"
run send --socket "$S4" "$SCRATCH/a.bin" "s3://$BUCKET/never"
is "$RC" "1" "a 503 that never ends: haul send exits 1 after the retries"
like "$ERR" "SlowDown" "... with the server's reason"
is "$(grep -c 's3://[^ ]*/never' "$SCRATCH/daemon4.err")" "3" "... after 3 retries"
like "$(status_of "$S4")" "failed +1" "status counts the failure"
# SIGTERM with an upload in flight (held by the proxy): the daemon stops
# listening at once, finishes that upload, then exits 0.
echo "[{\"method\":\"PUT\",\"action\":\"hold\",\"until\":\"$SCRATCH/release\",\"times\":1}]" > "$RULES"
"$HAUL" send --no-wait --socket "$S4" "$SCRATCH/a.bin" "s3://$BUCKET/held"
wait_for "[ \"\$(field \"\$(status_of '$S4')\" in_flight)\" = 1 ]"; ok $? "an upload is in flight (held by the proxy)"
kill -TERM "$DAEMON_PID"
wait_for "! \"$HAUL\" daemon --socket '$S4' status >/dev/null 2>&1"; ok $? "SIGTERM: the daemon stops accepting at once"
kill -0 "$DAEMON_PID" 2>/dev/null; ok $? "... but keeps running while its upload is in flight"
touch "$SCRATCH/release"
wait "$DAEMON_PID"; is "$?" "0" "... finishes it and exits 0"
is "$(obj_md5 held)" "$(md5 "$SCRATCH/a.bin")" "the in-flight upload completed during shutdown"
like "$(tail -1 "$SCRATCH/daemon4.log")" "s3://$BUCKET/held ok$" "and was logged"
kill "$PROXY_PID" 2>/dev/null

# ---- 2. a daemon running as nobody, peers checked by uid ---------------
ND="$SCRATCH/nobody"
mkdir -p "$ND"; chown nobody:nogroup "$ND"; chmod 700 "$ND"
S3="$ND/run/daemon.sock"
NLOG="$ND/daemon.log"
start_daemon "$S3" setpriv --reuid nobody --regid nogroup --clear-groups \
    "$HAUL" daemon --socket "$S3" --state-dir "$ND/state" --allow-user root --log-json --log "$NLOG" 2>"$SCRATCH/daemon3.err"
ok $? "daemon runs as nobody, allowing root"
is "$(stat -c %U "$S3")" "nobody" "its socket belongs to nobody"
mkfile "$SCRATCH/secret" 70000
chmod 600 "$SCRATCH/secret"
setpriv --reuid nobody --regid nogroup --clear-groups cat "$SCRATCH/secret" >/dev/null 2>&1
is "$?" "1" "premise: nobody cannot read root's 0600 file"
run send "$SCRATCH/secret" "s3://$BUCKET/secret" --socket "$S3"
is "$RC:$ERR" "0:" "root's haul send through the nobody daemon works (descriptor passed)"
is "$(obj_md5 secret)" "$(md5 "$SCRATCH/secret")" "root-only file uploaded intact"
cp "$SCRATCH/a.bin" "$ND/pub.bin"; chmod 644 "$ND/pub.bin"; chown nobody "$ND/pub.bin"
OUT=$(setpriv --reuid nobody --regid nogroup --clear-groups "$HAUL" send "$ND/pub.bin" "s3://$BUCKET/by-nobody" --socket "$S3" 2>&1); RC=$?
is "$RC" "1" "a peer not on the allow list (nobody) is refused: exit 1"
like "$OUT" "uid 65534 is not allowed to use this daemon" "... with a clear error"
run stat "s3://$BUCKET/by-nobody"; is "$RC" "1" "... and nothing was uploaded"
like "$(cat "$SCRATCH/daemon3.err")" "refused a connection from uid 65534" "the daemon logs the refusal"
python3 - "$NLOG" "$BUCKET" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) == 1, lines
l = lines[0]
assert l["status"] == "ok" and l["error"] is None and l["bytes"] == 70000, l
assert l["bucket"] == sys.argv[2] and l["key"] == "secret", l
assert l["start"] > 1e9 and 0 <= l["seconds"] < 60, l
PY
ok $? "--log-json: one JSON object per object with start, seconds, bytes, bucket, key, status"
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID"; is "$?" "0" "nobody daemon: SIGTERM exits 0"
[ ! -e "$S3" ]; ok $? "nobody daemon: socket removed"

done_testing
