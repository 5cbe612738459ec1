#!/usr/bin/env bash
# haul clone: passes, identity of the copy (tests/integration/treecmp.py, an
# independent comparison), incremental re-runs, deletions, interrupted
# passes, age filters, per-file errors, Graphite statistics, Lustre hooks.
. "$(dirname "$0")/lib.sh"
TREECMP="$ROOT/tests/integration/treecmp.py"
S=$SCRATCH/src
D=$SCRATCH/dst
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

# A tree with every kind of entry clone must keep.
mkdir -p "$S/a/b/c" "$S/empty" "$S/ro" "$S/with space/ünï"
mkfile "$S/a/f1" 5000
mkfile "$S/a/b/mid" 3000000
mkfile "$S/a/b/c/large" 20000000       # copied in parallel ranges below
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
printf 'x' > "$S/ro/readonly-file"; chmod 0444 "$S/ro/readonly-file"; chmod 0555 "$S/ro"
chmod 4755 "$S/a/f1"; chown 1234:5678 "$S/a/b/mid"; chown -h 4321:8765 "$S/a/b/rel-link"
python3 -c "
import os, sys
os.setxattr(sys.argv[1], 'user.project', b'telescope')
os.setxattr(sys.argv[2], 'user.empty', b'')
" "$S/a/b/mid" "$S/a/b"
touch -h -d '2001-02-03 04:05:06.123456789' "$S/a/b/rel-link"
touch -d '2010-01-01 00:00:00.5' "$S/a/b" "$S/empty" "$S/a"

run clone --help
ok $RC "clone --help exits 0"
like "$OUT" "--pass" "--help lists --pass"

run clone --pass all --xattrs --parallel-threshold 8M --chunk-size 2M --json "$S" "$D"
is "$RC" 0 "clone --pass all exits 0"
like "$OUT" '"failed":0' "no failures reported"
CMP=$(python3 "$TREECMP" "$S" "$D" --sparse); CRC=$?
is "$CRC" 0 "the copy is identical: content, types, modes, owners, mtimes, links, xattrs, sparse ($CMP)"
is "$(stat -c %h "$D/a/f1")" 3 "the hard-linked file has its 3 names on DST"
is "$(find "$D" -name '.haul-tmp*' | wc -l)" 0 "no temporary names left"

run clone --xattrs --json "$S" "$D"
is "$RC" 0 "second copy pass exits 0"
is "$(field "$OUT" copied)" 0 "a second copy pass copies nothing"
is "$(field "$OUT" bytes_copied)" 0 "... and moves no bytes"

# Changes on SRC: a new file, a modified one, a mode change, a deleted
# file and a deleted subtree, a file replaced by a directory.
mkfile "$S/a/new" 1000
mkfile "$S/a/b/mid" 3000001
chmod 0600 "$S/with space/ünï/file name"
rm "$S/a/zero"; rm -r "$S/empty"
rm "$S/dangling"; mkdir "$S/dangling"; mkfile "$S/dangling/inside" 10
run clone --xattrs --json "$S" "$D"
is "$RC" 0 "copy pass after changes exits 0"
is "$(field "$OUT" copied)" 4 "copies the new file, the changed one, the new directory and its file"
is "$(field "$OUT" meta_updated)" 1 "fixes the mode of the file whose content did not change"
ok "$([ -e "$D/a/zero" ] && [ -d "$D/empty" ]; echo $?)" "deleted entries stay on DST until the delete pass"
cmp -s "$S/a/b/mid" "$D/a/b/mid"; ok $? "the changed file was copied"

run clone --pass delete --dry-run "$S" "$D"
is "$RC" 0 "delete --dry-run exits 0"
like "$OUT" "would delete a/zero" "the dry run lists the deleted file"
like "$OUT" "would delete empty/" "... and the deleted directory"
ok "$([ -e "$D/a/zero" ]; echo $?)" "... and changes nothing"

run clone --pass delete,dirtimes --xattrs --json "$S" "$D"
is "$RC" 0 "delete and dirtimes passes exit 0"
is "$(field "$OUT" deleted)" 2 "two entries deleted"
CMP=$(python3 "$TREECMP" "$S" "$D" --sparse); CRC=$?
is "$CRC" 0 "after delete and dirtimes the trees are identical again ($CMP)"

# A symlink planted on DST where SRC has a directory is replaced, never followed.
mkdir -p "$SCRATCH/outside"
rm -r "$D/a/b/c"; ln -s "$SCRATCH/outside" "$D/a/b/c"
run clone "$S" "$D"
is "$RC" 0 "copy over a planted symlink exits 0"
is "$(ls -A "$SCRATCH/outside" | wc -l)" 0 "nothing was written through the symlink"
ok "$([ -d "$D/a/b/c" ] && [ ! -L "$D/a/b/c" ]; echo $?)" "the symlink was replaced by the directory"

# Trees inside each other are refused.
run clone "$S" "$S/a/inner"
is "$RC" 2 "DST inside SRC is refused (usage)"
like "$ERR" "overlap" "... with a message saying why"
run clone --pass delete "$S/a" "$S"
is "$RC" 2 "SRC inside DST is refused"
run clone --pass bogus "$S" "$D"
is "$RC" 2 "an unknown pass is a usage error"
run clone "$SCRATCH/missing" "$D"
is "$RC" 1 "a missing SRC fails"
like "$ERR" "missing" "... naming it"

# A pass killed midway and re-run leaves no temporary or truncated file.
K=$SCRATCH/kill-src
mkdir -p "$K"
for i in $(seq 1 120); do mkfile "$K/f$i" $((4 * 1024 * 1024 + i)); done
mkfile "$K/big" $((300 * 1024 * 1024))
"$HAUL" clone -q --threads 2 --range-threads 2 "$K" "$SCRATCH/kill-dst" &
pid=$!
for _ in $(seq 1 500); do
    [ "$(ls "$SCRATCH/kill-dst" 2>/dev/null | wc -l)" -ge 3 ] && break
    sleep 0.01
done
{ kill -9 $pid; wait $pid; } 2>/dev/null; krc=$?
is "$krc" 137 "the copy pass was killed midway (SIGKILL)"
bad=0
for f in "$SCRATCH/kill-dst"/*; do
    [ -e "$f" ] || continue
    cmp -s "$f" "$K/$(basename "$f")" || { echo "# incomplete under its name: $f"; bad=$((bad + 1)); }
done
is "$bad" 0 "every file under its real name is complete after the kill"
is "$(find "$SCRATCH/kill-dst" -name '.haul-tmp*' | wc -l)" 0 "no temporary names after the kill"
run clone --pass all "$K" "$SCRATCH/kill-dst"
is "$RC" 0 "the re-run completes"
CMP=$(python3 "$TREECMP" "$K" "$SCRATCH/kill-dst"); CRC=$?
is "$CRC" 0 "after the re-run the trees are identical ($CMP)"
rm -rf "$K" "$SCRATCH/kill-dst"

# Age filters pick exactly the expected files.
A=$SCRATCH/age
mkdir -p "$A"
for n in old-read recent-read just-written; do mkfile "$A/$n" 100; done
touch -a -d '100 days ago' "$A/old-read"
touch -a -d '10 days ago' "$A/recent-read"
touch -m -d '100 days ago' "$A/old-read" "$A/recent-read"
run clone --json --skip-atime-older 30 --skip-mtime-newer 3600 "$A" "$SCRATCH/age-dst"
is "$RC" 0 "clone with age filters exits 0"
is "$(ls "$SCRATCH/age-dst" | tr '\n' ' ')" "recent-read " "only the file read recently and not modified recently is copied"
is "$(field "$OUT" skipped_atime)/$(field "$OUT" skipped_mtime)" "1/1" "one file skipped by each filter"
run clone --json --skip-atime-older 0 --skip-mtime-newer 0 "$A" "$SCRATCH/age-dst"
is "$(ls "$SCRATCH/age-dst" | wc -l)" 3 "0 disables both filters"

# Excludes: left out of the copy and kept on DST by the delete pass.
run clone --pass all --exclude '*.tmp' --exclude '/a/b/' "$S" "$SCRATCH/ex-dst"
is "$RC" 0 "clone with excludes exits 0"
ok "$([ ! -e "$SCRATCH/ex-dst/a/b" ] && [ -e "$SCRATCH/ex-dst/a/f1" ]; echo $?)" "the excluded directory is not copied, the rest is"

# Per-file errors: reported with the path, counted, the pass goes on, exit 1.
E=$SCRATCH/err-src
mkdir -p "$E/sub" "$SCRATCH/err-dst"
mkfile "$E/readable" 100; mkfile "$E/sub/secret" 100; mkfile "$E/zz" 100
chmod 0600 "$E/sub/secret"; chmod 0755 "$E" "$E/sub"; chmod 0644 "$E/readable" "$E/zz"
chown nobody "$SCRATCH/err-dst"; chmod 0755 "$SCRATCH"
OUT=$(setpriv --reuid nobody --regid nogroup --clear-groups "$HAUL" clone --json "$E" "$SCRATCH/err-dst" 2>"$SCRATCH/.err"); RC=$?
ERR=$(cat "$SCRATCH/.err")
is "$RC" 1 "an unreadable file makes the exit status 1"
like "$ERR" "sub/secret: open: Permission denied" "the error names the file and the cause"
is "$(field "$OUT" failed)" 1 "one failure counted"
ok "$(cmp -s "$E/readable" "$SCRATCH/err-dst/readable" && cmp -s "$E/zz" "$SCRATCH/err-dst/zz"; echo $?)" "the other files were copied"

# ENOSPC: a destination filesystem that is too small.
mkdir -p "$SCRATCH/small"
if mount -t tmpfs -o size=2m tmpfs "$SCRATCH/small" 2>/dev/null; then
    F=$SCRATCH/full-src; mkdir -p "$F"
    mkfile "$F/a-fits" 100000; mkfile "$F/b-too-big" 5000000
    run clone --threads 1 "$F" "$SCRATCH/small/dst"
    is "$RC" 1 "a full destination makes the exit status 1"
    like "$ERR" "b-too-big: .*No space left on device" "the error names the file and ENOSPC"
    ok "$([ ! -e "$SCRATCH/small/dst/b-too-big" ]; echo $?)" "no partial file under the real name"
    cmp -s "$F/a-fits" "$SCRATCH/small/dst/a-fits"; ok $? "the file that fits was copied"
    umount "$SCRATCH/small"
else
    echo "# skip: cannot mount a tmpfs here (not root?)"
fi

# -x and the delete pass: a filesystem mounted below DST at a path SRC does
# not have is left alone (neither removed nor cleaned), as rsync -x does.
X=$SCRATCH/x-src; XD=$SCRATCH/x-dst
mkdir -p "$X/keep" "$XD/mnt"
mkfile "$X/keep/f" 100
if mount -t tmpfs -o size=1m tmpfs "$XD/mnt" 2>/dev/null; then
    echo precious > "$XD/mnt/data"
    run clone -v --pass all -x "$X" "$XD"
    is "$RC" 0 "clone --pass all -x with a mount below DST exits 0"
    is "$(cat "$XD/mnt/data" 2>/dev/null)" precious "the mounted filesystem's file is untouched"
    like "$ERR" "mnt: on another filesystem than DST: left alone" "... and the log says why"
    umount "$XD/mnt"
else
    echo "# skip: cannot mount a tmpfs here (not root?)"
fi

# Graphite: a listener that parses the plaintext protocol strictly (a test
# double for carbon: "PATH VALUE TIMESTAMP\n", nothing else accepted).
carbon_start
run clone --json --stats-graphite "127.0.0.1:$CARBON_PORT" --graphite-prefix test.clone \
    --report-interval 1 "$S" "$SCRATCH/g-dst"
is "$RC" 0 "clone with --stats-graphite exits 0"
is "$(carbon_last test.clone.copied "$(field "$OUT" copied)")" "$(field "$OUT" copied)" \
    "the final Graphite counter equals the summary"
is "$(wc -l < "$SCRATCH/carbon.bad")" 0 "every line sent follows the plaintext protocol"
carbon_stop
run clone --stats-graphite "127.0.0.1:1" "$S" "$SCRATCH/g-dst"
is "$RC" 0 "an unreachable Graphite receiver does not fail the clone"
like "$ERR" "graphite 127.0.0.1:1: cannot deliver" "... but says so"
run clone --stats-graphite "no-port" "$S" "$SCRATCH/g-dst"
is "$RC" 2 "a malformed Graphite address is a usage error"

# Lustre hooks, driven through a stand-in lfs that records its arguments
# (no Lustre here): top-level directories round-robin over MDTs, stripes kept.
mkdir -p "$SCRATCH/fakebin"
cat > "$SCRATCH/fakebin/lfs" <<'SH'
#!/bin/sh
echo "$*" >> "$LFS_LOG"
case "$1" in
    --version) echo "lfs 2.15.0" ;;
    mkdir) mkdir "$4" ;;
    getstripe) case "$2" in --stripe-count) echo 4 ;; --stripe-size) echo 4194304 ;; esac ;;
    setstripe) : > "$6" ;;
esac
SH
chmod +x "$SCRATCH/fakebin/lfs"
L=$SCRATCH/lustre-src; mkdir -p "$L/d1/sub" "$L/d2" "$L/d3"; mkfile "$L/d1/big" 9000000
export LFS_LOG=$SCRATCH/lfs.log
PATH="$SCRATCH/fakebin:$PATH" run clone --mdt-count 2 --lustre-stripes --parallel-threshold 8M "$L" "$SCRATCH/lustre-dst"
is "$RC" 0 "clone with the Lustre hooks exits 0"
is "$(grep -c '^mkdir -i' "$LFS_LOG")" 3 "each top-level directory made by lfs mkdir (not the deeper one)"
is "$(grep '^mkdir -i' "$LFS_LOG" | awk '{print $3}' | sort | tr '\n' ' ')" "0 0 1 " "spread round-robin over 2 MDTs"
like "$(grep '^setstripe' "$LFS_LOG")" "^setstripe -c 4 -S 4194304 .*/lustre-dst/d1/\.haul-tmp" "the large file gets its source's stripes"
cmp -s "$L/d1/big" "$SCRATCH/lustre-dst/d1/big"; ok $? "and its bytes"
run clone --mdt-count 2 "$L" "$SCRATCH/lustre-dst2"
is "$RC" 2 "--mdt-count without lfs is a usage error"
like "$ERR" "lfs" "... naming the missing tool"

done_testing
