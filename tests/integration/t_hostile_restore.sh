#!/usr/bin/env bash
# haul restore of a hostile bucket (issue 12 item 5, audit M3 and L8's
# quoting): whoever can write the bucket must not get more from a restore than
# the files.  Objects made with haul put -m (the x-amz-meta-* names of
# src/meta/meta.h): a setuid-root and a setgid-root program, a character
# device with /dev/null's numbers, a file owned by 1234:5678, a 0777
# directory, a 0666 file, a 01777 directory, a key holding ESC and BEL, a
# symlink whose target holds ESC.  Checked as nobody and as root, with and
# without the flags that relax the rules; no raw ESC byte ever reaches stdout
# or stderr, also in an error message naming such a path.  Needs root.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || { echo "1..0 # SKIP needs root (runs restores as root and as nobody)"; exit 0; }

run mb "s3://$BUCKET"; ok $RC "mb"
ESC=$(printf '\033')
BEL=$(printf '\007')
EVILKEY="esc${ESC}]0;pwned${BEL}"        # an xterm "set title" sequence in a name
printf '#!/bin/sh\nid\n' > "$SCRATCH/prog"
: > "$SCRATCH/empty"
printf 'x\033[2Jy' > "$SCRATCH/target"   # "clear screen" in a link target
put() { "$HAUL" put -q "$@" >/dev/null; }
put -m mode=35309 -m uid=0 -m gid=0 "$SCRATCH/prog" "s3://$BUCKET/t/suid"         # 0104755
put -m mode=34285 -m uid=0 -m gid=0 "$SCRATCH/prog" "s3://$BUCKET/t/sgid"         # 0102755
put -m mode=8630 -m uid=0 -m gid=0 -m haul-rdev=1:3 "$SCRATCH/empty" "s3://$BUCKET/t/null"  # 020666
put -m mode=33188 -m uid=1234 -m gid=5678 "$SCRATCH/prog" "s3://$BUCKET/t/owned"  # 0100644
put -m mode=33206 "$SCRATCH/prog" "s3://$BUCKET/t/ww-file"                        # 0100666
put "$SCRATCH/prog" "s3://$BUCKET/t/$EVILKEY"
put -m mode=41471 -m haul-symlink=x%1B%5B2Jy "$SCRATCH/target" "s3://$BUCKET/t/lnk" # 0120777
ok $? "haul put wrote the hostile objects"
# Directory objects ("path/" keys): haul put names a file under a trailing "/", so boto3.
python3 - "$BUCKET" <<'PY'
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
for key, mode in (("t/ww/", 0o40777), ("t/tmp/", 0o41777)):
    s3.put_object(Bucket=sys.argv[1], Key=key, Body=b"", Metadata={"mode": str(mode), "mtime": "1600000000"})
PY
ok $? "a 0777 and a 01777 directory object"

modes() { (cd "$1" && stat -c '%a' suid sgid ww ww-file tmp | tr '\n' ' '); }
no_esc() { # no_esc WHAT: neither $OUT nor $ERR holds a raw ESC byte
    printf '%s%s' "$OUT" "$ERR" | grep -qP '\x1b'; [ $? -eq 1 ]; ok $? "$1: no raw ESC byte in stdout or stderr"
}

# ---- as nobody, into a directory nobody owns ----
chmod 711 "$SCRATCH"
NH="$SCRATCH/nobody"; mkdir -p "$NH"; chown nobody: "$NH"
OUT=$(runuser -u nobody -- env HOME="$NH" $(env | grep '^AWS_') "$HAUL" restore -v --into "$NH/out" "s3://$BUCKET/t" 2>"$SCRATCH/.err"); RC=$?
ERR=$(cat "$SCRATCH/.err")
is "$RC" 0 "as nobody: restore exits 0 (the device skipped is no failure)"
is "$(modes "$NH/out")" "755 755 775 664 1777 " "as nobody: no set-ID bits, no o+w but on the sticky directory"
is "$(stat -c '%U' "$NH/out/suid" "$NH/out/owned" | sort -u)" "nobody" "as nobody: files are nobody's"
[ ! -e "$NH/out/null" ]; ok $? "as nobody: no device file"
like "$ERR" "null: a character device \(1:3\); not created: device files are created only with --devices" "as nobody: one line names the skipped device"
like "$OUT" "set-user/group-ID bits of 2 entries" "as nobody: the summary counts the set-ID bits removed"
no_esc "as nobody, -v"
OUT=$(runuser -u nobody -- env HOME="$NH" $(env | grep '^AWS_') "$HAUL" restore --devices --into "$NH/out2" "s3://$BUCKET/t" 2>&1); RC=$?
is "$RC" 2 "as nobody: --devices is refused (mknod needs root)"
like "$OUT" "\-\-devices needs root" "as nobody: the message says why"

# ---- as root, by default ----
R="$SCRATCH/root"
run restore -v --into "$R" "s3://$BUCKET/t"
is "$RC" 0 "as root: restore exits 0"
is "$(modes "$R")" "755 755 775 664 1777 " "as root: set-ID bits stripped without --preserve-setuid, no o+w"
is "$(stat -c '%u:%g' "$R/suid" "$R/owned" | tr '\n' ' ')" "0:0 1234:5678 " "as root: owners restored"
[ ! -e "$R/null" ] && [ ! -L "$R/null" ]; ok $? "as root: the device is not created without --devices"
like "$OUT" "not restored from the bucket's metadata: set-user/group-ID bits of 2 entries .*; others' write permission of 2 entries .*; 1 device file " "as root: the summary counts what was left out, once"
like "$OUT" 'strip: suid: mode 04755 restored as 0755 \(set-ID bits removed\)' "as root, -v: a line for each entry stripped"
like "$OUT" ' 0 errors ' "as root: no errors"
is "$(cat "$R/$EVILKEY")" "$(cat "$SCRATCH/prog")" "the file whose key holds ESC is restored under its name"
is "$(readlink "$R/lnk")" "$(cat "$SCRATCH/target")" "the symlink keeps its target, control characters included"
like "$OUT" 'esc\\x1b\]0;pwned\\x07' "the key with ESC is shown escaped"
like "$OUT" 'lnk -> x\\x1b\[2Jy' "the symlink target is shown escaped"
no_esc "as root, -v"

# An error message naming such a path: a directory in the way of the file.
E="$SCRATCH/err"; mkdir -p "$E/$EVILKEY/sub"
run restore --into "$E" "s3://$BUCKET/t"
is "$RC" 1 "a directory in the way of the ESC file: exit 1"
like "$ERR" 'esc\\x1b\]0;pwned\\x07: a directory is in the way' "the error names the path escaped"
no_esc "the error message"

# ---- as root, with the flags that relax the rules ----
P="$SCRATCH/preserve"
run restore --preserve-setuid --into "$P" "s3://$BUCKET/t"
is "$RC" 0 "--preserve-setuid: exit 0"
is "$(stat -c '%a %u' "$P/suid" "$P/sgid" | tr '\n' ' ')" "4755 0 2755 0 " "as root with --preserve-setuid: setuid/setgid root kept"
D="$SCRATCH/devices"
run restore --devices --into "$D" "s3://$BUCKET/t"
is "$RC" 0 "--devices: exit 0"
is "$(stat -c '%F %t:%T %a' "$D/null")" "character special file 1:3 666" "as root with --devices: the character device 1:3, mode 0666"
N="$SCRATCH/no-owner"
run restore --no-same-owner --into "$N" "s3://$BUCKET/t"
is "$RC" 0 "--no-same-owner: exit 0"
is "$(stat -c '%u:%g' "$N/owned")" "0:0" "as root with --no-same-owner: owned by root, not 1234:5678"
run restore --no-same-owner --preserve-setuid --into "$SCRATCH/y" "s3://$BUCKET/t"
is "$RC" 2 "--preserve-setuid with --no-same-owner is refused"
K="$SCRATCH/keep"
run restore --json --keep-world-writable --into "$K" "s3://$BUCKET/t"
is "$RC" 0 "--keep-world-writable: exit 0"
is "$(modes "$K")" "755 755 777 666 1777 " "with --keep-world-writable: the 0777 directory and 0666 file as stored"
like "$OUT" '"errors":0,"setid_removed":2,"world_write_removed":0,"devices_not_created":1,' "the JSON summary counts what was left out"

done_testing
