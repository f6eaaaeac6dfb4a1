"""Pool-account leases in an LCMAPS gridmapdir (reference/lcmaps-semantics.md section 4).

On-disk format, shared with LCMAPS and the usual cron cleaners (lcg-expiregridmapdir):

    <gridmapdir>/<pool>NNN             empty regular file per account, link count 1 = free
    <gridmapdir>/<lease>               hard link to a pool entry = the lease (count 2)
    <gridmapdir>/.glexec-py.lock       glexec-py's lock file (POSIX fcntl lock), root 0600
    <gridmapdir>/.glexec-py/           metadata sidecar, root 0700
    <gridmapdir>/.glexec-py/<account>  one JSON object (one line) per leased account
    <gridmapdir>/.glexec-py/.tmp.*     temp files of an atomic write in progress

All dot-names are skipped by LCMAPS's directory scan, so LCMAPS keeps working on a
gridmapdir glexec-py writes, and glexec-py adopts leases LCMAPS made (they just have no
metadata until ``repair`` writes it).

Metadata record (JSON, keys sorted, bytes fields decoded as latin-1 so they round-trip):
``{"v": 1, "account", "lease", "dn", "groups": [...], "mapcount", "ino", "state":
"leased"|"draining", "since": <unix time>, "by": "glexec-py"|"adopted", "owner": [...], "caller": <uid of
the glexec caller that made the lease, or null>}``.
``owner`` (added by the owner-identity change; absent in older records and in records
``repair`` writes) is the owner's identity key as a JSON list, ``["x509", "<canonical
DN>"]`` or ``["jwt", "<iss>", "<sub>"]``; ``dn`` stays the LCMAPS input text.  A free
account has no record.  Last use is the lease's mtime (``utime`` on every reuse, as LCMAPS
does), not a field: reuse never rewrites metadata.

Locking: every decision that creates or removes a link happens under an exclusive POSIX
record lock (``fcntl(F_SETLK[W])`` via ``fcntl.lockf``) on ``.glexec-py.lock``.  POSIX locks
work over NFSv3 (NLM) and NFSv4 (in-protocol), unlike ``flock`` on older clients; a shared pool
on NFS therefore needs every node to use glexec-py (or accept LCMAPS's races) and NFS locking
to be enabled (no ``nolock`` mount option).  POSIX locks belong to the process: two threads of
one process are serialised by a per-path thread lock (``_thread``) in addition.  Per-node pools
should live on a local file system.  Whatever the lock does, correctness rests on the
post-``link`` check (link count exactly 2 and the same inode), which also copes with NFS
``link()`` replies that lie and with LCMAPS instances that do not take the lock.

Crash consistency (new lease): lock -> choose entry -> ``link`` -> verify -> write metadata
(tmp, rename) -> unlock -> fsync metadata file and sidecar dir (outside the lock: ~7 ms on
ext4 that would otherwise serialise all grants; a crash before it may leave an empty record,
``meta_corrupt`` -> removed -> ``meta_missing`` -> adopted).  A crash before ``link`` leaves nothing (at most a
temp file: ``tmp_leftover``); after ``link`` it leaves a complete LCMAPS lease without
metadata (``meta_missing``, adopted by ``repair``).  If writing the metadata fails, the lease
is unlinked again and the request fails (202): nothing is left behind.  Release: unlink the
lease, then remove the metadata (a crash in between: ``meta_orphan``, removed by repair).
"""

import _thread
import errno
import fcntl
import os
import stat
import time
import zlib

from glexec_py.core import leanjson
from glexec_py.core import leases as core
from glexec_py.errors import NotAuthorized, SystemFault

LOCK_NAME = ".glexec-py.lock"
META_DIR = ".glexec-py"
META_VERSION = 1
INDEX_NAME = b".index"       # in META_DIR: pool-entry listing (readdir order, d_ino)
STATE_NAME = b".state"       # in META_DIR: directory stamp + per-pool cursors
INDEX_MAGIC = b"GXIDX1\0"

_thread_locks = {}
_thread_locks_guard = _thread.allocate_lock()

_MAX_CHECKS = 4096   # accounts checked in one acquire (each at most once): a bound, not a limit

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _b(x):
    return os.fsencode(x) if isinstance(x, str) else bytes(x)


def _lat(b):
    return bytes(b).decode("latin-1")


def _check_dir(fd, what):
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode):
        raise SystemFault("gridmapdir_unsafe", f"glexec: {what} is not a directory", path=what)
    if st.st_uid != 0 or st.st_mode & 0o022:
        raise SystemFault("gridmapdir_unsafe",
                          f"glexec: {what} must be owned by root and not group/other-writable",
                          uid=st.st_uid, mode=oct(st.st_mode & 0o7777))


def decode_record(raw):
    """Runs as: any user (pure).  A metadata record's bytes -> its dict with the bytes
    fields restored, or False if it is not one."""
    try:
        rec = leanjson.loads(raw)
        rec["lease"] = rec["lease"].encode("latin-1")
        rec["account"] = rec["account"].encode("latin-1")
        rec["dn"] = rec["dn"].encode("latin-1") if rec.get("dn") is not None else None
        rec["groups"] = tuple(g.encode("latin-1") for g in rec.get("groups", ()))
        return rec
    except (ValueError, KeyError, AttributeError, TypeError):
        return False


class _Request:
    """One ``acquire`` call: the identity and options the steps below look at, and the
    verdicts of the account checks made so far (outside the lock, see ``_Unchecked``)."""
    __slots__ = ("dn", "pool", "groups", "mapcount", "account_check", "owner", "before_link",
                 "caller", "caller_limit", "entry_filter", "verdicts")

    def __init__(self, **kw):
        self.verdicts = {}
        for name, value in kw.items():
            setattr(self, name, value)

    def admits(self, account, free):
        """Under the lock: may ``account`` be reused (``free`` False) or newly leased?
        ``_Unchecked`` if its checks have not been made yet: they run outside the lock."""
        if self.account_check is None and (not free or self.entry_filter is None):
            return True
        verdict = self.verdicts.get((account, free))
        if verdict is None:
            raise _Unchecked(account, free)
        return verdict

    def check(self, unchecked):
        """Outside the lock: the account's checks (NSS lookups, PAM), remembered for the
        next locked attempt; a refusal from ``account_check`` propagates."""
        name = os.fsdecode(unchecked.account)
        if self.account_check is not None:
            self.account_check(name)
        ok = not unchecked.free or self.entry_filter is None or bool(self.entry_filter(name))
        self.verdicts[(unchecked.account, unchecked.free)] = ok


class _Unchecked(Exception):
    """Raised under the lock, before anything is linked or reused, when the decision
    needs an account whose checks were not made yet: ``acquire`` unlocks, checks, and
    decides again from the top under the lock."""

    def __init__(self, account, free):
        super().__init__(account)
        self.account, self.free = account, free


class GridmapDir:
    """Runs as: root (the gridmapdir and its sidecar are root-owned).

    ``GridmapDir(path, *, lock="fcntl", strict=True, override_inconsistency=False,
    lock_timeout=None, pools=None)``

    ``lock_timeout``: None = block in ``F_SETLKW`` (kernel-queued, fair; default), a number
    = the same wait bounded by a timer (main thread; other threads poll with ``F_SETLK``),
    then ``SystemFault("lease_lock_timeout")``.
    ``pools``: pool names for ``fsck``/``repair``/``release`` (default: inferred).

    ``lock``: "fcntl" (default; see module doc) or "none" (LCMAPS behaviour: rely on the
    link-count check only; still retries the next entry instead of failing).
    ``strict``: strict pool-prefix match (prefix + digits), LCMAPS default.
    ``override_inconsistency``: a lease linked to an entry of another pool is removed and
    re-made in the requested pool (LCMAPS ``-override_inconsistency``); otherwise refused.
    The directory is opened once (O_NOFOLLOW) and every access is relative to that fd.
    """

    def __init__(self, path, *, lock="fcntl", strict=True, override_inconsistency=False,
                 lock_timeout=None, pools=None, index=True, sync="grant"):
        if lock not in ("fcntl", "none"):
            raise ValueError(f"lock must be 'fcntl' or 'none', not {lock!r}")
        self.path = _b(path)
        if not self.path.startswith(b"/"):
            raise SystemFault("gridmapdir_path", "glexec: gridmapdir must be an absolute path",
                              path=self.path)
        self.lock_mode = lock
        if sync not in ("grant", "none"):
            raise ValueError(f"sync must be 'grant' or 'none', not {sync!r}")
        self.sync = sync
        self.strict = strict
        self.override = override_inconsistency
        self.lock_timeout = lock_timeout
        self.pools = None if pools is None else tuple(_b(p) for p in pools)
        try:
            self.fd = os.open(self.path, _O_DIR)
        except OSError as e:
            raise SystemFault("gridmapdir_open", f"glexec: cannot open gridmapdir: {e.strerror}",
                              path=self.path, errno=e.errno) from None
        self._meta_fd = None
        self.adopted = False
        self._lock_fd = None
        self.created = None
        self._intended = set()
        self._state_fd = None
        # sidecar index (see "Index" in the module doc); only with lock="fcntl"
        self.use_index = lock == "fcntl" and index
        self._ix = None            # loaded listing: {"id", "names", "ino", "members"}
        self._ix_on = False        # inside a locked section that validated the index
        self._ix_cur = {}          # pool -> first possibly free position
        self._ix_dirty = False     # we changed the gridmapdir in this locked section
        self._ix_fresh = False     # listing rebuilt in this locked section
        try:
            _check_dir(self.fd, "gridmapdir")
            st = os.fstat(self.fd)
            key = (st.st_dev, st.st_ino)
            with _thread_locks_guard:
                self._tlock = _thread_locks.setdefault(key, _thread.allocate_lock())
        except BaseException:
            os.close(self.fd)
            raise

    # --- plumbing ---------------------------------------------------------------------

    def close(self):
        """Runs as: root. Closes the directory, sidecar and lock fds."""
        for attr in ("_state_fd", "_lock_fd", "_meta_fd", "fd"):
            fd = getattr(self, attr, None)
            if fd is not None:
                os.close(fd)
                setattr(self, attr, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _meta(self):
        if self._meta_fd is None:
            try:
                os.mkdir(META_DIR, 0o700, dir_fd=self.fd)
            except FileExistsError:
                pass
            fd = os.open(META_DIR, _O_DIR, dir_fd=self.fd)
            try:
                _check_dir(fd, "gridmapdir metadata directory")
                if os.fstat(fd).st_mode & 0o077:
                    raise SystemFault("gridmapdir_unsafe",
                                      "glexec: gridmapdir metadata directory must be mode 0700")
            except BaseException:
                os.close(fd)
                raise
            self._meta_fd = fd
        return self._meta_fd

    def _lock(self):
        return _Locked(self)

    def _lstat(self, name):
        try:
            return os.lstat(name, dir_fd=self.fd)
        except FileNotFoundError:
            return None

    def _scan(self):
        """One readdir pass, no stat: [(name, d_ino)] in readdir order, dot-names dropped."""
        out = []
        with os.scandir(self.fd) as it:
            for e in it:
                n = os.fsencode(e.name)
                if n[:1] != b".":
                    out.append((n, e.inode()))
        return out

    def _pools(self, pools):
        """Explicit pools, else the constructor's, else inferred from the directory: every
        name that looks like an account and ends in digits (``core.inferred_pool``)."""
        if pools is not None:
            return tuple(_b(p) for p in pools)
        if self.pools is not None:
            return self.pools
        found = {core.inferred_pool(n) for n, _ in self._scan()}
        found.discard(None)
        return tuple(sorted(found))

    def _members(self, pool):
        """Pool entries in readdir order, lazily (the scan stops at the first free one, as
        LCMAPS's does).  Fast path on str names; same rule as ``core.pool_member``."""
        p = os.fsdecode(pool)
        n = len(p)
        with os.scandir(self.fd) as it:
            for e in it:
                name = e.name
                if not name.startswith(p) or "~" in name:
                    continue
                rest = name[n:]
                if self.strict:
                    if not (rest and rest.isascii() and rest.isdigit()):
                        continue
                elif name[:1] in ("%", ".") or name == "root":
                    continue
                yield os.fsencode(name)

    def _unlink(self, name):
        self._ix_dirty = True
        try:
            os.unlink(name, dir_fd=self.fd)
            return True
        except FileNotFoundError:
            return False

    def _link(self, entry, lease):
        self._ix_dirty = True
        os.link(entry, lease, src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)

    # --- sidecar index ------------------------------------------------------------------
    #
    # A hint, never trusted for safety: every candidate is lstat-checked before ``link``
    # and verified after it, exactly as without the index.  What it saves is the O(pool)
    # readdir + lstat pass per request.  Valid only while the gridmapdir's stamp (inode,
    # mtime, ctime, size) equals the one recorded after our own last change under the
    # lock; anything else (LCMAPS, a cron cleaner, an admin, a crash between our change
    # and the state write) changes mtime/ctime and forces a rescan.

    def _dir_stamp(self):
        st = os.fstat(self.fd)
        return [st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size]

    def _state(self):
        if self._state_fd is None:
            fd = os.open(STATE_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=self._meta())
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
                os.close(fd)
                raise SystemFault("gridmapdir_unsafe", "glexec: gridmapdir index state unsafe")
            self._state_fd = fd
        return self._state_fd

    def _read_state(self):
        raw = os.pread(self._state(), 1 << 20, 0)
        crc, _, body = raw.partition(b" ")
        try:
            if int(crc, 16) != zlib.crc32(body):
                return None
            rec = leanjson.loads(body)
            if rec.get("v") != 1:
                return None
            return rec
        except ValueError:
            return None

    def _write_state(self, rec):
        body = leanjson.dumps(rec, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        data = b"%08x %s" % (zlib.crc32(body), body)
        fd = self._state()
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))

    def _invalidate_index(self):
        """Drop the recorded state: the next locked section rescans."""
        if not self.use_index:
            return
        try:
            os.ftruncate(self._state(), 0)
        except OSError:
            pass
        self._ix_on = False

    def _load_listing(self, want_id):
        try:
            fd = os.open(INDEX_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=self._meta())
        except FileNotFoundError:
            return False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != 0:
                return False
            chunks = []
            while True:
                b = os.read(fd, 1 << 20)
                if not b:
                    break
                chunks.append(b)
        finally:
            os.close(fd)
        parts = b"".join(chunks).split(b"\0")
        if len(parts) < 3 or parts[0] + b"\0" != INDEX_MAGIC or parts[1] != want_id \
                or parts[-1] != b"" or len(parts) % 2 != 1:
            return False
        try:
            inos = [int(x) for x in parts[2:-1:2]]
        except ValueError:
            return False
        self._set_listing(want_id, parts[3:-1:2], inos)
        return True

    def _set_listing(self, lid, names, inos):
        ino = {}
        for n, i in zip(names, inos):
            ino.setdefault(i, []).append(n)
        self._ix = {"id": lid, "names": names, "ino": ino, "members": {}}

    def _rescan(self, stamp):
        """Rebuild the listing from one readdir pass (``stamp`` taken before it, so a
        change during the pass is noticed next time); cursors restart at 0."""
        names, inos = [], []
        with os.scandir(self.fd) as it:
            for e in it:
                n = os.fsencode(e.name)
                if n[:1] not in (b".", b"%"):
                    names.append(n)
                    inos.append(e.inode())
        lid = os.urandom(8).hex().encode()
        body = [INDEX_MAGIC, lid, b"\0"]
        for n, i in zip(names, inos):
            body += [b"%d\0" % i, n, b"\0"]
        mfd = self._meta()
        tmp = b"%sindex.%d.%s" % (core.TMP_PREFIX.encode(), os.getpid(),
                                  os.urandom(4).hex().encode())
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=mfd)
            try:
                view = memoryview(b"".join(body))
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.rename(tmp, INDEX_NAME, src_dir_fd=mfd, dst_dir_fd=mfd)
            persisted = True
        except OSError:
            # No room for the hint: work from memory this time, rescan next time.
            try:
                os.unlink(tmp, dir_fd=mfd)
            except OSError:
                pass
            persisted = False
        self._set_listing(lid, names, inos)
        self._ix_cur = {}
        self._ix_fresh = True
        self._ix_stamp = stamp
        self._ix_on = True
        self._ix_persisted = persisted

    def _ix_begin(self):
        """Under the lock: make the in-memory listing and cursors match the gridmapdir
        (load another process's listing, or rescan when the directory changed)."""
        if not self.use_index or self._ix_on:
            return self.use_index
        self._ix_dirty = False
        self._ix_fresh = False
        self._state()                   # creates the sidecar dir (a gridmapdir change) first
        stamp = self._dir_stamp()
        rec = self._read_state()
        if rec is not None and rec.get("stamp") == stamp:
            lid = rec["id"].encode()
            if (self._ix is not None and self._ix["id"] == lid) or self._load_listing(lid):
                self._ix_cur = {k.encode("latin-1"): v for k, v in rec.get("cur", {}).items()}
                self._ix_stamp = stamp
                self._ix_on = True
                self._ix_persisted = True
                return True
        self._rescan(stamp)
        return True

    def _ix_end(self):
        """Before unlocking: record the stamp after our own changes and the cursors."""
        if not self._ix_on:
            return
        self._ix_on = False
        try:
            if not self._ix_persisted:
                self._write_state({"v": 1})
                return
            stamp = self._dir_stamp() if self._ix_dirty else self._ix_stamp
            self._write_state({"v": 1, "id": self._ix["id"].decode(), "stamp": stamp,
                               "cur": {k.decode("latin-1"): v
                                       for k, v in self._ix_cur.items()}})
        except OSError:
            self._invalidate_index()

    def _ix_members(self, pool):
        """(names, position-of-name) of ``pool``'s entries in readdir order."""
        m = self._ix["members"].get(pool)
        if m is None:
            names = [n for n in self._ix["names"] if core.pool_member(n, pool, self.strict)]
            m = (names, {n: i for i, n in enumerate(names)})
            self._ix["members"][pool] = m
        return m

    def _ix_freed(self, account):
        """Our own unlink made ``account`` free: lower every cursor past it."""
        if not self._ix_on:
            return
        for pool, cur in list(self._ix_cur.items()):
            pos = self._ix_members(pool)[1].get(account)
            if pos is not None and pos < cur:
                self._ix_cur[pool] = pos

    def _other_name(self, ino, lease):
        """The other name of a lease's inode (link count 2): from the listing's d_ino
        map when the index is valid (verified by lstat), else one readdir pass."""
        if self._ix_on:
            for n in self._ix["ino"].get(ino, ()):
                st = self._lstat(n)
                if n != lease and st is not None and st.st_ino == ino:
                    return n
        return next((n for n, i in self._scan() if i == ino and n != lease), None)

    # --- metadata ---------------------------------------------------------------------

    def _write_meta(self, account, record, defer=False):
        """Atomic write (tmp, fsync, rename, fsync dir).  With ``defer`` the two fsyncs
        are left to the caller (returned fd, to be passed to ``_sync_meta``) so they can
        run outside the lock; the rename is already done under it."""
        mfd = self._meta()
        data = (leanjson.dumps(record, sort_keys=True) + "\n").encode()
        tmp = b"%s%s.%d.%s" % (core.TMP_PREFIX.encode(), account, os.getpid(),
                               os.urandom(4).hex().encode())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=mfd)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if not defer:
                    os.fsync(fd)
            except BaseException:
                os.close(fd)
                raise
            if not defer:
                os.close(fd)
            os.rename(tmp, account, src_dir_fd=mfd, dst_dir_fd=mfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=mfd)
            except OSError:
                pass
            raise
        if defer:
            return fd
        os.fsync(mfd)
        return None

    def _sync_meta(self, fd):
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.fsync(self._meta())

    def _read_meta(self, account):
        """Record dict (bytes fields restored), None if absent, False if unreadable."""
        mfd = self._meta()
        try:
            fd = os.open(account, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=mfd)
        except FileNotFoundError:
            return None
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > 65536:
                return False
            raw = os.read(fd, 65537)
        finally:
            os.close(fd)
        return decode_record(raw)

    def _remove_meta(self, account):
        mfd = self._meta()
        try:
            os.unlink(account, dir_fd=mfd)
        except FileNotFoundError:
            return
        os.fsync(mfd)

    def _record(self, account, lease, dn, groups, mapcount, ino, by, state="leased",
                since=None, owner=None, caller=None):
        rec = {"v": META_VERSION, "account": _lat(account), "lease": _lat(lease),
               "dn": None if dn is None else _lat(dn), "groups": [_lat(g) for g in groups],
               "mapcount": mapcount, "ino": ino, "state": state,
               "since": time.time() if since is None else since, "by": by, "caller": caller}
        if owner is not None:
            rec["owner"] = list(owner.key if isinstance(owner, core.LeaseOwner) else owner)
        return rec

    # --- the lease algorithm ----------------------------------------------------------

    def acquire(self, dn_oneline, pool, groups=(), mapcount=0, account_check=None, owner=None,
                before_link=None, caller=None, caller_limit=0, entry_filter=None):
        """Runs as: root. Lease (or reuse) an account of ``pool`` for this identity.

        Returns ``(account: bytes, lease_name: bytes, reused: bool)``.
        LCMAPS semantics: an existing lease with link count 2 whose other link is an entry
        of ``pool`` is reused (``utime`` refreshes its mtime); a solitary lease (count 1, or
        whose other link vanished) is removed; a lease on another pool's entry is refused
        (``NotAuthorized("wrong_pool")``) unless ``override_inconsistency``.  Otherwise the
        first free entry in readdir order (not sorted) is linked; if the post-link check
        fails (count != 2 or another inode: a racing non-locking mapper) the own link is
        removed and the next free entry is tried.  No free entry ->
        ``NotAuthorized("pool_exhausted")`` with nothing left behind (always after a full
        readdir pass, never on the index alone).  A lease in state "draining" is refused
        (``NotAuthorized("lease_draining")``, retry later).

        ``account_check``: optional callable(account name as str), called for the account
        before a new link is made and before a reuse is granted; whatever it raises is
        propagated with nothing left behind (the engine passes
        ``accounts.lookup_target``: uid 0, uid outside the pool's range, privileged
        groups, no passwd entry -> refused).  Unlike LCMAPS, which links first and
        calls ``getpwnam`` afterwards, leaving the lease behind.  It is called *outside*
        the lock (its NSS lookups load modules and may ask a directory server: they
        would serialise every grant): the locked decision stops before it changes
        anything when it needs an account not checked yet (``_Unchecked``), the lock is
        released, the account checked, and the decision made again from the top under
        the lock -- so what is linked or reused is always decided under the lock, and
        always an account that passed.  The check depends on the account name only;
        the lock never serialised changes to passwd/group, so checking before the
        locked decision instead of inside it loses nothing.

        ``owner``: a ``core.leases.LeaseOwner`` (the engine always passes one): the lease is
        recorded as that identity's and reused only by it; another identity whose LCMAPS
        name collides gets its own lease under ``core.alternate_name`` (see
        ``_acquire_locked``).  ``self.adopted`` tells whether an owner-less lease was
        adopted.  Without an owner: LCMAPS's by-name reuse (tools, compatibility tests).

        ``before_link(lease_name)``: called under the lock just before a new lease is
        linked, with the name it will have (the engine puts its intent on record there, so
        a crash at any later point leaves no lease the audit log does not explain); an
        exception from it links nothing.  After a new link, ``self.created`` is
        ``(lease, account, ino, mtime_ns)`` for ``rollback``.

        ``caller``: the glexec caller's uid, recorded in the new lease's metadata;
        ``caller_limit``: ``mapping.max_leases_per_caller`` (0 = unlimited, a number, or
        "N%" of the pool).  A new lease (never a reuse) is refused with
        ``NotAuthorized("caller_lease_limit")`` when ``caller`` already holds that many
        live leases in ``pool`` (``core.leases.live_leases_of``), counted under the lock.
        ``entry_filter``: optional callable(account name as str) -> True to lease it, False
        to skip it for the next free entry (the site does not let that account in, e.g.
        PAM); called for free entries only, never for a reuse, outside the lock like
        ``account_check``.
        """
        dn = _b(dn_oneline)
        pool = _b(pool)
        groups = tuple(_b(g) for g in groups)
        if not pool or not all(0x20 < c < 0x7F and c != 0x2F for c in pool):
            raise SystemFault("pool_name", "glexec: invalid pool name", pool=pool)
        lease = core.lease_name(dn, groups, mapcount)
        if len(lease) > 255 or b"/" in lease:
            raise NotAuthorized("lease_name", "glexec: identity too long for a pool lease",
                                lease=lease)
        req = _Request(dn=dn, pool=pool, groups=groups, mapcount=mapcount,
                       account_check=account_check, owner=owner, before_link=before_link,
                       caller=caller, caller_limit=caller_limit, entry_filter=entry_filter)
        self.adopted = False      # set by any locked pass of this call (the first may stop at a check)
        while True:
            try:
                got = self._acquire_under_lock(lease, req)
                break
            except _Unchecked as unchecked:
                if len(req.verdicts) >= _MAX_CHECKS:
                    raise SystemFault("lease_unstable", "glexec: gridmapdir keeps changing; giving up",
                                      lease=lease) from None
                req.check(unchecked)
        account, lease, reused, pending = got
        if pending is not None and self.sync == "none":
            os.close(pending)
            pending = None
        if pending is not None:
            # Durability of the metadata outside the lock (two fsyncs cost ~7 ms on ext4
            # and would serialise every grant).  If it fails: undo under the lock.
            try:
                self._sync_meta(pending)
            except OSError as e:
                with self._lock():
                    self._ix_begin()
                    lst, est = self._lstat(lease), self._lstat(account)
                    if lst and est and lst.st_ino == est.st_ino:
                        self._unlink(lease)
                        self._ix_freed(account)
                    try:
                        self._remove_meta(account)
                    except OSError:
                        pass
                raise SystemFault("lease_write", f"glexec: cannot record pool lease: {e.strerror}",
                                  lease=lease, account=account, errno=e.errno) from None
        return account, lease, reused

    def _acquire_under_lock(self, lease, req):
        with self._lock():
            try:
                self._ix_begin()
                for _ in range(64):
                    got = self._acquire_locked(lease, req)
                    if got is not None:
                        return got
                raise SystemFault("lease_unstable",
                                  "glexec: gridmapdir keeps changing; giving up", lease=lease)
            except OSError as e:
                # link/unlink/lstat/index I/O failed (ENOSPC, EIO, ...): whatever a step
                # left is a state fsck knows (at worst a solitary lease, repaired by the
                # next request for this identity); the caller gets a retryable 202.
                raise SystemFault("lease_io", f"glexec: gridmapdir I/O error: {e.strerror}",
                                  lease=lease, errno=e.errno) from None

    def _acquire_locked(self, lease, req):
        """One attempt; None = state changed underneath (retry from the top).

        With an ``owner`` (docs/leases.md, "Who owns a lease"): the LCMAPS name is reused
        only if ``core.claim`` says it is the owner's (or adopts it); else the owner's
        ``alternate_name`` is looked at the same way (a lease there that is someone
        else's is refused: ``lease_collision``); a new lease takes the LCMAPS name when
        it is free, the alternate name otherwise.  Someone else's lease is never touched."""
        if req.owner is None:
            got = self._inspect(lease, req)
            return got if got != "free" else self._allocate(lease, req)
        got = self._inspect(lease, req)
        if got is None or got not in ("free", "taken"):
            return got
        plain_free = got == "free"
        alt = core.alternate_name(lease, core.owner_digest(req.owner.key, req.groups, req.mapcount))
        if len(alt) <= 255:
            got = self._inspect(alt, req, by_digest=True)
            if got is None or got not in ("free", "taken"):
                return got
            if got == "taken":
                raise NotAuthorized("lease_collision",
                                    "glexec: the pool lease for this identity is held by another "
                                    "identity (run glexec-leases fsck)", lease=alt)
        elif not plain_free:
            raise NotAuthorized("lease_name", "glexec: identity too long for a pool lease",
                                lease=alt)
        name = lease if plain_free else alt
        return self._allocate(name, req)

    def _whose(self, account, lease, req, by_digest):
        """``core.claim`` on the account's record; an adopted lease gets its owner
        recorded now (the rest of the record is kept)."""
        rec = self._read_meta(account)
        owner, groups, mapcount = req.owner, req.groups, req.mapcount
        verdict = core.claim(rec, lease, owner, groups, mapcount, by_digest=by_digest)
        if verdict == "adopt":
            st = self._lstat(lease)
            old = rec if rec and rec.get("lease") == lease else {}
            new = self._record(account, lease, owner.text, groups, mapcount,
                               st.st_ino if st else None, old.get("by") or "adopted",
                               state=old.get("state", "leased"), since=old.get("since"),
                               owner=owner)
            self._write_meta(account, new)
            self.adopted = True
            return new
        return rec if verdict == "mine" else None

    def _inspect(self, lease, req, by_digest=False):
        """The existing name ``lease``: a reuse result tuple, "free" (absent, or a solitary
        lease removed), "taken" (owner mode: someone else's), or None (changed: retry)."""
        lst = self._lstat(lease)
        if lst is not None:
            if not stat.S_ISREG(lst.st_mode):
                if req.owner is not None:
                    return "taken"
                raise SystemFault("lease_not_regular", "glexec: pool lease is not a regular file",
                                  lease=lease)
            if lst.st_nlink > 2:
                raise SystemFault("lease_overlinked",
                                  "glexec: pool lease is linked more than twice (run fsck)",
                                  lease=lease, nlink=lst.st_nlink)
            if lst.st_nlink == 2:
                other = self._other_name(lst.st_ino, lease)
                rec = None
                if other is not None and req.owner is not None:
                    rec = self._whose(other, lease, req, by_digest)
                    if rec is None:
                        return "taken"
                if other is not None and core.pool_member(other, req.pool, self.strict):
                    why = core.entry_unsafe(lst.st_uid, lst.st_mode)
                    if why:
                        raise SystemFault("pool_entry_unsafe", "glexec: the leased pool entry is "
                                          "not trustworthy (run glexec-leases fsck)",
                                          lease=lease, account=other, why=why)
                    if req.owner is None:
                        rec = self._read_meta(other)
                    if rec and rec.get("state") == "draining":
                        raise NotAuthorized("lease_draining",
                                            "glexec: pool account is being drained; retry later",
                                            account=other, lease=lease)
                    req.admits(other, free=False)
                    try:
                        os.utime(lease, dir_fd=self.fd, follow_symlinks=False)
                    except FileNotFoundError:
                        return None
                    again = self._lstat(lease)
                    if again is None or again.st_ino != lst.st_ino or again.st_nlink != 2:
                        return None
                    return other, lease, True, None
                if other is not None:
                    if not self.override:
                        raise NotAuthorized("wrong_pool",
                                            "glexec: existing lease points into another pool",
                                            lease=lease, entry=other, pool=req.pool)
                    self._unlink(lease)
                    self._ix_freed(other)
                    rec = self._read_meta(other)
                    if rec is False or (rec and rec["lease"] == lease):
                        self._remove_meta(other)
                else:
                    self._unlink(lease)          # other link vanished: solitary
            else:
                self._unlink(lease)              # solitary lease (half made)
        return "free"

    def _allocate(self, lease, req):
        if req.caller is not None and req.caller_limit:
            self._check_caller_limit(lease, req)
        while True:
            got = self._link_first_free(lease, req)
            if got != "exhausted":
                return got
            if not self._ix_on or self._ix_fresh:
                break
            # The index said "nothing free from the cursor on": never answer
            # pool_exhausted on a hint; rescan and try every entry once more.
            self._rescan(self._dir_stamp())
        raise NotAuthorized("pool_exhausted", "glexec: no free pool account (pool exhausted)",
                            pool=req.pool, lease=lease)

    def _candidates(self, pool):
        """(position, entry) in readdir order: from the index cursor on when it is valid,
        else one lazy readdir pass (LCMAPS's scan)."""
        if self._ix_on:
            names = self._ix_members(pool)[0]
            start = self._ix_cur.get(pool, 0)
            return ((i, names[i]) for i in range(start, len(names)))
        return ((None, n) for n in self._members(pool))

    def _check_caller_limit(self, lease, req):
        """Under the lock, before a new link: refuse if ``caller`` holds its limit of live
        leases in ``pool``.  Only records of pool entries are read, and none while fewer
        records exist than the limit (the common case costs one listdir)."""
        pool, caller = req.pool, req.caller
        names = (self._ix_members(pool)[0] if self._ix_on else list(self._members(pool)))
        limit = core.caller_limit(req.caller_limit, len(names))
        if limit is None:
            return
        present = set(os.listdir(self._meta()))
        held = [n for n in names if os.fsdecode(n) in present]
        if len(held) < limit:
            return
        rows = []
        for n in held:
            rec = self._read_meta(n)
            linked = False
            if rec and rec.get("caller") == caller:
                lst, est = self._lstat(rec["lease"]), self._lstat(n)
                linked = bool(lst and est and lst.st_ino == est.st_ino and est.st_nlink == 2)
            rows.append((rec, linked))
        live = core.live_leases_of(rows, caller)
        if live >= limit:
            raise NotAuthorized("caller_lease_limit",
                                f"glexec: this caller already holds {live} leases in pool "
                                f"{pool.decode('ascii', 'replace')} (limit {limit})",
                                pool=pool, caller=caller, limit=limit, live=live, lease=lease)

    def _link_first_free(self, lease, req):
        pool = req.pool
        for pos, entry in self._candidates(pool):
            est = self._lstat(entry)
            if est is None or not stat.S_ISREG(est.st_mode) or est.st_nlink != 1:
                continue
            if core.entry_unsafe(est.st_uid, est.st_mode):
                continue                         # never leased: an fsck finding
            if not req.admits(entry, free=True):
                continue                         # the site does not let it in: the next one
            if req.before_link is not None and lease not in self._intended:
                req.before_link(lease)           # once a name, even if this link must retry
                self._intended.add(lease)
            try:
                self._link(entry, lease)
            except FileExistsError:
                return None                      # someone made our lease meanwhile
            except FileNotFoundError:
                continue                         # entry removed meanwhile
            lst = self._lstat(lease)
            est = self._lstat(entry)
            if lst is None:
                return None
            if est is None or lst.st_ino != est.st_ino:
                if est is not None and lst.st_ino != est.st_ino:
                    return None                  # lease replaced by someone else: re-evaluate
                self._unlink(lease)
                continue
            if lst.st_nlink != 2 or est.st_nlink != 2:
                self._unlink(lease)              # raced with a non-locking mapper: back off
                continue
            if pos is not None:
                self._ix_cur[pool] = pos + 1     # everything before pos+1 is taken
            try:
                # An exact stamp: any later use (utime by a reuser) changes it, so
                # ``rollback`` can tell a lease nobody else has used yet.
                stamp = time.time_ns()
                os.utime(lease, ns=(stamp, stamp), dir_fd=self.fd, follow_symlinks=False)
                st = self._lstat(lease)
                self.created = (lease, entry, lst.st_ino, stamp if st and st.st_mtime_ns == stamp else None)
                pending = self._write_meta(entry, self._record(
                    entry, lease, req.dn, req.groups, req.mapcount, lst.st_ino, "glexec-py",
                    owner=req.owner, caller=req.caller), defer=True)
            except OSError as e:
                self._unlink(lease)
                self._ix_freed(entry)
                try:
                    self._remove_meta(entry)
                except OSError:
                    pass
                raise SystemFault("lease_write", f"glexec: cannot record pool lease: {e.strerror}",
                                  lease=lease, account=entry, errno=e.errno) from None
            return entry, lease, False, pending
        return "exhausted"

    def release(self, lease_name):
        """Runs as: root. Remove a lease (the account becomes free) and its metadata.
        Returns the account it held, or None if there was no such lease.  Does not check
        for processes or files of the account: that is the caller's (pruner/sweeper's)
        job before releasing."""
        lease = _b(lease_name)
        if not lease or lease.startswith(b".") or b"/" in lease:
            raise ValueError(f"not a lease name: {lease!r}")
        try:
            return self._release(lease)
        except OSError as e:
            raise SystemFault("lease_io", f"glexec: gridmapdir I/O error: {e.strerror}",
                              lease=lease, errno=e.errno) from None

    def _release(self, lease):
        with self._lock():
            self._ix_begin()
            if not core.is_lease_candidate(lease, self._pools(None), self.strict):
                raise ValueError(f"{lease!r} is a pool entry, not a lease")
            lst = self._lstat(lease)
            if lst is None:
                return None
            if not stat.S_ISREG(lst.st_mode):
                raise SystemFault("lease_not_regular", "glexec: pool lease is not a regular file",
                                  lease=lease)
            account = None
            if lst.st_nlink >= 2:
                account = self._other_name(lst.st_ino, lease)
            self._unlink(lease)
            if account is not None:
                self._ix_freed(account)
                rec = self._read_meta(account)
                if rec is False or (rec and rec["lease"] == lease):
                    self._remove_meta(account)
            return account

    def rollback(self, created):
        """Runs as: root.  Undo a new lease of this process (``created`` as ``acquire`` left
        it) whose call was refused: released only if nobody has used it since -- same
        inode, link count 2, and the exact mtime ``acquire`` set (every reuse, ours or
        LCMAPS's, moves it; on a file system that does not keep nanoseconds nothing is
        released).  Returns True if released."""
        lease, account, ino, mtime = created
        if mtime is None:
            return False
        with self._lock():
            self._ix_begin()
            lst, est = self._lstat(lease), self._lstat(account)
            if lst is None or est is None or lst.st_ino != ino or est.st_ino != ino \
                    or lst.st_nlink != 2 or lst.st_mtime_ns != mtime:
                return False
            self._unlink(lease)
            self._ix_freed(account)
            rec = self._read_meta(account)
            if rec is False or (rec and rec["lease"] == lease):
                self._remove_meta(account)
            return True

    def place(self, lease_name, account, *, dn, groups, mapcount, owner, caller, state, since, last_use):
        """Runs as: root.  For ``glexec-leases migrate --to gridmapdir``: make exactly this
        lease on exactly this free pool entry, with its record (owner, caller, state) and
        last use (mtime), under the lock.  ``SystemFault`` if the entry is not free or the
        name exists (nothing changed)."""
        lease, account = _b(lease_name), _b(account)
        if not core.is_lease_candidate(lease, self._pools(None), self.strict) or b"/" in lease:
            raise ValueError(f"not a lease name: {lease!r}")
        with self._lock():
            self._ix_begin()
            est = self._lstat(account)
            if est is None or not stat.S_ISREG(est.st_mode) or est.st_nlink != 1 \
                    or self._lstat(lease) is not None:
                raise SystemFault("lease_place", "glexec: pool entry not free or lease name taken",
                                  lease=lease, account=account)
            self._link(account, lease)
            lst = self._lstat(lease)
            if lst is None or lst.st_ino != est.st_ino or lst.st_nlink != 2:
                raise SystemFault("lease_place", "glexec: gridmapdir changed while placing a lease",
                                  lease=lease, account=account)
            os.utime(lease, (last_use, last_use), dir_fd=self.fd, follow_symlinks=False)
            try:
                self._write_meta(account, self._record(
                    account, lease, dn, groups, mapcount, lst.st_ino, "migrated", state=state,
                    since=since, owner=owner, caller=caller))
            except OSError:
                self._unlink(lease)
                raise
            self._ix_dirty = True

    def drain(self, lease_name):
        """Runs as: root. Mark a lease "draining": kept (the account is not handed to
        anyone) but refused to its identity until released. Returns the account or None."""
        lease = _b(lease_name)
        with self._lock():
            lst = self._lstat(lease)
            if lst is None or lst.st_nlink != 2 or not stat.S_ISREG(lst.st_mode):
                return None
            account = next((n for n, ino in self._scan()
                            if ino == lst.st_ino and n != lease), None)
            if account is None:
                return None
            rec = self._read_meta(account)
            if rec:
                new = self._record(account, lease, rec.get("dn"), rec.get("groups", ()),
                                   rec.get("mapcount", 0), lst.st_ino, rec.get("by", "adopted"),
                                   state="draining", since=rec.get("since"),
                                   owner=rec.get("owner"), caller=rec.get("caller"))
            else:
                new = self._record(account, lease, None, (), 0, lst.st_ino, "adopted",
                                   state="draining", since=lst.st_mtime)
            self._write_meta(account, new)
            return account

    def hold_unleased(self, account, *, draining_ok=True):
        """Runs as: root.  For glexec-sweep (docs/leases.md, "Sweeping and new leases"): a
        context manager that takes the gridmapdir lock and yields whether ``account`` is
        still free -- its pool entry has link count 1 or does not exist -- or, with
        ``draining_ok``, holds a lease marked draining (which is never handed to anyone).
        While the caller is inside, no glexec-py grant can link the account, so what the
        caller removes cannot belong to a new lease holder.  Every grant waits meanwhile:
        keep the body short (one directory chunk)."""
        account = _b(account)
        if not account or account.startswith(b".") or b"/" in account:
            raise ValueError(f"not an account name: {account!r}")
        return _Held(self, account, draining_ok)

    def _unleased(self, account, draining_ok):
        st = self._lstat(account)
        if st is None or (stat.S_ISREG(st.st_mode) and st.st_nlink == 1):
            return True
        if not draining_ok:
            return False
        rec = self._read_meta(account)
        return bool(rec) and rec.get("state") == "draining" and rec.get("ino") in (None, st.st_ino)

    # --- checking and repair ----------------------------------------------------------

    def snapshot(self):
        """Runs as: root. ``[(name, ino, nlink, is_reg)]`` of the gridmapdir (lstat, readdir
        order, dot-names dropped); names that vanish during the pass are left out."""
        return [row[:4] for row in self._snapshot_owned()]

    def _snapshot_owned(self):
        """``snapshot`` rows with ``(uid, mode)`` appended."""
        out = []
        for n, _ in self._scan():
            st = self._lstat(n)
            if st is not None:
                out.append((n, st.st_ino, st.st_nlink, stat.S_ISREG(st.st_mode),
                            st.st_uid, st.st_mode))
        return out

    def leases(self, pools=None):
        """Runs as: root. ``{lease: (account, record-or-None, mtime)}`` for complete leases
        of ``pools``."""
        pools = self._pools(pools)
        snap = self.snapshot()
        by_ino = {}
        for n, ino, nlink, reg in snap:
            by_ino.setdefault(ino, []).append(n)
        out = {}
        for n, ino, nlink, reg in snap:
            if reg and nlink == 2 and core.is_lease_candidate(n, pools, self.strict):
                acc = [m for m in by_ino[ino] if m != n
                       and any(core.pool_member(m, p, self.strict) for p in pools)]
                if len(acc) == 1:
                    st = self._lstat(n)
                    rec = self._read_meta(acc[0])
                    out[n] = (acc[0], rec or None, st.st_mtime if st else None)
        return out

    def _fsck_inputs(self, pools):
        owned = self._snapshot_owned()
        snap = [row[:4] for row in owned]
        owners = {row[0]: (row[4], row[5]) for row in owned}
        mfd = self._meta()
        side = [os.fsencode(n) for n in os.listdir(mfd)]
        meta = {}
        for n in side:
            if not n.startswith(b"."):                  # .tmp.*, .index, .state
                rec = self._read_meta(n)
                meta[n] = rec if rec else None
        return snap, meta, side, owners

    def fsck(self, pools=None):
        """Runs as: root. Findings (``core.leases.Finding``) for the gridmapdir and its
        sidecar, for the given pool names (default: the constructor's ``pools``, else
        inferred from the directory, see ``_pools``); empty list = clean (every lease has exactly one
        pool entry with link count 2, no orphans, metadata consistent).  Takes the lock so
        the snapshot is not torn by our own writers."""
        with self._lock():
            pools = self._pools(pools)
            snap, meta, side, owners = self._fsck_inputs(pools)
        return core.plan_fsck(snap, pools, strict=self.strict, meta=meta, sidecar=side,
                              owners=owners)

    def repair(self, findings, pools=None):
        """Runs as: root. Apply the ``action`` of each finding, re-checking each one under
        the lock against the current state (a finding that no longer holds is skipped).
        "manual" findings are never touched.  Returns the list of findings acted on."""
        done = []
        with self._lock():
            pools = self._pools(pools)
            snap, meta, side, owners = self._fsck_inputs(pools)
            current = core.plan_fsck(snap, pools, strict=self.strict, meta=meta, sidecar=side,
                                     owners=owners)
            wanted = {(f.kind, f.names) for f in findings}
            by_ino = {}
            for n, ino, nlink, reg in snap:
                by_ino.setdefault(ino, []).append((n, nlink))
            for f in current:
                if (f.kind, f.names) not in wanted or f.action == "manual":
                    continue
                if f.action == "unlink_lease":
                    st = self._lstat(f.names[0])
                    if st is None or st.st_ino != f.ino or not stat.S_ISREG(st.st_mode):
                        continue
                    self._unlink(f.names[0])
                elif f.action == "remove_tmp":
                    try:
                        os.unlink(f.names[0], dir_fd=self._meta())
                    except FileNotFoundError:
                        continue
                elif f.action == "remove_meta":
                    self._remove_meta(f.names[0])
                elif f.action == "write_meta":
                    account, lease = f.names[0], f.names[1]
                    st = self._lstat(lease)
                    if st is None:
                        continue
                    old = meta.get(account)
                    self._write_meta(account, self._record(
                        account, lease, None, (), 0, st.st_ino, "adopted",
                        state=(old or {}).get("state", "leased") if old else "leased",
                        since=st.st_mtime))
                done.append(f)
            if done:
                self._invalidate_index()
        return done


class _Locked:
    def __init__(self, gd):
        self.gd = gd

    def __enter__(self):
        gd = self.gd
        if not gd._tlock.acquire(timeout=gd.lock_timeout if gd.lock_timeout else -1):
            raise SystemFault("lease_lock_timeout", "glexec: gridmapdir lock busy; retry later")
        if gd.lock_mode == "none":
            return self
        try:
            if gd._lock_fd is None:
                fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o600, dir_fd=gd.fd)
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
                    os.close(fd)
                    raise SystemFault("gridmapdir_unsafe", "glexec: gridmapdir lock file unsafe")
                gd._lock_fd = fd
            if gd.lock_timeout is None:
                fcntl.lockf(gd._lock_fd, fcntl.LOCK_EX)
            else:
                _lock_blocking(gd._lock_fd, gd.lock_timeout)
        except BaseException:
            gd._tlock.release()
            raise
        return self

    def __exit__(self, *exc):
        gd = self.gd
        try:
            gd._ix_end()
        finally:
            self._unlock()
        return False

    def _unlock(self):
        gd = self.gd
        try:
            if gd.lock_mode != "none" and gd._lock_fd is not None:
                fcntl.lockf(gd._lock_fd, fcntl.LOCK_UN)
        finally:
            gd._tlock.release()


class _LockWaitOver(Exception):
    pass


def _lock_busy():
    return SystemFault("lease_lock_timeout", "glexec: gridmapdir lock busy; retry later")


def _lock_blocking(fd, timeout):
    """Runs as: the caller of GridmapDir.
    ``F_SETLKW`` bounded by a one-shot real-time timer: the kernel queues the waiter and wakes
    it the moment the holder unlocks (a poll loop sleeps up to its interval past that).
    Only the main thread may borrow SIGALRM: any other polls (``_lock_polling``).
    ``_signal``, not ``signal``: the latter imports ``enum``, ~1.8 ms of start-up; and the
    main-thread test is the handler's installation itself, not ``threading`` (~4 ms)."""
    import _signal as signal

    def over(signum, frame):
        raise _LockWaitOver()
    try:
        old = signal.signal(signal.SIGALRM, over)
    except ValueError:           # "signal only works in main thread of the main interpreter"
        return _lock_polling(fd, timeout)
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _LockWaitOver:
        # the timer may fire just after the lock was granted: unlocking a lock not held is a
        # no-op, so this never leaves the lock taken
        fcntl.lockf(fd, fcntl.LOCK_UN)
        raise _lock_busy() from None
    finally:
        signal.signal(signal.SIGALRM, old)


def _lock_polling(fd, timeout):
    """Runs as: the caller of GridmapDir (threads other than the main one, which cannot
    take SIGALRM): ``F_SETLK`` retried with a growing sleep until ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.0002
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() > deadline:
            raise _lock_busy()
        time.sleep(delay)
        delay = min(delay * 2, 0.005)


class _Held:
    """``GridmapDir.hold_unleased``: the lock for the body, yielding the lease check."""

    def __init__(self, gd, account, draining_ok):
        self.locked = _Locked(gd)
        self.gd, self.account, self.draining_ok = gd, account, draining_ok

    def __enter__(self):
        self.locked.__enter__()
        try:
            return self.gd._unleased(self.account, self.draining_ok)
        except BaseException:
            self.locked.__exit__(None, None, None)
            raise

    def __exit__(self, *exc):
        return self.locked.__exit__(*exc)
