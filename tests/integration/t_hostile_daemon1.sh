#!/usr/bin/env bash
# haul daemon against hostile and unlucky conditions (audit M1, M2, L4, L5):
# the descriptor budget under a low RLIMIT_NOFILE, accept() out of
# descriptors without a busy loop, haul send's timeout against a stopped
# daemon, the journal on a full disk, haul send refusing a fake daemon, the
# state directory's owner and mode, no symlink followed, logs 0600.
# Needs root (tmpfs, listeners as nobody); everything on 127.0.0.1.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ]; then echo "1..0 # SKIP needs root (tmpfs mount, users)"; exit 0; fi

chmod 711 "$SCRATCH"   # nobody may traverse to its own directories, no more
PIDS=()
MNT=""
trap 'for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
      [ -n "$MNT" ] && umount "$MNT" 2>/dev/null; _cleanup' EXIT

# Polls a condition (a shell command) up to ~20 s.
wait_for() { for _ in $(seq 200); do eval "$1" && return 0; sleep 0.1; done; return 1; }
# Starts a daemon in the background: DAEMON_PID; waits for socket $1.
start_daemon() {
    local sock=$1; shift
    "$@" &
    DAEMON_PID=$!
    PIDS+=("$DAEMON_PID")
    wait_for "[ -S '$sock' ]"
}
stop_daemon() { kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID"; }
status_of() { "$HAUL" daemon --socket "$1" status 2>&1; }
field() { printf '%s\n' "$1" | awk -v k="$2" '$1 == k {print $2}'; }
# CPU ticks (user + system, all threads) of a process so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
mkfile "$SCRATCH/f" 1000

# ---- M1: the descriptor budget under a low limit -----------------------
# Started with a soft limit of 128 under a hard one of 256: the daemon
# raises the soft limit, sizes its budget from it and says so in status.
S1="$SCRATCH/m1.sock"
start_daemon "$S1" prlimit --nofile=128:256 "$HAUL" daemon --paused --socket "$S1" --state-dir "$SCRATCH/st1" \
    2>"$SCRATCH/d1.err"
ok $? "paused daemon starts under RLIMIT_NOFILE 128:256"
st=$(status_of "$S1")
is "$(field "$st" fd_limit)" "256" "status: the soft descriptor limit was raised to the hard limit (128 -> 256)"
budget=$(field "$st" fd_budget)
like "$budget" "^[0-9]+$" "status shows the budget of descriptors accepted requests may hold ($budget)"
# 400 --no-wait sends: none hangs, the budget's worth is accepted, the rest
# is refused with a clear message.
acked=0 hung=0 refused=0 other=""
for i in $(seq 400); do
    out=$(timeout 10 "$HAUL" send --no-wait --socket "$S1" "$SCRATCH/f" "s3://$BUCKET/m1/$i" 2>&1); rc=$?
    case $rc in
        0) acked=$((acked + 1));;
        124) hung=$((hung + 1));;
        *) if [[ $out == *"too many descriptors passed"* ]]; then refused=$((refused + 1)); else other=$out; fi;;
    esac
done
is "$hung" "0" "400 --no-wait sends under the limit: none hangs"
is "$acked:$refused:$other" "$budget:$((400 - budget)):" "the budget's worth acknowledged, the rest refused with 'too many descriptors passed'"
st=$(status_of "$S1")
is "$(field "$st" queued):$(field "$st" held_fds)" "$acked:$acked" "status: every acknowledged request is queued, holding its descriptor"
stop_daemon; is "$?" "0" "the daemon at its budget stops cleanly (exit 0)"

# ---- M1: accept() out of descriptors: no busy loop ---------------------
# 400 idle connections to a daemon limited to 256 descriptors (and allowed
# more clients than that): accept() runs out of descriptors.  The daemon
# tells the excess clients so and rests its listener instead of retrying
# accept() at once, so its CPU stays low while the connections are held.
S2="$SCRATCH/m1b.sock"
start_daemon "$S2" prlimit --nofile=256:256 "$HAUL" daemon --paused --socket "$S2" --state-dir "$SCRATCH/st2" \
    --max-clients 2000 --read-timeout 60 2>"$SCRATCH/d2.err"
ok $? "daemon starts with --max-clients 2000 under RLIMIT_NOFILE 256"
got=$(python3 - "$S2" "$DAEMON_PID" <<'PY'
import select, socket, sys, time
path, pid = sys.argv[1], sys.argv[2]
def ticks():
    f = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])    # utime + stime
conns = []
for _ in range(400):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    conns.append(s)
# Wait (at most 3 s) for the first refusal: the daemon is then at its limit.
refused, until = set(), time.time() + 3
while not refused and time.time() < until:
    r, _, _ = select.select(conns, [], [], 0.1)
    refused |= {s for s in r if b"out of file descriptors" in s.recv(200)}
t0 = ticks()
time.sleep(2)                           # the measured interval, not a synchronisation
used = ticks() - t0
r, _, _ = select.select(conns, [], [], 0)
refused |= {s for s in r if b"out of file descriptors" in s.recv(200)}
print(used, len(refused))
PY
)
read -r ticks n_refused <<<"$got"
tck=$(getconf CLK_TCK)
ok $(( ticks < tck / 2 ? 0 : 1 )) "at the descriptor limit the daemon stays idle: $ticks CPU ticks in 2 s (under $((tck / 2)), a busy loop takes ~$((2 * tck)))"
ok $(( n_refused > 0 ? 0 : 1 )) "clients beyond the limit are told 'daemon out of file descriptors' ($n_refused), not left in the backlog"
like "$(cat "$SCRATCH/d2.err")" "out of file descriptors \(limit 256" "the daemon logs that it ran out of descriptors"
run send --no-wait --socket "$S2" "$SCRATCH/f" "s3://$BUCKET/m1b/after"
is "$RC:$ERR" "0:" "once the connections are gone, the daemon serves again"
stop_daemon; is "$?" "0" "... and stops cleanly"

# ---- M1: haul send --timeout against a stopped daemon ------------------
S3="$SCRATCH/stop.sock"
start_daemon "$S3" "$HAUL" daemon --paused --socket "$S3" --state-dir "$SCRATCH/st3" 2>"$SCRATCH/d3.err"
ok $? "paused daemon starts"
kill -STOP "$DAEMON_PID"
t0=$(date +%s%N)
out=$(timeout 20 "$HAUL" send --timeout 2 --no-wait --socket "$S3" "$SCRATCH/f" "s3://$BUCKET/stopped" 2>&1); rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "$rc" "1" "send to a daemon stopped with SIGSTOP: exit 1"
like "$out" "the daemon on .*stop.sock did not answer within 2 s \(--timeout\)" "... saying the daemon did not answer within the timeout"
ok $(( ms >= 1900 && ms < 8000 ? 0 : 1 )) "... after the 2 s timeout (${ms} ms), not hanging"
out=$(timeout 20 "$HAUL" send --timeout 1 --socket "$S3" "$SCRATCH/f" "s3://$BUCKET/stopped2" 2>&1); rc=$?
like "$rc:$out" "^1:.*did not answer within 1 s" "the same without --no-wait (waiting for the result): exit 1 after the timeout"
kill -CONT "$DAEMON_PID"
wait_for "[ \"\$(field \"\$(status_of '$S3')\" queued)\" = 2 ]"
ok $? "resumed with SIGCONT, the daemon still carries out the requests it had not answered (as the message says)"
stop_daemon; is "$?" "0" "... and stops cleanly"
# A listener whose backlog is full: connect() itself blocks, and times out.
mkdir -m 700 "$SCRATCH/full"
python3 - "$SCRATCH/full/d.sock" <<'PY' &
import os, socket, sys, time
l = socket.socket(socket.AF_UNIX)
l.bind(sys.argv[1]); l.listen(0)
held = []
for _ in range(4):                      # fill the backlog, never accept
    c = socket.socket(socket.AF_UNIX); c.setblocking(False)
    try:
        c.connect(sys.argv[1]); held.append(c)
    except BlockingIOError:
        break
open(sys.argv[1] + ".ready", "w").close()
time.sleep(30)
PY
PIDS+=($!); fake=$!
wait_for "[ -e '$SCRATCH/full/d.sock.ready' ]"
t0=$(date +%s%N)
out=$(timeout 20 "$HAUL" send --timeout 2 --no-wait --socket "$SCRATCH/full/d.sock" "$SCRATCH/f" "s3://$BUCKET/full" 2>&1); rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "$rc" "1" "send to a listener whose backlog is full: exit 1"
like "$out" "did not accept the connection within 2 s \(--timeout\)" "... the connection timed out ($ms ms)"
kill "$fake" 2>/dev/null; wait "$fake" 2>/dev/null

# ---- M2: the journal on a full disk ------------------------------------
# The audit's scenario: the state directory on a 256 KiB tmpfs holding a
# few records, the disk filled, sends until one is refused, the space
# freed, one more send, a restart: every acknowledged request is replayed.
MNT="$SCRATCH/jfs"; mkdir "$MNT"
mount -t tmpfs -o size=256k,mode=0700 tmpfs "$MNT"; ok $? "a 256 KiB tmpfs for the state directory"
S4="$SCRATCH/m2.sock"
start_daemon "$S4" "$HAUL" daemon --paused --socket "$S4" --state-dir "$MNT" 2>"$SCRATCH/d4.err"
ok $? "paused daemon with its journal on the tmpfs"
acked=0
for i in 1 2 3; do "$HAUL" send --no-wait --socket "$S4" "$SCRATCH/f" "s3://$BUCKET/m2/first$i" && acked=$((acked + 1)); done
dd if=/dev/zero of="$MNT/fill" bs=4096 2>/dev/null
like "$(df --output=avail "$MNT" | tail -1)" "^ *0$" "the tmpfs is full"
refusal=""
for i in $(seq 300); do
    if out=$("$HAUL" send --no-wait --socket "$S4" "$SCRATCH/f" "s3://$BUCKET/m2/full$i" 2>&1); then
        acked=$((acked + 1))
    else
        refusal=$out; break
    fi
done
like "$refusal" "journal .*requests.journal: No space left on device" "sends until one is refused: the journal is full ($acked acknowledged)"
rm "$MNT/fill"
run send --no-wait --socket "$S4" "$SCRATCH/f" "s3://$BUCKET/m2/after"
is "$RC:$ERR" "0:" "space freed: the next send is acknowledged"
[ "$RC" = 0 ] && acked=$((acked + 1))
stop_daemon; is "$?" "0" "the daemon stops (queued requests stay in the journal)"
start_daemon "$S4" "$HAUL" daemon --paused --socket "$S4" --state-dir "$MNT" 2>"$SCRATCH/d4b.err"
ok $? "the daemon restarts on the same journal"
is "$(field "$(status_of "$S4")" queued)" "$acked" "every acknowledged request is replayed ($acked)"
like "$(cat "$SCRATCH/d4b.err")" "journal: $acked requests left by the previous run are queued again" "... as the restart says"
if grep -q "not a valid record" "$SCRATCH/d4b.err"; then bad=1; else bad=0; fi
ok $bad "no 'not a valid record' warning on replay"
stop_daemon; is "$?" "0" "... and stops cleanly"
umount "$MNT"; MNT=""

# ---- L4: haul send passes no descriptor to a fake daemon -----------------
# fake_listener DIR AS-USER: a listener at DIR/d.sock that records whether
# a descriptor came (FAKE_OUT) and answers like a daemon.
fake_listener() {
    rm -f "$1/d.sock" "$1/ready" "$SCRATCH/fake.out"
    runuser -u "$2" -- python3 - "$1" >"$SCRATCH/fake.out" <<'PY' &
import array, os, socket, sys
d = sys.argv[1]
l = socket.socket(socket.AF_UNIX)
l.bind(d + "/d.sock"); l.listen(5); l.settimeout(15)
open(d + "/ready", "w").close()
try:
    c, _ = l.accept()
except socket.timeout:
    print("no connection"); sys.exit()
c.settimeout(10)
fds = array.array("i")
data, anc, _, _ = c.recvmsg(20480, socket.CMSG_SPACE(8 * fds.itemsize))
for level, kind, blob in anc:
    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
        fds.frombytes(blob[: len(blob) - len(blob) % fds.itemsize])
if data:
    c.sendall(b"QUEUED 1\n")
print("fds=%d" % len(fds), flush=True)
PY
    FAKE=$!; PIDS+=("$FAKE")
    wait_for "[ -e '$1/ready' ]"
}
fake_result() { wait "$FAKE" 2>/dev/null; cat "$SCRATCH/fake.out"; }

mkdir -m 777 "$SCRATCH/ww"
fake_listener "$SCRATCH/ww" nobody
run send --no-wait --socket "$SCRATCH/ww/d.sock" "$SCRATCH/f" "s3://$BUCKET/l4/a"
is "$RC" "1" "a listener of nobody's in a world-writable directory: send refuses (exit 1)"
like "$ERR" "its directory .*/ww is writable by others \(mode 0777\).*not passing the file" "... saying why"
is "$(fake_result)" "fds=0" "... and the fake daemon got no descriptor"

mkdir -m 1777 "$SCRATCH/sticky"
fake_listener "$SCRATCH/sticky" nobody
run send --no-wait --socket "$SCRATCH/sticky/d.sock" "$SCRATCH/f" "s3://$BUCKET/l4/b"
is "$RC" "1" "nobody's socket in a sticky shared directory (like /tmp): refused"
like "$ERR" "in the shared directory .* belongs to uid 65534.*give --daemon-user" "... pointing to --daemon-user"
is "$(fake_result)" "fds=0" "... and no descriptor passed"
fake_listener "$SCRATCH/sticky" nobody
run send --no-wait --daemon-user nobody --socket "$SCRATCH/sticky/d.sock" "$SCRATCH/f" "s3://$BUCKET/l4/c"
is "$RC:$(fake_result)" "0:fds=1" "with --daemon-user nobody the same listener is trusted and gets the descriptor"

# The socket file says nobody, the process listening on it is another user:
# SO_PEERCRED gives it away.
mkdir -m 755 "$SCRATCH/priv"
fake_listener "$SCRATCH/priv" root
chown nobody "$SCRATCH/priv/d.sock"
run send --no-wait --socket "$SCRATCH/priv/d.sock" "$SCRATCH/f" "s3://$BUCKET/l4/d"
is "$RC" "1" "a socket owned by nobody with root listening on it: refused"
like "$ERR" "the process listening on .*priv/d.sock runs as uid 0, not uid 65534 \(the socket's owner\)" "... naming both uids"
is "$(fake_result)" "fds=0" "... and no descriptor passed"

# ---- L5: the state directory, temp files, logs ---------------------------
mkdir -m 777 "$SCRATCH/open"
out=$(timeout 5 "$HAUL" daemon --paused --socket "$SCRATCH/l5a.sock" --state-dir "$SCRATCH/open" 2>&1); rc=$?
is "$rc" "1" "a state directory of mode 0777 is refused (exit 1)"
like "$out" "state directory .*/open is writable by its group or others \(mode 0777\)" "... with a clear message"
mkdir -p -m 700 "$SCRATCH/open2/daemon"; chmod 770 "$SCRATCH/open2/daemon"
out=$(timeout 5 "$HAUL" daemon --paused --socket "$SCRATCH/l5b.sock" --state-dir "$SCRATCH/open2" 2>&1); rc=$?
is "$rc:$(printf '%s' "$out" | grep -c 'open2/daemon is writable by its group')" "1:1" "a group-writable STATE_DIR/daemon is refused too"
mkdir -m 700 "$SCRATCH/theirs"; chown nobody "$SCRATCH/theirs"
out=$(timeout 5 "$HAUL" daemon --paused --socket "$SCRATCH/l5c.sock" --state-dir "$SCRATCH/theirs" 2>&1); rc=$?
is "$rc" "1" "a state directory owned by another user is refused (exit 1)"
like "$out" "state directory .*/theirs belongs to uid 65534, not to this daemon's user \(uid 0\) or root" "... with a clear message"

# A symlink planted at requests.journal.tmp: the compaction at start does
# not follow it; a failed.log left readable by others becomes 0600.
ST5="$SCRATCH/st5"
mkdir -p -m 700 "$ST5/daemon"
echo precious > "$SCRATCH/victim"
ln -s "$SCRATCH/victim" "$ST5/daemon/requests.journal.tmp"
S5="$SCRATCH/l5.sock"
(umask 022; exec "$HAUL" daemon --paused --socket "$S5" --state-dir "$ST5" --log "$SCRATCH/l5.log" 2>"$SCRATCH/d5.err") &
DAEMON_PID=$!; PIDS+=("$DAEMON_PID")
wait_for "[ -S '$S5' ]"; ok $? "daemon starts over a planted requests.journal.tmp symlink"
is "$(cat "$SCRATCH/victim")" "precious" "the symlink's target is untouched"
[ -f "$ST5/daemon/requests.journal" ] && [ ! -L "$ST5/daemon/requests.journal" ]
ok $? "the journal is a regular file of its own, not the symlink"
is "$(stat -c %a "$ST5/daemon/failed.log"):$(stat -c %a "$SCRATCH/l5.log")" "600:600" "failed.log and --log are created 0600 (umask 022)"
stop_daemon
chmod 644 "$ST5/daemon/failed.log"
start_daemon "$S5" "$HAUL" daemon --paused --socket "$S5" --state-dir "$ST5" 2>>"$SCRATCH/d5.err"
is "$(stat -c %a "$ST5/daemon/failed.log")" "600" "a failed.log left 0644 is made 0600 at start"
stop_daemon; is "$?" "0" "... and the daemon stops cleanly"

done_testing
