"""The shim -> engine hand-off blob (docs/internals.md, "The shim -> engine hand-off").

Pure: works on the bytes the engine read from fd 3.  The format is byte-exact and never
unescaped; any deviation is a ``SystemFault`` (exit 202) with one fixed message, so a
malformed blob can never be partially trusted.

    magic   b"GLEXEC-HANDOFF-1\\n"
    records tag (1 byte) | length (u32 LE) | payload ... final b"Z" record, length 0

Strictness beyond the table in internals.md (all are values the shim cannot produce):
NUL bytes inside A/E/C payloads, ids outside 0..2**32-2, pid < 1, umask > 0o777,
privileged not 0/1, rlimit values < -1, soft > hard, an R record for a resource outside
0..RLIM_NLIMITS-1 or a missing/duplicate resource.  Record order is free except that Z
is last; A and E records keep their relative order.
"""

import struct

from glexec_py.errors import SystemFault

MAGIC = b"GLEXEC-HANDOFF-1\n"
RLIM_NLIMITS = 16            # Linux x86_64 / glibc (RLIMIT_CPU .. RLIMIT_RTTIME)
MAX_ARGV = 65536
MAX_ENV = 65536
MAX_GROUPS = 65536           # NGROUPS_MAX on Linux
MAX_BLOB = 16 * 1024 * 1024

_HDR = struct.Struct("<cI")
_I = struct.Struct("<12q")
_R = struct.Struct("<3q")
_Q = struct.Struct("<q")
_ID_MAX = 0xFFFFFFFE         # (uid_t)-1 is "no id", never a real one
_PID_MAX = 0x7FFFFFFF

_FIELDS = ("argv", "env", "ruid", "euid", "suid", "rgid", "egid", "sgid", "pid", "ppid",
           "sid", "pgid", "umask", "privileged", "groups", "rlimits", "cwd")
_I_FIELDS = ("ruid", "euid", "suid", "rgid", "egid", "sgid", "pid", "ppid", "sid", "pgid",
             "umask", "privileged")


def _bad():
    return SystemFault("handoff", "glexec: malformed hand-off from the shim")


class CallerFacts:
    """What the shim recorded about the caller.  Plain values only."""

    __slots__ = _FIELDS

    def __init__(self, argv, env, ruid, euid, suid, rgid, egid, sgid, pid, ppid, sid, pgid,
                 umask, privileged, groups, rlimits, cwd):
        self.argv = argv
        self.env = env
        self.ruid = ruid
        self.euid = euid
        self.suid = suid
        self.rgid = rgid
        self.egid = egid
        self.sgid = sgid
        self.pid = pid
        self.ppid = ppid
        self.sid = sid
        self.pgid = pgid
        self.umask = umask
        self.privileged = privileged
        self.groups = groups
        self.rlimits = rlimits
        self.cwd = cwd

    def __eq__(self, other):
        if type(other) is not CallerFacts:
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in _FIELDS)

    __hash__ = None

    def __repr__(self):
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in _FIELDS)
        return f"CallerFacts({inner})"


def parse(blob):
    """Parse the hand-off blob into ``CallerFacts``; any deviation raises ``SystemFault``."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise _bad()
    blob = bytes(blob)
    n = len(blob)
    if n > MAX_BLOB or not blob.startswith(MAGIC):
        raise _bad()
    pos = len(MAGIC)
    argv = []
    env = []
    ids = None
    groups = None
    rlimits = {}
    cwd = None
    hdr = _HDR.unpack_from
    while True:
        if n - pos < 5:
            raise _bad()
        tag, length = hdr(blob, pos)
        pos += 5
        end = pos + length
        if end > n:
            raise _bad()
        if tag == b"A":
            payload = blob[pos:end]
            if b"\0" in payload or len(argv) >= MAX_ARGV:
                raise _bad()
            argv.append(payload)
        elif tag == b"E":
            payload = blob[pos:end]
            if b"\0" in payload or len(env) >= MAX_ENV:
                raise _bad()
            env.append(payload)
        elif tag == b"I":
            if ids is not None or length != _I.size:
                raise _bad()
            ids = _I.unpack_from(blob, pos)
        elif tag == b"G":
            if groups is not None or length % 8 or length // 8 > MAX_GROUPS:
                raise _bad()
            groups = tuple(v for (v,) in _Q.iter_unpack(blob[pos:end]))
            for g in groups:
                if not 0 <= g <= _ID_MAX:
                    raise _bad()
        elif tag == b"R":
            if length != _R.size:
                raise _bad()
            res, soft, hard = _R.unpack_from(blob, pos)
            if (not 0 <= res < RLIM_NLIMITS or res in rlimits or soft < -1 or hard < -1
                    or (hard != -1 and (soft == -1 or soft > hard))):
                raise _bad()
            rlimits[res] = (soft, hard)
        elif tag == b"C":
            if cwd is not None:
                raise _bad()
            cwd = blob[pos:end]
            if b"\0" in cwd:
                raise _bad()
        elif tag == b"Z":
            if length != 0 or end != n:
                raise _bad()
            break
        else:
            raise _bad()
        pos = end
    if not argv or ids is None or groups is None or cwd is None or len(rlimits) != RLIM_NLIMITS:
        raise _bad()
    ruid, euid, suid, rgid, egid, sgid, pid, ppid, sid, pgid, umask, priv = ids
    for v in (ruid, euid, suid, rgid, egid, sgid):
        if not 0 <= v <= _ID_MAX:
            raise _bad()
    if (not 1 <= pid <= _PID_MAX or not 0 <= ppid <= _PID_MAX or not 0 <= sid <= _PID_MAX
            or not 0 <= pgid <= _PID_MAX or not 0 <= umask <= 0o777 or priv not in (0, 1)):
        raise _bad()
    return CallerFacts(argv, env, ruid, euid, suid, rgid, egid, sgid, pid, ppid, sid, pgid,
                       umask, priv == 1, groups, rlimits, cwd)


def _rec(tag, payload):
    return _HDR.pack(tag, len(payload)) + payload


def build(facts):
    """The exact inverse of ``parse`` (records in the order A* E* I G R* C Z).

    For tests and fuzzing; it does not validate (so it can build bad blobs too).
    """
    out = [MAGIC]
    out.extend(_rec(b"A", bytes(a)) for a in facts.argv)
    out.extend(_rec(b"E", bytes(e)) for e in facts.env)
    out.append(_rec(b"I", _I.pack(*(int(getattr(facts, f)) for f in _I_FIELDS))))
    out.append(_rec(b"G", b"".join(_Q.pack(g) for g in facts.groups)))
    out.extend(_rec(b"R", _R.pack(r, s, h)) for r, (s, h) in facts.rlimits.items())
    out.append(_rec(b"C", bytes(facts.cwd)))
    out.append(_rec(b"Z", b""))
    return b"".join(out)
