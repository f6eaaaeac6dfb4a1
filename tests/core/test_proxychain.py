"""proxychain.interpret on synthetic verifier results: the CA->leaf walk, which tolerated
verifier errors each classification explains (and at which depth only), proxy and CA path
lengths, generations, limited proxies and the policy knobs. Real chains: tests/native/
test_legacy_chain.py."""
import pytest
from hypothesis import given, settings, strategies as st

from glexec_py.core import proxychain
from glexec_py.errors import CallerError

CN, OU, DC = "2.5.4.3", "2.5.4.11", "0.9.2342.19200300.100.1.25"
IMP, LIM, INDEP = proxychain.POLICY_IMPERSONATION, proxychain.POLICY_LIMITED, proxychain.POLICY_INDEPENDENT
T0 = 1_700_000_000


def _tlv(tag, body):
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    k = (n.bit_length() + 7) // 8
    return bytes([tag, 0x80 | k]) + n.to_bytes(k, "big") + body


def _oid(dotted):
    a = [int(x) for x in dotted.split(".")]
    out = bytes([40 * a[0] + a[1]])
    for v in a[2:]:
        enc = [v & 0x7F]
        v >>= 7
        while v:
            enc.insert(0, 0x80 | (v & 0x7F))
            v >>= 7
        out += bytes(enc)
    return _tlv(0x06, out)


def name(*rdns):
    """DER Name; each rdn is a list of (oid, value) (one AVA = one-element list)."""
    return _tlv(0x30, b"".join(_tlv(0x31, b"".join(_tlv(0x30, _oid(o) + _tlv(0x0C, v.encode())) for o, v in r))
                               for r in rdns))


CA_RDNS = ([(DC, "test")], [(CN, "Test CA")])
JANE_RDNS = ([(DC, "test")], [(OU, "Users")], [(CN, "Jane")])


class Cert:
    def __init__(self, subject, issuer, *, is_ca=False, proxy="", policy="", pathlen=-1, ca_pathlen=-1,
                 life=(T0, T0 + 43200), tag="x"):
        self.subject_der, self.issuer_der = name(*subject), name(*issuer)
        self.subject, self.issuer = "/" + "/".join(v for r in subject for _, v in r), "/".join(v for r in issuer for _, v in r)
        self.is_ca, self.ca_pathlen, self.proxy = is_ca, ca_pathlen, proxy
        self.proxy_policy, self.proxy_pathlen = policy, pathlen
        self.not_before, self.not_after = life
        self.sha256, self.der = tag * 64, b""


class Result:
    def __init__(self, chain, tolerated=(), ok=True, error=0, has_key=True, key_matches=True):
        self.chain, self.tolerated, self.ok, self.error = chain, list(tolerated), ok, error
        self.error_depth, self.error_text = 0, "" if ok else "boom"
        self.has_key, self.key_matches = has_key, key_matches


def ca():
    return Cert(CA_RDNS, CA_RDNS, is_ca=True, tag="c")


def eec(rdns=JANE_RDNS):
    return Cert(rdns, CA_RDNS, tag="e")


def proxy(parent_rdns, kind, limited=False, cn=None, pathlen=-1, **kw):
    """A proxy of parent_rdns: kind "gt2", "gt3" or "rfc3820"."""
    if kind == "gt2":
        value, k, pol = cn or ("limited proxy" if limited else "proxy"), "", ""
    else:
        value, k, pol = cn or "12345", kind, (LIM if limited else IMP)
    return Cert(parent_rdns + ([(CN, value)],), parent_rdns, proxy=k, policy=kw.pop("policy", pol),
                pathlen=pathlen, **kw)


def levels(*specs, top=None):
    """[leaf, ..., proxy1, eec, ca] for specs = (kind, limited[, pathlen]) from the EEC down."""
    rdns, chain = JANE_RDNS, [eec(), ca()] if top is None else top
    for spec in specs:
        kind, limited, pl = (tuple(spec) + (-1,))[:3]
        p = proxy(rdns, kind, limited, pathlen=pl)
        rdns = rdns + ([(CN, p.subject.rsplit("/", 1)[1])],)
        chain.insert(0, p)
    return chain


def legacy_tolerated(chain, kind):
    """What the native verifier records for a GT2/GT3 chain (see tests/native)."""
    eec_at = next(i for i, c in enumerate(chain) if not c.proxy and not c.is_ca
                  and not (c.subject_der != c.issuer_der and c.subject.endswith("proxy")))
    tol = [(0, 3)]
    for d in range(1, eec_at + 1):
        tol += [(d, 79), (d, 26), (d, 32)]
    if kind == "gt3":
        tol += [(d, 34) for d in range(eec_at)]
    return tol


def ok(result, **kw):
    return proxychain.interpret(result, **kw)


def refused(result, reason, **kw):
    with pytest.raises(CallerError) as e:
        proxychain.interpret(result, **kw)
    assert e.value.reason == reason, e.value
    return e.value


@pytest.mark.parametrize("kind", ["gt2", "gt3", "rfc3820"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_accepts_each_generation(kind, n):
    chain = levels(*[(kind, False)] * n)
    tol = legacy_tolerated(chain, kind) if kind != "rfc3820" else []
    if kind != "rfc3820" and n > 1:     # LCMAPS (OpenSSL 3) refuses a proxy of a GT2/GT3 proxy
        assert "levels" in str(refused(Result(chain, tol), "credential_legacy"))
    ident = ok(Result(chain, tol), legacy_max_levels=3)
    assert ident.depth == n and ident.kinds == (kind,) * n and ident.subject == "/test/Users/Jane"
    assert ident.eec_sha256 == "e" * 64 and not ident.limited


def test_tolerated_errors_only_where_explained():
    gt2 = levels(("gt2", False))
    ok(Result(gt2, [(1, 79), (1, 32), (1, 26), (0, 3), (2, 3), (1, 12)]))
    for bad in [(2, 79), (0, 79), (2, 32), (0, 32), (0, 34), (1, 34), (1, 37), (0, 7), (2, 25), (5, 79), (-1, 79)]:
        refused(Result(gt2, [bad]), "credential_invalid")
    rfc = levels(("rfc3820", False))
    for bad in [(1, 79), (1, 32), (0, 34), (2, 25)]:
        refused(Result(rfc, [bad]), "credential_invalid")
    gt2[-1].ca_pathlen = 0      # 25 only at a CA with a path length, in a legacy chain
    ok(Result(gt2, [(1, 79), (1, 32), (2, 25)]))
    gt3 = levels(("gt3", False), ("gt3", False))
    gt3[-1].ca_pathlen = 1
    ok(Result(gt3, [(0, 34), (1, 34), (1, 79), (2, 79), (1, 32), (2, 32), (3, 25)]), legacy_max_levels=2)
    refused(Result(gt3, [(2, 34)]), "credential_invalid", legacy_max_levels=2)      # the EEC is no GT3 proxy


def test_not_ok_results():
    chain = levels(("rfc3820", False))
    for code, reason in [(10, "credential_expired"), (20, "credential_untrusted"), (23, "credential_revoked"),
                         (12, "credential_invalid"), (7, "credential_invalid"), (-1, "credential_invalid")]:
        refused(Result(chain, ok=False, error=code), reason)


def test_structure_proves_proxies():
    # GT2 string heuristics alone are never enough: issuer, prefix and the one CN must match
    wrong_issuer = proxy(JANE_RDNS, "gt2")
    wrong_issuer.issuer_der = name([(DC, "test")], [(OU, "Users")], [(CN, "Bob")])
    refused(Result([wrong_issuer, eec(), ca()], [(1, 79)]), "credential_not_proxy")
    for cn in ["Proxy", "proxy ", "limited  proxy", "Mallory", "proxy\0"]:
        refused(Result([proxy(JANE_RDNS, "gt2", cn=cn), eec(), ca()]), "credential_not_proxy")
    other = Cert(([(DC, "test")], [(OU, "Users")], [(CN, "Jane")], [(OU, "proxy")]), JANE_RDNS)
    refused(Result([other, eec(), ca()]), "credential_not_proxy")
    multi = Cert(([(DC, "test")], [(OU, "Users")], [(CN, "Jane"), (CN, "proxy")]), JANE_RDNS)
    refused(Result([multi, eec(), ca()]), "credential_not_proxy")
    two = Cert(JANE_RDNS + ([(CN, "proxy")], [(CN, "proxy")]), JANE_RDNS)
    refused(Result([two, eec(), ca()]), "credential_not_proxy")
    as_ca = proxy(JANE_RDNS, "gt2", is_ca=True)
    refused(Result([as_ca, eec(), ca()]), "credential_not_proxy")
    # an RFC/GT3 proxy needs the same structure
    rfc = proxy(JANE_RDNS, "rfc3820")
    rfc.subject_der = name([(DC, "test")], [(CN, "Mallory")], [(CN, "12345")])
    refused(Result([rfc, eec(), ca()]), "credential_not_proxy")
    # as many RDNs as a proxy of Jane, but another name above the proxy CN
    for kind in ("gt2", "rfc3820"):
        alien = proxy(JANE_RDNS, kind)
        alien.subject_der = name([(DC, "test")], [(OU, "Users")], [(CN, "Mallory")], [(CN, "proxy")])
        refused(Result([alien, eec(), ca()], [(1, 79)] if kind == "gt2" else ()), "credential_not_proxy")
    # a proxy extension on the EEC or a CA; no proxy at all; a second EEC
    refused(Result([proxy(CA_RDNS, "rfc3820"), ca()]), "credential_invalid")
    refused(Result([eec(), ca()]), "credential_not_proxy")
    second = Cert(([(DC, "test")], [(CN, "Mallory")]), JANE_RDNS)
    refused(Result([second, eec(), ca()], [(1, 79), (1, 32)]), "credential_not_proxy")


def test_policies_and_generations():
    refused(Result([proxy(JANE_RDNS, "rfc3820", policy=INDEP), eec(), ca()]), "credential_policy")
    refused(Result([proxy(JANE_RDNS, "gt3", policy="1.2.3"), eec(), ca()], [(0, 34), (1, 79)]),
            "credential_policy")
    refused(Result([proxy(JANE_RDNS, "rfc3820", policy=""), eec(), ca()]), "credential_policy")
    chain = levels(("gt2", False))
    chain.insert(0, proxy(JANE_RDNS + ([(CN, "proxy")],), "rfc3820"))
    refused(Result(chain, [(2, 79), (2, 32)]), "credential_invalid")
    chain = levels(("gt3", False))
    chain.insert(0, proxy(JANE_RDNS + ([(CN, "12345")],), "gt2"))
    refused(Result(chain, [(2, 79), (1, 79), (1, 34)]), "credential_invalid")


@pytest.mark.parametrize("kind", ["gt2", "gt3", "rfc3820"])
def test_limited(kind):
    tol = lambda c: legacy_tolerated(c, kind) if kind != "rfc3820" else []  # noqa: E731
    lim_full = levels((kind, True), (kind, False))
    e = refused(Result(lim_full, tol(lim_full)), "credential_invalid")
    assert "limited" in str(e)
    full_lim = levels((kind, False), (kind, True))
    ident = ok(Result(full_lim, tol(full_lim)), legacy_max_levels=2)
    assert ident.limited and ident.kinds == (kind, kind + "-limited")
    ok(Result(full_lim, tol(full_lim)), require_limited=True, legacy_max_levels=2)
    refused(Result(full_lim, tol(full_lim)), "credential_limited", allow_limited=False, legacy_max_levels=2)
    full = levels((kind, False))
    refused(Result(full, tol(full)), "credential_limited", require_limited=True)
    refused(Result(full_lim, tol(full_lim)), "credential_limited", allow_limited=False, require_limited=True,
            legacy_max_levels=2)


@pytest.mark.parametrize("kind", ["gt3", "rfc3820"])
def test_proxy_path_length(kind):
    tol = lambda c: legacy_tolerated(c, kind) if kind == "gt3" else []  # noqa: E731
    for pl, n, accepted in [(0, 1, True), (0, 2, False), (1, 2, True), (1, 3, False), (2, 3, True)]:
        chain = levels((kind, False, pl), *[(kind, False)] * (n - 1))
        if accepted:
            ok(Result(chain, tol(chain)), legacy_max_levels=3)
        else:
            assert "path length" in str(refused(Result(chain, tol(chain)), "credential_invalid"))
    # a tighter constraint further down wins
    chain = levels((kind, False, 5), (kind, False, 0), (kind, False))
    refused(Result(chain, tol(chain)), "credential_invalid")


def test_ca_path_length():
    root_rdns, sub_rdns = ([(CN, "Root")],), ([(CN, "Sub")],)
    root = Cert(root_rdns, root_rdns, is_ca=True, ca_pathlen=0)
    sub = Cert(sub_rdns, root_rdns, is_ca=True, ca_pathlen=0)
    user = Cert(sub_rdns + ([(CN, "Jane")],), sub_rdns)
    p = proxy(sub_rdns + ([(CN, "Jane")],), "gt2")
    refused(Result([p, user, sub, root], [(1, 79), (1, 32), (3, 25)]), "credential_invalid")
    root.ca_pathlen = 1
    ident = ok(Result([p, user, sub, root], [(1, 79), (1, 32), (2, 25)]))
    assert ident.subject.endswith("Jane")


def test_legacy_and_key_knobs():
    for kind in ("gt2", "gt3"):
        chain = levels((kind, False))
        e = refused(Result(chain, legacy_tolerated(chain, kind)), "credential_legacy", allow_legacy=False)
        assert e.reason == "credential_legacy"
    ok(Result(levels(("rfc3820", False))), allow_legacy=False)
    chain = levels(("rfc3820", False))
    refused(Result(chain, has_key=False, key_matches=False), "credential_no_key")
    refused(Result(chain, has_key=True, key_matches=False), "credential_no_key")
    ok(Result(chain, has_key=False, key_matches=False), key_required=False)


def test_lifetime_knobs():
    chain = levels(("rfc3820", False), ("rfc3820", False))
    chain[0].not_before, chain[0].not_after = T0, T0 + 3600            # leaf: 1 h
    chain[1].not_before, chain[1].not_after = T0, T0 + 7 * 86400        # level 0: 7 days
    chain[2].not_after = T0 + 365 * 86400
    refused(Result(chain), "credential_lifetime", max_proxy_lifetime=86400)
    ok(Result(chain), max_proxy_lifetime=7 * 86400)
    # min_remaining: from now to the earliest notAfter of the proxies and the EEC
    ok(Result(chain), min_remaining=600, now=T0 + 3000)
    refused(Result(chain), "credential_expiring", min_remaining=601, now=T0 + 3000)
    chain[0].not_after = T0 + 30 * 86400
    chain[2].not_after = T0 + 1000                                     # the EEC expires first
    e = refused(Result(chain), "credential_expiring", min_remaining=3600, now=T0)
    assert "1000" in str(e)
    assert ok(Result(chain), now=T0).not_after == T0 + 1000


_VALUES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


@given(st.lists(st.tuples(st.sampled_from([CN, OU, DC]), _VALUES), min_size=0, max_size=3),
       st.booleans())
@settings(max_examples=200, deadline=None)
def test_only_one_cn_rdn_makes_a_gt2_proxy(extra, multi):
    """Whatever is appended to the EEC's subject, the leaf is a GT2 proxy only for exactly
    one single-CN RDN of value `proxy` / `limited proxy`."""
    rdns = list(JANE_RDNS)
    if multi and extra:
        rdns[-1] = rdns[-1] + [extra[0]]
        extra = extra[1:]
    rdns += [[a] for a in extra]
    leaf = Cert(tuple(rdns), JANE_RDNS)
    res = Result([leaf, eec(), ca()], [(1, 79), (1, 32)])
    expect = (not multi or not rdns[-1][1:]) and len(extra) == 1 and extra[0][0] == CN \
        and extra[0][1] in ("proxy", "limited proxy")
    if expect:
        assert ok(res).kinds == ("gt2-limited" if extra[0][1] == "limited proxy" else "gt2",)
    else:
        with pytest.raises(CallerError):
            proxychain.interpret(res)
