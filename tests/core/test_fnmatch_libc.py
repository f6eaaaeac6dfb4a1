"""The gridmapfile/ban wildcard matcher against glibc's fnmatch (what LCMAPS calls):
mapping patterns never match more, ban patterns never match less, equal when well formed
(tests/support/libc_fnmatch.py; the long run is fuzz/fuzz_gridmap.py and fuzz_bans.py)."""
import pytest
from hypothesis import example, given, settings, strategies as st

from glexec_py.core.bans import BanLoadError, check, load_ban_file
from glexec_py.core.gridmap import ban_pattern_matches, pattern_is_regular, subject_matches
from tests.support.libc_fnmatch import lcmaps_matches, violations, well_formed_ascii

# Pieces that reach every branch of a bracket expression, malformed ones included.
_PIECES = [b"a", b"b", b"z", b"/", b"=", b":", b".", b"-", b"!", b"^", b"]", b"[", b"*", b"?",
           b"\\", b"\xc3", b"\xa9", b"\xff", b"\x01", b"[:", b":]", b"[=a=]", b"[.a.]",
           b"[:alpha:]", b"[:digit:]", b"[:bogus:]", b"[!", b"[^", b"[]", b"a-z", b"\x80-\xff"]
patterns = st.lists(st.sampled_from(_PIECES), max_size=8).map(b"".join)
subjects = st.binary(max_size=6) | st.lists(
    st.sampled_from([b"a", b"b", b"z", b"[", b"]", b":", b"-", b"/", b"\xc3", b"\xa9", b"\xff"]),
    max_size=6).map(b"".join)


@settings(max_examples=3000, deadline=None)
@given(patterns, subjects)
@example(b"[[=a=]", b"a")                       # shapes the old matcher got wrong, always tried
@example(b"[M[:]allory*", b"Mallory")
@example(b"[[:]", b"[")
def test_prop_contract_against_libc(pattern, subject):
    assert violations(pattern, subject, subject_matches(pattern, subject),
                      ban_pattern_matches(pattern, subject)) == []


@settings(max_examples=500, deadline=None)
@given(patterns)
def test_prop_well_formed_means_regular(pattern):
    # the code's notion of "read exactly like glibc" covers at least the oracle's
    if well_formed_ascii(pattern):
        assert pattern_is_regular(pattern)


# An unterminated "[:" inside a bracket: glibc takes the '[' as a member of the set, the
# old matcher read the whole bracket as a literal '[' -- so this ban let Mallory in.
FAIL_OPEN = b"/DC=org/CN=[M[:]allory*"
MALLORY = b"/DC=org/CN=Mallory Evil"


def test_unterminated_class_ban_is_not_fail_open():
    assert lcmaps_matches(FAIL_OPEN, MALLORY)                 # LCMAPS bans Mallory
    assert ban_pattern_matches(FAIL_OPEN, MALLORY)
    assert not subject_matches(FAIL_OPEN, MALLORY)             # never maps her by it
    with pytest.raises(BanLoadError, match="bracket expression"):
        load_ban_file(b'"' + FAIL_OPEN + b'"\n', "ban_dn.db", "dn")


@pytest.mark.parametrize("pattern", [b"/CN=[[:]x*", b"/CN=[[=a=]]*", b"/CN=[[.a.]]*",
                                     b"/CN=[[:alpha]*", b"/CN=[\xc3\xa9]*", b"/CN=[a-[:alpha:]]*",
                                     b"/testvo/[[:bogus:]]*"])
def test_irregular_ban_patterns_refused_or_match_all(pattern):
    kind = "fqan" if pattern.startswith(b"/testvo") else "dn"
    with pytest.raises(BanLoadError):
        load_ban_file(b'"' + pattern + b'"\n', "bans", kind)
    assert not pattern_is_regular(pattern)
    assert ban_pattern_matches(pattern, b"/anything at all")


def test_ban_list_with_irregular_pattern_in_inline_bans_denies():
    from glexec_py.core.bans import from_plain
    with pytest.raises(BanLoadError):
        from_plain({"dn": [FAIL_OPEN.decode()]}, "glexec.yaml: bans")


def test_non_ascii_outside_brackets_is_regular_and_exact():
    pattern = "/DC=org/CN=Jos\u00e9 *".encode()
    assert pattern_is_regular(pattern)
    bl = load_ban_file(b'"' + pattern + b'"\n', "ban_dn.db", "dn")
    assert check(bl, subject_onelines=["/DC=org/CN=Jos\u00e9 X".encode()]) is not None
    assert check(bl, subject_onelines=[b"/DC=org/CN=Jose X"]) is None


_TEXT_PIECES = [p for p in _PIECES if p.isascii() and not any(c < 0x20 for c in p) and b'"' not in p
                and b"\\" not in p]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(_TEXT_PIECES), min_size=1, max_size=6).map(b"".join),
       st.lists(st.sampled_from([b"a", b"b", b"z", b"[", b"]", b":", b"-", b"/", b"="]),
                max_size=6).map(b"".join))
@example(b"[a[:]*", b"a")
def test_prop_loaded_ban_denies_whatever_lcmaps_bans(tail, rest):
    # the whole path: ban file -> BanList -> check(subject_onelines) (fuzz/fuzz_bans.py)
    pattern = b"/CN=" + tail
    if not any(c in pattern for c in b"*?["):
        return                                  # an exact DN entry: compared parsed, elsewhere
    try:
        bl = load_ban_file(b'"' + pattern + b'"\n', "ban_dn.db", "dn")
    except BanLoadError:
        assert not pattern_is_regular(pattern)  # refused only when irregular (deny everyone)
        return
    subject = b"/CN=" + rest
    if lcmaps_matches(pattern, subject):
        assert check(bl, subject_onelines=[subject]) is not None
