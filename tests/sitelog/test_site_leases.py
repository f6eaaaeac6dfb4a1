"""The PostgreSQL lease backend as the site index's second source, on a real PostgreSQL: the
lease database (schema 1 upgraded to 2 by ``glexec-leases db-init``) written by the real
store (``PgLeaseStore``) from two "nodes", read by ``SiteIndex.refresh_leases`` and by
``glexec-backmap --site`` (the tool, its lease source from glexec.yaml)."""
import json
import os
import pwd
import subprocess
import time

import pytest

from glexec_py.core.leases import LeaseOwner
from glexec_tools.backmap import plan as bm
from glexec_tools.backmap.site import SiteIndex
from tests.sitelog.shipping import record, ship_all, stage

ACCOUNT = "nobody"        # an account with a uid on every host (the lease's uid: pwd here)
UID = pwd.getpwnam(ACCOUNT).pw_uid
TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                     "tools", "bin")
PY = ["/usr/bin/python3.11", "-I", "-S"]


def who(name):
    dn = f"/DC=test/CN={name}".encode()
    return dn, LeaseOwner(("x509", f"CN={name},DC=test"), dn, True)


@pytest.fixture
def lease_db(pg, private_dir):
    """A lease database at schema 1, upgraded by glexec-leases db-init; its pool: ``root``
    (so that the lease's uid is known here), its conninfo file."""
    conninfo = pg.conninfo(pg.fresh_db(version=1))
    f = os.path.join(private_dir, "leases.conninfo")
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, conninfo.encode())
    os.close(fd)
    init = PY + [os.path.join(TOOLS, "glexec-leases"), "db-init", "--postgresql", f, "--json"]
    r = subprocess.run(init, capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0 and json.loads(r.stdout)["previous"] == 1, r
    r = subprocess.run(init, capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 1 and json.loads(r.stdout)["installed"] is False, r     # current
    from glexec_py.effects.pgleases import PgLeaseStore
    with PgLeaseStore(conninfo, node="admin") as s:
        s.add_accounts("gxtnobody", [ACCOUNT])
    return conninfo, f


def store(conninfo, node):
    from glexec_py.effects.pgleases import PgLeaseStore
    return PgLeaseStore(conninfo, node=node)


def db_time(conninfo):
    with store(conninfo, "admin") as s:
        return int(s.clock() * 1_000_000)


def test_upgrade_history_and_refresh(lease_db, site_db, private_dir):
    conninfo, _f = lease_db
    alice, bob = who("Alice"), who("Bob")
    with store(conninfo, "wnA") as a:
        acc, name, _ = a.acquire(alice[0], "gxtnobody", owner=alice[1])
    assert acc == ACCOUNT.encode()
    time.sleep(0.02)
    with store(conninfo, "wnA") as a:
        a.drain(name)
        assert a.release(name) == acc
    t_free = db_time(conninfo)
    time.sleep(0.02)
    with store(conninfo, "wnB") as b:
        got = b.acquire(bob[0], "gxtnobody", owner=bob[1])
    with store(conninfo, "wnB") as b:
        assert b.acquire(bob[0], "gxtnobody", owner=bob[1])[:2] == got[:2]
    with store(conninfo, "admin") as s:
        [(ended_by, since, ended, nodes)] = s._q(
            "SELECT ended_by, (extract(epoch FROM since) * 1000000)::bigint, "
            "(extract(epoch FROM ended) * 1000000)::bigint, nodes FROM lease_history")
        [(since_b,)] = s._q("SELECT (extract(epoch FROM since) * 1000000)::bigint FROM lease")
    assert ended_by == "release" and json.loads(nodes).keys() == {"wnA"}
    since, ended, since_b = int(since), int(ended), int(since_b)
    assert since < ended <= t_free < since_b              # one account's spans never overlap

    # The records of the two nodes: a job of Alice on wnA inside her lease; nothing of Bob
    # (his node does not ship) -- and records before and after, so that both leases lie
    # inside the history.
    recs = [record("refuse", since - 10_000_000, host="wnA"),
            record("grant", since + 1_000, host="wnA", uid=UID, dn=alice[0].decode(), account=ACCOUNT),
            record("end", since + 2_000, host="wnA", uid=UID, dn=alice[0].decode(), account=ACCOUNT)]
    idx = SiteIndex(site_db)
    stage(idx.conn, ship_all(f"{private_dir}/wnA.jsonl", "wnA", recs))
    idx.ingest()
    later = db_time(conninfo) + 10_000_000
    stage(idx.conn, ship_all(f"{private_dir}/wnA.jsonl", "wnA", [record("refuse", later, host="wnA")]))
    idx.ingest()
    assert idx.refresh_leases(conninfo) == (2, 0)
    # inside Alice's job: the record answers (the lease of the same holder is folded in)
    a = idx.uid_at(UID, since + 1_500)
    assert a.status == "known" and [(m.kind, m.host, m.identity.dn) for m in a.matches] == \
        [("audit", "wnA", alice[0].decode())], a.why
    # after her job, before the release: her lease alone, labelled
    a = idx.uid_at(UID, (since + 2_000 + ended) // 2)
    assert a.status == "known" and a.why.startswith("lease only"), a.why
    assert [(m.kind, m.host, m.identity.dn, m.end) for m in a.matches] == \
        [("lease", "wnA", alice[0].decode(), ended)]
    # between the release and Bob's lease: nobody
    assert idx.uid_at(UID, (ended + since_b) // 2).status == "none"
    # Bob's lease (now): on wnB only, lease only
    b = idx.uid_at(UID, since_b + 1)
    assert b.status == "known" and [(m.host, m.identity.dn) for m in b.matches] == [("wnB", bob[0].decode())]
    assert idx.uid_at(UID, since_b + 1, host="wnA").status == "none"
    # the history is kept: glexec cannot rewrite it
    with store(conninfo, "admin") as s:
        for sql in ("UPDATE lease_history SET dn = NULL", "DELETE FROM lease_history"):
            with pytest.raises(Exception) as e:
                s._txn(lambda: s._q(sql))
            assert "append-only" in str(e.value)
        assert len(s._q("SELECT 1 FROM lease_history")) == 1
    idx.close()


def test_a_rolled_back_lease_is_no_evidence(lease_db, site_db, private_dir):
    conninfo, _f = lease_db
    carol = who("Carol")
    with store(conninfo, "wnA") as a:
        a.acquire(carol[0], "gxtnobody", owner=carol[1])
        t = db_time(conninfo)
        assert a.rollback(a.created) is True
    with store(conninfo, "admin") as s:
        assert s._q("SELECT ended_by FROM lease_history") == [("rollback",)]
    idx = SiteIndex(site_db)
    stage(idx.conn, ship_all(f"{private_dir}/wnA.jsonl", "wnA", [
        record("refuse", t - 10_000_000, host="wnA"), record("refuse", t + 10_000_000, host="wnA")]))
    idx.ingest()
    assert idx.refresh_leases(conninfo) == (0, 0)
    assert idx.uid_at(UID, t).status == "none"
    idx.close()


def test_the_tool_reads_the_lease_source_from_glexec_yaml(lease_db, site_db, private_dir):
    """glexec-backmap --site-db ... --config glexec.yaml (mapping.lease_store: postgresql):
    the same CLI and output, the lease-only answer labelled; --no-refresh reads no leases."""
    from tests.support.glexec_yaml import with_section
    conninfo, f = lease_db
    dave = who("Dave")
    with store(conninfo, "wnC") as c:
        c.acquire(dave[0], "gxtnobody", owner=dave[1])
    t = db_time(conninfo)
    idx = SiteIndex(site_db)
    stage(idx.conn, ship_all(f"{private_dir}/wnA.jsonl", "wnA", [
        record("refuse", t - 10_000_000, host="wnA"), record("refuse", t + 10_000_000, host="wnA")]))
    idx.ingest()
    idx.close()
    conf = os.path.join(private_dir, "glexec.yaml")
    text = with_section("backmap", None, state_dir=private_dir,
                        audit_file=os.path.join(private_dir, "audit.jsonl"))
    text = text.replace("mapping:\n", "mapping:\n  lease_store: postgresql\n", 1)
    text += f"postgresql:\n  conninfo_file: {f}\n"
    with open(conf, "w") as fh:
        fh.write(text)
    os.chmod(conf, 0o644)
    at = bm.format_time(t)
    base = PY + [os.path.join(TOOLS, "glexec-backmap"), "--config", conf,
            "--site-db", site_db, "--uid", str(UID), "--at", at]
    r = subprocess.run(base + ["--no-refresh", "--json"], capture_output=True, text=True, timeout=60,
                       cwd="/")
    assert r.returncode == 1 and json.loads(r.stdout)["status"] == "none", r
    r = subprocess.run(base + ["--json"], capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0, r
    j = json.loads(r.stdout)
    assert j["status"] == "known" and j["why"].startswith("lease only"), j
    assert [(m["kind"], m["host"], m["dn"]) for m in j["matches"]] == [("lease", "wnC", dave[0].decode())]
    r = subprocess.run(base, capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0 and r.stdout.startswith("KNOWN: lease only"), r
