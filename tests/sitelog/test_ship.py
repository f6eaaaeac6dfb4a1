"""effects.auditlog.ship: the shipped form of each written record, and a sink that never
blocks the engine."""
import json
import os
import socket
import syslog
import time

from glexec_py.core.config import parse_config
from glexec_py.effects import auditlog
from glexec_tools.backmap import plan as bm
from tests.sitelog.shipping import BOOT, S, T0, record
from tests.support.glexec_yaml import with_section


def test_shipped_form_carries_host_boot_chain_and_the_exact_line(private_dir):
    path = os.path.join(private_dir, "audit.jsonl")
    shipped = []
    for i in range(3):
        line, chain = auditlog.append(path, record("grant", T0 + i * S, host="wnA", pid=i))
        shipped.append(bm.parse_shipped(auditlog.ship_message(line, chain, "wnA", BOOT)))
    lines = open(path, "rb").read().splitlines()
    for n, (item, line) in enumerate(zip(shipped, lines), 1):
        assert (item.host, item.boot_id, item.seq, item.line) == ("wnA", BOOT, n, line)
        assert item.time == T0 + (n - 1) * S
    import hashlib
    assert {s.chain for s in shipped} == {hashlib.sha256(lines[0] + b"\n").hexdigest()}
    # sha256 of a line is the next record's prev: the collector checks the chain with it
    assert [s.sha256 for s in shipped[:-1]] == [json.loads(x)["prev"] for x in lines[1:]]


def test_ship_sends_one_authpriv_datagram(private_dir):
    path = os.path.join(private_dir, "audit.jsonl")
    sock_path = os.path.join(private_dir, "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(sock_path)
        line, chain = auditlog.append(path, record("grant", T0, host="wnA"))
        assert auditlog.ship(line, chain, sock_path, "LOG_AUTHPRIV", "wnA", BOOT)
        got = rx.recv(65536)
    pri = syslog.LOG_AUTHPRIV | syslog.LOG_NOTICE
    assert got.startswith(b"<%d>" % pri)
    head, _, body = got.partition(b": ")
    assert head.endswith(b" glexec-audit[%d]" % os.getpid())
    assert bm.parse_shipped(body).line == line.rstrip(b"\n")


def test_shipped_tag_carries_the_glexec_pid_given(private_dir):
    """The engine service appends for a glexec process that is not itself (the shim): the
    datagram is tagged with the pid the engine passes (Call.glexec_pid), as its classic
    syslog lines are."""
    path = os.path.join(private_dir, "audit.jsonl")
    sock_path = os.path.join(private_dir, "log.sock")
    glexec_pid = os.getpid() + 4242
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(sock_path)
        line, _ = auditlog.append(path, record("grant", T0, host=os.uname().nodename),
                                  ship_to=(sock_path, "LOG_LOCAL5", glexec_pid))
        got = rx.recv(65536)
    assert got.startswith(b"<%d>" % (syslog.LOG_LOCAL5 | syslog.LOG_NOTICE))
    head, _, body = got.partition(b": ")
    assert head.endswith(b" glexec-audit[%d]" % glexec_pid)
    assert bm.parse_shipped(body).line == line.rstrip(b"\n")


def test_ship_never_blocks_and_never_raises(private_dir):
    path = os.path.join(private_dir, "audit.jsonl")
    line, chain = auditlog.append(path, record("grant", T0, host="wnA"))
    assert auditlog.ship(line, chain, os.path.join(private_dir, "absent"), host="wnA") is False
    sock_path = os.path.join(private_dir, "full.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:     # nobody reads it
        rx.bind(sock_path)
        t0 = time.monotonic()
        results = [auditlog.ship(line, chain, sock_path, host="wnA") for _ in range(2000)]
        assert time.monotonic() - t0 < 20
    assert results[0] is True and results[-1] is False     # the queue filled: dropped, not blocked


def test_config_keys():
    c = parse_config(with_section("backmap", None), "glexec.yaml")
    assert (c.audit.ship, c.audit.ship_socket, c.audit.ship_facility) == (False, "/dev/log", "LOG_AUTHPRIV")
    text = with_section("backmap", None).replace(
        "audit:\n", "audit:\n  ship: true\n  ship_socket: /run/x.sock\n  ship_facility: LOG_LOCAL5\n", 1)
    c = parse_config(text, "glexec.yaml")
    assert (c.audit.ship, c.audit.ship_socket, c.audit.ship_facility) == (True, "/run/x.sock", "LOG_LOCAL5")


def test_log_only_records_are_written_and_not_shipped(private_dir):
    """Log-only mode: the file is write-only for the engine (no chain, no first line to
    read); the append must still succeed, and there is nothing to ship."""
    path = os.path.join(private_dir, "audit.jsonl")
    auditlog.append(path, record("grant", T0, host="wnA"))
    line, chain = auditlog.append(path, record("grant", T0 + S, host="wnA"), privileged=False)
    assert chain is None and b'"seq"' not in line
    assert auditlog.ship(line, chain, os.path.join(private_dir, "s.sock"), host="wnA") is False
    assert open(path, "rb").read().endswith(line)


def test_the_site_tools_records_are_shipped_too(private_dir):
    """prune/sweep/leases write into the same audit file and chain: front.load_section
    registers glexec.yaml's audit.ship, so front.admin_record ships its record; the chain
    reaching the collector has no hole."""
    from glexec_tools import front
    path = os.path.join(private_dir, "audit.jsonl")
    sock_path = os.path.join(private_dir, "log.sock")
    conf = os.path.join(private_dir, "glexec.yaml")
    with open(conf, "w") as f:
        f.write(with_section("leases", None, state_dir=private_dir, audit_file=path).replace(
            "audit:\n", f"audit:\n  ship: true\n  ship_socket: {sock_path}\n", 1))
    os.chmod(conf, 0o644)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(sock_path)
        rx.settimeout(5)
        auditlog.append(path, record("grant", T0, host=os.uname().nodename),
                        ship_to=(sock_path, "LOG_AUTHPRIV"))                # as the engine
        front.load_section("leases", conf)
        front.admin_record(path, "glexec-leases", "lease_admin", {"action": "release"})
        got = [bm.parse_shipped(rx.recv(65536).partition(b": ")[2]) for _ in range(2)]
    assert [g.seq for g in got] == [1, 2] and all(isinstance(g, bm.Shipped) for g in got)
    assert json.loads(got[1].line)["event"] == "lease_admin"
    assert got[1].line == open(path, "rb").read().splitlines()[1]
