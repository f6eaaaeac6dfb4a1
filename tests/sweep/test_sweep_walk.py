"""glexec_tools.sweep.apply in-process, as root, on a real tree (see conftest.py)."""
import os

import pytest

from glexec_tools.sweep import plan as core
from glexec_tools.sweep import apply as walk
from tests.sweep.test_sweep_real import A, mk
from tests.support.postgres import postgres  # noqa: F401  (session fixture)

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


# --- csrc/sweepwalk.c through native.SweepScanner ------------------------------------

from hypothesis import given, settings, strategies as hst   # noqa: E402
import stat as _stat                                          # noqa: E402
from types import SimpleNamespace as NS                       # noqa: E402

_MODES = [_stat.S_IFREG | 0o644, _stat.S_IFREG | 0o1644, _stat.S_IFLNK | 0o777,
          _stat.S_IFDIR | 0o755, _stat.S_IFDIR | 0o1777, _stat.S_IFIFO | 0o600]


@settings(max_examples=400, deadline=None)
@given(b_mode=hst.sampled_from(_MODES), n_mode=hst.sampled_from(_MODES),
       b_uid=hst.sampled_from([47501, 47502]), n_uid=hst.sampled_from([0, 47501, 47502, 1000]),
       n_dev=hst.sampled_from([42, 43]), b_ino=hst.sampled_from([5, 6]), n_ino=hst.sampled_from([5, 6]))
def test_c_recheck_is_the_planners(b_mode, n_mode, b_uid, n_uid, n_dev, b_ino, n_ino):
    """gx_sweep_recheck answers exactly what Planner.recheck answers (for an entry the
    planner chose, i.e. owned by a swept uid on the root's device)."""
    from glexec_py.effects import native
    p = core.Planner(core.Rule(b"/s", 1), {47501, 47502}, 2e9, 42)
    before = NS(st_mode=b_mode, st_uid=b_uid, st_dev=42, st_ino=b_ino)
    now = NS(st_mode=n_mode, st_uid=n_uid, st_dev=n_dev, st_ino=n_ino)
    code = native.sweep_recheck(before, now, 42)
    assert (native.SWEEP_RECHECK[code] if code else None) == p.recheck(before, now)


def test_scan_reports_every_entry_once_with_its_lstat(sweep_accounts, workdir):
    from glexec_py.effects import native
    a = sweep_accounts[A].uid
    d = os.fsencode(workdir) + b"/many"
    os.mkdir(d)
    names = {b"n%05d-" % i + b"x" * (i % 200) for i in range(5000)}     # many chunks
    names |= {b"new\nline", b"bad\xff\xfe", b"-rf", b"x" * 255, b".hidden", b"..."}
    for n in names:
        mk(d + b"/" + n, a, old=(len(n) % 2 == 0))
    os.symlink(b"/etc/passwd", d + b"/link")
    os.mkdir(d + b"/sub")
    names |= {b"link", b"sub"}
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        sc = native.SweepScanner()
        seen, chunks = {}, 0
        while True:
            got = sc.scan(fd)
            if got is None:
                break
            chunks += 1
            recs, ns = got
            for r, n in zip(recs, ns):
                assert n not in seen
                seen[n] = core.Entry(r)
        assert chunks > 1 and set(seen) == names
        for n, e in seen.items():
            st = os.lstat(d + b"/" + n)
            assert (e.st_ino, e.st_dev, e.st_mode, e.st_uid, e.st_gid, e.st_size) == \
                (st.st_ino, st.st_dev, st.st_mode, st.st_uid, st.st_gid, st.st_size)
            assert (e.st_atime, e.st_mtime, e.st_ctime) == (st.st_atime, st.st_mtime, st.st_ctime)
        assert _stat.S_ISLNK(seen[b"link"].st_mode)       # the link, never its target
        assert sc.scan(fd) is None                        # read once
    finally:
        os.close(fd)


def test_unlink_rechecks_right_before_and_never_removes_a_directory(sweep_accounts, workdir):
    import errno
    from glexec_py.effects import native
    a = sweep_accounts[A].uid
    d = f"{workdir}/t"
    os.mkdir(d)
    for n in ("keep-replaced", "keep-chowned", "keep-sticky", "gone", "ok"):
        mk(f"{d}/{n}", a)
    os.mkdir(f"{d}/dir")
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        sc = native.SweepScanner()
        recs, ns = sc.scan(fd)
        idx = {n: i for i, n in enumerate(ns[:len(recs)])}
        # between the decision and the removal: swapped, chowned, marked, removed
        mk(f"{d}/new", a)
        os.rename(f"{d}/new", f"{d}/keep-replaced")
        os.chown(f"{d}/keep-chowned", 0, 0)
        os.chmod(f"{d}/keep-sticky", 0o1644)
        os.unlink(f"{d}/gone")
        order = [b"keep-replaced", b"keep-chowned", b"keep-sticky", b"gone", b"ok", b"dir"]
        removed, nbytes, res = sc.unlink(fd, [idx[n] for n in order], os.fstat(fd).st_dev)
        assert removed == 1 and nbytes == 1
        assert [native.SWEEP_RECHECK.get(r, r) for r in res] == [
            "replaced", "owner changed", "sticky bit (opt-out)", -errno.ENOENT, 0, -errno.EISDIR]
        assert sorted(os.listdir(d)) == ["dir", "keep-chowned", "keep-replaced", "keep-sticky"]
        # indexes outside the last chunk are refused
        assert sc.unlink(fd, [len(recs), -1], 0)[2] == [-errno.EINVAL, -errno.EINVAL]
    finally:
        os.close(fd)


def test_chunked_directory_removed_as_owner_with_caps(sweep_accounts, workdir):
    a = sweep_accounts[A].uid
    t = _tree(workdir, a, n=0)
    for i in range(3000):
        mk(f"{t}/f{i:05d}-" + "y" * 40, a)
    w = _walker(a, max_removals=2500)
    with pytest.raises(walk.SweepStop):
        w.sweep(core.Rule(t, NOW_AGE, age_by="am"), workers=1)
    assert w.stats[a].removed == 2500 and len(os.listdir(t)) == 500 and w.stats[a].as_root == 0
    w = _walker(a)
    w.sweep(core.Rule(t, NOW_AGE, age_by="am"), workers=1)
    assert w.stats[a].removed == 500 and os.listdir(t) == []


# --- a new lease while the sweep runs (docs/leases.md, "Sweeping and new leases") ----

def _gridmapdir(workdir, *accounts):
    gmd = f"{workdir}/gridmapdir"
    os.mkdir(gmd, 0o755)
    for n in accounts:
        os.close(os.open(f"{gmd}/{n}", os.O_CREAT | os.O_WRONLY, 0o644))
    return gmd


def _grant_on_first_decision(gmd, holder):
    """An emit callback: the first decision made is followed by a real glexec-py grant of
    the (only free) pool account -- between the sweep's decision and its unlinks."""
    from glexec_py.effects.gridmapdir import GridmapDir
    granted = []

    def emit(root, rel, st, d):
        if not granted:
            with GridmapDir(gmd) as gd:
                granted.append(gd.acquire(holder, b"gxtsw")[0])
    return emit, granted


@pytest.mark.parametrize("with_guard", [True, False])
def test_lease_granted_between_decision_and_unlink(sweep_accounts, workdir, with_guard):
    a = sweep_accounts[A].uid
    gmd = _gridmapdir(workdir, A)
    t = _tree(workdir, a, n=600)                      # more than one LeaseGuard.HOLD part
    emit, granted = _grant_on_first_decision(gmd, b"/DC=test/CN=New Holder")
    guard = walk.LeaseGuard(gmd, {a: A}, draining_ok=True) if with_guard else None
    w = walk.Walker({a}, {a: a}, emit=emit, guard=guard)
    w.sweep(core.Rule(t, NOW_AGE, age_by="am"), workers=1)
    assert granted == [A.encode()]
    if with_guard:
        # the new holder's account: nothing removed, the run knows the account is lost
        assert len(os.listdir(t)) == 600 and w.stats[a].removed == 0
        assert w.stats[a].kept == 600 and w.lost == {a}
    else:
        # what happened before the guard existed (and still does with no gridmapdir
        # configured): the new lease holder's files are gone
        assert os.listdir(t) == [] and w.stats[a].removed == 600


def test_hold_keeps_grants_out_and_sees_leases_and_drains(sweep_accounts, workdir):
    import subprocess
    import sys
    from glexec_py.effects.gridmapdir import GridmapDir
    a = sweep_accounts[A].uid
    gmd = _gridmapdir(workdir, A)
    grant = ("import sys; sys.path.insert(0, sys.argv[2])\n"
             "from glexec_py.effects.gridmapdir import GridmapDir\n"
             "from glexec_py.errors import SystemFault\n"
             "try:\n"
             "    print(GridmapDir(sys.argv[1], lock_timeout=0.5).acquire(b'/CN=x', b'gxtsw')[0].decode())\n"
             "except SystemFault as e:\n"
             "    print(e.args[0] if e.args else e)\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def try_grant():
        return subprocess.run([sys.executable, "-c", grant, gmd, root], capture_output=True,
                              text=True, timeout=60).stdout.strip()

    guard = walk.LeaseGuard(gmd, {a: A, 47599: None}, draining_ok=True)
    with guard.hold(a) as (free, why):
        assert free and why is None
        assert "lock" in try_grant()                  # the grant waits for the sweeper
    assert try_grant() == A                           # afterwards it goes through
    with guard.hold(a) as (free, why):
        assert not free and why == "lease granted during the sweep"
    assert guard.lost == {a}
    with guard.hold(47599) as (free, _):              # no account name: cannot be leased
        assert free
    # a draining lease is never handed to anyone: sweepable with draining_ok only
    with GridmapDir(gmd) as gd:
        [lease] = gd.leases()
        assert gd.drain(lease) == A.encode()
    for ok in (True, False):
        g = walk.LeaseGuard(gmd, {a: A}, draining_ok=ok)
        with g.hold(a) as (free, _):
            assert free is ok


def test_hold_with_the_postgresql_lease_store(sweep_accounts, workdir, postgres):
    """mapping.lease_store: postgresql: the sweep reads the leases from the database (an
    empty or absent gridmapdir must not make a leased account look free) and each removal
    batch row-locks the account, so a grant cannot take it meanwhile."""
    import subprocess
    import sys
    from glexec_py.effects.pgleases import PgLeaseStore
    a = sweep_accounts[A].uid
    conninfo = postgres.conninfo(postgres.fresh_db())
    with PgLeaseStore(conninfo, node="n") as s:
        s.add_accounts("gxtsw", [A])
    f = os.path.join(workdir, "leases.conninfo")
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, conninfo.encode())
    os.close(fd)
    lease_db = {"conninfo_file": f, "connect_timeout": 2, "timeout_ms": 500, "node": "sweeper"}
    grant = ("import sys; sys.path.insert(0, sys.argv[2])\n"
             "from glexec_py.effects.pgleases import PgLeaseStore\n"
             "from glexec_py.errors import GlexecError\n"
             "try:\n"
             "    print(PgLeaseStore(sys.argv[1], node='n', timeout=0.5).acquire(b'/CN=x', 'gxtsw')[0].decode())\n"
             "except GlexecError as e:\n"
             "    print(e.reason)\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def try_grant():
        return subprocess.run([sys.executable, "-c", grant, conninfo, root], capture_output=True,
                              text=True, timeout=60).stdout.strip()

    assert walk.lease_holders("", lease_db) == (set(), set())
    guard = walk.LeaseGuard("", {a: A}, draining_ok=True, lease_db=lease_db)
    with guard.hold(a) as (free, why):
        assert free and why is None
        assert try_grant() == "lease_db"              # waits for the sweeper's row lock: 202
    assert try_grant() == A                           # afterwards it goes through
    assert walk.lease_holders("", lease_db) == ({A}, set())
    with guard.hold(a) as (free, why):
        assert not free and why == "lease granted during the sweep"
