#!/usr/bin/env bash
# The Glacier restore workflow of haul restore.
#
# TEST DOUBLES: Ceph RGW (the real server of the other tests) answers
# RestoreObject with NotImplemented and serves GLACIER-class objects
# directly, so it cannot play Glacier.  This file runs against moto_server
# (an AWS emulator, started and stopped here), which refuses GETs of
# DEEP_ARCHIVE/GLACIER objects with InvalidObjectState until RestoreObject
# is sent, and then completes every restore at once.  The "restore still
# running" state (hours on AWS) is injected by faultproxy.py with a small
# extension defined below: HEAD answers that carry x-amz-restore are
# rewritten to ongoing-request="true" a set number of times.
. "$(dirname "$0")/lib.sh"

MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m moto.server -H 127.0.0.1 -p "$MPORT" > "$SCRATCH/moto.log" 2>&1 &
MOTO_PID=$!
PROXY_PID=
trap 'kill $MOTO_PID $PROXY_PID 2>/dev/null; _cleanup' EXIT
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$MPORT/" && break
    sleep 0.1
done
M="--endpoint-url http://127.0.0.1:$MPORT"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing   # moto takes any
GB="glacier-$$"
run mb $M "s3://$GB"; ok $RC "mb on moto (test double for Glacier)"

KIB=1024
mkfile "$SCRATCH/deep.bin" $((1500 * KIB))
mkfile "$SCRATCH/cold.txt" 300
mkfile "$SCRATCH/std.txt" 100
mkfile "$SCRATCH/ir.txt" 200
META="-m mode=33184 -m uid=0 -m gid=0 -m mtime=1700000000.5"
put() { "$HAUL" put -q $M $META "$@"; }
put --storage-class DEEP_ARCHIVE "$SCRATCH/deep.bin" "s3://$GB/p/deep.bin" &&
put --storage-class GLACIER "$SCRATCH/cold.txt" "s3://$GB/p/cold.txt" &&
put "$SCRATCH/std.txt" "s3://$GB/p/std.txt" &&
put --storage-class GLACIER_IR "$SCRATCH/ir.txt" "s3://$GB/p/ir.txt"
ok $? "objects in DEEP_ARCHIVE, GLACIER, STANDARD and GLACIER_IR"

run get $M "s3://$GB/p/deep.bin" "$SCRATCH/early"
is "$RC" 1 "a DEEP_ARCHIVE object cannot be read before its restore"
like "$ERR" "InvalidObjectState" "  ... the server says InvalidObjectState"

# Dry run: reports, requests nothing.
run restore $M -n "s3://$GB/p" --into "$SCRATCH/dry"
like "$OUT" "restore-requested: s3://$GB/p/deep.bin \(dry run: not sent\)" "dry run says what it would request"
run stat $M "s3://$GB/p/deep.bin"
[[ "$OUT" != *ongoing-request* ]]; ok $? "dry run sent no RestoreObject"

# First run: STANDARD and GLACIER_IR now; archived ones requested, exit 3.
run restore $M --json --restore-days 3 --restore-tier standard "s3://$GB/p" --into "$SCRATCH/t"
is "$RC" 3 "archived objects pending: exit 3"
like "$ERR" "2 objects are being restored from Glacier; run the same command again later" "  ... stderr says how many and what to do"
like "$OUT" '"files":2,' "  ... STANDARD and GLACIER_IR objects restored in the same run"
like "$OUT" '"restore_requests":2,' "  ... RestoreObject sent for both archived objects"
like "$OUT" '"pending":2,' "  ... pending count in the JSON summary"
like "$OUT" '"complete":false' "  ... JSON says incomplete"
cmp -s "$SCRATCH/std.txt" "$SCRATCH/t/std.txt" && cmp -s "$SCRATCH/ir.txt" "$SCRATCH/t/ir.txt"; ok $? "  ... their bytes are right"
[ ! -e "$SCRATCH/t/deep.bin" ] && [ ! -e "$SCRATCH/t/cold.txt" ]; ok $? "  ... nothing written for the pending objects"
[ -z "$(find "$SCRATCH/t" -name '.haul-tmp*')" ]; ok $? "  ... no temporary files left"
run stat $M "s3://$GB/p/deep.bin"
like "$OUT" 'ongoing-request="false", expiry-date=' "the server got the RestoreObject (moto completes it at once)"
expect=$(date -u -d '+3 days' '+%d %b %Y')
like "$OUT" "expiry-date=\"[A-Za-z]+, $expect" "  ... for --restore-days 3"

# Second run: the restores are done; downloads them, skips the rest.
run restore $M --json "s3://$GB/p" --into "$SCRATCH/t"
is "$RC" 0 "second run after the restore finished: exit 0"
like "$OUT" '"files":2,"dirs":0,.*"skipped":2,"restore_requests":0,"pending":0' "  ... downloads the 2 restored objects, skips the 2 already there, requests nothing"
cmp -s "$SCRATCH/deep.bin" "$SCRATCH/t/deep.bin" && cmp -s "$SCRATCH/cold.txt" "$SCRATCH/t/cold.txt"; ok $? "  ... restored bytes identical"
is "$(stat -c '%a %.9Y' "$SCRATCH/t/deep.bin")" "640 1700000000.500000000" "  ... with their mode and mtime"
run restore $M --json "s3://$GB/p" --into "$SCRATCH/t"
like "$OUT" '"files":0,.*"skipped":4,.*"pending":0' "third run: everything already there"

# ---- the "still running" state, injected in front of moto ----
cat > "$SCRATCH/restoreproxy.py" <<'PY'
"""TEST DOUBLE: faultproxy.py plus one fault.  The first TIMES HEAD answers
whose request line matches PATTERN and that carry x-amz-restore get it
replaced by ongoing-request="true", as a Glacier restore that is still
running answers for hours.  Usage: restoreproxy.py UPSTREAM_PORT RULES TIMES PATTERN"""
import re, sys, threading
upstream, rules, times, pattern, testdir = sys.argv[1:6]
sys.argv = [sys.argv[0], upstream, rules]
sys.path.insert(0, testdir)
import faultproxy as fp

left, lock, forward = int(times), threading.Lock(), fp.forward

def ongoing(head, body):
    global left
    answer = forward(head, body)
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    top, sep, rest = answer.partition(b"\r\n\r\n")
    lines = top.split(b"\r\n")
    at = [i for i, l in enumerate(lines) if l.lower().startswith(b"x-amz-restore:")]
    if line.startswith("HEAD ") and re.search(pattern, line) and at:
        with lock:
            hit = left > 0
            left -= hit
        if hit:
            lines[at[0]] = b'x-amz-restore: ongoing-request="true"'
            fp.log("%s -> restore ongoing (injected)" % line)
            return b"\r\n".join(lines) + sep + rest
    return answer

fp.forward = ongoing
fp.main()
PY
proxy_start() {   # proxy_start TIMES PATTERN: a fresh proxy in front of moto
    if [ -n "$PROXY_PID" ]; then kill "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null; fi
    echo '[]' > "$SCRATCH/rules.json"; : > "$SCRATCH/rules.json.log"
    coproc PROXY { exec python3 "$SCRATCH/restoreproxy.py" "$MPORT" "$SCRATCH/rules.json" "$1" "$2" "$ROOT/tests/integration"; }
    read -r pport <&"${PROXY[0]}"
    P="--endpoint-url http://127.0.0.1:$pport"
}

# --wait: one run requests, polls while "ongoing" (twice), then downloads.
put --storage-class DEEP_ARCHIVE "$SCRATCH/deep.bin" "s3://$GB/w/deep.bin" &&
put "$SCRATCH/std.txt" "s3://$GB/w/std.txt"
ok $? "a DEEP_ARCHIVE and a STANDARD object under w/"
proxy_start 2 'w/deep\.bin'
t0=$(date +%s)
run restore $P --json --wait --poll-interval 1 "s3://$GB/w" --into "$SCRATCH/w"
t1=$(date +%s)
is "$RC" 0 "--wait: completes in one run, exit 0"
like "$OUT" '"files":2,.*"restore_requests":1,"pending":0,"errors":0,.*"complete":true' "  ... both files, one RestoreObject, nothing pending"
is "$(grep -c 'restore ongoing (injected)' "$SCRATCH/rules.json.log")" 2 "  ... the proxy answered 'ongoing' twice"
is "$(grep -c 'checking again in 1 s' <<< "$ERR")" 3 "  ... haul polled after the request and after each 'ongoing' (3 'checking again' lines)"
[ $((t1 - t0)) -ge 2 ]; ok $? "  ... waiting --poll-interval between polls ($((t1 - t0)) s)"
cmp -s "$SCRATCH/deep.bin" "$SCRATCH/w/deep.bin"; ok $? "  ... the archived object's bytes are right"

# Without --wait, a restore that is still running: pending, and no second
# RestoreObject is sent for it.
put --storage-class DEEP_ARCHIVE "$SCRATCH/cold.txt" "s3://$GB/o/cold.txt"
run restore $M "s3://$GB/o" --into "$SCRATCH/o"
is "$RC" 3 "first run requests the restore: exit 3"
proxy_start 1 'o/cold\.txt'
run restore $P --json "s3://$GB/o" --into "$SCRATCH/o"
is "$RC" 3 "restore still running: exit 3 again"
like "$OUT" '"restore_requests":0,"pending":1' "  ... pending, no new request"
grep -q 'POST .*restore' "$SCRATCH/rules.json.log"; is "$?" 1 "  ... no RestoreObject went to the server"
[ ! -e "$SCRATCH/o/cold.txt" ]; ok $? "  ... nothing written"
run restore $P "s3://$GB/o" --into "$SCRATCH/o"
is "$RC" 0 "once the restore finished: exit 0"
cmp -s "$SCRATCH/cold.txt" "$SCRATCH/o/cold.txt"; ok $? "  ... and the object is there"

"$HAUL" rb $M --force -q "s3://$GB" >/dev/null 2>&1
done_testing
