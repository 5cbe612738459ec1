#!/usr/bin/env bash
# haul daemon against hostile and unlucky clients (issue 13, audit M8, L1,
# L2, L3, L6): a hung FUSE file never stops the event loop and FUSE is
# refused by default; TCP clients cannot have the daemon's own credentials,
# state or /proc uploaded; a control character cannot forge a failed.log
# line; a Unix-socket path must name the descriptor passed and a replay
# never follows a symlink nor reads as more than its submitter; only the
# daemon's user pauses and sees everyone's status; idle TCP clients cannot
# crowd out haul send.  Needs root (runuser, FUSE); everything on 127.0.0.1.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ]; then echo "1..0 # SKIP needs root"; exit 0; fi

run mb "s3://$BUCKET"; ok $RC "mb s3://$BUCKET"
chmod 711 "$SCRATCH"
PUB="$SCRATCH/pub"; mkdir -m 755 "$PUB"   # sockets and files nobody may reach
PORT=$(free_port)
PIDS=() MOUNTS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
      for m in "${MOUNTS[@]}"; do umount -l "$m" 2>/dev/null; done; _cleanup' EXIT

wait_for() { for _ in $(seq 200); do eval "$1" && return 0; sleep 0.1; done; return 1; }
md5() { md5sum < "$1" | cut -d' ' -f1; }
obj_md5() { "$HAUL" get -q "s3://$BUCKET/$1" - 2>/dev/null | md5sum | cut -d' ' -f1; }
start_daemon() { # start_daemon SOCKET COMMAND...: DAEMON_PID
    local sock=$1; shift
    "$@" &
    DAEMON_PID=$!
    PIDS+=("$DAEMON_PID")
    wait_for "[ -S '$sock' ]"
}
status_of() { timeout 10 "$HAUL" daemon --socket "$1" status 2>&1; }
field() { printf '%s\n' "$1" | awk -v k="$2" '$1 == k {print $2}'; }
tcp_send() { # tcp_send PORT FILE KEY -> the reply
    timeout 30 python3 - "$1" "$2" "$BUCKET" "$3" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
s.sendall(("%s a/%s/%s\n" % (sys.argv[2], sys.argv[3], sys.argv[4])).encode())
out = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    out += b
print(out.decode("utf-8", "replace"))
PY
}
unix_send() { # unix_send SOCKET RAW-LINE FILE-TO-PASS -> the first reply line
    timeout 30 python3 - "$1" "$2" "$3" <<'PY'
import array, os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
fd = os.open(sys.argv[3], os.O_RDONLY)
s.sendmsg([sys.argv[2].encode() + b"\n"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
s.settimeout(20)
print(s.recv(2000).decode().strip().split("\n")[0])
PY
}

# ---- L6: over TCP, never the daemon's own credentials, state or /proc ----
mkdir -p "$HOME/.aws" "$SCRATCH/elsewhere"
printf '[unused]\naws_access_key_id = AKIAEXAMPLESECRET\naws_secret_access_key = s3cr3t\n' > "$HOME/.aws/credentials"
printf '[unused]\naws_secret_access_key = moved-s3cr3t\n' > "$SCRATCH/elsewhere/creds"
ln -s "$HOME/.aws/credentials" "$SCRATCH/innocent-looking"
mkfile "$SCRATCH/plain.bin" 5000
S1="$PUB/d1.sock"
start_daemon "$S1" env AWS_SHARED_CREDENTIALS_FILE="$SCRATCH/elsewhere/creds" \
    "$HAUL" daemon --socket "$S1" --state-dir "$SCRATCH/state1" --tcp --tcp-host 127.0.0.1 --tcp-port "$PORT" \
    --read-timeout 3 --log "$SCRATCH/d1.log" 2>"$SCRATCH/d1.err"
ok $? "daemon with --tcp starts"
D1=$DAEMON_PID
is "$(tcp_send "$PORT" "$SCRATCH/plain.bin" plain)" "Success" "TCP: an ordinary file is still served"
got=$(tcp_send "$PORT" "$HOME/.aws/credentials" stolen/creds)
like "$got" "^Error: .*credentials: refused: under the daemon's own credentials or state" "L6: the daemon's ~/.aws/credentials over TCP: refused"
got=$(tcp_send "$PORT" "$SCRATCH/innocent-looking" stolen/link)
like "$got" "^Error: .*under the daemon's own credentials or state" "L6: ... also through a symlink"
got=$(tcp_send "$PORT" "$SCRATCH/elsewhere/creds" stolen/moved)
like "$got" "^Error: .*under the daemon's own credentials or state" "L6: the file AWS_SHARED_CREDENTIALS_FILE names: refused"
got=$(tcp_send "$PORT" "$SCRATCH/state1/daemon/requests.journal" stolen/journal)
like "$got" "^Error: .*under the daemon's own credentials or state" "L6: a file in its state directory: refused"
got=$(tcp_send "$PORT" "$SCRATCH/d1.log" stolen/log)
like "$got" "^Error: .*under the daemon's own credentials or state" "L6: its --log (every user's paths and keys): refused"
got=$(tcp_send "$PORT" "/proc/self/environ" stolen/environ)
like "$got" "^Error: .*/proc" "L6: /proc/self/environ (the daemon's environment): refused"
n=0; for k in creds link moved journal log environ; do "$HAUL" stat -q "s3://$BUCKET/stolen/$k" >/dev/null 2>&1 && n=$((n + 1)); done
is "$n" "0" "L6: none of them was uploaded"

# ---- M8: a file on a FUSE filesystem whose getattr and open hang ----------
FUSEPY=""
for py in /usr/bin/python3 python3; do
    "$py" -c 'import fusepy' 2>/dev/null || "$py" -c 'import fuse' 2>/dev/null || continue
    FUSEPY=$py; break
done
if [ -n "$FUSEPY" ] && [ -e /dev/fuse ]; then
    MNT="$SCRATCH/fuse"; mkdir "$MNT"
    "$FUSEPY" "$ROOT/tests/integration/slowfs.py" "$MNT" 5 2>"$SCRATCH/fuse.err" &
    PIDS+=($!)
    wait_for "mountpoint -q '$MNT'"; ok $? "slow FUSE filesystem mounted"
    MOUNTS+=("$MNT")
    # Default: refused as FUSE, at once, and the daemon keeps answering.
    t0=$(date +%s%N)
    tcp_send "$PORT" "$MNT/slow" fuse/slow > "$SCRATCH/slow1.out" & slow1=$!
    # Answered, or the daemon is inside the hung getattr (000c418 was).
    wait_for "[ -s '$SCRATCH/slow1.out' ] || grep -q 'stall /slow' '$SCRATCH/fuse.err'"
    st=$(status_of "$S1"); rc=$?
    is "$rc" "0" "M8: status answered while a TCP request names a hung FUSE file"
    is "$(tcp_send "$PORT" "$SCRATCH/plain.bin" during-fuse)" "Success" "M8: ... and another client's send too"
    wait "$slow1"
    ms=$((($(date +%s%N) - t0) / 1000000))
    like "$(cat "$SCRATCH/slow1.out")" "^Error: .*on a FUSE filesystem, refused .*--allow-fuse" "M8: by default a file on FUSE is refused as such"
    [ "$ms" -lt 2500 ]; ok $? "M8: ... at once, without waiting for the hung getattr (${ms} ms)"
    run send --socket "$S1" "$MNT/fast" "s3://$BUCKET/fuse/fast-default"
    is "$RC" "1" "M8: haul send of a FUSE file (descriptor passed) refused by default: exit 1"
    like "$ERR" "FUSE filesystem, refused" "M8: ... saying why"

    # --allow-fuse: served, but the hung open runs off the event loop and
    # is abandoned after --read-timeout.
    S2="$PUB/d2.sock"; PORT2=$((PORT + 1))
    start_daemon "$S2" "$HAUL" daemon --socket "$S2" --state-dir "$SCRATCH/state2" --tcp --tcp-host 127.0.0.1 \
        --tcp-port "$PORT2" --read-timeout 3 --allow-fuse 2>"$SCRATCH/d2.err"
    ok $? "daemon with --allow-fuse starts"
    D2=$DAEMON_PID
    t0=$(date +%s%N)
    tcp_send "$PORT2" "$MNT/slow" fuse/slow2 > "$SCRATCH/slow2.out" & slow2=$!
    wait_for "[ \"\$(field \"\$(status_of '$S2')\" checks)\" = 1 ]"; ok $? "--allow-fuse: the request on the hung file is being checked"
    t1=$(date +%s%N)
    st=$(status_of "$S2"); rc=$?
    is "$rc:$(field "$st" queued)" "0:0" "M8: status answered meanwhile"
    is "$(tcp_send "$PORT2" "$SCRATCH/plain.bin" during-fuse2)" "Success" "M8: ... and another TCP client's send"
    run send --socket "$S2" "$MNT/fast" "s3://$BUCKET/fuse/fast"
    is "$RC:$ERR" "0:" "M8: ... and a haul send of a FUSE file that answers (--allow-fuse)"
    ms=$((($(date +%s%N) - t1) / 1000000))
    [ "$ms" -lt 2500 ]; ok $? "M8: all three answered within a few seconds (${ms} ms)"
    is "$(obj_md5 fuse/fast)" "$(md5 "$MNT/fast")" "M8: the FUSE file arrived intact"
    wait "$slow2"
    ms=$((($(date +%s%N) - t0) / 1000000))
    like "$(cat "$SCRATCH/slow2.out")" "^Error: .*slow: not opened within 3 s \(a hung filesystem\?\)" "M8: the hung request is answered with an error past its deadline"
    [ "$ms" -lt 6000 ]; ok $? "M8: ... after about --read-timeout (${ms} ms), not the 10 s hang (getattr, then open)"
    st=$(status_of "$S2")
    is "$(field "$st" stuck)" "1" "M8: the abandoned check is accounted as stuck"
    wait_for "[ \"\$(field \"\$(status_of '$S2')\" stuck)\" = 0 ]"; ok $? "M8: ... until the FUSE server answers"
    "$HAUL" stat -q "s3://$BUCKET/fuse/slow2" >/dev/null 2>&1; is "$?" "1" "M8: the abandoned request was not uploaded"
    kill -TERM "$D2"; wait "$D2"; is "$?" "0" "--allow-fuse daemon: SIGTERM exits 0"
    umount "$MNT"
else
    echo "ok $((_n += 1)) # SKIP no fusepy (python3-fusepy) or /dev/fuse"
fi

# ---- L1 end to end: a newline in a decoded path forges no failed.log line ----
got=$(unix_send "$S1" "HAUL/1 SEND NOWAIT no-such-bucket-$$ k /tmp/x%0A2026-01-01T00:00:00Z%20id=9%20uid=0%20/etc/shadow" "$SCRATCH/plain.bin")
like "$got" "^ERROR SEND: control character in the path" "L1: a %0A in the path is refused"
! grep -q '^2026-01-01T00:00:00Z id=9' "$SCRATCH/state1/daemon/failed.log" 2>/dev/null; ok $? "L1: no forged line in failed.log"

# ---- L2 at submission: the path must name the descriptor passed -----------
mkfile "$SCRATCH/mine.bin" 3000; mkfile "$SCRATCH/other.bin" 4000
ln -s "$SCRATCH/other.bin" "$SCRATCH/link-to-other"
got=$(unix_send "$S1" "HAUL/1 SEND WAIT $BUCKET l2/link $SCRATCH/link-to-other" "$SCRATCH/mine.bin")
like "$got" "^ERROR .*link-to-other.* is a symlink, refused" "L2: a path that is a symlink to another file than the descriptor: refused"
got=$(unix_send "$S1" "HAUL/1 SEND WAIT $BUCKET l2/other $SCRATCH/other.bin" "$SCRATCH/mine.bin")
like "$got" "^ERROR .*other.bin names another file than the descriptor passed" "L2: a path naming another file: refused"
got=$(unix_send "$S1" "HAUL/1 SEND WAIT $BUCKET l2/same $SCRATCH/mine.bin" "$SCRATCH/mine.bin")
like "$got" "^QUEUED [0-9]+$" "L2: the real path of the very file passed is taken"
kill -TERM "$D1"; wait "$D1"; is "$?" "0" "daemon 1: SIGTERM exits 0"

# ---- L3: who may pause, who sees what, TCP's own slot budget ----------------
S3="$PUB/d3.sock"; PORT3=$((PORT + 2))
start_daemon "$S3" "$HAUL" daemon --socket "$S3" --socket-group nogroup --allow-user root --allow-user nobody \
    --state-dir "$SCRATCH/state3" --tcp --tcp-host 127.0.0.1 --tcp-port "$PORT3" --max-clients 50 --read-timeout 30 \
    2>"$SCRATCH/d3.err"
ok $? "daemon allowing root and nobody starts"
D3=$DAEMON_PID
as_nobody() { runuser -u nobody -- "$@"; }
OUT=$(as_nobody "$HAUL" daemon --socket "$S3" pause 2>&1); RC=$?
is "$RC" "1" "L3: nobody (allowed to send) may not pause: exit 1"
like "$OUT" "uid 65534 may not pause this daemon" "L3: ... saying why"
OUT=$(as_nobody "$HAUL" daemon --socket "$S3" resume 2>&1); is "$?" "1" "L3: nor resume"
is "$(field "$(status_of "$S3")" paused)" "0" "L3: the daemon is not paused"
like "$(cat "$SCRATCH/d3.err")" "refused to pause uploads for uid 65534" "L3: the refusal is logged"
run send --socket "$S3" "$SCRATCH/plain.bin" "s3://no-such-bucket-$$/root-secret-key"
is "$RC" "1" "root's send to a missing bucket fails"
cp "$SCRATCH/plain.bin" "$PUB/nobody.bin"; chmod 644 "$PUB/nobody.bin"
OUT=$(as_nobody "$HAUL" send --socket "$S3" "$PUB/nobody.bin" "s3://no-such-bucket-$$/nobody-key" 2>&1)
is "$?" "1" "nobody's send to a missing bucket fails"
OUT=$(as_nobody "$HAUL" send --socket "$S3" "$PUB/nobody.bin" "s3://$BUCKET/by-nobody" 2>&1)
is "$?:$OUT" "0:" "nobody's send of its own file works"
nst=$(as_nobody "$HAUL" daemon --socket "$S3" status 2>&1)
rst=$(status_of "$S3")
! printf '%s' "$nst" | grep -q "root-secret-key"; ok $? "L3: nobody's status does not show root's failure"
like "$nst" "failed: .*nobody-key" "L3: ... but shows its own"
is "$(field "$nst" failed):$(field "$nst" done)" "1:1" "L3: ... and counts only its own requests"
like "$rst" "failed: .*root-secret-key" "L3: the daemon's user sees root's failure"
like "$rst" "failed: .*nobody-key" "L3: ... and nobody's"
# 200 idle TCP connections (any local user can open them) do not make a
# Unix-socket haul send answer "daemon busy".
rm -f "$SCRATCH/idle.ready"
timeout 60 python3 - "$PORT3" "$SCRATCH/idle.ready" <<'PY' &
import socket, sys, time
conns = []
for _ in range(200):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
    s.sendall(b"/partial")
    conns.append(s)
open(sys.argv[2], "w").write("ready\n")
time.sleep(25)
PY
IDLE=$!; PIDS+=("$IDLE")
wait_for "[ -s '$SCRATCH/idle.ready' ]"; ok $? "200 idle TCP connections open"
# (base: all connections share --max-clients; here each transport its own)
# Until the daemon took them all (or, at 000c418, was full: 50 clients, busy).
taken() {
    local st; st=$(status_of "$S3")
    local u t; u=$(field "$st" clients); t=$(field "$st" tcp_clients)
    [ $((${u:-0} + ${t:-0})) -ge 200 ] || [ "${u:-0}" -ge 50 ] || [[ $st == *"daemon busy"* ]]
}
wait_for taken; ok $? "the daemon holds the idle TCP connections"
run send --socket "$S3" "$SCRATCH/plain.bin" "s3://$BUCKET/while-idle-tcp"
is "$RC:$ERR" "0:" "L3: with 200 idle TCP clients, haul send is served (not 'daemon busy')"
is "$(obj_md5 while-idle-tcp)" "$(md5 "$SCRATCH/plain.bin")" "L3: ... and its file arrives"
kill "$IDLE" 2>/dev/null; wait "$IDLE" 2>/dev/null
kill -TERM "$D3"; wait "$D3"; is "$?" "0" "daemon 3: SIGTERM exits 0"

# ---- L2 at replay: no symlink followed, access as the submitter ------------
S4="$PUB/d4.sock"
start_daemon "$S4" "$HAUL" daemon --socket "$S4" --socket-group nogroup --allow-user root --allow-user nobody \
    --state-dir "$SCRATCH/state4" --paused 2>"$SCRATCH/d4.err"
ok $? "paused daemon starts"
mkdir -m 755 "$PUB/real"; mkfile "$PUB/real/f" 6000
run send --no-wait --socket "$S4" "$PUB/real/f" "s3://$BUCKET/replay/link"
ok $RC "root queues a file by its real path"
mkfile "$PUB/grp" 7000; chown root:nogroup "$PUB/grp"; chmod 644 "$PUB/grp"
OUT=$(as_nobody "$HAUL" send --no-wait --socket "$S4" "$PUB/grp" "s3://$BUCKET/replay/grp" 2>&1)
is "$?" "0" "nobody queues a file it may read (mode 0644, group nogroup)"
mkfile "$PUB/ok" 8000; chmod 644 "$PUB/ok"
OUT=$(as_nobody "$HAUL" send --no-wait --socket "$S4" "$PUB/ok" "s3://$BUCKET/replay/ok" 2>&1)
is "$?" "0" "nobody queues another one"
kill -9 "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null
# Before the restart: a directory of the path becomes a symlink (to the
# same file); nobody's file becomes 0604 root:nogroup (POSIX: its group
# bits apply to nobody, a member of nogroup, whatever "other" allows).
mv "$PUB/real" "$PUB/moved"; ln -s moved "$PUB/real"
chmod 604 "$PUB/grp"
as_nobody cat "$PUB/grp" >/dev/null 2>&1; is "$?" "1" "premise: nobody can no longer read the 0604 file"
start_daemon "$S4" "$HAUL" daemon --socket "$S4" --socket-group nogroup --allow-user root --allow-user nobody \
    --state-dir "$SCRATCH/state4" 2>>"$SCRATCH/d4.err"
ok $? "daemon restarts with 3 journaled requests"
wait_for "st=\$(status_of '$S4'); [ \"\$(field \"\$st\" done)\" = 1 ] && [ \"\$(field \"\$st\" failed)\" = 2 ]"
ok $? "after the restart: 1 done, 2 failed"
is "$(obj_md5 replay/ok)" "$(md5 "$PUB/ok")" "L2: the unchanged request is delivered"
"$HAUL" stat -q "s3://$BUCKET/replay/link" >/dev/null 2>&1; is "$?" "1" "L2: replay of a path that became a symlink: not uploaded"
"$HAUL" stat -q "s3://$BUCKET/replay/grp" >/dev/null 2>&1; is "$?" "1" "L2: replay of a file its submitter may no longer read (group bits): not uploaded"
FL=$(cat "$SCRATCH/state4/daemon/failed.log")
like "$FL" "real/f s3://$BUCKET/replay/link: .*'real' is a symlink, refused" "L2: failed.log: the symlink is named"
like "$FL" "grp s3://$BUCKET/replay/grp: file replaced or unreadable after restart \(as uid 65534 who submitted it\): .*Permission denied" "L2: failed.log: read as its submitter, denied"
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID"; is "$?" "0" "daemon 4: SIGTERM exits 0"

done_testing
