"""Fixtures of the packaging tests: the privileged suite's session lock, accounts, PKI, test
prefix and per-test ``gx`` helper (tests/privileged/conftest.py), and the privileged marker
for every test here (they run make install, dpkg and logrotate as root)."""
from pathlib import Path

import pytest

from tests.privileged.conftest import (GX, USER1_DN, USER2_DN, accounts, gx, pkis,  # noqa: F401
                                       prefix, run_dir, session_lock, write_default_policy)


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.privileged)
