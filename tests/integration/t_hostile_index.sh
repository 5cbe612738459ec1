#!/usr/bin/env bash
# The backup index tells the truth (issue 12, items 3, 6, 7, 9; audit H2, M4, M6):
# - hard links survive --delete: the name holding an inode's bytes removed or
#   renamed, a three-name set losing its holder; with and without --delete,
#   local and with --broker: restore gives every surviving name the bytes and
#   one inode, and nothing is lost;
# - one run per index: a second backup (local or --broker) of a destination
#   whose backup is running exits 1 at once naming the pid and host; after a
#   SIGKILL of the first, the next run takes the stale lock over;
# - the index never outlives the bucket: after `rb --force` + `mb`, or
#   `rm -r` of the prefix, the next backup uploads everything again (the
#   marker PREFIX.haul/index-id is gone); --rescan-remote drops entries whose
#   objects are gone; restore and diff ignore PREFIX.haul/; a top-level
#   .haul in SRC is refused;
# - --delete never removes another index's objects: two state dirs backing up
#   one prefix skip --delete (warning) until --rescan-remote takes it over; a
#   rebuilt index of its own skips --delete for that run; a HEAD that fails
#   during a rescan (503, 403) keeps the key's entry;
# - a FIFO swapped in for a file by another user never hangs backup.
. "$(dirname "$0")/lib.sh"
TREECMP="$ROOT/tests/integration/treecmp.py"
. "$(dirname "$0")/brokerlib.sh"
JOB="t-hidx-$$"
QUEUES="haul.$JOB"
B=(--broker "$HAUL_BROKER" --job "$JOB")
B2="$BUCKET-nu"
RACE_STOP="$SCRATCH/race/stop"
_hidx_cleanup() {
    [ -d "${RACE_STOP%/*}" ] && : > "$RACE_STOP"
    [ -n "${PROXY_PID:-}" ] && kill "$PROXY_PID" 2>/dev/null
    "$HAUL" rb --force -q "s3://$B2" >/dev/null 2>&1
    _broker_cleanup
}
trap _hidx_cleanup EXIT
json() { python3 -c "import json,sys; print(json.loads([l for l in sys.argv[1].splitlines() if l.startswith('{')][-1])[sys.argv[2]])" "$1" "$2"; }

"$HAUL" mb "s3://$BUCKET" >/dev/null
ALLOW+=(--allow "s3://$B2") # its second bucket
start_worker w1
wait_workers 1; ok $? "a worker answers"

# ---- hard links (H2) ----------------------------------------------------------
# holder PREFIX NAME...: the name whose object holds the bytes (no haul-hardlink)
holder() {
    local p=$1 n
    shift
    for n in "$@"; do
        "$HAUL" stat --json "s3://$BUCKET/$p/$n" 2>/dev/null | grep -q '"haul-hardlink"' || { echo "$n"; return; }
    done
}
# survivors_ok TREE RESTORED WHAT NAME...: each name has TREE's bytes, all one inode
survivors_ok() {
    local tree=$1 r=$2 what=$3 n bad="" inodes
    shift 3
    for n in "$@"; do cmp -s "$tree/$n" "$r/$n" || bad="$bad $n"; done
    inodes=$(for n in "$@"; do stat -c %i "$r/$n" 2>/dev/null; done | sort -u | wc -l)
    is "${bad:-none}/$inodes" "none/1" "$what: every surviving name restored with its bytes, as one inode"
}
# h2 NAME local|broker delete|keep remove|rename|three
h2() {
    local name=$1 how=$2 del=$3 scen=$4 mode=() dopt=() hold survivors
    local S="$SCRATCH/h2-$name" P="h2-$name" R="$SCRATCH/r-$name" st=(--state-dir "$SCRATCH/st-$name")
    [ "$how" = broker ] && mode=("${B[@]}")
    [ "$del" = delete ] && dopt=(--delete)
    mkdir -p "$S/a" "$S/b" "$S/c"
    echo "precious $name" > "$S/a/x"
    ln "$S/a/x" "$S/b/y"
    [ "$scen" = three ] && ln "$S/a/x" "$S/c/z"
    local names=(a/x b/y); [ "$scen" = three ] && names+=(c/z)
    "$HAUL" backup -q "${mode[@]}" "${st[@]}" --delete "$S" "s3://$BUCKET/$P" >/dev/null 2>&1
    hold=$(holder "$P" "${names[@]}")
    survivors=()
    for n in "${names[@]}"; do [ "$n" != "$hold" ] && survivors+=("$n"); done
    if [ "$scen" = rename ]; then mv "$S/$hold" "$S/c/moved"; survivors+=(c/moved); else rm "$S/$hold"; fi
    run backup "${mode[@]}" "${st[@]}" "${dopt[@]}" "$S" "s3://$BUCKET/$P"
    local did="was removed"; [ "$scen" = rename ] && did="was renamed"; [ "$scen" = three ] && did="of three names was removed"
    is "$RC" 0 "$name: the run after the holder ($hold) $did exits 0"
    rm -rf "$R"; "$HAUL" restore -q "s3://$BUCKET/$P" --into "$R" >/dev/null 2>&1
    survivors_ok "$S" "$R" "$name" "${survivors[@]}"
    if [ "$del" = keep ]; then # a later --delete must not lose them either
        "$HAUL" backup -q "${mode[@]}" "${st[@]}" --delete "$S" "s3://$BUCKET/$P" >/dev/null 2>&1
        rm -rf "$R"; "$HAUL" restore -q "s3://$BUCKET/$P" --into "$R" >/dev/null 2>&1
    fi
    cmpout=$(python3 "$TREECMP" "$S" "$R" 2>&1)
    is "$?" 0 "$name: after --delete the restore is SRC, nothing lost ($cmpout)"
}
for how in local broker; do
    for del in delete keep; do
        for scen in remove rename three; do
            h2 "$how-$del-$scen" "$how" "$del" "$scen"
        done
    done
done
# The holder stays the same name from run to run (no re-upload of its bytes).
S="$SCRATCH/stable"; mkdir -p "$S/m" "$S/n"; mkfile "$S/m/big" 300000; ln "$S/m/big" "$S/n/alias"
"$HAUL" backup -q --state-dir "$SCRATCH/st-stable" "$S" "s3://$BUCKET/stable" >/dev/null 2>&1
for i in 1 2 3; do
    run backup --json --state-dir "$SCRATCH/st-stable" "$S" "s3://$BUCKET/stable"
    is "$(json "$OUT" uploaded)/$(json "$OUT" unchanged)" "0/5" "unchanged hard links, run $i: nothing uploaded"
done

# ---- one run per index (M6) ------------------------------------------------------
upstream_port=${AWS_ENDPOINT_URL##*:}
RULES="$SCRATCH/rules.json"
echo "[{\"method\": \"PUT\", \"action\": \"hold\", \"until\": \"$SCRATCH/go\"}]" > "$RULES"
coproc PROXY { exec python3 "$ROOT/tests/integration/faultproxy.py" "$upstream_port" "$RULES"; }
read -r port <&"${PROXY[0]}"
P=(--endpoint-url "http://127.0.0.1:$port" --state-dir "$SCRATCH/st-lock")
L="$SCRATCH/lsrc"; mkdir -p "$L"; echo one > "$L/one"; echo two > "$L/two"
"$HAUL" backup "${P[@]}" "$L" "s3://$BUCKET/lk" >/dev/null 2>&1 &
first=$!
for i in $(seq 300); do grep -q '^PUT.*hold' "$RULES.log" 2>/dev/null && break; sleep 0.05; done
ok "$(grep -q '^PUT.*hold' "$RULES.log" 2>/dev/null; echo $?)" "the first backup is held at its first PUT"
t0=$(date +%s)
out=$(timeout -k 2 20 "$HAUL" backup "${P[@]}" "$L" "s3://$BUCKET/lk" 2>&1); rc=$?
is "$rc" 1 "a second backup of the same destination exits 1"
like "$out" "another backup of s3://$BUCKET/lk is running \(pid $first on $(hostname)\)" "... naming the pid and host"
out=$(timeout -k 2 20 "$HAUL" backup "${P[@]}" "${B[@]}" "$L" "s3://$BUCKET/lk" 2>&1); rc=$?
is "$rc" 1 "a --broker coordinator of the same destination exits 1 too"
like "$out" "another backup of s3://$BUCKET/lk is running \(pid $first " "... with the same message"
ok "$([ $(( $(date +%s) - t0 )) -le 10 ]; echo $?)" "... at once"
kill -9 "$first"; wait "$first" 2>/dev/null
echo "[]" > "$RULES"; : > "$SCRATCH/go"
run backup --json "${P[@]}" "$L" "s3://$BUCKET/lk"
is "$RC" 0 "after a SIGKILL of the first, a new run takes the stale lock over"
is "$(json "$OUT" errors)" 0 "... and backs up"

# A new holder the server refuses: its links are not re-pointed to it (they
# keep naming the old holder), the run exits 1 and --delete is skipped.
BP=(--broker "$HAUL_BROKER" --job "$JOB-proxy")
B_MAIN=("${B[@]}"); B=("${BP[@]}")   # start_worker joins the job named in B
start_worker wp -- --endpoint-url "http://127.0.0.1:$port"
B=("${B_MAIN[@]}")
for how in local broker; do
    H="$SCRATCH/hfail-$how"; mkdir -p "$H/a" "$H/b" "$H/c"
    echo "precious hfail $how" > "$H/a/x"; ln "$H/a/x" "$H/b/y"; ln "$H/a/x" "$H/c/z"
    HP=(--endpoint-url "http://127.0.0.1:$port" --state-dir "$SCRATCH/st-hfail-$how")
    [ "$how" = broker ] && HP+=("${BP[@]}")
    echo "[]" > "$RULES"
    "$HAUL" backup -q "${HP[@]}" --delete "$H" "s3://$BUCKET/hfail-$how" >/dev/null 2>&1
    hold=$(holder "hfail-$how" a/x b/y c/z)
    rm "$H/$hold"
    survivors=(); for n in a/x b/y c/z; do [ "$n" != "$hold" ] && survivors+=("$n"); done
    echo "[{\"method\": \"PUT\", \"match\": \"hfail-$how/${survivors[0]} \", \"action\": \"status\", \"status\": 403, \"code\": \"AccessDenied\"}]" > "$RULES"
    run backup "${HP[@]}" --delete "$H" "s3://$BUCKET/hfail-$how"
    is "$RC" 1 "$how: a new holder the server refuses: exit 1"
    like "$ERR$(cat "$SCRATCH/wp.log")" "${survivors[0]}.*AccessDenied" "... naming it"
    rm -rf "$SCRATCH/r-hfail"; "$HAUL" restore -q "s3://$BUCKET/hfail-$how" --into "$SCRATCH/r-hfail" >/dev/null 2>&1
    survivors_ok "$H" "$SCRATCH/r-hfail" "hfail-$how" "${survivors[@]}"
done
echo "[]" > "$RULES"
kill "${PROXY_PID:-}" 2>/dev/null

# ---- the index never outlives the bucket (item 9) ---------------------------------------
N="$SCRATCH/nsrc"; mkdir -p "$N/d"; echo a > "$N/a"; echo b > "$N/d/b"; echo c > "$N/c"
"$HAUL" mb "s3://$B2" >/dev/null
NS=(--state-dir "$SCRATCH/st-nu")
run backup --json "${NS[@]}" "$N" "s3://$B2/p"
is "$(json "$OUT" uploaded)" 5 "new-user case: the first backup uploads 5 objects (3 files, 2 directories)"
"$HAUL" rb --force -q "s3://$B2" >/dev/null 2>&1; "$HAUL" mb "s3://$B2" >/dev/null 2>&1
run backup --json "${NS[@]}" "$N" "s3://$B2/p"
is "$RC/$(json "$OUT" uploaded)" "0/5" "after rb --force + mb: the 5 objects are uploaded again"
like "$ERR" "index of s3://$B2/p/ is stale .*index-id is missing" "... saying the index was stale, in one line"
rm -rf "$SCRATCH/rn"; run restore "s3://$B2/p" --into "$SCRATCH/rn"
cmpout=$(python3 "$TREECMP" "$N" "$SCRATCH/rn" 2>&1)
is "$RC/$?" "0/0" "... and the restore is identical, without haul's marker ($cmpout)"
run diff "$N" "s3://$B2/p"
is "$RC" 0 "diff ignores haul's marker ($OUT)"
"$HAUL" rm -q -r "s3://$B2/p/" >/dev/null 2>&1
run backup --json "${NS[@]}" "$N" "s3://$B2/p"
is "$RC/$(json "$OUT" uploaded)" "0/5" "after rm -r of the prefix: the 5 objects are uploaded again"
# --rescan-remote drops what the listing lacks (the marker still there).
"$HAUL" rm -q "s3://$B2/p/d/b" >/dev/null 2>&1
run backup --json "${NS[@]}" --rescan-remote "$N" "s3://$B2/p"
is "$RC/$(json "$OUT" uploaded)" "0/1" "--rescan-remote forgets an object that is gone: it is uploaded again"
# A top-level .haul in SRC would collide with PREFIX.haul/: refused.
mkdir -p "$N/.haul"; echo mine > "$N/.haul/index-id"
run backup --json "${NS[@]}" "$N" "s3://$B2/p"
is "$RC" 1 "a top-level .haul in SRC: exit 1"
like "$ERR" "\.haul: the name \.haul at the top of a backup is reserved" "... saying why"
is "$("$HAUL" get "s3://$B2/p/.haul/index-id" - 2>/dev/null)" "$("$HAUL" stat --json "s3://$B2/p/.haul/index-id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["haul-index-id"])' 2>/dev/null)" \
    "... and haul's marker is left as it was"
run backup "${B[@]}" "${NS[@]}" "$N" "s3://$B2/p"
is "$RC" 1 "... refused by a --broker coordinator too"
like "$ERR" "\.haul: the name \.haul at the top of a backup is reserved" "... with the same message"
rm -rf "$N/.haul"

# ---- two indexes, one prefix: --delete never removes the other's objects ----------------
SA="$SCRATCH/shA"; SB="$SCRATCH/shB"; mkdir -p "$SA" "$SB"
echo a1 > "$SA/a1"; echo b1 > "$SB/b1"; echo b2 > "$SB/b2"
IA=(--state-dir "$SCRATCH/st-shA"); IB=(--state-dir "$SCRATCH/st-shB")
"$HAUL" backup -q "${IA[@]}" "$SA" "s3://$BUCKET/shared" >/dev/null 2>&1
"$HAUL" backup -q "${IB[@]}" "$SB" "s3://$BUCKET/shared" >/dev/null 2>&1
bobj() { echo "$("$HAUL" get "s3://$BUCKET/shared/b1" - 2>/dev/null)/$("$HAUL" get "s3://$BUCKET/shared/b2" - 2>/dev/null)"; }
for i in local-1 local-2 broker; do
    mode=(); [ "$i" = broker ] && mode=("${B[@]}")
    run backup "${mode[@]}" "${IA[@]}" --delete "$SA" "s3://$BUCKET/shared"
    is "$RC" 0 "shared prefix, index A's --delete run ($i): exit 0"
    like "$ERR" "s3://$BUCKET/shared/ is also backed up by another index .*--delete skipped; .*--rescan-remote --delete" \
        "... warning that --delete is skipped and how to take the prefix over"
    is "$(bobj)" "b1/b2" "... and index B's objects are still there"
done
run backup --json "${IA[@]}" --rescan-remote --delete "$SA" "s3://$BUCKET/shared"
is "$RC/$(json "$OUT" deleted)" "0/2" "--rescan-remote --delete: A takes the prefix over and deletes what its source lacks"
is "$(bobj)/$("$HAUL" get "s3://$BUCKET/shared/a1" - 2>/dev/null)" "//a1" "... B's objects are gone, A's stays"
# A stale index of its own (bucket emptied behind its back): --delete waits one run.
SC="$SCRATCH/shC"; mkdir -p "$SC"; echo c1 > "$SC/c1"; echo c2 > "$SC/c2"; IC=(--state-dir "$SCRATCH/st-shC")
"$HAUL" backup -q "${IC[@]}" "$SC" "s3://$BUCKET/own" >/dev/null 2>&1
"$HAUL" rm -q "s3://$BUCKET/own/.haul/index-id" >/dev/null 2>&1
rm "$SC/c2"
run backup "${IC[@]}" --delete "$SC" "s3://$BUCKET/own"
is "$RC" 0 "marker gone: the rebuilt index's --delete run exits 0"
like "$ERR" "was rebuilt from the bucket: --delete skipped; run again to delete" "... --delete is skipped, saying so"
is "$("$HAUL" get "s3://$BUCKET/own/c2" - 2>/dev/null)" c2 "... and nothing is deleted"
run backup --json "${IC[@]}" --delete "$SC" "s3://$BUCKET/own"
is "$RC/$(json "$OUT" deleted)" "0/1" "... the next run (its marker matches) deletes as usual"

# ---- a rescan whose HEAD fails keeps the entry ------------------------------------------
coproc PROXY { exec python3 "$ROOT/tests/integration/faultproxy.py" "$upstream_port" "$RULES"; }
read -r port <&"${PROXY[0]}"
for st in 503:SlowDown 403:AccessDenied; do
    H="$SCRATCH/head-${st%%:*}"; HK="s3://$BUCKET/head-${st%%:*}"; mkdir -p "$H"
    echo keep > "$H/keep"; echo victim > "$H/victim"; HS=(--endpoint-url "http://127.0.0.1:$port" --state-dir "$SCRATCH/st-head-${st%%:*}") # one index: one endpoint
    echo "[]" > "$RULES"
    "$HAUL" backup -q "${HS[@]}" "$H" "$HK" >/dev/null 2>&1
    echo "[{\"method\": \"HEAD\", \"match\": \"head-${st%%:*}/victim \", \"action\": \"status\", \"status\": ${st%%:*}, \"code\": \"${st#*:}\"}]" > "$RULES"
    run backup --json "${HS[@]}" --rescan-remote "$H" "$HK"
    like "$ERR" "victim.*${st#*:}|${st%%:*}" "HEAD of a listed key answered ${st%%:*} during --rescan-remote: named"
    is "$RC/$(json "$OUT" uploaded)" "0/0" "... its entry survives: the run does not upload it again"
    echo "[]" > "$RULES"
    run backup --json "${HS[@]}" "$H" "$HK"
    is "$RC/$(json "$OUT" uploaded)" "0/0" "... nor does the next run"
    rm "$H/victim"
    run backup --json "${HS[@]}" --delete "$H" "$HK"
    is "$RC/$(json "$OUT" deleted)" "0/1" "... and --delete removes its object once the file is gone"
    "$HAUL" stat "$HK/victim" >/dev/null 2>&1
    is "$?" 1 "... the object is gone"
done
kill "${PROXY_PID:-}" 2>/dev/null

# ---- a FIFO swapped in never hangs backup (M4) ---------------------------------------
RD="$SCRATCH/race"; mkdir -p "$RD/t"
for i in $(seq 0 9); do echo "data $i" > "$RD/t/f$i"; mkfifo "$RD/t/l$i"; done
cat > "$SCRATCH/swap.c" <<'C'
/* swap DIR N STOPFILE: RENAME_EXCHANGE f<i> <-> l<i> (i < N) until STOPFILE exists (at most 60 s) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    if (argc != 4) return 2;
    int d = open(argv[1], O_RDONLY | O_DIRECTORY), n = atoi(argv[2]);
    time_t end = time(NULL) + 60;
    while (d >= 0 && time(NULL) < end && access(argv[3], F_OK) != 0)
        for (int i = 0; i < n; i++) {
            char f[16], l[16];
            snprintf(f, sizeof f, "f%d", i);
            snprintf(l, sizeof l, "l%d", i);
            renameat2(d, f, d, l, RENAME_EXCHANGE);
        }
    return 0;
}
C
cc -O2 -o "$SCRATCH/swap" "$SCRATCH/swap.c"
chmod a+rx "$SCRATCH" "$SCRATCH/swap"; chown -R nobody "$RD"
runuser -u nobody -- "$SCRATCH/swap" "$RD/t" 10 "$RACE_STOP" &
racer=$!
hung=0 runs=0
for i in $(seq 8); do
    timeout -k 2 10 "$HAUL" backup -q --dry-run --check-sha256 --state-dir "$SCRATCH/st-race" "$RD/t" "s3://$BUCKET/race" \
        >/dev/null 2>&1
    case $? in 124|137) hung=$((hung + 1)) ;; esac
    timeout -k 2 10 "$HAUL" backup -q --state-dir "$SCRATCH/st-race-$i" "$RD/t" "s3://$BUCKET/race$i" >/dev/null 2>&1
    case $? in 124|137) hung=$((hung + 1)) ;; esac
    runs=$((runs + 2))
    [ "$hung" -gt 0 ] && break
done
: > "$RACE_STOP"; wait "$racer"
is "$hung" 0 "a FIFO swapped in by another user: none of $runs backups (--dry-run --check-sha256 and real) hangs"

done_testing
