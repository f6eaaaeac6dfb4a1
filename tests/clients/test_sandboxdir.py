"""core/sandboxdir.py: which directories glexec accepts as the caller's sandbox for the
target proxy (mkgltempdir -t 777): the target's, sticky, written besides only by the caller."""
import pytest
from hypothesis import given, strategies as st

from glexec_py.core import sandboxdir as sd

T, C, O = 47011, 47001, 47002


def acl(user_perm=7, user=C, group_obj=0, extra=()):
    return [(sd.ACL_USER_OBJ, 7, None), (sd.ACL_USER, user_perm, user), *extra,
            (sd.ACL_GROUP_OBJ, group_obj, None), (sd.ACL_MASK, 7, None), (sd.ACL_OTHER, 0, None)]


def test_the_mkgltempdir_directory_is_accepted():
    assert sd.caller_sandbox(0o41770, acl(), T, T, C) == (True, None)


@pytest.mark.parametrize("mode,entries,owner,why", [
    (0o41770, acl(), O, "not owned"),
    (0o40770, acl(), T, "sticky"),
    (0o41777, acl(), T, "others"),
    (0o41770, None, T, "without an ACL"),
    (0o41770, acl(user=O), T, f"user {O}"),
    (0o41770, acl(group_obj=7), T, "its group"),
    (0o41770, acl(extra=[(sd.ACL_GROUP, 2, 47100)]), T, "group 47100"),
    (0o41770, acl()[:-1] + [(sd.ACL_OTHER, 2, None)], T, "others"),
])
def test_refused(mode, entries, owner, why):
    ok, reason = sd.caller_sandbox(mode, entries, T, owner, C)
    assert not ok and why in reason


def test_read_only_acl_for_another_user_is_fine():
    assert sd.caller_sandbox(0o41770, acl(extra=[(sd.ACL_USER, 5, O)]), T, T, C)[0]


@given(st.lists(st.tuples(st.sampled_from([1, 2, 4, 8, 16, 32]), st.integers(0, 7), st.integers(0, 2**32 - 1))))
def test_acl_bytes_round_trip(entries):
    assert sd.parse_acl(sd.encode_acl(entries)) == entries


@pytest.mark.parametrize("raw", [b"", b"\x02\x00\x00", b"\x01\x00\x00\x00", b"\x02\x00\x00\x00\x01"])
def test_bad_acl_bytes(raw):
    with pytest.raises(ValueError):
        sd.parse_acl(raw)
