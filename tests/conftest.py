"""Top-level pytest configuration for glexec-py.

- puts the repository root on ``sys.path`` so ``import glexec_py`` and
  ``import tests.support.<x>`` work from any working directory;
- registers the project's markers;
- skips ``privileged`` tests (they install a setuid binary and create real accounts)
  unless the run is as root.
"""
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

MARKERS = {
    "privileged": "needs root: installs the setuid shim into a test prefix, creates real "
                  "test accounts and runs the installed glexec as unprivileged users",
    "slow": "takes more than a few seconds",
    "batch": "needs a real batch system (a private Slurm started by the test run; root)",
}


def pytest_configure(config):
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(
        reason="privileged test: must run as root (it installs a setuid-root glexec into a "
               "test prefix and creates real test accounts gxt*, uid 47000-47999)")
    for item in items:
        if item.get_closest_marker("privileged") is not None:
            item.add_marker(skip)
