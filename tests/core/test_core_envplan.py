from hypothesis import given, settings, strategies as st

from glexec_py.core.envplan import payload_env, usage_text

FIXED = {b"HOME", b"USER", b"LOGNAME", b"PATH", b"X509_USER_PROXY"}
KW = dict(home=b"/home/atlas001", user=b"atlas001", path=b"/usr/bin:/bin",
          x509_user_proxy=b"/tmp/x509up_u5001")


def test_basic_rules():
    env = [b"GLEXEC_CLIENT_CERT=/tmp/p", b"TZ=UTC", b"HOME=/home/pilot", b"LD_PRELOAD=/x.so",
           b"MALLOC_CHECK_=3", b"NOEQUALS", b"=empty", b"GLEXEC_ENV=abc", b"TZ=Other",
           b"X509_USER_PROXY=/tmp/pilot", b"TZX=1", b"PATH=/evil", b"GLEXEC_ENV=second",
           b"LANG=\xff"]
    out = payload_env(env, preserve=("TZ", "LD_PRELOAD", "MALLOC_CHECK_", "LANG", "HOME"),
                      **KW)
    assert out == [b"GLEXEC_CLIENT_CERT=/tmp/p", b"TZ=UTC", b"GLEXEC_ENV=abc", b"LANG=\xff",
                   b"HOME=/home/atlas001", b"USER=atlas001", b"LOGNAME=atlas001",
                   b"PATH=/usr/bin:/bin", b"X509_USER_PROXY=/tmp/x509up_u5001"]


def test_no_proxy_and_preserve_is_not_prefix():
    out = payload_env([b"TZ=1", b"TZDIR=/x", b"X509_USER_PROXY=/p"], preserve=("TZ",),
                      **{**KW, "x509_user_proxy": None})
    assert out == [b"TZ=1", b"HOME=/home/atlas001", b"USER=atlas001", b"LOGNAME=atlas001",
                   b"PATH=/usr/bin:/bin"]


def test_first_occurrence_wins_even_if_dropped():
    # a dropped first occurrence does not let a later duplicate through
    out = payload_env([b"GLEXEC_A=1", b"GLEXEC_A=2"], preserve=(), **KW)
    assert out[0] == b"GLEXEC_A=1" and out[1].startswith(b"HOME=")


def test_case_sensitive_prefixes():
    out = payload_env([b"glexec_x=1", b"ld_preload=2", b"Ld_X=3"],
                      preserve=("ld_preload", "Ld_X"), **KW)
    assert out[:2] == [b"ld_preload=2", b"Ld_X=3"]


def test_usage_text():
    t = usage_text()
    assert t.startswith("usage: glexec <command> [args...]\n")
    for word in ("GLEXEC_CLIENT_CERT", "GLEXEC_SOURCE_PROXY", "GLEXEC_TARGET_PROXY",
                 "/dev/null", "GLEXEC_MODE", "201", "202", "203", "204", "126"):
        assert word in t
    assert 7 <= len(t.splitlines()) <= 11 and t.isascii()


names = st.sampled_from([b"GLEXEC_A", b"GLEXEC_", b"TZ", b"LANG", b"HOME", b"PATH",
                         b"LD_PRELOAD", b"MALLOC_X", b"X509_USER_PROXY", b"USER", b"", b"FOO",
                         b"LOGNAME", b"TZDIR"])
entry = st.one_of(st.tuples(names, st.binary(max_size=8)).map(lambda t: t[0] + b"=" + t[1]),
                  st.binary(max_size=12), names)
preserves = st.lists(st.sampled_from(["TZ", "LANG", "LD_PRELOAD", "MALLOC_X", "HOME", "FOO",
                                      "X509_USER_PROXY"]), max_size=4).map(tuple)


@settings(max_examples=500, deadline=None)
@given(st.lists(entry, max_size=20), preserves, st.one_of(st.none(), st.binary(max_size=5)),
       st.binary(max_size=5))
def test_prop_allowlist(env, preserve, proxy, user):
    out = payload_env(env, preserve=preserve, home=b"/h", user=user, path=b"/bin",
                      x509_user_proxy=proxy)
    got = [e.partition(b"=")[0] for e in out]
    assert len(got) == len(set(got))
    allowed = {p.encode() for p in preserve} | FIXED
    for e in out:
        name = e.partition(b"=")[0]
        assert name.startswith(b"GLEXEC_") or name in allowed
        assert not name.startswith((b"MALLOC_", b"LD_"))
        assert b"=" in e and name
    fixed = [e for e in out if e.partition(b"=")[0] in FIXED]
    want = [b"HOME=/h", b"USER=" + user, b"LOGNAME=" + user, b"PATH=/bin"]
    if proxy is not None:
        want.append(b"X509_USER_PROXY=" + proxy)
    assert fixed == want and out[-len(want):] == want
    # every kept caller entry is the first occurrence of its name in the input
    for e in out[:-len(want)]:
        name = e.partition(b"=")[0]
        first = next(x for x in env if b"=" in x and x.partition(b"=")[0] == name)
        assert e == first
