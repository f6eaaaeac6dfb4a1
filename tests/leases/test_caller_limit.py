"""mapping.max_leases_per_caller: one caller (uid) must not drain a pool with many valid
credentials.  The counting rule on values, then real root-owned gridmapdirs."""
import json
import os

import pytest
from hypothesis import given, strategies as st

from glexec_py.core.leases import caller_limit, lease_name, live_leases_of
from glexec_py.effects.gridmapdir import GridmapDir
from glexec_py.errors import NotAuthorized
from tests.leases.conftest import make_pool

DN = [b"/DC=test/DC=quota/CN=User %d" % i for i in range(12)]
PILOT_A, PILOT_B = 47001, 47003


@pytest.mark.parametrize("setting,size,want", [
    (0, 10, None), (3, 10, 3), (3, 1, 3), ("50%", 10, 5), ("50%", 3, 1), ("50%", 1, 1),
    ("1%", 10, 1), ("100%", 7, 7), ("34%", 100, 34)])
def test_limit_of_a_pool(setting, size, want):
    assert caller_limit(setting, size) == want


@given(st.integers(0, 5000), st.integers(1, 100))
def test_a_percentage_never_gives_one_caller_more_than_its_share(size, pct):
    n = caller_limit(f"{pct}%", size)
    assert n >= 1 and (n <= size * pct / 100 or n == 1)


record = st.fixed_dictionaries({"state": st.sampled_from(["leased", "draining"]),
                                "caller": st.sampled_from([None, PILOT_A, PILOT_B])})
rows = st.lists(st.tuples(st.one_of(st.none(), record), st.booleans()), max_size=30)


@given(rows)
def test_live_is_linked_leased_and_this_callers(rows):
    want = sum(1 for rec, linked in rows
               if rec is not None and linked and rec["state"] == "leased" and rec["caller"] == PILOT_A)
    assert live_leases_of(rows, PILOT_A) == want
    assert live_leases_of(rows, PILOT_A) + live_leases_of(rows, PILOT_B) <= sum(1 for _, ln in rows if ln)


def test_one_caller_is_refused_the_n_plus_first_while_another_still_gets_leases(gmd):
    make_pool(gmd, "gxtq", 6)
    with GridmapDir(gmd) as g:
        got = [g.acquire(DN[i], b"gxtq", caller=PILOT_A, caller_limit=3) for i in range(3)]
        assert len({a for a, _, _ in got}) == 3
        before = sorted(os.listdir(gmd))
        with pytest.raises(NotAuthorized) as e:
            g.acquire(DN[3], b"gxtq", caller=PILOT_A, caller_limit=3)
        assert e.value.reason == "caller_lease_limit" and e.value.exit_code == 203
        assert e.value.detail["live"] == 3 and e.value.detail["limit"] == 3
        assert sorted(os.listdir(gmd)) == before                 # nothing left behind
        # reuse of an identity's existing lease is not a new one
        assert g.acquire(DN[0], b"gxtq", caller=PILOT_A, caller_limit=3)[2] is True
        # even when another caller uses the same identity: reuse, not counted for it
        assert g.acquire(DN[1], b"gxtq", caller=PILOT_B, caller_limit=3)[2] is True
        # the other caller still gets new leases, up to its own limit
        for i in (4, 5, 6):
            assert g.acquire(DN[i], b"gxtq", caller=PILOT_B, caller_limit=3)[2] is False
        with pytest.raises(NotAuthorized):
            g.acquire(DN[7], b"gxtq", caller=PILOT_B, caller_limit=3)
        # the record says who took the lease
        acct = got[0][0].decode()
        rec = json.loads(open(os.path.join(gmd, ".glexec-py", acct)).read())
        assert rec["caller"] == PILOT_A


def test_drained_and_released_leases_no_longer_count(gmd):
    make_pool(gmd, "gxtq", 4)
    with GridmapDir(gmd) as g:
        for i in range(2):
            g.acquire(DN[i], b"gxtq", caller=PILOT_A, caller_limit="50%")     # 2 of 4
        with pytest.raises(NotAuthorized):
            g.acquire(DN[2], b"gxtq", caller=PILOT_A, caller_limit="50%")
        g.drain(lease_name(DN[0]))
        assert g.acquire(DN[2], b"gxtq", caller=PILOT_A, caller_limit="50%")[2] is False
        with pytest.raises(NotAuthorized):
            g.acquire(DN[3], b"gxtq", caller=PILOT_A, caller_limit="50%")
        g.release(lease_name(DN[1]))
        assert g.acquire(DN[3], b"gxtq", caller=PILOT_A, caller_limit="50%")[2] is False
        # the drained record kept its caller
        drained = [json.loads(open(os.path.join(gmd, ".glexec-py", n)).read())
                   for n in os.listdir(os.path.join(gmd, ".glexec-py")) if not n.startswith(".")]
        assert {r["state"] for r in drained} == {"leased", "draining"}
        assert all(r["caller"] == PILOT_A for r in drained)


def test_a_crash_leftover_record_does_not_count(gmd):
    make_pool(gmd, "gxtq", 2)
    with GridmapDir(gmd) as g:
        acct, lease, _ = g.acquire(DN[0], b"gxtq", caller=PILOT_A, caller_limit=1)
        os.unlink(os.path.join(gmd, os.fsdecode(lease)))     # lease gone, record left
        assert g.acquire(DN[1], b"gxtq", caller=PILOT_A, caller_limit=1)[2] is False


def test_leases_without_a_caller_count_for_nobody_and_limit_zero_is_unlimited(gmd):
    make_pool(gmd, "gxtq", 4)
    with GridmapDir(gmd) as g:
        for i in range(3):
            g.acquire(DN[i], b"gxtq")                                  # no caller (LCMAPS-like)
        assert g.acquire(DN[3], b"gxtq", caller=PILOT_A, caller_limit=1)[2] is False
    make_pool(gmd, "gxtu", 3)
    with GridmapDir(gmd) as g:
        for i in range(4, 7):
            assert g.acquire(DN[i], b"gxtu", caller=PILOT_A, caller_limit=0)[2] is False
