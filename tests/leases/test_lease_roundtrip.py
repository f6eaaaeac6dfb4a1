"""lease_name against an independent model, and decoded back (tests/support/lease_oracle.py;
the long run is fuzz/fuzz_leases.py)."""
from hypothesis import given, settings, strategies as st

from glexec_py.core.leases import lease_name
from tests.support.lease_oracle import check_ascii, decode

ascii_dn = st.lists(st.integers(0x02, 0x7F), min_size=1, max_size=60).map(bytes)
groups = st.lists(st.binary(min_size=1, max_size=10).filter(lambda g: b"\0" not in g and b"\x01" not in g),
                  max_size=3).map(tuple)


@settings(max_examples=500, deadline=None)
@given(ascii_dn, groups, st.integers(-1, 9999))
def test_prop_model_and_round_trip(dn, gs, mapcount):
    assert check_ascii(lease_name, dn, gs, mapcount) == []


def test_decode_known_name():
    assert decode(lease_name(b"/DC=org/CN=Alice Smith")) == (b"/dc=org/cn=alice smith", None)
    assert decode(lease_name(b"/CN=A", (b"atlas", b"prod"), 2)) == (b"/cn=a", b"atlas:prod:mapcount=0002")
