"""glexec_py.core.bans: global bans, every rendering, every proxy depth, fail closed."""
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from glexec_py.core.bans import (BanLoadError, FQANError, canonical_fqan, check, from_plain,
                                 load_ban_file, merge, unusable)
from glexec_py.core.dn import canonical, make_dn, oneline, parse_text, rfc4514
from glexec_py.errors import ConfigError

CN, O, C, DC, EMAIL = "2.5.4.3", "2.5.4.10", "2.5.4.6", "0.9.2342.19200300.100.1.25", \
    "1.2.840.113549.1.9.1"
EEC = make_dn([[(DC, "org")], [(DC, "example")], [(O, "Example Grid")],
               [(CN, "Andr\u00e9")], [(EMAIL, "a@x.org")]])
CA = make_dn([[(DC, "org")], [(DC, "example")], [(CN, "Example CA")]])
FP = "ab" * 32


def proxies(dn, depth, kind="rfc"):
    """Subjects leaf to root: EEC + `depth` proxy CNs."""
    chain = [dn]
    for i in range(depth):
        cn = {"rfc": str(1000 + i), "gt2": "proxy", "gt2l": "limited proxy"}[kind]
        chain.append(make_dn(list(chain[-1]) + [[(CN, cn)]]))
    return chain[::-1]


def deny(bl, **kw):
    return check(bl, **kw)


RENDERINGS = [
    '"/DC=org/DC=example/O=Example Grid/CN=Andr\\xC3\\xA9/emailAddress=a@x.org"',
    '"/DC=org/DC=example/O=Example Grid/CN=Andr\u00e9/E=a@x.org"',
    '"/DC=org/DC=example/O=Example Grid/CN=Andre\u0301/Email=a@x.org"',
    '"emailAddress=a@x.org,CN=Andr\\C3\\A9,O=Example Grid,DC=example,DC=org"',
    '"E=a@x.org, CN=Andr\u00e9, O=Example Grid, DC=example, DC=org"',
    '"/0.9.2342.19200300.100.1.25=org/DC=example/O=Example Grid/CN=Andr\u00e9/'
    '1.2.840.113549.1.9.1=a@x.org"',
]


@pytest.mark.parametrize("line", RENDERINGS)
@pytest.mark.parametrize("depth", range(0, 6))
@pytest.mark.parametrize("kind", ["rfc", "gt2", "gt2l"])
def test_every_rendering_every_depth(line, depth, kind):
    bl = load_ban_file(("# banned\n" + line + "\n").encode(), "ban_dn", "dn")
    d = check(bl, subject_dns=proxies(EEC, depth, kind))
    assert d is not None and d.reason == "banned_dn"
    assert d.where == "ban_dn:2" and "ban_dn:2" in d.explain
    assert d.to_audit()["reason"] == "banned_dn"


def test_yaml_renderings():
    for r in RENDERINGS:
        bl = from_plain({"dn": [r.strip('"')]}, "glexec.yaml")
        assert check(bl, subject_dns=proxies(EEC, 3))
    assert check(from_plain({"dn": [rfc4514(EEC)]}, "y"), subject_dns=[EEC]).where == "y:dn[0]"


def test_al_does_not_ban_alice():
    al = load_ban_file(b'"/O=X/CN=Al"\n', "b", "dn")
    alice = parse_text("/O=X/CN=Alice")
    assert check(al, subject_dns=proxies(alice, 3)) is None
    assert check(al, subject_dns=proxies(parse_text("/O=X/CN=Al"), 2)).reason == "banned_dn"
    # and the other way round: banning Alice does not ban Al
    assert check(load_ban_file(b'"/O=X/CN=Alice"\n', "b", "dn"),
                 subject_dns=[parse_text("/O=X/CN=Al")]) is None


def test_value_containing_slash_cn_cannot_impersonate():
    bob = parse_text("/O=X/CN=Bob")
    bl = load_ban_file(b'"/O=X/CN=Bob"\n', "b", "dn")
    # an attacker whose CN value is "Evil/CN=Bob" (or whose proxy CN is) is not Bob...
    evil = make_dn([[(O, "X")], [(CN, "Evil/CN=Bob")]])
    assert check(bl, subject_dns=proxies(evil, 2)) is None
    # ...and a ban on Bob can't be dodged by Bob: his proxies all carry his EEC DN
    assert check(bl, subject_dns=proxies(bob, 4))
    # a ban on the attacker's real DN written in oneline form is refused as ambiguous
    with pytest.raises(BanLoadError, match="b:1"):
        load_ban_file(b'"/O=X/CN=Evil\\/CN=Bob"\n', "b", "dn")
    # ...and works in RFC 4514 form
    assert check(load_ban_file(b'"CN=Evil/CN=Bob,O=X"\n', "b", "dn"), subject_dns=[evil])


def test_proxy_cn_chosen_by_user_cannot_ban_evade_or_frame():
    # a proxy whose CN mimics another user does not become that user
    carol = parse_text("/O=X/CN=Carol")
    bl = load_ban_file(b'"/O=X/CN=Carol/CN=Dave"\n', "b", "dn")
    assert check(bl, subject_dns=proxies(carol, 1)) is None


def test_wildcards_like_lcmaps():
    bl = load_ban_file(b'"/DC=org/DC=example/*/CN=Andr*"\n', "b", "dn")
    assert check(bl, subject_dns=proxies(EEC, 2))
    bl = load_ban_file(b'"/DC=org/DC=example/O=Example Grid/CN=Andr\\xC3\\xA9/*"\n', "b", "dn")
    assert check(bl, subject_dns=[EEC])          # oneline rendering of the EEC
    bl = load_ban_file(b'"*CN=Zed*"\n', "b", "dn")
    assert check(bl, subject_dns=proxies(EEC, 2)) is None
    # raw oneline strings from the verifier are matched too
    bl = load_ban_file(b'"/CN=\\x00\\xE9*"\n', "b", "dn")
    assert check(bl, subject_dns=[make_dn([[(CN, "\u00e9")]])],
                 subject_onelines=["/CN=\\x00\\xE9"]).reason == "banned_dn"
    with pytest.raises(BanLoadError):
        load_ban_file(b'"CN=*,O=X"\n', "b", "dn")


@pytest.mark.parametrize("banned_depth", [1, 2, 3])
@pytest.mark.parametrize("form", ["canonical", "oneline", "pattern"])
def test_ban_of_a_dn_that_only_a_proxy_has(banned_depth, form):
    """Every subject of the chain is checked, not only the EEC: a ban on a DN that appears
    only at a proxy depth (a proxy's own CN-extended subject) refuses that chain at that depth
    and below it, and never the EEC or the proxies above."""
    chain = proxies(EEC, 3)              # leaf to root: p3, p2, p1, EEC
    banned = chain[len(chain) - 1 - banned_depth]
    text = {"canonical": canonical(banned), "oneline": oneline(banned),
            "pattern": oneline(banned)[:-2] + "*"}[form]
    bl = from_plain({"dn": [text]}, "y")
    for shown in range(0, 4):            # the chain cut at each depth (a proxy of depth `shown`)
        sub = chain[len(chain) - 1 - shown:]
        d = check(bl, subject_dns=sub)
        if shown >= banned_depth:
            assert d is not None and d.reason == "banned_dn", (shown, text)
        else:
            assert d is None, (shown, text)
    # the banned DN alone, in any position of the list (the leaf or an intermediate proxy)
    assert check(bl, subject_dns=[banned, EEC]).reason == "banned_dn"
    assert check(bl, subject_dns=[chain[0], banned, EEC]).reason == "banned_dn"


def test_ca_ban():
    bl = from_plain({"ca": ["/DC=org/DC=example/CN=Example CA"]}, "y")
    d = check(bl, subject_dns=proxies(EEC, 2), issuer_dns=[EEC, EEC, CA])
    assert d.reason == "banned_ca"
    other = make_dn([[(DC, "org")], [(CN, "Other CA")]])
    assert check(bl, subject_dns=[EEC], issuer_dns=[other]) is None
    # a CA ban is not a namespace ban of names below the CA's DN
    assert check(bl, issuer_dns=[make_dn(list(CA) + [[(CN, "sub")]])]) is None
    bl = load_ban_file(b'"/DC=org/DC=example/CN=Example*"\n', "cas", "ca")
    assert check(bl, issuer_dns=[CA]).reason == "banned_ca"


@pytest.mark.parametrize("a, b", [
    ("/vo", "/vo/Role=NULL/Capability=NULL"),
    ("/vo/Role=NULL", "/vo/Role=NULL/Capability=NULL"),
    ("/vo/Capability=NULL", "/vo/Role=NULL/Capability=NULL"),
    ("/vo/g/Role=x", "/vo/g/Role=x/Capability=NULL"),
    ("/vo/g/Role=x/Capability=NULL", "/vo/g/Role=x/Capability=NULL"),
])
def test_canonical_fqan(a, b):
    assert canonical_fqan(a) == b


@pytest.mark.parametrize("bad", ["", "vo", "/", "//", "/vo//g", "/vo/Role=", "/Role=x",
                                 "/vo/Role=x/g", "/vo/Capability=c/Role=x", "/vo/g h",
                                 "/vo/Role=x/Role=y", "/vo/a=b", "/v\u00f6"])
def test_bad_fqans(bad):
    with pytest.raises(FQANError):
        canonical_fqan(bad)


def test_fqan_bans():
    vo = load_ban_file(b'"/vo"\n', "ban_fqan", "fqan")
    for f in ("/vo/Role=NULL/Capability=NULL", "/vo/prod/Role=pilot/Capability=NULL", "/vo"):
        assert check(vo, fqans=["/other/Role=NULL/Capability=NULL", f]).reason == "banned_fqan"
    assert check(vo, fqans=["/vox/Role=NULL/Capability=NULL"]) is None
    assert check(vo, fqans=[]) is None
    role = from_plain({"fqan": ["/vo/prod/Role=pilot"]}, "y")
    assert check(role, fqans=["/vo/prod/Role=pilot/Capability=NULL"])
    assert check(role, fqans=["/vo/prod/Role=NULL/Capability=NULL"]) is None
    assert check(role, fqans=["/vo/prod/sub/Role=pilot/Capability=NULL"]) is None
    pat = load_ban_file(b'"/vo/prod/*"\n', "b", "fqan")
    assert check(pat, fqans=["/vo/prod/Role=NULL/Capability=NULL"])
    assert check(pat, fqans=["/vo/prodx/Role=NULL/Capability=NULL"]) is None
    # malformed FQAN with FQAN bans in force -> denied (cannot be checked)
    assert check(vo, fqans=["/vo//x"]).reason == "banned_fqan"
    with pytest.raises(BanLoadError, match="b:2"):
        load_ban_file(b'"/ok"\n"/vo/Role=x/g"\n', "b", "fqan")


def test_token_ban():
    bl = from_plain({"token": [{"issuer": "https://iss.example/", "subject": "s1"},
                               {"issuer": "https://bad.example"}]}, "y")
    assert check(bl, token=("https://iss.example", "s1")).reason == "banned_token"
    assert check(bl, token=("https://iss.example/", "s1")).reason == "banned_token"
    assert check(bl, token=("https://iss.example", "s2")) is None
    assert check(bl, token=("https://other.example", "s1")) is None
    assert check(bl, token=("https://bad.example", "anyone")).reason == "banned_token"
    assert check(bl, token=None) is None
    for bad in ({"issuer": ""}, {"subject": "x"}, {"issuer": "i", "sub": "x"}, "i"):
        with pytest.raises(BanLoadError):
            from_plain({"token": [bad]}, "y")


def test_fingerprint_ban():
    colons = ":".join(FP[i:i + 2] for i in range(0, 64, 2)).upper()
    for entry in (FP, FP.upper(), colons):
        bl = from_plain({"fingerprint": [entry]}, "y")
        for cand in (FP, FP.upper(), colons, colons.lower()):
            d = check(bl, fingerprints=["cd" * 32, cand])
            assert d.reason == "banned_fingerprint"
        assert check(bl, fingerprints=["cd" * 32]) is None
    for bad in ("ab" * 31, "zz" * 32, "", 5):
        with pytest.raises(BanLoadError):
            from_plain({"fingerprint": [bad]}, "y")


def test_order_merge_unusable_and_counts():
    a = load_ban_file(b'"/O=X"\n', "a", "dn")
    b = from_plain({"dn": ["/O=X/CN=y"], "fingerprint": [FP]}, "b")
    m = merge(a, b)
    assert check(m, subject_dns=[parse_text("/O=X/CN=y")]).where == "a:1"
    assert m.counts()["dn"] == 2 and m.counts()["fingerprint"] == 1 and len(m) == 3
    u = unusable("/etc/glexec-py/ban_dn", "group-writable")
    d = check(merge(m, u), subject_dns=[])
    assert d.reason == "bans_unavailable" and "group-writable" in d.explain
    assert check(merge(), subject_dns=[EEC]) is None


@pytest.mark.parametrize("data, line", [
    (b'"/O=X/CN=a\n', 1),                         # unbalanced quote
    (b'"/O=X"\n/O=Example Grid/CN=x\n', 2),     # unquoted DN with a space
    (b'"/O=X/CN=\xff"\n', 1),                     # not UTF-8
    (b'"/O=X/CN=a\\xC3"\n', 1),                   # escaped bytes not UTF-8
    (b'/O=X/CN=a\r\n', 1),                        # CRLF: control char in the DN
    (b'"/O=X/foo=b"\n', 1),                       # ambiguous
    (b'"/O=X/CN=a\\/CN=b"\n', 1),                 # ambiguous
    (b'"O=X,"\n', 1),
    (b'""\n', 1),
    (b'"/O=X" x\\\n', 1),                         # backslash at end of line
])
def test_load_errors_carry_line(data, line):
    with pytest.raises(BanLoadError) as e:
        load_ban_file(data, "ban_dn", "dn")
    assert isinstance(e.value, ConfigError) and e.value.line == line
    assert e.value.message.startswith(f"ban_dn:{line}: ")


def test_lcmaps_syntax_compat():
    data = (b"# comment\n\n  \t# indented\n"
            b'"/O=X/CN=a" ignored-mapping\r\n'      # CRLF after a quoted DN: fine
            b"/O=X/CN=b\n")
    bl = load_ban_file(data, "b", "dn")
    assert len(bl) == 2
    assert check(bl, subject_dns=[parse_text("/O=X/CN=b/CN=1")]).where == "b:5"
    with pytest.raises(BanLoadError):
        from_plain({"bogus": []}, "y")
    with pytest.raises(BanLoadError):
        from_plain({"dn": "/O=X"}, "y")


# --- properties -----------------------------------------------------------------------

chars = st.one_of(st.sampled_from("/,+=\\\" #\x00\x1f\u00e9e\u0301\u202e"),
                  st.characters(max_codepoint=0x2FF, blacklist_categories=("Cs",)))
oids = st.sampled_from([CN, O, C, DC, EMAIL, "2.5.4.11", "1.3.6.1.4.1.99.1"])
dns = st.lists(st.lists(st.tuples(oids, st.text(chars, max_size=8)), min_size=1, max_size=2),
               min_size=1, max_size=5).map(make_dn)
PROP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROP
@given(dns, st.integers(0, 5), st.lists(st.text(chars, max_size=6), max_size=5))
def test_banned_canonical_means_denied_everywhere(d, depth, cns):
    chain = [d]
    for c in cns[:depth]:
        chain.append(make_dn(list(chain[-1]) + [[(CN, c)]]))
    chain.reverse()
    renderings = [rfc4514(d), canonical(d), oneline(d)]
    accepted = 0
    for r in renderings:
        try:
            bl = from_plain({"dn": [r]}, "y")
        except BanLoadError:
            continue                      # refused as ambiguous: fail closed, loudly
        if bl.entries[0].pattern is None and bl.entries[0].value != d:
            continue                      # oneline text with a literal "\xHH" in a value
        accepted += 1
        res = check(bl, subject_dns=chain)
        assert res is not None and res.reason == "banned_dn", r
    assert accepted >= 1                  # RFC 4514 form always works


@PROP
@given(dns, dns)
def test_ban_never_hits_unrelated_dn(a, b):
    from glexec_py.core.dn import is_rdn_prefix
    assume(not is_rdn_prefix(a, b))
    bl = from_plain({"dn": [rfc4514(a)]}, "y")
    assert check(bl, subject_dns=[b]) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["dn", "fqan", "ca"]))
def test_random_bytes_only_config_error(data, kind):
    try:
        load_ban_file(data, "f", kind)
    except ConfigError as e:
        assert isinstance(e, BanLoadError)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b'"', b"/", b"CN=", b"O=", b"\\", b"\\x", b"C3", b"*",
                                 b"+", b",", b" ", b"\n", b"#", b"\xc3\xa9", b"\xff",
                                 b"/vo", b"Role=", b"\r", b"E="]), max_size=30),
       st.sampled_from(["dn", "fqan", "ca"]))
def test_structured_garbage_only_config_error(parts, kind):
    try:
        bl = load_ban_file(b"".join(parts), "f", kind)
    except ConfigError as e:
        assert isinstance(e, BanLoadError)
        return
    check(bl, subject_dns=[EEC], issuer_dns=[CA], fqans=["/vo/Role=NULL/Capability=NULL"])
