"""core.plan.audit_view: what the grant record says of the plan (issue 12: the plan is
what is audited and what is executed).  Every field that decides what runs, the
environment by names only, and the sha256 of the exact bytes the executor receives."""
import hashlib
import json

from hypothesis import given, settings, strategies as st

from glexec_py.core import audit, plan as P
from tests.support.plan_harness import plans

SECRET = b"eyJhbGciOiJFUzI1NiJ9.c2VjcmV0.c2ln"


def sample(**kw):
    fields = dict(path=b"/usr/bin/python3.11", argv=[b"python3", b"-c", b"print(1)"],
                  env=[b"BEARER_TOKEN=" + SECRET, b"HOME=/home/t", b"X=\xff", b"EMPTY="], uid=47011, gid=47011,
                  groups=[47101, 47011], cwd=b"/home/t/w", umask=0o027, rlimits={7: (256, 512), 0: (-1, -1)},
                  switch_identity=True, no_new_privs=True, tty_guard=True, linger=True, pdeathsig=9,
                  forward_signals=[15, 1, 2], caller_ruid=47001)
    fields.update(kw)
    return P.Plan(**fields)


def test_the_view_of_a_plan():
    plan = sample()
    assert P.audit_view(plan) == {
        "path": b"/usr/bin/python3.11", "argv": [b"python3", b"-c", b"print(1)"],
        "env": [b"BEARER_TOKEN", b"HOME", b"X", b"EMPTY"], "uid": 47011, "gid": 47011, "groups": [47011, 47101],
        "cwd": b"/home/t/w", "umask": 0o027, "rlimits": {"0": [-1, -1], "7": [256, 512]},
        "switch_identity": True, "no_new_privs": True, "tty_guard": True, "linger": True, "pdeathsig": 9,
        "forward_signals": [1, 2, 15], "caller_ruid": 47001,
        "sha256": hashlib.sha256(P.encode(plan)).hexdigest()}


def test_env_values_are_never_in_the_record():
    line = audit.encode({"plan": P.audit_view(sample())})
    assert SECRET not in line and b"/home/t\"" not in line and b"BEARER_TOKEN" in line


def test_the_digest_is_of_the_bytes_given():
    plan = sample()
    data = P.encode(plan)
    assert P.audit_view(plan, data)["sha256"] == hashlib.sha256(data).hexdigest()


def test_an_env_value_changes_only_the_digest():
    """X509_USER_PROXY moved by the commit (engine.replan_proxy): the names stay, the bytes
    the executor gets do not -- so the digest must differ."""
    a = sample(env=[b"X509_USER_PROXY=/tmp/x509up_u47011"])
    b = sample(env=[b"X509_USER_PROXY=/tmp/x509up_u47011.0123456789abcdef"])
    va, vb = P.audit_view(a), P.audit_view(b)
    assert va.pop("sha256") != vb.pop("sha256")
    assert va == vb


def test_unencodable_plan_has_no_view():
    import pytest
    with pytest.raises(ValueError):
        P.audit_view(sample(path=b"relative"))


def rebuilt(view, env):
    """A Plan from a view (as the JSON record reads back) and the env's values."""
    b = lambda s: s.encode("utf-8", "surrogateescape")
    return P.Plan(path=b(view["path"]), argv=[b(a) for a in view["argv"]], env=env, uid=view["uid"],
                  gid=view["gid"], groups=view["groups"], cwd=b(view["cwd"]), umask=view["umask"],
                  rlimits={int(r): tuple(v) for r, v in view["rlimits"].items()},
                  switch_identity=view["switch_identity"], no_new_privs=view["no_new_privs"],
                  tty_guard=view["tty_guard"], linger=view["linger"], pdeathsig=view["pdeathsig"],
                  forward_signals=view["forward_signals"], caller_ruid=view["caller_ruid"])


@settings(max_examples=300, deadline=None)
@given(plans(st))
def test_the_recorded_view_is_the_plan_but_its_env_values(plan):
    """Written into a record and read back: together with the env's values it is the plan
    again, and its digest is that plan's encoding's -- nothing that decides what runs is
    missing from the record, and no env value is in it."""
    view = P.audit_view(plan)
    line = audit.encode({"event": "grant", "plan": view})
    back = audit.decode_line(line)["plan"]
    json.loads(line)     # valid JSON, whatever bytes the plan holds
    assert [b.encode("utf-8", "surrogateescape") for b in back["env"]] == \
        [e.partition(b"=")[0] for e in plan.env]
    again = rebuilt(back, plan.env)
    assert again == plan
    assert hashlib.sha256(P.encode(again)).hexdigest() == back["sha256"] == view["sha256"]


@settings(max_examples=200, deadline=None)
@given(plans(st), plans(st))
def test_different_plans_have_different_digests(a, b):
    assert (P.audit_view(a)["sha256"] == P.audit_view(b)["sha256"]) == (a == b)


def test_within_lowers_to_what_the_executor_can_give():
    """The shim lowers the core limit to 0/0; an executor without CAP_SYS_RESOURCE cannot
    raise it back, so the plan (and its record) says what the payload will have."""
    caller = {4: (0, -1), 7: (256, 4096), 3: (-1, -1), 0: (100, 200)}
    ceiling = {4: 0, 7: 1024, 3: 8388608, 0: -1}
    assert P.within(caller, ceiling) == {4: (0, 0), 7: (256, 1024), 3: (8388608, 8388608), 0: (100, 200)}
    assert P.within(caller, {}) == caller


limit = st.one_of(st.just(-1), st.integers(0, 2**64 - 2))


def _le(a, b):
    return b == -1 or (a != -1 and a <= b)


@given(st.dictionaries(st.integers(0, 15), st.tuples(limit, limit).filter(lambda p: _le(*p))),
       st.dictionaries(st.integers(0, 15), limit))
def test_within_never_raises_a_limit(rlimits, ceiling):
    out = P.within(rlimits, ceiling)
    assert out.keys() == rlimits.keys()
    for r, (soft, hard) in out.items():
        assert _le(soft, hard) and _le(hard, ceiling.get(r, -1))
        assert _le(soft, rlimits[r][0]) and _le(hard, rlimits[r][1])
        if _le(rlimits[r][1], ceiling.get(r, -1)):
            assert (soft, hard) == rlimits[r]
