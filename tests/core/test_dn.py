"""glexec_py.core.dn: strict DER names, one canonical DN, text parsers."""
import subprocess

import pytest
from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ObjectIdentifier
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from glexec_py.core.dn import (DNError, attribute_name, canonical, is_rdn_prefix, make_dn,
                               oneline, parse_canonical, parse_der_name, parse_rfc4514,
                               parse_slash, parse_text, rfc4514)

CN, O, C, DC, UID, EMAIL = ("2.5.4.3", "2.5.4.10", "2.5.4.6", "0.9.2342.19200300.100.1.25",
                            "0.9.2342.19200300.100.1.1", "1.2.840.113549.1.9.1")
ALICE = make_dn([[(C, "NL")], [(O, "Example Grid")], [(CN, "Andr\u00e9")]])


def name_der(rdns):
    """DER of an X.509 Name built by cryptography: rdns = [[(oid, value, type)]]."""
    return x509.Name([x509.RelativeDistinguishedName(
        [x509.NameAttribute(ObjectIdentifier(o), v, _type=t, _validate=False) for o, v, t in rdn])
        for rdn in rdns]).public_bytes()


# --- DER ----------------------------------------------------------------------------

def test_der_basic_and_string_types():
    for t in (_ASN1Type.UTF8String, _ASN1Type.BMPString, _ASN1Type.UniversalString):
        der = name_der([[(C, "NL", _ASN1Type.PrintableString)],
                        [(O, "Example Grid", _ASN1Type.PrintableString)],
                        [(CN, "Andr\u00e9", t)]])
        assert parse_der_name(der) == ALICE
    for t in (_ASN1Type.PrintableString, _ASN1Type.IA5String, _ASN1Type.VisibleString,
              _ASN1Type.T61String):
        assert parse_der_name(name_der([[(CN, "x y", t)]])) == ((((CN, "x y"),)),)
    assert parse_der_name(name_der([[(CN, "123", _ASN1Type.NumericString)]])) == (((CN, "123"),),)
    # TeletexString bytes are latin-1 (as OpenSSL prints them)
    assert parse_der_name(bytes.fromhex("300e310c300a06035504031403e97a41")) == \
        (((CN, "\u00e9zA"),),)
    assert parse_der_name(b"\x30\x00") == ()


def test_der_multivalued_sorted_and_nfc():
    der = name_der([[(UID, "u", _ASN1Type.UTF8String), (CN, "e\u0301", _ASN1Type.UTF8String)]])
    assert parse_der_name(der) == (((UID, "u"), (CN, "\u00e9")),)   # sorted by dotted OID


GOOD = bytes.fromhex("300f310d300b06035504030c04416c6963")      # CN=Alic


@pytest.mark.parametrize("der, why", [
    (GOOD + b"\x00", "trailing"),
    (bytes.fromhex("3080310d300b06035504030c04416c69630000"), "indefinite"),
    (bytes.fromhex("30810f310d300b06035504030c04416c6963"), "non-minimal"),
    (bytes.fromhex("3082000f310d300b06035504030c04416c6963"), "non-minimal"),
    (bytes.fromhex("3010310d300b06035504030c04416c6963"), "beyond"),
    (bytes.fromhex("300e310d300b06035504030c04416c6963"), "trailing|beyond"),
    (bytes.fromhex("30023100"), "empty RDN"),
    (bytes.fromhex("300f310d300b06035504030c04416cff63"), "encoding"),
    (bytes.fromhex("300f310d300b06035504031e04dc410063"), "encoding"),     # lone surrogate
    (bytes.fromhex("300e310c300a06035504031e03004100"), "odd"),
    (bytes.fromhex("300f310d300b06035504031c0400110000"), "encoding"),   # > U+10FFFF
    (bytes.fromhex("300f310d300b06035504030404416c6963"), "unsupported"),  # OCTET STRING
    (bytes.fromhex("300f310d300b06035504032c04416c6963"), "unsupported"),  # constructed
    (bytes.fromhex("3010310e300c0604558004030c04416c6963"), "non-minimal OID"),
    (bytes.fromhex("300f310d300b06035504840c04416c6963"), "truncated OID"),
    (bytes.fromhex("3011310f300d06035504030c04416c69630500"), "trailing bytes in"),
    (bytes.fromhex("3100"), "not a SEQUENCE"),
    (b"", "truncated"),
    (b"\x30", "truncated"),
    (bytes.fromhex("3f0100"), "high tag"),
])
def test_der_strict(der, why):
    with pytest.raises(DNError, match=why):
        parse_der_name(der)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_der_random_bytes_only_dnerror(b):
    try:
        parse_der_name(b)
    except DNError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_der_mutations_only_dnerror(data):
    b = bytearray(GOOD)
    i = data.draw(st.integers(0, len(b) - 1))
    b[i] = data.draw(st.integers(0, 255))
    try:
        parse_der_name(bytes(b))
    except DNError:
        pass


# --- canonical ----------------------------------------------------------------------

def test_canonical_examples():
    assert canonical(ALICE) == "/C=NL/O=Example Grid/CN=Andr\u00e9"
    assert canonical(()) == ""
    d = make_dn([[(CN, ' a/b=c+d\\e"f,g\x00\x7f\u202e ')], [(EMAIL, "x@y"), (UID, "u")],
                 [("1.2.3.4", "v")]])
    assert canonical(d) == ("/CN=\\20a\\2Fb\\3Dc\\2Bd\\5Ce\\22f\\2Cg\\00\\7F\\E2\\80\\AE\\20"
                            "/UID=u+emailAddress=x@y/1.2.3.4=v")
    assert parse_canonical(canonical(d)) == d


def test_canonical_case_preserved():
    a = make_dn([[(CN, "Alice")]])
    b = make_dn([[(CN, "alice")]])
    assert canonical(a) != canonical(b)


@pytest.mark.parametrize("s", [
    "CN=x", "/CN", "/cn=x", "/CN=a\\2fb", "/CN=a\\x41", "/2.5.4.3=x", "/CN=a/", "//CN=x",
    "/CN=e\u0301", "/CN= x", "/CN=a=b", "/CN=\\41", "/CN=x+UID=u", "/CN=\\C3",
])
def test_parse_canonical_rejects_non_canonical(s):
    with pytest.raises(DNError):
        parse_canonical(s)


def test_value_with_slash_cn_never_renders_like_two_rdns():
    one = make_dn([[(O, "X")], [(CN, "Al/CN=Bob")]])
    two = make_dn([[(O, "X")], [(CN, "Al")], [(CN, "Bob")]])
    assert canonical(one) != canonical(two)
    assert canonical(one) == "/O=X/CN=Al\\2FCN\\3DBob"
    assert parse_canonical(canonical(one)) == one


# --- equivalent forms -----------------------------------------------------------------

def test_equivalent_forms():
    forms = [
        "/C=NL/O=Example Grid/CN=Andr\\xC3\\xA9",
        "/C=NL/O=Example Grid/CN=Andr\u00e9",
        "/C=NL/O=Example Grid/CN=Andre\u0301",
        "/countryName=NL/organizationName=Example Grid/commonName=Andr\\xc3\\xa9",
        "/2.5.4.6=NL/2.5.4.10=Example Grid/2.5.4.3=Andr\u00e9",
        "CN=Andr\u00e9,O=Example Grid,C=NL",
        "CN=Andr\\C3\\A9, O=Example Grid, C=NL",
        "cn=Andr\\c3\\a9,o=Example Grid,c=NL",
        "CN=#0c06416e6472c3a9,O=Example Grid,C=NL",
        "CN=#1e0a0041006e0064007200e9,O=Example Grid,C=NL",
    ]
    for f in forms:
        assert parse_text(f) == ALICE, f
    assert parse_canonical(canonical(ALICE)) == ALICE


def test_email_aliases():
    want = make_dn([[(DC, "org")], [(CN, "x")], [(EMAIL, "a@b")]])
    for f in ("/DC=org/CN=x/E=a@b", "/DC=org/CN=x/Email=a@b", "/DC=org/CN=x/emailAddress=a@b",
              "/DC=org/CN=x/1.2.840.113549.1.9.1=a@b", "E=a@b,CN=x,DC=org",
              "emailAddress=a@b,CN=x,DC=org", "EMAIL=a@b,CN=x,DC=org"):
        assert parse_text(f) == want, f
    assert canonical(want) == "/DC=org/CN=x/emailAddress=a@b"
    assert parse_text("/UID=u") == parse_text("/userId=u") == parse_text("USERID=u")


def test_slash_openssl3_escapes_and_multivalued():
    d = parse_slash("/DC=org/O=A\\/B+UID=u1/CN=x/CN=Andr\\xC3\\xA9, \"q\" =z")
    assert d == make_dn([[(DC, "org")], [(O, "A/B"), (UID, "u1")], [(CN, "x")],
                         [(CN, 'Andr\u00e9, "q" =z')]])
    assert parse_slash("/CN=a\\+b\\c=d") == make_dn([[(CN, "a+b\\c=d")]])
    assert parse_slash("/CN=host/ce.example.org") == make_dn([[(CN, "host/ce.example.org")]])
    assert parse_slash("/CN=a+b") == make_dn([[(CN, "a+b")]])
    assert parse_slash("/CN=x\\x00y") == make_dn([[(CN, "x\x00y")]])


@pytest.mark.parametrize("s", [
    "/CN=a/foo=b",            # unknown attribute: value text or an RDN?
    "/CN=a\\/CN=b",           # escaped slash, or a value ending in a backslash?
    "/CN=a\\+UID=b",
    "/CN=a+foo=b",
    "/CN=a\\xC3",             # invalid UTF-8
    "CN=x", "/", "/=x", "/foo=x",
])
def test_slash_rejects_ambiguous_and_bad(s):
    with pytest.raises(DNError):
        parse_slash(s)


@pytest.mark.parametrize("s", [
    "CN=a,", ",CN=a", "CN=a;O=b", "CN=a\"b", "CN=a<b", "CN=\\zz", "CN=#zz", "CN=#0c01",
    "foo=bar", "CN", "CN=a\x00", "  ", "CN=#0401aa",
])
def test_rfc4514_rejects(s):
    with pytest.raises(DNError):
        parse_rfc4514(s)


def test_rfc4514_spaces_and_escapes():
    assert parse_rfc4514("CN = a b ,O=\\ x\\ ") == make_dn([[(O, " x ")], [(CN, "a b")]])
    assert parse_rfc4514("CN=a\\,b\\+c\\=d") == make_dn([[(CN, "a,b+c=d")]])
    assert parse_rfc4514("CN=a+UID=b") == make_dn([[(CN, "a"), (UID, "b")]])


def test_parse_text_refuses_canonical_vs_slash_ambiguity():
    d = make_dn([[(O, "Example, Inc")]])
    with pytest.raises(DNError, match="ambiguous"):
        parse_text(canonical(d))          # "\2C": an escape, or literal text in oneline?
    assert parse_text(rfc4514(d)) == d
    assert parse_text("/O=Example, Inc") == d


def test_is_rdn_prefix():
    al = parse_text("/O=X/CN=Al")
    assert is_rdn_prefix(al, al)
    assert is_rdn_prefix(al, parse_text("/O=X/CN=Al/CN=123"))
    assert not is_rdn_prefix(al, parse_text("/O=X/CN=Alice"))
    assert not is_rdn_prefix(al, parse_text("/O=X"))
    assert not is_rdn_prefix((), al)
    assert is_rdn_prefix(parse_text("/O=X/CN=a/UID=b"), parse_text("/O=X/CN=a+UID=b/CN=p"))
    assert is_rdn_prefix(parse_text("/O=X/UID=b/CN=a"), parse_text("/O=X/CN=a+UID=b"))
    assert not is_rdn_prefix(parse_text("/O=X/CN=a"), parse_text("/O=X/CN=a+UID=b"))


# --- properties -----------------------------------------------------------------------

SPECIAL = "/,+=\\\" #;<>\x00\x01\x1f\x7f\x85\u00e9e\u0301\u202e\u200b\u0130\uff0f\U0001F600"
chars = st.one_of(st.sampled_from(SPECIAL),
                  st.characters(max_codepoint=0x2FFFF, blacklist_categories=("Cs",)),
                  st.sampled_from("aAbZ09 .-_@"))
values = st.text(chars, max_size=12)
oids = st.one_of(st.sampled_from([CN, O, C, DC, UID, EMAIL, "2.5.4.11", "2.5.4.5"]),
                 st.lists(st.integers(0, 2 ** 40), min_size=1, max_size=4).map(
                     lambda t: "2." + ".".join(map(str, t))))
rdn = st.lists(st.tuples(oids, values), min_size=1, max_size=3)
dns = st.lists(rdn, max_size=6).map(make_dn)
PROP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROP
@given(dns)
def test_canonical_round_trip(d):
    c = canonical(d)
    assert parse_canonical(c) == d
    assert canonical(parse_canonical(c)) == c


@PROP
@given(dns, dns)
def test_distinct_dns_distinct_canonical(a, b):
    assume(a != b)
    assert canonical(a) != canonical(b)


@PROP
@given(dns, st.integers(0, 5), st.text(chars, max_size=4))
def test_canonical_never_string_prefix_confusion(d, k, extra):
    """Extending the last value (CN=Al -> CN=Alice) never yields a DN that the shorter one
    is an RDN-prefix of, and the canonical string of the shorter one is never followed by
    an RDN boundary in the longer one."""
    assume(d and extra)
    last = d[-1]
    longer = make_dn(list(d[:-1]) + [[(last[0][0], last[0][1] + extra)] + list(last[1:])])
    assume(longer != d)
    assert not is_rdn_prefix(d, longer)
    cl, cs = canonical(longer), canonical(d)
    if cl.startswith(cs):
        assert cl[len(cs):len(cs) + 1] not in ("/", "")


@PROP
@given(dns, values)
def test_value_with_rdn_text_never_renders_as_two_rdns(d, v):
    one = make_dn(list(d) + [[(CN, v + "/CN=Bob")]])
    two = make_dn(list(d) + [[(CN, v)], [(CN, "Bob")]])
    assert canonical(one) != canonical(two)
    assert canonical(one).count("/") == len(one)


@PROP
@given(dns)
def test_rfc4514_round_trip(d):
    assert parse_rfc4514(rfc4514(d)) == d


@PROP
@given(dns)
def test_text_renderings_parse_to_same_dn_or_error(d):
    assume(d)
    for r in (canonical(d), rfc4514(d), oneline(d)):
        try:
            got = parse_text(r)
        except DNError:
            continue
        if r is oneline(d) or r == oneline(d):
            # oneline does not escape backslashes: "\x41" in a value reads as "A"
            if any("\\" in v for rd in d for _, v in rd):
                continue
        assert got == d, r
    assert parse_text(rfc4514(d)) == d


@PROP
@given(dns)
def test_oneline_parses_back_or_refuses(d):
    assume(d and not any("\\" in v for rd in d for _, v in rd))
    try:
        got = parse_slash(oneline(d))
    except DNError:
        return
    assert got == d


@PROP
@given(st.text(max_size=40))
def test_text_parsers_raise_only_dnerror(s):
    for f in (parse_text, parse_slash, parse_rfc4514, parse_canonical):
        try:
            f(s)
        except DNError:
            pass


# DER via cryptography: every string type.
ascii_vals = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=10)
# (cryptography's ASN.1 library overflows on huge arcs: keep them below 2**28)
der_oids = st.one_of(st.sampled_from([CN, O, DC, UID, EMAIL, "2.5.4.11", "2.5.4.5"]),
                     st.lists(st.integers(0, 2 ** 28), min_size=1, max_size=4).map(
                         lambda t: "1.3.6.1.4.1." + ".".join(map(str, t))))
der_ava = st.one_of(
    st.tuples(der_oids, values,
              st.sampled_from([_ASN1Type.UTF8String, _ASN1Type.BMPString,
                               _ASN1Type.UniversalString])),
    st.tuples(der_oids, ascii_vals,
              st.sampled_from([_ASN1Type.PrintableString, _ASN1Type.IA5String,
                               _ASN1Type.VisibleString, _ASN1Type.T61String])),
    st.tuples(st.just(C), st.text("ABCDEFGHNLZ", min_size=2, max_size=2),
              st.just(_ASN1Type.PrintableString)))
der_dn = st.lists(st.lists(der_ava, min_size=1, max_size=3, unique_by=lambda a: a[:2]),
                  max_size=6)


@PROP
@given(der_dn)
def test_der_round_trip_with_cryptography(rdns):
    der = name_der(rdns)
    want = make_dn([[(o, v) for o, v, _ in r] for r in rdns])
    assert parse_der_name(der) == want


# --- against real certificates made by openssl --------------------------------------

SUBJECTS = [
    ("/DC=org/DC=example/O=Example Grid/CN=Andr\u00e9 Pilot", []),
    ("/C=NL/O=A\\/B+UID=u1/CN=x/CN=Bob, \"q\" =z", ["-multivalue-rdn"]),
    ("/DC=ch/DC=cern/OU=computers/CN=host\\/ce.cern.ch", []),
    ("/C=DE/O=GermanGrid/OU=Uni/CN=J\u00fcrgen M\u00fcller/emailAddress=j@x.de", []),
    ("/O=X/CN=a+b\\\\c=d; <>#", []),
]


@pytest.mark.parametrize("subj, extra", SUBJECTS)
def test_against_openssl(tmp_path, subj, extra):
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "1", "-utf8", "-subj", subj] + extra,
                   check=True, capture_output=True)
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    d = parse_der_name(cert.subject.public_bytes())

    def show(nameopt):
        out = subprocess.run(["openssl", "x509", "-in", str(crt), "-noout", "-subject",
                              "-nameopt", nameopt], check=True, capture_output=True).stdout
        return out.decode("utf-8").rstrip("\n").split("=", 1)[1]

    assert parse_rfc4514(show("RFC2253")) == d
    compat = show("compat")                     # == X509_NAME_oneline
    if all(len(r) == 1 for r in d):
        # (OpenSSL prints a multi-valued RDN in DER SET order, oneline() in sorted order)
        assert oneline(d) == compat
    assert parse_slash(compat) == d
    assert parse_canonical(canonical(d)) == d
    assert attribute_name(CN) == "CN"
