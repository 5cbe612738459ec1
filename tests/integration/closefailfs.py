#!/usr/bin/env python3
"""closefailfs.py BACKING MOUNTPOINT LIMIT: a FUSE passthrough of BACKING
that behaves like an NFS export over quota: writes succeed, but closing (or
syncing) a file that grew beyond LIMIT bytes fails with EDQUOT and the bytes
past LIMIT are lost, as a write-back refused by the server would lose them.
Used by t_hostile_fs.sh (audit M7: clone must check close() before a file
gets its name).  Runs in the foreground until unmounted."""
import errno
import os
import sys

try:
    from fusepy import FUSE, FuseOSError, Operations
except ImportError:
    from fuse import FUSE, FuseOSError, Operations


class CloseFail(Operations):
    def __init__(self, root, limit):
        self.root = root
        self.limit = limit

    def _p(self, path):
        return os.path.join(self.root, path.lstrip('/'))

    # metadata
    def getattr(self, path, fh=None):
        st = os.lstat(self._p(path)) if fh is None else os.fstat(fh)
        attrs = {k: getattr(st, k) for k in ('st_mode', 'st_nlink', 'st_uid', 'st_gid', 'st_size')}
        for k in ('st_atime', 'st_mtime', 'st_ctime'):
            attrs[k] = getattr(st, k + '_ns') / 1e9
        return attrs

    def access(self, path, mode):
        if not os.access(self._p(path), mode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        os.chmod(self._p(path), mode)

    def chown(self, path, uid, gid):
        os.lchown(self._p(path), uid, gid)

    def utimens(self, path, times=None):
        os.utime(self._p(path), times, follow_symlinks=False)

    def statfs(self, path):
        sv = os.statvfs(self._p(path))
        return {k: getattr(sv, k) for k in ('f_bavail', 'f_bfree', 'f_blocks', 'f_bsize', 'f_favail',
                                            'f_ffree', 'f_files', 'f_flag', 'f_frsize', 'f_namemax')}

    # names
    def readdir(self, path, fh):
        return ['.', '..'] + os.listdir(self._p(path))

    def readlink(self, path):
        return os.readlink(self._p(path))

    def mkdir(self, path, mode):
        os.mkdir(self._p(path), mode)

    def rmdir(self, path):
        os.rmdir(self._p(path))

    def unlink(self, path):
        os.unlink(self._p(path))

    def rename(self, old, new):
        os.rename(self._p(old), self._p(new))

    def link(self, target, source):
        os.link(self._p(source), self._p(target))

    def symlink(self, target, source):
        os.symlink(source, self._p(target))

    def mknod(self, path, mode, dev):
        os.mknod(self._p(path), mode, dev)

    # data
    def create(self, path, mode, fi=None):
        return os.open(self._p(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)

    def open(self, path, flags):
        return os.open(self._p(path), flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC))

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        if fh is None:
            os.truncate(self._p(path), length)
        else:
            os.ftruncate(fh, length)

    def _writeback(self, fh):
        if os.fstat(fh).st_size > self.limit:
            os.ftruncate(fh, self.limit)  # what the server never stored
            raise FuseOSError(errno.EDQUOT)

    def flush(self, path, fh):
        self._writeback(fh)

    def fsync(self, path, datasync, fh):
        self._writeback(fh)

    def release(self, path, fh):
        os.close(fh)


if __name__ == '__main__':
    FUSE(CloseFail(sys.argv[1], int(sys.argv[3])), sys.argv[2], foreground=True, nothreads=True,
         allow_other=True, use_ino=True)
