import fnmatch

import pytest
from hypothesis import given, settings, strategies as st

from glexec_py.core.gridmap import (GridmapLine, local_account, parse_gridmap, pool_name,
                                    subject_matches)
from glexec_py.errors import ConfigError

DN = b"/DC=org/DC=example/CN=Alice Pilot"


def parse(data):
    return parse_gridmap(data, "grid-mapfile")


def test_basic_quoted_and_unquoted():
    lines = parse(b'# comment\n\n   \t\n"/DC=org/CN=A B" alice\n/CN=nospace bob,carol\n')
    assert lines == (GridmapLine(4, b"/DC=org/CN=A B", (b"alice",)),
                     GridmapLine(5, b"/CN=nospace", (b"bob", b"carol")))


def test_indented_comment_and_hash_in_subject():
    lines = parse(b"  \t# x\n/CN=a#b  m1 # trailing comment\n")
    assert lines == (GridmapLine(2, b"/CN=a#b", (b"m1",)),)


def test_crlf_keeps_carriage_return():
    lines = parse(b'"' + DN + b'" .pool\r\n"' + DN + b'" alice\r\n')
    assert lines[0].mappings == (b".pool\r",)
    assert lines[1].mappings == (b"alice\r",)
    assert pool_name(lines, DN) == b"pool\r"
    assert local_account(lines, DN) == b"alice\r"


def test_crlf_unquoted_subject_line_has_cr_in_mapping():
    lines = parse(b"/CN=x\r\n")
    assert lines == (GridmapLine(1, b"/CN=x\r", ()),)


def test_local_and_pool_from_one_line():
    lines = parse(b'"' + DN + b'" lcmlocal,.lcmpool\n')
    assert local_account(lines, DN) == b"lcmlocal"
    assert pool_name(lines, DN) == b"lcmpool"


def test_unbalanced_quote_is_error_with_line():
    with pytest.raises(ConfigError) as ei:
        parse(b'"/CN=ok" a\n\n"/CN=broken a\n"/CN=later" b\n')
    assert ei.value.message == "grid-mapfile:3: unbalanced quote in the subject"
    assert ei.value.line == 3 and ei.value.exit_code == 202


@pytest.mark.parametrize("data,line", [
    (b'/CN=a b\\', 1), (b'x\n/CN=a\\', 2), (b'"/CN=a\\', 1), (b'x y\n"/CN=a" b \\\n', 2),
])
def test_backslash_at_end_of_line(data, line):
    with pytest.raises(ConfigError) as ei:
        parse(data)
    assert ei.value.line == line
    assert "continuation not supported" in ei.value.what


def test_subject_keeps_backslashes_verbatim():
    lines = parse(b'"/CN=Jos\\xC3\\xA9 \\"Q\\"" jose\n')
    assert lines[0].subject == b'/CN=Jos\\xC3\\xA9 \\"Q\\"'
    assert local_account(lines, b'/CN=Jos\\xC3\\xA9 \\"Q\\"') == b"jose"


def test_unquoted_subject_escaped_blank_does_not_end_it():
    assert parse(b"/CN=a\\ b m\n")[0].subject == b"/CN=a\\ b"


def test_mapping_escapes_expanded_and_hash():
    lines = parse(b'"s" a\\ b,c\\,d\\#e\\\\f #x\n')
    assert lines[0].mappings == (b"a b", b"c,d#e\\f")


def test_separator_runs_and_leading_commas():
    lines = parse(b'"s",, \t,a,,\t b ,\n')
    assert lines[0].mappings == (b"a", b"b")


def test_empty_quoted_subject_and_no_mappings():
    assert parse(b'""\n"x"\n') == (GridmapLine(1, b"", ()), GridmapLine(2, b"x", ()))


def test_first_acceptable_line_rule():
    data = (b'"' + DN + b'"\n'                 # no mapping: passed over
            b'"' + DN + b'" .pool1\n'          # local: no acceptable mapping
            b'"' + DN + b'" first,second\n'
            b'"' + DN + b'" third,.pool2\n')
    lines = parse(data)
    assert local_account(lines, DN) == b"first"
    assert pool_name(lines, DN) == b"pool1"
    assert local_account(lines, b"/CN=other") is None
    assert pool_name(lines, b"/CN=other") is None


def test_local_account_first_non_dot_mapping():
    lines = parse(b'"s" .p1 .p2 loc1 loc2\n')
    assert local_account(lines, b"s") == b"loc1"


def test_localaccount_never_uses_wildcards():
    lines = parse(b'"/DC=org/*" alice,.pool\n')
    assert local_account(lines, b"/DC=org/CN=x") is None
    assert pool_name(lines, b"/DC=org/CN=x") == b"pool"
    assert pool_name(lines, b"/DC=org/CN=x", wildcards=False) is None
    assert pool_name(lines, b"/DC=org/*", wildcards=False) == b"pool"


def test_fqan_semantics():
    lines = parse(b'"/testvo/*" .vo\n"/testvo" .exact\n')
    assert pool_name(lines, b"/testvo/Role=NULL/Capability=NULL") == b"vo"
    assert pool_name(lines, b"/testvo") == b"exact"


@pytest.mark.parametrize("pat,s,ok", [
    (b"*", b"", True), (b"*", b"/a/b", True), (b"/a/*/c", b"/a/x/y/c", True),
    (b"a?c", b"abc", True), (b"a?c", b"ac", False), (b"[abc]x", b"bx", True),
    (b"[!abc]x", b"bx", False), (b"[^abc]x", b"dx", True), (b"[a-c]", b"b", True),
    (b"[]a]", b"]", True), (b"[a-]", b"-", True), (b"[", b"[", True), (b"a[b", b"a[b", True),
    (b"\\*", b"\\x", True), (b"\\*", b"*", False), (b"[[:digit:]]x", b"5x", True),
    (b"[[:bogus:]]", b"a", False), (b"*a*b*c*", b"xxaxxbxxcxx", True),
    (b"*a*b*c*", b"xxaxxcxxbxx", False), (b"a*", b"b", False),
])
def test_fnmatch_cases(pat, s, ok):
    assert subject_matches(pat, s) is ok


def test_hostile_pattern_is_fast():
    assert not subject_matches(b"*a" * 60 + b"b", b"a" * 5000)


simple_pat = st.lists(st.sampled_from([b"a", b"b", b"/", b"*", b"?", b"[ab]", b"[!a]", b"x"]),
                      max_size=8).map(b"".join)
simple_str = st.lists(st.sampled_from([b"a", b"b", b"/", b"x", b"c"]), max_size=10).map(
    b"".join)


@settings(max_examples=500, deadline=None)
@given(simple_pat, simple_str)
def test_prop_fnmatch_agrees_with_python_fnmatch_on_common_syntax(pat, s):
    # On this subset (no '^' negation, no classes, no backslash) Python's fnmatchcase
    # has the same semantics as glibc fnmatch(FNM_NOESCAPE).
    assert subject_matches(pat, s) == fnmatch.fnmatchcase(s, pat)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_prop_random_bytes_only_config_error(data):
    try:
        lines = parse(data)
    except ConfigError as e:
        assert e.filename == "grid-mapfile" and e.line >= 1
        return
    for line in lines:
        assert isinstance(line.subject, bytes) and all(line.mappings)
        local_account(lines, line.subject)
        pool_name(lines, line.subject)


line_alpha = st.lists(st.sampled_from([b"a", b" ", b"\t", b",", b"#", b'"', b"\\", b".",
                                       b"\r", b"*", b"["]), max_size=30).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(st.lists(line_alpha, max_size=6), st.binary(max_size=20))
def test_prop_structured_lines(lines, subject):
    data = b"\n".join(lines)
    try:
        parsed = parse(data)
    except ConfigError as e:
        assert 1 <= e.line <= len(lines)
        return
    for line in parsed:
        assert b"\n" not in line.subject
        pool_name(parsed, subject)
        local_account(parsed, subject)
