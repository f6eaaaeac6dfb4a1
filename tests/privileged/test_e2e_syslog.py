"""End-to-end: what the installed glexec sends to syslog. The grant carries the identity
(LCMAPS's `LCMAPS CRED FINAL: DN:"..."->mapped uid:...` form) before the classic
`real_user(..)->mapped_user(..)` line, and with `audit: {monitor_lines: true}` the tracking
monitor's `glexec.mon[<pid>#<pid>]` lines, which Gratia's gLExec probe rules read back.
A private receiver is bound at /dev/log for the test (this machine runs no syslog daemon)."""
import grp
import os
import socket

import pytest

from tests.privileged.conftest import USER1_DN
from tests.support import gratia_rules

HOST = "wn042"


@pytest.fixture
def syslog(gx):
    if os.path.lexists("/dev/log"):
        pytest.skip("/dev/log belongs to a syslog daemon here; this test binds its own receiver")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.bind("/dev/log")
        os.chmod("/dev/log", 0o666)
        s.setblocking(False)

        def received():
            out = []
            while True:
                try:
                    out.append(s.recv(65536).decode("ascii"))
                except BlockingIOError:
                    return out
        yield received
    finally:
        s.close()
        os.unlink("/dev/log")


def as_logged(datagram):
    """`<PRI>Mmm dd hh:mm:ss ident: msg` as a daemon writes it to a file (with the host)."""
    body = datagram[datagram.index(">") + 1:]
    return f"{body[:15]} {HOST} {body[16:]}"


def test_identity_and_monitor_lines(gx, accounts, syslog):
    gx.config(audit={"file": str(gx.audit_file), "syslog": True, "monitor_lines": True})
    r = gx.run(["/bin/sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done", "sh", "a\nb"])
    gx.assert_granted(r)
    lines = [as_logged(d) for d in syslog()]
    assert all("\n" not in line for line in lines), lines
    engine_pid, payload_pid = r.grants[0]["pid"], r.ends[0]["payload_pid"]
    mine = [x for x in lines if f"glexec[{engine_pid}]: " in x]
    t = accounts.target1
    assert mine[0].endswith(f'glexec[{engine_pid}]: LCMAPS CRED FINAL: DN:"{USER1_DN}"'
                            f"->mapped uid:'{t.uid}',pgid:'{t.gid}',sgid:'{grp.getgrnam('gxtvo').gr_gid}'"), mine
    assert "real_user(gxtpilot),real_group(gxtpilot)->mapped_user(gxttarget1)" in mine[1]
    assert mine[1].endswith('args: "-c" "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done" "sh" "a\\nb"'), mine
    monitor = [x for x in lines if "glexec.mon[" in x]
    assert [m.split(": ", 1)[1] for m in monitor][:2] == [f"Started, target uid {t.uid}", f'Used DN: "{USER1_DN}"']
    records = gratia_rules.parse(monitor)
    assert list(records) == [(engine_pid, payload_pid)]
    rec = records[(engine_pid, payload_pid)]
    assert rec["jobuid"] == t.uid and rec["DN"] == USER1_DN
    end = r.ends[0]
    assert (rec["usercpu"], rec["syscpu"]) == (int(end["cpu_user"]), int(end["cpu_system"]))


def test_no_monitor_lines_unless_configured(gx, syslog):
    gx.config(audit={"file": str(gx.audit_file), "syslog": True})
    r = gx.run(["/bin/true"])
    gx.assert_granted(r)
    lines = syslog()
    assert any("LCMAPS CRED FINAL" in x for x in lines) and not any("glexec.mon[" in x for x in lines)


def test_shipped_records_are_tagged_with_the_glexec_pid(gx):
    """audit.ship: each record's datagram is tagged ``glexec-audit[<glexec's pid>]``, as the
    classic lines are -- with the engine service too, where the process that appends is the
    service's child and glexec is the shim (GLEXEC_TEST_MODE=service)."""
    path = f"/tmp/gxt-ship-{os.getpid()}.sock"
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        rx.bind(path)
        rx.setblocking(False)
        gx.config(audit={"file": str(gx.audit_file), "ship": True, "ship_socket": path})
        r = gx.run(["/bin/true"])
        gx.assert_granted(r)
        got = []
        while True:
            try:
                got.append(rx.recv(65536))
            except BlockingIOError:
                break
    finally:
        rx.close()
        os.unlink(path)
    assert len(got) == len(r.records) == 2, (got, r)
    for datagram, rec in zip(got, r.records):
        head, _, body = datagram.partition(b": ")
        assert head.endswith(b" glexec-audit[%d]" % r.pid), head
        assert rec["pid"] == r.pid and b'"event":"%s"' % rec["event"].encode() in body
