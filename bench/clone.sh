#!/usr/bin/env bash
# bench/clone.sh: haul clone against cp -a and rsync -aH on one machine.
# One command (about 15 minutes on 2 cores with the defaults):
#
#   bench/clone.sh
#
# The tree: bench/gen-tree.py (seed 1) with BENCH_FILES small files (a few
# KiB, log-normal, deep directories, symlinks, hard links, a sparse file)
# plus BENCH_LARGE large files of BENCH_LARGE_SIZE bytes.  Three runs:
#  1. full copy into an empty DST: haul clone --pass all, cp -a, rsync -aH;
#  2. no-change re-run: haul clone --pass all vs rsync -aH --delete (cp has
#     no incremental mode);
#  3. 1% changed (that many small files rewritten with new content and
#     mtime, 1% deleted, 1% new): haul vs rsync again.
# Before each measured run: sync, and the page cache is dropped when
# /proc/sys/vm/drop_caches is writable (cold reads, as on a real migration);
# the report says which.  Each run is measured by bench/measure.py (wall,
# CPU, peak RSS).  haul's and rsync's copies are checked identical to SRC
# with tests/integration/treecmp.py after runs 1 and 3.
#
# Environment: BENCH_FILES [200000] BENCH_LARGE [4] BENCH_LARGE_SIZE
# [805306368] BENCH_WORK [/tmp/haul-bench-clone] BENCH_THREADS [8]
# BENCH_OUT [bench/results/clone-YYYY-MM-DD.md]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
FILES=${BENCH_FILES:-200000}
LARGE=${BENCH_LARGE:-4}
LARGE_SIZE=${BENCH_LARGE_SIZE:-805306368}
WORK=${BENCH_WORK:-/tmp/haul-bench-clone}
THREADS=${BENCH_THREADS:-8}
OUT=${BENCH_OUT:-bench/results/clone-$(date +%Y-%m-%d).md}
HAUL=${BENCH_HAUL:-$ROOT/build/haul}   # another build to compare (e.g. an older commit)
case $WORK in /tmp/?* | /dev/shm/?*) ;; *) echo "clone.sh: BENCH_WORK must be under /tmp or /dev/shm" >&2; exit 2 ;; esac
say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

make -s all >/dev/null
rm -rf "$WORK"; mkdir -p "$WORK"
RAW=$WORK/raw.jsonl
say "generating the tree ($FILES small files, $LARGE x $LARGE_SIZE bytes)"
python3 bench/gen-tree.py "$WORK/src" --files "$FILES" --large "$LARGE" --large-size "$LARGE_SIZE" > "$WORK/tree.json"
CACHE=warm
cold() {
    sync
    if echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then CACHE=cold; fi
}

# measure TOOL PHASE COMMAND...: one measured run appended to RAW.
measure() {
    local tool=$1 phase=$2; shift 2
    cold
    say "$tool: $phase"
    python3 bench/measure.py --out "$WORK/m.json" -- "$@" > "$WORK/$tool-$phase.out" 2> "$WORK/$tool-$phase.err" || {
        echo "clone.sh: $tool $phase failed; see $WORK/$tool-$phase.err" >&2; exit 1; }
    python3 - "$WORK/m.json" "$tool" "$phase" "$RAW" <<'PY'
import json, sys
m = json.loads(open(sys.argv[1]).read().splitlines()[-1])
m.update(tool=sys.argv[2], phase=sys.argv[3])
open(sys.argv[4], "a").write(json.dumps(m) + "\n")
PY
}
check() { # check DST: identical to SRC, or the script stops
    python3 tests/integration/treecmp.py "$WORK/src" "$1" > "$WORK/check.out" ||
        { echo "clone.sh: $1 differs from SRC:"; head "$WORK/check.out"; exit 1; } >&2
    say "$(basename "$1"): $(cat "$WORK/check.out")"
}

measure haul full "$HAUL" clone -q --pass all --threads "$THREADS" "$WORK/src" "$WORK/dst-haul"
check "$WORK/dst-haul"
measure cp full cp -a "$WORK/src/." "$WORK/dst-cp"
measure rsync full rsync -aH "$WORK/src/" "$WORK/dst-rsync/"
check "$WORK/dst-rsync"
rm -rf "$WORK/dst-cp"

measure haul nochange "$HAUL" clone -q --pass all --threads "$THREADS" "$WORK/src" "$WORK/dst-haul"
measure rsync nochange rsync -aH --delete "$WORK/src/" "$WORK/dst-rsync/"

say "changing 1% of the small files (rewritten), deleting 1%, adding 1%"
python3 - "$WORK/src" "$FILES" <<'PY'
import os, random, sys
root, files = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
small = []
for d, _, names in os.walk(root):
    for n in names:
        p = os.path.join(d, n)
        if not os.path.islink(p) and os.path.isfile(p) and os.path.getsize(p) < (1 << 20) and os.stat(p).st_nlink == 1:
            small.append(p)
small.sort()
rng.shuffle(small)
k = max(1, files // 100)
for p in small[:k]:
    size = os.path.getsize(p)
    with open(p, "wb") as f:
        f.write(rng.randbytes(size))
for p in small[k:2 * k]:
    os.unlink(p)
for i, p in enumerate(small[2 * k:3 * k]):
    with open(p + ".new", "wb") as f:
        f.write(rng.randbytes(4096))
PY
measure haul changed "$HAUL" clone -q --pass all --threads "$THREADS" "$WORK/src" "$WORK/dst-haul"
check "$WORK/dst-haul"
measure rsync changed rsync -aH --delete "$WORK/src/" "$WORK/dst-rsync/"
check "$WORK/dst-rsync"

mkdir -p "$(dirname "$OUT")"
python3 - "$RAW" "$WORK/tree.json" "$OUT" "$CACHE" "$THREADS" <<'PY'
import json, os, sys
raw = [json.loads(l) for l in open(sys.argv[1])]
tree = json.load(open(sys.argv[2]))
out, cache, threads = sys.argv[3], sys.argv[4], sys.argv[5]
files = tree.get("files", 0)
nbytes = tree.get("bytes", 0)
by = {(r["tool"], r["phase"]): r for r in raw}
lines = [
    f"# haul clone vs cp -a vs rsync -aH ({os.uname().nodename}, {os.cpu_count()} cores)",
    "",
    f"Tree: bench/gen-tree.py seed 1: {files:,} files, {nbytes / 2**30:.2f} GiB ({tree}).",
    f"Page cache before each run: {cache}.  haul: `--pass all --threads {threads}`; "
    "cp: `cp -a SRC/. DST`; rsync: `rsync -aH SRC/ DST/` (re-runs with `--delete`).",
    "files/s and MB/s are over the whole tree (files seen, bytes of the tree) per wall second;",
    "machine busy = non-idle CPU seconds of the whole machine during the run (other load shows here).",
    "",
    "| run | tool | wall s | files/s | MB/s | user+sys s | peak RSS MiB | machine busy s | vs haul |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
]
for phase, label in (("full", "full copy"), ("nochange", "no-change re-run"), ("changed", "1% changed re-run")):
    base = by.get(("haul", phase))
    for tool in ("haul", "cp", "rsync"):
        r = by.get((tool, phase))
        if not r:
            continue
        w = r["wall_s"]
        ratio = f"{w / base['wall_s']:.1f}x" if base and tool != "haul" else ""
        lines.append(f"| {label} | {tool} | {w:.1f} | {files / w:,.0f} | {nbytes / w / 1e6:,.0f} | "
                     f"{r['user_s'] + r['sys_s']:.1f} | {r['maxrss_kib'] / 1024:.1f} | {r['machine_busy_s']:.1f} | {ratio} |")
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print(text)
PY
say "report: $OUT"
rm -rf "$WORK/src" "$WORK/dst-haul" "$WORK/dst-rsync"
