"""The audit sinks: the JSON-lines file (authoritative, fail-closed) and syslog (the
classic gLExec line, for existing log parsers; best effort)."""
import os
from stat import S_ISREG

from glexec_py.effects import trust
from glexec_py.errors import SystemFault


_SHIP_FILES = {}    # audit file -> (socket, facility): ship_records_of (the site tools)


def ship_records_of(audit):
    """Runs as: any user.  From now on in this process, every chained record appended to
    glexec's audit file ``audit.file`` is also shipped (``ship``) when ``audit.ship`` is on
    -- for the site tools' records (prune, sweep, leases), which share the file and its
    chain: a record of the chain that is not shipped would be a gap at the collector."""
    if audit.ship:
        _SHIP_FILES[audit.file] = (audit.ship_socket, audit.ship_facility)


def append(path, line, *, privileged=True, ship_to=None):
    """Runs as: root (or the caller in log-only mode).

    Appends one complete record line (a JSON object) under an exclusive flock and fsyncs
    it. Under the lock the record gets ``seq`` (one more than the last record's) and
    ``prev`` (SHA-256 of the last line): a deleted, inserted or edited line breaks the
    chain, which the back-mapper checks. The file must be a regular, single-link,
    root-owned file in a trusted directory, private to root — in log-only mode (the engine
    runs as the caller) the site pre-creates it group-writable (not readable) for the
    pilots' group instead, and records carry no chain. A short write is rolled back with ftruncate, so no half line ever remains.
    Any failure raises SystemFault.

    ``line`` may be a callable returning the bytes: it is called under the lock, so a
    record that takes its time there is never earlier than the record before it in the
    file (concurrent writers otherwise append in another order than they read the clock).

    Returns the line as written (with its chain) and the sha256 of the file's first line
    (the chain's identity; None for an unchained, log-only record).  ``ship_to``
    ((socket, facility[, pid]): the engine's audit.ship settings and the glexec process's
    pid) or ``ship_records_of``: the written record is then also shipped (``ship``, best
    effort)."""
    import fcntl
    try:
        directory = path.rpartition("/")[0] or "/"
        trust.check_dir_chain(directory)
        # Log-only mode: the pilots may append but not read others' records, so no chain.
        access = os.O_RDWR if privileged else os.O_WRONLY
        fd = os.open(path, access | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except (OSError, SystemFault) as e:
        raise _unwritable(path, e) from None
    try:
        st = os.fstat(fd)
        if not S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != 0 \
                or st.st_mode & (0o077 if privileged else 0o007):
            raise _unwritable(path, "not a private root-owned regular file")
        fcntl.flock(fd, fcntl.LOCK_EX)
        start = os.fstat(fd).st_size
        if callable(line):
            line = line()
        if privileged:
            line = _chained(line, *_chain_position(fd, start))
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(28, "short write")
            os.fsync(fd)
        except OSError as e:
            os.ftruncate(fd, start)
            raise _unwritable(path, e) from None
        chain = _first_line_digest(fd, line if start == 0 else None) if privileged else None
    except OSError as e:
        raise _unwritable(path, e) from None
    finally:
        os.close(fd)
    ship_to = ship_to or _SHIP_FILES.get(path)
    if ship_to is not None and chain is not None:
        ship(line, chain, ship_to[0], ship_to[1], pid=ship_to[2] if len(ship_to) > 2 else None)
    return line, chain


def stamper(rec, encode):
    """Runs as: any user.  For ``append``: a callable that sets ``rec["time"]`` (UTC,
    microseconds) and, if the record has one, ``rec["mono"]`` (CLOCK_MONOTONIC) from clocks
    read under the append lock, and returns the encoded line."""
    import time

    def line():
        now = time.time()
        rec["time"] = iso_time(now)
        if "mono" in rec:
            rec["mono"] = round(time.monotonic(), 6)
        return encode(rec)
    return line


def iso_time(now):
    """The audit records' time format: ``2026-11-21T22:33:04.123456Z``."""
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%06dZ" % int(now % 1 * 1e6)


def _chained(line, seq, prev):
    if not line.endswith(b"}\n"):
        raise SystemFault("audit_unwritable", "glexec: internal error (audit record is not one JSON line)")
    return line[:-2] + b',"seq":%d,"prev":"%s"}\n' % (seq, prev)


def _chain_position(fd, size):
    """(seq, prev) for the record that follows the file's last line."""
    if size == 0:
        return 1, b""
    last = _last_line(fd, size)
    import _sha256  # builtin: hashlib would load OpenSSL's (~8 ms)
    prev = _sha256.sha256(last).hexdigest().encode()
    # seq is always the record's last-but-one field; inside user strings quotes are escaped
    at = last.rfind(b',"seq":')
    digits = last[at + 7:].split(b",", 1)[0] if at >= 0 else b""
    return (int(digits) + 1 if digits.isdigit() else 1), prev


def _last_line(fd, size):
    """The file's last line without its newline, read backwards in blocks."""
    end = size - 1 if size else 0  # every append ends with a newline
    buf = b""
    pos = end
    while pos > 0:
        start = max(0, pos - 8192)
        buf = os.pread(fd, pos - start, start) + buf
        nl = buf.rfind(b"\n")
        if nl >= 0:
            return buf[nl + 1:]
        pos = start
    return buf


def _first_line_digest(fd, first):
    """sha256 of the file's first line, newline included (the back-map's source identity),
    or None if it cannot be read: the record is written by now, this must not undo that."""
    import _sha256
    try:
        if first is None:
            first, pos = b"", 0
            while not first.endswith(b"\n"):
                block = os.pread(fd, 8192, pos)
                if not block:
                    break
                nl = block.find(b"\n")
                first += block if nl < 0 else block[:nl + 1]
                pos += len(block)
    except OSError:
        return None
    return _sha256.sha256(first).hexdigest()


def _unwritable(path, cause):
    what = cause.strerror if isinstance(cause, OSError) and cause.strerror else getattr(cause, "message", cause)
    return SystemFault("audit_unwritable", "glexec: cannot write the audit record", path=path, cause=str(what))


_FACILITIES = ("LOG_DAEMON", "LOG_AUTH", "LOG_AUTHPRIV", "LOG_USER") + tuple(f"LOG_LOCAL{i}" for i in range(8))


def to_syslog(message, facility="LOG_DAEMON", *, error=False, ident=None, pid=None):
    """Runs as: any user. The classic gLExec syslog line(s) (``message``: one line or a
    list) under ident `glexec` with the pid (``pid``: the glexec process's, which is not
    this one's in the engine service), or under ``ident`` as given (the monitor's
    ``glexec.mon[<pid>#<pid>]``, which carries its own pids).
    Best effort: syslog(3) reports no errors, the JSON file is the record that counts."""
    import syslog
    if ident is None and pid is not None:
        ident = f"glexec[{pid}]"          # what LOG_PID would write, with the given pid
    syslog.openlog(ident or "glexec", 0 if ident else syslog.LOG_PID,
                   getattr(syslog, facility if facility in _FACILITIES else "LOG_DAEMON"))
    for line in [message] if isinstance(message, str) else message:
        syslog.syslog(syslog.LOG_ERR if error else syslog.LOG_NOTICE, line)
    syslog.closelog()


SHIP_TAG = "glexec-audit"


def ship_message(line, chain, host, boot_id):
    """Runs as: any user.  The shipped form of one written record: JSON in the syslog
    message, the record's exact bytes last, so the collector hashes what the chain covers.
    ``chain``: sha256 of the audit file's first line; ``sha256``: of this line (the next
    record's ``prev``)."""
    import _sha256
    from glexec_py.core.audit import encode
    body = line.rstrip(b"\n")
    head = encode({"host": host, "boot_id": boot_id, "chain": chain,
                   "sha256": _sha256.sha256(body).hexdigest()})
    return head[:-2] + b',"rec":' + body + b"}"


def ship(line, chain, socket_path, facility="LOG_AUTHPRIV", host=None, boot_id=None, pid=None):
    """Runs as: root (or the caller in log-only mode).  Sends ``ship_message`` as one
    datagram to the local syslog socket under the tag ``glexec-audit[<pid>]`` (``pid``: the
    glexec process's, which is not this one's in the engine service), never blocking: a
    full or absent socket drops it (the collector sees the hole in ``seq`` and answers
    "unknown" there), the JSON file stays the record that counts.  A record without a
    chain (``chain`` None: log-only mode) is not shipped: nothing could vouch for it.
    True if sent."""
    if chain is None:
        return False
    import _socket      # the C module: socket.py would import enum (~2.5 ms a call)
    import syslog
    import time
    host = host or os.uname().nodename
    if boot_id is None:
        try:
            with open("/proc/sys/kernel/random/boot_id", "rb") as f:
                boot_id = f.read(64).strip().decode("ascii", "replace")
        except OSError:
            pass
    pri = getattr(syslog, facility if facility in _FACILITIES else "LOG_AUTHPRIV") | syslog.LOG_NOTICE
    stamp = time.strftime("%b %d %H:%M:%S", time.localtime()).encode()
    msg = b"<%d>%s %s[%d]: " % (pri, stamp, SHIP_TAG.encode(), os.getpid() if pid is None else pid) + \
        ship_message(line, chain, host, boot_id)
    try:
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
    except OSError:
        return False
    try:
        s.sendto(msg, _socket.MSG_DONTWAIT, socket_path)
    except OSError:
        return False
    finally:
        s.close()
    return True
