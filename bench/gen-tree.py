#!/usr/bin/env python3
"""gen-tree.py: makes a realistic research-filesystem tree for tests and
benchmarks: many small files (a few KiB, log-normal sizes) in deep project
directories, a few large files, unicode names, symlinks (to files, to
directories, dangling), empty directories, hard links and a sparse file.

usage: gen-tree.py DIR --files N [--large K] [--large-size BYTES] [--seed S]

The content is pseudo-random from the seed, so two runs with the same
arguments make the same tree (byte for byte, names and sizes), and it is
incompressible.  Prints a one-line JSON summary (files, bytes, dirs)."""
import argparse
import json
import os
import random


def small_size(rng):
    # Most research small files are a few KiB; a long tail up to ~1 MiB.
    return min(int(rng.lognormvariate(8.3, 1.2)), 1 << 20)


def write_file(path, size, rng):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(rng.randbytes(n))
            left -= n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--large", type=int, default=2)
    ap.add_argument("--large-size", type=int, default=64 << 20)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    root = a.dir
    os.makedirs(root, exist_ok=True)
    names = ["run", "sample", "données", "測定", "scan", "plate", "séquence", "ΔT"]
    files = dirs = total = 0
    per_dir = 50
    made = []
    for i in range(a.files):
        if i % per_dir == 0:
            depth = rng.randint(1, 5)
            parts = ["project-%02d" % rng.randint(0, 19)] + [
                "%s-%03d" % (rng.choice(names), rng.randint(0, 999)) for _ in range(depth)]
            d = os.path.join(root, *parts)
            os.makedirs(d, exist_ok=True)
            dirs += 1
        size = small_size(rng)
        p = os.path.join(d, "%s_%06d.dat" % (rng.choice(names), i))
        write_file(p, size, rng)
        made.append(p)
        files += 1
        total += size
    big = os.path.join(root, "large")
    os.makedirs(big, exist_ok=True)
    for i in range(a.large):
        p = os.path.join(big, "volume-%d.raw" % i)
        write_file(p, a.large_size, rng)
        files += 1
        total += a.large_size
    # The awkward kinds of entry every backup must handle.
    extra = os.path.join(root, "special")
    os.makedirs(os.path.join(extra, "empty-dir", "nested-empty"), exist_ok=True)
    with open(os.path.join(extra, "target.txt"), "w") as f:
        f.write("symlink target\n")
    os.symlink("target.txt", os.path.join(extra, "link-to-file"))
    os.symlink("../large", os.path.join(extra, "link-to-dir"))
    os.symlink("does-not-exist", os.path.join(extra, "dangling"))
    os.link(os.path.join(extra, "target.txt"), os.path.join(extra, "hardlink.txt"))
    with open(os.path.join(extra, "sparse.img"), "wb") as f:
        f.seek(32 << 20)
        f.write(b"end")
    with open(os.path.join(extra, "name with spaces & ünïcødé ☃.txt"), "w") as f:
        f.write("x\n")
    os.chmod(os.path.join(extra, "target.txt"), 0o640)
    print(json.dumps({"files": files, "bytes": total, "dirs": dirs}))


if __name__ == "__main__":
    main()
