#!/usr/bin/env bash
# bench/backup.sh: backup at scale, haul against aws cli and rclone, on a real
# Ceph RGW (bluestore) of its own.  One command, about 25 minutes on 2 cores:
#
#   bench/backup.sh
#
# What it measures (tables in bench/results/backup-DATE.md, also printed):
#  1. A 200,000-file tree (bench/gen-tree.py, seed 1, plus 4 x 256 MiB files):
#     haul backup full, no-change incremental, 1% changed (2,000 files
#     rewritten, same size, new content and mtime).  aws s3 sync and rclone
#     sync upload ~80-300 files/s here, far too slow for 200,000 files inside
#     the time budget, so the three tools are compared on the 20,000-file
#     subset (gen-tree.py with the same seed: the first 20,000 small files of
#     the big tree, the same 4 large files' sizes), and haul runs on both.
#     Each tool writes into its own bucket.  rclone runs as a user would
#     (--transfers 16 --checkers 16) and once more tuned for incrementals
#     (--fast-list --update --use-server-modtime: no HEAD per object).
#  2. Flat memory: haul backup --dry-run on a fresh state dir (walks, stats,
#     opens and decides every file, uploads nothing) over 100,000 and
#     1,000,000 files of 1 KiB; and the real no-change incremental (index
#     only) at 20,000 vs 200,000 files.  The 1M tree lives on tmpfs
#     (BENCH_MEM_DIR, default /dev/shm): creating 1M files on this machine's
#     ext4 /tmp costs ~0.6 ms each (10 min, 7 more to delete).
#  3. Correctness: haul diff TREE s3://BUCKET/tree exits 0 after haul's full
#     backup of the 20,000-file tree and again after its 1% incremental; the
#     200,000-file bucket is checked against its listing (every key and size;
#     BENCH_DIFF_FULL=1 runs haul diff there too: ~5 more minutes of HEADs).
#
# Every command is measured by wait4(): wall time, user+sys CPU, peak RSS of
# the largest process in the command's tree; RGW's own CPU (ceph-mon, -osd,
# radosgw from /proc) and its request counters (radosgw admin socket perf
# dump: requests, object GET/HEADs, PUTs) are read before and after, and the
# machine's busy time, so CPU used by other processes shows in the table.
#
# Environment (defaults in brackets):
#   BENCH_FILES [200000]  BENCH_SUBSET [20000]  BENCH_LARGE [4]
#   BENCH_LARGE_SIZE [268435456]  BENCH_MEM_FILES [1000000] (the small point is 1/10)
#   BENCH_MEM_DIR [/dev/shm/haul-bench2-mem]  BENCH_WORK [/tmp/haul-bench2]
#   BENCH_DIFF_FULL [0]   BENCH_OUT [bench/results/backup-YYYY-MM-DD.md]
#   HAUL_S3_DIR [/tmp/haul-bench2-s3] HAUL_S3_PORT [7500] HAUL_S3_MON_PORT [6810]
# The RGW is started (bluestore) unless one already answers with these
# settings, and stopped at the end if this script started it.  Trees, state
# dirs and the 1M tree are deleted at the end; logs stay in BENCH_WORK/logs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

FILES=${BENCH_FILES:-200000}
SUBSET=${BENCH_SUBSET:-20000}
LARGE=${BENCH_LARGE:-4}
LARGE_SIZE=${BENCH_LARGE_SIZE:-268435456}
MEM_FILES=${BENCH_MEM_FILES:-1000000}
MEM_DIR=${BENCH_MEM_DIR:-/dev/shm/haul-bench2-mem}
WORK=${BENCH_WORK:-/tmp/haul-bench2}
DIFF_FULL=${BENCH_DIFF_FULL:-0}
OUT=${BENCH_OUT:-bench/results/backup-$(date +%Y-%m-%d).md}
export HAUL_S3_DIR=${HAUL_S3_DIR:-/tmp/haul-bench2-s3}
export HAUL_S3_PORT=${HAUL_S3_PORT:-7500}
export HAUL_S3_MON_PORT=${HAUL_S3_MON_PORT:-6810}
export HAUL_S3_STORE=bluestore
HAUL=${BENCH_HAUL:-$ROOT/build/haul}   # another build to compare (e.g. an older commit)
SMALL_LABEL=$((SUBSET / 1000))k
BIG_LABEL=$((FILES / 1000))k

case $WORK in /tmp/?*) ;; *) echo "backup.sh: BENCH_WORK must be under /tmp" >&2; exit 2 ;; esac
case $MEM_DIR in /tmp/?* | /dev/shm/?*) ;; *) echo "backup.sh: BENCH_MEM_DIR must be under /tmp or /dev/shm" >&2; exit 2 ;; esac

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---- the Python half: measuring, trees, checks, the report ------------------
PY=$(
    cat <<'PYEOF'
import glob, json, os, random, subprocess, sys, time

TICK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1

def machine_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / TICK

def proc_cpu(pid):
    try:
        s = open(f"/proc/{pid}/stat").read()
    except OSError:
        return 0.0
    r = s[s.rindex(")") + 2:].split()
    return (int(r[11]) + int(r[12]) + int(r[13]) + int(r[14])) / TICK

def server_pids():
    out = []
    for p in glob.glob(os.environ["HAUL_S3_DIR"] + "/pids/*.pid"):
        try:
            out.append(int(open(p).read().strip()))
        except (OSError, ValueError):
            pass
    return out

def rgw_counters():
    socks = glob.glob(os.environ["HAUL_S3_DIR"] + "/run/ceph-client.rgw.*.asok")
    if not socks:
        return None
    try:
        d = json.loads(subprocess.run(["ceph", "--admin-daemon", socks[0], "perf", "dump"],
                                      capture_output=True, timeout=30).stdout)["rgw"]
        return {k: d[k] for k in ("req", "failed_req", "get", "put", "put_b", "get_b")}
    except Exception:
        return None

def cmd_measure(a):
    """measure RUNS LABELJSON LOGBASE -- CMD...: run, append one JSON record."""
    runs, label, logbase = a[0], json.loads(a[1]), a[2]
    cmd = a[4:]
    pids = server_pids()
    c0, busy0, srv0 = rgw_counters(), machine_busy(), sum(proc_cpu(p) for p in pids)
    t0 = time.perf_counter()
    with open(logbase + ".out", "w") as fo, open(logbase + ".err", "w") as fe:
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    busy1, srv1, c1 = machine_busy(), sum(proc_cpu(p) for p in pids), rgw_counters()
    rec = dict(label)
    rec.update(wall_s=round(wall, 3), user_s=round(ru.ru_utime, 3), sys_s=round(ru.ru_stime, 3),
               maxrss_kib=ru.ru_maxrss, rc=os.waitstatus_to_exitcode(status),
               server_cpu_s=round(srv1 - srv0, 2), machine_busy_s=round(busy1 - busy0, 2),
               cmd=" ".join(cmd), log=logbase)
    if c0 and c1:
        rec["rgw"] = {k: c1[k] - c0[k] for k in c0}
    # haul --json ends its stdout with the summary object
    try:
        with open(logbase + ".out", "rb") as f:
            f.seek(max(0, os.path.getsize(logbase + ".out") - 4096))
            last = f.read().decode("utf-8", "replace").strip().splitlines()[-1]
        if last.startswith("{"):
            rec["haul"] = json.loads(last)
    except (OSError, IndexError, ValueError):
        pass
    with open(runs, "a") as f:
        f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    other = rec["machine_busy_s"] - ru.ru_utime - ru.ru_stime - rec["server_cpu_s"]
    req = rec.get("rgw", {}).get("req", "?")
    sys.stderr.write("    %-34s %8.1f s  rss %6.1f MiB  rc %d  S3 req %s  other load %.0f%%\n" % (
        "%s %s %s" % (label.get("tree"), label.get("tool"), label.get("case")), wall,
        ru.ru_maxrss / 1024, rec["rc"], req, 100 * max(other, 0) / (NCPU * wall) if wall else 0))

def tree_stats(d):
    files = nbytes = dirs = links = 0
    for top, dn, fn in os.walk(d):
        dirs += 1
        for n in dn + fn:
            st = os.lstat(os.path.join(top, n))
            if os.path.islink(os.path.join(top, n)):
                links += 1
            elif not n in dn:
                files += 1
                nbytes += st.st_size
    return {"files": files, "bytes": nbytes, "dirs": dirs, "symlinks": links}

def cmd_stats(a):
    s = tree_stats(a[0])
    json.dump(s, open(a[1], "w"))
    sys.stderr.write("    tree %s: %d files, %.1f MB, %d dirs, %d symlinks\n" % (
        a[0], s["files"], s["bytes"] / 1e6, s["dirs"], s["symlinks"]))

def cmd_modify(a):
    """modify DIR EVERY OFFSET OUT: rewrite every EVERY-th small file (same size)."""
    d, every, off, out = a[0], int(a[1]), int(a[2]), a[3]
    paths = []
    for top, dn, fn in os.walk(d):
        dn.sort()
        rel = os.path.relpath(top, d)
        if rel.split(os.sep)[0].startswith("project-"):
            paths += [os.path.join(top, n) for n in fn]
    paths.sort()
    pick = paths[off::every]
    rng, nbytes = random.Random(off), 0
    for p in pick:
        n = os.path.getsize(p)
        with open(p, "wb") as f:
            f.write(rng.randbytes(n))
        nbytes += n
    json.dump({"files": len(pick), "bytes": nbytes}, open(out, "w"))
    sys.stderr.write("    rewrote %d files (%.1f MB) of %d in %s\n" % (len(pick), nbytes / 1e6, len(paths), d))

def cmd_memgen(a):
    """memgen DIR N SIZE: N files of SIZE bytes in 10 groups g0..g9 of dirs of 100."""
    root, n, size = a[0], int(a[1]), int(a[2])
    blob = os.urandom(4096 + size)
    for i in range(n):
        g, j = i % 10, i // 10
        d = "%s/g%d/d%05d" % (root, g, j // 100)
        if j % 100 == 0:
            os.makedirs(d, exist_ok=True)
        fd = os.open("%s/f%07d" % (d, i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        if size:
            os.write(fd, blob[i % 4096:i % 4096 + size])
        os.close(fd)

def cmd_listcheck(a):
    """listcheck DIR PREFIX LISTING OUT: every file/dir/symlink has its key, files their size."""
    d, prefix, listing, out = a[0], a[1], a[2], a[3]
    objs = {}
    for line in open(listing, encoding="utf-8"):
        if line.startswith("{"):
            o = json.loads(line)
            objs[o["key"]] = o["size"]
    want = {prefix + "/": 0}
    for top, dn, fn in os.walk(d):
        rel = os.path.relpath(top, d)
        base = prefix + "/" + ("" if rel == "." else rel + "/")
        for n in dn:
            p = os.path.join(top, n)
            want[base + n + ("" if os.path.islink(p) else "/")] = None if os.path.islink(p) else 0
        for n in fn:
            p = os.path.join(top, n)
            st = os.lstat(p)
            # hard links beyond the first are stored as an empty object pointing at it
            want[base + n] = None if os.path.islink(p) or st.st_nlink > 1 else st.st_size
    missing = [k for k in want if k not in objs]
    wrong = [k for k, v in want.items() if v is not None and k in objs and objs[k] != v]
    extra = [k for k in objs if k not in want]
    r = {"expected": len(want), "objects": len(objs), "missing": len(missing),
         "size_mismatch": len(wrong), "extra": len(extra), "examples": (missing + wrong + extra)[:5]}
    json.dump(r, open(out, "w"), ensure_ascii=False)
    sys.stderr.write("    listing check: %s\n" % json.dumps(r, ensure_ascii=False))

def cmd_count(a):
    """count LISTING: objects in a haul ls --json listing."""
    print(sum(1 for l in open(a[0], encoding="utf-8") if l.startswith("{")))

# ---- the report ----------------------------------------------------------------
def fmt(x, nd=1):
    if x is None:
        return "-"
    if isinstance(x, (int,)) or (isinstance(x, float) and x >= 100):
        return "{:,.0f}".format(x)
    return ("{:,.%df}" % nd).format(x)

def cmd_report(a):
    work, out, meta = a[0], a[1], json.loads(a[2])
    runs = [json.loads(l) for l in open(work + "/runs.jsonl", encoding="utf-8")]
    def run(tree, tool, case):
        for r in runs:
            if r.get("tree") == tree and r.get("tool") == tool and r.get("case") == case:
                return r
        return None
    def load(name):
        try:
            return json.load(open(work + "/" + name))
        except (OSError, ValueError):
            return None
    small, big = meta["small"], meta["big"]
    trees = {small: load("stats-%s.json" % small), big: load("stats-%s.json" % big)}
    changes = {small: load("change-%s-1.json" % small), big: load("change-%s-1.json" % big),
               small + "/2": load("change-%s-2.json" % small)}
    def other_pct(r):
        o = r["machine_busy_s"] - r["user_s"] - r["sys_s"] - r["server_cpu_s"]
        return 100 * max(o, 0) / (NCPU * r["wall_s"]) if r["wall_s"] else 0
    def row_values(r, tree, case, chg):
        t = trees[tree] or {"files": 0, "bytes": 0}
        w = r["wall_s"]
        fps = t["files"] / w if w else 0
        if case == "full":
            mbs = t["bytes"] / 1e6 / w
        elif chg:
            mbs = chg["bytes"] / 1e6 / w
        else:
            mbs = None
        g = r.get("rgw", {})
        return {"wall": w, "fps": fps, "mbs": mbs, "rss": r["maxrss_kib"] / 1024,
                "cpu": r["user_s"] + r["sys_s"], "srv": r["server_cpu_s"], "other": other_pct(r),
                "req": g.get("req"), "get": g.get("get"), "put": g.get("put"), "rc": r["rc"]}
    L = []
    P = L.append
    P("# Backup benchmark, %s" % meta["date"])
    P("")
    P("Command: `%s` (haul %s%s). Machine: %d cores, %s GiB RAM, %s. S3: %s, one-node Ceph RGW %s on"
      " bluestore (sparse file in /tmp), port %s. Tools: %s; %s." % (
        meta["command"], meta["commit"], meta["dirty"], NCPU, meta["mem_gib"], meta["fs"],
        meta["endpoint"], meta["rgw_version"], meta["port"], meta["aws_version"], meta["rclone_version"]))
    P("")
    P("Trees: `bench/gen-tree.py --seed 1 --large %s --large-size %s`: small files of a few KiB"
      " (log-normal) in deep `project-*` directories, unicode names, symlinks, a hard link, an empty dir,"
      " a 32 MiB sparse file; all in the page cache (just written) on ext4 /tmp." % (meta["large"], meta["large_size"]))
    for k in (small, big):
        t = trees[k]
        if t:
            P("* %s tree: %s regular files, %.1f MB, %s dirs, %s symlinks." % (
                k, fmt(t["files"]), t["bytes"] / 1e6, fmt(t["dirs"]), t["symlinks"]))
    P("")
    P("Columns: *files/s* = regular files in the tree / wall time (for incrementals: files examined per"
      " second); *MB/s* = bytes moved / wall (full: the tree, 10^6 B; 1%%: the rewritten files); *RSS* = peak"
      " resident set of the largest process (wait4 ru_maxrss); *S3 req* = requests RGW counted (all /"
      " object GET+HEAD / PUT, from its perf counters); *CPU* = client user+sys s; *RGW CPU* = ceph-mon+osd+radosgw"
      " s; *other* = CPU other processes on the machine used meanwhile, %% of %d cores (this machine is"
      " shared: high values mean a disturbed figure). Ratio = haul / peer (wall: < 1 means haul is faster;"
      " RSS: < 1 means haul uses less)." % NCPU)
    P("")
    # Table 1: 200k haul
    P("## 1a. %s-file tree: haul backup (default options)" % meta["big_files"])
    P("")
    P("| case | wall s | files/s | MB/s | peak RSS MiB | S3 req (all / GET+HEAD / PUT) | objects uploaded | CPU s | RGW CPU s | other | rc |")
    P("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for case, name in (("full", "full backup"), ("noop", "no-change incremental"), ("1pct", "1% changed")):
        r = run(big, "haul", case)
        if not r:
            continue
        v = row_values(r, big, case, changes[big] if case == "1pct" else None)
        h = r.get("haul", {})
        chg = changes[big] if case == "1pct" else None
        nm = name + (" (%s files rewritten)" % fmt(chg["files"]) if chg else "")
        P("| %s | %s | %s | %s | %s | %s / %s / %s | %s | %s | %s | %.0f%% | %s |" % (
            nm, fmt(v["wall"], 2 if v["wall"] < 10 else 1), fmt(v["fps"]), fmt(v["mbs"]), fmt(v["rss"]),
            fmt(v["req"]), fmt(v["get"]), fmt(v["put"]), fmt(h.get("uploaded")), fmt(v["cpu"]), fmt(v["srv"]),
            v["other"], v["rc"]))
    r = run(big, "haul", "noop")
    if r:
        P("")
        P("**A no-change incremental of %s files takes %.1f s** (%s files/s, %s S3 requests: the decision is"
          " made from the local index)." % (fmt(trees[big]["files"]), r["wall_s"],
                                          fmt(trees[big]["files"] / r["wall_s"]), fmt(r.get("rgw", {}).get("req"))))
    P("")
    # Table 2: subset comparison
    P("## 1b. %s-file subset: haul vs aws s3 sync vs rclone sync" % meta["small_files"])
    P("")
    P("aws cli and rclone were not run on the %s-file tree: at the rates below (full backup) they would need"
      " about %s and %s minutes for it, over the time budget; they run on the %s-file subset made by gen-tree.py"
      " with the same seed (its first %s small files, the same large files' sizes), and haul runs on both trees." % (
        meta["big_files"], meta.get("aws_proj", "?"), meta.get("rclone_proj", "?"), meta["small_files"], meta["small_files"]))
    P("")
    P("| tool | case | wall s | files/s | MB/s | peak RSS MiB | S3 req (all / GET+HEAD / PUT) | CPU s | RGW CPU s | other | rc | haul/peer wall | haul/peer RSS |")
    P("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    tools = (("haul", "haul backup"), ("aws", "aws s3 sync"), ("rclone", "rclone sync"),
             ("rclone-tuned", "rclone sync, tuned"))
    cases = (("full", "full"), ("noop", "no change"), ("1pct", "1% changed"), ("1pct-b", "1% changed (2nd set)"))
    for case, cname in cases:
        hr = run(small, "haul", case)
        for tool, tname in tools:
            r = run(small, tool, case)
            if not r:
                continue
            chg = changes[small] if case == "1pct" else changes[small + "/2"] if case == "1pct-b" else None
            v = row_values(r, small, case, chg)
            rw = rr = "-"
            if tool != "haul" and hr:
                rw = "%.2f" % (hr["wall_s"] / r["wall_s"])
                rr = "%.2f" % (hr["maxrss_kib"] / r["maxrss_kib"])
            P("| %s | %s | %s | %s | %s | %s | %s / %s / %s | %s | %s | %.0f%% | %s | %s | %s |" % (
                tname, cname + (" (%s files)" % chg["files"] if chg else ""), fmt(v["wall"], 2 if v["wall"] < 10 else 1),
                fmt(v["fps"]), fmt(v["mbs"]), fmt(v["rss"]), fmt(v["req"]), fmt(v["get"]), fmt(v["put"]),
                fmt(v["cpu"]), fmt(v["srv"]), v["other"], v["rc"], rw, rr))
    P("")
    P("Flags: haul `backup --state-dir DIR TREE s3://b-haul-N/tree` (defaults: 16 small-file workers, 4 walk"
      " threads, 8 MiB parts). aws `s3 sync TREE s3://b-aws/tree --endpoint-url URL --only-show-errors"
      " --no-follow-symlinks` (without the last flag aws follows `special/link-to-dir -> ../large` and uploads"
      " the large files twice; the other tools store or skip symlinks). rclone `sync TREE X:b-rclone/tree"
      " --transfers 16 --checkers 16`, remote from RCLONE_CONFIG_X_* (type s3, provider Ceph), run without"
      " AWS_CA_BUNDLE (rclone 1.60 refuses to start with it set, even for http). *tuned* adds"
      " `--fast-list --update --use-server-modtime`: the listing's LastModified replaces the per-object HEAD"
      " that reads X-Amz-Meta-Mtime, and files newer locally than their upload are sent (so a change that keeps"
      " the mtime older than the upload, or a same-second change, is missed). Other tunings a user could choose:"
      " `--size-only` (misses same-size rewrites), `--checksum` (reads every local file, compares MD5 with the"
      " ETag; multipart objects need a HEAD), `--no-check-dest`/`--max-age` for append-only trees. The 2nd"
      " 1% set is another 1% of files rewritten after the default rclone run, for the tuned run to find.")
    P("")
    # Table 3: memory
    P("## 2. Memory: haul backup peak RSS against the number of files")
    P("")
    P("| what was measured | files | wall s | files/s | peak RSS MiB | rc |")
    P("|---|---:|---:|---:|---:|---:|")
    for tree, case, what in (("mem-small", "dry-run", "--dry-run, fresh state dir, %s (1 KiB files)"),
                             ("mem-big", "dry-run", "--dry-run, fresh state dir, %s (1 KiB files)"),
                             (small, "noop", "no-change incremental (index only, after a real full backup), ext4"),
                             (big, "noop", "no-change incremental (index only, after a real full backup), ext4"),
                             (small, "full", "full backup (uploads), ext4"),
                             (big, "full", "full backup (uploads), ext4")):
        r = run(tree, "haul", case)
        if not r:
            continue
        n = (r.get("haul") or {}).get("files") or (trees.get(tree) or {}).get("files", 0)
        w = what % meta.get("mem_where", "") if "%s" in what else what
        if tree.startswith("mem") and meta.get("mem_size") == "0":
            w = w.replace("1 KiB files", "empty files")
        P("| %s | %s | %s | %s | %s | %s |" % (w, fmt(n), fmt(r["wall_s"], 2 if r["wall_s"] < 10 else 1),
                                             fmt(n / r["wall_s"] if r["wall_s"] else 0), fmt(r["maxrss_kib"] / 1024),
                                             r["rc"]))
    P("")
    P("haul's full-backup RSS is its large-file buffers: two large files upload at once (two large-file"
      " workers), each with its own pool of --num-largefile-buffers (default workers + 2 = 10) x part size"
      " (8 MiB), so up to 2 x 80 MiB; it does not depend on the number of files.")
    P("")
    P("The dry runs walk, stat, open and decide every file against an empty index and upload nothing"
      " (haul opens each file during the decision); the %s-file tree is one of the 10 top-level directories of the"
      " %s-file tree (dirs of 100 files). The big point is a dry run, not an incremental, because a first backup"
      " of %s objects into this RGW would take about %s minutes at the full-backup rate of table 1a." % (
        meta["mem_small_files"], meta["mem_files"], meta["mem_files"],
        fmt(int(meta["mem_files"].replace(",", "")) / row_values(run(big, "haul", "full"), big, "full", None)["fps"] / 60)
        if run(big, "haul", "full") else "?"))
    P("")
    # Table 4: correctness
    P("## 3. Correctness")
    P("")
    P("| check | result |")
    P("|---|---|")
    for tree, case, what in ((small, "diff-full", "`haul diff` %s tree vs its bucket after the full backup"),
                             (small, "diff-1pct", "`haul diff` %s tree vs its bucket after the 1%% incremental"),
                             (big, "diff-1pct", "`haul diff` %s tree vs its bucket after the 1%% incremental")):
        r = run(tree, "haul", case)
        if not r:
            continue
        last = ""
        try:
            last = open(r["log"] + ".err", encoding="utf-8").read().strip().splitlines()[-1]
        except (OSError, IndexError):
            pass
        P("| %s | exit %d (%s) in %.1f s |" % (what % tree, r["rc"], last.replace("|", "\\|"), r["wall_s"]))
    lc = load("listcheck-%s.json" % big)
    if lc:
        P("| %s bucket listing vs tree after the 1%% incremental (every file, dir, symlink key; file sizes) |"
          " %s expected, %s objects: %s missing, %s wrong size, %s extra |" % (
            big, fmt(lc["expected"]), fmt(lc["objects"]), lc["missing"], lc["size_mismatch"], lc["extra"]))
    for tool in ("haul", "aws", "rclone"):
        c = load("count-%s-%s.json" % (small, tool))
        if c:
            P("| objects in the %s bucket of the %s tree after the full run | %s |" % (tool, small, fmt(c["objects"])))
    P("")
    open(out, "w", encoding="utf-8").write("\n".join(L) + "\n")

def main():
    cmds = {"measure": cmd_measure, "stats": cmd_stats, "modify": cmd_modify, "memgen": cmd_memgen,
            "listcheck": cmd_listcheck, "count": cmd_count, "report": cmd_report}
    cmds[sys.argv[1]](sys.argv[2:])

main()
PYEOF
)
py() { python3 -c "$PY" "$@"; }

RUNS=$WORK/runs.jsonl
# m TREE TOOL CASE -- CMD...: measure one command; logs in $WORK/logs.
m() {
    local tree=$1 tool=$2 case=$3
    shift 4
    py measure "$RUNS" "{\"tree\":\"$tree\",\"tool\":\"$tool\",\"case\":\"$case\"}" \
        "$WORK/logs/$tree-$tool-$case" -- "$@"
}
# ---- set-up -----------------------------------------------------------------
START_S=$SECONDS
for t in python3 aws rclone ceph make; do
    command -v "$t" >/dev/null || { echo "backup.sh: $t not found" >&2; exit 1; }
done
say "building haul (make -j2)"
make -j2 >/dev/null
STARTED=0
cleanup() {
    say "cleaning up: trees, state dirs, the 1M tree"
    rm -rf "$WORK/tree-"* "$WORK/state-"* "$WORK/list-"* "$MEM_DIR"
    if [ "$STARTED" = 1 ]; then
        say "stopping the RGW at $HAUL_S3_DIR"
        scripts/s3-server stop || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

df -h /tmp /dev/shm >&2
free -m >&2
rm -rf "$WORK"
mkdir -p "$WORK/logs" "$(dirname "$OUT")"
if scripts/s3-server status >/dev/null 2>&1; then
    say "RGW already running at port $HAUL_S3_PORT: using it (and leaving it running)"
else
    say "starting RGW (bluestore) at port $HAUL_S3_PORT, dir $HAUL_S3_DIR"
    STARTED=1
    scripts/s3-server start
fi
eval "$(scripts/s3-server env)"
ENDPOINT=$AWS_ENDPOINT_URL
export RCLONE_CONFIG_X_TYPE=s3 RCLONE_CONFIG_X_PROVIDER=Ceph RCLONE_CONFIG_X_ENDPOINT=$ENDPOINT
export RCLONE_CONFIG_X_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_X_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
RCLONE=(env -u AWS_CA_BUNDLE rclone)
for b in b-haul-$SMALL_LABEL b-haul-$BIG_LABEL b-aws-$SMALL_LABEL b-rclone-$SMALL_LABEL b-haul-mem; do
    "$HAUL" rb --force "s3://$b" >/dev/null 2>&1 || true # left over from an earlier run on this server
    "$HAUL" mb "s3://$b" >/dev/null
done

HB=("$HAUL" backup --json) # + --state-dir, the tree, the bucket
TUNED=(--fast-list --update --use-server-modtime)

# ---- 2. memory, first: the 1M tree needs RAM before the OSD's caches grow ----
MEM_SMALL=$((MEM_FILES / 10))
MEM_SIZE=1024
avail_kib=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
case $MEM_DIR in /dev/shm/*)
    # tmpfs: a page per file plus ~1 KiB of inode and dentry, and 4 GiB to spare
    if [ $((avail_kib / 1024)) -lt $((MEM_FILES * 5 / 1024 + 3072)) ]; then
        say "only $((avail_kib / 1024)) MiB available: the ${MEM_FILES}-file tree gets empty files"
        MEM_SIZE=0
    fi
    ;;
esac
say "memory: making $MEM_FILES files of $MEM_SIZE B in $MEM_DIR"
rm -rf "$MEM_DIR"
py memgen "$MEM_DIR" "$MEM_FILES" "$MEM_SIZE"
m mem-small haul dry-run -- "$HAUL" backup --json -n --state-dir "$WORK/state-mem-small" "$MEM_DIR/g0" s3://b-haul-mem/tree
m mem-big haul dry-run -- "$HAUL" backup --json -n --state-dir "$WORK/state-mem-big" "$MEM_DIR" s3://b-haul-mem/tree
for f in "$WORK/logs/mem-"*.out; do # a dry run prints every key: keep the summary
    tail -n 1 "$f" >"$f.tmp" && mv "$f.tmp" "$f"
done
say "memory: deleting the $MEM_FILES-file tree"
rm -rf "$MEM_DIR"

# ---- 1b. the subset: haul, aws, rclone --------------------------------------
T=$WORK/tree-$SMALL_LABEL
say "$SMALL_LABEL: generating the $SUBSET-file tree"
python3 bench/gen-tree.py "$T" --files "$SUBSET" --large "$LARGE" --large-size "$LARGE_SIZE" --seed 1 >/dev/null
py stats "$T" "$WORK/stats-$SMALL_LABEL.json"
HS=("${HB[@]}" --state-dir "$WORK/state-$SMALL_LABEL" "$T" "s3://b-haul-$SMALL_LABEL/tree")
AWS=(aws s3 sync "$T" "s3://b-aws-$SMALL_LABEL/tree" --endpoint-url "$ENDPOINT" --only-show-errors --no-follow-symlinks)
RC=("${RCLONE[@]}" sync "$T" "X:b-rclone-$SMALL_LABEL/tree" --transfers 16 --checkers 16)
say "$SMALL_LABEL: full backups"
m "$SMALL_LABEL" haul full -- "${HS[@]}"
m "$SMALL_LABEL" aws full -- "${AWS[@]}"
m "$SMALL_LABEL" rclone full -- "${RC[@]}"
say "$SMALL_LABEL: haul diff after the full backup"
m "$SMALL_LABEL" haul diff-full -- "$HAUL" diff --state-dir "$WORK/state-diff" "$T" "s3://b-haul-$SMALL_LABEL/tree"
for tool in haul aws rclone; do
    "$HAUL" ls -r --json "s3://b-$tool-$SMALL_LABEL/tree" >"$WORK/list-$tool.jsonl"
    echo "{\"objects\": $(py count "$WORK/list-$tool.jsonl")}" >"$WORK/count-$SMALL_LABEL-$tool.json"
done
say "$SMALL_LABEL: no-change incrementals"
m "$SMALL_LABEL" haul noop -- "${HS[@]}"
m "$SMALL_LABEL" aws noop -- "${AWS[@]}"
m "$SMALL_LABEL" rclone noop -- "${RC[@]}"
m "$SMALL_LABEL" rclone-tuned noop -- "${RC[@]}" "${TUNED[@]}"
say "$SMALL_LABEL: 1% changed"
py modify "$T" 100 0 "$WORK/change-$SMALL_LABEL-1.json"
m "$SMALL_LABEL" haul 1pct -- "${HS[@]}"
m "$SMALL_LABEL" aws 1pct -- "${AWS[@]}"
m "$SMALL_LABEL" rclone 1pct -- "${RC[@]}"
py modify "$T" 100 50 "$WORK/change-$SMALL_LABEL-2.json"
m "$SMALL_LABEL" rclone-tuned 1pct-b -- "${RC[@]}" "${TUNED[@]}"
m "$SMALL_LABEL" haul 1pct-b -- "${HS[@]}"
say "$SMALL_LABEL: haul diff after the incrementals"
m "$SMALL_LABEL" haul diff-1pct -- "$HAUL" diff --state-dir "$WORK/state-diff" "$T" "s3://b-haul-$SMALL_LABEL/tree"
rm -rf "$T" "$WORK/list-"*

# ---- 1a. the big tree: haul ---------------------------------------------------
T=$WORK/tree-$BIG_LABEL
say "$BIG_LABEL: generating the $FILES-file tree"
python3 bench/gen-tree.py "$T" --files "$FILES" --large "$LARGE" --large-size "$LARGE_SIZE" --seed 1 >/dev/null
py stats "$T" "$WORK/stats-$BIG_LABEL.json"
HL=("${HB[@]}" --state-dir "$WORK/state-$BIG_LABEL" "$T" "s3://b-haul-$BIG_LABEL/tree")
say "$BIG_LABEL: haul full, no-change, 1% changed"
m "$BIG_LABEL" haul full -- "${HL[@]}"
m "$BIG_LABEL" haul noop -- "${HL[@]}"
py modify "$T" 100 0 "$WORK/change-$BIG_LABEL-1.json"
m "$BIG_LABEL" haul 1pct -- "${HL[@]}"
say "$BIG_LABEL: checking the bucket against the tree"
m "$BIG_LABEL" haul list -- "$HAUL" ls -r --json "s3://b-haul-$BIG_LABEL/tree"
py listcheck "$T" tree "$WORK/logs/$BIG_LABEL-haul-list.out" "$WORK/listcheck-$BIG_LABEL.json"
rm -f "$WORK/logs/$BIG_LABEL-haul-list.out"
if [ "$DIFF_FULL" = 1 ]; then
    m "$BIG_LABEL" haul diff-1pct -- "$HAUL" diff --state-dir "$WORK/state-diff" "$T" "s3://b-haul-$BIG_LABEL/tree"
fi

# ---- the report ---------------------------------------------------------------
commas() { python3 -c 'import sys; print(f"{int(sys.argv[1]):,}")' "$1"; }
proj() { # minutes a peer would need for the big tree at its subset full-backup rate
    python3 -c 'import json,sys
t=json.load(open(sys.argv[2])); b=json.load(open(sys.argv[3]))
for l in open(sys.argv[1]):
    r=json.loads(l)
    if r["tool"]==sys.argv[4] and r["case"]=="full" and r["tree"]==sys.argv[5]:
        print("%.0f" % (r["wall_s"]*b["files"]/t["files"]/60))' \
        "$RUNS" "$WORK/stats-$SMALL_LABEL.json" "$WORK/stats-$BIG_LABEL.json" "$1" "$SMALL_LABEL"
}
META=$(python3 -c 'import json,sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
    date "$(date '+%Y-%m-%d %H:%M %Z')" \
    command "bench/backup.sh" \
    commit "$(git rev-parse --short HEAD)" \
    dirty "$([ -n "$(git status --porcelain -- src include Makefile)" ] && echo ', with uncommitted changes in src/' || true)" \
    mem_gib "$(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo)" \
    fs "ext4 /tmp" \
    endpoint "$ENDPOINT" port "$HAUL_S3_PORT" \
    rgw_version "$(radosgw --version 2>/dev/null | awk '{print $3}')" \
    aws_version "$(aws --version 2>&1 | awk '{print $1, $2}')" \
    rclone_version "$(rclone version 2>/dev/null | head -n 1)" \
    large "$LARGE" large_size "$LARGE_SIZE" \
    small "$SMALL_LABEL" big "$BIG_LABEL" \
    small_files "$(commas "$SUBSET")" big_files "$(commas "$FILES")" \
    mem_files "$(commas "$MEM_FILES")" mem_small_files "$(commas "$MEM_SMALL")" \
    mem_where "tmpfs $MEM_DIR" mem_size "$MEM_SIZE" \
    aws_proj "$(proj aws)" rclone_proj "$(proj rclone)")
py report "$WORK" "$OUT" "$META"
say "done in $(((SECONDS - START_S) / 60)) min $(((SECONDS - START_S) % 60)) s; results in $OUT"
cat "$OUT"
