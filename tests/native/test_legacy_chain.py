"""verify_chain + proxychain.interpret end to end with real proxies from grid-proxy-init
(GT2 ``-old``, GT3 ``-draft``, RFC 3820; full, limited, independent, multi-level, path
lengths) and forged chains (cryptography), security.md 4.C cases 14-15 and 4.D case 19.

Differential property: whenever ``openssl verify -allow_proxy_certs`` rejects a case that is
not a GT2/GT3 chain (which OpenSSL cannot judge), interpret refuses it too."""
import base64
import datetime
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

import tests.support.pki as pki_mod
from glexec_py.core import proxychain
from glexec_py.effects import native
from glexec_py.errors import CallerError
from tests.support.pki import TestPKI, UserCred, openssl_verify

JANE = "/DC=test/DC=glexec-py/OU=Users/CN=Jane Doe"
BOB = "/DC=test/DC=glexec-py/OU=Users/CN=Bob Other"
CRL_HAS_EXPIRED, CERT_REVOKED, CERT_SIGNATURE_FAILURE = 12, 23, 7
PROXY_PATH_LENGTH_EXCEEDED, INVALID_CA = 38, 79
GT3_OID = x509.ObjectIdentifier("1.3.6.1.4.1.3536.1.222")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("legacy")
    p = TestPKI(root / "main")
    p.jane, p.bob = p.user(JANE), p.user(BOB)
    p.out = root / "proxies"
    p.out.mkdir()
    p.cases = []          # (name, path, legacy, accepted) for the differential test
    return p


def now():
    return int(time.time())


def run(pki, path, ca_dir=None, crl_expired_ok=False, **kw):
    """(ChainResult, Identity or CallerError)."""
    res = native.verify_chain(Path(path).read_bytes(), str(ca_dir or pki.ca_dir), now(),
                              crl_expired_ok=crl_expired_ok)
    try:
        return res, proxychain.interpret(res, **kw)
    except CallerError as e:
        return res, e


def accepted(pki, path, name, legacy, **kw):
    res, out = run(pki, path, **kw)
    pki.cases.append((name, Path(path), legacy, isinstance(out, proxychain.Identity)))
    assert isinstance(out, proxychain.Identity), (name, res, out)
    assert out.subject == JANE and out.issuer == pki.ca_dn
    return res, out


def refused(pki, path, name, reason, legacy=False, **kw):
    res, out = run(pki, path, **kw)
    pki.cases.append((name, Path(path), legacy, isinstance(out, proxychain.Identity)))
    assert isinstance(out, CallerError), (name, res, out)
    assert out.reason == reason, (name, out.reason, res)
    return res, out


def chained(pki, name, *specs):
    """A proxy of a proxy ...: specs = (kind, limited[, path_length]) from the EEC down."""
    cred = pki.jane
    for i, spec in enumerate(specs):
        kind, limited, pl = (spec + (None,))[:3]
        path = pki.proxy(cred, pki.out / f"{name}-{i}.pem", kind=kind, limited=limited, path_length=pl)
        cred = UserCred(path, path, JANE)
    return cred.cert


def gpi(pki, out, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("X509_")}
    env["X509_CERT_DIR"] = str(pki.ca_dir)
    subprocess.run(["grid-proxy-init", "-q", "-cert", str(pki.jane.cert), "-key", str(pki.jane.key),
                    "-out", str(out), "-bits", "2048", *args], env=env, check=True, capture_output=True)
    return out


# --- real proxies ------------------------------------------------------------------------

@pytest.mark.parametrize("kind,limited,kinds", [
    ("old", False, ("gt2",)), ("old", True, ("gt2-limited",)),
    ("draft", False, ("gt3",)), ("draft", True, ("gt3-limited",)),
    ("rfc", False, ("rfc3820",)), ("rfc", True, ("rfc3820-limited",)),
])
def test_single_level(pki, kind, limited, kinds):
    path = pki.proxy(pki.jane, pki.out / f"one-{kind}-{limited}.pem", kind=kind, limited=limited)
    res, ident = accepted(pki, path, f"{kind}/{limited}", kind != "rfc")
    assert ident.kinds == kinds and ident.limited == limited and ident.depth == 1
    assert ident.eec_sha256 == res.chain[1].sha256 and ident.leaf_sha256 == res.chain[0].sha256
    # the knobs: legacy and limited refusals
    if kind != "rfc":
        refused(pki, path, f"{kind}/{limited}/nolegacy", "credential_legacy", True, allow_legacy=False)
    if limited:
        refused(pki, path, f"{kind}/nolimited", "credential_limited", kind != "rfc", allow_limited=False)
        accepted(pki, path, f"{kind}/require", kind != "rfc", require_limited=True)
    else:
        refused(pki, path, f"{kind}/require", "credential_limited", kind != "rfc", require_limited=True)


@pytest.mark.parametrize("specs,kinds", [
    ((("old", False), ("old", False)), ("gt2", "gt2")),
    ((("old", False), ("old", True)), ("gt2", "gt2-limited")),
    ((("old", True), ("old", True), ("old", True)), ("gt2-limited",) * 3),
    ((("old", False), ("old", False), ("old", False)), ("gt2",) * 3),
    ((("draft", False), ("draft", True)), ("gt3", "gt3-limited")),
    ((("draft", False, 1), ("draft", False)), ("gt3", "gt3")),
    ((("draft", False), ("draft", False), ("draft", True)), ("gt3", "gt3", "gt3-limited")),
    ((("rfc", False), ("rfc", True), ("rfc", True)), ("rfc3820", "rfc3820-limited", "rfc3820-limited")),
    ((("rfc", False, 1), ("rfc", False)), ("rfc3820", "rfc3820")),
])
def test_multi_level(pki, specs, kinds):
    name = "ml-" + "-".join(f"{s[0]}{int(s[1])}" for s in specs) + ("-pl" if len(specs[0]) > 2 else "")
    path = chained(pki, name, *specs)
    legacy = specs[0][0] != "rfc"
    if legacy:      # as LCMAPS with OpenSSL 3: a proxy of a GT2/GT3 proxy only when configured
        refused(pki, path, name + "-default", "credential_legacy", True)
    res, ident = accepted(pki, path, name, legacy, legacy_max_levels=3)
    assert ident.kinds == kinds and ident.depth == len(specs)
    assert ident.not_after == min(c.not_after for c in res.chain[:len(specs) + 1])


PCI_IMPERSONATION = bytes.fromhex("300c300a06082b06010505071501")   # SEQ { SEQ { inheritAll } }
EXT_OID = {"old": None, "draft": "1.3.6.1.4.1.3536.1.222", "rfc": "1.3.6.1.5.5.7.1.14"}


@pytest.mark.parametrize("kind", ["old", "draft", "rfc"])
def test_limited_issuing_full_is_refused(pki, kind):
    """grid-proxy-init itself keeps a proxy of a limited proxy limited (accepted); a full
    proxy forged under a limited one is refused (OpenSSL cannot see the difference)."""
    lim = chained(pki, f"limlim-{kind}", (kind, True), (kind, False))
    _, ident = accepted(pki, lim, f"limlim-{kind}", kind != "rfc", legacy_max_levels=2)
    assert ident.limited and ident.kinds[-1].endswith("-limited")
    (p, eec), k = _load(pki.out / f"limlim-{kind}-0.pem")
    exts = [KU]
    if EXT_OID[kind]:
        exts.append((x509.UnrecognizedExtension(x509.ObjectIdentifier(EXT_OID[kind]), PCI_IMPERSONATION), True))
    path = forge(pki.out / f"limfull-{kind}.pem", _plus_cn(p.subject, "proxy" if kind == "old" else "4711"),
                 p, k, [p, eec], extensions=exts)
    res, err = refused(pki, path, f"limfull-{kind}", "credential_invalid", kind != "rfc", legacy_max_levels=2)
    assert res.ok and "full proxy issued by a limited proxy" in str(err)


@pytest.mark.parametrize("kind", ["draft", "rfc"])
def test_path_length_exceeded(pki, kind):
    path = chained(pki, f"pl3-{kind}", (kind, False, 1), (kind, False), (kind, False))
    res, err = refused(pki, path, f"pl3-{kind}", "credential_invalid", kind != "rfc", legacy_max_levels=3)
    if kind == "rfc":
        assert res.error == PROXY_PATH_LENGTH_EXCEEDED
    else:   # OpenSSL does not know GT3 path lengths: the walk refuses at the 1-level proxy
        assert res.ok and "path length" in str(err)


@pytest.mark.parametrize("kind", ["draft", "rfc"])
def test_independent_policy_is_refused(pki, kind):
    path = gpi(pki, pki.out / f"indep-{kind}.pem", f"-{kind}", "-independent")
    res, _ = refused(pki, path, f"indep-{kind}", "credential_policy", kind != "rfc")
    assert res.chain[0].proxy_policy == proxychain.POLICY_INDEPENDENT


def test_unknown_policy_is_refused(pki, tmp_path):
    policy = tmp_path / "policy.txt"
    policy.write_text("some policy\n")
    path = gpi(pki, pki.out / "unknown-policy.pem", "-rfc", "-policy", str(policy),
               "-pl", "1.2.3.4.5")
    res, _ = refused(pki, path, "unknown-policy", "credential_policy")
    assert res.chain[0].proxy_policy == "1.2.3.4.5"


def test_lifetime_knobs(pki):
    path = pki.proxy(pki.jane, pki.out / "life.pem", kind="old", hours=12)
    res, ident = accepted(pki, path, "life", True, max_proxy_lifetime=13 * 3600, min_remaining=11 * 3600)
    period = res.chain[0].not_after - res.chain[0].not_before
    assert 12 * 3600 <= period <= 12 * 3600 + 600
    refused(pki, path, "life-max", "credential_lifetime", True, max_proxy_lifetime=6 * 3600)
    refused(pki, path, "life-min", "credential_expiring", True, min_remaining=13 * 3600)
    # min_remaining counts from `now` to the earliest notAfter up to the EEC
    _, err = run(pki, path, min_remaining=3600, now=res.chain[0].not_after - 1800)
    assert err.reason == "credential_expiring"
    _, ok = run(pki, path, min_remaining=3600, now=res.chain[0].not_after - 7200)
    assert isinstance(ok, proxychain.Identity)
    # per level: a 2-level chain whose second level is short passes max, not min
    p2 = chained(pki, "life2", ("rfc", False))
    p3 = pki.proxy(UserCred(p2, p2, JANE), pki.out / "life3.pem", hours=1)
    res, ident = accepted(pki, p3, "life3", False, max_proxy_lifetime=13 * 3600)
    assert ident.not_after == res.chain[0].not_after
    refused(pki, p3, "life3-min", "credential_expiring", min_remaining=2 * 3600)


def test_ca_path_length_zero_with_legacy_proxies(tmp_path, monkeypatch):
    """An issuing CA with pathlen:0 (common in IGTF): OpenSSL counts a GT2 proxy's issuer as a
    CA level (25 at the CA); tolerated only for legacy chains, and recounted without them."""
    monkeypatch.setattr(pki_mod, "_CA_CNF", pki_mod._CA_CNF.replace(
        "basicConstraints = critical,CA:TRUE\n", "basicConstraints = critical,CA:TRUE,pathlen:0\n"))
    p = TestPKI(tmp_path / "pl0")
    jane = p.user(JANE)
    for kind in ("old", "draft", "rfc"):
        path = p.proxy(jane, tmp_path / f"{kind}.pem", kind=kind)
        res, ident = run(p, path)
        assert isinstance(ident, proxychain.Identity), (kind, res, ident)
        assert res.chain[-1].ca_pathlen == 0


# --- forged chains (cryptography) ----------------------------------------------------------

def _load(path):
    """(certs, key) of a PEM file."""
    data = Path(path).read_bytes()
    certs = [x509.load_pem_x509_certificate(b) for b in
             re.findall(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", data, re.S)]
    m = re.search(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", data, re.S)
    return certs, serialization.load_pem_private_key(m.group(0), None) if m else None


_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def forge(out, subject, issuer_cert, issuer_key, rest, *, extensions=(), hours=12, ca=False):
    """A certificate for a fresh key with ``subject`` signed by ``issuer_key``, written as
    cert + key + ``rest`` (the issuer chain) to ``out``."""
    t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_cert.subject)
         .public_key(_KEY.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(t).not_valid_after(t + datetime.timedelta(hours=hours)))
    for ext, critical in extensions:
        b = b.add_extension(ext, critical=critical)
    cert = b.sign(issuer_key, hashes.SHA256())
    pem = cert.public_bytes(serialization.Encoding.PEM) + _KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    pem += b"".join(c.public_bytes(serialization.Encoding.PEM) for c in rest)
    Path(out).write_bytes(pem)
    return Path(out)


def _plus_cn(name, value):
    return x509.Name(list(name.rdns) + [x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, value)])])


KU = (x509.KeyUsage(True, False, True, True, False, False, False, False, False), True)


def test_tampered_gt2_signature(pki):
    """OpenSSL still checks GT2 signatures: the chain it built contains the proxy."""
    path = pki.proxy(pki.jane, pki.out / "gt2-tamper-src.pem", kind="old")
    certs, _ = _load(path)
    der = bytearray(certs[0].public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    b64 = base64.encodebytes(bytes(der))
    blk = b"-----BEGIN CERTIFICATE-----\n" + b64 + b"-----END CERTIFICATE-----\n"
    data = path.read_bytes()
    first = data[:data.index(b"-----END CERTIFICATE-----") + 26]
    bad = pki.out / "gt2-tampered.pem"
    bad.write_bytes(data.replace(first, blk, 1))
    res, _ = refused(pki, bad, "gt2-tampered", "credential_invalid", True)
    assert (res.error, res.error_depth) == (CERT_SIGNATURE_FAILURE, 0)


def test_eec_signed_by_eec_is_refused(pki):
    """A non-proxy end entity signed by Jane: Mallory's DN, a second CN that is not
    `proxy`, two appended RDNs, `CN=proxy` in a multi-valued RDN, CA:TRUE."""
    jane = _load(pki.jane.cert)[0][0]
    jkey = _load(pki.jane.key)[1]
    base = jane.subject
    mallory = x509.Name.from_rfc4514_string("CN=Mallory,OU=Users,DC=glexec-py,DC=test")
    multi = x509.Name(list(base.rdns)[:-1] + [x509.RelativeDistinguishedName([
        list(base.rdns)[-1].__iter__().__next__(), x509.NameAttribute(NameOID.COMMON_NAME, "proxy")])])
    subjects = {"mallory": mallory, "other-cn": _plus_cn(base, "Mallory"),
                "two-rdns": _plus_cn(_plus_cn(base, "proxy"), "proxy"), "multi-valued": multi}
    for name, subject in subjects.items():
        path = forge(pki.out / f"eec-{name}.pem", subject, jane, jkey, [jane], extensions=[KU])
        res, _ = refused(pki, path, f"eec-{name}", "credential_invalid")
        assert not res.ok and (res.error, res.error_depth) == (INVALID_CA, 1), name
    path = forge(pki.out / "eec-ca.pem", _plus_cn(base, "proxy"), jane, jkey, [jane],
                 extensions=[KU, (x509.BasicConstraints(ca=True, path_length=None), True)])
    res, _ = refused(pki, path, "eec-ca", "credential_invalid")
    assert not res.ok and (res.error, res.error_depth) == (INVALID_CA, 1)


def test_eec_without_key_usage_signing_eec(pki):
    """An EEC without keyUsage (so no 32): the INVALID_CA (79) at its depth alone must stay
    fatal unless what it issued is shaped like a legacy proxy."""
    cacert = x509.load_pem_x509_certificate((pki.ca / "ca.pem").read_bytes())
    cakey = serialization.load_pem_private_key((pki.ca / "ca.key").read_bytes(), None)
    nokey = forge(pki.out / "noku.pem", x509.Name.from_rfc4514_string("CN=No KU,OU=Users,DC=glexec-py,DC=test"),
                  cacert, cakey, [])
    eec = x509.load_pem_x509_certificate(nokey.read_bytes())
    mallory = x509.Name.from_rfc4514_string("CN=Mallory,OU=Users,DC=glexec-py,DC=test")
    path = forge(pki.out / "noku-mallory.pem", mallory, eec, _KEY, [eec])
    res, _ = refused(pki, path, "noku-mallory", "credential_invalid")
    assert not res.ok and (res.error, res.error_depth) == (INVALID_CA, 1)
    path = forge(pki.out / "noku-gt2.pem", _plus_cn(eec.subject, "proxy"), eec, _KEY, [eec])
    res, ident = run(pki, path)
    assert res.ok and isinstance(ident, proxychain.Identity) and ident.kinds == ("gt2",)


def test_gt2_lookalike_from_other_eec(pki):
    """Subject `Jane/CN=proxy`, but issued (and signed) by Bob: never Jane, never accepted."""
    bob, bkey = _load(pki.bob.cert)[0][0], _load(pki.bob.key)[1]
    jane = _load(pki.jane.cert)[0][0]
    path = forge(pki.out / "gt2-bob.pem", _plus_cn(jane.subject, "proxy"), bob, bkey, [bob], extensions=[KU])
    res, _ = refused(pki, path, "gt2-bob", "credential_invalid")
    assert not res.ok and (res.error, res.error_depth) == (INVALID_CA, 1)
    assert res.chain[1].subject == BOB
    # the same with Jane's certificate in the file: OpenSSL still builds the chain via Bob
    path2 = pki.out / "gt2-bob-jane.pem"
    path2.write_bytes(path.read_bytes() + pki.jane.cert.read_bytes())
    res, _ = refused(pki, path2, "gt2-bob-jane", "credential_invalid")


def test_forged_mixed_generations_and_limited_gt2(pki):
    """Chains the Globus tools never make: RFC proxy under a GT2 proxy (refused: one
    generation per chain), full GT2 under a limited GT2 (refused), GT2 whose last RDN is a
    GT3-shaped proxy of the wrong CN (refused)."""
    full = pki.proxy(pki.jane, pki.out / "mix-gt2.pem", kind="old")
    (p, eec), k = _load(full)
    pci = x509.UnrecognizedExtension(x509.ObjectIdentifier(EXT_OID["rfc"]), PCI_IMPERSONATION)
    path = forge(pki.out / "mix-rfc-on-gt2.pem", _plus_cn(p.subject, "12345"), p, k, [p, eec],
                 extensions=[KU, (pci, True)])
    res, _ = refused(pki, path, "mix-rfc-on-gt2", "credential_invalid", True, legacy_max_levels=2)
    assert res.ok      # OpenSSL accepts it; the walk does not
    lim = pki.proxy(pki.jane, pki.out / "mix-gt2-lim.pem", kind="old", limited=True)
    (p, eec), k = _load(lim)
    path = forge(pki.out / "mix-full-on-lim.pem", _plus_cn(p.subject, "proxy"), p, k, [p, eec],
                 extensions=[KU])
    res, err = refused(pki, path, "mix-full-on-lim", "credential_invalid", True, legacy_max_levels=2)
    assert res.ok and "limited" in str(err)


# --- CRLs ----------------------------------------------------------------------------------

def test_expired_crl_both_ways(pki, tmp_path):
    stale = pki.copy_trust_dir(tmp_path / "stale")
    subprocess.run(["openssl", "ca", "-batch", "-config", str(pki.cnf), "-gencrl",
                    "-crl_lastupdate", "20200101000000Z", "-crl_nextupdate", "20200201000000Z",
                    "-out", str(stale / f"{pki.hash}.r0")], check=True, capture_output=True)
    for kind in ("rfc", "old"):
        path = pki.proxy(pki.jane, tmp_path / f"crl-{kind}.pem", kind=kind)
        res, err = run(pki, path, ca_dir=stale)
        assert not res.ok and res.error == CRL_HAS_EXPIRED and isinstance(err, CallerError)
        res, ident = run(pki, path, ca_dir=stale, crl_expired_ok=True)
        assert res.ok and (1, CRL_HAS_EXPIRED) in res.tolerated, res
        assert isinstance(ident, proxychain.Identity)


def test_revoked_is_fatal_even_with_expired_crl_ok(pki, tmp_path):
    eve = pki.user("/DC=test/DC=glexec-py/OU=Users/CN=Eve Revoked")
    paths = [pki.proxy(eve, tmp_path / f"eve-{k}.pem", kind=k) for k in ("rfc", "old", "draft")]
    pki.revoke(eve)
    stale = pki.copy_trust_dir(tmp_path / "stale")
    subprocess.run(["openssl", "ca", "-batch", "-config", str(pki.cnf), "-gencrl",
                    "-crl_lastupdate", "20200101000000Z", "-crl_nextupdate", "20200201000000Z",
                    "-out", str(stale / f"{pki.hash}.r0")], check=True, capture_output=True)
    for path in paths:
        for ca_dir, ok in ((pki.ca_dir, False), (stale, True)):
            res, err = run(pki, path, ca_dir=ca_dir, crl_expired_ok=ok)
            assert not res.ok and res.error == CERT_REVOKED, (path, res)
            assert err.reason == "credential_revoked"


def test_missing_crl_tolerated_for_legacy(pki, tmp_path):
    nocrl = pki.copy_trust_dir(tmp_path / "nocrl")
    for f in nocrl.glob("*.r0"):
        f.unlink()
    path = pki.proxy(pki.jane, tmp_path / "nocrl-old.pem", kind="old")
    res, ident = run(pki, path, ca_dir=nocrl)
    assert res.ok and isinstance(ident, proxychain.Identity)


# --- differential: last, over every case collected above ------------------------------------

def test_zz_differential_with_openssl_verify(pki):
    assert len(pki.cases) > 30
    for name, path, legacy, ok in pki.cases:
        if ok and not legacy:
            assert openssl_verify(pki.ca_dir, path), f"{name}: accepted but openssl verify rejects"
        if not legacy and not openssl_verify(pki.ca_dir, path):
            assert not ok, name
