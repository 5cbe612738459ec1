#!/usr/bin/env bash
# An unmounted or emptied source never empties the destination (issue 12
# item 1, audit H3), previews of deletion are complete (item 10), and a SRC
# entry named like the distributed hard-link registry is copied (L7).
#
# With real tmpfs mounts (root): clone --pass all/delete and backup --delete
# from an empty directory, from a tmpfs mountpoint after umount, and from
# another tmpfs mounted at the same path refuse (exit 1, nothing deleted,
# the message names the override); --allow-empty-src and --allow-new-src
# override; --max-delete N refuses at N+1 entries and allows N; --dry-run
# lists what would go.  Distributed: a worker started in its own mount
# namespace (unshare -m) where SRC is an empty tmpfs refuses the job's units
# instead of deleting or scanning: with only that worker the coordinator
# exits 1 (naming the refusal) and DST / the objects stay whole; with a good
# worker beside it the run completes.  Every mount is undone at exit.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { echo "1..0 # SKIP needs root (tmpfs mounts, unshare -m)"; exit 0; }
. "$(dirname "$0")/brokerlib.sh"
JOB="t-hostile-delete-$$"
QUEUES="haul.$JOB"
B=(--broker "$HAUL_BROKER" --job "$JOB")
MOUNTS=()
_hostile_cleanup() {
    local m
    for m in "${MOUNTS[@]}"; do mountpoint -q "$m" && umount -l "$m"; done
    _broker_cleanup
}
trap _hostile_cleanup EXIT
tmpfs_at() { mkdir -p "$1"; mount -t tmpfs none "$1" && MOUNTS+=("$1"); }
entries() { find "$1" | wc -l; }
tree_fill() { # tree_fill DIR: 7 entries below DIR
    mkdir -p "$1/a/b" "$1/c"
    echo one > "$1/a/f1"; echo two > "$1/a/b/f2"; echo three > "$1/c/f3"; echo top > "$1/top"
}

# ---- local clone ---------------------------------------------------------
S=$SCRATCH/src; D=$SCRATCH/dst
tree_fill "$S"
run clone --pass all "$S" "$D"
is "$RC" 0 "clone --pass all of a tree"
is "$(entries "$D")" 8 "DST has the 7 entries and its root"

mkdir "$SCRATCH/empty"
run clone --pass all "$SCRATCH/empty" "$D"
is "$RC" 1 "clone --pass all from an empty directory onto a populated DST exits 1"
like "$ERR" "SRC .*empty.*nothing deleted.*--allow-empty-src" "the message says SRC is empty and names --allow-empty-src"
is "$(entries "$D")" 8 "DST intact after a clone from an empty directory"

# A tmpfs SRC, cloned, then unmounted: the mountpoint is an empty directory.
M=$SCRATCH/mnt; D2=$SCRATCH/dst2
tmpfs_at "$M"
tree_fill "$M"
run clone --pass all "$M" "$D2"
is "$RC" 0 "clone of a tmpfs SRC"
umount "$M"
run clone --pass all "$M" "$D2"
is "$RC" 1 "clone --pass all from the unmounted mountpoint exits 1"
like "$ERR" "empty but was not at the last run.*--allow-empty-src" "the message says SRC was not empty at the last run"
is "$(entries "$D2")" 8 "DST intact after a clone from an unmounted mountpoint"
run clone --pass delete "$M" "$D2"
is "$RC" 1 "clone --pass delete from the unmounted mountpoint exits 1"
is "$(entries "$D2")" 8 "DST intact after --pass delete from it"

# Another tmpfs at the same path, not empty: another filesystem than recorded.
tmpfs_at "$M"
mkdir -p "$M/a"; echo one > "$M/a/f1"
run clone --pass all "$M" "$D2"
is "$RC" 1 "clone from another filesystem mounted at SRC's path exits 1"
like "$ERR" "not the filesystem recorded at the last run \(filesystem id .*--allow-new-src" \
    "the message says which identity differs and names --allow-new-src"
is "$(entries "$D2")" 8 "DST intact after a clone from another filesystem"
run clone --pass all --allow-new-src "$M" "$D2"
is "$RC" 0 "--allow-new-src: the delete pass runs"
is "$(cd "$D2" && find . | LC_ALL=C sort | tr '\n' ' ')" ". ./a ./a/f1 " "DST mirrors the new SRC"
run clone --pass all "$M" "$D2"
is "$RC" 0 "the new SRC was recorded: the next run needs no flag"

# First run on a DST (no record): an empty SRC still refuses.
D3=$SCRATCH/dst3
tree_fill "$D3"
run clone --pass delete "$SCRATCH/empty" "$D3"
is "$RC" 1 "no record yet: an empty SRC still refuses"
is "$(entries "$D3")" 8 "DST intact"
run clone --pass delete --allow-empty-src "$SCRATCH/empty" "$D3"
is "$RC" 0 "--allow-empty-src: an empty SRC empties DST"
is "$(entries "$D3")" 1 "DST is empty"

# --max-delete N: x holds 4 entries (x, x/y, x/y/z, x/w).
mkdir -p "$S/x/y"; : > "$S/x/y/z"; : > "$S/x/w"
run clone "$S" "$D"
rm -rf "$S/x"
run clone -n --pass delete --max-delete 4 "$S" "$D"
is "$RC" 0 "clone --dry-run --pass delete --max-delete 4 exits 0"
like "$OUT" "would delete x/" "the dry run lists what would go"
ok "$([ -e "$D/x/y/z" ]; echo $?)" "the dry run deleted nothing"
run clone --pass delete --max-delete 3 "$S" "$D"
is "$RC" 1 "--max-delete 3 with 4 entries to go exits 1"
like "$ERR" "4 entries would be deleted, more than --max-delete 3: nothing deleted" "the message names the count"
ok "$([ -e "$D/x/y/z" ] && [ -e "$D/x/w" ]; echo $?)" "nothing went"
run clone --pass delete --max-delete 4 "$S" "$D"
is "$RC" 0 "--max-delete 4 with 4 entries to go exits 0"
ok "$([ ! -e "$D/x" ]; echo $?)" "x went"

# ---- local backup --delete -----------------------------------------------
"$HAUL" mb "s3://$BUCKET" >/dev/null
# The objects standing for files (not haul's own PREFIX/.haul/ marker).
keys() { "$HAUL" ls -r "s3://$BUCKET/$1/" 2>/dev/null | awk '{print $NF}' | grep -v '/\.haul/' | LC_ALL=C sort; }
BM=$SCRATCH/bmnt
tmpfs_at "$BM"
tree_fill "$BM"
run backup --delete "$BM" "s3://$BUCKET/bk"
is "$RC" 0 "backup --delete of a tmpfs SRC"
BEFORE=$(keys bk)
is "$(echo "$BEFORE" | wc -l)" 8 "8 objects (the root and 7 entries)"
umount "$BM"
run backup --delete "$BM" "s3://$BUCKET/bk"
is "$RC" 1 "backup --delete after umount of SRC exits 1"
like "$ERR" "empty but was not at the last run.*nothing deleted.*--allow-empty-src" "the message names --allow-empty-src"
is "$(keys bk)" "$BEFORE" "every object is still there"

tmpfs_at "$BM"
echo new > "$BM/new"
run backup --delete "$BM" "s3://$BUCKET/bk"
is "$RC" 1 "backup --delete from another tmpfs at SRC's path exits 1"
like "$ERR" "not the filesystem recorded at the last run.*--allow-new-src" "the message names --allow-new-src"
is "$(comm -23 <(echo "$BEFORE") <(keys bk))" "" "no object was deleted"
run backup --dry-run --delete --allow-new-src "$BM" "s3://$BUCKET/bk"
is "$RC" 0 "backup --dry-run --delete --allow-new-src exits 0"
like "$OUT" "delete \(dry run\): bk/a/b/f2" "the dry run lists the objects that would be deleted"
is "$(comm -23 <(echo "$BEFORE") <(keys bk))" "" "the dry run deleted nothing"
run backup --delete --max-delete 6 --allow-new-src "$BM" "s3://$BUCKET/bk"
is "$RC" 1 "backup --delete --max-delete 6 with 7 objects to go exits 1"
like "$ERR" "7 objects would be deleted, more than --max-delete 6: nothing deleted" "the message names the count"
is "$(comm -23 <(echo "$BEFORE") <(keys bk))" "" "nothing was deleted"
run backup --delete --max-delete 7 --allow-new-src "$BM" "s3://$BUCKET/bk"
is "$RC" 0 "--max-delete 7 with 7 objects to go exits 0"
is "$(keys bk | tr '\n' ' ')" "bk/ bk/new " "the objects of the old SRC went"
rm "$BM/new"
run backup --delete "$BM" "s3://$BUCKET/bk"
is "$RC" 1 "an emptied SRC (recorded non-empty) refuses"
is "$(keys bk | tr '\n' ' ')" "bk/ bk/new " "the object is still there"
run backup --delete --allow-empty-src "$BM" "s3://$BUCKET/bk"
is "$RC" 0 "--allow-empty-src lets it go"
is "$(keys bk | tr '\n' ' ')" "bk/ " "only the root object is left"

# ---- distributed ---------------------------------------------------------
# L7: a SRC top-level .haul-links (named like registry keys inside) is copied.
DS=$SCRATCH/dsrc; DD=$SCRATCH/ddst
tree_fill "$DS"
mkdir -p "$DS/.haul-links"; echo "user data" > "$DS/.haul-links/0-1234"
echo linked > "$DS/a/h1"; ln "$DS/a/h1" "$DS/c/h2"
start_worker w1
wait_workers 1; ok $? "a worker answers"
run clone "${B[@]}" --pass all "$DS" "$DD"
is "$RC" 0 "distributed clone --pass all exits 0"
is "$(cat "$DD/.haul-links/0-1234" 2>/dev/null)" "user data" "SRC's .haul-links is copied like any file"
is "$(ls -a "$DD" | grep -c '^\.haul-links\.')" 0 "no registry is left in DST"
is "$(stat -c %i "$DD/a/h1" 2>/dev/null)" "$(stat -c %i "$DD/c/h2" 2>/dev/null)" "hard links still share an inode"
N_DD=$(entries "$DD")
run backup "${B[@]}" --delete "$DS" "s3://$BUCKET/dbk"
is "$RC" 0 "distributed backup --delete exits 0"
DBEFORE=$(keys dbk)

# A second worker node whose SRC mount is missing: an empty tmpfs at SRC's
# path in its own mount namespace.  Alone, it refuses the units.
{ kill -9 "$PID_w1"; wait "$PID_w1"; } 2>/dev/null
unshare -m --propagation private sh -c 'mount -t tmpfs none "$1" && shift && exec "$@"' sh "$DS" \
    "$HAUL" worker "${B[@]}" "${ALLOW[@]}" --threads 2 --name wbad -v >"$SCRATCH/wbad.log" 2>&1 &
WORKERS+=($!)
wait_workers 1; ok $? "the worker without SRC's mount answers"
OUT=$(timeout 120 "$HAUL" clone "${B[@]}" --refuse-timeout 10 --pass all "$DS" "$DD" 2>"$SCRATCH/.err"); RC=$?; ERR=$(cat "$SCRATCH/.err")
is "$RC" 1 "with only that worker, the distributed clone exits 1"
like "$ERR" "no worker took the job in 10 s \(--refuse-timeout\): worker wbad: .*SRC .* is empty on this node" "the coordinator names the refusing worker and why"
is "$(echo "$ERR" | grep -c "worker wbad refuses the job's units")" 1 "the coordinator logs the node's refusal once"
is "$(entries "$DD")" "$N_DD" "DST intact"
like "$(cat "$SCRATCH/wbad.log")" "cannot serve this job here: .*SRC .* is empty on this node.*units of run [0-9a-f]+ are left to other nodes" "the worker logs why it refuses"
is "$(grep -c "cannot serve this job here" "$SCRATCH/wbad.log")" 1 "once for the run"
OUT=$(timeout 120 "$HAUL" backup "${B[@]}" --refuse-timeout 10 --delete "$DS" "s3://$BUCKET/dbk" 2>"$SCRATCH/.err"); RC=$?; ERR=$(cat "$SCRATCH/.err")
is "$RC" 1 "with only that worker, the distributed backup --delete exits 1"
like "$ERR" "no worker took the job in 10 s \(--refuse-timeout\): worker wbad: .*is empty on this node" "the coordinator names the refusing worker"
is "$(keys dbk)" "$DBEFORE" "every object is still there"

# Beside a good worker, the run completes (the bad one never deletes).
start_worker w2
wait_workers 2; ok $? "both workers answer"
rm "$DS/top"
OUT=$(timeout 120 "$HAUL" clone "${B[@]}" --pass all "$DS" "$DD" 2>"$SCRATCH/.err"); RC=$?; ERR=$(cat "$SCRATCH/.err")
is "$RC" 0 "with a good worker beside it, the distributed clone exits 0"
is "$(cd "$DS" && find . | LC_ALL=C sort | md5sum)" "$(cd "$DD" && find . | LC_ALL=C sort | md5sum)" "DST mirrors SRC"
run clone "${B[@]}" --pass delete --max-delete 0 "$DS" "$DD"
is "$RC" 0 "distributed --max-delete 0 with nothing to go exits 0"
rm -rf "$DS/a"
run clone "${B[@]}" --pass delete --max-delete 4 "$DS" "$DD"
is "$RC" 1 "distributed --max-delete 4 with 5 entries to go exits 1"
like "$ERR" "5 entries would be deleted, more than --max-delete 4: nothing deleted" "the message names the count"
ok "$([ -e "$DD/a/b/f2" ]; echo $?)" "nothing went"
run clone "${B[@]}" --pass delete --max-delete 5 "$DS" "$DD"
is "$RC" 0 "distributed --max-delete 5 exits 0"
ok "$([ ! -e "$DD/a" ]; echo $?)" "a went"

done_testing
