#!/usr/bin/env python3
"""slowfs.py MOUNTPOINT DELAY: a FUSE filesystem holding two files, "fast"
(answers at once) and "slow", whose getattr (hence every lookup) and open
sleep DELAY seconds (at most 30): a FUSE server that hangs, as a hostile
user's own mount or a stuck network filesystem would.  Used by
t_hostile_daemon2.sh (audit M8: the daemon's event loop must never wait on
a client's file).  Runs in the foreground until unmounted."""
import errno
import stat
import sys
import time

try:
    from fusepy import FUSE, FuseOSError, Operations
except ImportError:
    from fuse import FUSE, FuseOSError, Operations

T0 = time.time()  # one mtime for good: an uploader checks that the source did not change
DATA = {"/fast": b"fast file on FUSE\n" * 100, "/slow": b"slow file on FUSE\n" * 100}


class Slow(Operations):
    def __init__(self, delay):
        self.delay = min(delay, 30.0)  # bounded: a test double, not a trap

    def _stall(self, path):
        if path == "/slow":
            print("stall %s" % path, file=sys.stderr, flush=True)  # tests wait for this line
            time.sleep(self.delay)

    def getattr(self, path, fh=None):
        now = T0
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, "st_atime": now, "st_mtime": now,
                    "st_ctime": now}
        if path not in DATA:
            raise FuseOSError(errno.ENOENT)
        self._stall(path)
        return {"st_mode": stat.S_IFREG | 0o644, "st_nlink": 1, "st_size": len(DATA[path]), "st_atime": now,
                "st_mtime": now, "st_ctime": now}

    def readdir(self, path, fh):
        return [".", ".."] + [p[1:] for p in DATA]

    def open(self, path, flags):
        self._stall(path)
        return 0

    def read(self, path, size, offset, fh):
        return DATA[path][offset:offset + size]

    def statfs(self, path):
        return {"f_bsize": 4096, "f_blocks": 100, "f_bavail": 50, "f_bfree": 50, "f_namemax": 255}


if __name__ == "__main__":
    FUSE(Slow(float(sys.argv[2])), sys.argv[1], foreground=True, nothreads=False)
