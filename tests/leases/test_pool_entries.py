"""Pool entries are trusted like the gridmapdir: root-owned, not group/other-writable, a
free one has link count 1.  Anything else is never leased (the next entry is), a lease on
it is refused (202), and fsck reports it.  Real root-owned gridmapdirs; the entry is
chowned to a real unprivileged uid (nobody)."""
import os
import tempfile

import pytest
from hypothesis import example, given, strategies as st

from glexec_py.core.leases import entry_unsafe, lease_name, plan_fsck
from glexec_py.effects.gridmapdir import GridmapDir
from glexec_py.errors import SystemFault
from tests.leases.conftest import BASE, make_pool

NOBODY = 65534
DN = [b"/DC=test/DC=entries/CN=User %d" % i for i in range(8)]


def _spoil(gmd, name, how):
    path = os.path.join(gmd, os.fsdecode(name))
    if how == "owner":
        os.chown(path, NOBODY, NOBODY)
    elif how == "other_writable":
        os.chmod(path, 0o646)
    elif how == "group_writable":
        os.chmod(path, 0o664)
    elif how == "stray_link":       # a hard link outside the gridmapdir
        stray = tempfile.mktemp(prefix="stray-", dir=BASE)
        os.link(path, stray)
        return stray
    return None


@pytest.mark.parametrize("how", ["owner", "other_writable", "group_writable", "stray_link"])
def test_untrusted_free_entry_is_never_leased_and_fsck_reports_it(gmd, how):
    pool = make_pool(gmd, "gxtent", 3)
    first = [os.fsencode(n) for n in os.listdir(gmd) if n.startswith("gxtent")][0]
    stray = _spoil(gmd, first, how)
    try:
        with GridmapDir(gmd) as g:
            got = {g.acquire(dn, b"gxtent")[0] for dn in DN[:2]}
            assert first not in got and len(got) == 2
            assert os.lstat(os.path.join(gmd, os.fsdecode(first))).st_nlink == (2 if stray else 1)
            kinds = {(f.kind, f.names[0]) for f in g.fsck()}
        want = "link_count_mismatch" if how == "stray_link" else "pool_entry_unsafe"
        assert (want, first) in kinds, kinds
        assert set(pool) >= got
    finally:
        if stray:
            os.unlink(stray)


@pytest.mark.parametrize("how", ["owner", "other_writable"])
def test_a_lease_on_an_entry_that_became_untrusted_is_refused(gmd, how):
    make_pool(gmd, "gxtent", 2)
    with GridmapDir(gmd) as g:
        account, lease, _ = g.acquire(DN[0], b"gxtent")
        _spoil(gmd, account, how)
        with pytest.raises(SystemFault) as e:
            g.acquire(DN[0], b"gxtent")
        assert e.value.reason == "pool_entry_unsafe" and e.value.exit_code == 202
        # nothing changed: the lease is still there for an administrator to look at
        assert os.lstat(os.path.join(gmd, os.fsdecode(lease))).st_nlink == 2


def test_unsafe_entries_only_exhaust_the_pool(gmd):
    pool = make_pool(gmd, "gxtent", 2)
    for name in pool:
        _spoil(gmd, name, "owner")
    with GridmapDir(gmd) as g:
        from glexec_py.errors import NotAuthorized
        with pytest.raises(NotAuthorized) as e:
            g.acquire(DN[0], b"gxtent")
        assert e.value.reason == "pool_exhausted"
    assert not os.path.exists(os.path.join(gmd, os.fsdecode(lease_name(DN[0]))))


@given(st.integers(0, 70000), st.integers(0, 0o7777))
@example(0, 0o100644)
@example(0, 0o100664)            # root's, but group-writable
@example(0, 0o100646)            # root's, but writable by others
@example(47001, 0o100600)
def test_entry_rule(uid, mode):
    why = entry_unsafe(uid, mode)
    assert (why is None) == (uid == 0 and not mode & 0o022)


def test_fsck_rule_on_values():
    ents = [(b"p01", 1, 1, True), (b"p02", 2, 1, True), (b"p03", 3, 1, True)]
    owners = {b"p01": (0, 0o100644), b"p02": (1000, 0o100644), b"p03": (0, 0o100666)}
    found = [(f.kind, f.names, f.action) for f in plan_fsck(ents, [b"p"], owners=owners)]
    assert found == [("pool_entry_unsafe", (b"p02",), "manual"),
                     ("pool_entry_unsafe", (b"p03",), "manual")]
    assert plan_fsck(ents, [b"p"]) == []     # without owners: the old checks only


def test_entry_filter_skips_refused_accounts_and_is_never_asked_on_reuse(gmd):
    make_pool(gmd, "gxtent", 3)
    order = [os.fsencode(n) for n in os.listdir(gmd) if n.startswith("gxtent")]
    asked = []

    def only_last(name):
        asked.append(name)
        return os.fsencode(name) == order[-1]
    with GridmapDir(gmd) as g:
        account, lease, reused = g.acquire(DN[0], b"gxtent", entry_filter=only_last)
        assert account == order[-1] and not reused
        assert asked == [os.fsdecode(n) for n in order]
        assert all(os.lstat(os.path.join(gmd, os.fsdecode(n))).st_nlink == 1 for n in order[:-1])
        asked.clear()
        assert g.acquire(DN[0], b"gxtent", entry_filter=only_last)[2] is True
        assert asked == []
        from glexec_py.errors import NotAuthorized
        with pytest.raises(NotAuthorized) as e:
            g.acquire(DN[1], b"gxtent", entry_filter=only_last)
        assert e.value.reason == "pool_exhausted"
        assert not os.path.exists(os.path.join(gmd, os.fsdecode(lease_name(DN[1]))))
