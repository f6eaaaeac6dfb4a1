"""glexec-leases against the PostgreSQL lease store (tools/bin/glexec-leases as a
subprocess, a real PostgreSQL 15 started by the test run): db-init, accounts-add, list,
expire with confirmations from the nodes a lease was used on (a lease used on node B is
released from node C once B confirmed), migration gridmapdir -> database -> gridmapdir.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from glexec_py.core.leases import LeaseOwner, lease_name
from glexec_py.effects.gridmapdir import GridmapDir
from glexec_py.effects.pgleases import PgLeaseStore
from tests.leases import pg_invariants
from tests.support.postgres import postgres  # noqa: F401  (session fixture)

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "bin" / "glexec-leases"
BASE = Path("/var/lib/glexec-py-tests")
POOL = "gxlpool"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="glexec-leases is root only")


def who(i):
    text = b"/DC=test/DC=leases-pg/CN=User %d" % i
    return text, LeaseOwner(("x509", "CN=User %d,DC=leases-pg,DC=test" % i), text, True)


@pytest.fixture
def site(postgres):  # noqa: F811
    BASE.mkdir(mode=0o755, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="leasestool-pg-", dir=BASE))
    os.chmod(root, 0o755)
    name = f"tool{os.getpid()}_{int(time.monotonic() * 1000) % 10**8}"
    postgres.psql(f"CREATE DATABASE {name}")
    conninfo = root / "leases.conninfo"
    conninfo.write_text(postgres.conninfo(name) + "\n")
    os.chmod(conninfo, 0o600)
    s = Site(root, conninfo, postgres.conninfo(name))
    yield s
    shutil.rmtree(root)


class Site:
    def __init__(self, root, conninfo_file, conninfo):
        self.root, self.conninfo_file, self.conninfo = root, conninfo_file, conninfo
        self.audit_file = root / "audit.jsonl"

    def state(self, node):
        d = self.root / f"state-{node}"
        for sub in ("", "prune", "sweep"):
            (d / sub).mkdir(mode=0o755, exist_ok=True)
        return d

    def run(self, *args, node="nodeC", json_out=True, store=True):
        argv = [str(TOOL), *args, "--audit-file", str(self.audit_file), "--node", node,
                "--state-dir", str(self.state(node))]
        if store:
            argv += ["--postgresql", str(self.conninfo_file)]
        if json_out:
            argv.append("--json")
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if json_out and r.stdout:
            r.data = json.loads(r.stdout)
        return r

    def store(self, node):
        return PgLeaseStore(self.conninfo, node=node)

    def idle_records(self, node, account):
        """This node's prune-users and glexec-sweep records: no processes, no files, now."""
        d = self.state(node)
        boot = open("/proc/sys/kernel/random/boot_id").read().strip()
        now = time.time()
        for sub, rec in (("prune", {"v": 1, "result": "no_processes", "boot_id": boot, "time": now}),
                         ("sweep", {"v": 1, "state": "no_files", "swept_at_unix": now})):
            p = d / sub / f"{account}.json"
            p.write_text(json.dumps(rec))
            os.chmod(p, 0o644)


def test_expire_needs_confirmation_from_every_node_the_lease_was_used_on(site):
    r = site.run("db-init")
    assert r.returncode == 0 and r.data["installed"], r.stderr
    assert site.run("db-init").returncode == 1                       # already there: unchanged
    r = site.run("accounts-add", POOL, *[f"{POOL}{i:02d}" for i in range(1, 4)])
    assert r.returncode == 0 and r.data["added"] == 3, r.stderr
    with site.store("nodeA") as a:
        acc, lease, _ = a.acquire(who(0)[0], POOL, owner=who(0)[1])
    with site.store("nodeB") as b:
        assert b.acquire(who(0)[0], POOL, owner=who(0)[1])[:2] == (acc, lease)   # used on B too
    r = site.run("list")
    assert r.returncode == 0, r.stderr
    [row] = r.data["leases"]
    assert row["account"] == acc.decode() and set(row["nodes"]) == {"nodeA", "nodeB"}
    assert r.data["free"] == [f"{POOL}02", f"{POOL}03"]
    # drain now (idle for >= 0 s), from node C
    r = site.run("expire", "--older-than", "0", "--grace", "0", "--yes")
    assert r.returncode == 0 and r.data["done"][0]["done"] == "drained", r.stdout + r.stderr
    # node A confirms; node B not yet: nothing is released
    site.idle_records("nodeA", acc.decode())
    r = site.run("confirm", node="nodeA")
    assert r.returncode == 0 and sum(c["posted"] for c in r.data["confirmations"]) == 2, r.stdout
    r = site.run("expire", "--older-than", "0", "--grace", "0", "--yes")
    [p] = r.data["plan"]
    assert p["action"] == "wait" and "nodeB:prune" in p["why"], p
    # node C has no records of its own: its confirm posts nothing (the lease was not used there)
    assert site.run("confirm").data["confirmations"] == []
    site.idle_records("nodeB", acc.decode())
    assert site.run("confirm", node="nodeB").returncode == 0
    r = site.run("expire", "--older-than", "0", "--grace", "0", "--yes")
    assert r.returncode == 0 and r.data["done"][0]["done"] == "released", r.stdout
    assert pg_invariants.check(site.conninfo) == {}
    audit = [json.loads(x) for x in site.audit_file.read_text().splitlines()]
    assert [a["action"] for a in audit if a.get("action", "").startswith("expire")] == \
        ["expire_drain", "expire_release"]
    assert all(a.get("lease_store") == "postgresql" for a in audit)


def test_confirmations_older_than_the_drain_do_not_count(site):
    site.run("db-init")
    site.run("accounts-add", POOL, f"{POOL}01")
    with site.store("nodeA") as a:
        acc, lease, _ = a.acquire(who(1)[0], POOL, owner=who(1)[1])
    site.idle_records("nodeA", acc.decode())                # observed BEFORE the drain
    time.sleep(0.05)
    site.run("expire", "--older-than", "0", "--grace", "0", "--yes")
    site.run("confirm", node="nodeA")
    r = site.run("expire", "--older-than", "0", "--grace", "0", "--yes")
    assert r.data["plan"][0]["action"] == "wait", r.data


def test_conninfo_file_must_be_private(site):
    os.chmod(site.conninfo_file, 0o644)
    r = site.run("list", json_out=False)
    assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "private" in r.stderr and "Traceback" not in r.stderr


def test_migrate_gridmapdir_to_postgresql_and_back(site):
    site.run("db-init")
    gmd = site.root / "gridmapdir"
    gmd.mkdir(mode=0o755)
    for i in range(1, 6):
        (gmd / f"{POOL}{i:02d}").touch(mode=0o644)
    with GridmapDir(str(gmd)) as g:
        before = {}
        for i in range(3):
            acc, lease, _ = g.acquire(who(i)[0], POOL.encode(), owner=who(i)[1], caller=4711)
            before[lease] = acc
        g.drain(lease_name(who(2)[0]))
        # an LCMAPS-made lease (no record, no owner)
        os.link(gmd / f"{POOL}05", gmd / "%2fcn%3dlcmaps")
        before[b"%2fcn%3dlcmaps"] = f"{POOL}05".encode()
    r = site.run("migrate", "--to", "postgresql", "--gridmapdir", str(gmd))
    assert r.returncode == 0 and r.data["leases"] == 4, r.stdout + r.stderr
    with GridmapDir(str(gmd)) as g:
        assert g.leases() == {}                                     # moved, not copied
    with site.store("nodeA") as s:
        now = {name: acc for name, (acc, _rec, _t) in s.leases().items()}
        assert now == before
        assert s.acquire(who(0)[0], POOL, owner=who(0)[1])[:2] == (before[lease_name(who(0)[0])],
                                                                  lease_name(who(0)[0]))
        with pytest.raises(Exception) as e:
            s.acquire(who(2)[0], POOL, owner=who(2)[1])
        assert getattr(e.value, "reason", None) == "lease_draining"
        # the LCMAPS lease belongs to no identity: a new identity never gets its account
        [free] = {f"{POOL}{i:02d}".encode() for i in range(1, 6)} - set(before.values())
        assert s.acquire(who(3)[0], POOL, owner=who(3)[1])[0] == free
        before[lease_name(who(3)[0])] = free
    pg_invariants.check(site.conninfo)
    r = site.run("migrate", "--to", "gridmapdir", "--gridmapdir", str(gmd))
    assert r.returncode == 0 and r.data["leases"] == 5, r.stdout + r.stderr
    with GridmapDir(str(gmd)) as g:
        back = g.leases()
        assert {n: a for n, (a, _r, _t) in back.items()} == before
        assert back[lease_name(who(2)[0])][1]["state"] == "draining"
        assert back[lease_name(who(0)[0])][1]["owner"] == list(who(0)[1].key)
        assert back[lease_name(who(0)[0])][1]["caller"] == 4711
        assert g.acquire(who(1)[0], POOL.encode(), owner=who(1)[1])[2] is True   # reused
        assert [f for f in g.fsck() if f.severity == "error"] == []
    assert pg_invariants.check(site.conninfo) == {}


def test_drain_and_release_by_account(site):
    site.run("db-init")
    site.run("accounts-add", POOL, f"{POOL}01", f"{POOL}02")
    with site.store("nodeA") as a:
        acc, lease, _ = a.acquire(who(5)[0], POOL, owner=who(5)[1])
    r = site.run("drain", "--account", acc.decode())
    assert r.returncode == 0 and r.data["done"][0]["lease"] == lease.decode(), r.stdout + r.stderr
    assert site.run("show", acc.decode()).data["leases"][0]["state"] == "draining"
    r = site.run("release", "--account", acc.decode(), "--dry-run")
    assert r.returncode == 0 and r.data["done"] == [] and len(r.data["plan"]) == 1
    assert len(pg_invariants.check(site.conninfo)) == 1
    r = site.run("release", "--account", acc.decode())
    assert r.returncode == 0 and r.data["done"][0]["account"] == acc.decode(), r.stdout + r.stderr
    assert pg_invariants.check(site.conninfo) == {}
    assert acc.decode() in site.run("list").data["free"]
    assert site.run("fsck").data["clean"] is True
