#!/usr/bin/env bash
# haul backup on a generated tree with every kind of entry: everything is
# stored with its metadata, an unchanged rerun uploads nothing, touching
# three files uploads exactly three, tiering by size, filters, --delete,
# --dry-run, an unreadable file, and a run killed midway then rerun.
. "$(dirname "$0")/lib.sh"

run mb "s3://$BUCKET"; ok $RC "mb"
SRC="$SCRATCH/src"; STATE="$SCRATCH/state"
python3 "$ROOT/bench/gen-tree.py" "$SRC" --files 300 --large 2 --large-size $((6 * 1024 * 1024)) >/dev/null
n_files=$(find "$SRC" -type f | wc -l); n_dirs=$(find "$SRC" -type d | wc -l); n_links=$(find "$SRC" -type l | wc -l)
B="--state-dir $STATE --storage-class-large GLACIER"

json_field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])[sys.argv[1]])' "$1"; }

run backup $B --json "$SRC" "s3://$BUCKET/bk"
ok $RC "first backup"
is "$(echo "$OUT" | json_field uploaded)" $((n_files + n_dirs + n_links)) "every file, directory and symlink was uploaded"
is "$(echo "$OUT" | json_field hardlinks)" 1 "the hard link was stored as a link"
run ls -r --json "s3://$BUCKET/bk/"
is "$(echo "$OUT" | wc -l)" $((n_files + n_dirs + n_links + 1)) "one object per entry (the root is the bk/ marker), and the index's marker bk/.haul/index-id"

run backup $B --json "$SRC" "s3://$BUCKET/bk"
is "$(echo "$OUT" | json_field uploaded)" 0 "unchanged rerun uploads nothing"
is "$(echo "$OUT" | json_field unchanged)" $((n_files + n_dirs + n_links)) "unchanged rerun: everything unchanged"

mapfile -t some < <(find "$SRC/project-"* -type f | sort | head -3)
touch -d "2001-02-03 04:05:06.123456789" "${some[@]}"
run backup $B --json -v "$SRC" "s3://$BUCKET/bk"
is "$(echo "$OUT" | json_field uploaded)" 3 "touching three files uploads exactly three"

# Metadata as s3fs writes it: mode, uid, gid, mtime with nanoseconds.
rel=${some[0]#$SRC/}
got=$(python3 - "$BUCKET" "bk/$rel" "${some[0]}" <<'PY'
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
m = s3.head_object(Bucket=sys.argv[1], Key=sys.argv[2])["Metadata"]
st = os.lstat(sys.argv[3])
want = {"mode": str(st.st_mode), "uid": str(st.st_uid), "gid": str(st.st_gid),
        "mtime": "%d.%09d" % (st.st_mtime_ns // 10**9, st.st_mtime_ns % 10**9)}
print("ok" if all(m.get(k) == v for k, v in want.items()) else "differs: %r vs %r" % (m, want))
PY
)
is "$got" "ok" "object metadata holds mode, uid, gid and the nanosecond mtime"
run get "s3://$BUCKET/bk/special/link-to-file" -
is "$OUT" "target.txt" "a symlink object holds its target"
both=$("$HAUL" stat --json "s3://$BUCKET/bk/special/hardlink.txt"; "$HAUL" stat --json "s3://$BUCKET/bk/special/target.txt")
like "$both" '"haul-hardlink":"special/(target|hardlink).txt"' "one of two hard-linked paths names the other"
is "$(echo "$both" | grep -c '"size":0,')" 1 "the inode's data is stored once"
run stat --json "s3://$BUCKET/bk/special/empty-dir/nested-empty/"
like "$OUT" '"mode":"16877"|"mode":"1[0-9]{4}"' "an empty directory is a dir/ object with its mode"

run ls -r "s3://$BUCKET/bk/large/"
is "$(echo "$OUT" | grep -c GLACIER)" 2 "files over the threshold went to GLACIER"
run ls -r "s3://$BUCKET/bk/special/"
is "$(echo "$OUT" | grep -v sparse.img | grep -c GLACIER)" 0 "small files stayed in STANDARD"

# A lost index: --rescan-remote rebuilds it from the bucket, nothing is uploaded again.
run backup --json --state-dir "$SCRATCH/fresh-state" --rescan-remote --storage-class-large GLACIER "$SRC" "s3://$BUCKET/bk"
ok $RC "--rescan-remote with an empty state directory"
is "$(echo "$OUT" | json_field rescanned)" $((n_files + n_dirs + n_links)) "every object was read back into the index"
is "$(echo "$OUT" | json_field uploaded)" 1 "only the link object is stored again (its size is not in the metadata)"

# Filters and --dry-run.
run backup --state-dir "$SCRATCH/state2" --dry-run --exclude 'project-*/' --exclude '*.img' "$SRC" "s3://$BUCKET/filtered"
like "$OUT" "upload \(dry run\): filtered/special/target.txt" "dry run lists what it would upload"
ok $(echo "$OUT" | grep -c 'project-\|sparse.img') "excluded directories and globs are not selected"
run ls -r "s3://$BUCKET/filtered/"
is "$OUT" "" "dry run uploads nothing"

# --delete: a file gone locally is removed from the bucket (only with --delete).
rm "$SRC/special/name with spaces & ünïcødé ☃.txt"
# fresh-state (above) bound bk to itself: this index takes it back over (else its --delete is held)
run backup $B --json --rescan-remote "$SRC" "s3://$BUCKET/bk"
is "$(echo "$OUT" | json_field deleted)" 0 "without --delete nothing is removed"
run backup $B --json --delete "$SRC" "s3://$BUCKET/bk"
is "$(echo "$OUT" | json_field deleted)" 1 "--delete removes the object of the deleted file"
run stat "s3://$BUCKET/bk/special/name with spaces & ünïcødé ☃.txt"
is "$RC" 1 "the deleted file's object is gone"
run backup $B --delete --exclude '*.dat' "$SRC" "s3://$BUCKET/bk"
is "$RC" 2 "--delete with filters needs --delete-excluded"

# An unreadable file (as an unprivileged user): reported, the rest stored, exit 1.
if command -v setpriv >/dev/null && [ "$(id -u)" = 0 ]; then
    U="$SCRATCH/user"; mkdir -p "$U/tree/sub"; echo ok > "$U/tree/sub/readable"; echo no > "$U/tree/sub/secret"
    chmod 000 "$U/tree/sub/secret"; chmod -R a+rwX "$SCRATCH"; chmod 000 "$U/tree/sub/secret"
    out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME="$U" "$HAUL" backup --state-dir "$U/state" "$U/tree" "s3://$BUCKET/user" 2>&1); rc=$?
    is "$rc" 1 "an unreadable file: exit 1"
    like "$out" "secret: (open: )?Permission denied" "an unreadable file is named with the cause"
    like "$out" "1 entry could not be backed up" "the summary counts it"
    run get "s3://$BUCKET/user/sub/readable" -
    is "$OUT" "ok" "the readable file was still backed up"
else
    echo "ok $((_n += 1)) - # SKIP unreadable-file test needs root and setpriv"
fi

# Statistics to Graphite (a test double for carbon that checks every
# line): the last values equal the summary's.
carbon_start
run backup --json --state-dir "$SCRATCH/state-graphite" --stats-graphite "127.0.0.1:$CARBON_PORT" \
    --graphite-prefix t.backup --report-interval 1 "$SRC" "s3://$BUCKET/graphite"
is "$RC" 0 "backup with --stats-graphite exits 0"
for m in uploaded files_seen; do
    f=$m; [ $m = files_seen ] && f=files
    is "$(carbon_last t.backup.$m "$(echo "$OUT" | json_field $f)")" "$(echo "$OUT" | json_field $f)" \
        "Graphite's last $m equals the summary's"
done
is "$(wc -l < "$SCRATCH/carbon.bad")" 0 "every line sent follows the plaintext protocol"
carbon_stop
run backup --report-interval 0 "$SRC" "s3://$BUCKET/graphite"
is "$RC" 2 "--report-interval 0: usage error"

# A backup killed midway, then rerun: nothing lost.  (faultproxy.py, a TEST
# DOUBLE, holds one upload so the kill lands mid-run deterministically.)
RULES="$SCRATCH/rules.json"; echo '[]' > "$RULES"
coproc PROXY { exec python3 "$ROOT/tests/integration/faultproxy.py" "${AWS_ENDPOINT_URL##*:}" "$RULES"; }
read -r port <&"${PROXY[0]}"
trap 'kill $PROXY_PID 2>/dev/null; _cleanup' EXIT
echo '[{"method":"PUT","match":"volume-1","action":"hang"}]' > "$RULES"
"$HAUL" backup --endpoint-url "http://127.0.0.1:$port" -q --state-dir "$SCRATCH/state3" "$SRC" "s3://$BUCKET/killed" &
pid=$!
for _ in $(seq 1 300); do grep -q "volume-1" "$RULES.log" 2>/dev/null && break; sleep 0.1; done
kill -9 $pid; wait $pid 2>/dev/null
echo '[]' > "$RULES"
run backup --endpoint-url "http://127.0.0.1:$port" --json --state-dir "$SCRATCH/state3" "$SRC" "s3://$BUCKET/killed"
ok $RC "rerun after kill -9 succeeds"
run ls -r --json "s3://$BUCKET/killed/"
n_now=$(find "$SRC" | wc -l)
is "$(echo "$OUT" | wc -l)" "$((n_now + 1))" "after the rerun every entry has its object (and the index's marker)"
got=$("$HAUL" get "s3://$BUCKET/killed/large/volume-1.raw" - | sha256sum | cut -d' ' -f1)
is "$got" "$(sha256sum < "$SRC/large/volume-1.raw" | cut -d' ' -f1)" "the file held at the kill is complete and identical"
done_testing
