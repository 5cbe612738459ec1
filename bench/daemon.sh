#!/usr/bin/env bash
# bench/daemon.sh: shipping many files through haul daemon, against one
# process per file.  One command, about 10 minutes on 2 cores:
#
#   bench/daemon.sh
#
# Workloads: 1,000 files of 4 KiB and 200 files of 32 MiB (random bytes,
# written once, in the page cache).  Ways to ship them, same S3 server, same
# run, each into its own prefix of one bench bucket:
#   haul send    one `haul send FILE s3://...` process per file (waits for the
#                result), to a haul daemon over its Unix socket
#   tcp          s3daemon's protocol: a long-lived Python client opens one TCP
#                connection per file to the same daemon (--tcp), sends
#                "FILE alias/bucket/key\n" and reads "Success" (no process
#                start per file: that is how s3daemon's clients work)
#   haul put     one `haul put` process per file (own client, own connections)
#   aws s3 cp    one aws cli v1 process per file, on a subset (100 small, 20
#                large: ~0.5 s of Python start-up per file)
# Each runs with 1 client at a time (latency: what one file costs end to end,
# median and p99 over the files) and with 8 at once (throughput, files/s).
# Latency is measured around each command (subprocess start to exit) or each
# TCP exchange (connect to close), wall clock.  The daemon's own log gives
# its upload time per object (start to finish of the S3 transfer), shown as
# "daemon-side" so the cost of the hand-off is visible.
# Checks: after every run, every key exists with the right size (listing),
# and the MD5 of 10 objects per run equals the source's; then the run's
# objects are deleted and RGW's garbage collector is run at once, so the
# server holds one run (6.4 GB) at a time, not 50 GB.
#
# The S3 server is a Ceph RGW of its own (bluestore on a 24 GiB sparse file),
# started by this script unless one already answers with these settings, and
# stopped at the end if started here: never the shared test server (a memstore
# of 8 GiB whose deleted objects are only freed after 2 hours: this workload
# fills it).
#
# Environment: BENCH_SMALL [1000] BENCH_LARGE [200] BENCH_AWS_SMALL [100]
#   BENCH_AWS_LARGE [20] BENCH_CONC [8] BENCH_WORK [/tmp/haul-bench-daemon]
#   BENCH_OUT [bench/results/daemon-YYYY-MM-DD.md]
#   HAUL_S3_DIR [/tmp/haul-bench-daemon-s3] HAUL_S3_PORT [7510] HAUL_S3_MON_PORT [6820]
# The bench bucket is removed at the end, the work directory too.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export BENCH_SMALL=${BENCH_SMALL:-1000} BENCH_LARGE=${BENCH_LARGE:-200}
export BENCH_AWS_SMALL=${BENCH_AWS_SMALL:-100} BENCH_AWS_LARGE=${BENCH_AWS_LARGE:-20}
export BENCH_CONC=${BENCH_CONC:-8}
WORK=${BENCH_WORK:-/tmp/haul-bench-daemon}
export BENCH_OUT=${BENCH_OUT:-bench/results/daemon-$(date -u +%Y-%m-%d).md}
case $WORK in /tmp/?*) ;; *) echo "daemon.sh: BENCH_WORK must be under /tmp" >&2; exit 2 ;; esac
export WORK HAUL=$ROOT/build/haul
export HAUL_S3_DIR=${HAUL_S3_DIR:-/tmp/haul-bench-daemon-s3}
export HAUL_S3_PORT=${HAUL_S3_PORT:-7510}
export HAUL_S3_MON_PORT=${HAUL_S3_MON_PORT:-6820}
export HAUL_S3_STORE=bluestore HAUL_S3_DISK_BYTES=${HAUL_S3_DISK_BYTES:-$((24 << 30))}
[ "$HAUL_S3_PORT" != 7480 ] || { echo "daemon.sh: not on the shared test server's port" >&2; exit 2; }
STARTED=0
if ! scripts/s3-server status >/dev/null 2>&1; then
    echo "starting RGW (bluestore) at port $HAUL_S3_PORT, dir $HAUL_S3_DIR" >&2
    STARTED=1
    scripts/s3-server start >&2
fi
export STARTED
eval "$(scripts/s3-server env)"
case "$AWS_ENDPOINT_URL" in http://127.0.0.1:*) ;; *) echo "daemon.sh: endpoint is not loopback" >&2; exit 2 ;; esac
export BUCKET=bench-daemon-$$ PORT=$((30000 + $$ % 20000))
rm -rf "$WORK"; mkdir -p "$WORK/home"
export HOME=$WORK/home   # haul put's resume journal, aws cli's config: ours
export SOCK=$WORK/daemon.sock DLOG=$WORK/daemon.log

"$HAUL" mb -q "s3://$BUCKET"
"$HAUL" daemon --socket "$SOCK" --state-dir "$WORK/state" --tcp --tcp-host 127.0.0.1 --tcp-port "$PORT" \
    --log "$DLOG" --log-json 2>"$WORK/daemon.err" &
DPID=$!
cleanup() {
    kill -TERM "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null || true
    "$HAUL" rb --force -q "s3://$BUCKET" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    [ "$STARTED" = 1 ] && scripts/s3-server stop >&2 || true
}
trap cleanup EXIT
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { echo "daemon did not start" >&2; cat "$WORK/daemon.err" >&2; exit 1; }
export DPID

python3 - <<'PY'
import concurrent.futures as cf, hashlib, json, os, socket, statistics, subprocess, sys, time
import boto3

W, HAUL, B = os.environ["WORK"], os.environ["HAUL"], os.environ["BUCKET"]
SOCK, PORT, DLOG = os.environ["SOCK"], int(os.environ["PORT"]), os.environ["DLOG"]
CONC = int(os.environ["BENCH_CONC"])
EP = os.environ["AWS_ENDPOINT_URL"]
s3 = boto3.client("s3", endpoint_url=EP)

def say(*a):
    print(time.strftime("[%H:%M:%S]"), *a, file=sys.stderr, flush=True)

def make(kind, n, size):
    d = os.path.join(W, kind)
    os.makedirs(d)
    paths = []
    for i in range(n):
        p = os.path.join(d, "f%04d" % i)
        with open(p, "wb") as f:
            f.write(os.urandom(size))
        paths.append(p)
    return paths

def md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for c in iter(lambda: f.read(1 << 20), b""):
            h.update(c)
    return h.hexdigest()

def run_cmd(argv):
    t = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError("%s: %s" % (argv, r.stderr.decode()[-300:]))
    return time.perf_counter() - t

def tcp_one(path, key):
    t = time.perf_counter()
    c = socket.create_connection(("127.0.0.1", PORT))
    c.sendall(("%s alias/%s/%s\n" % (path, B, key)).encode())
    out = b""
    while True:
        b = c.recv(4096)
        if not b:
            break
        out += b
    c.close()
    if out != b"Success":
        raise RuntimeError("%s: %r" % (key, out))
    return time.perf_counter() - t

def shipper(way):
    if way == "haul send":
        return lambda p, k: run_cmd([HAUL, "send", "--socket", SOCK, p, "s3://%s/%s" % (B, k)])
    if way == "tcp (s3daemon protocol)":
        return tcp_one
    if way == "haul put":
        return lambda p, k: run_cmd([HAUL, "put", "-q", p, "s3://%s/%s" % (B, k)])
    if way == "aws s3 cp":
        return lambda p, k: run_cmd(["aws", "--endpoint-url", EP, "s3", "cp", "--quiet", p, "s3://%s/%s" % (B, k)])
    raise ValueError(way)

def cpu_of(pid):
    try:
        rest = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0

def check(prefix, paths):
    keys = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=B, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            keys[o["Key"]] = o["Size"]
    bad = 0
    for p in paths:
        k = "%s/%s" % (prefix, os.path.basename(p))
        bad += keys.get(k) != os.path.getsize(p)
    step = max(1, len(paths) // 10)
    for p in paths[::step][:10]:
        k = "%s/%s" % (prefix, os.path.basename(p))
        h = hashlib.md5()
        for c in s3.get_object(Bucket=B, Key=k)["Body"].iter_chunks(1 << 20):
            h.update(c)
        bad += h.hexdigest() != md5(p)
    return bad

def drop(prefix):
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=B, Prefix=prefix + "/"):
        objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objs:
            s3.delete_objects(Bucket=B, Delete={"Objects": objs, "Quiet": True})
    # RGW frees deleted data only after rgw_gc_obj_min_wait (2 h): now, please.
    subprocess.run(["timeout", "300", "radosgw-admin", "-c", os.environ["HAUL_S3_DIR"] + "/ceph.conf",
                    "gc", "process", "--include-all"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def daemon_seconds(prefix):
    out = []
    with open(DLOG) as f:
        for line in f:
            l = json.loads(line)
            if l["key"].startswith(prefix + "/") and l["status"] == "ok":
                out.append(l["seconds"])
    return out

def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]

rows = []
def bench(label, way, paths, conc):
    prefix = "%s-%s-c%d" % (label.replace(" ", ""), "".join(c for c in way.split("(")[0] if c.isalnum()), conc)
    ship = shipper(way)
    dpid = int(os.environ["DPID"])
    cpu0 = cpu_of(dpid)
    say("%s: %d files, %s, %d at once" % (label, len(paths), way, conc))
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(conc) as ex:
        lat = list(ex.map(lambda p: ship(p, "%s/%s" % (prefix, os.path.basename(p))), paths))
    wall = time.perf_counter() - t0
    dcpu = cpu_of(dpid) - cpu0 if way in ("haul send", "tcp (s3daemon protocol)") else None
    bad = check(prefix, paths)
    drop(prefix)  # the shared server keeps one run's objects at a time, not 40 GB
    ds = daemon_seconds(prefix) if dcpu is not None else []
    size = os.path.getsize(paths[0])
    rows.append(dict(label=label, way=way, conc=conc, n=len(paths), wall=wall, median=statistics.median(lat),
                     p99=pct(lat, 0.99), fps=len(paths) / wall, mbps=len(paths) * size / wall / 1e6,
                     dmedian=statistics.median(ds) if ds else None, dcpu=dcpu, bad=bad))
    say("  %.1f files/s, median %.1f ms, p99 %.1f ms, check %s" % (rows[-1]["fps"], rows[-1]["median"] * 1e3,
                                                                   rows[-1]["p99"] * 1e3, "ok" if not bad else "%d BAD" % bad))

small = make("small", int(os.environ["BENCH_SMALL"]), 4096)
large = make("large", int(os.environ["BENCH_LARGE"]), 32 << 20)
subprocess.run("sync", shell=True)
aws_small, aws_large = small[:int(os.environ["BENCH_AWS_SMALL"])], large[:int(os.environ["BENCH_AWS_LARGE"])]
for label, paths, aws_paths in (("4 KiB", small, aws_small), ("32 MiB", large, aws_large)):
    for conc in (1, CONC):
        for way in ("haul send", "tcp (s3daemon protocol)", "haul put"):
            bench(label, way, paths, conc)
        bench(label, "aws s3 cp", aws_paths, conc)

ver = subprocess.run([HAUL, "--version"], capture_output=True, text=True).stdout.strip()
aws = subprocess.run(["aws", "--version"], capture_output=True, text=True)
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
out = []
out.append("# Daemon benchmark, %s UTC\n" % time.strftime("%Y-%m-%d %H:%M", time.gmtime()))
out.append("Command: `bench/daemon.sh` (%s, commit %s). Machine: %d cores. S3: %s, a one-node Ceph RGW on bluestore "
           "(sparse file in /tmp) started for this run; every way against this same server, one after the other. %s.\n"
           % (ver, rev, os.cpu_count(), EP, (aws.stdout or aws.stderr).strip()))
out.append("Daemon: `haul daemon --tcp --log-json` with defaults (16 upload workers, 25 connections, 4 part "
           "senders per upload, 8 MiB parts). Files: random bytes in the page cache. Every file is a new object; "
           "each way writes its own prefix. *latency* = one file end to end as the client sees it (process start "
           "to exit for commands; connect to close for the TCP client), *daemon-side* = the daemon's own "
           "upload time per object from its log (median), *daemon CPU* = user+sys seconds of the daemon process "
           "during the run. aws cli ran on a subset (first %s small and %s large files): about 0.5 s of Python "
           "start-up per file. *check* = sizes of every key from a listing, and the MD5 of 10 objects per run.\n"
           % (os.environ["BENCH_AWS_SMALL"], os.environ["BENCH_AWS_LARGE"]))
for label in ("4 KiB", "32 MiB"):
    out.append("\n## %s files\n" % label)
    out.append("| way | clients at once | files | wall s | files/s | MB/s | latency median ms | latency p99 ms | daemon-side median ms | daemon CPU s | check |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        if r["label"] != label:
            continue
        out.append("| %s | %d | %d | %.2f | %.1f | %.1f | %.1f | %.1f | %s | %s | %s |" % (
            r["way"], r["conc"], r["n"], r["wall"], r["fps"], r["mbps"], r["median"] * 1e3, r["p99"] * 1e3,
            "%.1f" % (r["dmedian"] * 1e3) if r["dmedian"] is not None else "-",
            "%.1f" % r["dcpu"] if r["dcpu"] is not None else "-", "ok" if not r["bad"] else "%d bad" % r["bad"]))
open(os.environ["BENCH_OUT"], "w").write("\n".join(out) + "\n")
print("\n".join(out))
if any(r["bad"] for r in rows):
    sys.exit(1)
PY
