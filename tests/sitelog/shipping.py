"""Records written through the real audit sink and put in their shipped form."""
import os

from glexec_py.core.audit import encode
from glexec_py.effects import auditlog
from tests.backmap.backmap_helpers import S, T0, format_time  # noqa: F401

BOOT = "0f0e0d0c-0b0a-4908-8706-050403020100"


def record(event, t, *, host, uid=47011, dn="/CN=Alice", pid=100, account=None):
    rec = {"time": format_time(t), "event": event, "host": host, "boot_id": BOOT, "pid": pid,
           "caller": {"uid": 1001, "gid": 1001, "user": "pilot", "group": "pilot", "pid": 50,
                      "ppid": 49, "sid": 40, "pgid": 50, "groups": [1001]}, "log_only": False}
    if event in ("grant", "end"):
        rec.update(dn=dn, issuer="/CN=CA", account=account or f"pool{uid}", uid=uid, gid=47000,
                   groups=[47000])
    return encode(rec)


def ship_all(audit, host, records):
    """Append each record to ``audit`` (the engine's sink: chained) -> shipped messages."""
    out = []
    for rec in records:
        line, chain = auditlog.append(audit, rec)
        out.append(auditlog.ship_message(line, chain, host, BOOT).decode("ascii"))
    return out


def stage(conn, messages, hostname=None):
    """Rows as the collector's ompgsql writes them (its MSG has a leading space)."""
    cur = conn.cursor()
    for m in messages:
        cur.execute("INSERT INTO glexec_audit_inbox(fromhost, hostname, msg) VALUES (%s, %s, %s)",
                    ("127.0.0.1", hostname, " " + m))
    conn.commit()


def audit_file(directory, name):
    path = os.path.join(directory, name)
    return path
