import struct

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from glexec_py.core import handoff
from glexec_py.core.handoff import CallerFacts, MAGIC, build, parse
from glexec_py.errors import SystemFault

MSG = "glexec: malformed hand-off from the shim"


def facts(**kw):
    d = dict(argv=[b"glexec", b"/bin/id"], env=[b"PATH=/bin", b"NOEQ", b"X=\xff"],
             ruid=1000, euid=0, suid=0, rgid=1000, egid=1000, sgid=1000, pid=4242, ppid=1,
             sid=4000, pgid=4242, umask=0o022, privileged=True, groups=(1000, 27),
             rlimits={r: (-1, -1) for r in range(16)}, cwd=b"/home/pilot")
    d["rlimits"][4] = (0, -1)
    d["rlimits"][7] = (1024, 4096)
    d.update(kw)
    return CallerFacts(**d)


def rec(tag, payload):
    return tag + struct.pack("<I", len(payload)) + payload


def records(f):
    """The records of build(f) as a list (without magic)."""
    blob = build(f)[len(MAGIC):]
    out, pos = [], 0
    while pos < len(blob):
        n = struct.unpack_from("<I", blob, pos + 1)[0]
        out.append(blob[pos:pos + 5 + n])
        pos += 5 + n
    return out


def assert_bad(blob):
    with pytest.raises(SystemFault) as ei:
        parse(blob)
    assert ei.value.message == MSG
    assert ei.value.reason == "handoff"
    assert ei.value.exit_code == 202


def test_round_trip_basic():
    f = facts()
    blob = build(f)
    assert blob.startswith(b"GLEXEC-HANDOFF-1\n")
    assert blob.endswith(b"Z\0\0\0\0")
    g = parse(blob)
    assert g == f
    assert g.privileged is True and g.groups == (1000, 27) and g.cwd == b"/home/pilot"
    assert g.rlimits[7] == (1024, 4096)
    assert build(g) == blob


def test_fields_and_slots():
    f = parse(build(facts(privileged=False, cwd=b"")))
    assert f.privileged is False and f.cwd == b""
    assert not hasattr(f, "__dict__")
    assert isinstance(f.groups, tuple) and isinstance(f.argv, list)


def test_interleaved_order_is_accepted_and_A_E_order_kept():
    r = records(facts())
    # move C before the A records
    c = [x for x in r if x[:1] == b"C"]
    rest = [x for x in r if x[:1] != b"C"]
    assert parse(MAGIC + b"".join(c + rest)) == facts()


@pytest.mark.parametrize("mutate", [
    lambda b: b"GLEXEC-HANDOFF-2\n" + b[17:],                 # bad magic
    lambda b: b[:-5],                                          # no Z
    lambda b: b + b"x",                                        # trailing byte
    lambda b: b + rec(b"Z", b""),                              # trailing record
    lambda b: b[:-5] + rec(b"Z", b"x"),                        # Z with payload
    lambda b: b[:-5] + rec(b"Q", b"") + rec(b"Z", b""),        # unknown tag
    lambda b: b[:-5] + rec(b"C", b"/x") + rec(b"Z", b""),      # duplicate C
    lambda b: b[:-5] + rec(b"G", b"") + rec(b"Z", b""),        # duplicate G
    lambda b: b[:-5] + rec(b"R", struct.pack("<3q", 3, 1, 1)) + rec(b"Z", b""),  # dup R
    lambda b: b[:-3],                                          # truncated header
    lambda b: b"",
    lambda b: MAGIC,
])
def test_structural_deviations(mutate):
    assert_bad(mutate(build(facts())))


def _without(tag, f=None):
    return MAGIC + b"".join(x for x in records(f or facts()) if x[:1] != tag)


@pytest.mark.parametrize("tag", [b"A", b"I", b"G", b"C", b"R", b"Z"])
def test_missing_records(tag):
    assert_bad(_without(tag))


def test_zero_argv_and_duplicate_I():
    assert_bad(build(facts(argv=[])))
    r = records(facts())
    i = [x for x in r if x[:1] == b"I"]
    assert_bad(MAGIC + b"".join(i + r))


def test_missing_one_rlimit():
    f = facts()
    del f.rlimits[15]
    assert_bad(build(f))


@pytest.mark.parametrize("tag,payload", [
    (b"I", b"\0" * 95), (b"I", b"\0" * 97), (b"G", b"\0" * 7), (b"R", b"\0" * 23),
    (b"R", b"\0" * 25),
])
def test_wrong_payload_lengths(tag, payload):
    r = [x for x in records(facts()) if x[:1] != tag or tag == b"R"]
    if tag == b"R":   # replace R for resource 0 by the bad one
        r = [x for x in r if not (x[:1] == b"R" and x[5:13] == struct.pack("<q", 0))]
    assert_bad(MAGIC + b"".join([rec(tag, payload)] + r))


def test_length_beyond_end():
    b = build(facts())
    assert_bad(b[:-5] + b"C" + struct.pack("<I", 1000) + b"abc")


@pytest.mark.parametrize("kw", [
    dict(ruid=-1), dict(euid=2 ** 32 - 1), dict(pid=0), dict(umask=0o1000), dict(privileged=2),
    dict(groups=(-5,)), dict(argv=[b"a\0b"]), dict(env=[b"A=\0"]), dict(cwd=b"/a\0"),
    dict(rlimits={**{r: (-1, -1) for r in range(16)}, 3: (10, 5)}),
    dict(rlimits={**{r: (-1, -1) for r in range(16)}, 3: (-1, 5)}),
    dict(rlimits={**{r: (-1, -1) for r in range(16)}, 3: (-2, -1)}),
    dict(rlimits={**{r: (-1, -1) for r in range(15)}, 16: (-1, -1)}),
])
def test_impossible_values(kw):
    assert_bad(build(facts(**kw)))


def test_not_bytes():
    assert_bad("GLEXEC-HANDOFF-1\n")
    assert_bad(None)


def test_limits(monkeypatch):
    monkeypatch.setattr(handoff, "MAX_ARGV", 3)
    assert parse(build(facts(argv=[b"a", b"b", b"c"])))
    assert_bad(build(facts(argv=[b"a", b"b", b"c", b"d"])))
    monkeypatch.setattr(handoff, "MAX_BLOB", 200)
    assert_bad(build(facts(argv=[b"a" * 300])))


# --- properties ---------------------------------------------------------------------

nonul = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b""))
ids = st.integers(0, 2 ** 32 - 2)
lim = st.one_of(st.just(-1), st.integers(0, 2 ** 63 - 1))


@st.composite
def facts_st(draw):
    rl = {}
    for r in draw(st.permutations(range(16))):
        a, b = draw(lim), draw(lim)
        if b == -1:
            s, h = a, b
        elif a == -1:
            s, h = b, b
        else:
            s, h = min(a, b), max(a, b)
        rl[r] = (s, h)
    return CallerFacts(
        argv=draw(st.lists(nonul, min_size=1, max_size=5)),
        env=draw(st.lists(nonul, max_size=5)),
        ruid=draw(ids), euid=draw(ids), suid=draw(ids), rgid=draw(ids), egid=draw(ids),
        sgid=draw(ids), pid=draw(st.integers(1, 2 ** 31 - 1)),
        ppid=draw(st.integers(0, 2 ** 31 - 1)), sid=draw(st.integers(0, 2 ** 31 - 1)),
        pgid=draw(st.integers(0, 2 ** 31 - 1)), umask=draw(st.integers(0, 0o777)),
        privileged=draw(st.booleans()), groups=tuple(draw(st.lists(ids, max_size=6))),
        rlimits=rl, cwd=draw(nonul))


@settings(max_examples=200, deadline=None)
@given(facts_st())
def test_prop_round_trip(f):
    blob = build(f)
    g = parse(blob)
    assert g == f
    assert build(g) == blob


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_prop_arbitrary_bytes(data):
    for blob in (data, MAGIC + data):
        try:
            parse(blob)
        except SystemFault as e:
            assert e.message == MSG


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(facts_st(), st.data())
def test_prop_mutated_blobs(f, data):
    blob = bytearray(build(f))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        i = data.draw(st.integers(0, max(len(blob) - 1, 0)))
        if op == "flip" and blob:
            blob[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del blob[i:]
        elif op == "insert":
            blob[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        elif blob:
            del blob[i:i + data.draw(st.integers(1, 8))]
    try:
        g = parse(bytes(blob))
    except SystemFault as e:
        assert e.message == MSG
    else:
        assert isinstance(g, CallerFacts) and g.argv
