"""atheris target: glexec_py.core.dn (canonical DN parser/renderer).

Input: byte 0 selects the parser, the rest is the DER name (parse_der_name) or the text
(UTF-8, invalid bytes as lone surrogates via surrogateescape) for the text parsers.

Oracles (beyond "no crash"):
  * parse_der_name / parse_slash / parse_rfc4514 / parse_canonical / parse_text raise
    nothing but DNError;
  * a parsed DN d is well formed (tuple of non-empty sorted RDNs of (oid, str));
  * parse_canonical(canonical(d)) == d  (canonical is injective and inverted exactly);
  * canonical is idempotent: canonical(parse_canonical(canonical(d))) == canonical(d);
  * parse_canonical(x) == d  implies  canonical(d) == x  (only canonical strings accepted);
  * parse_rfc4514(rfc4514(d)) == d for non-empty d (documented round trip).
"""
import sys

import atheris

import _common
from _common import check

with atheris.instrument_imports():
    from glexec_py.core import dn

DNError = dn.DNError
PARSERS = ("der", "slash", "rfc4514", "canonical", "text")


def well_formed(d):
    check(type(d) is tuple, f"DN is not a tuple: {d!r}")
    for rdn in d:
        check(type(rdn) is tuple and rdn, f"empty/non-tuple RDN in {d!r}")
        check(list(rdn) == sorted(rdn), f"RDN not sorted: {rdn!r}")
        for ava in rdn:
            check(type(ava) is tuple and len(ava) == 2 and type(ava[0]) is str
                  and type(ava[1]) is str, f"bad AVA {ava!r}")


def properties(d):
    well_formed(d)
    c = dn.canonical(d)
    try:
        back = dn.parse_canonical(c)
    except DNError as e:
        if d:   # "" (empty DN) is not accepted back; every non-empty DN must be
            raise _common.OracleViolation(f"canonical {c!r} of {d!r} does not parse back: {e}")
        return
    check(back == d, f"parse_canonical(canonical(d)) != d: {d!r} -> {c!r} -> {back!r}")
    check(dn.canonical(back) == c, f"canonical not idempotent: {c!r}")
    if d:
        r = dn.rfc4514(d)
        try:
            rb = dn.parse_rfc4514(r)
        except DNError as e:
            raise _common.OracleViolation(f"rfc4514 {r!r} of {d!r} does not parse back: {e}")
        check(rb == d, f"parse_rfc4514(rfc4514(d)) != d: {d!r} -> {r!r} -> {rb!r}")


def TestOneInput(data):
    if not data:
        return
    which = PARSERS[data[0] % len(PARSERS)]
    body = data[1:]
    if which == "der":
        ok, d = _common.only(DNError, dn.parse_der_name, body)
    else:
        text = body.decode("utf-8", "surrogateescape")
        ok, d = _common.only(DNError, getattr(dn, "parse_" + which), text)
        if ok and which == "canonical":
            check(dn.canonical(d) == text, f"parse_canonical accepted a non-canonical string {text!r}")
    if ok:
        properties(d)


def seeds():
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    from cryptography.x509.name import _ASN1Type
    A = x509.NameAttribute
    names = [
        x509.Name([A(NameOID.DOMAIN_COMPONENT, "org"), A(NameOID.DOMAIN_COMPONENT, "example"),
                   A(NameOID.COMMON_NAME, "Alice")]),
        x509.Name([A(NameOID.COUNTRY_NAME, "DE"), A(NameOID.ORGANIZATION_NAME, "GridKa"),
                   A(NameOID.COMMON_NAME, "Jos\u00e9 /CN=root", _ASN1Type.BMPString)]),
        x509.Name([x509.RelativeDistinguishedName([A(NameOID.COMMON_NAME, "a+b"),
                                                   A(NameOID.USER_ID, "x,y")]),
                   x509.RelativeDistinguishedName([A(NameOID.EMAIL_ADDRESS, "a@b.c")]),
                   x509.RelativeDistinguishedName([A(x509.ObjectIdentifier("1.2.3.4.5"), "odd",
                                                     _ASN1Type.UniversalString)])]),
        x509.Name([A(NameOID.COMMON_NAME, " lead\\trail ", _ASN1Type.T61String)]),
    ]
    out = [b"\x00" + n.public_bytes() for n in names]
    for t in ["/DC=org/DC=example/CN=Alice", "/C=DE/O=GridKa/CN=Jos\\xC3\\xA9/CN=proxy",
              "/CN=a\\/b+UID=c/emailAddress=x@y", "/DC=org/CN=\\20x\\2F\\2B\\5C\\22\\2C\\20",
              "CN=Alice,DC=example,DC=org", "CN=a\\+b+UID=c,O=x\\,y,E=#0c03616263",
              "/CN=\u202eevil/CN=1234", "/E=a@b/Email=c/commonName=x"]:
        for i in range(1, len(PARSERS)):
            out.append(bytes([i]) + t.encode())
    return out


if __name__ == "__main__":
    _common.seed(sys.argv, seeds)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
