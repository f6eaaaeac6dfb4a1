"""handoff_to_fd3 (csrc/shim_blob.c) through the ASan/UBSan harness of
tests/support/shim_harness.py: glexec_py.core.handoff.parse of the blob on fd 3 gives back
exactly the argv/env given and the facts the harness process really had; over-limit input
is refused with 201 and no blob. The bounded twin of fuzz/fuzz_shimblob.py."""
import os
import resource

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from glexec_py.core import handoff
from tests.support.shim_harness import (MAX_ARGV, MAX_BLOB, MAX_ENV, RLIM_INFINITY,
                                        SAFE_RLIMITS, BlobHarness, check_run, expected_facts)


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    return BlobHarness(tmp_path_factory.mktemp("shimblob"))


@pytest.fixture(scope="module")
def cwds(tmp_path_factory):
    d = tmp_path_factory.mktemp("cwd")
    odd = os.path.join(os.fsencode(d), b"odd \xff\n=dir")   # non-UTF-8, newline, '='
    os.mkdir(odd)
    return ["/", str(d), os.fsdecode(odd)]


def assert_ok(harness, *a, **kw):
    bad = check_run(harness, *a, **kw)
    assert not bad, bad


ARG = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"")) | st.sampled_from(
    [b"", b"=", b"A=B=C", b"=x", b"\xff\xfe=\x80", b"PATH=/bin", b"x" * 5000])
LIMIT = st.sampled_from([0, 1, 100, 4096, 2**31, 2**32, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 2,
                         RLIM_INFINITY]) | st.integers(0, RLIM_INFINITY)


@st.composite
def rlimits(draw):
    out = {}
    for res in draw(st.lists(st.sampled_from(SAFE_RLIMITS), max_size=4, unique=True)):
        cap = resource.getrlimit(res)[1] % 2**64       # lowering is allowed to anyone
        hard = min(draw(LIMIT), cap)
        out[res] = (min(draw(LIMIT), hard), hard)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=st.lists(ARG, min_size=1, max_size=8), env=st.lists(ARG, max_size=8),
       privileged=st.booleans(), rl=rlimits(), umask=st.integers(0, 0o777),
       which=st.integers(0, 2), new_session=st.booleans())
def test_blob_round_trips(harness, cwds, argv, env, privileged, rl, umask, which, new_session):
    assert_ok(harness, argv, env, privileged, rl, umask, cwds[which], new_session)


def test_entry_count_limits(harness):
    assert_ok(harness, [b""] * MAX_ARGV, [b"a="] * MAX_ENV)
    assert_ok(harness, [b"x"] * (MAX_ARGV + 1), [])
    assert_ok(harness, [b"x"], [b""] * (MAX_ENV + 1))


def test_blob_size_limit_exact(harness):
    """A blob of exactly MAX_BLOB bytes is accepted, one byte more is refused (201)."""
    p, *_ = harness.run([b"x"], [b""])
    base = len(handoff.build(expected_facts(p, [b"x"], [b""], False, {}, 0o022, "/", False)))
    pad = MAX_BLOB - base
    assert_ok(harness, [b"x"], [b"V" * pad])
    assert_ok(harness, [b"x"], [b"V" * (pad + 1)])
    assert_ok(harness, [b"x", b"y" * (pad // 2)], [b"V" * (pad - pad // 2 - 4)])


@pytest.mark.parametrize("soft,hard", [(2**63, RLIM_INFINITY), (2**64 - 2, 2**64 - 2),
                                       (2**63 - 1, 2**63)])
def test_rlimit_above_int64_recorded_as_int64_max(harness, soft, hard):
    """A caller's finite limit >= 2**63 used to be written as a negative number: the engine
    refused the whole blob as malformed (202)."""
    assert_ok(harness, [b"x"], [], rlimits={4: (soft, hard)})


def test_fsize_limit_below_blob_refused(harness):
    """RLIMIT_FSIZE applies to the memfd: a blob over it is refused with 201 and one line;
    it used to kill the shim with SIGXFSZ."""
    p, *_ = harness.run([b"x"], [b"E=" * 500])
    size = len(handoff.build(expected_facts(p, [b"x"], [b"E=" * 500], False, {}, 0o022, "/",
                                            False)))
    for fsize in (0, 1, size - 1, size, size + 1, 2**63 - 1, 2**63, 2**64 - 2):
        assert_ok(harness, [b"x"], [b"E=" * 500], rlimits={1: (fsize, RLIM_INFINITY)})
