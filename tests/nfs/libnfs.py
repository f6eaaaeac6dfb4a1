"""A small ctypes client over libnfs (Debian: libnfs13): a userspace NFSv4 client, so the
tests can talk to NFS-Ganesha on a kernel without an NFS client.  One ``Client`` is one
NFSv4 client (its own TCP connection, client id and lock owner), like one worker node.

Only what the gridmapdir uses is wrapped.  libnfs's own caches (directory cache, page
cache) are switched off: every call is one round trip to the server, so what these tests
see is the server's semantics, not a client cache's."""
import ctypes
import ctypes.util
import errno
import os
import stat

NFS_V4 = 4
F_SETLK, F_SETLKW = 0, 1            # enum nfs4_fcntl_op
F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2  # struct flock's l_type (Linux values)
WHOLE_FILE = 2**64 - 1              # NFSv4 LOCK length "to the end" (0 is NFS4ERR_INVAL)


class _Stat(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "dev", "ino", "mode", "nlink", "uid", "gid", "rdev", "size", "blksize", "blocks",
        "atime", "mtime", "ctime", "atime_nsec", "mtime_nsec", "ctime_nsec", "used")]


class _Url(ctypes.Structure):
    _fields_ = [("server", ctypes.c_char_p), ("path", ctypes.c_char_p),
                ("file", ctypes.c_char_p)]


class _Flock(ctypes.Structure):
    _fields_ = [("l_type", ctypes.c_int), ("l_whence", ctypes.c_int),
                ("l_pid", ctypes.c_uint32), ("l_start", ctypes.c_uint64),
                ("l_len", ctypes.c_uint64)]


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Dirent(ctypes.Structure):
    pass


_Dirent._fields_ = [("next", ctypes.POINTER(_Dirent)), ("name", ctypes.c_char_p),
                    ("inode", ctypes.c_uint64)]


class StatResult:
    """The fields the gridmapdir reads, named like ``os.stat_result``'s."""

    def __init__(self, s):
        self.st_ino, self.st_mode, self.st_nlink = s.ino, s.mode, s.nlink
        self.st_uid, self.st_gid, self.st_size = s.uid, s.gid, s.size
        self.st_mtime_ns = s.mtime * 10**9 + s.mtime_nsec
        self.st_ctime_ns = s.ctime * 10**9 + s.ctime_nsec

    def is_reg(self):
        return stat.S_ISREG(self.st_mode)


_lib = None


def load():
    """The libnfs shared library, or None if it is not installed."""
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("nfs")
        if name is None:
            return None
        lib = ctypes.CDLL(name)
        P, I, S, U64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint64
        for fn, res, args in (
                ("nfs_init_context", P, []), ("nfs_destroy_context", None, [P]),
                ("nfs_get_error", S, [P]), ("nfs_set_version", I, [P, I]),
                ("nfs4_set_client_name", None, [P, S]), ("nfs_set_timeout", None, [P, I]),
                ("nfs_set_autoreconnect", None, [P, I]), ("nfs_set_dircache", None, [P, I]),
                ("nfs_set_pagecache", None, [P, ctypes.c_uint32]),
                ("nfs_set_uid", None, [P, I]), ("nfs_set_gid", None, [P, I]),
                ("nfs_parse_url_dir", ctypes.POINTER(_Url), [P, S]),
                ("nfs_destroy_url", None, [ctypes.POINTER(_Url)]),
                ("nfs_mount", I, [P, S, S]), ("nfs_umount", I, [P]),
                ("nfs_lstat64", I, [P, S, ctypes.POINTER(_Stat)]),
                ("nfs_fstat64", I, [P, P, ctypes.POINTER(_Stat)]),
                ("nfs_link", I, [P, S, S]), ("nfs_unlink", I, [P, S]),
                ("nfs_rename", I, [P, S, S]), ("nfs_mkdir2", I, [P, S, I]),
                ("nfs_symlink", I, [P, S, S]), ("nfs_chmod", I, [P, S, I]),
                ("nfs_create", I, [P, S, I, I, ctypes.POINTER(P)]),
                ("nfs_open2", I, [P, S, I, I, ctypes.POINTER(P)]),
                ("nfs_close", I, [P, P]), ("nfs_fsync", I, [P, P]),
                ("nfs_pwrite", I, [P, P, U64, U64, ctypes.c_char_p]),
                ("nfs_pread", I, [P, P, U64, U64, ctypes.c_char_p]),
                ("nfs_ftruncate", I, [P, P, U64]),
                ("nfs_lutimes", I, [P, S, ctypes.POINTER(_Timeval)]),
                ("nfs_fcntl", I, [P, P, I, ctypes.POINTER(_Flock)]),
                ("nfs_opendir", I, [P, S, ctypes.POINTER(P)]),
                ("nfs_readdir", ctypes.POINTER(_Dirent), [P, P]),
                ("nfs_closedir", None, [P, P])):
            f = getattr(lib, fn)
            f.restype, f.argtypes = res, args
        _lib = lib
    return _lib


def _b(x):
    return os.fsencode(x) if isinstance(x, str) else x


class Client:
    """One NFS client mounted on ``nfs://host/export`` without a portmapper: NFSv4 on
    ``port``, or NFSv3 on ``port`` with MOUNT on ``mountport``."""

    def __init__(self, host, port, export, name, version=4, mountport=None, timeout_ms=10000):
        lib = self.lib = load()
        if lib is None:
            raise OSError(errno.ENOENT, "libnfs (libnfs13) is not installed")
        self.ctx = lib.nfs_init_context()
        if not self.ctx:
            raise OSError(errno.ENOMEM, "nfs_init_context")
        lib.nfs4_set_client_name(self.ctx, _b(name))
        lib.nfs_set_timeout(self.ctx, timeout_ms)
        lib.nfs_set_autoreconnect(self.ctx, 0)
        lib.nfs_set_dircache(self.ctx, 0)
        lib.nfs_set_pagecache(self.ctx, 0)
        lib.nfs_set_uid(self.ctx, 0)
        lib.nfs_set_gid(self.ctx, 0)
        args = (b"version=4&nfsport=%d" % port if version == 4
                else b"version=3&nfsport=%d&mountport=%d" % (port, mountport))
        url = lib.nfs_parse_url_dir(self.ctx, b"nfs://%s%s?%s" % (_b(host), _b(export), args))
        if not url:
            self._fail(-errno.EINVAL, "parse url")
        try:
            self._check(lib.nfs_mount(self.ctx, url.contents.server, url.contents.path),
                        "mount")
        finally:
            lib.nfs_destroy_url(url)

    @classmethod
    def connect(cls, target, name):
        """``target``: "VERSION,PORT,MOUNTPORT,EXPORT" (``ganesha.Server.target``)."""
        version, port, mountport, export = target.split(",", 3)
        return cls("127.0.0.1", int(port), export, name, int(version), int(mountport))

    def _fail(self, rc, what):
        msg = (self.lib.nfs_get_error(self.ctx) or b"").decode(errors="replace")
        raise OSError(-rc, f"{what}: {msg or os.strerror(-rc)}")

    def _check(self, rc, what):
        if rc < 0:
            self._fail(rc, what)
        return rc

    def close(self):
        if self.ctx:
            self.lib.nfs_umount(self.ctx)
            self.lib.nfs_destroy_context(self.ctx)
            self.ctx = None

    # --- names ---------------------------------------------------------------------------
    def lstat(self, path):
        s = _Stat()
        self._check(self.lib.nfs_lstat64(self.ctx, _b(path), ctypes.byref(s)), "lstat")
        return StatResult(s)

    def lstat_or_none(self, path):
        try:
            return self.lstat(path)
        except FileNotFoundError:
            return None

    def link(self, src, dst):
        self._check(self.lib.nfs_link(self.ctx, _b(src), _b(dst)), "link")

    def unlink(self, path):
        self._check(self.lib.nfs_unlink(self.ctx, _b(path)), "unlink")

    def rename(self, src, dst):
        self._check(self.lib.nfs_rename(self.ctx, _b(src), _b(dst)), "rename")

    def mkdir(self, path, mode):
        self._check(self.lib.nfs_mkdir2(self.ctx, _b(path), mode), "mkdir")

    def symlink(self, target, path):
        self._check(self.lib.nfs_symlink(self.ctx, _b(target), _b(path)), "symlink")

    def utime(self, path, mtime_us):
        """atime = mtime = ``mtime_us`` microseconds (libnfs takes a timeval).  Not "now"
        (SET_TO_SERVER_TIME, what ``os.utime(path)`` asks for): libnfs 4.0.0 crashes on
        NULL times over NFSv4."""
        tv = _Timeval(mtime_us // 10**6, mtime_us % 10**6)
        self._check(self.lib.nfs_lutimes(self.ctx, _b(path), (_Timeval * 2)(tv, tv)), "utime")

    def chmod(self, path, mode):
        self._check(self.lib.nfs_chmod(self.ctx, _b(path), mode), "chmod")

    def listdir(self, path):
        """``[(name, d_ino)]`` in the server's readdir order.  ``d_ino`` is the fileid over
        NFSv3 (READDIRPLUS); over NFSv4 libnfs 4.0.0 leaves it meaningless."""
        d = ctypes.c_void_p()
        self._check(self.lib.nfs_opendir(self.ctx, _b(path), ctypes.byref(d)), "opendir")
        out = []
        try:
            while True:
                e = self.lib.nfs_readdir(self.ctx, d)
                if not e:
                    return out
                out.append((e.contents.name.decode(), e.contents.inode))
        finally:
            self.lib.nfs_closedir(self.ctx, d)

    # --- open files ----------------------------------------------------------------------
    def create(self, path, flags, mode):
        fh = ctypes.c_void_p()
        self._check(self.lib.nfs_create(self.ctx, _b(path), flags, mode, ctypes.byref(fh)),
                    "create")
        return fh

    def open(self, path, flags):
        fh = ctypes.c_void_p()
        self._check(self.lib.nfs_open2(self.ctx, _b(path), flags, 0, ctypes.byref(fh)), "open")
        return fh

    def close_fh(self, fh):
        self._check(self.lib.nfs_close(self.ctx, fh), "close")

    def fstat(self, fh):
        s = _Stat()
        self._check(self.lib.nfs_fstat64(self.ctx, fh, ctypes.byref(s)), "fstat")
        return StatResult(s)

    def pwrite(self, fh, data, offset):
        return self._check(self.lib.nfs_pwrite(self.ctx, fh, offset, len(data), data), "pwrite")

    def pread(self, fh, count, offset):
        buf = ctypes.create_string_buffer(count)
        n = self._check(self.lib.nfs_pread(self.ctx, fh, offset, count, buf), "pread")
        return buf.raw[:n]

    def ftruncate(self, fh, length):
        self._check(self.lib.nfs_ftruncate(self.ctx, fh, length), "ftruncate")

    def fsync(self, fh):
        self._check(self.lib.nfs_fsync(self.ctx, fh), "fsync")

    def lock(self, fh, kind=F_WRLCK, wait=False):
        """A whole-file byte-range lock (what ``fcntl.lockf(fd, LOCK_EX)`` takes):
        NFSv4 LOCK/LOCKU.  Not granted without ``wait``: ``BlockingIOError``/``PermissionError``
        as with ``F_SETLK``."""
        fl = _Flock(kind, os.SEEK_SET, os.getpid(), 0, WHOLE_FILE)
        self._check(self.lib.nfs_fcntl(self.ctx, fh, F_SETLKW if wait else F_SETLK,
                                       ctypes.byref(fl)), "lock")
