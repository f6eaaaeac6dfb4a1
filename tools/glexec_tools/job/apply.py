"""The job side's effects: unpack an input sandbox into the job directory and collect the
declared outputs from it, both by file descriptor.

Runs as: the job's target account (through glexec), never as root or the pilot; nothing here
needs a privilege.  The rules are in ``plan.py``.

Every path below the job directory is resolved from the directory's fd, never through a
symlink: ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`` for a
walk, ``openat(O_NOFOLLOW)``/``O_EXCL`` for the last component.
"""
from __future__ import annotations

import errno
import os
import stat
import struct

from . import plan, tarformat
from .plan import Refused

CHUNK = 1 << 20
# Compressed input is read in small pieces so that the ratio cap sees a bomb after a few MiB.
IN_CHUNK = 64 << 10

# --- openat2 --------------------------------------------------------------------------

RESOLVE_NO_XDEV, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_BENEATH = 0x01, 0x02, 0x04, 0x08
RESOLVE_INSIDE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
_SYS_OPENAT2 = 437          # the same number on every Linux architecture (asm-generic)


_have_openat2 = True
_syscall = None      # (ctypes, libc, struct open_how): loaded on first use (an unpack of plain
                     # members never needs it; importing ctypes costs the hot path ~3 ms)


def _openat2_binding():
    global _syscall
    if _syscall is None:
        import ctypes

        class OpenHow(ctypes.Structure):
            _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        _syscall = ctypes, libc, OpenHow
    return _syscall


def openat2(dirfd: int, path: bytes, flags: int, mode: int = 0, resolve: int = RESOLVE_INSIDE) -> int:
    """Runs as: the caller.  ``openat2(2)``; falls back to a component walk with O_NOFOLLOW
    where the kernel lacks it (same guarantee: no symlink, no '..' is ever followed)."""
    global _have_openat2
    if b".." in path.split(b"/") or path.startswith(b"/"):
        raise OSError(errno.EXDEV, "path leaves the directory", path)
    if _have_openat2:
        ctypes, libc, open_how = _openat2_binding()
        how = open_how(flags | os.O_CLOEXEC, mode, resolve)
        for _ in range(16):
            fd = libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd), ctypes.c_char_p(path),
                              ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
            if fd >= 0:
                return fd
            e = ctypes.get_errno()
            if e in (errno.EAGAIN, errno.EINTR):     # EAGAIN: a rename raced the lookup
                continue
            if e == errno.ENOSYS:
                _have_openat2 = False
                break
            raise OSError(e, os.strerror(e), path)
        else:
            raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)
    parts = [p for p in path.split(b"/") if p not in (b"", b".")]
    cur = dirfd
    try:
        for p in parts[:-1]:
            nxt = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            if cur != dirfd:
                os.close(cur)
            cur = nxt
        return os.open(parts[-1] if parts else b".", flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=cur)
    finally:
        if cur != dirfd:
            os.close(cur)


def open_job_dir(path) -> int:
    """Runs as: the target.  The job directory: a real directory (not a symlink) that the
    running uid owns."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        os.close(fd)
        raise Refused("the job directory is not owned by the running account")
    return fd


# --- decompressing input --------------------------------------------------------------

class Source:
    """The raw archive bytes from an fd; counts what was consumed."""

    def __init__(self, fd: int, prefix: bytes = b""):
        self.fd, self.prefix, self.consumed = fd, prefix, len(prefix)

    def read(self, n: int) -> bytes:
        if self.prefix:
            out, self.prefix = self.prefix[:n], self.prefix[n:]
            return out
        out = os.read(self.fd, n)
        self.consumed += len(out)
        return out


class _Plain:
    def __init__(self, src, caps):
        self.src = src

    def produce(self, n):
        return self.src.read(n)


class _Zlib:
    """gzip, several members one after another allowed."""

    def __init__(self, src, caps):
        import zlib
        self.zlib, self.src, self.d, self.pending = zlib, src, zlib.decompressobj(31), b""

    def produce(self, n):
        while True:
            if self.d.eof:
                self.pending = self.d.unused_data + self.pending or self.src.read(IN_CHUNK)
                if not self.pending:
                    return b""
                self.d = self.zlib.decompressobj(31)
            data = self.d.unconsumed_tail or self.pending or self.src.read(IN_CHUNK)
            self.pending = b""
            if not data:
                raise Refused("truncated compressed archive")
            try:
                out = self.d.decompress(data, n)
            except self.zlib.error as e:
                raise Refused(f"corrupt gzip data ({e})") from None
            if out:
                return out


class _Chunked:
    """bz2 / xz (decompressors with max_length and needs_input), several streams allowed."""

    def __init__(self, src, caps):
        self.src, self.caps = src, caps
        self.d = self.new()

    def produce(self, n):
        while True:
            if self.d.eof:
                data = self.d.unused_data or self.src.read(IN_CHUNK)
                if not data:
                    return b""
                self.d = self.new()
            elif self.d.needs_input:
                data = self.src.read(IN_CHUNK)
                if not data:
                    raise Refused("truncated compressed archive")
            else:
                data = b""
            try:
                out = self.d.decompress(data, n)
            except MemoryError:
                raise
            except Exception as e:          # only the decoder can fail here (bz2: OSError, xz: LZMAError)
                raise Refused(f"corrupt compressed data ({e})") from None
            if out:
                return out


class _Bz2(_Chunked):
    def new(self):
        import bz2
        return bz2.BZ2Decompressor()


class _Xz(_Chunked):
    def new(self):
        import lzma
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=self.caps.max_decoder_memory)


class _Zstd:
    def __init__(self, src, caps):
        try:
            import zstandard
        except ImportError:
            raise Refused("zstd archives need python3-zstandard, which is not installed") from None
        self.zstd_error = zstandard.ZstdError
        dctx = zstandard.ZstdDecompressor(max_window_size=caps.max_decoder_memory)
        self.r = dctx.stream_reader(src, read_size=IN_CHUNK, read_across_frames=True)

    def produce(self, n):
        try:
            return self.r.read(n)
        except self.zstd_error as e:
            raise Refused(f"corrupt zstd data ({e})") from None


CODECS = {"tar": _Plain, "gz": _Zlib, "bz2": _Bz2, "xz": _Xz, "zstd": _Zstd}


def sniff(head: bytes) -> str:
    if head.startswith(b"\x1f\x8b"):
        return "gz"
    if head.startswith(b"BZh"):
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    return "tar"


class Stream:
    """The decompressed archive, read forward through one buffer.  Every refill counts the
    bytes produced against the compressed bytes read (the ratio cap), so a bomb stops after
    a few MiB whatever the archive says about its members."""

    def __init__(self, src: Source, codec, caps: plan.Caps):
        self.src, self.codec, self.caps = src, codec, caps
        self.buf, self.off, self.produced, self.written = b"", 0, 0, 0
        self.view = memoryview(self.buf)

    def _fill(self) -> bool:
        b = self.codec.produce(CHUNK)
        if not b:
            return False
        self.buf = self.buf[self.off:] + b if self.off < len(self.buf) else b
        self.view = memoryview(self.buf)
        self.off = 0
        self.produced += len(b)
        plan.check_ratio(max(self.produced, self.written), self.src.consumed, self.caps)
        return True

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes (callers check ``n`` against a cap first)."""
        while len(self.buf) - self.off < n:
            if not self._fill():
                raise Refused("truncated archive")
        b = self.buf[self.off:self.off + n]
        self.off += n
        return b

    def block_or_eof(self):
        off = self.off
        if off + tarformat.BLOCK <= len(self.buf):        # buffered: the common case
            self.off = off + tarformat.BLOCK
            return self.buf[off:off + tarformat.BLOCK]
        if off == len(self.buf) and not self._fill():
            return None
        return self.read(tarformat.BLOCK)

    def skip(self, n: int) -> None:
        if self.off + n <= len(self.buf):
            self.off += n
            return
        while n:
            avail = len(self.buf) - self.off
            if not avail:
                if not self._fill():
                    raise Refused("truncated archive")
                continue
            k = min(avail, n)
            self.off += k
            n -= k

    def copy_to(self, fd: int, n: int) -> None:
        """Write the next ``n`` bytes to ``fd``: straight from the buffer, one write per
        buffered piece (a small file is one os.write, no copy)."""
        off = self.off
        if off + n <= len(self.buf):          # all buffered: every small file
            _write_all(fd, self.view[off:off + n])
            self.off = off + n
            self.written += n
            plan.check_ratio(max(self.produced, self.written), self.src.consumed, self.caps)
            return
        while n:
            avail = len(self.buf) - self.off
            if not avail:
                if not self._fill():
                    raise Refused("truncated archive")
                continue
            k = avail if avail < n else n
            _write_all(fd, self.view[self.off:self.off + k])
            self.off += k
            n -= k
            self.written += k        # as written, not as declared: the ratio compares real bytes
            plan.check_ratio(max(self.produced, self.written), self.src.consumed, self.caps)


def _write_all(fd, b):
    done = os.write(fd, b)
    if done < len(b):                  # a short write (rare on a regular file): the rest
        mv = memoryview(b)[done:]
        while mv:
            mv = mv[os.write(fd, mv):]


# --- writing into the job directory ----------------------------------------------------

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# ENOENT: something else moved a directory of the job away while we were writing into it
_CONFLICT = {errno.ENOENT, errno.EEXIST, errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.EXDEV, errno.ENOTEMPTY,
             errno.EMLINK, errno.ENAMETOOLONG, errno.EPERM}


class Tree:
    """Runs as: the target.  The job directory being written: directory fds by path (from
    the root fd, never through a symlink) and the list of what this run created, for the
    undo."""

    MAX_CACHED = 256

    def __init__(self, root_fd: int):
        self.root = root_fd
        self.fds = {(): root_fd}
        self.created = []            # (parent parts, name, is_dir) in creation order
        self.made_dirs = set()

    def dir(self, parts: tuple, mode: int = 0o755) -> int:
        fd = self.fds.get(parts)
        if fd is not None:
            return fd
        parent = self.dir(parts[:-1])
        name = parts[-1]
        try:
            os.mkdir(name, mode, dir_fd=parent)
            self.created.append((parts[:-1], name, True))
            self.made_dirs.add(parts)
        except FileExistsError:
            pass
        fd = os.open(name, DIR_FLAGS, dir_fd=parent)
        if len(self.fds) > self.MAX_CACHED:
            self.drop_cache()
        self.fds[parts] = fd
        return fd

    def drop_cache(self):
        for p, fd in self.fds.items():
            if p:
                os.close(fd)
        self.fds = {(): self.root}

    def new_file(self, parts: tuple, mode: int) -> int:
        """One openat(O_CREAT|O_EXCL|O_NOFOLLOW) with the final mode (the umask is 0 during
        an unpack): no chmod, no stat."""
        where = parts[:-1]
        parent = self.fds.get(where)
        if parent is None:
            parent = self.dir(where)
        fd = os.open(parts[-1], NEW_FILE_FLAGS, mode, dir_fd=parent)
        self.created.append((where, parts[-1], False))
        return fd

    def apply(self, a: plan.Action, member_mtime=None):
        if a.kind == plan.KIND_DIR:
            existed = a.parts in self.fds or a.parts in self.made_dirs
            fd = self.dir(a.parts, a.mode)
            if existed and a.parts in self.made_dirs:
                os.fchmod(fd, a.mode)
        elif a.kind == plan.KIND_SYMLINK:
            os.symlink(a.link, a.parts[-1], dir_fd=self.dir(a.parts[:-1]))
            self.created.append((a.parts[:-1], a.parts[-1], False))
        elif a.kind == plan.KIND_HARDLINK:
            dst_dir = self.dir(a.parts[:-1])
            # its own fd: a second self.dir() call may flush the cache
            src_dir = openat2(self.root, b"/".join(a.link_parts[:-1]) or b".", DIR_FLAGS)
            try:
                st = os.stat(a.link_parts[-1], dir_fd=src_dir, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    raise Refused(f"hardlink source {plan._show(a.link)} is no longer a regular file")
                os.link(a.link_parts[-1], a.parts[-1], src_dir_fd=src_dir, dst_dir_fd=dst_dir,
                        follow_symlinks=False)
            finally:
                os.close(src_dir)
            self.created.append((a.parts[:-1], a.parts[-1], False))

    def undo(self) -> int:
        """Remove what this run created (newest first), by fd, never following a link.
        Returns how many entries could not be removed."""
        self.drop_cache()
        left = 0
        for parent, name, is_dir in reversed(self.created):
            try:
                pfd = openat2(self.root, b"/".join(parent), DIR_FLAGS) if parent else self.root
            except OSError:
                continue              # its parent is gone (removed with it) or was swapped
            try:
                if is_dir:
                    remove_tree(pfd, name)
                else:
                    os.unlink(name, dir_fd=pfd)
            except FileNotFoundError:
                pass
            except OSError:
                left += 1
            finally:
                if pfd != self.root:
                    os.close(pfd)
        self.created.clear()
        return left


def remove_tree(parent_fd: int, name) -> None:
    """Runs as: the owner of the tree.  Remove ``name`` under ``parent_fd`` recursively by
    fd; a symlink is removed, never followed."""
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except OSError as e:
        if e.errno in (errno.ENOTDIR, errno.ELOOP):
            os.unlink(name, dir_fd=parent_fd)
            return
        raise
    try:
        os.fchmod(fd, 0o700)
        with os.scandir(fd) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for n, is_dir in entries:
            if is_dir:
                remove_tree(fd, n)
            else:
                os.unlink(n, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)


# --- unpack ----------------------------------------------------------------------------

def _unpack_tar(stream: Stream, tree: "Tree", ledger: plan.Ledger) -> None:
    caps, glob = ledger.caps, {}
    while True:
        blk = stream.block_or_eof()
        if blk is None:
            raise Refused("the archive ends without its end-of-archive block (truncated?)")
        if blk == tarformat.ZERO_BLOCK:
            return
        h = tarformat.parse_header(blk)
        if h.typeflag in tarformat.EXTENDED:
            h, records, names = _member_headers(stream, h, glob, caps)
            pax = {**glob, **dict(records)}
        else:                          # a plain member (most are): no extended headers
            records, names, pax = (), {}, dict(glob)
        _unpack_member(stream, tree, ledger, h, pax, records, names)


def _member_headers(stream, h, glob, caps):
    """The member's own header after its PAX / GNU long-name headers (all of them together
    at most caps.max_meta_bytes); returns (header, PAX records, GNU long names)."""
    records, names, meta = [], {}, 0
    while h.typeflag in tarformat.EXTENDED:
        meta += h.size
        if meta > caps.max_meta_bytes:
            raise Refused(f"member headers larger than {caps.max_meta_bytes} bytes")
        data = stream.read(h.size)
        stream.skip(-h.size % tarformat.BLOCK)
        if h.typeflag == tarformat.PAX_LOCAL:
            records += tarformat.parse_pax(data)
        elif h.typeflag == tarformat.PAX_GLOBAL:
            glob.update(tarformat.parse_pax(data))
        else:
            names[h.typeflag] = data.split(b"\0", 1)[0]
        blk = stream.block_or_eof()
        if blk is None or blk == tarformat.ZERO_BLOCK:
            raise Refused("extended tar header without a member")
        h = tarformat.parse_header(blk)
    return h, records, names


_FILE, _DIR, _SYMLINK, _HARDLINK = plan.KIND_FILE, plan.KIND_DIR, plan.KIND_SYMLINK, plan.KIND_HARDLINK
_Member = plan.Member
_PLAIN_FILE, _SPARSE, _BLOCK = tarformat.REGULAR, tarformat.GNU_SPARSE, tarformat.BLOCK   # one lookup each


def _unpack_member(stream, tree, ledger, h, pax, records, names):
    if pax or names:
        name = pax.get(b"path", names.get(tarformat.GNU_LONGNAME, h.name))
        link = pax.get(b"linkpath", names.get(tarformat.GNU_LONGLINK, h.link))
        stored = tarformat.pax_number(pax[b"size"], "size") if b"size" in pax else h.size
    else:
        name, link, stored = h.name, h.link, h.size
    t = h.typeflag
    sparse = None
    if t in _PLAIN_FILE or t == _SPARSE:
        kind = _DIR if name.endswith(b"/") and t == b"\0" and not stored else _FILE
    elif t == tarformat.DIRECTORY:
        kind = _DIR
    elif t == tarformat.SYMLINK:
        kind = _SYMLINK
    elif t == tarformat.HARDLINK:
        kind = _HARDLINK
    else:
        kind = tarformat.KIND_NAMES.get(t, f"member of type {t!r}")
    size = stored
    if kind == _FILE:
        if pax or t == _SPARSE:        # else it cannot be sparse
            sparse = _sparse_layout(stream, h, pax, records, ledger.caps)
        if sparse is not None:
            name, size = sparse[0] or name, sparse[1]
    elif stored and kind in (_DIR, _SYMLINK, _HARDLINK):
        raise Refused(f"{kind} member {plan._show(name)} carries data")
    a = ledger.admit(_Member(name, kind, h.mode, size, link))
    if a is None or a.kind != _FILE:
        if a is not None:
            tree.apply(a)
        return
    fd = tree.new_file(a.parts, a.mode)
    try:
        if sparse is None:
            stream.copy_to(fd, stored)
        else:
            stored = _write_sparse(stream, fd, sparse, stored, ledger.caps)
        mtime = h.mtime
        if 0 <= mtime < 1 << 40:
            os.utime(fd, (mtime, mtime))
    finally:
        os.close(fd)
    stream.skip(-stored % _BLOCK)


def _sparse_layout(stream, h, pax, records, caps):
    """None for a plain file; else (name or None, real size, entries or "1.0")."""
    if h.typeflag == tarformat.GNU_SPARSE and h.sparse is not None:
        entries, more, meta = list(h.sparse), h.sparse_extended, 0
        while more:
            meta += tarformat.BLOCK
            if meta > caps.max_meta_bytes:
                raise Refused("sparse map too long")
            ext, more = tarformat.sparse_extension(stream.read(tarformat.BLOCK))
            entries += ext
        return None, h.realsize, entries
    if not any(k.startswith(b"GNU.sparse.") for k in pax):
        return None
    name = pax.get(b"GNU.sparse.name")
    real = pax.get(b"GNU.sparse.realsize", pax.get(b"GNU.sparse.size"))
    if real is None:
        raise Refused("sparse member without its real size")
    real = tarformat.pax_number(real, "sparse size")
    if pax.get(b"GNU.sparse.major") == b"1" and pax.get(b"GNU.sparse.minor") == b"0":
        return name, real, "1.0"
    if b"GNU.sparse.map" in pax:                                    # 0.1
        nums = [tarformat.pax_number(v, "sparse map") for v in pax[b"GNU.sparse.map"].split(b",") if v]
    else:                                                           # 0.0
        nums = [tarformat.pax_number(v, "sparse map") for k, v in records
                if k in (b"GNU.sparse.offset", b"GNU.sparse.numbytes")]
    if len(nums) % 2:
        raise Refused("bad sparse map")
    return name, real, list(zip(nums[::2], nums[1::2]))


def _write_sparse(stream, fd, sparse, stored, caps):
    """Write the data segments at their offsets (holes stay holes); returns the bytes the
    member takes in the archive."""
    _, real, entries = sparse
    used = 0
    if entries == "1.0":
        data = b""
        while True:
            if used + tarformat.BLOCK > min(stored, caps.max_meta_bytes):
                raise Refused("bad or too long sparse map")
            data += stream.read(tarformat.BLOCK)
            used += tarformat.BLOCK
            entries, _ = tarformat.parse_sparse_map_1_0(data)
            if entries is not None:
                break
    tarformat.check_sparse_map(entries, real, stored - used)
    for off, cnt in entries:
        os.lseek(fd, off, os.SEEK_SET)
        stream.copy_to(fd, cnt)
    os.ftruncate(fd, real)
    return stored


def _zip_entries_capped(fd: int, caps: plan.Caps) -> None:
    """Refuse a zip whose central directory alone would exceed the member cap (zipfile
    reads all of it into memory before anything else)."""
    size = os.fstat(fd).st_size
    tail_len = min(size, 65535 + 22)
    tail = os.pread(fd, tail_len, size - tail_len)
    i = tail.rfind(b"PK\x05\x06")
    if i < 0 or i + 22 > len(tail):
        raise Refused("not a readable zip archive (no end of central directory)")
    entries, cd_size = struct.unpack_from("<HI", tail, i + 10)
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:
        loc = tail[i - 20:i] if i >= 20 else b""
        if not loc.startswith(b"PK\x06\x07"):
            raise Refused("zip64 archive without a zip64 locator")
        (rec_off,) = struct.unpack_from("<Q", loc, 8)
        rec = os.pread(fd, 56, rec_off)
        if not rec.startswith(b"PK\x06\x06") or len(rec) < 56:
            raise Refused("bad zip64 end of central directory")
        entries, cd_size = struct.unpack_from("<QQ", rec, 32)
    if entries > caps.max_members or cd_size > caps.max_members * (46 + caps.max_path + 1024):
        raise Refused(f"zip central directory larger than {caps.max_members} members allow")


def _unpack_zip(fd, tree, ledger, counter):
    import zipfile
    caps = ledger.caps
    _zip_entries_capped(fd, caps)
    os.lseek(fd, 0, os.SEEK_SET)
    with open(fd, "rb", closefd=False) as f:
        zf = _zip_call(zipfile.ZipFile, f)
        with zf:
            for info in zf.infolist():
                _zip_member(zf, info, tree, ledger, counter)


def _zip_member(zf, info, tree, ledger, counter):
    raw = info.orig_filename
    name = raw.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "surrogateescape")
    unix = info.external_attr >> 16
    fmt = stat.S_IFMT(unix)
    mode = stat.S_IMODE(unix) if unix else (0o755 if name.endswith(b"/") else 0o644)  # no unix attributes
    # The type in the Unix attributes decides before the name's trailing "/": a FIFO or a
    # device named "a/" is refused, not quietly made a directory.
    if fmt not in (0, stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
        kind = {stat.S_IFCHR: "device", stat.S_IFBLK: "device", stat.S_IFIFO: "FIFO",
                stat.S_IFSOCK: "socket"}.get(fmt, "member of unknown type")
    elif name.endswith(b"/") or fmt == stat.S_IFDIR:
        kind = plan.KIND_DIR
    elif fmt == stat.S_IFLNK:
        kind = plan.KIND_SYMLINK
    else:
        kind = plan.KIND_FILE
    link = b""
    counter.consumed += info.compress_size
    if kind == plan.KIND_SYMLINK:
        if info.file_size > ledger.caps.max_path:
            raise Refused("zip symlink target too long")
        link = _zip_read(zf, info, counter)
    a = ledger.admit(plan.Member(name, kind, mode, info.file_size, link))
    if a is None:
        return
    if a.kind != plan.KIND_FILE:
        tree.apply(a)
        return
    out = tree.new_file(a.parts, a.mode)
    try:
        src = _zip_call(zf.open, info)
        try:
            while True:
                b = _zip_call(src.read, CHUNK)
                if not b:
                    break
                counter.wrote(len(b))
                _write_all(out, b)
        finally:
            src.close()
    finally:
        os.close(out)


def _zip_call(fn, *args):
    """A zipfile read: any error it raises comes from the archive's bytes (a bad offset is
    an OSError from seek), so it is a refusal, not a system failure."""
    try:
        return fn(*args)
    except MemoryError:
        raise
    except Exception as e:
        raise Refused(f"corrupt zip archive ({type(e).__name__}: {str(e)[:200]})") from None


def _zip_read(zf, info, counter):
    src = _zip_call(zf.open, info)
    try:
        b = _zip_call(src.read, info.file_size + 1)
    finally:
        src.close()
    counter.wrote(len(b))
    return b


class _ZipCounter:
    def __init__(self, caps):
        self.caps, self.consumed, self.written = caps, 0, 0

    def wrote(self, n):
        self.written += n
        if self.written > self.caps.max_total_bytes:
            raise Refused(f"archive expands to more than {self.caps.max_total_bytes} bytes")
        plan.check_ratio(self.written, self.consumed, self.caps)


def unpack(root_fd: int, archive_fd: int, caps: plan.Caps = plan.Caps()) -> dict:
    """Runs as: the target.  Unpack the archive read from ``archive_fd`` into the directory
    ``root_fd``.  Returns counts; on any refusal or error what this run created is removed
    and the exception re-raised (Refused for a rule, OSError for the system)."""
    head = b""
    while len(head) < 6:                   # a pipe may hand out fewer bytes at a time
        more = os.read(archive_fd, 6 - len(head))
        if not more:
            break
        head += more
    fmt = sniff(head)
    tree, ledger = Tree(root_fd), plan.Ledger(caps)
    old_umask = os.umask(0)                # modes are set exactly (plan.file_mode/dir_mode)
    try:
        if fmt == "zip":
            if not stat.S_ISREG(os.fstat(archive_fd).st_mode):
                raise Refused("a zip archive must be a regular file (not a pipe)")
            counter = _ZipCounter(caps)
            _unpack_zip(archive_fd, tree, ledger, counter)
            written = counter.written
        else:
            stream = Stream(Source(archive_fd, head), None, caps)
            stream.codec = CODECS[fmt](stream.src, caps)
            _unpack_tar(stream, tree, ledger)
            written = stream.written
    except BaseException as e:
        left = tree.undo()
        if left and isinstance(e, Refused):
            raise Refused(f"{e}; {left} entries could not be removed") from None
        raise _as_refusal(e) from None
    finally:
        os.umask(old_umask)
        tree.drop_cache()
    return {"format": fmt, "members": ledger.members, "bytes": written}


def _as_refusal(e):
    """Archive-caused failures as Refused (one line); a system failure stays an OSError."""
    import zipfile
    if isinstance(e, Refused):
        return e
    if isinstance(e, OSError) and e.errno in _CONFLICT:
        return Refused(f"cannot create {_fname(e)}: {e.strerror}")
    if isinstance(e, (zipfile.BadZipFile, EOFError, ValueError, RuntimeError,
                      NotImplementedError)) or type(e).__name__ in ("error", "LZMAError", "ZstdError"):
        return Refused(f"corrupt archive ({type(e).__name__}: {str(e)[:200]})")
    return e


def _fname(e):
    f = e.filename
    return plan._show(f) if isinstance(f, bytes) else repr(f)[:200]


# --- collect ---------------------------------------------------------------------------

# O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused after fstat)
OUTPUT_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY


def _why(e: OSError) -> str:
    return {errno.ELOOP: "a symlink (not followed)", errno.EXDEV: "a mount point or on another file system",
            errno.ENXIO: "not a regular file or directory"}.get(e.errno, e.strerror)


class _Collection:
    def __init__(self, root_fd, max_bytes, tar):
        self.root, self.max_bytes, self.tar = root_fd, max_bytes, tar
        self.dev = os.fstat(root_fd).st_dev
        self.uid = os.geteuid()
        self.files, self.dirs, self.refused, self.missing = [], [], [], []
        self.total, self.seen = 0, set()

    def refuse(self, parts, reason):
        self.refused.append({"name": _text(parts), "reason": reason})

    def add(self, parts, fd=None):
        """Collect ``parts`` (opened here from the root unless ``fd`` is given)."""
        if parts in self.seen:
            if fd is not None:
                os.close(fd)
            return
        self.seen.add(parts)
        if fd is None:
            try:
                fd = openat2(self.root, b"/".join(parts), OUTPUT_FLAGS, resolve=RESOLVE_INSIDE | RESOLVE_NO_XDEV)
            except FileNotFoundError:
                self.missing.append(_text(parts))
                return
            except OSError as e:
                return self.refuse(parts, _why(e))
        try:
            st = os.fstat(fd)
            if st.st_dev != self.dev:
                return self.refuse(parts, "on another file system")
            if st.st_uid != self.uid:
                return self.refuse(parts, "not owned by the job's account")
            if stat.S_ISDIR(st.st_mode):
                return self._add_dir(parts, fd, st)
            if not stat.S_ISREG(st.st_mode):
                return self.refuse(parts, "not a regular file or directory")
            if st.st_nlink != 1:
                return self.refuse(parts, "has other hard links")
            if self.total + st.st_size > self.max_bytes:
                return self.refuse(parts, f"over the output size cap ({self.max_bytes} bytes)")
            self._add_file(parts, fd, st)
        finally:
            os.close(fd)

    def _add_dir(self, parts, fd, st):
        import tarfile
        ti = tarfile.TarInfo(_text(parts))
        ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, plan.dir_mode(st.st_mode), int(st.st_mtime)
        self.tar.addfile(ti)
        self.dirs.append(ti.name)
        with os.scandir(fd) as it:
            names = sorted(os.fsencode(e.name) for e in it)
        for n in names:
            try:
                child = openat2(fd, n, OUTPUT_FLAGS, resolve=RESOLVE_INSIDE | RESOLVE_NO_XDEV)
            except OSError as e:
                self.seen.add(parts + (n,))
                self.refuse(parts + (n,), _why(e))
                continue
            self.add(parts + (n,), child)

    def _add_file(self, parts, fd, st):
        import tarfile
        ti = tarfile.TarInfo(_text(parts))
        ti.size, ti.mode, ti.mtime = st.st_size, plan.file_mode(st.st_mode), int(st.st_mtime)
        reader = _HashingReader(fd, st.st_size)
        self.tar.addfile(ti, reader)
        if reader.short:
            return self.refuse(parts, "changed while it was collected (content dropped)")
        self.total += st.st_size
        self.files.append({"name": ti.name, "size": st.st_size, "sha256": reader.h.hexdigest()})


class _HashingReader:
    """Exactly ``size`` bytes from ``fd`` (zero-padded if the file shrank), hashed."""

    def __init__(self, fd, size):
        import hashlib
        self.fd, self.left, self.h, self.short = fd, size, hashlib.sha256(), False

    def read(self, n=-1):
        n = self.left if n is None or n < 0 else min(n, self.left)
        b = os.read(self.fd, n) if n else b""
        if n and not b:
            self.short = True
            b = bytes(min(n, CHUNK))
        self.left -= len(b)
        if not self.short:
            self.h.update(b)
        return b


def _text(parts) -> str:
    return "/".join(p.decode("utf-8", "surrogateescape") for p in parts)


def expand(root_fd: int, pattern_parts: tuple) -> list:
    """Runs as: the target.  The existing paths (tuples of bytes) matching a declared output,
    directories listed by fd without following symlinks.  A literal pattern is returned as
    is (its absence shows when it is opened)."""
    if not any(plan.is_glob(p) for p in pattern_parts):
        return [pattern_parts]
    found = [()]
    for i, comp in enumerate(pattern_parts):
        last = i == len(pattern_parts) - 1
        nxt = []
        for base in found:
            if not plan.is_glob(comp):
                nxt.append(base + (comp,))
                continue
            try:
                dfd = openat2(root_fd, b"/".join(base) or b".", DIR_FLAGS,
                              resolve=RESOLVE_INSIDE | RESOLVE_NO_XDEV)
            except OSError:
                continue
            try:
                with os.scandir(dfd) as it:
                    for e in it:
                        n = os.fsencode(e.name)
                        if plan.component_matches(comp, n) and (last or e.is_dir(follow_symlinks=False)):
                            nxt.append(base + (n,))
            finally:
                os.close(dfd)
        found = sorted(nxt)
    return found


def collect(root_fd: int, patterns: list, out_file, max_bytes: int) -> dict:
    """Runs as: the target.  Pack the declared outputs of the job directory ``root_fd`` into
    a tar written to ``out_file``; returns the manifest (files with sha256, refused with the
    reason, missing patterns)."""
    import tarfile
    parsed = [plan.split_pattern(p) for p in patterns]
    with tarfile.open(fileobj=out_file, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        c = _Collection(root_fd, max_bytes, tar)
        for pat, parts in zip(patterns, parsed):
            matches = expand(root_fd, parts)
            if not matches:
                c.missing.append(pat.decode("utf-8", "surrogateescape"))
            for m in matches:
                c.add(m)
    return {"version": 1, "files": c.files, "dirs": c.dirs, "refused": c.refused,
            "missing": c.missing, "bytes": c.total}


def manifest_json(manifest: dict) -> str:
    import json
    return json.dumps(manifest, sort_keys=True)
