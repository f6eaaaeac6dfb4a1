import hashlib
import json

from hypothesis import HealthCheck, given, settings, strategies as st

from glexec_py.core.audit import MAX_CHARS, classic_line, decode_line, encode


def check_line(out):
    assert out.endswith(b"\n")
    assert out.count(b"\n") == 1
    assert all(0x20 <= b < 0x7F for b in out[:-1])


def test_simple_record_order_and_types():
    rec = {"event": "grant", "n": 3, "ok": True, "no": False, "x": None, "f": 1.5,
           "list": [1, "a", b"b"], "tup": (2,), "d": {"k": [None]}}
    out = encode(rec)
    check_line(out)
    assert out == (b'{"event":"grant","n":3,"ok":true,"no":false,"x":null,"f":1.5,'
                   b'"list":[1,"a","b"],"tup":[2],"d":{"k":[null]}}\n')
    assert list(json.loads(out)) == list(rec)


def test_control_and_non_ascii_escaped():
    s = 'a\n"b"\\\x1b[31m\x7f\u202e\U0001F600\u2028'
    out = encode({"s": s})
    check_line(out)
    assert b"\\u001b" in out and b"\\u007f" in out and b"\\u202e" in out
    assert b"\\ud83d\\ude00" in out
    assert json.loads(out)["s"] == s


def test_bytes_not_utf8_as_reversible_object():
    raw = b"/CN=\xff\xfe\xc3\xa9\n"
    out = encode({"dn": raw})
    check_line(out)
    assert b"\\ud" not in out                      # no lone surrogates for jq to mangle
    assert json.loads(out)["dn"] == {"bytes_b64": "L0NOPf/+w6kK", "text": "/CN=\\xff\\xfe\u00e9\n"}
    assert decode_line(out)["dn"] == raw.decode("utf-8", "surrogateescape")
    assert decode_line(out)["dn"].encode("utf-8", "surrogateescape") == raw
    # a str carrying undecodable bytes (surrogateescape) is the same value
    assert encode({"dn": raw.decode("utf-8", "surrogateescape")}) == out
    # valid UTF-8 stays a plain string
    assert json.loads(encode({"dn": "/CN=J\u00f6rg".encode()}))["dn"] == "/CN=J\u00f6rg"


def test_only_the_exact_escape_object_is_unescaped():
    for obj in ({"bytes_b64": "YQ==", "text": "a"},              # UTF-8: encode writes text
                {"bytes_b64": "/w==", "text": "x", "more": "y"}, {"bytes_b64": "!!", "text": "x"},
                {"bytes_b64": 1, "text": "x"}, {"bytes_b64": "/w=="}):
        line = json.dumps({"v": obj}).encode()
        assert decode_line(line)["v"] == obj


def test_truncation_with_hash():
    s = "x" * (MAX_CHARS + 10)
    v = json.loads(encode({"s": s}))["s"]
    digest = hashlib.sha256(s.encode()).hexdigest()
    assert v == "x" * MAX_CHARS + f"\u2026[truncated, sha256={digest}]"
    raw = b"\xff" * (MAX_CHARS + 1)
    v = decode_line(encode({"b": raw}))["b"]
    assert v == "\udcff" * MAX_CHARS + f"\u2026[truncated, sha256={hashlib.sha256(raw).hexdigest()}]"
    assert json.loads(encode({"s": "y" * MAX_CHARS}))["s"] == "y" * MAX_CHARS


def test_special_floats_and_unknown_types():
    d = json.loads(encode({"a": float("nan"), "b": float("inf"), "c": float("-inf"),
                           "o": object, "k": {1: 2, b"\xff": 3}}))
    assert d["b"] == float("inf") and d["c"] == float("-inf") and d["a"] != d["a"]
    assert d["o"] == repr(object)
    assert d["k"] == {"1": 2, "\\xff": 3}


json_leaf = st.one_of(st.text(max_size=50), st.binary(max_size=50), st.integers(),
                      st.booleans(), st.none(),
                      st.floats(allow_nan=False, allow_infinity=False))
json_val = st.recursive(json_leaf, lambda c: st.one_of(
    st.lists(c, max_size=4), st.tuples(c, c), st.dictionaries(st.text(max_size=10), c,
                                                                max_size=4)), max_leaves=10)


def expected(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "surrogateescape")
    if isinstance(v, (list, tuple)):
        return [expected(x) for x in v]
    if isinstance(v, dict):
        return {k: expected(x) for k, x in v.items()}
    return v


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=10), json_val, max_size=4))
def test_prop_round_trip_against_json(rec):
    out = encode(rec)
    check_line(out)
    assert decode_line(out) == expected(rec)


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=50), st.integers(1, 3000))
def test_prop_long_strings_capped(piece, reps):
    s = (piece * (MAX_CHARS // len(piece) + 1 + reps))[:MAX_CHARS + reps]
    out = encode({"s": s})
    check_line(out)
    v = json.loads(out)["s"]
    assert v.startswith(s[:MAX_CHARS]) and "sha256=" in v


def test_classic_line_format():
    line = classic_line("pilot", "pilots", "atlas001", "atlas", b"/home/pilot", "id",
                        "/usr/bin/id", [b"-u", "x y"])
    assert line == ('real_user(pilot),real_group(pilots)->mapped_user(atlas001),'
                    'mapped_group(atlas) cwd: "/home/pilot" cmd: "id" (="/usr/bin/id")'
                    ' args: "-u" "x y"')
    line = classic_line("p", "g", "t", "tg", "/", "/bin/true", "/bin/true", [])
    assert line.endswith('cmd: "/bin/true" (="/bin/true")')


def test_classic_line_escapes():
    line = classic_line(b"p", b"g", b"t", b"tg", b"/a\nb", b'c"\\', "/r\u00e9",
                        [b"\x1b[0m", b"\xff", "\t"])
    assert "\n" not in line and line.isascii() and line.isprintable()
    assert 'cwd: "/a\\nb"' in line
    assert 'cmd: "c\\"\\\\"' in line
    assert '(="/r\\xc3\\xa9")' in line
    assert 'args: "\\x1b[0m" "\\xff" "\\x09"' in line


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=20), st.text(max_size=20)), min_size=7,
                max_size=7), st.lists(st.binary(max_size=10), max_size=4))
def test_prop_classic_line_one_printable_line(fields, args):
    line = classic_line(*fields, args)
    assert line.isascii() and line.isprintable()
    # every quoted field is delimited: the number of unescaped quotes is even
    assert line.replace('\\\\', '').replace('\\"', '').count('"') == 2 * (3 + len(args))


def test_lone_surrogates_never_make_two_records_one_line():
    # Found by fuzz/fuzz_audit.py: "\udbda\udddc" used to be written as two escapes that
    # JSON readers join into the astral character U+1069DC, the same line as that character.
    import json
    from glexec_py.core.audit import encode
    pair_like = encode({"k": "\udbda\udddc"})
    astral = encode({"k": "\U001069dc"})
    assert pair_like != astral
    # lone surrogates are bytes (surrogatepass), never a JSON escape pair
    assert decode_line(pair_like)["k"].encode("utf-8", "surrogateescape") == "\udbda\udddc".encode(
        "utf-8", "surrogatepass")
    assert json.loads(astral)["k"] == decode_line(astral)["k"] == "\U001069dc"
