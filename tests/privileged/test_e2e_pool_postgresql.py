"""Pool accounts through the installed binary with ``mapping.lease_store: postgresql``:
the engine (isolated interpreter, trusted-installation check with libpq's module loaded)
leases from a real PostgreSQL 15 started by the test run, over a unix socket, with the
conninfo in a root-only file."""
import os

import pytest

from glexec_py.core.leases import lease_name
from tests.leases import pg_invariants
from tests.privileged.conftest import USER1_DN, USER2_DN, USER3_DN
from tests.support import accounts as acc
from tests.support.postgres import postgres  # noqa: F401  (session fixture)

POOL = ["gxtpgpool01", "gxtpgpool02"]


@pytest.fixture(scope="module")
def pg_pool_accounts(accounts):
    acc.create_group("gxtpgpool", 47170)
    made = []
    try:
        for i, name in enumerate(POOL):
            made.append(acc.create_user(name, 47171 + i, "gxtpgpool"))
        yield made
    finally:
        acc.kill_uid_processes({a.uid for a in made})
        for a in made:
            acc.remove_user(a.name)
        acc.remove_group("gxtpgpool")


@pytest.fixture
def lease_db(gx, pg_pool_accounts, postgres):  # noqa: F811
    from glexec_py.effects.pgleases import PgLeaseStore
    conninfo = postgres.conninfo(postgres.fresh_db())
    with PgLeaseStore(conninfo, node="admin") as s:
        s.add_accounts("gxtpgpool", POOL)
    f = gx.prefix / "etc" / "glexec-py" / "leases.conninfo"
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, conninfo.encode() + b"\n")
    os.close(fd)
    os.chown(f, 0, 0)
    os.chmod(f, 0o600)
    gx.gridmap([(USER1_DN, ".gxtpgpool"), (USER2_DN, ".gxtpgpool"), (USER3_DN, ".gxtpgpool")])
    gx.config(mapping={"lease_store": "postgresql", "max_leases_per_caller": 0},
              postgresql={"conninfo_file": str(f), "node": "e2e-node", "timeout_ms": 1500})

    class DB:
        info = conninfo
        file = f
        cluster = postgres

        def leases(self):
            with PgLeaseStore(conninfo, node="admin") as s:
                return {name: (a.decode(), rec) for name, (a, rec, _t) in s.leases().items()}
    yield DB()
    f.unlink(missing_ok=True)


def test_two_proxies_get_distinct_accounts_and_reuse_their_leases(gx, lease_db):
    one = gx.run(["/usr/bin/id", "-un"], proxy=gx.proxy("user1"))
    two = gx.run(["/usr/bin/id", "-un"], proxy=gx.proxy("user2"))
    gx.assert_granted(one)
    gx.assert_granted(two)
    a1, a2 = one.stdout.decode().strip(), two.stdout.decode().strip()
    assert {a1, a2} == set(POOL)
    assert one.grants[0]["lease"]["name"] == lease_name(USER1_DN.encode()).decode()
    assert one.grants[0]["lease"]["reused"] is False
    again = gx.run(["/usr/bin/id", "-un"], proxy=gx.proxy("user1"))
    gx.assert_granted(again)
    assert again.stdout.decode().strip() == a1 and again.grants[0]["lease"]["reused"] is True
    leases = lease_db.leases()
    assert {a for a, _ in leases.values()} == {a1, a2}
    assert all(set(rec["nodes"]) == {"e2e-node"} and rec["caller"] == gx.accounts.pilot.uid
               for _, rec in leases.values())
    pg_invariants.check(lease_db.info)


def test_exhausted_pool_refuses_and_leaves_nothing(gx, lease_db):
    gx.assert_granted(gx.run(["/bin/true"], proxy=gx.proxy("user1")))
    gx.assert_granted(gx.run(["/bin/true"], proxy=gx.proxy("user2")))
    before = lease_db.leases()
    r = gx.run(["/bin/true"], proxy=gx.proxy("user3"))
    gx.assert_refused(r, 203, "pool_exhausted")
    assert lease_db.leases().keys() == before.keys()


def test_database_down_is_202_and_nothing_runs(gx, lease_db):
    lease_db.cluster.stop("fast")
    try:
        r = gx.run(["/usr/bin/id", "-un"], proxy=gx.proxy("user1"))
        gx.assert_refused(r, 202, "lease_db")
    finally:
        lease_db.cluster.start()
    assert lease_db.leases() == {}
    gx.assert_granted(gx.run(["/bin/true"], proxy=gx.proxy("user1")))


def test_a_readable_conninfo_file_is_refused(gx, lease_db):
    os.chmod(lease_db.file, 0o640)
    r = gx.run(["/bin/true"], proxy=gx.proxy("user1"))
    gx.assert_refused(r, 202, "lease_db_conninfo")
    assert lease_db.leases() == {}
