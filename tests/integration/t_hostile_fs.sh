#!/usr/bin/env bash
# haul clone (and restore) against a hostile or failing destination: names
# on DST swapped by an unprivileged user while clone runs as root (audit
# H1), a filesystem mounted below a directory the delete pass removes (M5),
# a FIFO swapped in for a source file (M4), a destination that fills (M7).
# Real mounts (tmpfs), a real user (nobody), real races (a small C racer),
# every loop bounded in runs and seconds.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ]; then echo "1..0 # SKIP needs root (mounts, runuser)"; exit 0; fi
chmod 0755 "$SCRATCH" # nobody must reach DST below it
MOUNTS=()
_hostile_cleanup() {
    [ -n "${RACER:-}" ] && { kill "$RACER" 2>/dev/null; wait "$RACER" 2>/dev/null; }
    for m in "${MOUNTS[@]}"; do umount -l "$m" 2>/dev/null; done
    if declare -F _broker_cleanup >/dev/null; then _broker_cleanup; else _cleanup; fi
}
. "$(dirname "$0")/brokerlib.sh" # for the distributed case of M7
JOB="t-hostile-fs-$$"
QUEUES="haul.$JOB"
B=(--broker "$HAUL_BROKER" --job "$JOB")
trap _hostile_cleanup EXIT

# The racer, run as nobody: swaps DIR/A and DIR/B with renameat2
# RENAME_EXCHANGE in a tight loop for at most SECONDS, re-arming the trap
# every few hundred swaps (clone may have replaced one of the names):
#   link  DIR A B VICTIM R  A: a hard link of R (reset to mode 0600), B: a symlink to VICTIM
#   dir   DIR A B VICTIM    A: a directory (reset to 0555), B: a symlink to VICTIM
#   fifo  DIR A B           one of A, B is a FIFO
cat > "$SCRATCH/race.c" <<'EOF'
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
static int d;
static void arm(const char *mode, const char *a, const char *b, const char *victim, const char *r)
{
    struct stat sa, sb;
    if (!strcmp(mode, "fifo")) {
        if (fstatat(d, a, &sa, AT_SYMLINK_NOFOLLOW) == 0 && S_ISFIFO(sa.st_mode))
            return;
        if (fstatat(d, b, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISFIFO(sb.st_mode))
            return;
        unlinkat(d, ".p", 0);
        if (mkfifoat(d, ".p", 0644) == 0)
            renameat(d, ".p", d, b);
        return;
    }
    unlinkat(d, ".s", 0);
    symlinkat(victim, d, ".s");
    if (fstatat(d, b, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sb.st_mode))
        unlinkat(d, b, AT_REMOVEDIR);
    renameat(d, ".s", d, b);
    if (!strcmp(mode, "link")) {
        int rfd = openat(d, r, O_RDONLY | O_NOFOLLOW);
        if (rfd >= 0)
            fchmod(rfd, 0600), close(rfd);
        unlinkat(d, ".l", 0);
        if (linkat(d, r, d, ".l", 0) == 0)
            renameat(d, ".l", d, a);
    } else {
        int fd = openat(d, a, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        if (fd < 0) {
            unlinkat(d, a, 0);
            mkdirat(d, a, 0555);
            fd = openat(d, a, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        }
        if (fd >= 0)
            fchmod(fd, 0555), close(fd);
    }
}
int main(int argc, char **argv)
{
    if (argc < 6)
        return 2;
    const char *mode = argv[1], *a = argv[3], *b = argv[4];
    const char *victim = argc > 6 ? argv[5] : "", *r = argc > 7 ? argv[6] : "";
    int seconds = atoi(argv[argc - 1]);
    if ((d = open(argv[2], O_RDONLY | O_DIRECTORY)) < 0)
        return perror(argv[2]), 1;
    time_t end = time(NULL) + seconds;
    while (time(NULL) < end) {
        arm(mode, a, b, victim, r);
        for (int i = 0; i < 400; i++)
            renameat2(d, a, d, b, RENAME_EXCHANGE);
    }
    return 0;
}
EOF
cc -O2 -o "$SCRATCH/race" "$SCRATCH/race.c" || { echo "Bail out! cannot build the racer"; exit 1; }
chmod 0755 "$SCRATCH/race"
race_start() { runuser -u nobody -- "$SCRATCH/race" "$@" 2>/dev/null & RACER=$!; }
race_stop() { kill "$RACER" 2>/dev/null; wait "$RACER" 2>/dev/null; RACER=; }

# ---- H1: metadata never reaches a victim through a planted symlink ----
S=$SCRATCH/h1src D=$SCRATCH/h1dst VICTIM=$SCRATCH/victim
mkdir -p "$S/u/d"
echo hello > "$S/u/f"
echo secret > "$VICTIM"; chmod 0600 "$VICTIM"
chown -R nobody:nogroup "$S/u"; chmod 0600 "$S/u/f"; chmod 0555 "$S/u/d"
run clone -q "$S" "$D"
is "$RC" 0 "H1: the first pass exits 0"
chmod 0666 "$S/u/f"                         # a mode-only change: the next pass fixes metadata only
runuser -u nobody -- ln "$D/u/f" "$D/u/r"   # the attacker keeps a link of the real copy

# h1_loop WHAT: clone -q "$S" "$D" again and again (100 runs or 15 s at most)
# while the racer runs; the victim's mode and owner must never change.
h1_loop() {
    local before after runs=0 seen=0 end=$((SECONDS + 15))
    before=$(stat -c '%a %u:%g' "$VICTIM")
    after=$before
    while [ $runs -lt 100 ] && [ $SECONDS -lt $end ]; do
        timeout -k 2 20 "$HAUL" clone -q "$S" "$D" 2>"$SCRATCH/h1.err"
        [ $? != 0 ] && seen=$((seen + 1)) # a run that met the swap (and said so)
        runs=$((runs + 1))
        after=$(stat -c '%a %u:%g' "$VICTIM")
        [ "$after" != "$before" ] && break
    done
    is "$after" "$before" "H1: $1: the victim outside DST keeps its mode and owner ($runs runs, $seen met the swap)"
    chmod 0600 "$VICTIM"; chown root:root "$VICTIM"
}
race_start link "$D/u" f x "$VICTIM" r 25
h1_loop "file_visit, metadata only, DST name swapped between a hard link and a symlink"
race_stop
race_start dir "$D/u" d y "$VICTIM" 25
h1_loop "dir_visit, 0555 directory, DST name swapped between the directory and a symlink"
race_stop
is "$(cat "$VICTIM")" secret "H1: the victim's bytes are untouched"

# ---- M5: removal never descends into another filesystem ----
S=$SCRATCH/m5src D=$SCRATCH/m5dst
mkdir -p "$S/keep" "$D/keep/mnt2" "$D/gone/sub/mnt"
echo x > "$D/gone/sub/file"
for m in "$D/gone/sub/mnt" "$D/keep/mnt2"; do
    mount -t tmpfs -o size=1M tmpfs "$m" && MOUNTS+=("$m")
    echo precious > "$m/data"
done
run clone --pass delete "$S" "$D"
is "$RC" 1 "M5: a delete pass that meets a mounted filesystem exits 1"
like "$ERR" "gone/sub/mnt: .*another filesystem" "M5: the message names the mount point inside the removed directory"
like "$ERR" "keep/mnt2: .*another filesystem" "M5: ... and a mount point the walk meets"
is "$(cat "$D/gone/sub/mnt/data" 2>&1)" precious "M5: data on a filesystem mounted below a removed directory survives"
is "$(cat "$D/keep/mnt2/data" 2>&1)" precious "M5: data on a filesystem mounted where SRC has nothing survives"
[ -e "$D/gone/sub/file" ]; is $? 1 "M5: the rest of the removed directory is gone"
run clone -x --pass delete "$S" "$D"
is "$(cat "$D/gone/sub/mnt/data" 2>&1)" precious "M5: with -x too"

# ---- M4: a FIFO swapped in for a file never hangs clone ----
S=$SCRATCH/m4src D=$SCRATCH/m4dst
mkdir -p "$S/u" "$S/v"
echo data > "$S/u/f"; mkfifo "$S/u/l"; echo same > "$S/v/g"
chown -R nobody:nogroup "$S/u" "$S/v"
run clone -q "$S" "$D"
runuser -u nobody -- mkfifo "$D/v/gl"
# m4_loop WHAT RACER-ARGS... -- CLONE-ARGS...: clone runs (30 or 15 s at
# most) while the racer swaps; each must end (not 124) with 0, or 1 and a
# message naming the swapped path.
m4_loop() {
    local what=$1 runs=0 bad="" end=$((SECONDS + 15)) rc
    shift
    local race=() ; while [ "$1" != -- ]; do race+=("$1"); shift; done; shift
    race_start "${race[@]}"
    while [ $runs -lt 30 ] && [ $SECONDS -lt $end ]; do
        [ -n "$FRESH" ] && rm -f "$D/$FRESH"/*  # the next run copies the file again
        timeout -k 2 20 "$HAUL" clone -q "$@" "$S" "$D" 2>"$SCRATCH/m4.err"; rc=$?
        runs=$((runs + 1))
        if [ $rc = 1 ] && ! grep -Eq "$PATHRE" "$SCRATCH/m4.err"; then bad="exit 1 without naming the path: $(head -c 300 "$SCRATCH/m4.err")"; break; fi
        if [ $rc != 0 ] && [ $rc != 1 ]; then bad="exit $rc"; break; fi
    done
    race_stop
    is "$bad" "" "M4: $what: every run ends, 0 or 1 naming the path ($runs runs)"
}
PATHRE='u/[fl]: ' FRESH=u
m4_loop "SRC file swapped with a FIFO" fifo "$S/u" f l 20 --
PATHRE='v/g: ' FRESH=
m4_loop "--checksum, DST copy swapped with a FIFO" fifo "$D/v" g gl 20 -- --checksum

# ---- M7: a full DST never gets a partial file under a real name ----
S=$SCRATCH/m7src D=$SCRATCH/m7dst
mkdir -p "$S/big" "$D"
mount -t tmpfs -o size=4M tmpfs "$D" && MOUNTS+=("$D")
mkfile "$S/a" 1200000; mkfile "$S/b" 2400000; mkfile "$S/c" 10000
mkfile "$S/big/d" 2800000; mkfile "$S/big/e" 5000
m7_check() {
    local bad="" f
    while IFS= read -r -d '' f; do
        case "$f" in */.haul-tmp*) bad="$bad temporary:${f#$D/}"; continue;; esac
        cmp -s "$f" "$S/${f#$D/}" || bad="$bad partial:${f#$D/}"
    done < <(find "$D" -type f -print0)
    is "$bad" "" "M7: $1: every file under a real name is whole, no temporary left"
}
run clone --json "$S" "$D"
is "$RC" 1 "M7: clone into a DST that fills exits 1"
like "$ERR" "No space left on device" "M7: ... saying why"
like "$OUT" '"failed":[1-9]' "M7: ... and counts the entries failed"
m7_check "small-file path"
rm -rf "${D:?}"/*
run clone --json --parallel-threshold 1M --chunk-size 1M "$S" "$D"
is "$RC" 1 "M7: in parallel ranges, exits 1"
m7_check "parallel ranges"

# A network filesystem over quota (a FUSE stand-in for NFS: writes succeed,
# close fails with EDQUOT and loses what is past the limit): the file must
# not get its name.
FUSEPY=""
for py in /usr/bin/python3 python3; do
    "$py" -c 'import fusepy' 2>/dev/null || "$py" -c 'import fuse' 2>/dev/null || continue
    FUSEPY=$py; break
done
if [ -n "$FUSEPY" ] && [ -e /dev/fuse ]; then
    S=$SCRATCH/m7fsrc BK=$SCRATCH/m7back D=$SCRATCH/m7fuse
    mkdir -p "$S" "$BK" "$D"
    mkfile "$S/small" 1000; mkfile "$S/big" 200000; mkfile "$S/huge" 2500000
    "$FUSEPY" "$ROOT/tests/integration/closefailfs.py" "$BK" "$D" 65536 2>"$SCRATCH/fuse.err" &
    for _ in $(seq 100); do mountpoint -q "$D" && break; sleep 0.05; done
    MOUNTS+=("$D")
    run clone --json "$S" "$D/a"
    is "$RC" 1 "M7: close() failing with EDQUOT (network filesystem over quota): exit 1"
    like "$ERR" "big: destination: close: Disk quota exceeded" "M7: ... naming the file and the cause"
    like "$OUT" '"failed":2' "M7: ... both files over the quota counted failed"
    is "$(ls -A "$BK/a" | tr '\n' ' ')" "small " "M7: no file cut by the failed write-back under its real name, no temporary left"
    run clone --json --parallel-threshold 1M --chunk-size 1M "$S" "$D/b"
    is "$(ls -A "$BK/b" | tr '\n' ' ')" "small " "M7: the same in parallel ranges"
    # Distributed: each RANGE unit's writer checks its own close, FINISH
    # checks before the rename.
    start_worker w1; wait_workers 1
    run clone "${B[@]}" --range-size 1M --json "$S" "$D/c"
    is "$RC" 1 "M7: distributed, in RANGE units: exit 1"
    is "$(ls -A "$BK/c" | tr '\n' ' ')" "small " "M7: distributed: no file cut by the failed write-back under its real name, no temporary left"
    like "$(cat "$SCRATCH/w1.log")" "huge: .*Disk quota exceeded" "M7: distributed: the worker's log names the file and the cause"
    kill "$PID_w1"; wait "$PID_w1" 2>/dev/null
    # Restore into the same filesystem: a file whose close fails is not
    # given its name either (restore checked close already at 000c418: a
    # guard for its move to fs_publish, not a regression test).
    "$HAUL" mb -q "s3://$BUCKET" && "$HAUL" put -q "$S/small" "s3://$BUCKET/r/small" &&
        "$HAUL" put -q "$S/big" "s3://$BUCKET/r/big"
    run restore --json "s3://$BUCKET/r" --into "$D/r"
    is "$RC" 1 "M7: restore: a file whose close() fails: exit 1"
    like "$ERR" "big: .*Disk quota exceeded" "M7: restore: ... naming the file and the cause"
    is "$(ls -A "$BK/r" | tr '\n' ' ')" "small " "M7: restore: no cut file under its real name, no temporary left"
    umount "$D"
else
    echo "ok $((_n += 1)) # SKIP no fusepy (python3-fusepy) or /dev/fuse"
fi

done_testing
