"""Fixtures for the batch-system suite: a real private Slurm (tests/support/slurm.py), the
installed glexec, real accounts (gxt*, uids/gids 47600-47699 only) and a test PKI.

Everything is module-scoped (the suite is one module): it is torn down before the next test
directory runs, so the machine-wide test lock is free again for tests/privileged.
Skipped (with the reason) only when Slurm cannot be installed or started; must run in CI.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from tests.support import accounts as acc  # noqa: E402
from tests.support import install as inst  # noqa: E402
from tests.support import slurm_fixtures as sf  # noqa: E402
from tests.support.pki import TestPKI  # noqa: E402

ID_MIN, ID_MAX = 47600, 47699
USER_DN = "/DC=test/DC=glexec-py/CN=Batch Test User"
# groups first (name -> gid), then users: name -> (uid, primary, [supplementary], home)
GROUPS = {"gxtbpilot": 47600, "gxtbtarget": 47601,
          "gxtbtrack": 47650,    # the pilot's "batch tracking" group: must survive the switch
          "gxtbextra": 47660}    # another group of the pilot: must not reach the payload
USERS = {"gxtbpilot": (47600, "gxtbpilot", ["gxtbtrack", "gxtbextra"], False),
         "gxtbtarget": (47601, "gxtbtarget", [], True)}
TRACKING = "47650-47659"


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents and "slurm" in item.fixturenames:
            item.add_marker(pytest.mark.batch)
            item.add_marker(pytest.mark.privileged)


@pytest.fixture(scope="module")
def batch_lock():
    yield from sf.session_lock("batch tests need root (private Slurm, setuid install, real accounts)")


@pytest.fixture(scope="module")
def slurm(batch_lock):
    """A running private Slurm, or a skip saying why it cannot run here."""
    yield from sf.running_slurm("batch")


@dataclass
class BatchAccounts:
    pilot: acc.Account
    target: acc.Account


@pytest.fixture(scope="module")
def baccounts(batch_lock):
    def cleanup():
        for name in USERS:
            acc.remove_user(name)
        for name in GROUPS:
            acc.remove_group(name)
        acc.kill_uid_processes(range(ID_MIN, ID_MAX + 1))
    acc.cleanup_leftovers(ID_MIN, ID_MAX)
    try:
        for name, gid in GROUPS.items():
            acc.create_group(name, gid)
        made = {name: acc.create_user(name, uid, group, extra, home=home)
                for name, (uid, group, extra, home) in USERS.items()}
        yield BatchAccounts(pilot=made["gxtbpilot"], target=made["gxtbtarget"])
    finally:
        cleanup()


@dataclass
class Install:
    prefix: Path
    glexec: Path
    sutest: Path
    proxy: Path          # root-owned 0600 (sutest copies it for the pilot)
    dn: str
    pki: TestPKI = None  # makes more users and proxies (tests/batch/test_slurm_job.py)


@pytest.fixture(scope="module")
def binstall(batch_lock, baccounts):
    root = inst.make_run_dir("batchpki")
    os.chmod(root, 0o700)
    prefix = None
    try:
        pki = TestPKI(root / "ca")
        user = pki.user(USER_DN)
        proxy = pki.proxy(user, root / "proxy.pem")
        prefix = inst.install_prefix()
        inst.install_trust_dir(prefix, pki)
        inst.write_gridmap(prefix, [(USER_DN, "gxtbtarget")])
        inst.write_config(prefix, callers={"users": ["gxtbpilot"], "groups": []},
                          payload={"keep_caller_groups": [TRACKING]})
        yield Install(prefix=prefix, glexec=inst.glexec_path(prefix),
                      sutest=prefix / "sbin" / "glexec-sutest", proxy=proxy, dn=USER_DN, pki=pki)
    finally:
        if prefix is not None:
            inst.remove_prefix(prefix)
        inst._safe_rmtree(root)
