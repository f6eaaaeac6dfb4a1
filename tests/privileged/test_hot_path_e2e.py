"""A real call through the installed setuid binary loads none of the heavy stdlib modules
(issue 12 §3a): traced with strace, the engine of a local- and a pool-mapped call (a fresh
lease and its reuse, the target proxy staged, the configuration served from its cache as
on every call but the first after a change) opens no json, re, enum, threading, hashlib,
base64, functools or collections module file.  The unit-level twin is
tests/leases/test_hot_path_imports.py."""
import shutil
import subprocess
import time

import pytest

from tests.privileged.conftest import USER1_DN
from tests.privileged.test_e2e_pool import gridmapdir, pool_accounts  # noqa: F401  (fixtures)

HEAVY = {"json", "re", "enum", "threading", "hashlib", "base64", "functools", "collections", "secrets"}
STDLIB = "/usr/lib/python3.11/"


def module_of(path):
    """/usr/lib/python3.11/re/__pycache__/_parser....pyc -> "re"; .../__pycache__/enum....pyc -> "enum"."""
    rest = path[len(STDLIB):].removeprefix("__pycache__/")
    return rest.replace(".", "/").split("/", 1)[0]


def stdlib_modules_opened(gx, args, proxy):
    """Run ``glexec *args`` as gxtpilot under strace: (result, top-level stdlib modules opened)."""
    trace = gx.box / "openat.trace"
    r = subprocess.run(["strace", "-f", "-qq", "-u", "gxtpilot", "-e", "trace=openat", "-o", str(trace),
                        gx.glexec, *args], env={"PATH": "/usr/bin:/bin", "GLEXEC_CLIENT_CERT": str(proxy)},
                       cwd=str(gx.box), capture_output=True, timeout=60)
    opened = set()
    for line in trace.read_text().splitlines():
        path = line.partition('"')[2].partition('"')[0]
        if path.startswith(STDLIB) and "ENOENT" not in line:
            opened.add(module_of(path))
    return r, opened


@pytest.fixture
def traced(gx, in_process_engine):
    """strace must see the engine in the shim's own process: no engine service meanwhile."""
    if not shutil.which("strace"):
        pytest.skip("strace is not installed (Makefile TEST_PKGS)")    # a failure under CI=true
    return gx


def cache_config(gx, proxy):
    """effects.rootcache caches a configuration 2 s old on the next call: make that call."""
    time.sleep(2.1)
    assert gx.run(["/bin/true"], proxy=proxy).returncode == 0


def test_module_of():
    assert module_of(STDLIB + "re/__pycache__/_parser.cpython-311.pyc") == "re"
    assert module_of(STDLIB + "__pycache__/enum.cpython-311.pyc") == "enum"
    assert module_of(STDLIB + "json/__init__.py") == "json"
    assert module_of(STDLIB + "lib-dynload/_json.cpython-311-x86_64-linux-gnu.so") == "lib-dynload"


def test_local_mapped_call_opens_no_heavy_module(traced, gx):
    gx.gridmap([(USER1_DN, "gxttarget1")])
    cache_config(gx, gx.proxy("user1"))
    r, opened = stdlib_modules_opened(gx, ["/usr/bin/id", "-un"], gx.proxy("user1"))
    assert r.returncode == 0 and r.stdout == b"gxttarget1\n", r
    assert "struct" in opened                  # the trace does see the stdlib imports
    assert not opened & HEAVY, sorted(opened)


def test_pool_mapped_call_opens_no_heavy_module(traced, gx, gridmapdir):  # noqa: F811
    cache_config(gx, gx.proxy("user2"))        # another identity's lease: user1's is made below
    for reused in (False, True):
        r, opened = stdlib_modules_opened(gx, ["/usr/bin/id", "-un"], gx.proxy("user1"))
        assert r.returncode == 0 and r.stdout.startswith(b"gxtpool"), r
        grants = [rec for rec in gx.audit() if rec["event"] == "grant"]
        assert grants[-1]["dn"] == USER1_DN and grants[-1]["lease"]["reused"] is reused
        assert not opened & HEAVY, sorted(opened)
