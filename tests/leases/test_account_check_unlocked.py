"""The account checks (NSS lookups, PAM) run outside the gridmapdir lock, and the lease
decision is made again under the lock after them (issue 12 §3b, docs/leases.md
"Mapped-account sanity")."""
import os
import subprocess
import sys

import pytest

from glexec_py.core.leases import LeaseOwner, lease_name
from glexec_py.effects.gridmapdir import LOCK_NAME, GridmapDir
from glexec_py.errors import SystemFault
from tests.leases.conftest import make_pool

DN = [b"/DC=test/CN=User %d" % i for i in range(4)]
PROBE = ("import fcntl, os, sys\n"
         "fd = os.open(sys.argv[1], os.O_RDWR)\n"
         "try:\n    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n    sys.exit(3)\n")


def lock_is_free(gmd):
    """Another process can take the gridmapdir lock right now (POSIX locks are per process)."""
    return subprocess.run([sys.executable, "-c", PROBE, os.path.join(gmd, LOCK_NAME)]).returncode == 0


def owner(i):
    return LeaseOwner(("x509", DN[i].decode()), DN[i], True)


@pytest.mark.parametrize("reuse", [False, True])
def test_checks_run_with_the_lock_free(gmd, reuse):
    make_pool(gmd, "gxtpool", 3)
    seen = []

    def check(name):
        seen.append((name, lock_is_free(gmd)))
        return True
    with GridmapDir(gmd, lock_timeout=5) as g:
        if reuse:
            g.acquire(DN[0], b"gxtpool", owner=owner(0))
        account, _, reused = g.acquire(DN[0], b"gxtpool", owner=owner(0), account_check=check,
                                       entry_filter=None if reuse else check)
    assert reused is reuse
    names = [n for n, _ in seen]
    assert names == [os.fsdecode(account)] * (1 if reuse else 2)     # account_check, then entry_filter
    assert all(free for _, free in seen), seen


def test_decision_is_remade_under_the_lock_after_the_check(gmd):
    """While the check of the first free entry runs, another request leases that entry:
    the next locked pass sees it taken and checks and leases the next one instead."""
    make_pool(gmd, "gxtpool", 3)
    order = [os.fsencode(n) for n in os.listdir(gmd) if n.startswith("gxtpool")]
    checked = []
    with GridmapDir(gmd, lock_timeout=5) as g, GridmapDir(gmd, lock_timeout=5) as other:
        def check(name):
            checked.append(name)
            if len(checked) == 1:     # the racing request, while the lock is free
                assert other.acquire(DN[1], b"gxtpool", owner=owner(1))[0] == order[0]
        account, lease, reused = g.acquire(DN[0], b"gxtpool", owner=owner(0), account_check=check)
    assert (account, lease, reused) == (order[1], lease_name(DN[0]), False)
    assert checked == [os.fsdecode(order[0]), os.fsdecode(order[1])]
    for n, links in ((order[0], 2), (order[1], 2), (order[2], 1)):
        assert os.lstat(os.path.join(gmd, os.fsdecode(n))).st_nlink == links
    with GridmapDir(gmd) as g:
        assert g.fsck() == []


def test_a_refusing_check_outside_the_lock_leaves_nothing(gmd):
    make_pool(gmd, "gxtpool", 2)
    before = sorted(os.listdir(gmd))

    def refuse(name):
        raise SystemFault("target_unsafe", "glexec: mapped account does not exist", account=name)
    with GridmapDir(gmd, lock_timeout=5) as g:
        with pytest.raises(SystemFault):
            g.acquire(DN[0], b"gxtpool", owner=owner(0), account_check=refuse)
        assert g.created is None
    assert sorted(n for n in os.listdir(gmd) if not n.startswith(".")) == \
        sorted(n for n in before if not n.startswith("."))


def test_adoption_is_reported_when_the_check_needed_a_second_pass(gmd):
    """The first locked pass adopts an owner-less lease and stops at the account check;
    ``adopted`` still says so after the second pass (the engine's audit ``lease.adopted``)."""
    make_pool(gmd, "gxtpool", 2)
    with GridmapDir(gmd, lock_timeout=5) as g:
        old, lease, _ = g.acquire(DN[0], b"gxtpool")              # no owner recorded
        checked = []
        assert g.acquire(DN[0], b"gxtpool", owner=owner(0), account_check=checked.append)[:2] == (old, lease)
        assert g.adopted and checked == [os.fsdecode(old)]
        assert g.acquire(DN[0], b"gxtpool", owner=owner(0), account_check=checked.append)[:2] == (old, lease)
        assert not g.adopted
