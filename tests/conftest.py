"""Top-level pytest configuration for glexec-py.

- puts the repository root on ``sys.path`` so ``import glexec_py`` and
  ``import tests.support.<x>`` work from any working directory;
- registers the project's markers;
- skips ``privileged`` tests (they install a setuid binary and create real accounts)
  unless the run is as root;
- in CI (``CI=true``) as root, turns every skip into a failure unless its reason starts
  with ``optional:`` (``tests/support/skips.py``): there every required part (Slurm,
  LCMAPS, voms-clients, strace, ...) is installed by ``make test-deps``, so a test that
  cannot run is a broken set-up, not something to skip past. Genuinely optional cases
  (a kernel feature, a sysctl, a race the machine did not produce) say so in their reason.
"""
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
for _p in (str(REPO_ROOT), str(REPO_ROOT / "tools")):    # glexec_py; the site tools' glexec_tools
    if _p not in sys.path:
        sys.path.insert(0, _p)

from tests.support.skips import OPTIONAL, strict as strict_skips  # noqa: E402

MARKERS = {
    "privileged": "needs root: installs the setuid shim into a test prefix, creates real "
                  "test accounts and runs the installed glexec as unprivileged users",
    "slow": "takes more than a few seconds",
    "batch": "needs a real batch system (a private Slurm started by the test run; root)",
}


@pytest.fixture(autouse=True)
def _restore_umask():
    """Each test starts with the umask the run started with and gives it back: site tools'
    ``main()`` set ``umask 077`` (right for a process, wrong to leak into the next test when
    called in-process; a leaked 077 once made a later test's 0755 work dir 0700)."""
    start = os.umask(0o022)
    os.umask(start)
    yield
    os.umask(start)


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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.skipped or hasattr(rep, "wasxfail") or not strict_skips():
        return
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    reason = reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason
    if reason.startswith(OPTIONAL):
        return
    rep.outcome = "failed"
    rep.longrepr = (f"skipped in CI as root, where every required part must run (CI=true): {reason}\n"
                    f"(a genuinely optional case must say so: pytest.skip(tests.support.skips.optional(...)))")
