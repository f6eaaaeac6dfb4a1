"""The back-mapping tests need a root-owned private directory: the index refuses anything
else (and /tmp is world-writable)."""
import os
import shutil
import sys
import tempfile

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for p in (_ROOT, os.path.join(_ROOT, "tools")):
    if p not in sys.path:
        sys.path.insert(0, p)


@pytest.fixture
def private_dir():
    if os.geteuid() != 0:
        pytest.skip("the back-mapping index is root-only")
    os.makedirs("/var/lib/glexec-py-tests", mode=0o755, exist_ok=True)
    d = tempfile.mkdtemp(prefix="backmap-", dir="/var/lib/glexec-py-tests")
    os.chmod(d, 0o700)
    yield d
    shutil.rmtree(d)


@pytest.fixture
def setup(private_dir):
    """(audit file path, a fresh Index) in a private directory."""
    from glexec_tools.backmap.apply import Index
    audit = os.path.join(private_dir, "audit.jsonl")
    index = Index(os.path.join(private_dir, "backmap.sqlite"))
    yield audit, index
    index.close()
