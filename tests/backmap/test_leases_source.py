"""The gridmapdir as a second source: a real lease (``GridmapDir.acquire``) on a real pool
account (``gxtbm001``, uid 47195, created here and removed afterwards)."""
import os
import pwd

import pytest

from glexec_py.effects import auditlog
from glexec_tools.backmap.apply import Index
from glexec_py.effects.gridmapdir import GridmapDir
from tests.backmap.backmap_helpers import S, record
from tests.support import accounts as acc

POOL_UID = 47195            # tests/backmap's id (see tests/support/accounts.py)
ACCOUNT = "gxtbm001"
DN = "/DC=org/DC=example/CN=Lease Holder"


@pytest.fixture
def pool_account():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for name in (ACCOUNT,):
        try:
            pwd.getpwnam(name)
            acc.remove_user(name)
        except KeyError:
            pass
    try:
        acc.remove_group(ACCOUNT)
    except Exception:
        pass
    acc.create_group(ACCOUNT, POOL_UID)
    yield acc.create_user(ACCOUNT, POOL_UID, ACCOUNT)
    acc.remove_user(ACCOUNT)
    acc.remove_group(ACCOUNT)


@pytest.fixture
def world(private_dir, pool_account):
    gmd = os.path.join(private_dir, "gridmapdir")
    os.mkdir(gmd, 0o755)
    open(os.path.join(gmd, ACCOUNT), "wb").close()
    audit = os.path.join(private_dir, "audit.jsonl")
    index = Index(os.path.join(private_dir, "backmap.sqlite"))
    yield gmd, audit, index
    index.close()


def test_lease_settles_an_open_grant(world):
    gmd, audit, index = world
    with GridmapDir(gmd) as g:
        account, lease, _ = g.acquire(DN.encode(), b"gxtbm")
    assert account == ACCOUNT.encode()
    t0 = int(os.stat(os.path.join(gmd, ACCOUNT)).st_mtime * 1_000_000) - 1000 * S
    # A grant (payload still running, no end record) and, later, someone else's refusal.
    auditlog.append(audit, record("grant", t0 + S, uid=POOL_UID, pid=7, dn=DN, account=ACCOUNT,
                                  host=os.uname().nodename))
    auditlog.append(audit, record("refuse", t0 + 100 * S, host=os.uname().nodename))
    index.refresh([audit])
    assert index.uid_at(POOL_UID, t0 + 50 * S).status == "unknown"      # end not recorded
    index.refresh([audit], gridmapdir=gmd)
    # the lease was made "now" (after t0 + 100 s): it proves nothing about t0 + 50 s
    assert index.uid_at(POOL_UID, t0 + 50 * S).status == "unknown"
    seen = index.db.execute("SELECT start, end FROM occupations WHERE kind='lease'").fetchall()
    assert len(seen) == 1 and seen[0][0] <= seen[0][1]
    # Once the lease's span lies inside the audit history, the same identity's open grant is
    # settled there, and the answer names the holder.
    auditlog.append(audit, record("refuse", seen[0][1] + 10 * S, host=os.uname().nodename))
    index.refresh([audit])
    answer = index.uid_at(POOL_UID, seen[0][1])
    assert answer.status == "known", answer.why
    assert {m.identity.dn for m in answer.matches} == {DN}
    assert {m.kind for m in answer.matches} == {"audit", "lease"}


def test_lease_of_another_identity_does_not_settle(world):
    gmd, audit, index = world
    with GridmapDir(gmd) as g:
        g.acquire(b"/CN=Someone Else", b"gxtbm")
    auditlog.append(audit, record("grant", 1_000_000 * S, uid=POOL_UID, pid=7, dn=DN, account=ACCOUNT,
                                  host=os.uname().nodename))
    index.refresh([audit], gridmapdir=gmd)
    seen_at = index.db.execute("SELECT end FROM occupations WHERE kind='lease'").fetchone()[0]
    auditlog.append(audit, record("refuse", seen_at + 10 * S, host=os.uname().nodename))
    index.refresh([audit])
    answer = index.uid_at(POOL_UID, seen_at)
    assert answer.status == "unknown"
    assert {m.identity.dn for m in answer.matches} == {DN, "/CN=Someone Else"}


def test_rescan_only_when_changed_or_old(world):
    gmd, audit, index = world
    auditlog.append(audit, record("refuse", 1_000_000 * S))
    with GridmapDir(gmd) as g:
        g.acquire(DN.encode(), b"gxtbm")
    index.refresh([audit], gridmapdir=gmd)
    end1 = index.db.execute("SELECT end FROM occupations WHERE kind='lease'").fetchone()[0]
    index.refresh([audit], gridmapdir=gmd)                     # unchanged, young scan: skipped
    assert index.db.execute("SELECT end FROM occupations WHERE kind='lease'").fetchone()[0] == end1
    index.refresh_leases(gmd, now=end1 + index.LEASE_SCAN_MAX_AGE + 1)   # old: rescanned, extended
    rows = index.db.execute("SELECT end FROM occupations WHERE kind='lease'").fetchall()
    assert rows == [(end1 + index.LEASE_SCAN_MAX_AGE + 1,)]
