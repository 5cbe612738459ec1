#!/usr/bin/env bash
# bench/dbackup.sh: distributed backup (haul backup --broker + haul worker)
# on one machine against the local backup and aws s3 sync, same tree, same
# S3 server, same run.  One command:
#
#   bench/dbackup.sh
#
# The tree: bench/gen-tree.py (seed 1) with BENCH_FILES small files.  Runs,
# each to its own prefix with a fresh index unless said: local `haul
# backup`; distributed with 1 worker process; with 2 worker processes; a
# no-change re-run with 2 workers; a no-change local run on that same index
# (the coordinator's index is the local one); `aws s3 sync` (aws cli v1,
# full, then no change).  Every worker runs BENCH_THREADS threads.  Each
# haul prefix is restored once at the end and compared with SRC.  The S3
# server is scripts/s3-server and the broker scripts/broker (started if
# not running, left running).
#
# Environment: BENCH_FILES [10000] BENCH_THREADS [8] BENCH_WORK
# [/tmp/haul-bench-dbackup] BENCH_OUT [bench/results/dbackup-YYYY-MM-DD.md]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
FILES=${BENCH_FILES:-10000}
THREADS=${BENCH_THREADS:-8}
WORK=${BENCH_WORK:-/tmp/haul-bench-dbackup}
OUT=${BENCH_OUT:-bench/results/dbackup-$(date +%Y-%m-%d).md}
HAUL=$ROOT/build/haul
case $WORK in /tmp/?* | /dev/shm/?*) ;; *) echo "dbackup.sh: BENCH_WORK must be under /tmp or /dev/shm" >&2; exit 2 ;; esac
say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

make -s all >/dev/null
scripts/s3-server status >/dev/null 2>&1 || scripts/s3-server start
scripts/broker status >/dev/null 2>&1 || scripts/broker start
eval "$(scripts/s3-server env)"
eval "$(scripts/broker env)"
JOB=bench-dbackup-$$
BUCKET=bench-dbackup-$$
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
rm -rf "$WORK"; mkdir -p "$WORK"
say "generating the tree ($FILES files)"
python3 bench/gen-tree.py "$WORK/src" --files "$FILES" --large 0 > "$WORK/tree.json"
"$HAUL" mb "s3://$BUCKET" >/dev/null
trap '"$HAUL" rb --force -q "s3://$BUCKET" >/dev/null 2>&1 || true' EXIT
. "$ROOT/bench/distlib.sh"
ROWS=$WORK/rows
: > "$ROWS"
# run NAME COMMAND...: one timed run (coordinator's peak RSS by /usr/bin/time), a table row
run() {
    local name=$1; shift
    sync
    local c0 t0 t1 c1
    c0=$(beam_cpu); t0=$(now)
    local rc=0
    /usr/bin/time -f '%M' -o "$WORK/$name.rss" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" || rc=$?
    # aws s3 sync exits 2 when it skipped files (the tree's dangling symlink)
    if [ "$rc" -ne 0 ] && ! { [ "$1" = aws ] && [ "$rc" -eq 2 ]; }; then
        echo "dbackup.sh: $name: exit $rc: $(tail -3 "$WORK/$name.err")" >&2; exit 1
    fi
    t1=$(now); c1=$(beam_cpu)
    local units; units=$( (grep -o '[0-9]* units done' "$WORK/$name.err" || true) | awk '{s += $1} END {print s + 0}')
    python3 - "$name" "$t0" "$t1" "$c0" "$c1" "$units" "$WORK/$name.out" "$WORK/$name.rss" "$FILES" >> "$ROWS" <<'PY'
import json, sys
name, t0, t1, c0, c1, units, path, rss, files = sys.argv[1:]
wall = float(t1) - float(t0)
lines = open(path).read().strip().splitlines()
try:
    j = json.loads(lines[-1])
    up = j["uploaded"]
except (IndexError, ValueError):
    up = sum(1 for l in lines if l.startswith("upload:"))  # aws s3 sync
rss_mib = int(open(rss).read().split()[-1]) / 1024
print(f"| {name} | {wall:.1f} | {int(files) / wall:.0f} | {up} | {units if int(units) else '-'} | "
      f"{float(c1) - float(c0):.1f} | {rss_mib:.1f} |")
PY
    say "$name: $(tail -n 1 "$ROWS")"
}
B=(--broker "$HAUL_BROKER" --job "$JOB")

run "haul backup (local)" "$HAUL" backup --json --state-dir "$WORK/st-local" "$WORK/src" "s3://$BUCKET/local"
workers_start 1
run "haul backup --broker, 1 worker x $THREADS" "$HAUL" backup -v "${B[@]}" --json --state-dir "$WORK/st-1" "$WORK/src" "s3://$BUCKET/d1"
workers_stop
workers_start 2
run "haul backup --broker, 2 workers x $THREADS" "$HAUL" backup -v "${B[@]}" --json --state-dir "$WORK/st-2" "$WORK/src" "s3://$BUCKET/d2"
run "haul backup --broker, 2 workers, no change" "$HAUL" backup -v "${B[@]}" --json --state-dir "$WORK/st-2" "$WORK/src" "s3://$BUCKET/d2"
workers_stop
run "haul backup (local), no change, same index" "$HAUL" backup --json --state-dir "$WORK/st-2" "$WORK/src" "s3://$BUCKET/d2"
run "aws s3 sync (v1)" aws --endpoint-url "$AWS_ENDPOINT_URL" s3 sync --no-progress "$WORK/src" "s3://$BUCKET/aws"
run "aws s3 sync (v1), no change" aws --endpoint-url "$AWS_ENDPOINT_URL" s3 sync --no-progress "$WORK/src" "s3://$BUCKET/aws"
build/tests/dist_probe --prefix "haul.$JOB" delete >/dev/null
for p in d1 d2; do
    rm -rf "$WORK/restored-$p"
    "$HAUL" restore -q "s3://$BUCKET/$p" --into "$WORK/restored-$p"
    python3 tests/integration/treecmp.py "$WORK/src" "$WORK/restored-$p" > "$WORK/cmp-$p" ||
        { echo "dbackup.sh: $p: restore not identical: $(head -3 "$WORK/cmp-$p")" >&2; exit 1; }
done

{
    echo "# Distributed backup on one machine ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo
    echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')); Ceph RGW (scripts/s3-server, memstore) and RabbitMQ $(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null) (scripts/broker) on the same machine."
    echo "Tree: bench/gen-tree.py --files $FILES --large 0 (seed 1): $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d.get('files','?'), 'files,', d.get('dirs','?'), 'dirs,', d.get('bytes','?'), 'bytes')" "$WORK/tree.json" 2>/dev/null)."
    echo "Load average (1, 5, 15 min) before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared)."
    echo "Command: bench/dbackup.sh (BENCH_FILES=$FILES BENCH_THREADS=$THREADS). files/s = tree files / wall time; uploaded = objects"
    echo "(haul: files + directories + the root); units = units the coordinator counted (-v log); broker CPU = beam.smp user+sys;"
    echo "RSS = the coordinator's (or aws's) peak, /usr/bin/time. The distributed prefixes were restored and compared with SRC: identical."
    echo
    echo "| run | wall s | files/s | uploaded | units | broker CPU s | RSS MiB |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    cat "$ROWS"
} > "$OUT"
say "wrote $OUT"
cat "$OUT"
