#!/usr/bin/env bash
# Distributed backup (haul backup --broker, haul worker) against a real
# RabbitMQ broker (scripts/broker; started here if it is not running, and
# then stopped) and the real local S3 server: two workers give the same
# objects as a local backup (keys, bodies, metadata, read back by aws cli
# too) and a restore identical to SRC; the index is the local run's, so
# either kind of run follows the other with nothing to upload; changes and
# --delete; a worker killed by SIGKILL mid-run and a coordinator killed and
# started again lose nothing (a large file's multipart upload is taken up,
# its parts on the server MD5-checked); a worker configured for another endpoint
# refuses the job and leaves it to the others; what --broker does not do
# yet is refused with a usage error.
#
# Test knob: HAUL_TEST_UNIT_DELAY_MS=N makes workers sleep N ms before each
# unit (src/job/worker.h), so a run can be killed in its middle.
. "$(dirname "$0")/lib.sh"
TREECMP="$ROOT/tests/integration/treecmp.py"
# restored_same PREFIX TREE WHAT: s3://$BUCKET/PREFIX restored is TREE (treecmp)
restored_same() {
    local into="$SCRATCH/restored-${1//\//-}" cmp
    rm -rf "$into"
    "$HAUL" restore "s3://$BUCKET/$1" --into "$into" >/dev/null 2>&1
    cmp=$(python3 "$TREECMP" "$2" "$into" 2>&1)
    is "$?" 0 "$3 ($cmp)"
}
. "$(dirname "$0")/brokerlib.sh"
JOB="t-dbackup-$$"
QUEUES="haul.$JOB"
B=(--broker "$HAUL_BROKER" --job "$JOB")
ST=(--state-dir "$SCRATCH/state")
# field JSON-OUTPUT NAME: a field of the summary (the last line starting with '{')
field() { python3 -c "import json,sys; print(json.loads([l for l in sys.argv[1].splitlines() if l.startswith('{')][-1])[sys.argv[2]])" "$1" "$2"; }
# keys PREFIX: the bucket's keys under PREFIX/, without it, sorted (not
# haul's own PREFIX/.haul/)
keys() {
    awscli s3api list-objects-v2 --bucket "$BUCKET" --prefix "$1/" --query 'Contents[].Key' --output text |
        tr '\t' '\n' | sed "s#^$1/##" | grep -v '^\.haul/' | LC_ALL=C sort
}
# meta KEY: the object's size, x-amz-meta-* and storage class as aws cli reads them
meta() {
    awscli s3api head-object --bucket "$BUCKET" --key "$1" |
        python3 -c "import json,sys; d=json.load(sys.stdin); print(d['ContentLength'], sorted(d.get('Metadata',{}).items()), d.get('StorageClass','STANDARD'))"
}

S=$SCRATCH/src
mkdir -p "$S/a/b/c" "$S/empty" "$S/with space/ünï"
mkfile "$S/a/f1" 5000
mkfile "$S/a/b/mid" 300000
mkfile "$S/a/b/c/large" 12000000
: > "$S/a/zero"
ln "$S/a/f1" "$S/a/hardlink"
ln -s ../f1 "$S/a/b/rel-link"
ln -s /nonexistent/target "$S/dangling"
mkfifo "$S/fifo"
mkfile "$S/with space/ünï/file name" 100
for d in 1 2 3; do
    mkdir -p "$S/d$d"
    for i in $(seq 1 60); do mkfile "$S/d$d/f-$i" $((i * 37)); done
done
mkdir "$S/wide"  # more entries than one listing message holds (1,024)
(cd "$S/wide" && for i in $(seq 1 1100); do printf "$i" > "w$i"; done)
chmod 0640 "$S/a/b/mid"; chown 1234:5678 "$S/a/b/mid"
touch -d '2010-01-01 00:00:00.5' "$S/a/b" "$S/empty"
touch -h -d '2001-02-03 04:05:06.123456789' "$S/a/b/rel-link"
OPTS=(--small-file-threshold 256K --part-size 5M --json)

run backup --check-sha256 "${B[@]}" "$S" "s3://$BUCKET/x"
is "$RC" 2 "--check-sha256 with --broker: usage error (not available yet)"
like "$ERR" "not available with --broker" "... saying so"
run backup "${B[@]}" "$S" "$S" "s3://$BUCKET/x"
is "$RC" 2 "two DIRs with --broker: usage error"
HAUL_BROKER= run backup --job x "$S" "s3://$BUCKET/x"
is "$RC" 2 "--job without a broker: usage error"
run backup --help
like "$OUT" "--broker" "backup --help lists --broker"

"$HAUL" mb "s3://$BUCKET" >/dev/null
run backup "${OPTS[@]}" --state-dir "$SCRATCH/state-local" "$S" "s3://$BUCKET/local"
is "$RC" 0 "local backup exits 0"
LOCAL_OUT=$OUT

start_worker w1
start_worker w2
wait_workers 2; ok $? "2 workers answer ctl status"
# --range-size 5M: the 12 MB file is a multipart upload the coordinator
# creates and completes, its 3 parts uploaded by RANGE units on the workers.
run backup -v "${B[@]}" "${ST[@]}" "${OPTS[@]}" --range-size 5M "$S" "s3://$BUCKET/dist"
is "$RC" 0 "distributed backup exits 0"
like "$ERR" "dbackup: 1 large files uploaded in 3 RANGE units" "the large file went as 3 RANGE units"
for f in files dirs symlinks skipped_special uploaded bytes_uploaded hardlinks errors; do
    is "$(field "$OUT" $f)" "$(field "$LOCAL_OUT" $f)" "$f: the same as the local backup"
done
is "$(keys dist)" "$(keys local)" "the same keys as the local backup (aws cli lists them)"
for k in a/f1 a/hardlink a/b/mid a/b/c/large a/b/rel-link "with space/ünï/file name" a/b/ d2/f-7; do
    is "$(meta "dist/$k")" "$(meta "local/$k")" "$k: size, metadata and class equal (aws cli head-object)"
done
awscli s3 cp "s3://$BUCKET/dist/a/b/c/large" "$SCRATCH/large.aws" >/dev/null 2>&1
ok "$(cmp -s "$SCRATCH/large.aws" "$S/a/b/c/large"; echo $?)" "aws cli downloads the multipart object intact"
ok "$([ "$(grep -c ': run ' "$SCRATCH/w1.log")" -ge 1 ] && [ "$(grep -c ': run ' "$SCRATCH/w2.log")" -ge 1 ]; echo $?)" \
    "both workers took part"
run restore "s3://$BUCKET/dist" --into "$SCRATCH/restored"
is "$RC" 0 "restore of the distributed backup exits 0"
# SRC without its fifo (backup stores files, directories and symlinks only).
# --modify-window=-1: rsync's default (0) compares times to the second only,
# so a directory of SRC changed in the second rsync creates its copy keeps
# its creation time's nanoseconds (treecmp: "mtime differs: a: ...").
expect() {
    rm -rf "$SCRATCH/expect"
    rsync -aH --no-specials --modify-window=-1 "$S/" "$SCRATCH/expect/" >/dev/null 2>&1 ||
        echo "#   rsync of SRC into expect/ failed"
}
expect
CMP=$(python3 "$TREECMP" "$SCRATCH/expect" "$SCRATCH/restored" 2>&1); CRC=$?
is "$CRC" 0 "restored tree identical to SRC ($CMP)"
is "$(stat -c %h "$SCRATCH/restored/a/f1")" 2 "the hard link is restored as a hard link"

run backup "${B[@]}" "${ST[@]}" "${OPTS[@]}" "$S" "s3://$BUCKET/dist"
is "$RC" 0 "a second distributed run exits 0"
is "$(field "$OUT" uploaded)" 0 "... uploads nothing"
run backup "${ST[@]}" "${OPTS[@]}" "$S" "s3://$BUCKET/dist"
is "$RC" 0 "a local run on the same index exits 0"
is "$(field "$OUT" uploaded)" 0 "... uploads nothing either (one index for both kinds of run)"

# Changes; --dry-run says what would go and stores nothing; then --delete.
mkfile "$S/a/new" 1000
mkfile "$S/d1/f-3" 999
rm "$S/a/zero" "$S/d2/f-9"
run backup "${B[@]}" "${ST[@]}" --dry-run "$S" "s3://$BUCKET/dist"
is "$RC" 0 "distributed --dry-run exits 0"
like "$OUT" "upload \(dry run\): dist/a/new" "... names a new file"
like "$OUT" "upload \(dry run\): dist/d1/f-3" "... and a changed one"
is "$(awscli s3api head-object --bucket "$BUCKET" --key dist/a/new >/dev/null 2>&1; echo $?)" 255 "... and stores nothing"
run backup "${B[@]}" "${ST[@]}" "${OPTS[@]}" --delete "$S" "s3://$BUCKET/dist"
is "$RC" 0 "distributed backup with changes and --delete exits 0"
is "$(field "$OUT" uploaded)" 4 "uploads the 2 changed files and the 2 directories whose entries changed"
is "$(field "$OUT" deleted)" 2 "deletes the 2 objects of removed files"
expect
restored_same dist "$SCRATCH/expect" "restored tree identical to the changed SRC"

# Statistics to Graphite (a test double for carbon that checks every line):
# the coordinator's aggregated counters, the last values equal to the summary.
carbon_start
run backup "${B[@]}" --state-dir "$SCRATCH/state-graphite" --json --stats-graphite "127.0.0.1:$CARBON_PORT" \
    --graphite-prefix t.dbackup --report-interval 1 "$S/d1" "s3://$BUCKET/graphite"
is "$RC" 0 "distributed backup with --stats-graphite exits 0"
for m in uploaded bytes_uploaded; do
    is "$(carbon_last t.dbackup.$m "$(field "$OUT" $m)")" "$(field "$OUT" $m)" "Graphite's last $m equals the summary's"
done
is "$(wc -l < "$SCRATCH/carbon.bad")" 0 "every line sent follows the plaintext protocol"
carbon_stop

run ctl "${B[@]}" stop
is "$RC" 0 "ctl stop"
for n in w1 w2; do eval "p=\$PID_$n"; wait "$p"; is "$?" 0 "worker $n exited 0"; done
WORKERS=()

# A large file that changes while its RANGE units wait: every range checks
# size, mtime and inode, the coordinator aborts the multipart upload, counts
# the error and exits 1; no object, no unfinished upload is left.
G=$SCRATCH/gsrc
mkdir -p "$G"
mkfile "$G/big" 11000000
start_worker slow HAUL_TEST_UNIT_DELAY_MS=1500
"$HAUL" backup "${B[@]}" --state-dir "$SCRATCH/state-g" --range-size 5M --part-size 5M "$G" "s3://$BUCKET/g" \
    >"$SCRATCH/g.out" 2>"$SCRATCH/g.err" &
coord=$!
for i in $(seq 200); do
    awscli s3api list-multipart-uploads --bucket "$BUCKET" --prefix g/big --query 'Uploads[].Key' --output text 2>/dev/null |
        grep -q 'g/big' && break
    sleep 0.1
done
touch -d '2020-01-01' "$G/big"
wait "$coord"; rc=$?
is "$rc" 1 "a file changed under its RANGE units: exit 1"
like "$(cat "$SCRATCH/g.err")" "big: changed since it was listed" "... naming the file and why"
is "$(awscli s3api head-object --bucket "$BUCKET" --key g/big >/dev/null 2>&1; echo $?)" 255 "... no object stored"
is "$(awscli s3api list-multipart-uploads --bucket "$BUCKET" --prefix g/ --query 'Uploads[].Key' --output text)" "None" \
    "... and no unfinished upload left"
run backup "${B[@]}" --state-dir "$SCRATCH/state-g" --range-size 5M --part-size 5M --json "$G" "s3://$BUCKET/g"
is "$RC" 0 "the next run stores it"
"$HAUL" get -q "s3://$BUCKET/g/big" "$SCRATCH/big.back"
ok "$(cmp -s "$SCRATCH/big.back" "$G/big"; echo $?)" "... intact"

# A coordinator killed while a large file's RANGE units run: its multipart
# upload is recorded in the state dir, so the same command run again takes
# it up.  The workers compare each part already on the server with the
# file's bytes (MD5) and send only the others; nothing is left behind.
# (Units of the killed run still queued are done too, into the same upload:
# they check the file against their listing like any other.)
# upload_id KEY: the unfinished upload of KEY ("None" when there is none)
upload_id() {
    awscli s3api list-multipart-uploads --bucket "$BUCKET" --prefix "$1" --query 'Uploads[0].UploadId' --output text 2>/dev/null
}
GB=(--state-dir "$SCRATCH/state-g" --range-size 5M --part-size 5M)
# killed_run NAME N: a backup of $G SIGKILLed once the server holds N parts
# of g/NAME; sets HELD to how many it held
killed_run() {
    local id n=0 i coord
    "$HAUL" backup "${B[@]}" "${GB[@]}" "$G" "s3://$BUCKET/g" >/dev/null 2>&1 &
    coord=$!
    for i in $(seq 300); do
        id=$(upload_id "g/$1")
        if [ -n "$id" ] && [ "$id" != None ]; then
            n=$(awscli s3api list-parts --bucket "$BUCKET" --key "g/$1" --upload-id "$id" --query 'length(Parts)' \
                --output text 2>/dev/null)
            [ "${n:-0}" != None ] && [ "${n:-0}" -ge "$2" ] && break
        fi
        sleep 0.1
    done
    kill -9 "$coord"; wait "$coord" 2>/dev/null
    HELD=${n:-0}
}
# resumed_run NAME WHAT: the same backup again takes up the upload of
# g/NAME and stores the file intact, nothing left behind; sets SENT
resumed_run() {
    run backup -v "${B[@]}" "${GB[@]}" --json "$G" "s3://$BUCKET/g"
    is "$RC" 0 "$2: the next run completes"
    like "$ERR" "s3://$BUCKET/g/$1: resuming upload" "... taking the killed run's upload up"
    SENT=$(field "$OUT" bytes_uploaded)
    "$HAUL" get -q "s3://$BUCKET/g/$1" "$SCRATCH/$1.back"
    ok "$(cmp -s "$SCRATCH/$1.back" "$G/$1"; echo $?)" "... the object holds the file's bytes"
    is "$(upload_id g/)" None "... no unfinished upload left"
    is "$(ls "$SCRATCH/state-g/uploads" | wc -l)" 0 "... and no record"
}
mkfile "$G/huge" 31000000  # 6 parts of 5 MiB, one RANGE unit each
killed_run huge 2
ok "$([ "$HELD" -ge 2 ] && echo 0 || echo 1)" "coordinator killed with $HELD of 6 parts on the server"
is "$(ls "$SCRATCH/state-g/uploads" | wc -l)" 1 "... the upload is recorded in the state dir"
resumed_run huge "coordinator killed"
ok "$([ "$SENT" -le $((31000000 - HELD * 5242880)) ] && echo 0 || echo 1)" \
    "... sending only the parts the server lacked ($SENT bytes of 31000000)"

# Killed again, and the file's bytes change before the rerun but not its
# size or mtime: the run takes the upload up, and the workers' MD5 check
# finds the parts on the server stale and sends them again.
mkfile "$G/huge2" 21000000
killed_run huge2 1
touch -r "$G/huge2" "$SCRATCH/huge2.mtime"
mkfile "$G/huge2" 21000000  # other (random) bytes, same size and inode
touch -r "$SCRATCH/huge2.mtime" "$G/huge2"
resumed_run huge2 "bytes changed after a killed run, size and mtime kept"
ok "$([ "$SENT" -ge $((HELD * 5242880)) ] && echo 0 || echo 1)" \
    "... sending again the $HELD stale part(s) the server held ($SENT bytes)"

run ctl "${B[@]}" stop
wait "$PID_slow"; is "$?" 0 "worker slow exited 0"
WORKERS=()

# A worker killed by SIGKILL mid-run, then a coordinator killed mid-run:
# nothing lost, nothing partial.
K=$SCRATCH/ksrc
for d in $(seq 1 10); do
    mkdir -p "$K/d$d"
    for f in $(seq 1 30); do mkfile "$K/d$d/f$f" $((f * 500)); done
done
start_worker k1 HAUL_TEST_UNIT_DELAY_MS=200
start_worker k2 HAUL_TEST_UNIT_DELAY_MS=200
wait_workers 2; ok $? "workers k1 and k2 answer"
"$HAUL" backup "${B[@]}" "${ST[@]}" --json "$K" "s3://$BUCKET/kill" >"$SCRATCH/k.out" 2>"$SCRATCH/k.err" &
coord=$!
for i in $(seq 300); do
    [ "$(grep -c 'haul worker: thread .*: run ' "$SCRATCH/k1.log")" -ge 1 ] && break
    sleep 0.05
done
sleep 0.5  # k1 holds units (each waits 200 ms): a kill now takes some with it
kill -9 "$PID_k1"; wait "$PID_k1" 2>/dev/null
ok "$(kill -0 "$coord" 2>/dev/null; echo $?)" "worker k1 killed by SIGKILL while the run goes on"
wait "$coord"; rc=$?
is "$rc" 0 "the coordinator still completes (exit 0)"
is "$(field "$(cat "$SCRATCH/k.out")" uploaded)" 311 "every object uploaded (300 files, 11 directories)"
restored_same kill "$K" "restore identical to SRC after the worker's death"

rm -rf "$SCRATCH/state2"
"$HAUL" backup "${B[@]}" --state-dir "$SCRATCH/state2" --json -v "$K" "s3://$BUCKET/kill2" >"$SCRATCH/k2c.out" 2>&1 &
coord=$!
for i in $(seq 300); do
    [ "$("$HAUL" ls -r "s3://$BUCKET/kill2/" 2>/dev/null | wc -l)" -ge 20 ] && break
    sleep 0.1
done
kill -9 "$coord"; wait "$coord" 2>/dev/null; rc=$?
is "$rc" 137 "the coordinator was killed by SIGKILL mid-run" || cat "$SCRATCH/k2c.out" | sed 's/^/# /' | tail -20
run backup "${B[@]}" --state-dir "$SCRATCH/state2" --json "$K" "s3://$BUCKET/kill2"
is "$RC" 0 "the same command run again completes"
is "$(field "$OUT" errors)" 0 "... without errors"
restored_same kill2 "$K" "restore identical to SRC after the coordinator's restart"
run backup "${B[@]}" --state-dir "$SCRATCH/state2" --json "$K" "s3://$BUCKET/kill2"
is "$(field "$OUT" uploaded)" 0 "a third run uploads nothing: every object was recorded"
run ctl "${B[@]}" stop
for n in k2; do eval "p=\$PID_$n"; wait "$p"; is "$?" 0 "worker $n exited 0"; done
WORKERS=()

# A worker that dies after a scan published its children but before its
# result: the scan is redone by another worker, after the directory
# changed, under fresh child ids; the first attempt's children (orphans) are
# done again but never used, so every object is stored and counted once.
O=$SCRATCH/osrc
for d in 1 2 3; do
    mkdir -p "$O/d$d"
    for f in 1 2 3 4 5; do mkfile "$O/d$d/f$f" 100; done
done
start_worker dies HAUL_TEST_DIE_BEFORE_SCAN_RESULT=1
"$HAUL" backup "${B[@]}" --state-dir "$SCRATCH/state-o" --json "$O" "s3://$BUCKET/orphans" \
    >"$SCRATCH/o.out" 2>"$SCRATCH/o.err" &
coord=$!
wait "$PID_dies"; is "$?" 137 "a worker died by SIGKILL after the root scan published its children"
like "$(cat "$SCRATCH/dies.log")" "SIGKILL before the result of unit" "... before the scan's result"
mkdir "$O/d4"; mkfile "$O/d4/late" 100; rm "$O/d1/f1"  # changed before the scan is redone
start_worker again
wait "$coord"; rc=$?
is "$rc" 0 "the scan redone elsewhere completes the run"
is "$(field "$(cat "$SCRATCH/o.out")" uploaded)" 20 "every object stored and counted once (15 files, 4 dirs, the root)"
restored_same orphans "$O" "restore identical to the changed SRC"
is "$(keys orphans | wc -l)" 20 "the bucket holds exactly those 20 objects"
run ctl "${B[@]}" stop
wait "$PID_again"; is "$?" 0 "worker again exited 0"
WORKERS=()

# A worker configured for another endpoint refuses the job (it would
# store elsewhere) and leaves its units to a worker that can do them.
start_worker wrong -- --endpoint-url http://127.0.0.1:9
wait_workers 1; ok $? "the misconfigured worker answers"
"$HAUL" backup "${B[@]}" --state-dir "$SCRATCH/state3" --json "$K/d1" "s3://$BUCKET/ep" >"$SCRATCH/ep.out" 2>&1 &
coord=$!
for i in $(seq 200); do grep -q "is configured for" "$SCRATCH/wrong.log" && break; sleep 0.05; done
like "$(cat "$SCRATCH/wrong.log")" "the job stores to http://127.0.0.1:[0-9]+, this worker is configured for http://127.0.0.1:9" \
    "it says why it refuses the job"
start_worker right
wait "$coord"; rc=$?
is "$rc" 0 "the job completes through the other worker"
is "$(field "$(cat "$SCRATCH/ep.out" | grep '^{')" uploaded)" 31 "with every object (30 files and the directory)"
run ctl "${B[@]}" stop
for n in wrong right; do eval "p=\$PID_$n"; wait "$p"; is "$?" 0 "worker $n exited 0"; done
WORKERS=()

done_testing
