"""core.mapping.decide is the engine's mapping step: the same decisions as the loop it
replaced (kept here as the oracle, verbatim in its logic), and a trace that is true."""
from hypothesis import given, settings
from hypothesis import strategies as st

from glexec_py.core import gridmap, mapping
from glexec_py.core.config import MAPPING_SOURCES


def old_engine_loop(lines, order, subject, group_keys):
    """engine.map_identity's loop before core.mapping (the decision part only)."""
    for source in order:
        keys = group_keys if source.startswith("voms_") else [subject]
        for key in keys:
            if source.endswith("local"):
                account = gridmap.local_account(lines, key, wildcards=source == "voms_local")
                if account is not None:
                    return source, key, "local", account
            else:
                pool = gridmap.pool_name(lines, key)
                if pool:
                    return source, key, "pool", pool
    return None


DNS = [b"/DC=org/CN=Alice", b"/DC=org/CN=Bob", b"/DC=net/CN=Carol", b"/DC=org/CN=Al"]
FQANS = [b"/atlas/Role=NULL/Capability=NULL", b"/atlas/prod/Role=NULL/Capability=NULL",
         b"/cms/Role=pilot/Capability=NULL"]
SUBJECTS = DNS + FQANS + [b"/DC=org/*", b"/DC=org/CN=?ob", b"/atlas/*", b"*", b"/cms/[a-z]*", b"/DC=[!o]*"]
MAPPINGS = [b"alice", b"bob", b".pool", b".other", b".", b"acc\\ x", b"carol"]

line = st.tuples(st.sampled_from(SUBJECTS), st.lists(st.sampled_from(MAPPINGS), max_size=3))
gridmapfile = st.lists(line, max_size=8).map(
    lambda ls: b"".join(b'"' + s + b'" ' + b" ".join(m) + b"\n" for s, m in ls))
orders = st.permutations(MAPPING_SOURCES).flatmap(lambda p: st.integers(1, 4).map(lambda n: tuple(p[:n])))


@settings(max_examples=400, deadline=None)
@given(gridmapfile, orders, st.sampled_from(DNS), st.lists(st.sampled_from(FQANS), max_size=3, unique=True))
def test_decide_is_the_old_engine_decision(data, order, subject, fqans):
    lines = gridmap.parse_gridmap(data, "gm")
    d = mapping.decide(lines, order, subject, fqans)
    old = old_engine_loop(lines, order, subject, fqans)
    assert (None if d.kind is None else (d.source, d.key, d.kind, d.name)) == old
    # the trace is true: every attempt but a final match found no mapping, in order
    for a in d.trace[:-1] if d.kind else d.trace:
        assert not a.matched
        if a.source.endswith("local"):
            assert gridmap.local_account(lines, a.key, wildcards=a.source == "voms_local") is None
        else:
            assert not gridmap.pool_name(lines, a.key)
    if d.kind:
        assert d.line.lineno >= 1 and (d.name in d.line.mappings or b"." + d.name in d.line.mappings)
    assert [a.source for a in d.trace] == sorted((a.source for a in d.trace), key=order.index)


def test_voms_groups_flag_only_for_voms_sources_with_a_groupmapfile():
    lines = gridmap.parse_gridmap(b'"/atlas/*" .pool\n"/DC=org/CN=Alice" alice\n', "gm")
    fq = [b"/atlas/Role=NULL/Capability=NULL"]
    assert mapping.decide(lines, ("voms_pool",), b"/DC=org/CN=Alice", fq, grouped=True).voms_groups
    assert not mapping.decide(lines, ("voms_pool",), b"/DC=org/CN=Alice", fq).voms_groups
    assert not mapping.decide(lines, ("local",), b"/DC=org/CN=Alice", fq, grouped=True).voms_groups


def test_mapcount_rules():
    assert mapping.mapcount(None, 1) == 0
    assert mapping.mapcount(b"3", 3) == 3
    for bad in (b"0", b"4", b"-1", b"01x", b"", b"99999"):
        try:
            mapping.mapcount(bad, 3)
        except ValueError:
            continue
        raise AssertionError(bad)


class _M:
    min_uid, max_uid, forbidden_groups = 1000, 60000, ("sudo", "wheel")


def test_account_refusal_rules():
    ok = mapping.account_refusal("a", 5000, 5000, (5000,), ("a",), _M)
    assert ok is None
    assert mapping.account_refusal("r", 0, 5000, (5000,), ("a",), _M)
    assert mapping.account_refusal("l", 999, 5000, (5000,), ("a",), _M)
    assert mapping.account_refusal("h", 60001, 5000, (5000,), ("a",), _M)
    assert mapping.account_refusal("g", 5000, 0, (0,), ("root",), _M)
    assert mapping.account_refusal("s", 5000, 5000, (5000, 27), ("a", "sudo"), _M)
