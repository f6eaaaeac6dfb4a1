"""The payload plan's wire format: core.plan.encode (Python) against gx_plan_decode (C, in
tests/native/plan_harness.c under ASan/UBSan) and core.plan.decode, the reference.  No root
needed: nothing is executed here (tests/native/test_spawn.py runs plans)."""
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from glexec_py.core import plan as P
from tests.support.plan_harness import PlanHarness, plans


@pytest.fixture(scope="module")
def asan(tmp_path_factory):
    return PlanHarness(tmp_path_factory.mktemp("plan"), asan=True)


@pytest.fixture(scope="module")
def ubsan(tmp_path_factory):
    return PlanHarness(tmp_path_factory.mktemp("plan"), asan=False)


def sample(**kw):
    fields = dict(path=b"/bin/sh", argv=[b"sh", b"-c", b"id"], env=[b"HOME=/home/x", b"X=\xff"], uid=47011,
                  gid=47011, groups=[47100, 47011], cwd=b"/tmp", umask=0o027,
                  rlimits={4: (0, 0), 7: (256, 512), 0: (-1, -1)},
                  switch_identity=True, no_new_privs=True, tty_guard=True, linger=True, pdeathsig=9,
                  forward_signals=[1, 2, 3, 10, 12, 15], caller_ruid=47000)
    fields.update(kw)
    return P.Plan(**fields)


def agree(harness, data):
    """C and Python give the same answer on `data`: the same Plan, or both refuse."""
    try:
        want = P.decode(data)
    except ValueError:
        want = None
    assert harness.decode(data) == want
    return want


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans(st))
def test_every_field_survives_encode_and_the_c_decoder(ubsan, plan):
    data = P.encode(plan)
    assert P.decode(data) == plan
    assert ubsan.decode(data) == plan


def test_sample_under_asan(asan):
    plan = sample()
    assert asan.decode(P.encode(plan)) == plan
    no_linger = sample(linger=False, pdeathsig=0, forward_signals=(), cwd=b"", env=[], groups=[], rlimits={})
    assert asan.decode(P.encode(no_linger)) == no_linger


def test_every_truncation_and_extension_is_refused(ubsan):
    data = P.encode(sample())
    for n in range(len(data)):
        assert ubsan.decode(data[:n]) is None, n
    assert ubsan.decode(data + b"\0") is None


def _patch(data, offset, fmt, value):
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def _string_offset(data, index):
    """Offset of the length word of string `index` (0 path, 1 cwd, 2.. argv, then env)."""
    ngroups, nrl = struct.unpack_from("<II", data, 40)
    pos = 56 + 4 * ngroups + 20 * nrl
    for _ in range(index):
        pos += 5 + struct.unpack_from("<I", data, pos)[0]
    return pos


HEADER_CASES = [
    ("magic", 0, "<4s", b"GXPM"), ("version", 4, "<H", 2), ("unknown flag", 6, "<H", 16 | 15),
    ("total too big", 8, "<I", 10**6), ("total too small", 8, "<I", 56), ("uid -1", 12, "<I", 2**32 - 1),
    ("gid -1", 16, "<I", 2**32 - 1), ("umask", 20, "<I", 0o1000), ("pdeathsig 65", 24, "<I", 65),
    ("caller_ruid -1", 28, "<I", 2**32 - 1), ("forward SIGKILL", 32, "<Q", 1 << 8),
    ("forward SIGSTOP", 32, "<Q", 1 << 18), ("forward SIGCHLD", 32, "<Q", 1 << 16),
    ("groups over the limit", 40, "<I", P.MAX_GROUPS + 1), ("groups huge", 40, "<I", 2**32 - 1),
    ("rlimits over the limit", 44, "<I", 17), ("argc 0", 48, "<I", 0),
    ("argc over the limit", 48, "<I", P.MAX_STRINGS + 1),
    ("argc huge", 48, "<I", 2**32 - 1), ("envc over the limit", 52, "<I", P.MAX_STRINGS + 1),
    ("envc one too many", 52, "<I", 3), ("groups one too many", 40, "<I", 3),
]


@pytest.mark.parametrize("what,offset,fmt,value", HEADER_CASES, ids=[c[0] for c in HEADER_CASES])
def test_malformed_header_is_refused(asan, what, offset, fmt, value):
    assert agree(asan, _patch(P.encode(sample()), offset, fmt, value)) is None


def test_empty_argv_is_refused_even_when_the_bytes_fit(asan):
    """argc 0 with every length consistent: only the argv rule refuses it (an exec with an
    empty argv lets argv[1..] alias envp: the pkexec CVE-2021-4034 class)."""
    data = P.encode(sample(argv=[b"x"], env=[]))
    pos = _string_offset(data, 2)
    bad = data[:pos] + data[pos + 6:]                       # argv[0] b"x": length, byte, NUL
    bad = _patch(_patch(bad, 48, "<I", 0), 8, "<I", len(bad))
    assert agree(asan, bad) is None


def test_pdeathsig_and_forwarding_need_linger(asan):
    data = P.encode(sample(linger=False, pdeathsig=0, forward_signals=()))
    assert agree(asan, _patch(data, 24, "<I", 9)) is None
    assert agree(asan, _patch(data, 32, "<Q", 1 << 14)) is None
    assert agree(asan, _patch(data, 6, "<H", 15)) is not None        # with linger both are fine


def test_malformed_body_is_refused(asan):
    data = P.encode(sample())
    g0 = 56
    cases = {
        "groups not increasing": _patch(data, g0, "<I", 47100),
        "group -1": _patch(_patch(data, g0 + 4, "<I", 2**32 - 1), g0, "<I", 1),
        "rlimit resource 16": _patch(data, g0 + 8 + 40, "<I", 16),
        "rlimits out of order": _patch(data, g0 + 8, "<I", 4),
        "rlimit soft above hard": _patch(data, g0 + 8 + 20 + 4, "<Q", 513),
        "path without NUL": _patch(data, _string_offset(data, 1) - 1, "<B", 0x41),
        "NUL inside argv": _patch(data, _string_offset(data, 2) + 5, "<B", 0),
        "argv length past the end": _patch(data, _string_offset(data, 4), "<I", 2**32 - 1),
        "env length one short": _patch(data, _string_offset(data, 5), "<I", 11),
        "env length one long": _patch(data, _string_offset(data, 5), "<I", 13),
        "relative path": _patch(data, _string_offset(data, 0) + 4, "<B", ord("b")),
        "relative cwd": _patch(data, _string_offset(data, 1) + 4, "<B", ord("t")),
    }
    for what, bad in cases.items():
        assert agree(asan, bad) is None, what


def test_limits_of_strings_and_path(ubsan):
    long_path = b"/" + b"p" * (P.MAX_PATH - 1)
    assert agree(ubsan, P.encode(sample(path=long_path))).path == long_path
    too_long = P.encode(sample(path=long_path))
    too_long = too_long.replace(struct.pack("<I", P.MAX_PATH) + long_path,
                                struct.pack("<I", P.MAX_PATH + 1) + long_path + b"p")
    too_long = _patch(too_long, 8, "<I", len(too_long))
    assert agree(ubsan, too_long) is None
    with pytest.raises(ValueError):
        P.encode(sample(path=long_path + b"p"))


@pytest.mark.parametrize("bad", [
    dict(argv=[]), dict(argv=[b"a\0b"]), dict(env=[b"A=\0"]), dict(path=b"bin/sh"), dict(cwd=b"tmp"),
    dict(uid=2**32 - 1), dict(groups=[-1]), dict(umask=0o1000), dict(linger=False), dict(pdeathsig=65),
    dict(forward_signals=[9]), dict(rlimits={16: (1, 1)}), dict(rlimits={1: (5, 4)}), dict(rlimits={1: (-1, 4)}),
    dict(rlimits={1: (2**64 - 1, -1)}),
])
def test_encoder_refuses_what_the_executor_would(bad):
    with pytest.raises(ValueError):
        P.encode(sample(**bad))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans(st), edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_plans_c_agrees_with_the_reference(ubsan, plan, edits):
    data = bytearray(P.encode(plan))
    for pos, byte in edits:
        data[pos % len(data)] = byte
    agree(ubsan, bytes(data))


def test_plan_is_frozen():
    plan = sample()
    with pytest.raises(AttributeError):
        plan.uid = 0
    assert plan.replace(uid=1).uid == 1 and plan.uid == 47011
