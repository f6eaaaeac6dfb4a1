import pytest
from hypothesis import given, settings, strategies as st

from glexec_py.core.authz import caller_allowed, listed


def test_user_listed():
    ok, why = caller_allowed(("pilot",), (), "pilot", ("pilot",))
    assert ok and "callers.users" in why


def test_group_listed_primary_or_supplementary():
    assert caller_allowed((), ("glidein",), "p", ("users", "glidein"))[0]
    assert caller_allowed((), ("users",), "p", ("users",))[0]


def test_refused_message():
    assert caller_allowed(("a",), ("g",), "bob", ("bobs",)) == (
        False, "caller bob is not in callers.users or callers.groups")


@pytest.mark.parametrize("name,ok", [
    ("pilot001", True), ("pilot1", True), ("pilot", False), ("pilotx1", False),
    ("pilot01a", False), ("xpilot01", False), ("pilot\u0661", False), (".pilot", False),
])
def test_pool_entries(name, ok):
    assert caller_allowed((".pilot",), (), name, ())[0] is ok
    assert caller_allowed((), (".pilot",), "x", (name,))[0] is ok


def test_no_wildcards_and_exact_only():
    assert not caller_allowed(("*",), ("*",), "pilot", ("pilot",))[0]
    assert caller_allowed(("*",), (), "*", ())[0]
    assert not caller_allowed(("pil",), (), "pilot", ())[0]
    assert not caller_allowed(("Pilot",), (), "pilot", ())[0]
    assert not caller_allowed((".",), (), "1", ())[0]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=6), max_size=4).map(tuple),
       st.lists(st.text(max_size=6), max_size=4).map(tuple), st.text(max_size=6),
       st.lists(st.text(max_size=6), max_size=4).map(tuple))
def test_prop_allowed_only_with_a_matching_entry(users, groups, user, cgroups):
    ok, why = caller_allowed(users, groups, user, cgroups)

    def m(e, n):
        if e.startswith(".") and len(e) > 1:
            r = n[len(e) - 1:]
            return n.startswith(e[1:]) and r != "" and all(c in "0123456789" for c in r)
        return e == n

    assert ok == (any(m(e, user) for e in users)
                  or any(m(e, g) for e in groups for g in cgroups))
    assert isinstance(why, str) and why


def test_listed_helper():
    assert listed(("condor", ".pilot"), "condor") and listed(("condor", ".pilot"), "pilot07")
    assert not listed(("condor", ".pilot"), "pilot") and not listed((), "condor")
