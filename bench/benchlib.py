#!/usr/bin/env python3
"""bench/benchlib.py: checks and the report of bench/streaming.sh.

Subcommands (all print a reason and exit 1 on a failed check):
  etag FILE ETAG SIZE CACHE
      FILE's bytes give the S3 ETag ETAG: "MD5" for one PUT, "MD5-N" for N
      multipart parts, MD5 of the parts' MD5s.  The part size is found from N
      (whole MiB, and N parts of it must hold FILE); SIZE is the object size the
      server reported.  Digests are cached in the JSON file CACHE.
  nulllog LOG KEY SIZE
      The null endpoint's access log LOG shows KEY received completely: the
      PUTs of KEY it answered 2xx carry SIZE body bytes in total, a multipart
      upload was completed, and no request failed.
  record RAW MEASURE LABELS_JSON CHECK
      Append MEASURE's JSON line (bench/measure.py), merged with LABELS_JSON and
      check = CHECK ("ok" or the failure), to the JSON lines file RAW.
  report RAW OUT_MD HEADER_MD
      Write the markdown report of RAW to OUT_MD (HEADER_MD first).
"""
import hashlib
import json
import os
import statistics
import sys

MIB = 1 << 20
GIB = 1 << 30


def fail(msg):
    print(f"check failed: {msg}", file=sys.stderr)
    sys.exit(1)


# ---- checks -------------------------------------------------------------------


def file_md5s(path, part):
    """MD5 of the whole file (part == 0) or the hex MD5 of each part."""
    out, whole = [], hashlib.md5()
    with open(path, "rb", buffering=0) as f:
        while True:
            chunk = f.read(part or 8 * MIB)
            if not chunk:
                break
            if part:
                out.append(hashlib.md5(chunk).hexdigest())
            else:
                whole.update(chunk)
    return out if part else whole.hexdigest()


def cached(cache, path, part):
    st = os.stat(path)
    k = f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}:{part}"
    try:
        with open(cache) as f:
            db = json.load(f)
    except (OSError, ValueError):
        db = {}
    if k not in db:
        db[k] = file_md5s(path, part)
        tmp = cache + ".tmp"
        with open(tmp, "w") as f:
            json.dump(db, f)
        os.replace(tmp, cache)
    return db[k]


def cmd_etag(path, etag, size, cache):
    etag = etag.strip().strip('"')
    size = int(size)
    real = os.path.getsize(path)
    if size != real:
        fail(f"the object has {size} bytes, the source {real}")
    if "-" not in etag:
        want = cached(cache, path, 0)
        if etag != want:
            fail(f"ETag {etag}, the source's MD5 is {want}")
        return
    hexpart, n = etag.split("-", 1)
    n = int(n)
    parts = [p for p in range(1, 5 * 1024 + 1) if -(-size // (p * MIB)) == n]
    if not parts:
        fail(f"no whole-MiB part size makes {n} parts of {size} bytes")
    for p in parts[:4]:  # ambiguous only for tiny objects
        md5s = cached(cache, path, p * MIB)
        want = hashlib.md5(b"".join(bytes.fromhex(m) for m in md5s)).hexdigest()
        if want == hexpart:
            print(f"ETag {etag} matches the source in {n} parts of {p} MiB")
            return
    fail(f"ETag {etag} does not match the source in {n} parts of {parts[:4]} MiB")


def cmd_nulllog(log, key, size):
    size = int(size)
    path = "/.s3op/" + key
    body = 0
    parts = completes = 0
    bad = []
    with open(log) as f:
        for line in f:
            # $msec $request_method "$uri" "$args" $status $content_length ...
            fields = line.split()
            if len(fields) < 6:
                continue
            method, uri, args, status, clen = fields[1], fields[2].strip('"'), fields[3].strip('"'), fields[4], fields[5]
            if not status.startswith("2"):
                if not (method == "HEAD" and status == "404"):
                    bad.append(line.strip())
                continue
            if uri != path:
                continue
            if method == "PUT":
                body += int(clen) if clen.isdigit() else 0
                if "partNumber=" in args:
                    parts += 1
            elif method == "POST" and "uploadId=" in args:
                completes += 1
    if bad:
        fail(f"failed requests in {log}: {bad[:3]}")
    if body != size:
        fail(f"the null endpoint received {body} body bytes for {key}, {size} expected")
    if parts and completes != 1:
        fail(f"{parts} parts of {key} but {completes} CompleteMultipartUpload")
    print(f"null endpoint received all {body} bytes of {key} ({parts} parts)")


def cmd_record(raw, measure, labels, check):
    with open(measure) as f:
        rec = json.loads(f.read().strip().splitlines()[-1])
    rec.update(json.loads(labels))
    rec["check"] = check
    with open(raw, "a") as f:
        f.write(json.dumps(rec) + "\n")
    wall = max(rec["wall_s"], 1e-9)
    print(
        f"{rec['server']:<5} {rec['tool']:<17} {rec['op']:<9} run {rec['rep']}: {rec['wall_s']:.2f} s, "
        f"{rec['bytes'] / wall / 1e6:.0f} MB/s, client cpu {rec['user_s'] + rec['sys_s']:.1f} s, "
        f"rss {rec['maxrss_kib'] // 1024} MiB, server cpu {rec['server_cpu_s']:.1f} s, "
        f"machine busy {rec['machine_busy_s']:.1f} s [{check}]"
    )


# ---- report ------------------------------------------------------------------

OPS = {
    "put": "upload {} file",
    "get": "download {} to file",
    "stdin": "upload {} stdin",
    "put-rss": "upload file",
    "stdin-rss": "upload stdin",
}


def size_name(n):
    return f"{n / GIB:g} GiB" if n >= GIB else f"{n / MIB:g} MiB"


def op_name(op, tool, nbytes):
    if op == "get" and tool.startswith("curl"):
        return f"download {size_name(nbytes)} to /dev/null"
    if op == "get" and tool.startswith("cp"):
        return f"copy {size_name(nbytes)} file to a new file"
    return OPS[op].format(size_name(nbytes))


def fmt(x, nd=1):
    return "—" if x is None else f"{x:.{nd}f}"


def summarize(runs):
    ok = [r for r in runs if r["check"] == "ok" and r["rc"] == 0]
    s = {"n": len(runs), "ok": len(ok), "runs": runs}
    if not ok:
        return s
    nbytes = ok[0]["bytes"]
    wall = statistics.median(r["wall_s"] for r in ok)
    cpu = statistics.median(r["user_s"] + r["sys_s"] for r in ok)
    srv = statistics.median(r["server_cpu_s"] for r in ok)
    other = statistics.median(
        max(0.0, r["machine_busy_s"] - r["user_s"] - r["sys_s"] - r["server_cpu_s"]) / r["wall_s"] for r in ok
    )
    s.update(
        bytes=nbytes,
        wall=wall,
        mbps=nbytes / wall / 1e6,
        cpu_gib=cpu / (nbytes / GIB),
        srv_gib=srv / (nbytes / GIB),
        rss=max(r["maxrss_kib"] for r in ok) / 1024,
        other=other,
    )
    return s


def cmd_report(raw, out, header):
    recs = []
    with open(raw) as f:
        for line in f:
            if line.strip():
                recs.append(json.loads(line))
    lines = [open(header).read().rstrip("\n"), ""]
    failed = [r for r in recs if r["check"] != "ok" or r["rc"] != 0]
    servers = []
    for r in recs:
        if r["server"] not in servers:
            servers.append(r["server"])
    titles = {
        "null": "Null S3 endpoint (nginx, discards uploads, serves downloads from page cache): the client's own ceiling",
        "rgw": "Ceph RGW 16 (bluestore, one OSD, same 2 cores): end to end",
    }
    for srv in servers:
        rows = [r for r in recs if r["server"] == srv and r["op"] in ("put", "get", "stdin")]
        if not rows:
            continue
        groups = {}
        for r in rows:
            groups.setdefault((r["op"], r["order"], r["tool"]), []).append(r)
        lines += [f"## {titles.get(srv, srv)}", ""]
        lines += [
            "| tool | operation | MB/s | ratio haul/peer | CPU-s per GiB | peak RSS MiB |",
            "|---|---|--:|--:|--:|--:|",
        ]
        detail = [
            "| tool | operation | wall s per run | checks | server CPU-s per GiB | other load (cores) |",
            "|---|---|---|---|--:|--:|",
        ]
        summ = {k: summarize(v) for k, v in groups.items()}
        for (op, order, tool), s in sorted(summ.items(), key=lambda kv: (list(OPS).index(kv[0][0]), kv[0][1])):
            base = summ.get((op, 0, "haul"))
            if tool.startswith("haul"):
                ratio = "—"
            elif base and "mbps" in base and "mbps" in s:
                ratio = f"{base['mbps'] / s['mbps']:.2f}"
            else:
                ratio = "—"
            name = op_name(op, tool, s["runs"][0]["bytes"])
            if "mbps" in s:
                lines.append(
                    f"| {tool} | {name} | {s['mbps']:.0f} | {ratio} | {s['cpu_gib']:.2f} | {s['rss']:.0f} |"
                )
            else:
                lines.append(f"| {tool} | {name} | FAILED | — | — | — |")
            walls = ", ".join(f"{r['wall_s']:.2f}" for r in s["runs"])
            checks = "all passed" if s["ok"] == s["n"] else f"{s['n'] - s['ok']} of {s['n']} FAILED"
            detail.append(
                f"| {tool} | {name} | {walls} | {checks} | {fmt(s.get('srv_gib'), 2)} | {fmt(s.get('other'), 2)} |"
            )
        lines += ["", "Per run (medians above; a run only counts if its check passed):", ""] + detail + [""]
        rss = [r for r in recs if r["server"] == srv and r["op"].endswith("-rss")]
        if rss:
            lines += [
                f"### haul's peak RSS by object size ({srv}, default settings, one run each)",
                "",
                "| operation | size | MB/s | CPU-s per GiB | peak RSS MiB | check |",
                "|---|--:|--:|--:|--:|---|",
            ]
            for r in rss:
                gib = r["bytes"] / GIB
                lines.append(
                    f"| {OPS[r['op']]} | {size_name(r['bytes'])} | {r['bytes'] / r['wall_s'] / 1e6:.0f} | "
                    f"{(r['user_s'] + r['sys_s']) / gib:.2f} | {r['maxrss_kib'] / 1024:.0f} | "
                    f"{'ok' if r['check'] == 'ok' and r['rc'] == 0 else 'FAILED'} |"
                )
            lines.append("")
    if failed:
        lines += ["## Failed runs", ""]
        for r in failed:
            lines.append(f"- {r['server']} {r['tool']} {r['op']} run {r['rep']}: rc {r['rc']}, {r['check']}")
        lines.append("")
    with open(out, "w") as f:
        f.write("\n".join(lines))
    return 1 if failed else 0


def main(argv):
    cmds = {
        "etag": (cmd_etag, 4),
        "nulllog": (cmd_nulllog, 3),
        "record": (cmd_record, 4),
        "report": (cmd_report, 3),
    }
    if not argv or argv[0] not in cmds or len(argv) - 1 != cmds[argv[0]][1]:
        sys.exit(__doc__)
    fn, _ = cmds[argv[0]]
    return fn(*argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
