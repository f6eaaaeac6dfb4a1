"""The payload plan: everything the start of the payload needs, as one frozen value.

Pure: values in, bytes out (and back, for the tests and the fuzz oracle).  The engine
decides a `Plan`; `encode` turns it into the fixed binary format of docs/internals.md
("The payload plan"), which the one executor in C (csrc/plan_decode.c, plan_run.c,
plan_linger.c) decodes and applies -- in the native module today, in the shim for the
engine service.  The C checks the same rules as `decode` and refuses a plan that breaks
any of them before it does anything.
"""
import struct

MAGIC = b"GXPL"
VERSION = 1
MAX_PLAN = 32 * 1024 * 1024  # the hand-off blob's 16 MiB of argv/env, with room to spare
MAX_GROUPS = 65536           # NGROUPS_MAX on Linux
RLIM_NLIMITS = 16            # Linux: RLIMIT_CPU .. RLIMIT_RTTIME
MAX_STRINGS = 131072         # argv and env entries, each
MAX_STRING = 16 * 1024 * 1024
MAX_PATH = 4095              # PATH_MAX without its NUL: the path the payload is executed from
MAX_ID = 0xFFFFFFFE          # (uid_t)-1 means "unchanged" to the kernel: never an id
MAX_SIGNAL = 64              # _NSIG - 1
RLIM_INFINITY = 2**64 - 1    # on the wire; -1 in the plan (as in the hand-off facts)

SWITCH, NO_NEW_PRIVS, TTY_GUARD, LINGER = 1, 2, 4, 8
_ALL_FLAGS = SWITCH | NO_NEW_PRIVS | TTY_GUARD | LINGER
_UNFORWARDABLE = (9, 17, 19)  # SIGKILL, SIGCHLD (the linger's own), SIGSTOP

_HEAD = struct.Struct("<4sHHIIIIIIQIIII")  # through envc: 56 bytes
_U32 = struct.Struct("<I")
_RLIM = struct.Struct("<IQQ")

FIELDS = ("path", "argv", "env", "uid", "gid", "groups", "cwd", "umask", "rlimits", "switch_identity",
          "no_new_privs", "tty_guard", "linger", "pdeathsig", "forward_signals", "caller_ruid")


def _signum(s):
    return int(s) if isinstance(s, int) and not isinstance(s, bool) else s  # signal.Signals -> int


class Plan:
    """What the payload's start does, in order: every signal to its default and none
    blocked; `rlimits` ({resource: (soft, hard)}, -1 = unlimited; the caller's, or PAM's
    where stricter) and `umask`; the TIOCSTI/TIOCLINUX seccomp filter (`tty_guard`); the
    switch to `uid`/`gid`/`groups` (`switch_identity`: off in log-only mode) verified;
    `pdeathsig` (lingering child only); `no_new_privs`; chdir to `cwd` as the target (empty:
    stay); execve(`path`, `argv`, `env`).  With `linger` the payload is a child: the parent
    takes `caller_ruid` as its real uid (the caller may signal it), forwards
    `forward_signals` not sent by the kernel, and reports the status and CPU times."""

    __slots__ = FIELDS

    def __init__(self, *, path, argv, env, uid, gid, groups, cwd, umask, rlimits, switch_identity,
                 no_new_privs, tty_guard, linger, pdeathsig, forward_signals, caller_ruid):
        values = dict(path=bytes(path), argv=tuple(bytes(a) for a in argv), env=tuple(bytes(e) for e in env),
                      uid=uid, gid=gid, groups=tuple(sorted(set(groups))), cwd=bytes(cwd), umask=umask,
                      rlimits=tuple(sorted((r, tuple(v)) for r, v in dict(rlimits).items())),
                      switch_identity=bool(switch_identity), no_new_privs=bool(no_new_privs),
                      tty_guard=bool(tty_guard), linger=bool(linger), pdeathsig=_signum(pdeathsig),
                      forward_signals=tuple(sorted(set(map(_signum, forward_signals)))), caller_ruid=caller_ruid)
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError("a Plan is frozen: use replace()")

    def replace(self, **changes):
        return Plan(**{f: changes.pop(f, getattr(self, f)) for f in FIELDS}, **changes)

    def __eq__(self, other):
        if type(other) is not Plan:
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in FIELDS)

    __hash__ = None

    def __repr__(self):
        return "Plan(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in FIELDS) + ")"


def within(rlimits, ceiling):
    """`rlimits` ({resource: (soft, hard)}, -1 unlimited) with no hard limit above the
    executor's (`ceiling`: {resource: hard}; empty when it may raise them) and no soft limit
    above its hard one: what an executor that cannot raise a hard limit delivers (the shim
    lowers the core limit; without CAP_SYS_RESOURCE it stays lowered), decided here so
    that the plan on record is the one the payload gets."""
    def low(a, b):
        return b if a == -1 else a if b == -1 else min(a, b)
    out = {}
    for res, (soft, hard) in dict(rlimits).items():
        hard = low(hard, ceiling.get(res, -1))
        out[res] = (low(soft, hard), hard)
    return out


def _wire_limit(v):
    if v == -1:
        return RLIM_INFINITY
    if type(v) is not int or not 0 <= v < RLIM_INFINITY:
        raise ValueError("rlimit value out of range")
    return v


def _check(plan):
    ids = (plan.uid, plan.gid, plan.caller_ruid) + plan.groups
    if not all(type(i) is int and 0 <= i <= MAX_ID for i in ids) or len(plan.groups) > MAX_GROUPS:
        raise ValueError("ids out of range or too many groups")
    if type(plan.umask) is not int or not 0 <= plan.umask <= 0o777:
        raise ValueError("umask out of range")
    if not (type(plan.pdeathsig) is int and 0 <= plan.pdeathsig <= MAX_SIGNAL) or (plan.pdeathsig and not plan.linger):
        raise ValueError("pdeathsig out of range or without linger")
    sigs = plan.forward_signals
    if any(type(s) is not int or not 1 <= s <= MAX_SIGNAL or s in _UNFORWARDABLE for s in sigs):
        raise ValueError("forwarded signal out of range")
    if sigs and not plan.linger:
        raise ValueError("forwarded signals without linger")
    resources = [r for r, _ in plan.rlimits]
    if len(resources) > RLIM_NLIMITS or any(type(r) is not int or not 0 <= r < RLIM_NLIMITS for r in resources):
        raise ValueError("rlimit resource out of range")
    if not 1 <= len(plan.argv) <= MAX_STRINGS or len(plan.env) > MAX_STRINGS:
        raise ValueError("argv empty or too many argv/env entries")
    if not plan.path.startswith(b"/") or len(plan.path) > MAX_PATH or (plan.cwd and not plan.cwd.startswith(b"/")):
        raise ValueError("path not absolute or too long, or cwd not absolute")
    if any(b"\0" in s or len(s) > MAX_STRING for s in (plan.path, plan.cwd) + plan.argv + plan.env):
        raise ValueError("NUL in a string or a string too long")


def encode(plan):
    """The wire form of `plan` (docs/internals.md); ValueError if it breaks a rule the
    executor would refuse it for."""
    _check(plan)
    flags = ((SWITCH if plan.switch_identity else 0) | (NO_NEW_PRIVS if plan.no_new_privs else 0)
             | (TTY_GUARD if plan.tty_guard else 0) | (LINGER if plan.linger else 0))
    mask = sum(1 << (s - 1) for s in plan.forward_signals)  # bit n: signal n + 1
    parts = [b"", b"".join(_U32.pack(g) for g in plan.groups)]
    for res, (soft, hard) in plan.rlimits:
        soft, hard = _wire_limit(soft), _wire_limit(hard)
        if soft > hard:
            raise ValueError("soft rlimit above the hard one")
        parts.append(_RLIM.pack(res, soft, hard))
    for s in (plan.path, plan.cwd) + plan.argv + plan.env:
        parts += (_U32.pack(len(s)), s, b"\0")
    body_len = sum(map(len, parts)) + _HEAD.size
    if body_len > MAX_PLAN:
        raise ValueError("plan too large")
    parts[0] = _HEAD.pack(MAGIC, VERSION, flags, body_len, plan.uid, plan.gid, plan.umask, plan.pdeathsig,
                          plan.caller_ruid, mask, len(plan.groups), len(plan.rlimits), len(plan.argv),
                          len(plan.env))
    return b"".join(parts)


def decode(data):
    """The Plan `data` encodes; ValueError for anything the executor must refuse.  The
    reference for the C decoder (tests, fuzz/fuzz_plan.py): same rules, written apart."""
    data = bytes(data)
    if len(data) < _HEAD.size or len(data) > MAX_PLAN:
        raise ValueError("plan shorter than its header or too large")
    (magic, version, flags, total, uid, gid, umask, pdeathsig, caller_ruid, mask, ngroups, nrlimits, argc,
     envc) = _HEAD.unpack_from(data)
    if magic != MAGIC or version != VERSION or total != len(data) or flags & ~_ALL_FLAGS:
        raise ValueError("bad magic, version, length or flags")
    if ngroups > MAX_GROUPS or nrlimits > RLIM_NLIMITS or not 1 <= argc <= MAX_STRINGS or envc > MAX_STRINGS:
        raise ValueError("count over its limit")
    pos = _HEAD.size
    if len(data) - pos < 4 * ngroups + _RLIM.size * nrlimits:
        raise ValueError("truncated")
    groups = [_U32.unpack_from(data, pos + 4 * i)[0] for i in range(ngroups)]
    pos += 4 * ngroups
    if any(a >= b for a, b in zip(groups, groups[1:])):
        raise ValueError("groups not strictly increasing")
    rlimits = []
    for _ in range(nrlimits):
        res, soft, hard = _RLIM.unpack_from(data, pos)
        pos += _RLIM.size
        if res >= RLIM_NLIMITS or soft > hard or (rlimits and res <= rlimits[-1][0]):
            raise ValueError("bad rlimit")
        rlimits.append((res, tuple(-1 if v == RLIM_INFINITY else v for v in (soft, hard))))
    strings = []
    for _ in range(2 + argc + envc):
        if len(data) - pos < 5:
            raise ValueError("truncated")
        (n,) = _U32.unpack_from(data, pos)
        if n > MAX_STRING or len(data) - pos - 4 < n + 1 or data[pos + 4 + n] != 0:
            raise ValueError("string too long, truncated or not NUL-terminated")
        s = data[pos + 4:pos + 4 + n]
        if b"\0" in s:
            raise ValueError("NUL inside a string")
        strings.append(s)
        pos += 5 + n
    if pos != len(data):
        raise ValueError("trailing bytes")
    plan = Plan(path=strings[0], cwd=strings[1], argv=strings[2:2 + argc], env=strings[2 + argc:], uid=uid,
                gid=gid, groups=groups, umask=umask, rlimits=dict(rlimits), switch_identity=flags & SWITCH,
                no_new_privs=flags & NO_NEW_PRIVS, tty_guard=flags & TTY_GUARD, linger=flags & LINGER,
                pdeathsig=pdeathsig, forward_signals=[n + 1 for n in range(MAX_SIGNAL) if mask >> n & 1],
                caller_ruid=caller_ruid)
    _check(plan)
    return plan


def audit_view(plan, data=None):
    """What the audit record says of `plan` (the grant record's ``plan``): every field that
    decides what runs, and ``sha256`` of ``data`` -- the exact bytes the executor receives
    (``encode(plan)`` if not given).  The environment by names only, in order: its values
    may be secrets (bearer tokens, passwords); the digest still covers them, so the one plan
    with these values is the one that matches.  Values stay bytes (core.audit.encode writes
    non-UTF-8 reversibly); ``rlimits`` as ``{"<resource>": [soft, hard]}`` (-1 unlimited)."""
    import _sha256  # builtin: hashlib would load OpenSSL's (~8 ms a call)
    if data is None:
        data = encode(plan)
    return {"path": plan.path, "argv": list(plan.argv), "env": [e.partition(b"=")[0] for e in plan.env],
            "uid": plan.uid, "gid": plan.gid, "groups": list(plan.groups), "cwd": plan.cwd, "umask": plan.umask,
            "rlimits": {str(r): list(v) for r, v in plan.rlimits}, "switch_identity": plan.switch_identity,
            "no_new_privs": plan.no_new_privs, "tty_guard": plan.tty_guard, "linger": plan.linger,
            "pdeathsig": plan.pdeathsig, "forward_signals": list(plan.forward_signals),
            "caller_ruid": plan.caller_ruid, "sha256": _sha256.sha256(data).hexdigest()}
