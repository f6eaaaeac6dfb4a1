"""Pure lease naming, pool membership, scan filter and fsck planner."""
import string

from hypothesis import given, settings, strategies as st

from glexec_py.core.leases import (Finding, lease_name, plan_fsck, pool_member, skip_entry,
                                   urlencode)
import pytest

JANE = b"/C=NL/O=Example Grid/OU=Users/CN=Jane Doe"
JANE_LEASE = b"%2fc%3dnl%2fo%3dexample%20grid%2fou%3dusers%2fcn%3djane%20doe"


def test_reference_examples():
    assert lease_name(JANE) == JANE_LEASE
    assert lease_name(JANE, (b"lcmvo",)) == JANE_LEASE + b":lcmvo"
    assert lease_name(JANE, (b"lcmprod", b"lcmvo")) == JANE_LEASE + b":lcmprod:lcmvo"
    assert lease_name(JANE, (), 2) == JANE_LEASE + b":mapcount=0002"
    assert lease_name(JANE, (b"G",), 3) == JANE_LEASE + b":G:mapcount=0003"
    # the high-byte quirk, as observed with the real plugin (reference section 4)
    assert lease_name("André Ünï".encode()) == b"andr%ff%ff%20%ff%ffn%ff%ffffffaf"


def test_high_byte_buffer_emulation():
    # snprintf bounded by the buffer end truncates the last sign-extended escape
    assert lease_name(b"/CN=\xc3\xa9") == b"%2fcn%3d%ff%ffffff"
    # an alnum byte after an escape overwrites only one byte, the rest stays visible
    assert urlencode(b"\xc3\xa9a") == b"%ff%ffaff"
    # strncpy after \001 zero-pads: no garbage after the group part
    assert lease_name(b"/CN=\xc3\xa9a", (), 2) == b"%2fcn%3d%ff%ffa:mapcount=0002"
    # OpenSSL oneline form of the same DN is ASCII and injective
    assert lease_name(b"/CN=\\xC3\\xA9") == b"%2fcn%3d%5cxc3%5cxa9"


def test_case_folding_is_kept():
    assert lease_name(b"/CN=Jane") == lease_name(b"/cn=jane")


def test_mapcount_bounds():
    assert lease_name(JANE, (), -1) == JANE_LEASE
    assert lease_name(JANE, (), 0) == JANE_LEASE
    assert lease_name(JANE, (), 9999).endswith(b":mapcount=9999")
    for bad in (-2, 10000, True, 1.0):
        with pytest.raises(ValueError):
            lease_name(JANE, (), bad)
    with pytest.raises(ValueError):
        lease_name(b"")
    with pytest.raises(ValueError):
        lease_name(b"/CN=a\0b")


def test_pool_member_and_skip():
    assert pool_member(b"lcmpool01", b"lcmpool")
    assert not pool_member(b"lcmpoolx", b"lcmpool")
    assert not pool_member(b"lcmpool", b"lcmpool")
    assert pool_member(b"lcmpoolx", b"lcmpool", strict=False)
    assert not pool_member(b"lcmpool01~", b"lcmpool", strict=False)
    assert not pool_member(b"lcmpool01", b"")
    assert not pool_member(b"lcmpool\xd9\xa1", b"lcmpool")      # non-ASCII digit
    for n in (b"%2fcn", b".hidden", b"root", b"a~b", b""):
        assert skip_entry(n)
    assert not skip_entry(b"lcmpool01")


ascii_dn = st.lists(st.integers(0x02, 0x7F), min_size=1, max_size=80).map(bytes)


@settings(max_examples=500, deadline=None)
@given(ascii_dn, ascii_dn)
def test_distinct_ascii_dns_never_collide(a, b):
    # LCMAPS folds letter case on purpose; apart from that the encoding is injective.
    if a.lower() != b.lower():
        assert lease_name(a) != lease_name(b)


@settings(max_examples=500, deadline=None)
@given(ascii_dn, st.lists(st.binary(min_size=1, max_size=12).filter(
    lambda g: b"\0" not in g), max_size=3), st.integers(-1, 9999))
def test_output_alphabet(dn, groups, mapcount):
    name = lease_name(dn, tuple(groups), mapcount)
    head, sep, tail = name.partition(b":")
    allowed = set(b"abcdefghijklmnopqrstuvwxyz0123456789%")
    assert set(head) <= allowed
    if groups:
        assert tail.startswith(b":".join(groups))
    elif mapcount > 0:
        assert tail == b"mapcount=%04d" % mapcount
    else:
        assert sep == b""


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=60).filter(lambda b: b"\0" not in b))
def test_any_bytes_bounded_and_alphabet(dn):
    name = lease_name(dn)
    assert len(name) <= 3 * len(dn)
    head = name.partition(b":")[0]
    assert set(head) <= set(b"abcdefghijklmnopqrstuvwxyz0123456789%")


# --- planner ------------------------------------------------------------------------

def E(name, ino, nlink, reg=True):
    return (name, ino, nlink, reg)


def kinds(fs):
    return sorted(f.kind for f in fs)


def test_clean_store():
    ents = [E(b"p01", 1, 2), E(b"p02", 2, 1), E(b"%2fa", 1, 2), E(b".glexec-py", 9, 2, False)]
    meta = {b"p01": {"lease": b"%2fa", "state": "leased"}}
    assert plan_fsck(ents, [b"p"], meta=meta, sidecar=[b"p01"]) == []


def test_all_problem_kinds():
    ents = [
        E(b"p01", 1, 1), E(b"%2fsolo", 5, 1),                      # solitary
        E(b"p02", 2, 3), E(b"%2fa", 2, 3), E(b"%2fb", 2, 3),       # overlinked + double
        E(b"%2forphan", 7, 2), E(b"q01", 7, 2),                    # orphan (unknown pool q)
        E(b"p03", 3, 1, False),                                    # pool entry not regular
        E(b"%2flink", 8, 1, False),                                # lease not regular
        E(b"p04", 4, 2), E(b"%2fc", 4, 2),                         # no meta
        E(b"p05", 6, 2),                                           # link outside the dir
    ]
    meta = {b"p01": {"lease": b"%2fx", "state": "leased"}, b"p09": {"lease": b"%2fz"},
            b"p02": None}
    fs = plan_fsck(ents, [b"p"], meta=meta, sidecar=[b".tmp.p01.1.ab", b"p01"])
    assert kinds(fs) == sorted([
        "solitary_lease", "pool_entry_overlinked", "double_lease", "orphan_lease",
        "pool_entry_not_regular", "lease_not_regular", "meta_missing", "link_count_mismatch",
        "meta_orphan", "meta_corrupt", "tmp_leftover", "meta_orphan", "unknown_entry"])
    orphan = next(f for f in fs if f.kind == "orphan_lease")
    assert orphan.names == (b"%2forphan", b"q01") and orphan.action == "manual"
    sol = next(f for f in fs if f.kind == "solitary_lease")
    assert sol.names == (b"%2fsolo",) and sol.action == "unlink_lease" and sol.ino == 5
    dbl = next(f for f in fs if f.kind == "double_lease")
    assert dbl.names == (b"p02", b"%2fa", b"%2fb") and dbl.action == "manual"
    assert [f.severity for f in fs] == sorted(
        (f.severity for f in fs), key=["error", "warning", "info"].index)
    assert all(isinstance(f, Finding) and f.why for f in fs)


def test_orphan_between_leases_only_is_unlinked():
    fs = plan_fsck([E(b"p01", 1, 1), E(b"%2fa", 7, 2), E(b"%2fb", 7, 2)], [b"p"])
    assert kinds(fs) == ["orphan_lease", "orphan_lease"]
    assert all(f.action == "unlink_lease" for f in fs)


def test_unlisted_pool_is_never_touched():
    fs = plan_fsck([E(b"p01", 1, 1), E(b"q01", 2, 1), E(b"q02", 3, 1)], [b"p"])
    assert kinds(fs) == ["unknown_entry", "unknown_entry"]
    assert all(f.action == "manual" for f in fs)


def test_without_meta_no_meta_findings():
    ents = [E(b"p01", 1, 2), E(b"%2fa", 1, 2)]
    assert plan_fsck(ents, [b"p"]) == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([b"p01", b"p02", b"p03", b"%2fa", b"%2fb",
                                           b"%2fc", b"x1", b".d", b"root"]),
                          st.integers(1, 4), st.integers(1, 4), st.booleans()),
                max_size=12, unique_by=lambda t: t[0]))
def test_planner_total_and_deterministic(ents):
    a = plan_fsck(ents, [b"p"], meta={}, sidecar=[])
    b = plan_fsck(list(reversed(ents)), [b"p"], meta={}, sidecar=[])
    assert a == b
    for f in a:
        assert f.action in ("unlink_lease", "remove_tmp", "remove_meta", "write_meta", "manual")


# --- the PostgreSQL store's key columns ------------------------------------------------------

from hypothesis import given as _given, strategies as _st  # noqa: E402

_KEYS = _st.one_of(_st.tuples(_st.just("x509"), _st.text()),
                   _st.tuples(_st.just("jwt"), _st.text(), _st.text()))


@_given(_KEYS, _KEYS)
def test_owner_column_is_injective_and_reads_back(a, b):
    import json
    from glexec_py.core.leases import owner_column
    assert json.loads(owner_column(a)) == list(a) and owner_column(a).isascii()
    assert (owner_column(a) == owner_column(b)) == (a == b)


@_given(_st.lists(_st.binary(max_size=8), max_size=4), _st.lists(_st.binary(max_size=8), max_size=4))
def test_groups_column_is_injective(a, b):
    from glexec_py.core.leases import groups_column
    assert (groups_column(a) == groups_column(b)) == (a == b)
