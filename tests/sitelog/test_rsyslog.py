"""Records shipped through real rsyslog instances (the configuration in packaging/rsyslog/)
into the site index on a real PostgreSQL: two hosts, the collector down for a while with
the shipped and with the default configuration, and forged or repeated messages."""
import os
import subprocess
import time

from glexec_py.effects import auditlog
from glexec_tools.backmap import plan as bm
from glexec_tools.backmap.site import SiteIndex
from tests.sitelog.shipping import BOOT, S, T0, record
from tests.support import rsyslog


class Node:
    """One "host": its own audit file, and the records shipped to its rsyslog sender."""

    def __init__(self, directory, host, sender):
        self.audit, self.host, self.sender = os.path.join(directory, f"{host}.jsonl"), host, sender
        self.t, self.pid = T0, 100

    def job(self, dn, uid=47011, length=50 * S, gap=20 * S):
        """A grant and its end, shipped as the engine ships them."""
        self.pid += 1
        start = self.t
        for event, t in (("grant", start), ("end", start + length)):
            line, chain = auditlog.append(self.audit, record(event, t, host=self.host, uid=uid,
                                                             dn=dn, pid=self.pid))
            assert auditlog.ship(line, chain, self.sender.socket, host=self.host, boot_id=BOOT)
        self.t = start + length + gap
        return start, start + length


def staged(relay):
    import psycopg2
    with psycopg2.connect(relay.conninfo) as c, c.cursor() as cur:
        cur.execute("SELECT count(*) FROM glexec_audit_inbox")
        return cur.fetchone()[0]


def wait_staged(relay, n, timeout=60):
    deadline = time.monotonic() + timeout
    while staged(relay) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    return staged(relay)


def test_two_hosts_reach_the_central_index(private_dir, relay):
    a = Node(private_dir, "wnA", relay.sender("wnA"))
    b = Node(private_dir, "wnB", relay.sender("wnB"))
    ja = [a.job("/CN=Alice") for _ in range(3)]
    jb = [b.job("/CN=Bob") for _ in range(3)]
    assert wait_staged(relay, 12) == 12
    idx = SiteIndex(relay.conninfo)
    assert idx.ingest() == {"received": 12, "stored": 12, "duplicates": 0, "rejected": 0}
    for (s_a, _e), (s_b, _e2) in zip(ja, jb):
        ans = idx.uid_at(47011, s_a + S)
        assert ans.status == "known"
        assert sorted((m.host, m.identity.dn) for m in ans.matches) == [("wnA", "/CN=Alice"),
                                                                       ("wnB", "/CN=Bob")]
    assert idx.uid_at(47011, ja[0][1] + 5 * S).status == "none"
    assert not idx._flags(bm.NEVER, bm.FOREVER)
    idx.close()


def _collector_down_for_a_while(relay, node, jobs_while_down):
    node.job("/CN=Alice")
    assert wait_staged(relay, 2) == 2
    relay.collector.stop()
    down = [node.job("/CN=Alice") for _ in range(jobs_while_down)]
    time.sleep(1)
    rsyslog.start_again(relay.collector)
    return down


def test_collector_down_nothing_lost_with_the_shipped_config(private_dir, relay):
    node = Node(private_dir, "wnA", relay.sender("wnA"))
    down = _collector_down_for_a_while(relay, node, 5)
    after = node.job("/CN=Alice")
    total = 2 + 2 * len(down) + 2
    assert wait_staged(relay, total, timeout=90) >= total, relay.collector.log()
    idx = SiteIndex(relay.conninfo)
    stats = idx.ingest()
    assert stats["stored"] == total and stats["rejected"] == 0
    assert not idx._flags(bm.NEVER, bm.FOREVER)
    for start, _end in down + [after]:
        assert idx.uid_at(47011, start + S).status == "known"
    idx.close()


def test_collector_down_with_the_default_config_is_a_gap(private_dir, relay):
    node = Node(private_dir, "wnA", relay.sender("wnA", reliable=False))
    down = _collector_down_for_a_while(relay, node, 5)
    # rsyslog retries a suspended action only now and then: ship until one arrives again
    deadline, n = time.monotonic() + 120, 0
    while time.monotonic() < deadline and staged(relay) <= 2 + n:
        last = node.job("/CN=Alice")
        n += 1
        time.sleep(1)
    assert staged(relay) > 2, relay.collector.log()
    shipped = 2 + 2 * len(down) + 2 * n
    idx = SiteIndex(relay.conninfo)
    stats = idx.ingest()
    assert stats["stored"] < shipped                      # lines were lost ...
    gaps = [f for f in idx._flags(bm.NEVER, bm.FOREVER) if f.kind == "shipping_gap"]
    assert gaps and all(f.host == "wnA" for f in gaps)   # ... and the index says so
    ans = idx.uid_at(47011, down[2][0] + S)
    assert ans.status == "unknown" and "not received" in ans.why + "".join(f.why for f in ans.flags)
    assert idx.uid_at(47011, last[0] + S).status == "known"
    idx.close()


def test_forged_and_repeated_messages(private_dir, relay):
    snd = relay.sender("wnA")
    node = Node(private_dir, "wnA", snd)
    node.job("/CN=Alice")
    line, chain = auditlog.append(node.audit, record("grant", node.t, host="wnA", pid=7, dn="/CN=Alice"))
    for _ in range(3):                                    # a repeated message (at-least-once)
        auditlog.ship(line, chain, snd.socket, host="wnA", boot_id=BOOT)
    # root on wnA speaking for wnB: refused at ingest
    other = os.path.join(private_dir, "wnB.jsonl")
    l2, c2 = auditlog.append(other, record("grant", node.t, host="wnB", pid=8, dn="/CN=Mallory"))
    auditlog.ship(l2, c2, snd.socket, host="wnB", boot_id=BOOT)
    # a local user writing to the socket: not forwarded; the same message from root is
    # (logger reports no error when it cannot send: root's copy shows the path works)
    forged = auditlog.ship_message(l2, c2, "wnA", BOOT).decode()
    assert os.stat(snd.socket).st_mode & 0o002, "the socket must be open to everyone, as /dev/log"
    for user in ("nobody", "root"):
        subprocess.run(["logger", "-u", snd.socket, "-t", "glexec-audit", forged], user=user,
                       check=True, timeout=30)
    assert wait_staged(relay, 7) == 7
    time.sleep(2)
    assert staged(relay) == 7, "the unprivileged user's message must not be forwarded"
    idx = SiteIndex(relay.conninfo)
    assert idx.ingest() == {"received": 7, "stored": 3, "duplicates": 2, "rejected": 2}
    cur = idx.conn.cursor()
    cur.execute("SELECT hostname, why FROM site_rejects ORDER BY id")
    # root's logger copy: an envelope of wnA around a record of wnB
    assert sorted(cur.fetchall()) == [("wnA", "record of another host than its envelope"),
                                      ("wnA", "sent by wnA for another host")]
    assert not idx._flags(bm.NEVER, bm.FOREVER)
    idx.close()
