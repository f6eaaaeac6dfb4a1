"""Fixtures for the account-lifecycle suite (tests/lifecycle): a real private Slurm, the
installed setuid glexec and site tools, real accounts (gxt*, uids/gids 47800-47899 ONLY,
removed afterwards also on failure) and a test PKI with two user identities.

Module-scoped like tests/batch: torn down before the next test directory runs.
Skipped (with the reason) only when not root or when Slurm cannot be installed/started.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from tests.support import accounts as acc  # noqa: E402
from tests.support import install as inst  # noqa: E402
from tests.support import slurm as sl  # noqa: E402

ID_MIN, ID_MAX = 47800, 47899


def pytest_configure(config):
    config.addinivalue_line("markers", "batch: needs a real batch system (a private Slurm "
                            "started by the test run; root)")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.batch)
            item.add_marker(pytest.mark.privileged)
            item.add_marker(pytest.mark.slow)


def _lock_held_by_us(path: Path) -> bool:
    """True if this process already holds an flock on ``path`` (another suite's session lock
    in the same pytest process): taking it again would deadlock."""
    try:
        ino = path.stat().st_ino
        with open("/proc/locks") as f:
            for line in f:
                f_ = line.split()
                if len(f_) >= 6 and f_[1] == "FLOCK" and f_[4] == str(os.getpid()) \
                        and f_[5].rsplit(":", 1)[-1] == str(ino):
                    return True
    except OSError:
        pass
    return False


@pytest.fixture(scope="module")
def life_lock():
    if os.geteuid() != 0:
        pytest.skip("lifecycle test needs root (private Slurm, setuid install, real accounts)")
    inst.ensure_base()
    lockfile = acc.TESTS_BASE / ".session.lock"
    if lockfile.exists() and _lock_held_by_us(lockfile):
        yield None
        return
    lock = acc.session_lock(timeout=600)
    lock.__enter__()
    try:
        yield lock
    finally:
        lock.release()


@pytest.fixture(scope="module")
def slurm(life_lock):
    try:
        sl.ensure_packages()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"Slurm cannot be installed here: {e}")
    try:
        c = sl.SlurmCluster()
        c.__enter__()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"Slurm cannot be started here: {e}")
    sys.stderr.write(f"\n[lifecycle] Slurm up in {c.timings.get('start', 0):.1f} s, "
                     f"proctrack/{c.proctrack}, scratch {c.dir}\n")
    try:
        yield c
    finally:
        c.__exit__(None, None, None)
        sys.stderr.write(f"[lifecycle] Slurm down in {c.timings.get('stop', 0):.1f} s\n")
