"""Fixtures for the lease-store tests: throw-away root-owned gridmapdirs under
/var/lib/glexec-py-tests/leases-<random>, removed afterwards."""
import os
import shutil
import sys
import tempfile

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

BASE = "/var/lib/glexec-py-tests"


def make_base():
    os.makedirs(BASE, mode=0o755, exist_ok=True)
    d = tempfile.mkdtemp(prefix="leases-", dir=BASE)
    os.chmod(d, 0o755)
    return d


def make_pool(gmd, prefix, n, start=1, width=3):
    names = []
    for i in range(start, start + n):
        name = f"{prefix}{i:0{width}d}"
        fd = os.open(os.path.join(gmd, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        names.append(name.encode())
    return names


@pytest.fixture
def scratch():
    if os.geteuid() != 0:
        pytest.skip("lease-store tests need root (root-owned gridmapdir)")
    d = make_base()
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def gmd(scratch):
    """An empty root-owned 0755 gridmapdir."""
    p = os.path.join(scratch, "gridmapdir")
    os.mkdir(p, 0o755)
    return p
