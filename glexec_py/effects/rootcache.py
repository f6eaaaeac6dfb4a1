"""A root-only cache, in the engine's state directory, of results the hot path would otherwise
parse on every call: the validated configuration (``effects.configfile``) and the ban files
(``effects.banfiles``).

An entry is one file holding ``marshal((key, value))``; the key names the source by its
identity (``identity``), so a rewritten source is a miss. A cache file counts only if it is
root's own (uid 0, no group/other bits, one link) in a trusted directory chain; anything
else, and anything unreadable, is a miss, never an error: a cache only costs or saves time.
"""
import marshal
import os

from glexec_py.effects import trust
from glexec_py.errors import SystemFault

# A source changed this recently is not cached: a second write in the same timestamp tick
# could keep size, mtime and ctime (git's "racily clean" rule).
RACY_NS = 2_000_000_000


def identity(st):
    """The source's identity: ctime cannot be set by anyone but the kernel, so a rewritten
    file always changes it."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def racy(st):
    """Changed in the last RACY_NS: cache it only once it is older."""
    import time
    return time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_NS


def read(state_dir, name, key):
    """Runs as: root (or the caller in log-only mode: then it finds nothing).  The value
    cached under ``key`` in ``state_dir/name``, or None."""
    if not state_dir:
        return None
    try:
        fd = os.open(f"{state_dir}/{name}", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != 0 or st.st_mode & 0o077 or st.st_nlink != 1:
            return None
        trust.check_dir_chain(state_dir)
        with open(os.dup(fd), "rb") as f:
            data = f.read()
    except (OSError, SystemFault):
        return None
    finally:
        os.close(fd)
    try:
        stored_key, value = marshal.loads(data)
    except (ValueError, EOFError, TypeError):
        return None
    return value if stored_key == key else None


def write(state_dir, name, key, value):
    """Runs as: root only (does nothing otherwise).  Atomically replace ``state_dir/name``."""
    if not state_dir or os.geteuid() != 0:
        return
    tmp = f"{state_dir}/.{name}.{os.getpid()}.tmp"
    try:
        trust.check_dir_chain(state_dir)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with open(fd, "wb") as f:
            f.write(marshal.dumps((key, value)))
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, f"{state_dir}/{name}")
    except (OSError, SystemFault, ValueError):
        try:
            os.unlink(tmp)
        except OSError:
            pass
