"""One NFS client process (one "node") for the concurrency checks of test_ganesha.py:

    python3 -m tests.nfs.worker TARGET OP WORKER ROUNDS AT GAP

connects to TARGET (``ganesha.Server.target``; its own NFS client id), prepares the names
OP's rounds need, waits until CLOCK_MONOTONIC ``AT`` (shared by all processes of this
host), does round i of OP at ``AT + i*GAP`` so every worker's round i starts together, and
prints one JSON line: ``{"results": [...]}``."""
import errno
import json
import os
import sys
import time

from tests.nfs.libnfs import F_UNLCK, Client


def _until(t):
    while True:
        left = t - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.01))


def _err(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def _new(c, path, mode=0o644):
    """Create an empty file unless it exists (several workers prepare the same names)."""
    try:
        c.close_fh(c.create(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
    except FileExistsError:
        pass


def link_race(c, w, i):
    """Every worker links its own entry to the same lease name: the lease-name race."""
    try:
        c.link(f"/race{i}.e{w}", f"/race{i}.lease")
        return "won"
    except OSError as e:
        return _err(e)


def link_check(c, w, i):
    """Every worker links the same free entry to its own lease name (mappers without the
    lock), then does gridmapdir's post-link check: same inode, both counts exactly 2."""
    entry, lease = f"/check{i}.entry", f"/check{i}.lease{w}"
    try:
        c.link(entry, lease)
    except OSError as e:
        return _err(e)
    lst, est = c.lstat_or_none(lease), c.lstat_or_none(entry)
    if lst and est and lst.st_ino == est.st_ino and lst.st_nlink == 2 and est.st_nlink == 2:
        return "won"
    c.unlink(lease)
    return "backed_off"


def excl(c, w, i):
    """Every worker creates the same name with O_CREAT|O_EXCL."""
    try:
        c.close_fh(c.create(f"/excl{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return "won"
    except OSError as e:
        return _err(e)


def report(c, w, i):
    """The directory as the server lists it: ``[[name, d_ino, st_ino, st_nlink], ...]``."""
    return [[n, d_ino, st.st_ino, st.st_nlink] for n, d_ino in c.listdir("/")
            if n not in (".", "..") for st in [c.lstat("/" + n)]]


def basics(c, w, i):
    """The single-client sequence of test_ganesha's link/unlink/utime checks, for a server
    the test process cannot reach (NFSv3 in its namespace): what each step observed."""
    seen = {}
    for n in ("/b.pool1", "/b.pool2"):
        c.close_fh(c.create(n, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    c.link("/b.pool1", "/b.lease1")
    lst, est = c.lstat("/b.lease1"), c.lstat("/b.pool1")
    seen["linked"] = [lst.st_ino == est.st_ino, lst.st_nlink, est.st_nlink, lst.is_reg(),
                      lst.st_uid]
    for key, f in (("link_exists", lambda: c.link("/b.pool2", "/b.lease1")),
                   ("link_gone", lambda: c.link("/b.nothing", "/b.lease3")),
                   ("unlink_gone", lambda: c.unlink("/b.lease3")),
                   ("excl_exists", lambda: c.create("/b.pool2", os.O_WRONLY | os.O_CREAT
                                                    | os.O_EXCL, 0o600))):
        try:
            f()
            seen[key] = "ok"
        except OSError as e:
            seen[key] = _err(e)
    seen["other_count"] = c.lstat("/b.pool2").st_nlink
    c.utime("/b.lease1", 1_700_000_000_123_456)
    seen["mtime"] = [c.lstat("/b.lease1").st_mtime_ns, c.lstat("/b.pool1").st_mtime_ns]
    c.unlink("/b.lease1")
    seen["released"] = [c.lstat_or_none("/b.lease1") is None, c.lstat("/b.pool1").st_nlink]
    return seen


def try_lock(target, path, name):
    """One F_SETLK attempt on ``path`` from a fresh client: (client, open file) holding the
    lock, or None if another client holds it.  Fresh each time because libnfs 4.0.0 does
    not advance the NFSv4.0 open seqid after a refused or released LOCK (the server then
    answers NFS4ERR_BAD_SEQID / OLD_STATEID to that open's next request)."""
    c = Client.connect(target, name)
    try:
        fh = c.open(path, os.O_RDWR)
        c.lock(fh)
        return c, fh
    except OSError as e:
        c.close()
        if "NFS4ERR_DENIED" in str(e):           # libnfs maps it to an odd errno (ERANGE)
            return None
        raise


def lock_polling(target, path, timeout=60.0):
    """What gridmapdir's ``_lock_polling`` does: F_SETLK retried with a growing sleep.
    (libnfs's F_SETLKW does not wait: NFSv4.0 has no lock callback, clients poll.)"""
    deadline, delay, n = time.monotonic() + timeout, 0.0002, 0
    while True:
        n += 1
        got = try_lock(target, path, f"glexec-nfscheck-{os.getpid()}-{time.monotonic_ns()}")
        if got is not None:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"lock on {path} not granted in {timeout} s ({n} attempts)")
        time.sleep(delay)
        delay = min(delay * 2, 0.005)


def counter(target, w, i):
    """One critical section on the shared ``/counter`` file, the way the gridmapdir updates
    its ``.state`` under the lock: lock, pread, pwrite + ftruncate, fsync, unlock."""
    t0 = time.monotonic()
    c, fh = lock_polling(target, "/counter")
    try:
        waited = time.monotonic() - t0
        raw = c.pread(fh, 64, 0)
        value = int(raw) if raw else 0
        data = b"%d\n" % (value + 1)
        c.pwrite(fh, data, 0)
        c.ftruncate(fh, len(data))
        c.fsync(fh)
        c.lock(fh, F_UNLCK)
        return waited
    finally:
        c.close()


def hold(target, w, i):
    """Take the lock on ``/held.lock`` and keep it until killed."""
    lock_polling(target, "/held.lock")
    print(json.dumps({"held": True}), flush=True)
    time.sleep(3600)


OPS = {"link_race": link_race, "link_check": link_check, "excl": excl, "report": report,
       "basics": basics}
# names each op's rounds use, made before the start so that the rounds race only on links
PREPARE = {"link_race": lambda c, w, i: _new(c, f"/race{i}.e{w}"),
           "link_check": lambda c, w, i: _new(c, f"/check{i}.entry")}
PER_SECTION = {"counter": counter, "hold": hold}   # a fresh client per lock


def main(argv):
    target, op, w, rounds, at, gap = (argv[0], argv[1], int(argv[2]), int(argv[3]),
                                    float(argv[4]), float(argv[5]))
    results = []
    if op in PER_SECTION:
        _until(at)
        for i in range(rounds):
            results.append(PER_SECTION[op](target, w, i))
    else:
        c = Client.connect(target, f"glexec-nfscheck-{os.getpid()}")
        for i in range(rounds):
            if op in PREPARE:
                PREPARE[op](c, w, i)
        for i in range(rounds):
            _until(at + i * gap)
            results.append(OPS[op](c, w, i))
        c.close()
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main(sys.argv[1:])
