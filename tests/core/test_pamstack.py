"""core.pamstack: what a PAM service file pulls in, and how PAM's limits meet the caller's."""
from pathlib import Path

from hypothesis import given, strategies as st

from glexec_py.core.pamstack import forbidden_in, parse_stack, stricter_limit

SHIPPED = Path(__file__).resolve().parents[2] / "packaging" / "pam.d" / "glexec"


def test_the_shipped_service_uses_no_forbidden_module_and_includes_nothing():
    modules, includes = parse_stack(SHIPPED.read_bytes())
    assert modules == [b"pam_unix.so", b"pam_access.so", b"pam_limits.so"]
    assert includes == [] and forbidden_in(modules) == []


def test_every_way_of_naming_pam_systemd_is_seen():
    text = (b"session\t[success=ok default=ignore]\t/lib/x86_64-linux-gnu/security/pam_systemd.so a\n"
            b"-session optional pam_systemd.so\n"
            b"session required \\\n pam_systemd.so\n"
            b"# session required pam_systemd.so   (a comment)\n"
            b"session required pam_limits.so # pam_systemd.so in a trailing comment\n")
    modules, _ = parse_stack(text)
    assert forbidden_in(modules) == [b"pam_systemd.so"] * 3
    assert b"pam_limits.so" in modules


def test_includes_of_all_three_kinds():
    _, includes = parse_stack(b"@include common-session\naccount include  other-acct\n"
                              b"session substack  sub # x\n")
    assert includes == [b"common-session", b"other-acct", b"sub"]


def test_debians_common_session_is_caught():
    text = Path("/etc/pam.d/common-session").read_bytes()
    assert forbidden_in(parse_stack(text)[0]) == [b"pam_systemd.so"]


limit = st.one_of(st.just(-1), st.integers(0, 2**40))


@given(st.tuples(limit, limit), st.tuples(limit, limit))
def test_pam_can_lower_but_never_raise_a_limit(caller, pam):
    caller = (caller[0], caller[1]) if caller[1] < 0 or 0 <= caller[0] <= caller[1] else (caller[1], caller[1])
    soft, hard = stricter_limit(caller, pam)

    def le(a, b):  # a <= b with -1 = unlimited
        return b < 0 or (0 <= a <= b)
    assert le(hard, caller[1]) and le(hard, pam[1])
    assert le(soft, caller[0]) and le(soft, pam[0])
    assert le(soft, hard)
    # and it is the largest such value: equal to one of the inputs (or clipped to hard)
    assert hard in (caller[1], pam[1])
    assert soft in (caller[0], pam[0], hard)


def test_examples():
    assert stricter_limit((1024, 4096), (321, 654)) == (321, 654)        # limits.conf lowers
    assert stricter_limit((0, -1), (4194304, 8388608)) == (0, 8388608)   # never lifts soft
    assert stricter_limit((12345, -1), (819200, 819200)) == (12345, 819200)
    assert stricter_limit((-1, -1), (-1, -1)) == (-1, -1)
    assert stricter_limit((-1, 100), (-1, -1)) == (100, 100)
