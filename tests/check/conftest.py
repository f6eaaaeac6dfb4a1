"""A glexec-check site (tests/check/golden.py's builder) in a root-owned scratch dir."""
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.check import golden


@pytest.fixture
def make_site():
    if os.geteuid() != 0:
        pytest.skip("the site's files must be root-owned (the engine's trust rules)")
    made = []

    def make(site=None):
        os.makedirs(golden.BASE, mode=0o755, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="check-", dir=golden.BASE))
        made.append(root)
        golden.build_site({"site": site or {}}, root)
        return root
    yield make
    for root in made:
        shutil.rmtree(root, ignore_errors=True)
