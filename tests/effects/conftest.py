"""Fixtures for tests of effects/ on real root-owned files."""
import os
import shutil
import tempfile

import pytest


@pytest.fixture
def root_dir():
    """A fresh root-owned 0755 directory under /var/lib/glexec-py-tests (never /tmp: the
    trust checks refuse a group/other-writable ancestor), removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("the files under test must be root-owned")
    os.makedirs("/var/lib/glexec-py-tests", mode=0o755, exist_ok=True)
    d = tempfile.mkdtemp(prefix="effects-", dir="/var/lib/glexec-py-tests")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d)


@pytest.fixture
def state_dir(root_dir):
    """The engine's root-only state directory (0700) inside ``root_dir``."""
    state = os.path.join(root_dir, "state")
    os.mkdir(state, 0o700)
    return state
