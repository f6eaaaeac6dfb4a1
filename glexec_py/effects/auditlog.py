"""The audit sinks: the JSON-lines file (authoritative, fail-closed) and syslog (the
classic gLExec line, for existing log parsers; best effort)."""
import os
from stat import S_ISREG

from glexec_py.effects import trust
from glexec_py.errors import SystemFault


def append(path, line, *, privileged=True):
    """Runs as: root (or the caller in log-only mode).

    Appends one complete line under an exclusive flock and fsyncs it. The file must be a
    regular, single-link, root-owned file in a trusted directory, private to root — in
    log-only mode (the engine runs as the caller) the site pre-creates it group-writable for
    the pilots' group instead. A short write is rolled back with ftruncate, so no half line
    ever remains. Any failure raises SystemFault."""
    import fcntl
    try:
        directory = path.rpartition("/")[0] or "/"
        trust.check_dir_chain(directory)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     0o600)
    except (OSError, SystemFault) as e:
        raise _unwritable(path, e) from None
    try:
        st = os.fstat(fd)
        if not S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != 0 \
                or st.st_mode & (0o077 if privileged else 0o007):
            raise _unwritable(path, "not a private root-owned regular file")
        fcntl.flock(fd, fcntl.LOCK_EX)
        start = os.fstat(fd).st_size
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(28, "short write")
            os.fsync(fd)
        except OSError as e:
            os.ftruncate(fd, start)
            raise _unwritable(path, e) from None
    except OSError as e:
        raise _unwritable(path, e) from None
    finally:
        os.close(fd)


def _unwritable(path, cause):
    what = cause.strerror if isinstance(cause, OSError) and cause.strerror else getattr(cause, "message", cause)
    return SystemFault("audit_unwritable", "glexec: cannot write the audit record", path=path, cause=str(what))


_FACILITIES = ("LOG_DAEMON", "LOG_AUTH", "LOG_AUTHPRIV", "LOG_USER") + tuple(f"LOG_LOCAL{i}" for i in range(8))


def to_syslog(message, facility="LOG_DAEMON", *, error=False):
    """Runs as: any user. The classic gLExec syslog line under ident `glexec` with the pid.
    Best effort: syslog(3) reports no errors, the JSON file is the record that counts."""
    import syslog
    syslog.openlog("glexec", syslog.LOG_PID, getattr(syslog, facility if facility in _FACILITIES else "LOG_DAEMON"))
    syslog.syslog(syslog.LOG_ERR if error else syslog.LOG_NOTICE, message)
    syslog.closelog()
