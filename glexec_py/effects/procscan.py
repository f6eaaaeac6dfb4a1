"""The /proc snapshot for prune-users (``glexec_py.core.prune.Snapshot``).

Reads /proc directly rather than through psutil: one ``Process`` object per pid and its
attribute caching cost ~10x more than the three small reads done here (bench/prune.py
prints both).  Per pid the directory ``/proc/PID`` is opened once and ``stat``, ``status``
and (only for processes that have a uid of interest) ``cgroup`` are read *relative to that
directory fd*: all three describe the same process even if the pid is reused meanwhile
(reads through the fd of a dead process fail with ESRCH and the pid is skipped).

``stat`` is parsed from the last ')' (comm may contain ')' and newlines).
"""
import os

from glexec_py.core.prune import PF_KTHREAD, Proc, Snapshot, parse_stat, parse_status_uids

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
_O_RD = os.O_RDONLY | os.O_CLOEXEC
HZ = os.sysconf("SC_CLK_TCK")


def uptime(proc="/proc"):
    """Runs as: any user. Seconds since boot (``/proc/uptime``, CLOCK_BOOTTIME)."""
    with open(f"{proc}/uptime", "rb") as f:
        return float(f.read().split()[0])


def _read(name, dfd, size=4096):
    fd = os.open(name, _O_RD, dir_fd=dfd)
    try:
        data = os.read(fd, size)
        if len(data) == size:                 # rare: long status/cgroup; read the rest
            parts = [data]
            while True:
                more = os.read(fd, 65536)
                if not more:
                    break
                parts.append(more)
            data = b"".join(parts)
        return data
    finally:
        os.close(fd)


def read_proc(pid, want_cgroup=True, proc="/proc"):
    """Runs as: root (other users' cgroup/status are readable too, but hidepid= may hide
    them). One ``Proc`` for ``pid`` or None if it is gone or unreadable."""
    try:
        dfd = os.open(f"{proc}/{pid}", _O_DIR)
    except OSError:
        return None
    try:
        return _read_dfd(dfd, want_cgroup)
    except (OSError, ValueError, IndexError):
        return None
    finally:
        os.close(dfd)


def _read_dfd(dfd, want_cgroup):
    pid, comm, state, ppid, flags, start = parse_stat(_read("stat", dfd, 2048))
    ruid, euid, suid = parse_status_uids(_read("status", dfd))
    cg = None
    if want_cgroup is True or (want_cgroup and (ruid in want_cgroup or euid in want_cgroup
                                                or suid in want_cgroup)):
        cg = tuple(_read("cgroup", dfd).decode("latin-1").splitlines())
    return Proc(pid, ppid, ruid, euid, suid, start, comm, state, flags, cg)


def read_cmdline(pid, proc="/proc", limit=4096):
    """Runs as: root. argv of ``pid`` as a list of bytes (empty if gone/kernel thread),
    at most ``limit`` bytes read (the audit record caps it anyway)."""
    try:
        fd = os.open(f"{proc}/{pid}/cmdline", _O_RD)
    except OSError:
        return []
    try:
        data = os.read(fd, limit)
    except OSError:
        return []
    finally:
        os.close(fd)
    return data.rstrip(b"\0").split(b"\0") if data else []


def scan(uids=(), names=(), full=False, proc="/proc"):
    """Runs as: root. A ``Snapshot`` of every process (thread-group leaders) in /proc.

    Fast path (``full=False``), per pid: open ``stat``, ``fstat`` it (the owner of a
    /proc/PID entry is the process's euid if it is dumpable, root otherwise), read it.  The
    ``status`` (real/effective/saved uids) and ``cgroup`` files are read only when needed:

    * owner root (root processes *and* every non-dumpable process, so a stray cannot hide by
      making itself non-dumpable or exec'ing a setuid program) -> status;
    * comm in ``names`` (job daemons, sshd: the planner needs their exact real uid) -> status;
    * otherwise (``uids``: any container, e.g. a ``core.prune.Scope``) left partial (``Proc.full`` False, uids = owner); a kill
      decision on it is confirmed by ``complete`` before anything is signalled.

    ``full=True`` reads status and cgroup of every process (used right before kill(-1)).
    ``uptime`` is read before the walk, so ages are never overestimated."""
    up = uptime(proc)
    procs = {}
    names = frozenset(n.encode("latin-1") if isinstance(n, str) else n for n in names)
    if not hasattr(uids, "__contains__"):
        uids = frozenset(uids)
    opn, cls, rd, fst = os.open, os.close, os.read, os.fstat
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            if full:
                dfd = opn(f"{proc}/{name}", _O_DIR)
                try:
                    p = _read_dfd(dfd, True)
                finally:
                    cls(dfd)
                if p is not None:
                    procs[p.pid] = p
                continue
            fd = opn(f"{proc}/{name}/stat", _O_RD)
            try:
                owner = fst(fd).st_uid
                data = rd(fd, 2048)
            finally:
                cls(fd)
            pid, comm, state, ppid, flags, start = parse_stat(data)
            if flags & PF_KTHREAD:
                procs[pid] = Proc(pid, ppid, 0, 0, 0, start, comm, state, flags, None, True)
            elif owner == 0 or comm in names:
                # by path, not through a directory fd: the snapshot is advisory (a pid reused
                # between the reads can only make a decision wrong here, and every kill
                # decision is re-read through a pidfd-confirmed /proc entry before a signal)
                fd = opn(f"{proc}/{name}/status", _O_RD)
                try:
                    st = rd(fd, 4096)
                finally:
                    cls(fd)
                ruid, euid, suid = parse_status_uids(st)
                cg = None
                if ruid in uids or euid in uids or suid in uids:
                    fd = opn(f"{proc}/{name}/cgroup", _O_RD)
                    try:
                        cg = tuple(rd(fd, 65536).decode("latin-1").splitlines())
                    finally:
                        cls(fd)
                procs[pid] = Proc(pid, ppid, ruid, euid, suid, start, comm, state, flags, cg,
                                  True)
            else:
                procs[pid] = Proc(pid, ppid, owner, owner, owner, start, comm, state, flags,
                                  None, False)
        except (OSError, ValueError, IndexError):
            continue
    return Snapshot(procs, up, HZ)


def complete(snap, pids, proc="/proc"):
    """Runs as: root. Re-read ``pids`` in full (status + cgroup through one /proc/PID
    directory fd) and put them into ``snap``; a pid that is gone or now belongs to a process
    with another start time is dropped from the snapshot (the next round sees the new one).
    Returns the number of processes completed."""
    n = 0
    for pid in pids:
        old = snap.procs.get(pid)
        p = read_proc(pid, want_cgroup=True, proc=proc)
        if p is None or old is None or p.starttime != old.starttime:
            snap.procs.pop(pid, None)
            continue
        snap.procs[pid] = p
        n += 1
    return n
