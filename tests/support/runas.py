"""Run commands as real unprivileged test users, and read the audit log.

    r = run_as("gxtpilot", [glexec, "/usr/bin/id"], env={"GLEXEC_CLIENT_CERT": proxy})
    r.returncode, r.stdout, r.stderr, r.pid      # pid: the process we spawned (glexec itself)

The child gets uid/gid/supplementary groups exactly as the account has them in /etc/group
(``os.getgrouplist``), an environment built from scratch (``PATH=/usr/bin:/bin`` plus ``env``),
all fds closed except 0-2 and ``pass_fds``, and by default its own session (so its pid is
also its sid and pgid).
"""
from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
from pathlib import Path

__all__ = ["run_as", "popen_as", "build_env", "read_audit", "audit_records"]

BASE_PATH = "/usr/bin:/bin"


def _ids(user):
    """(uid, gid, groups) for an account name, a pwd entry or an accounts.Account."""
    name = user if isinstance(user, str) else getattr(user, "name", None) or user.pw_name
    pw = pwd.getpwnam(name)
    return pw.pw_uid, pw.pw_gid, sorted(set(os.getgrouplist(name, pw.pw_gid)))


def build_env(env=None):
    out = {"PATH": BASE_PATH}
    if env:
        for k, v in env.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = v
    # subprocess wants one type for keys and values: use bytes if any item is bytes
    if any(isinstance(x, bytes) for kv in out.items() for x in kv):
        out = {os.fsencode(k): os.fsencode(v) for k, v in out.items()}
    return out


def popen_as(user, argv, *, env=None, stdin=None, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
             cwd=None, pass_fds=(), new_session=True, executable=None) -> subprocess.Popen:
    """Start ``argv`` as ``user``; ``stdin`` may be a file object/fd, subprocess.PIPE or None
    (/dev/null). Returns the Popen (its .pid is the spawned process)."""
    uid, gid, groups = _ids(user)
    if uid == 0 or gid == 0:
        raise ValueError("run_as is for unprivileged users")
    if stdin is None:
        stdin = subprocess.DEVNULL
    return subprocess.Popen(
        [os.fsencode(a) if isinstance(a, (bytes, Path)) else a for a in argv],
        executable=executable, env=build_env(env), cwd=cwd, stdin=stdin, stdout=stdout,
        stderr=stderr, pass_fds=tuple(pass_fds), close_fds=True,
        start_new_session=new_session, user=uid, group=gid, extra_groups=groups,
        restore_signals=True)


def run_as(user, argv, *, env=None, stdin=None, cwd=None, timeout=30, pass_fds=(),
           new_session=True, executable=None) -> subprocess.CompletedProcess:
    """Run ``argv`` as ``user`` and wait. ``stdin``: bytes (fed through a pipe), a file
    object/fd, or None (/dev/null). The result has an extra ``pid`` attribute.

    On timeout the whole process group is SIGKILLed (as root) and TimeoutExpired raised."""
    data = None
    if isinstance(stdin, (bytes, bytearray, str)):
        data = stdin.encode() if isinstance(stdin, str) else bytes(stdin)
        stdin = subprocess.PIPE
    p = popen_as(user, argv, env=env, stdin=stdin, cwd=cwd, pass_fds=pass_fds,
                 new_session=new_session, executable=executable)
    try:
        out, err = p.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(p, new_session)
        out, err = p.communicate()
        raise subprocess.TimeoutExpired(p.args, timeout, out, err)
    cp = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    cp.pid = p.pid
    return cp


def _kill_group(p, new_session):
    try:
        if new_session:
            os.killpg(p.pid, signal.SIGKILL)
        else:
            p.kill()
    except ProcessLookupError:
        pass


def read_audit(prefix_or_file) -> list[dict]:
    from glexec_py.core.audit import decode_line
    """Parse the JSON-lines audit log (``<prefix>/var/log/glexec-py/audit.jsonl`` for a prefix,
    or the file given). Missing file → []. A line that is not one JSON object raises."""
    p = Path(prefix_or_file)
    if p.is_dir():
        p = p / "var" / "log" / "glexec-py" / "audit.jsonl"
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        return []
    records = []
    for n, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            if line:
                raise ValueError(f"{p}:{n}: blank line with whitespace")
            continue
        rec = decode_line(line)     # bytes that are not UTF-8: back to surrogateescape str
        if not isinstance(rec, dict):
            raise ValueError(f"{p}:{n}: record is not a JSON object")
        records.append(rec)
    if raw and not raw.endswith(b"\n"):
        raise ValueError(f"{p}: last record not newline-terminated (torn write?)")
    return records


audit_records = read_audit
