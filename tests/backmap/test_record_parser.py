"""glexec_tools.backmap.plan.parse_record on any line: an Event that says exactly what the line says, or
a clean rejection (tests/support/backmap_oracle.py; the long run is fuzz/fuzz_backmap.py)."""
from hypothesis import given, settings, strategies as st

from glexec_tools.backmap import plan as bm
from glexec_py.core.audit import encode
from tests.backmap.backmap_helpers import T0
from tests.support.backmap_oracle import problems

values = st.one_of(st.none(), st.booleans(), st.integers(-2, 1 << 33), st.text(max_size=12),
                   st.lists(st.integers(0, 9), max_size=2))
records = st.fixed_dictionaries(
    {"time": st.one_of(st.integers(-10 ** 12, 10 ** 12).map(lambda d: bm.format_time(T0 + d)),
                       st.text(max_size=30)),
     "event": st.sampled_from(["grant", "end", "refuse", "boot", "Grant"]),
     "host": st.one_of(st.text(max_size=8), st.integers())},
    optional={"uid": values, "pid": values, "dn": values, "account": values, "issuer": values,
              "fqans": values, "caller": st.one_of(values, st.dictionaries(st.text(max_size=4), values, max_size=3))})


@settings(max_examples=400, deadline=None)
@given(records, st.integers(0, 400), st.integers(0, 255))
def test_prop_engine_lines_cut_or_flipped(rec, cut, flip):
    line = encode(rec)
    for variant in (line, line[:cut], line[:cut] + bytes([flip]) + line[cut + 1:]):
        assert problems(variant) == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_prop_any_bytes(line):
    assert problems(line) == []
