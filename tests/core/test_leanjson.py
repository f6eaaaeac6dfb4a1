"""core.leanjson is json: the same text written, the same value or error read back."""
import json
import math

from hypothesis import given, settings, strategies as st

from glexec_py.core import leanjson

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.text())
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.tuples(inner, inner),
    st.dictionaries(st.text(max_size=8), inner, max_size=5)), max_leaves=25)
SEPARATORS = st.sampled_from([(", ", ": "), (",", ":")])


def same(a, b):
    """Equal, with NaN equal to itself (json round-trips it as NaN)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def outcome(f, arg):
    try:
        return "ok", f(arg)
    except ValueError as e:
        return "error", f"{type(e).__name__}: {e}"


@settings(max_examples=400, deadline=None)
@given(values, st.booleans(), SEPARATORS)
def test_dumps_is_json_dumps(value, sort_keys, separators):
    assert leanjson.dumps(value, sort_keys=sort_keys, separators=separators) == \
        json.dumps(value, ensure_ascii=True, sort_keys=sort_keys, separators=separators)


@settings(max_examples=400, deadline=None)
@given(values, SEPARATORS, st.sampled_from(["", " ", "\n", " \t\r\n"]), st.booleans())
def test_loads_reads_what_json_writes(value, separators, pad, as_bytes):
    text = pad + json.dumps(value, separators=separators) + pad
    data = text.encode("ascii") if as_bytes else text
    got, want = outcome(leanjson.loads, data), outcome(json.loads, data)
    assert got[0] == want[0] == "ok" and same(got[1], want[1])


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.binary(max_size=40), st.text(max_size=40),
                 st.text(alphabet='{}[]",:0123456789.eE+-truefalsnNIiy \t\n\\u', max_size=30)))
def test_loads_of_anything_is_json_loads(data):
    got, want = outcome(leanjson.loads, data), outcome(json.loads, data)
    assert got[0] == want[0]
    assert same(got[1], want[1]) if got[0] == "ok" else got[1] == want[1]


def test_not_serializable_is_a_type_error():
    for bad in ({"a": b"x"}, [object()], {(1, 2): 3}):
        for f in (json.dumps, leanjson.dumps):
            try:
                f(bad)
            except TypeError:
                continue
            raise AssertionError(f"{f} accepted {bad!r}")
