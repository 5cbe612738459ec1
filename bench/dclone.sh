#!/usr/bin/env bash
# bench/dclone.sh: distributed clone (haul clone --broker + haul worker) on
# one machine: scaling from 1 to 2 worker processes, against the local
# clone, with the broker's CPU time per run.  One command:
#
#   bench/dclone.sh
#
# The tree: bench/gen-tree.py (seed 1) with BENCH_FILES small files and no
# large file.  Runs (each into an empty DST unless said): local `haul clone
# --pass all`; distributed with 1 worker process; with 2 worker processes;
# a no-change re-run with 2 workers.  Every worker runs BENCH_THREADS
# threads.  Copies are checked identical to SRC with treecmp.py.  The
# broker is scripts/broker (started if not running, left running).
#
# BENCH_LARGE large files of BENCH_LARGE_SIZE bytes can be added; the
# distributed runs copy files above BENCH_RANGE_SIZE in RANGE units spread
# over the workers (haul clone --range-size).
#
# Environment: BENCH_FILES [50000] BENCH_THREADS [2] BENCH_LARGE [0]
# BENCH_LARGE_SIZE [1073741824] BENCH_RANGE_SIZE [256M] BENCH_WORK
# [/tmp/haul-bench-dclone] BENCH_OUT [bench/results/dclone-YYYY-MM-DD.md]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
FILES=${BENCH_FILES:-50000}
THREADS=${BENCH_THREADS:-2}
LARGE=${BENCH_LARGE:-0}
LARGE_SIZE=${BENCH_LARGE_SIZE:-1073741824}
RANGE=${BENCH_RANGE_SIZE:-256M}
WORK=${BENCH_WORK:-/tmp/haul-bench-dclone}
OUT=${BENCH_OUT:-bench/results/dclone-$(date +%Y-%m-%d).md}
HAUL=$ROOT/build/haul
case $WORK in /tmp/?* | /dev/shm/?*) ;; *) echo "dclone.sh: BENCH_WORK must be under /tmp or /dev/shm" >&2; exit 2 ;; esac
say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

make -s all >/dev/null
scripts/broker status >/dev/null 2>&1 || scripts/broker start
eval "$(scripts/broker env)"
JOB=bench-dclone-$$
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
rm -rf "$WORK"; mkdir -p "$WORK"
say "generating the tree ($FILES files)"
python3 bench/gen-tree.py "$WORK/src" --files "$FILES" --large "$LARGE" --large-size "$LARGE_SIZE" > "$WORK/tree.json"
. "$ROOT/bench/distlib.sh"
ROWS=$WORK/rows
: > "$ROWS"
# run NAME DST COMMAND...: one timed run, a table row
run() {
    local name=$1 dst=$2; shift 2
    sync
    local c0 t0 t1 c1
    c0=$(beam_cpu); t0=$(now)
    "$@" > "$WORK/$name.json" 2> "$WORK/$name.err"
    t1=$(now); c1=$(beam_cpu)
    python3 tests/integration/treecmp.py "$WORK/src" "$dst" > "$WORK/$name.cmp" || { echo "dclone.sh: $name: not identical" >&2; exit 1; }
    local units; units=$( (grep -o '[0-9]* units done' "$WORK/$name.err" || true) | awk '{s += $1} END {print s + 0}')
    python3 - "$name" "$t0" "$t1" "$c0" "$c1" "$units" "$WORK/$name.json" >> "$ROWS" <<'PY'
import json, sys
name, t0, t1, c0, c1, units, path = sys.argv[1:]
j = json.loads(open(path).read().strip().splitlines()[-1])
wall = float(t1) - float(t0)
entries = j["files"] + j["dirs"] + j["symlinks"] + j["others"]
print(f"| {name} | {wall:.1f} | {j['files']} | {j['copied']} | {j['files'] / wall:.0f} | {units or '-'} | "
      f"{(int(units) / wall) if int(units) else 0:.0f} | {float(c1) - float(c0):.1f} |")
PY
    say "$name: $(tail -n 1 "$ROWS")"
}

run local "$WORK/dst-local" "$HAUL" clone --pass all --threads "$((2 * THREADS))" --json "$WORK/src" "$WORK/dst-local"
workers_start 1
run "dist, 1 worker x $THREADS threads" "$WORK/dst-1" "$HAUL" clone -v --broker "$HAUL_BROKER" --job "$JOB" --pass all --range-size "$RANGE" --json "$WORK/src" "$WORK/dst-1"
workers_stop
workers_start 2
run "dist, 2 workers x $THREADS threads" "$WORK/dst-2" "$HAUL" clone -v --broker "$HAUL_BROKER" --job "$JOB" --pass all --range-size "$RANGE" --json "$WORK/src" "$WORK/dst-2"
run "dist, 2 workers, no change" "$WORK/dst-2" "$HAUL" clone -v --broker "$HAUL_BROKER" --job "$JOB" --pass all --range-size "$RANGE" --json "$WORK/src" "$WORK/dst-2"
workers_stop
build/tests/dist_probe --prefix "haul.$JOB" delete >/dev/null

{
    echo "# Distributed clone on one machine ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo
    echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')); RabbitMQ $(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null) (scripts/broker) on the same machine."
    echo "Tree: bench/gen-tree.py --files $FILES --large $LARGE --large-size $LARGE_SIZE (seed 1). Passes: copy, delete, dirtimes (--pass all);"
    echo "distributed runs: --range-size $RANGE (larger files in RANGE units over the workers)."
    echo "Load average (1, 5, 15 min) before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared)."
    echo "Command: bench/dclone.sh (BENCH_FILES=$FILES BENCH_THREADS=$THREADS). Wall time includes passes copy, delete, dirtimes;"
    echo "units = work units of all three passes (SCAN_DIR + FILES), from the coordinator's -v log; broker CPU = beam.smp user+sys."
    echo
    echo "| run | wall s | files | copied | files/s | units | units/s | broker CPU s |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    cat "$ROWS"
} > "$OUT"
say "wrote $OUT"
cat "$OUT"
