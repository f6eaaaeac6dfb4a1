"""glexec-sweep effects: the fd-only tree walk, SysV IPC removal, the run lock, the
process scan and the per-account state record.

Every function here runs as root.  The walk never resolves a path by name below a root:
each directory is opened with ``openat(parent_fd, name, O_DIRECTORY|O_NOFOLLOW)`` and
checked to be the very inode the scan saw (st_dev, st_ino); entries are ``fstatat``-ed
with AT_SYMLINK_NOFOLLOW and removed with ``unlinkat``/``unlinkat(AT_REMOVEDIR)`` relative
to the directory fd.  It never follows a symlink, never leaves the root's device (nor a
mount point listed in mountinfo: bind mounts of the same file system), never chmods,
chowns or renames anything, and handles names as the kernel gives them (newline,
invalid UTF-8, leading '-': Python's surrogateescape round-trips them exactly, and no
name is ever given to a program or shell).

New leases: with a ``LeaseGuard`` (the tool passes one when a gridmapdir is configured)
every removal batch (<= 256 entries of one chunk, one rmdir, one IPC object) runs under the
gridmapdir lock after re-checking that its account is still free or draining, so no grant
can hand the account to someone whose files the batch would remove (docs/leases.md).

The per-entry work is native (csrc/sweepwalk.c via ``native.SweepScanner``): a directory
is read in chunks of one ``getdents64`` call (at most 2048 entries), every entry but "." and
".." is ``fstatat``-ed, the planner decides the whole chunk (``Planner.decide_entries``, the
same answers as ``decide``), and the chunk's removals run before the next chunk is read
(POSIX: removing entries while reading a directory never hides or repeats another entry).
The C side decides nothing; it re-checks each chosen entry and unlinks it (see below).

Removal identity: with ``as_owner`` "preferred" (default) or "required" the removals of a
directory's entries run with fsuid/fsgid = the owning pool account and no supplementary
groups (``set_fs_identity``), so the kernel itself refuses anything the account could not
remove (in a sticky directory such as /tmp: only its own entries).  Right before each
unlink the entry is lstat-ed again (as that identity, in C, immediately followed by the
``unlinkat``) and must still be the same inode, type and device, owned by the same uid it
was decided for, without the sticky bit (``Planner.recheck``; ``gx_sweep_recheck`` is the
same check, tested against it).  When the kernel refuses as the owner (the account lost write
permission on a directory, e.g. a root-owned 0755 parent), "preferred" retries as root
after the same re-check, "required" keeps the entry; "never" removes as root after the
re-check.
"""

import contextlib
import errno
import fcntl
import json
import os
import pwd
import socket
import stat
import sys
import time

from glexec_py.core.text import printable as escape_path
from glexec_tools.common import procfs
from glexec_tools.front import admin_record
from glexec_tools.sweep import plan as core

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


class SweepStop(Exception):
    """A cap was reached (runtime or count): the run stops where it is, incomplete."""


class RootRefused(Exception):
    """A sweep root cannot be opened safely (symlink component, not root-owned ...)."""


class LeaseGuard:
    """Runs as: root.  Keeps new leases out while the walker removes an account's files
    (docs/leases.md, "Sweeping and new leases").

    ``hold(uid)`` is a context manager around one removal batch (at most HOLD entries of
    one directory, or one rmdir, or one IPC object): it takes the gridmapdir lock and
    yields ``(True, None)`` if the account is still free (or draining, with
    ``draining_ok``), else ``(False, why)``; no glexec-py grant can give the account to
    anyone while the body runs.  Once an account was found leased it stays "lost" for the
    run (``lost``): no further lock, nothing more of it is removed.  A gridmapdir that
    cannot be read or locked fails closed (nothing removed, ``why`` says so).  Uids
    without an account name cannot be leased (the gridmapdir holds names): no lock.
    Each (forked) process opens its own GridmapDir (POSIX locks belong to a process)."""

    HOLD = 256
    LOCK_TIMEOUT = 30

    def __init__(self, gridmapdir, names, draining_ok, lease_db=None):
        self.path = gridmapdir
        self.lease_db = lease_db       # the PostgreSQL lease store: a row lock instead
        self.names = {u: n for u, n in names.items() if n}
        self.draining_ok = draining_ok
        self.lost = set()
        self._gd = None
        self._pid = None

    def _dir(self):
        if self._gd is None or self._pid != os.getpid():
            from glexec_tools.common.leasestore import open_store
            self._gd = open_store(self.path, self.lease_db, lock_timeout=self.LOCK_TIMEOUT)
            self._pid = os.getpid()
        return self._gd

    @contextlib.contextmanager
    def hold(self, uid):
        if uid in self.lost:
            yield False, "lease granted during the sweep"
            return
        name = self.names.get(uid)
        if name is None:
            yield True, None
            return
        try:
            held = self._dir().hold_unleased(name, draining_ok=self.draining_ok)
            free = held.__enter__()
        except Exception as e:          # SystemFault (lock timeout, unsafe dir), OSError
            yield False, f"cannot check the lease: {getattr(e, 'message', None) or e}"
            return
        try:
            if not free:
                self.lost.add(uid)
                yield False, "lease granted during the sweep"
            else:
                yield True, None
        finally:
            held.__exit__(None, None, None)


class Stats:
    """Per-uid counters of one run."""

    __slots__ = ("removed", "removed_dirs", "kept", "errors", "bytes", "as_root", "ipc")

    def __init__(self):
        self.removed = 0        # non-directories unlinked
        self.removed_dirs = 0
        self.kept = 0           # entries of the uid left in place (young, sticky, excluded ...)
        self.errors = 0
        self.bytes = 0
        self.as_root = 0        # removals that had to be done as root (fallback)
        self.ipc = []           # [(kind, id)]

    def as_dict(self):
        return {"removed": self.removed, "removed_dirs": self.removed_dirs, "kept": self.kept,
                "errors": self.errors, "bytes": self.bytes, "as_root": self.as_root,
                "ipc": [f"{k}:{i}" for k, i in self.ipc]}


def open_root(path):
    """Runs as: root.  An fd of the directory ``path`` (absolute, normalised bytes), opened
    component by component from "/" with O_NOFOLLOW; every component including the root
    must be a directory owned by root (so nobody else can swap a component).  Returns
    (fd, lstat).  RootRefused if not."""
    problem = core._bad_root(path)
    if problem:
        raise RootRefused(problem)
    fd = os.open("/", _O_DIR)
    try:
        for comp in path.split(b"/")[1:]:
            try:
                nfd = os.open(comp, _O_DIR, dir_fd=fd)
            except OSError as e:
                what = e.strerror
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    try:
                        if stat.S_ISLNK(os.lstat(comp, dir_fd=fd).st_mode):
                            what = "a symlink (never followed)"
                    except OSError:
                        pass
                raise RootRefused(f"component {comp.decode('utf-8', 'surrogateescape')!r}: "
                                  f"{what}") from None
            os.close(fd)
            fd = nfd
            st = os.fstat(fd)
            if st.st_uid != 0:
                raise RootRefused(f"component {comp!r} is not owned by root")
        return fd, os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise


def _unescape_mount(s):
    out, i = bytearray(), 0
    while i < len(s):
        if s[i] == 0x5C and i + 3 < len(s) + 0 and s[i + 1:i + 4].isdigit():
            out.append(int(s[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return bytes(out)


def mount_points(root):
    """Runs as: root.  Relative path bytes of every mount point strictly below ``root``
    (from /proc/self/mountinfo; bind mounts included)."""
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            data = f.read()
    except OSError:
        return set()
    out = set()
    prefix = root + b"/"
    for line in data.splitlines():
        f = line.split(b" ")
        if len(f) > 4:
            mp = _unescape_mount(f[4])
            if mp.startswith(prefix):
                out.add(mp[len(prefix):])
    return out


class _Frame:
    __slots__ = ("fd", "rel", "depth", "subdirs", "left", "st", "rmdir", "name", "uid")

    def __init__(self, fd, rel, depth, st, rmdir, name):
        self.fd, self.rel, self.depth, self.st, self.rmdir, self.name = fd, rel, depth, st, rmdir, name
        self.subdirs = []
        self.left = 0          # entries still in the directory after our removals


class Walker:
    """Runs as: root.  One sweep run over several roots; see the module doc.

    ``Walker(uids, gids, *, dry_run, as_owner, deadline, max_removals, emit)``:
    ``uids`` the swept uids, ``gids`` {uid: primary gid} (for the fs identity), ``deadline``
    a ``time.monotonic()`` value, ``emit(root, rel, st, decision)`` called for every
    decision (the dry-run/verbose printer; None = silent), ``guard`` a LeaseGuard (every
    removal batch runs inside ``guard.hold(uid)``).  ``stats`` {uid: Stats}; ``lost``
    the uids found leased during the run.
    """

    def __init__(self, uids, gids, *, dry_run=False, as_owner="preferred", deadline=None,
                 max_removals=None, emit=None, now=None, guard=None):
        self.uids = frozenset(uids)
        self.gids = dict(gids)
        self.dry_run = dry_run
        self.as_owner = as_owner
        self.deadline = deadline
        self.budget = max_removals
        self.emit = emit
        self.now = time.time() if now is None else now
        self.guard = None if dry_run else guard     # LeaseGuard (no lease check: None)
        self.stats = {u: Stats() for u in self.uids}
        self.removals = 0
        self.incomplete = None       # why the run stopped early
        self.unseen = 0              # directories that could not be entered (any owner)
        self._fs = None              # current fs identity (uid) or None = root
        self._native = None
        self._sc = None              # native.SweepScanner of this process (lazy)
        self._recheck_reasons = {}

    # -- identity -------------------------------------------------------------------

    def _become(self, uid, gid):
        """fsuid/fsgid := uid/gid, no supplementary groups.  If that fails the fs identity
        is put back to root before the error propagates (a half-switched identity is never
        left behind; if even that fails, the run cannot go on safely)."""
        if self._fs == uid:
            return
        if self._native is None:
            from glexec_py.effects import native
            self._native = native
        try:
            self._native.set_fs_identity(uid, gid, [])
        except BaseException:
            self._fs = None
            self._native.restore_fs_identity()
            raise
        self._fs = uid

    def _root(self):
        if self._fs is not None:
            self._native.restore_fs_identity()
            self._fs = None

    # -- caps -----------------------------------------------------------------------

    def _tick(self):
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise SweepStop("runtime cap reached")

    def _count(self, n=1):
        self.removals += n
        if self.budget is not None and self.removals >= self.budget:
            raise SweepStop("removal count cap reached")

    # -- the walk -------------------------------------------------------------------

    def sweep(self, rule, workers=1):
        """Sweep one rule's tree.  Raises RootRefused (nothing done) or SweepStop (caps;
        ``incomplete`` is set, the fds are closed).  ``workers`` > 1: the root's
        subdirectories are shared out to that many forked worker processes (each with its
        own fs identity; results come back over a pipe); only without ``emit``."""
        fd, rst = open_root(rule.root)
        planner = core.Planner(rule, self.uids, self.now, rst.st_dev, mount_points(rule.root))
        root = _Frame(fd, b"", -1, rst, False, None)
        try:
            self._scan(planner, root)
            if workers > 1 and len(root.subdirs) > 1 and self.emit is None:
                self._parallel(planner, root, rst, workers)
            else:
                self._loop(planner, [root], rst)
        except SweepStop as e:
            self.incomplete = str(e)
            raise
        finally:
            self._root()
            os.close(fd)

    def _loop(self, planner, stack, rst):
        """Depth-first over the frames' queued subdirectories; the bottom frame (the
        root, ``name`` None) is left open for the caller."""
        rule = planner.rule
        try:
            while stack:
                top = stack[-1]
                if top.subdirs:
                    name, rel, st, d = top.subdirs.pop()
                    self._tick()
                    try:
                        cfd = os.open(name, _O_DIR, dir_fd=top.fd)
                    except OSError as e:
                        self._error(st.st_uid, rule, rel, st, f"cannot open directory: {e.strerror}")
                        top.left += 1
                        continue
                    cst = os.fstat(cfd)
                    if (cst.st_dev, cst.st_ino) != (st.st_dev, st.st_ino) or cst.st_dev != rst.st_dev:
                        os.close(cfd)
                        self._error(st.st_uid, rule, rel, st, "directory replaced during the walk")
                        top.left += 1
                        continue
                    frame = _Frame(cfd, rel, top.depth + 1, st, d.rmdir, name)
                    stack.append(frame)
                    self._scan(planner, frame)
                    continue
                stack.pop()
                self._root()
                if top.name is None:
                    continue
                parent = stack[-1]
                os.close(top.fd)
                top.fd = -1
                if top.rmdir and top.left == 0:
                    if not self._rmdir(planner, parent, top):
                        parent.left += 1
                else:
                    parent.left += 1
                    if top.st.st_uid in self.uids:
                        self.stats[top.st.st_uid].kept += 1
        finally:
            self._root()
            for fr in stack:
                if fr.name is not None and fr.fd >= 0:
                    try:
                        os.close(fr.fd)
                    except OSError:
                        pass

    def _parallel(self, planner, root, rst, workers):
        import json
        import struct
        items = root.subdirs
        root.subdirs = []
        workers = min(workers, len(items))
        budget = None if self.budget is None else max(1, (self.budget - self.removals) // workers)
        qr, qw = os.pipe()
        kids = []
        for _ in range(workers):
            rr, rw = os.pipe()
            pid = os.fork()
            if pid == 0:                                   # worker
                code = 0
                try:
                    os.close(qw)
                    os.close(rr)
                    self.budget, self.removals = budget, 0
                    self.stats = {u: Stats() for u in self.uids}
                    frame = _Frame(root.fd, b"", -1, rst, False, None)
                    while True:
                        b = os.read(qr, 4)
                        if len(b) < 4:
                            break
                        frame.subdirs = [items[struct.unpack("=I", b)[0]]]
                        try:
                            self._loop(planner, [frame], rst)
                        except SweepStop as e:
                            self.incomplete = str(e)
                            break
                    res = {"left": frame.left, "removals": self.removals, "incomplete": self.incomplete,
                           "unseen": self.unseen,
                           "stats": {str(u): s.as_dict() for u, s in self.stats.items()},
                           "lost": sorted(self.lost)}
                    data = json.dumps(res).encode()
                    while data:
                        data = data[os.write(rw, data):]
                except BaseException:
                    code = 1
                finally:
                    os._exit(code)
            os.close(rw)
            kids.append((pid, rr))
        os.close(qr)
        try:
            data = b"".join(struct.pack("=I", i) for i in range(len(items)))
            while data:
                data = data[os.write(qw, data):]
        except BrokenPipeError:
            pass
        finally:
            os.close(qw)
        failed = False
        for pid, rr in kids:
            chunks = []
            while True:
                c = os.read(rr, 65536)
                if not c:
                    break
                chunks.append(c)
            os.close(rr)
            _, status = os.waitpid(pid, 0)
            if status or not chunks:
                failed = True
                continue
            res = json.loads(b"".join(chunks))
            root.left += res["left"]
            self.removals += res["removals"]
            self.unseen += res["unseen"]
            if res["incomplete"] and not self.incomplete:
                self.incomplete = res["incomplete"]
            if self.guard is not None:
                self.guard.lost.update(res.get("lost", ()))
            for u, d in res["stats"].items():
                s = self.stats[int(u)]
                for k in ("removed", "removed_dirs", "kept", "errors", "bytes", "as_root"):
                    setattr(s, k, getattr(s, k) + d[k])
        if failed:
            for s in self.stats.values():
                s.errors += 1
            self.incomplete = self.incomplete or "a worker failed"
        if self.incomplete:
            raise SweepStop(self.incomplete)

    def _error(self, uid, rule, rel, st, why):
        # A directory the walk could not enter may hold entries of any swept uid, whoever
        # owns it: ``unseen`` keeps every swept account from being recorded clean.
        self.unseen += 1
        if uid in self.stats:
            self.stats[uid].errors += 1
        if self.emit:
            self.emit(rule.root, rel, st, core.Decision("error", why))

    def _scanner(self):
        if self._sc is None:
            from glexec_py.effects import native
            self._sc = native.SweepScanner()
            self._recheck_reasons = native.SWEEP_RECHECK
        return self._sc

    def _scan(self, planner, frame):
        """List one directory chunk by chunk (csrc/sweepwalk.c: getdents64 + fstatat
        AT_SYMLINK_NOFOLLOW on the directory fd), decide every entry (the planner), remove
        each chunk's files (batched per owner), queue the subdirectories."""
        fd, prefix, depth = frame.fd, frame.rel, frame.depth + 1
        emit, stats, dry = self.emit, self.stats, self.dry_run
        root = planner.rule.root
        sc = self._scanner()
        Entry = core.Entry
        while True:
            self._tick()
            got = sc.scan(fd)
            if got is None:
                break
            records, names = got
            decisions = planner.decide_entries(prefix, depth, records, names)
            if emit is None and not dry:
                self._chunk(planner, frame, records, names, decisions)
                continue
            batches = {}
            for i, d in enumerate(decisions):
                a = d.action
                if a == "remove":
                    uid = records[i][7]
                    if emit:
                        emit(root, prefix + b"/" + names[i] if prefix else names[i],
                             Entry(records[i]), d)
                    if dry:
                        stats[uid].removed += 1
                        self._count()
                        continue
                    b = batches.get(uid)
                    if b is None:
                        batches[uid] = [i]
                    else:
                        b.append(i)
                    continue
                rel = prefix + b"/" + names[i] if prefix else names[i]
                st = Entry(records[i])
                if emit:
                    emit(root, rel, st, d)
                if a == "descend":
                    frame.subdirs.append((names[i], rel, st, d))
                else:
                    frame.left += 1
                    if a == "keep":
                        stats[st.st_uid].kept += 1
            for uid, idx in batches.items():
                self._remove_batch(planner, frame, uid, idx, records, names)

    def _chunk(self, planner, frame, records, names, decisions):
        """``_scan``'s loop for one chunk without emit or dry run (the common case), in
        comprehensions: removals grouped per owner, the other decisions one by one."""
        rm = [i for i, d in enumerate(decisions) if d.action == "remove"]
        if len(rm) != len(decisions):
            prefix, stats = frame.rel, self.stats
            for i, d in enumerate(decisions):
                a = d.action
                if a == "remove":
                    continue
                if a == "descend":
                    frame.subdirs.append((names[i], prefix + b"/" + names[i] if prefix else names[i],
                                          core.Entry(records[i]), d))
                else:
                    frame.left += 1
                    if a == "keep":
                        stats[records[i][7]].kept += 1
        if not rm:
            return
        owners = {records[i][7] for i in rm}
        if len(owners) == 1:
            batches = {owners.pop(): rm}
        else:
            batches = {}
            for i in rm:
                batches.setdefault(records[i][7], []).append(i)
        for uid, idx in batches.items():
            self._remove_batch(planner, frame, uid, idx, records, names)

    def _keep(self, planner, frame, s, rel, st, why):
        s.kept += 1
        frame.left += 1
        if self.emit:
            self.emit(planner.rule.root, rel, st, core.Decision("keep", why))

    @property
    def lost(self):
        return set(self.guard.lost) if self.guard is not None else set()

    def _remove_batch(self, planner, frame, uid, idx, records, names):
        """Remove the entries ``idx`` of the scanner's current chunk, all of owner ``uid``:
        as that account (fs identity) unless as_owner says otherwise; the C side re-checks
        each entry right before its unlinkat (see csrc/sweepwalk.c).  With a guard, in
        parts of at most LeaseGuard.HOLD entries, each under ``guard.hold(uid)``."""
        if self.budget is not None:
            idx = idx[:max(0, self.budget - self.removals)]
        if not idx:
            return
        if self.guard is None:
            self._remove_part(planner, frame, uid, idx, records, names)
            return
        step = self.guard.HOLD
        for k in range(0, len(idx), step):
            part = idx[k:k + step]
            with self.guard.hold(uid) as (free, why):
                if free:
                    self._remove_part(planner, frame, uid, part, records, names)
                    continue
                s = self.stats[uid]
                for i in part:
                    self._keep(planner, frame, s,
                               frame.rel + b"/" + names[i] if frame.rel else names[i],
                               core.Entry(records[i]), why)

    def _remove_part(self, planner, frame, uid, idx, records, names):
        s = self.stats[uid]
        sc = self._sc
        rel = (lambda i: frame.rel + b"/" + names[i] if frame.rel else names[i])
        owner = self.as_owner != "never"
        fallback = False            # removing as root because the switch failed (counted)
        if owner:
            try:
                self._become(uid, self.gids.get(uid, records[idx[0]][8]))
            except Exception:
                self._root()
                if self.as_owner == "required":
                    for i in idx:
                        self._keep(planner, frame, s, rel(i), core.Entry(records[i]),
                                   "cannot take the owner's fs identity (as_owner: required)")
                    return
                owner, fallback = False, True
        try:
            removed, nbytes, res = sc.unlink(frame.fd, idx, planner.root_dev)
        finally:
            self._root()
        s.removed += removed
        s.bytes += nbytes
        if fallback:
            s.as_root += removed
        done = removed
        if removed != len(idx):
            refused = []
            for i, r in zip(idx, res):
                if r == 0 or r == -errno.ENOENT:          # removed, or vanished meanwhile
                    continue
                if r > 0:                                 # not the object decided on any more
                    self._keep(planner, frame, s, rel(i), core.Entry(records[i]),
                               self._recheck_reasons[r])
                elif owner and -r in _DENIED:
                    refused.append(i)
                else:
                    s.errors += 1
                    frame.left += 1
            if refused and self.as_owner == "required":
                for i in refused:
                    self._keep(planner, frame, s, rel(i), core.Entry(records[i]),
                               "kernel refused removal as the owner (as_owner: required)")
            elif refused:                                 # "preferred": as root, same re-check
                removed, nbytes, res = sc.unlink(frame.fd, refused, planner.root_dev)
                s.removed += removed
                s.as_root += removed
                s.bytes += nbytes
                done += removed
                for i, r in zip(refused, res):
                    if r == 0 or r == -errno.ENOENT:
                        continue
                    if r > 0:
                        self._keep(planner, frame, s, rel(i), core.Entry(records[i]),
                                   self._recheck_reasons[r])
                    else:
                        s.errors += 1
                        frame.left += 1
        if done:
            self._count(done)

    def _rmdir(self, planner, parent, frame):
        """Remove an emptied old directory of a swept uid; True if it is gone."""
        st = frame.st
        uid = st.st_uid
        s = self.stats[uid]
        if self.dry_run:
            s.removed_dirs += 1
            return True
        if self.guard is None:
            return self._rmdir_now(parent, frame, s)
        with self.guard.hold(uid) as (free, why):
            if free:
                return self._rmdir_now(parent, frame, s)
        s.kept += 1                       # the caller counts the directory as left
        if self.emit:
            self.emit(planner.rule.root, frame.rel, st, core.Decision("keep", why))
        return False

    def _rmdir_now(self, parent, frame, s):
        """rmdir after the same kind of re-check (as the owner per as_owner); the fs
        identity is root again on every way out."""
        try:
            return self._rmdir_try(parent, frame, s)
        finally:
            self._root()

    def _rmdir_try(self, parent, frame, s):
        st = frame.st
        uid = st.st_uid
        name = frame.name
        for as_root in ((False, True) if self.as_owner == "preferred" else
                        ((False,) if self.as_owner == "required" else (True,))):
            try:
                if not as_root:
                    self._become(uid, self.gids.get(uid, st.st_gid))
                now_st = os.lstat(name, dir_fd=parent.fd)
                if now_st.st_uid != uid or (now_st.st_dev, now_st.st_ino) != (st.st_dev, st.st_ino):
                    s.kept += 1
                    return False
                os.rmdir(name, dir_fd=parent.fd)
            except FileNotFoundError:
                return True
            except OSError as e:
                self._root()
                if e.errno in _DENIED and not as_root:
                    continue
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    s.kept += 1
                else:
                    s.errors += 1
                return False
            except Exception:
                self._root()
                continue
            self._root()
            s.removed_dirs += 1
            s.as_root += as_root
            self._count()
            return True
        s.kept += 1
        return False


# --- SysV IPC ---------------------------------------------------------------------------

_IPC_RMID = 0


def sysv_objects(proc="/proc/sysvipc"):
    """Runs as: root.  [(kind, id, uid, cuid)] for shm, msg and sem.  OSError when a table
    cannot be read, ValueError when it cannot be parsed: never "no objects" for "not seen"."""
    out = []
    for kind in ("shm", "msg", "sem"):
        with open(f"{proc}/{kind}", "r", encoding="ascii", errors="replace") as f:
            text = f.read()
        out += [(kind, i, u, c) for i, u, c in core.parse_sysvipc(kind, text)]
    return out


def remove_sysv(kind, ident, uids, proc="/proc/sysvipc"):
    """Runs as: root.  IPC_RMID on one object after re-reading that it is still owned or
    created by one of ``uids`` (ids are not reused quickly, but check anyway).  Returns
    None on success or a reason."""
    import ctypes
    try:
        still = [o for o in sysv_objects(proc) if o[0] == kind and o[1] == ident
                 and (o[2] in uids or o[3] in uids)]
    except (OSError, ValueError) as e:
        return f"cannot re-read {proc}: {e}"
    if not still:
        return "gone"
    libc = ctypes.CDLL(None, use_errno=True)
    if kind == "shm":
        r = libc.shmctl(ctypes.c_int(ident), _IPC_RMID, None)
    elif kind == "msg":
        r = libc.msgctl(ctypes.c_int(ident), _IPC_RMID, None)
    else:
        r = libc.semctl(ctypes.c_int(ident), 0, _IPC_RMID)
    if r != 0:
        e = ctypes.get_errno()
        return "gone" if e in (errno.EINVAL, errno.EIDRM) else os.strerror(e)
    return None


# --- POSIX message queues ---------------------------------------------------------------

MQUEUE_MAGIC = 0x19800202      # statfs f_type of the mqueue file system
_CLONE_NEWNS, _MS_REC, _MS_PRIVATE = 0x00020000, 0x4000, 1 << 18
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8


def fs_type(path):
    """Runs as: root.  statfs(2) f_type of ``path`` (bytes), None if it cannot be stat'ed."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(512)          # struct statfs: f_type comes first
    if libc.statfs(ctypes.c_char_p(path), buf) != 0:
        return None
    return ctypes.c_long.from_buffer(buf).value


def private_mqueue(path):
    """Runs as: root.  Mounts a fresh instance of the mqueue file system at ``path`` (bytes;
    created root 0700 if missing) inside a new, private mount namespace of this process,
    and returns ``path``.  The queues of a POSIX mqueue mount are those of the IPC
    namespace of the process that mounted it, so this instance shows exactly the queues
    this process could mq_open (the IPC namespace /proc/sysvipc shows), whether or not
    /dev/mqueue is mounted anywhere.  Nobody outside sees the mount; it ends with the
    process.  Must be called before any thread or worker exists (unshare(CLONE_NEWNS)
    needs an unshared fs context).  OSError if any step fails."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)

    def check(r, what):
        if r != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"{what}: {os.strerror(e)}")
    check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate /")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
        raise OSError(errno.EPERM, f"{path!r} is not a root-owned 0700 directory")
    check(libc.mount(b"mqueue", path, b"mqueue", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None),
          "mount -t mqueue")
    if fs_type(path) != MQUEUE_MAGIC:
        raise OSError(errno.EIO, "the private mqueue mount is not an mqueue file system")
    return path


# --- processes ----------------------------------------------------------------------------

# --- run lock and state records ----------------------------------------------------------

def ensure_private_dir(path):
    """Runs as: root.  ``path`` as a root-owned 0700 directory (created if missing);
    refuses a symlink or a foreign/writable one.  Returns an fd."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    fd = os.open(path, _O_DIR)
    st = os.fstat(fd)
    if st.st_uid != 0 or st.st_mode & 0o077:
        os.close(fd)
        raise PermissionError(f"{path} must be a root-owned 0700 directory")
    return fd


class RunLock:
    """Runs as: root.  An exclusive, non-blocking flock on a root-owned file: a second
    glexec-sweep while one runs gets ``BlockingIOError`` from ``acquire`` (it must refuse,
    never wait: cron would pile runs up).  Released when the process exits."""

    def __init__(self, dir_fd, name=".lock"):
        self.fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                          dir_fd=dir_fd)
        st = os.fstat(self.fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_nlink != 1:
            os.close(self.fd)
            raise PermissionError("lock file is not a private root-owned regular file")

    def acquire(self):
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(self.fd, 0)
        os.write(self.fd, b"%d\n" % os.getpid())

    def release(self):
        os.close(self.fd)


def write_state(dir_fd, account, data):
    """Runs as: root.  ``<state_dir>/sweep/<account>.json`` replaced atomically (temp file
    O_EXCL 0600, fsync, rename, fsync of the directory)."""
    if not account or "/" in account or account.startswith(".") or "\0" in account:
        raise ValueError(f"bad account name {account!r}")
    tmp = f".{account}.json.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                 dir_fd=dir_fd)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, f"{account}.json", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    os.fsync(dir_fd)


# --- the run -------------------------------------------------------------------------------

PROG = "glexec-sweep"
EXIT_CLEAN, EXIT_LEFT, EXIT_USAGE, EXIT_LOCKED, EXIT_FAIL = 0, 1, 2, 3, 4


def lookup_uid(name):
    """Runs as: any user (reads passwd).  The uid of account ``name``, or None."""
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def prefix_accounts(prefix):
    """Runs as: any user (reads passwd).  {uid: name} of the accounts named ``prefix`` +
    digits (a ".prefix" pool)."""
    return {e.pw_uid: e.pw_name for e in pwd.getpwall()
            if e.pw_name.startswith(prefix) and e.pw_name[len(prefix):].isdigit()
            and e.pw_name[len(prefix):].isascii()}


def account_names(uids):
    """Runs as: any user (reads passwd).  {uid: (name or None, primary gid or None)}."""
    out = {}
    for u in uids:
        try:
            pw = pwd.getpwuid(u)
            out[u] = (pw.pw_name, pw.pw_gid)
        except KeyError:
            out[u] = (None, None)
    return out


def lease_holders(gridmapdir, lease_db=None):
    """Runs as: root.  (accounts with a complete lease, those of them marked draining),
    from the gridmapdir or, with ``lease_db``, the PostgreSQL lease store."""
    if not gridmapdir and not lease_db:
        return set(), set()
    from glexec_tools.common.leasestore import open_store
    with open_store(gridmapdir, lease_db) as gd:
        leases = gd.leases()
    held, draining = set(), set()
    for _lease, (account, rec, _mtime) in leases.items():
        a = account.decode("utf-8", "surrogateescape") if isinstance(account, bytes) else account
        held.add(a)
        if rec and rec.get("state") == "draining":
            draining.add(a)
    return held, draining


def _now_iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int(t % 1 * 1e6)


def run(cfg, options, printer, out):
    """Runs as: root.  One sweep of the configuration's pool: who may be swept (no lease,
    no process), the walk of every root and of the IPC namespaces, the audit and state
    record of each swept account.  ``options``: dry_run, verbose, json, account, uid (lists).
    Returns (exit status, summary dict); refusals before anything is removed raise
    ToolError."""
    from glexec_tools.front import ToolError
    args = options
    t0 = time.monotonic()
    now = time.time()
    try:
        pool = core.resolve_pool(cfg.pool, lookup_uid, cfg.min_uid, prefix_accounts)
    except core.ConfigProblem as e:
        raise ToolError(e.what) from None
    names = account_names(pool)
    wanted = set(pool)
    if args.account or args.uid:
        wanted = set()
        for a in args.account:
            u = lookup_uid(a)
            if u is None or u not in pool:
                raise ToolError(f"--account {a}: not a pool account of this configuration")
            wanted.add(u)
        for u in args.uid:
            if u not in pool:
                raise ToolError(f"--uid {u}: not in the pool of this configuration")
            wanted.add(u)

    # run lock and state dir
    state = cfg.state_dir.rstrip("/") + "/sweep"
    try:
        sfd = ensure_private_dir(state)
    except OSError as e:            # the path once: str(e) would repeat it
        raise ToolError(f"state directory {state}: {e.strerror or e}", EXIT_FAIL) from None
    try:
        lock = RunLock(sfd) if not cfg.lock_file else _lock_at(cfg.lock_file)
        lock.acquire()
    except BlockingIOError:
        raise ToolError(f"another {PROG} is running (lock held); refusing", EXIT_LOCKED) from None
    except OSError as e:
        raise ToolError(f"lock {cfg.lock_file or state + '/.lock'}: {e.strerror or e}",
                        EXIT_FAIL) from None

        # who may be swept
    try:
        held, draining = lease_holders(cfg.gridmapdir, getattr(cfg, "lease_db", None))
    except Exception as e:   # an unreadable lease store: sweep nobody
        raise ToolError(f"cannot read the gridmapdir: {getattr(e, 'message', e)}", EXIT_FAIL) from None
    busy = procfs.uids_with_processes()
    sweep_uids, spared = {}, {}
    for u in sorted(wanted):
        name, gid = names[u]
        ok, why = core.account_verdict(u, name, leases=held, processes=busy, draining=draining,
                                       sweep_draining=cfg.sweep_draining)
        (sweep_uids if ok else spared)[u] = why
        if args.dry_run or args.verbose:
            printer.account(name, u, ok, why)

    emit = printer.decision if (args.dry_run or args.verbose) else None
    # a lease granted while we sweep: every removal batch re-checks the account's lease
    # under the gridmapdir lock and holds the lock while it removes (docs/leases.md)
    lease_db = getattr(cfg, "lease_db", None)
    guard = LeaseGuard(cfg.gridmapdir, {u: names[u][0] for u in sweep_uids},
                       cfg.sweep_draining, lease_db) if cfg.gridmapdir or lease_db else None
    walker = Walker(set(sweep_uids), {u: names[u][1] for u in sweep_uids if names[u][1] is not None},
                         dry_run=args.dry_run, as_owner=cfg.as_owner,
                         deadline=t0 + cfg.max_runtime, max_removals=cfg.max_removals,
                         emit=emit, now=now, guard=guard)
    rules = list(cfg.rules)
    # Object classes this run cannot inspect (nobody is then "no_files": an object not seen
    # is not an object gone), and those the configuration opts out of (named in the records).
    unchecked = {}
    not_swept = [k for k, on in (("devshm", cfg.devshm_dir), ("mqueue", cfg.mqueue_dir),
                                 ("sysv", cfg.sysv_ipc)) if not on]
    failures = []
    if sweep_uids:
        if cfg.devshm_dir:
            if os.path.isdir(cfg.devshm_dir):
                rules.append(core.Rule(cfg.devshm_dir, 0, "", "", types=core.DEFAULT_TYPES, kind="devshm"))
            else:
                unchecked["devshm"] = f"{cfg.devshm_dir} is not a directory"
        if cfg.mqueue_dir:
            where, why = mqueue_root(cfg)
            if where is None:
                unchecked["mqueue"] = why
            else:
                rules.append(core.Rule(where, 0, "", "", types=("file",), remove_dirs=False,
                                       max_depth=0, kind="mqueue"))
        for rule in rules:
            try:
                walker.sweep(rule, workers=(cfg.workers or min(4, os.cpu_count() or 1))
                             if rule.kind == "dir" else 1)
            except RootRefused as e:
                failures.append(f"{rule.root.decode('utf-8', 'surrogateescape')}: {e}")
                sys.stderr.write(f"{PROG}: refusing root {escape_path(rule.root)}: {e}\n")
            except SweepStop:
                break
            except OSError as e:
                failures.append(f"{rule.root!r}: {e}")
                sys.stderr.write(f"{PROG}: {escape_path(rule.root)}: {e.strerror}\n")
        if walker.unseen:
            unchecked["files"] = f"{walker.unseen} directories could not be entered"
        if cfg.sysv_ipc and walker.incomplete is None:
            try:
                objects = sysv_objects()
            except (OSError, ValueError) as e:
                unchecked["sysv"] = f"cannot read /proc/sysvipc: {e}"
                objects = []
            for kind, ident, why in core.plan_ipc(objects, set(sweep_uids)):
                objs = [o for o in objects if o[0] == kind and o[1] == ident]
                owner = objs[0][2] if objs and objs[0][2] in sweep_uids else (objs[0][3] if objs else None)
                if emit:
                    out.write(json.dumps({"ipc": kind, "id": ident, "uid": owner, "action": "remove",
                                          "reason": why}) + "\n" if args.json else
                              f"remove  uid={owner!s:<6} sysv-{kind}:{ident}  # {why}\n")
                if owner not in walker.stats:
                    continue
                if args.dry_run:
                    walker.stats[owner].ipc.append((kind, ident))
                    continue
                if guard is None:
                    r = remove_sysv(kind, ident, set(sweep_uids))
                else:
                    with guard.hold(owner) as (free, _why):
                        r = remove_sysv(kind, ident, set(sweep_uids)) if free else "kept"
                if r == "kept":
                    walker.stats[owner].kept += 1
                elif r is None:
                    walker.stats[owner].ipc.append((kind, ident))
                elif r != "gone":
                    walker.stats[owner].errors += 1

    # the lease may have been granted while we swept: never mark such an account
    try:
        held_after, draining_after = lease_holders(cfg.gridmapdir, getattr(cfg, "lease_db", None))
    except Exception:
        held_after, draining_after = held, draining
    busy_after = procfs.uids_with_processes()
    status = EXIT_CLEAN
    accounts_out = []
    host = socket.gethostname()
    for u in sorted(sweep_uids):
        name = names[u][0] or str(u)
        s = walker.stats[u]
        regranted = (name in held_after and not (name in draining_after and cfg.sweep_draining)) \
            or u in busy_after or u in walker.lost
        clean = (s.kept == 0 and s.errors == 0 and walker.incomplete is None and not failures
                 and not regranted and not unchecked)
        state = "no_files" if clean else "files_remain"
        why = ("lease granted or process started during the sweep" if regranted
               else walker.incomplete or ("roots refused" if failures else
                                          ("cannot inspect " + ", ".join(sorted(unchecked)) if unchecked else
                                           ("errors" if s.errors else ("files kept" if s.kept else "clean")))))
        if not clean:
            status = EXIT_LEFT
        acc = {"account": name, "uid": u, "state": state, "why": why, **s.as_dict(),
               "unchecked": unchecked, "not_swept": not_swept}
        accounts_out.append(acc)
        if args.dry_run:
            continue
        rec = {"time": _now_iso(time.time()), "host": host, "account": name, "uid": u, "state": state, "why": why,
               "roots": [r.root for r in rules], **s.as_dict(),
               "unchecked": unchecked, "not_swept": not_swept, "sweep_reason": sweep_uids[u]}
        try:
            if cfg.audit_file:
                rec = admin_record(cfg.audit_file, PROG, "sweep", rec)
            # the state record is written after the audit record: the lifecycle only
            # sees "no_files" once the removal is on record.
            state_rec = {"v": 1, "account": name, "uid": u, "state": state, "why": why,
                         "swept_at": rec["time"], "swept_at_unix": round(now, 6), "host": host,
                         "removed": s.removed + s.removed_dirs, "kept": s.kept, "errors": s.errors,
                         "ipc_removed": len(s.ipc), "unchecked": unchecked, "not_swept": not_swept}
            write_state(sfd, name, (json.dumps(state_rec, sort_keys=True) + "\n").encode())
        except Exception as e:
            raise ToolError(f"cannot record the sweep of {name}: {getattr(e, 'message', e)}",
                            EXIT_FAIL) from None
    if failures:
        status = EXIT_FAIL
    summary = {"summary": True, "dry_run": args.dry_run, "seconds": round(time.monotonic() - t0, 3),
               "incomplete": walker.incomplete, "refused_roots": failures,
               "unchecked": unchecked, "not_swept": not_swept,
               "spared": [{"account": names[u][0], "uid": u, "why": w} for u, w in spared.items()],
               "swept": accounts_out, "exit": status}
    return status, summary


def mqueue_root(cfg):
    """Runs as: root.  (directory bytes, None) where this run sees the POSIX message queues
    of its IPC namespace, or (None, why) if it cannot see them.  The configured
    ``mqueue_dir`` when an mqueue file system is mounted there; else (typically no
    /dev/mqueue at all: the queues exist all the same) a private instance mounted in a
    private mount namespace of this process, under the state directory."""
    path = cfg.mqueue_dir.encode("utf-8", "surrogateescape")
    if fs_type(path) == MQUEUE_MAGIC:
        return path, None
    private = (cfg.state_dir.rstrip("/") + "/sweep/.mqueue").encode("utf-8", "surrogateescape")
    try:
        return private_mqueue(private), None
    except OSError as e:
        return None, f"{cfg.mqueue_dir} is not an mqueue mount and a private one failed: {e.strerror or e}"


def _lock_at(path):
    d, _, name = path.rpartition("/")
    dfd = ensure_private_dir(d or "/")
    try:
        return RunLock(dfd, name)
    finally:
        os.close(dfd)
