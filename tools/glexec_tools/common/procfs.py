"""The site tools' one /proc reader: the boot id, the uids that have processes (leases,
sweep), and the process snapshot of prune-users (``glexec_tools.prune.plan.Snapshot``).
Every reader takes ``proc``, the /proc root (tests and containers pass another).

Reads /proc directly rather than through psutil: one ``Process`` object per pid and its
attribute caching cost ~10x more than the reads done here (bench/prune.py prints both).
``scan`` reads one file per process (``stat``, plus the owner of its /proc entry) and the
exact uids only of root-owned entries and job daemons; ``read_proc``/``complete`` read a
process in full: ``stat``, ``status`` and ``cgroup`` *relative to one /proc/PID directory
fd*, so all three describe the same process even if the pid is reused meanwhile (reads
through the fd of a dead process fail with ESRCH and the pid is skipped).

``stat`` is parsed from the last ')' (comm may contain ')' and newlines).
"""
import errno
import fcntl
import os
import struct

from glexec_tools.prune.plan import (PF_KTHREAD, Proc, Snapshot, gc_paused, parse_stat,
                                  parse_status_uids)

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
_O_RD = os.O_RDONLY | os.O_CLOEXEC
HZ = os.sysconf("SC_CLK_TCK")


def boot_id(proc="/proc"):
    """Runs as: any user.  This boot's id (``sys/kernel/random/boot_id``), or None: state
    records of another boot never count (the engine has its own copy on the setuid path)."""
    try:
        with open(f"{proc}/sys/kernel/random/boot_id", "rb") as f:
            return f.read(64).strip().decode("ascii", "replace") or None
    except OSError:
        return None


def uids_with_processes(proc="/proc"):
    """Runs as: root.  Every uid that is the real, effective, saved or fs uid of a live
    process (threads included via their process)."""
    out = set()
    root = os.fsencode(proc)
    for name in os.listdir(root):
        if not name.isdigit():
            continue
        try:
            fd = os.open(root + b"/" + name + b"/status", _O_RD)
        except OSError:
            continue                   # exited meanwhile
        try:
            data = os.read(fd, 16384)
        except OSError:
            continue
        finally:
            os.close(fd)
        i = data.find(b"\nUid:")
        j = data.find(b"\n", i + 5)
        if i < 0 or j < 0:
            continue
        try:
            out.update(int(x) for x in data[i + 5:j].split()[:4])
        except ValueError:
            continue
    return out


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


# PIDFD_GET_INFO (Linux 6.13+): _IOWR(0xFF, 11, struct pidfd_info), its first version (64
# bytes): u64 mask, u64 cgroupid, u32 pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid,
# fsuid, fsgid, s32 exit_code.  The kernel always reports the credentials (mask bit 1).
_PIDFD_GET_INFO = 0xC040FF0B
_PIDFD_INFO = struct.Struct("=Q8xI8xI4xI4xI")      # mask, pid, ruid, euid, suid
_PIDFD_INFO_CREDS = 2
_pidfd_info_ok = [True]      # cleared for good once the kernel says it has no such ioctl


def _pidfd_uids(pid):
    """(ruid, euid, suid) of ``pid`` through a pidfd: three cheap syscalls instead of the
    kernel formatting the whole status file.  None when this gives no answer (no such
    ioctl - then it is not tried again -, the process is gone, any other error): the
    caller reads status instead, which also tells whether the process is gone."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    buf = bytearray(64)
    try:
        fcntl.ioctl(fd, _PIDFD_GET_INFO, buf, True)
    except OSError as e:
        if e.errno in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
            _pidfd_info_ok[0] = False
        return None
    finally:
        os.close(fd)
    mask, ipid, ruid, euid, suid = _PIDFD_INFO.unpack_from(buf)
    if ipid != pid or not mask & _PIDFD_INFO_CREDS:
        return None
    return ruid, euid, suid


def _own_pid_namespace(proc):
    """True if ``proc`` is a procfs of this process's pid namespace (so that a pid read
    from it names the same process for pidfd_open)."""
    try:
        return os.readlink(f"{proc}/self") == str(os.getpid())
    except OSError:
        return False


def scan(uids=(), names=(), full=False, proc="/proc"):
    """Runs as: root. A ``Snapshot`` of every process (thread-group leaders) in /proc.

    Fast path (``full=False``), per pid: open ``stat``, ``fstat`` it (the owner of the files
    in /proc/PID is the process's euid if it is dumpable, root otherwise; the directory
    itself always shows the euid, so it would not do), read it: one
    open+fstat+read+close per process, which is most of the cost (the kernel formats the
    stat line).  The real/effective/saved uids are read only when needed:

    * owner root (root processes *and* every non-dumpable process, so a stray cannot hide by
      making itself non-dumpable or exec'ing a setuid program) -> exact uids;
    * comm in ``names`` (job daemons, sshd: the planner needs their exact real uid) -> exact
      uids;
    * otherwise the uids are the owner.

    Exact uids come from PIDFD_GET_INFO on a pidfd where the kernel has it (6.13+) and
    ``proc`` is this pid namespace's procfs, else from ``status``.  ``cgroup`` is not read
    here: every process of the fast path is partial (``Proc.full`` False) and a kill
    decision on it is confirmed by ``complete`` (status + cgroup through one /proc/PID
    directory fd) before anything is signalled.  ``uids`` is accepted for the callers
    (the scope); the fast path needs no filter.

    ``full=True`` reads status and cgroup of every process (used right before kill(-1)).
    ``uptime`` is read before the walk, so ages are never overestimated.  A process that
    vanishes between the reads, or whose stat line does not parse, is left out."""
    up = uptime(proc)
    procs = {}
    if full:
        for name in os.listdir(proc):
            if name.isdigit():
                p = read_proc(int(name), want_cgroup=True, proc=proc)
                if p is not None:
                    procs[p.pid] = p
        return Snapshot(procs, up, HZ)
    names = frozenset(n.encode("latin-1") if isinstance(n, str) else n for n in names)
    use_pidfd = _pidfd_info_ok[0] and _own_pid_namespace(proc)
    with gc_paused():
        _scan_fast(proc, names, use_pidfd, procs)
    return Snapshot(procs, up, HZ)


def _scan_fast(proc, names, use_pidfd, procs):
    pfx = proc + "/"
    opn, cls, rd, fst, parse = os.open, os.close, os.read, os.fstat, parse_stat
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            fd = opn(pfx + name + "/stat", _O_RD)
        except OSError:
            continue
        try:
            owner = fst(fd).st_uid
            data = rd(fd, 2048)
        except OSError:
            continue
        finally:
            cls(fd)
        try:
            pid, comm, state, ppid, flags, start = parse(data)
        except (ValueError, IndexError):
            continue
        if owner and comm not in names:          # dumpable, not root: the common case
            procs[pid] = Proc(pid, ppid, owner, owner, owner, start, comm, state, flags,
                              None, False)
        elif flags & PF_KTHREAD:
            procs[pid] = Proc(pid, ppid, 0, 0, 0, start, comm, state, flags, None, True)
        else:
            # by pid, not through a directory fd: the snapshot is advisory (a pid reused
            # between the reads can only make a decision wrong here, and every kill
            # decision is re-read through a pidfd-confirmed /proc entry before a signal)
            try:
                ids = _pidfd_uids(pid) if use_pidfd else None
                if ids is None:
                    use_pidfd = use_pidfd and _pidfd_info_ok[0]
                    fd = opn(pfx + name + "/status", _O_RD)
                    try:
                        ids = parse_status_uids(rd(fd, 4096))
                    finally:
                        cls(fd)
            except (OSError, ValueError, IndexError):
                continue
            procs[pid] = Proc(pid, ppid, ids[0], ids[1], ids[2], start, comm, state, flags,
                              None, False)


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
