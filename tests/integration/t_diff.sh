#!/usr/bin/env bash
# haul diff: identical trees exit 0; files only on one side and changed files
# are listed and exit 1; --check-sha256 finds content that size and mtime
# miss (a file corrupted in place with its size and mtime kept).
. "$(dirname "$0")/lib.sh"

run mb "s3://$BUCKET"; ok $RC "mb"
SRC="$SCRATCH/src"; STATE="$SCRATCH/state"
python3 "$ROOT/bench/gen-tree.py" "$SRC" --files 120 --large 1 --large-size $((3 * 1024 * 1024)) >/dev/null
run backup --check-sha256 --state-dir "$STATE" "$SRC" "s3://$BUCKET/d"
ok $RC "backup with --check-sha256"

run diff "$SRC" "s3://$BUCKET/d"
is "$RC" 0 "diff of an identical tree: exit 0"
is "$OUT" "" "diff of an identical tree: prints nothing"
run diff --check-sha256 "$SRC" "s3://$BUCKET/d"
is "$RC" 0 "diff --check-sha256 of an identical tree: exit 0"

# Corrupt a file in place, keeping its size and mtime.
f=$(find "$SRC/project-"* -type f -size +2k | sort | head -1); rel=${f#$SRC/}
python3 - "$f" <<'PY'
import os, sys
p = sys.argv[1]; st = os.stat(p)
with open(p, "r+b") as fh:
    fh.seek(100); b = fh.read(1); fh.seek(100); fh.write(bytes([b[0] ^ 0xff]))
os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
PY
run diff "$SRC" "s3://$BUCKET/d"
is "$RC" 0 "size and mtime miss the corruption"
run diff --check-sha256 "$SRC" "s3://$BUCKET/d"
is "$RC" 1 "--check-sha256 finds it: exit 1"
is "$OUT" "M d/$rel (sha256)" "--check-sha256 names the corrupted file"

# A new file, a file deleted locally, an object deleted remotely, a touch.
echo new > "$SRC/special/brand-new.txt"
rm "$SRC/special/dangling"
"$HAUL" rm -q "s3://$BUCKET/d/special/target.txt"
touch "$SRC/large/volume-0.raw"
run diff --json "$SRC" "s3://$BUCKET/d"
is "$RC" 1 "differences: exit 1"
like "$OUT" '"kind":"only-local","key":"d/special/brand-new.txt"' "a new local file is only-local"
like "$OUT" '"kind":"only-remote","key":"d/special/dangling"' "a file deleted locally is only-remote"
like "$OUT" '"kind":"only-local","key":"d/special/target.txt"' "an object deleted from the bucket makes its file only-local"
like "$OUT" '"kind":"changed","key":"d/large/volume-0.raw","why":"mtime"' "a touched file differs by mtime"

run diff "$SRC" "s3://no-such-bucket-$$/d"
is "$RC" 2 "diff against a missing bucket: exit 2"
like "$ERR" "NoSuchBucket" "diff names the missing bucket"
done_testing
