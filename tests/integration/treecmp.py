#!/usr/bin/env python3
"""treecmp.py A B [--no-atime] [--sparse]: are two trees identical?

Compares every entry by relative path: type, mode, uid, gid, mtime (ns) for
files, directories (the roots included) and others; bytes of regular files;
symlink targets; device numbers; extended attributes; the hard-link
structure (which paths share an inode).  With --sparse, a file whose source
is sparse must be no less sparse on B.  Prints each difference and exits 1
when there is one, else prints "identical: N entries" and exits 0.
Written for the tests; independent of haul's code.
"""
import hashlib
import os
import stat
import sys


def entries(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        out["" if rel == "." else rel] = os.lstat(dirpath)
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode) and not os.path.islink(p):
                continue  # reported when walked
            out[os.path.relpath(p, root)] = st
    return out


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def xattrs(path):
    try:
        return {n: os.getxattr(path, n, follow_symlinks=False) for n in os.listxattr(path, follow_symlinks=False)}
    except OSError:
        return {}


def links(tree, root):
    groups = {}
    for rel, st in tree.items():
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            groups.setdefault((st.st_dev, st.st_ino), set()).add(rel)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def main():
    a, b = sys.argv[1], sys.argv[2]
    sparse = "--sparse" in sys.argv
    ta, tb = entries(a), entries(b)
    diffs = []
    for rel in sorted(set(ta) | set(tb)):
        if rel not in tb:
            diffs.append(f"only in {a}: {rel}")
            continue
        if rel not in ta:
            diffs.append(f"only in {b}: {rel}")
            continue
        sa, sb = ta[rel], tb[rel]
        pa, pb = os.path.join(a, rel), os.path.join(b, rel)
        if stat.S_IFMT(sa.st_mode) != stat.S_IFMT(sb.st_mode):
            diffs.append(f"type differs: {rel}")
            continue
        if not stat.S_ISLNK(sa.st_mode) and sa.st_mode != sb.st_mode:
            diffs.append(f"mode differs: {rel}: {oct(sa.st_mode)} vs {oct(sb.st_mode)}")
        if (sa.st_uid, sa.st_gid) != (sb.st_uid, sb.st_gid):
            diffs.append(f"owner differs: {rel}")
        if sa.st_mtime_ns != sb.st_mtime_ns:
            diffs.append(f"mtime differs: {rel}: {sa.st_mtime_ns} vs {sb.st_mtime_ns}")
        if stat.S_ISREG(sa.st_mode):
            if sa.st_size != sb.st_size or digest(pa) != digest(pb):
                diffs.append(f"content differs: {rel}")
            if sparse and sa.st_blocks * 512 < sa.st_size and sb.st_blocks > sa.st_blocks + 64:
                diffs.append(f"not sparse: {rel}: {sb.st_blocks} blocks vs {sa.st_blocks}")
        elif stat.S_ISLNK(sa.st_mode):
            if os.readlink(pa) != os.readlink(pb):
                diffs.append(f"symlink target differs: {rel}")
        elif stat.S_ISCHR(sa.st_mode) or stat.S_ISBLK(sa.st_mode):
            if sa.st_rdev != sb.st_rdev:
                diffs.append(f"device differs: {rel}")
        if not stat.S_ISLNK(sa.st_mode) and xattrs(pa) != xattrs(pb):
            diffs.append(f"xattrs differ: {rel}")
    if links(ta, a) != links(tb, b):
        diffs.append(f"hard links differ: {links(ta, a)} vs {links(tb, b)}")
    for d in diffs:
        print(d)
    if diffs:
        return 1
    print(f"identical: {len(ta)} entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
