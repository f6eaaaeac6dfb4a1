"""glexec_py.effects.sweep_walk in-process, as root, on a real tree (see conftest.py)."""
import os

import pytest

from glexec_py.core import sweep as core
from glexec_py.effects import sweep_walk as walk
from tests.sweep.test_sweep_real import A, mk

NOW_AGE = 86400


def _tree(workdir, uid, n=5):
    t = f"{workdir}/tree"
    os.mkdir(t, 0o1777)
    os.chmod(t, 0o1777)
    for i in range(n):
        mk(f"{t}/f{i}", uid)
    return t


def _walker(uid, **kw):
    return walk.Walker({uid}, {uid: uid}, **kw)


class _Refuse:
    """A native module whose set_fs_identity always fails (restore works)."""

    def __init__(self, real):
        self.real = real
        self.restored = 0

    def set_fs_identity(self, uid, gid, groups):
        raise self.real.IdentityError("setfsuid", 1)

    def restore_fs_identity(self):
        self.restored += 1
        self.real.restore_fs_identity()

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.mark.parametrize("as_owner", ["required", "preferred"])
def test_fs_identity_failure_is_never_a_silent_root_removal(sweep_accounts, workdir, as_owner):
    from glexec_py.effects import native
    a = sweep_accounts[A].uid
    t = _tree(workdir, a)
    w = _walker(a, as_owner=as_owner)
    w._native = _Refuse(native)
    w.sweep(core.Rule(t, NOW_AGE, age_by="am"), workers=1)
    left = sorted(os.listdir(t))
    s = w.stats[a]
    assert w._native.restored >= 1 and os.getresuid() == (0, 0, 0)
    if as_owner == "required":                 # kept: the kernel could not enforce ownership
        assert left == [f"f{i}" for i in range(5)] and s.removed == 0 and s.kept == 5
    else:                                      # removed as root, and counted as such
        assert left == [] and s.removed == 5 and s.as_root == 5
