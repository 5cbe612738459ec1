#!/usr/bin/env bash
# Distributed clone (haul clone --broker, haul worker, haul ctl) against a
# real RabbitMQ broker (scripts/broker; started here if it is not running,
# and then stopped at the end): the same result as a local clone with 3
# worker processes (tests/integration/treecmp.py: content, types, modes,
# owners, mtimes of directories, hard links, symlinks, xattrs, sparse
# files), a worker killed by SIGKILL mid-run loses nothing, a coordinator
# killed by SIGKILL and started again finishes the job, malformed units go
# to the dead-letter queue while the worker goes on, ctl status / grow /
# stop, and a unit longer than the heartbeat timeout keeps its connection.
#
# Test knobs (src/job/worker.h): workers started with
# HAUL_TEST_UNIT_DELAY_MS=N sleep N ms before each unit, so that a run lasts
# long enough to be killed in the middle, deterministically, whatever the
# machine's speed; HAUL_TEST_HEARTBEAT_S=N and HAUL_TEST_PATH_DELAY_MS=N give
# the work connections a short heartbeat and make a one-path unit last.
. "$(dirname "$0")/lib.sh"
TREECMP="$ROOT/tests/integration/treecmp.py"
. "$(dirname "$0")/brokerlib.sh"
JOB="t-dclone-$$"
QUEUES="haul.$JOB"
B=(--broker "$HAUL_BROKER" --job "$JOB")
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

# The tree of t_clone.sh: every kind of entry clone keeps.
S=$SCRATCH/src
mkdir -p "$S/a/b/c" "$S/empty" "$S/ro" "$S/with space/ünï"
mkfile "$S/a/f1" 5000
mkfile "$S/a/b/mid" 3000000
mkfile "$S/a/b/c/large" 20000000
: > "$S/a/zero"
ln "$S/a/f1" "$S/a/hardlink"
ln "$S/a/f1" "$S/with space/ünï/hardlink2"
ln -s ../f1 "$S/a/b/rel-link"
ln -s /nonexistent/target "$S/dangling"
mkfifo "$S/fifo"
mknod "$S/null-dev" c 1 3
truncate -s 200M "$S/sparse"
printf data | dd of="$S/sparse" bs=1 seek=100000000 conv=notrunc 2>/dev/null
mkfile "$S/with space/ünï/file name" 100
for i in $(seq 1 150); do mkfile "$S/a/many-$i" $((i * 10)); done
printf 'x' > "$S/ro/readonly-file"; chmod 0444 "$S/ro/readonly-file"; chmod 0555 "$S/ro"
chmod 4755 "$S/a/f1"; chown 1234:5678 "$S/a/b/mid"; chown -h 4321:8765 "$S/a/b/rel-link"
python3 -c "
import os, sys
os.setxattr(sys.argv[1], 'user.project', b'telescope')
os.setxattr(sys.argv[2], 'user.empty', b'')
" "$S/a/b/mid" "$S/a/b"
touch -h -d '2001-02-03 04:05:06.123456789' "$S/a/b/rel-link"
touch -d '2010-01-01 00:00:00.5' "$S/a/b" "$S/empty" "$S/a" "$S/ro"

run worker --help
ok $RC "worker --help exits 0"
like "$OUT" "--threads" "worker --help lists --threads"
run ctl --help
ok $RC "ctl --help exits 0"
like "$OUT" "grow N" "ctl --help lists grow"
HAUL_BROKER= run worker
is "$RC" 2 "worker without a broker is a usage error"

run clone --pass all --xattrs --parallel-threshold 8M --chunk-size 2M --json "$S" "$SCRATCH/local"
is "$RC" 0 "local clone exits 0"
LOCAL_OUT=$OUT

# --range-size 4M: the 20 MB file and the 200 MB sparse one travel as RANGE
# units (5 and 50) copied by whichever workers take them, then a FINISH.
# Started before any worker: the coordinator says it waits for one (after
# three idle seconds) and goes on when they attach.
"$HAUL" clone "${B[@]}" -v --pass all --xattrs --parallel-threshold 8M --chunk-size 2M --range-size 4M --json \
    "$S" "$SCRATCH/dist" >"$SCRATCH/dist.out" 2>"$SCRATCH/dist.err" &
coord=$!
for i in $(seq 150); do grep -q "no worker is attached" "$SCRATCH/dist.err" && break; sleep 0.1; done
like "$(cat "$SCRATCH/dist.err")" "haul clone: no worker is attached to the job's queue yet \(start .haul worker" \
    "started before any worker, the coordinator says it waits for one"
start_worker w1
start_worker w2
start_worker w3
wait_workers 3; ok $? "3 workers answer ctl status"
wait "$coord"; RC=$?; OUT=$(cat "$SCRATCH/dist.out"); ERR=$(cat "$SCRATCH/dist.err")
is "$RC" 0 "distributed clone --pass all exits 0"
like "$ERR" "copy pass: 2 large files copied in 55 RANGE units" "the two large files went in ranges"
is "$(find "$SCRATCH/dist" -name '.haul-range.*' | wc -l)" 0 "no range temporary file left"
is "$(field "$OUT" failed)" 0 "no failures reported"
for f in files dirs symlinks others copied hardlinks; do
    is "$(field "$OUT" $f)" "$(field "$LOCAL_OUT" $f)" "$f: the same count as the local clone"
done
CMP=$(python3 "$TREECMP" "$S" "$SCRATCH/dist" --sparse); CRC=$?
is "$CRC" 0 "the distributed copy is identical to SRC ($CMP)"
CMP=$(python3 "$TREECMP" "$SCRATCH/local" "$SCRATCH/dist"); CRC=$?
is "$CRC" 0 "... and to the local clone ($CMP)"
is "$(stat -c %h "$SCRATCH/dist/a/f1")" 3 "the hard-linked file has its 3 names on DST"
is "$(ls -a "$SCRATCH/dist" | grep -c '^\.haul-links')" 0 "the hard-link registry is gone after the run"
is "$(find "$SCRATCH/dist" -name '.haul-tmp*' | wc -l)" 0 "no temporary names left"
ok "$([ "$(cat "$SCRATCH"/w[123].log | grep -c ': run ')" -ge 2 ]; echo $?)" "more than one worker thread took part"

run clone "${B[@]}" --json "$S" "$SCRATCH/dist"
is "$RC" 0 "a second distributed copy pass exits 0"
is "$(field "$OUT" copied)" 0 "... copies nothing"
is "$(field "$OUT" up_to_date)" "$(( $(field "$OUT" files) + $(field "$OUT" symlinks) + $(field "$OUT" others) ))" \
    "... everything is up to date"

# Changes, then delete + dirtimes through the workers.
mkfile "$S/a/new" 1000
rm "$S/a/zero"; rm -r "$S/empty"
run clone "${B[@]}" --pass all --xattrs --json "$S" "$SCRATCH/dist"
is "$RC" 0 "distributed clone after changes exits 0"
is "$(field "$OUT" deleted)" 2 "two entries deleted"
CMP=$(python3 "$TREECMP" "$S" "$SCRATCH/dist" --sparse); CRC=$?
is "$CRC" 0 "identical again after delete and dirtimes ($CMP)"

# -x: a filesystem mounted below DST where SRC has nothing is left alone by
# the workers' delete pass.
mkdir -p "$SCRATCH/dist/mnt"
if mount -t tmpfs -o size=1m tmpfs "$SCRATCH/dist/mnt" 2>/dev/null; then
    echo precious > "$SCRATCH/dist/mnt/data"
    run clone "${B[@]}" --pass delete -x --json "$S" "$SCRATCH/dist"
    is "$RC" 0 "distributed delete pass -x with a mount below DST exits 0"
    is "$(cat "$SCRATCH/dist/mnt/data" 2>/dev/null)" precious "the mounted filesystem's file is untouched"
    like "$(cat "$SCRATCH"/w[123].log)" "mnt: on another filesystem than DST: left alone" "a worker says why"
    umount "$SCRATCH/dist/mnt"
else
    echo "# skip: cannot mount a tmpfs here (not root?)"
fi
rmdir "$SCRATCH/dist/mnt"

# A range that cannot be written (DST full): the file never appears under
# its real name with a hole, the temporary file is gone, exit 1.
mkdir -p "$SCRATCH/fullsrc" "$SCRATCH/fulldst"
mkfile "$SCRATCH/fullsrc/big" 8000000
if mount -t tmpfs -o size=6m tmpfs "$SCRATCH/fulldst" 2>/dev/null; then
    run clone "${B[@]}" --range-size 1M --json "$SCRATCH/fullsrc" "$SCRATCH/fulldst"
    is "$RC" 1 "a range that hits ENOSPC makes the coordinator exit 1"
    ok "$([ ! -e "$SCRATCH/fulldst/big" ]; echo $?)" "no incomplete file under the real name"
    is "$(find "$SCRATCH/fulldst" -name '.haul-range.*' | wc -l)" 0 "no temporary file left"
    like "$(cat "$SCRATCH"/w[123].log)" "big: .*No space left on device" "a worker's log names the file and ENOSPC"
    umount -l "$SCRATCH/fulldst" # lazily: the workers still hold the job's DST open
else
    echo "# skip: cannot mount a tmpfs here (not root?)"
fi

# ctl: status lists workers, grow changes threads.
out=$("$HAUL" ctl "${B[@]}" status 2>&1)
like "$out" "worker w1 threads 2 " "status lists w1 with its threads"
like "$out" "queue haul.$JOB.work ready 0 consumers 6" "status shows the work queue and its 6 consumers"
run ctl "${B[@]}" grow 3 --node w2
is "$RC" 0 "ctl grow 3 --node w2 exits 0"
for i in $(seq 40); do
    out=$("$HAUL" ctl "${B[@]}" status --wait-ms 500 2>&1)
    case $out in *"worker w2 threads 3 "*) break ;; esac
done
like "$out" "worker w2 threads 3 " "w2 now runs 3 threads (status)"
like "$out" "worker w1 threads 2 " "w1 still runs 2"

# Malformed units: dead-lettered with a log line, the worker goes on.
"$PROBE" --prefix "haul.$JOB" --key-file "$HAUL_KEY_FILE" publish-raw "this is not a haul unit" >/dev/null
ok $? "published a garbage unit (signed)"
for i in $(seq 100); do
    case $("$PROBE" --prefix "haul.$JOB" depth dead 2>&1) in "ready=1 "*) break ;; esac
    sleep 0.1
done
like "$("$PROBE" --prefix "haul.$JOB" depth dead 2>&1)" "^ready=1 " "the garbage is in the dead-letter queue"
like "$(cat "$SCRATCH"/w[123].log)" "rejecting a malformed work unit .*bad magic" "a worker logged it and why"
rm -rf "$SCRATCH/dist2"
run clone "${B[@]}" --json "$S" "$SCRATCH/dist2"
is "$RC" 0 "the workers still work after it"
"$PROBE" --prefix "haul.$JOB" dead >/dev/null

# Statistics to Graphite: the coordinator's aggregated counters (the
# reporter of the local clone), the last value equal to the summary.
carbon_start
rm -rf "$SCRATCH/dist3"
run clone "${B[@]}" --json --stats-graphite "127.0.0.1:$CARBON_PORT" --graphite-prefix t.dclone \
    --report-interval 1 "$S" "$SCRATCH/dist3"
is "$RC" 0 "distributed clone with --stats-graphite exits 0"
is "$(carbon_last t.dclone.copied "$(field "$OUT" copied)")" "$(field "$OUT" copied)" \
    "the final Graphite counter equals the aggregated summary"
is "$(wc -l < "$SCRATCH/carbon.bad")" 0 "every line sent follows the plaintext protocol"
carbon_stop

# Per-entry failures: counted by the workers, exit status 1 on the
# coordinator, the path and cause in a worker's log.  (An immutable DST
# directory: even root cannot create the new file in it.)
mkfile "$S/a/cannot-land" 100
if chattr +i "$SCRATCH/dist3/a" 2>/dev/null; then
    run clone "${B[@]}" --json "$S" "$SCRATCH/dist3"
    chattr -i "$SCRATCH/dist3/a"
    is "$RC" 1 "an entry that cannot be copied makes the coordinator exit 1"
    ok "$([ "$(field "$OUT" failed)" -ge 1 ]; echo $?)" "the failure is counted in the summary ($(field "$OUT" failed))"
    like "$ERR" "could not be copied \(the workers' logs name them\)" "the coordinator says where to look"
    like "$(cat "$SCRATCH"/w[123].log)" "a/cannot-land: .*Operation not permitted" "a worker's log names the file and the cause"
else
    echo "# skip: chattr +i not possible here"
fi
rm -f "$S/a/cannot-land"

# ctl stop: every worker exits 0.
run ctl "${B[@]}" stop
is "$RC" 0 "ctl stop exits 0"
for n in w1 w2 w3; do
    eval "p=\$PID_$n"
    wait "$p"; is "$?" 0 "worker $n exited 0 after stop"
done
WORKERS=()

# A worker killed by SIGKILL in the middle of a run loses nothing.
K=$SCRATCH/ksrc
for d in $(seq 1 12); do
    mkdir -p "$K/d$d/sub"
    for f in $(seq 1 40); do mkfile "$K/d$d/f$f" $((f * 3000)); done
    for f in $(seq 1 20); do mkfile "$K/d$d/sub/g$f" 70000; done
    ln "$K/d$d/f1" "$K/d$d/sub/link-to-f1"
done
mkfile "$K/d1/large" 12000000 # 12 RANGE units with --range-size 1M
start_worker k1 HAUL_TEST_UNIT_DELAY_MS=150
start_worker k2 HAUL_TEST_UNIT_DELAY_MS=150
wait_workers 2; ok $? "workers k1 and k2 answer"
"$HAUL" clone "${B[@]}" --pass all --range-size 1M --json "$K" "$SCRATCH/kdst" >"$SCRATCH/k.out" 2>"$SCRATCH/k.err" &
coord=$!
for i in $(seq 300); do
    [ "$(find "$SCRATCH/kdst" -type f 2>/dev/null | wc -l)" -ge 40 ] && break
    sleep 0.05
done
kill -9 "$PID_k1"; wait "$PID_k1" 2>/dev/null
ok "$([ "$(find "$SCRATCH/kdst" -type f | wc -l)" -lt 720 ]; echo $?)" "worker k1 killed by SIGKILL mid-run"
wait "$coord"; rc=$?
is "$rc" 0 "the coordinator still completes (exit 0)"
CMP=$(python3 "$TREECMP" "$K" "$SCRATCH/kdst"); CRC=$?
is "$CRC" 0 "the tree is complete and identical, no truncated file ($CMP)"
is "$(find "$SCRATCH/kdst" -name '.haul-tmp*' | wc -l)" 0 "no temporary names left"

# A coordinator killed by SIGKILL and started again with the same job finishes it.
start_worker k3 HAUL_TEST_UNIT_DELAY_MS=150
rm -rf "$SCRATCH/kdst"
"$HAUL" clone "${B[@]}" --pass all --range-size 1M --json "$K" "$SCRATCH/kdst" >/dev/null 2>&1 &
coord=$!
for i in $(seq 300); do
    [ "$(find "$SCRATCH/kdst" -type f 2>/dev/null | wc -l)" -ge 40 ] && break
    sleep 0.05
done
kill -9 "$coord"; wait "$coord" 2>/dev/null; rc=$?
is "$rc" 137 "the coordinator was killed by SIGKILL mid-run"
run clone "${B[@]}" --pass all --range-size 1M --json "$K" "$SCRATCH/kdst"
is "$RC" 0 "the same command run again completes"
is "$(field "$OUT" failed)" 0 "... without failures"
CMP=$(python3 "$TREECMP" "$K" "$SCRATCH/kdst"); CRC=$?
is "$CRC" 0 "the tree is identical after the restart ($CMP)"
is "$(ls -a "$SCRATCH/kdst" | grep -c '^\.haul-links')" 0 "no registry left"
like "$(cat "$SCRATCH"/k2.log "$SCRATCH"/k3.log)" "that run is over, dropped|run [0-9a-f]+," "workers switched to the new run"

run ctl "${B[@]}" stop
wait "$PID_k2"; is "$?" 0 "worker k2 exited 0"
wait "$PID_k3"; is "$?" 0 "worker k3 exited 0"
WORKERS=()

# A unit longer than the heartbeat timeout keeps its broker connection: a
# worker whose work connections have a 2 s heartbeat (RabbitMQ drops one
# silent for about two) spends 9 s on a unit of one file
# (HAUL_TEST_PATH_DELAY_MS, on the copying thread) while the unit's thread
# polls the broker (path_do_keepalive).  A dropped connection would show as
# "reconnecting" in the log and the unit done again, forever (hence timeout).
L=$SCRATCH/lsrc
mkdir -p "$L"; mkfile "$L/big" 3000000
start_worker ka HAUL_TEST_HEARTBEAT_S=2 HAUL_TEST_PATH_DELAY_MS=9000
wait_workers 1; ok $? "worker ka (heartbeat 2 s, 9 s per one-path unit) answers"
t0=$(date +%s)
OUT=$(timeout 90 "$HAUL" clone "${B[@]}" --parallel-threshold 1M --json -v "$L" "$SCRATCH/ldst" 2>"$SCRATCH/l.err"); RC=$?
secs=$(( $(date +%s) - t0 ))
is "$RC" 0 "a clone whose one unit outlasts the heartbeat timeout exits 0 ($secs s)"
ok "$([ "$secs" -ge 9 ]; echo $?)" "... it took the 9 s delay (${secs} s)"
cmp -s "$L/big" "$SCRATCH/ldst/big"; ok $? "... the file's bytes are equal"
is "$(field "$OUT" files)" 1 "... one file in the summary"
is "$(field "$OUT" copied)" 1 "... copied once"
ok "$(! grep -q 'reconnecting' "$SCRATCH/ka.log"; echo $?)" "... the worker never reconnected"
like "$(cat "$SCRATCH/l.err")" "copy pass: 2 units done" "... the copy pass was 2 units (the root and the file)"
like "$("$HAUL" ctl "${B[@]}" status 2>&1)" "worker ka threads 2 units 3 files 1 copied 1 " \
    "... the worker did those and the dirtimes root, the file once"
run ctl "${B[@]}" stop
wait "$PID_ka"; is "$?" 0 "worker ka exited 0"
WORKERS=()

# A node that cannot open SRC (here: a worker in its own mount namespace
# with a tmpfs over SRC's parent) refuses the job with a log line and gives
# the units back; a node that can do them finishes the run.
H=$SCRATCH/hidden
mkdir -p "$H/src/d"; mkfile "$H/src/d/f" 1000; mkfile "$H/src/g" 10
if unshare -m true 2>/dev/null; then
    unshare -m sh -c 'mount -t tmpfs none "$1" && shift && exec "$@"' sh "$H" \
        "$HAUL" worker "${B[@]}" "${ALLOW[@]}" --threads 1 --name blind -v >"$SCRATCH/blind.log" 2>&1 &
    PID_blind=$!; WORKERS+=($PID_blind)
    wait_workers 1; ok $? "the blind worker answers"
    "$HAUL" clone "${B[@]}" --pass all --json "$H/src" "$SCRATCH/hdst" >"$SCRATCH/h.out" 2>"$SCRATCH/h.err" &
    coord=$!
    for i in $(seq 200); do grep -q 'cannot serve this job here' "$SCRATCH/blind.log" && break; sleep 0.1; done
    like "$(cat "$SCRATCH/blind.log")" "cannot serve this job here: job $JOB \(.*/hidden/src -> .*\): .*(No such file|not found)" \
        "the blind worker says it cannot open SRC, naming the job and paths"
    ok "$(kill -0 "$coord" 2>/dev/null; echo $?)" "the coordinator waits (no unit lost, none done wrongly)"
    start_worker seeing
    wait "$coord"; is "$?" 0 "a worker that sees SRC finishes the run"
    CMP=$(python3 "$TREECMP" "$H/src" "$SCRATCH/hdst"); CRC=$?
    is "$CRC" 0 "the copy is identical ($CMP)"
    run ctl "${B[@]}" stop
    wait "$PID_blind"; is "$?" 0 "the blind worker exited 0 after stop"
    wait "$PID_seeing"; is "$?" 0 "the seeing worker exited 0 after stop"
    WORKERS=()
else
    echo "# skip: unshare -m not permitted here"
fi

done_testing
