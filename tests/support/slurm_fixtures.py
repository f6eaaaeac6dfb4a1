"""The module-scoped pieces that every real-Slurm suite (tests/batch, tests/lifecycle) needs:
the machine-wide test lock and a running private Slurm, or a skip that says why not.
Used as ``yield from`` inside each suite's own fixtures."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.support import accounts as acc
from tests.support import install as inst
from tests.support import slurm as sl


def lock_held_by_us(path: Path) -> bool:
    """True if this process already holds an flock on ``path`` (another suite's session lock
    in the same pytest process): taking it again would deadlock."""
    try:
        ino = path.stat().st_ino
        with open("/proc/locks") as f:
            for line in f:
                f_ = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF"
                if len(f_) >= 6 and f_[1] == "FLOCK" and f_[4] == str(os.getpid()) \
                        and f_[5].rsplit(":", 1)[-1] == str(ino):
                    return True
    except OSError:
        pass
    return False


def session_lock(why_root: str):
    """The machine-wide test lock for the module (None if this process holds it already)."""
    if os.geteuid() != 0:
        pytest.skip(why_root)
    lockfile = acc.TESTS_BASE / ".session.lock"
    inst.ensure_base()
    if lockfile.exists() and lock_held_by_us(lockfile):
        yield None
        return
    lock = acc.session_lock(timeout=600)
    lock.__enter__()
    try:
        yield lock
    finally:
        lock.release()


def running_slurm(tag: str):
    """A running private Slurm (``installed_packages``: what ensure_packages installed), or
    a skip saying why it cannot run here; stopped afterwards.  ``tag`` names the suite in
    the start/stop lines on stderr."""
    try:
        installed = sl.ensure_packages()
    except Exception as e:  # noqa: BLE001 - any failure to install means: cannot run here
        pytest.skip(f"Slurm cannot be installed here: {e}")
    cgroup_error = None
    try:
        c = sl.SlurmCluster()
        c.__enter__()
    except Exception as e:  # noqa: BLE001
        if sl.cgroup_hierarchy() is None:
            pytest.skip(f"Slurm cannot be started here: {e}")
        # cgroup tracking would not start: run the suite with process-tree tracking, and the
        # containment checks fail saying why (everything else is still tested)
        cgroup_error = f"Slurm with proctrack/cgroup did not start: {e}"
        try:
            c = sl.SlurmCluster(proctrack="linuxproc")
            c.__enter__()
        except Exception as e2:  # noqa: BLE001
            pytest.skip(f"Slurm cannot be started here: {e2} (with cgroup tracking: {e})")
    c.cgroup_error = cgroup_error
    c.installed_packages = installed
    sys.stderr.write(f"\n[{tag}] Slurm up in {c.timings.get('start', 0):.1f} s, "
                     f"proctrack/{c.proctrack}, scratch {c.dir}\n")
    try:
        yield c
    finally:
        c.__exit__(None, None, None)
        sys.stderr.write(f"[{tag}] Slurm down in {c.timings.get('stop', 0):.1f} s\n")
