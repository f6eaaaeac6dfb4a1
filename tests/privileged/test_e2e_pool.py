"""Pool accounts through the installed binary: gridmapdir leases in LCMAPS's on-disk format."""
import os
import shutil

import pytest

from glexec_py.core.leases import lease_name
from tests.privileged.conftest import USER1_DN, USER2_DN, USER3_DN
from tests.support import accounts as acc

POOL = ["gxtpool01", "gxtpool02"]


@pytest.fixture(scope="module")
def pool_accounts(accounts):
    acc.create_group("gxtpool", 47150)
    made = []
    try:
        for i, name in enumerate(POOL):
            made.append(acc.create_user(name, 47151 + i, "gxtpool"))
        yield made
    finally:
        acc.kill_uid_processes({a.uid for a in made})
        for a in made:
            acc.remove_user(a.name)
        acc.remove_group("gxtpool")


@pytest.fixture
def gridmapdir(gx, pool_accounts):
    d = gx.prefix / "var" / "lib" / "glexec-py" / "gridmapdir"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(mode=0o755)
    for name in POOL:
        (d / name).touch(mode=0o644)
    gx.gridmap([(USER1_DN, ".gxtpool"), (USER2_DN, ".gxtpool"), (USER3_DN, ".gxtpool")])
    # one pilot takes the whole pool here (exhaustion); the per-caller limit: below
    gx.config(mapping={"gridmapdir": str(d), "max_leases_per_caller": 0})
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _lease(d, dn):
    return d / lease_name(dn.encode()).decode()


def test_identity_gets_a_pool_account_and_keeps_it(gx, gridmapdir):
    r = gx.run(["/usr/bin/id", "-un"])
    gx.assert_granted(r)
    account = r.stdout.decode().strip()
    assert account in POOL
    lease = _lease(gridmapdir, USER1_DN)
    assert lease.name == "%2fdc%3dtest%2fdc%3dglexec%2dpy%2fcn%3dtest%20user%20one"
    assert os.stat(lease).st_ino == os.stat(gridmapdir / account).st_ino
    assert os.stat(lease).st_nlink == 2
    assert r.grants[0]["lease"]["name"] == lease.name
    again = gx.run(["/usr/bin/id", "-un"])
    gx.assert_granted(again)
    assert again.stdout.decode().strip() == account
    assert again.grants[0]["lease"]["reused"] is True


def test_two_identities_never_share_an_account(gx, gridmapdir):
    one = gx.run(["/usr/bin/id", "-un"], proxy=gx.proxy("user1"))
    two = gx.run(["/usr/bin/id", "-un"], proxy=gx.proxy("user2"))
    gx.assert_granted(one)
    gx.assert_granted(two)
    assert one.stdout != two.stdout
    assert {one.stdout.decode().strip(), two.stdout.decode().strip()} == set(POOL)


def test_exhausted_pool_refuses_and_leaves_nothing(gx, gridmapdir):
    gx.assert_granted(gx.run(["/usr/bin/id"], proxy=gx.proxy("user1")))
    gx.assert_granted(gx.run(["/usr/bin/id"], proxy=gx.proxy("user2")))
    before = sorted(p.name for p in gridmapdir.iterdir() if not p.name.startswith("."))
    r = gx.run(["/usr/bin/id"], proxy=gx.proxy("user3"))
    gx.assert_refused(r, 203, "pool_exhausted")
    after = sorted(p.name for p in gridmapdir.iterdir() if not p.name.startswith("."))
    assert after == before
    assert not _lease(gridmapdir, USER3_DN).exists()


def test_pool_without_gridmapdir_is_a_site_fault(gx, pool_accounts):
    gx.gridmap([(USER1_DN, ".gxtpool")])
    r = gx.run(["/usr/bin/id"])
    gx.assert_refused(r, 202, "gridmapdir")


def test_one_caller_cannot_drain_the_pool_another_still_gets_an_account(gx, gridmapdir):
    """mapping.max_leases_per_caller through the installed binary: gxtpilot's second new
    lease is refused (203) while gxtgroupie, another allowed caller, still gets one."""
    gx.config(mapping={"gridmapdir": str(gridmapdir), "max_leases_per_caller": "50%"})
    first = gx.run(["/usr/bin/id", "-un"], proxy=gx.proxy("user1"))
    gx.assert_granted(first)
    before = sorted(p.name for p in gridmapdir.iterdir())
    r = gx.run(["/bin/true"], proxy=gx.proxy("user2"))
    gx.assert_refused(r, 203, "caller_lease_limit")
    assert r.records[0]["detail"]["limit"] == 1 and r.records[0]["detail"]["caller"] == gx.accounts.pilot.uid
    assert sorted(p.name for p in gridmapdir.iterdir()) == before
    # reuse of the pilot's existing lease is not a new one
    gx.assert_granted(gx.run(["/usr/bin/id", "-un"], proxy=gx.proxy("user1")))
    other = gx.run(["/usr/bin/id", "-un"], user="gxtgroupie", proxy=gx.proxy("user2", owner="gxtgroupie"))
    gx.assert_granted(other)
    assert {first.stdout, other.stdout} == {b"gxtpool01\n", b"gxtpool02\n"}


def test_a_pool_account_pam_refuses_is_skipped_never_leased(gx, gridmapdir):
    """PAM's account check runs for every free entry before it is linked (under the lock):
    an expired pool account is skipped for the next free one, so it never blocks the pool,
    and when only refused accounts are left the pool is exhausted with nothing leased."""
    acc.expire_user("gxtpool01")
    try:
        r = gx.run(["/usr/bin/id", "-un"], proxy=gx.proxy("user1"))
        gx.assert_granted(r)
        assert r.stdout == b"gxtpool02\n"
        assert r.grants[0]["lease"].get("skipped", []) in ([], [{"account": "gxtpool01",
                                                                  "pam_code": "PAM_ACCT_EXPIRED"}])
        before = sorted(p.name for p in gridmapdir.iterdir() if not p.name.startswith("."))
        r = gx.run(["/bin/true"], proxy=gx.proxy("user2"))
        gx.assert_refused(r, 203, "pool_exhausted")
        assert r.records[0]["detail"]["pam_skipped"] == [{"account": "gxtpool01",
                                                           "pam_code": "PAM_ACCT_EXPIRED"}]
        assert sorted(p.name for p in gridmapdir.iterdir() if not p.name.startswith(".")) == before
        assert not _lease(gridmapdir, USER2_DN).exists()
        # an existing lease whose account PAM now refuses: refused, the lease stays
        acc.expire_user("gxtpool02")
        r = gx.run(["/bin/true"], proxy=gx.proxy("user1"))
        gx.assert_refused(r, 203, "pam_account")
        assert _lease(gridmapdir, USER1_DN).exists()
    finally:
        for name in POOL:
            acc.expire_user(name, "")
    gx.assert_granted(gx.run(["/bin/true"], proxy=gx.proxy("user2")))
