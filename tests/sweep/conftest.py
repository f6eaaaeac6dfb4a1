"""Fixtures for the glexec-sweep tests.

Real tests run as root with real accounts (names ``gxtsw*``, uids/gids 47500-47599 only,
removed afterwards also on failure) in a root-owned 0755 directory
``/var/lib/glexec-py-tests/sweep-<random>`` that is removed afterwards (tmpfs/bind mounts
made inside it are unmounted first)."""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support import accounts as acc  # noqa: E402

BASE = "/var/lib/glexec-py-tests"
LAUNCHER = os.path.join(_ROOT, "tools", "bin", "glexec-sweep")
ID_LO, ID_HI = 47500, 47599
# name -> uid (= gid of its own group)
USERS = {"gxtsw01": 47501, "gxtsw02": 47502, "gxtswother": 47590}


def _remove_accounts():
    for name, uid in USERS.items():
        assert ID_LO <= uid <= ID_HI and name.startswith("gxt")
        acc.remove_user(name)
        acc.remove_group(name)


@pytest.fixture(scope="session")
def sweep_accounts():
    if os.geteuid() != 0:
        pytest.skip("glexec-sweep real tests need root")
    _remove_accounts()                       # leftovers of a crashed run
    try:
        out = {}
        for name, uid in USERS.items():
            acc.create_group(name, uid)
            out[name] = acc.create_user(name, uid, name)
        yield out
    finally:
        _remove_accounts()


def _unmount_below(d):
    with open("/proc/self/mountinfo", "rb") as f:
        mps = [line.split(b" ")[4] for line in f.read().splitlines()]
    for mp in sorted((m for m in mps if m.startswith(os.fsencode(d) + b"/")), key=len, reverse=True):
        subprocess.run([b"umount", b"-l", mp], check=False)


@pytest.fixture
def workdir():
    if os.geteuid() != 0:
        pytest.skip("glexec-sweep real tests need root")
    os.makedirs(BASE, mode=0o755, exist_ok=True)
    d = tempfile.mkdtemp(prefix="sweep-", dir=BASE)
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        _unmount_below(d)
        shutil.rmtree(d, ignore_errors=True)


def run_sweep(config, *args, timeout=120):
    return subprocess.run([LAUNCHER, "--config", config, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)


def write_config(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path
