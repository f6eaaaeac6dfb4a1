"""Crash consistency (issue 4 item 5; security.md 4.E case 24): a separate process doing
one grant or release is SIGKILLed at each system call of the lease store's write path,
or gets ENOSPC/EIO injected there (strace -e inject).  Afterwards the store is clean
(directly for injected errors, after ``repair`` for kills), P5 holds (tests/leases/
invariants.py) and a retry of the same request succeeds."""
import os
import shutil
import subprocess
import sys

import pytest

from glexec_py.core.leases import lease_name
from glexec_py.effects.gridmapdir import GridmapDir
from tests.leases.conftest import make_pool
from tests.leases.invariants import lease_map

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "crash_driver.py")
DN0 = b"/C=NL/O=Example Grid/CN=Holder"
DN1 = b"/C=NL/O=Example Grid/CN=Newcomer"
# The write path: link the lease, write/rename the metadata, the index state, fsyncs,
# utime on reuse, unlink on release/undo, the sidecar mkdir on first use.
# (write: only the first, the metadata record; later ones are the driver's own output)
SYSCALLS = ["linkat", "renameat", "fsync", "pwrite64", "ftruncate", "utimensat", "unlinkat",
            "write", "openat"]
MAX_N = {"openat": 1, "write": 1, "linkat": 2, "renameat": 2, "unlinkat": 2}     # openat: only kill (startup opens many files)

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")


def _setup(gmd):
    make_pool(gmd, "gxtpool", 3)
    with GridmapDir(gmd) as g:
        _, lease0, _ = g.acquire(DN0, b"gxtpool")
    return lease0


def _run(gmd, inject, op):
    args = [gmd, "acquire", DN1.decode(), "gxtpool"] if op == "acquire" \
        else [gmd, "release", lease_name(DN0).decode()]
    p = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e", f"trace={inject[0]}",
                        "-e", f"inject={inject[0]}:{inject[1]}:when={inject[2]}",
                        sys.executable, DRIVER] + args,
                       capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode()


def _after(gmd, op, killed):
    with GridmapDir(gmd, pools=[b"gxtpool"]) as g:
        fs = g.fsck()
        if not killed:
            assert [f.kind for f in fs if f.severity == "error"] == [], fs
        g.repair(fs)
        assert g.fsck() == []
        m = lease_map(gmd)
        assert lease_name(DN0) in m or op == "release"
        # retry of the same request succeeds, and the store stays clean
        if op == "acquire":
            acc, lease, _ = g.acquire(DN1, b"gxtpool")
            assert lease_map(gmd)[lease] == acc
        else:
            g.release(lease_name(DN0))
            assert lease_name(DN0) not in lease_map(gmd)
        assert g.fsck() == []
        assert g.acquire(DN0, b"gxtpool")[1] == lease_name(DN0)
        assert g.fsck() == []
        lease_map(gmd)


@pytest.mark.parametrize("op", ["acquire", "release"])
@pytest.mark.parametrize("how", ["signal=KILL", "error=ENOSPC", "error=EIO"])
def test_kill_or_fail_at_each_step(scratch, op, how):
    hit = 0
    for sc in SYSCALLS:
        if (how != "signal=KILL" and sc == "openat") or (op == "release" and sc == "write"):
            continue                 # release writes nothing but the driver's output
        for n in range(1, MAX_N.get(sc, 1) + 1):
            gmd = os.path.join(scratch, f"gmd-{sc}-{n}")
            os.mkdir(gmd, 0o755)
            _setup(gmd)
            rc, out = _run(gmd, (sc, how, n), op)
            killed = rc in (-9, 137)
            hit += killed or out.startswith("ERR")
            assert killed or out.startswith(("OK", "ERR")), (sc, n, rc, out)
            if out.startswith("ERR"):
                assert "SystemFault" in out, (sc, n, out)
            _after(gmd, op, killed)
            shutil.rmtree(gmd)
    assert hit >= (4 if op == "acquire" else 2)     # the injections landed on the write path
