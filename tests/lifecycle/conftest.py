"""Fixtures for the account-lifecycle suite (tests/lifecycle): a real private Slurm, the
installed setuid glexec and site tools, real accounts (gxt*, uids/gids 47800-47899 ONLY,
removed afterwards also on failure) and a test PKI with two user identities.

Module-scoped like tests/batch: torn down before the next test directory runs.
Skipped (with the reason) only when not root or when Slurm cannot be installed/started.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from tests.support import slurm_fixtures as sf  # noqa: E402

ID_MIN, ID_MAX = 47800, 47899


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.batch)
            item.add_marker(pytest.mark.privileged)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def life_lock():
    yield from sf.session_lock("lifecycle test needs root (private Slurm, setuid install, real accounts)")


@pytest.fixture(scope="module")
def slurm(life_lock):
    yield from sf.running_slurm("lifecycle")
