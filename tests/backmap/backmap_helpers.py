"""Audit records as the engine writes them (shared by the back-mapping tests)."""
import os

from glexec_py.core.audit import encode
from glexec_tools.backmap.plan import format_time

S = 1_000_000
T0 = 1_795_300_000 * S          # 2026-11-21T21:46:40Z

__all__ = ["S", "T0", "record", "write", "format_time"]


def record(event, t, *, uid=47011, dn="/CN=Alice", pid=100, host="wn1", account=None, **extra):
    rec = {"time": format_time(t), "event": event, "host": host, "pid": pid,
           "caller": {"uid": 1001, "gid": 1001, "user": "pilot", "group": "pilot", "pid": 50,
                      "ppid": 49, "sid": 40, "pgid": 50, "groups": [1001]},
           "log_only": False}
    if event in ("grant", "end"):
        rec.update(dn=dn, issuer="/CN=CA", account=account or f"pool{uid}", uid=uid, gid=47000,
                   groups=[47000])
    rec.update(extra)
    return encode(rec)


def write(path, lines, mode="wb"):
    with open(path, mode) as f:
        f.write(b"".join(lines))
    os.chmod(path, 0o600)
