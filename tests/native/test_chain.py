"""verify_chain against a real test PKI (openssl CLI + grid-proxy-init), with a differential
check against `openssl verify -allow_proxy_certs`: ok must never be True where OpenSSL rejects.
"""
import base64
import hashlib
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from glexec_py.effects import native
from tests.support.pki import TestPKI, UserCred, openssl_verify

JANE = "/DC=test/DC=glexec-py/OU=Users/CN=Jane Doe"
ANDRE = "/C=NL/O=Example Grid/CN=Andr\u00e9"
IMPERSONATION, LIMITED = "1.3.6.1.5.5.7.21.1", "1.3.6.1.4.1.3536.1.1.1.9"
# X509_V_ERR_* codes of OpenSSL 3.0
UNABLE_TO_GET_CRL, CERT_NOT_YET_VALID, CERT_HAS_EXPIRED, CRL_HAS_EXPIRED = 3, 9, 10, 12
UNABLE_TO_GET_ISSUER_CERT_LOCALLY, CERT_REVOKED, INVALID_PURPOSE = 20, 23, 26
KEYUSAGE_NO_CERTSIGN, UNHANDLED_CRITICAL_EXTENSION, PROXY_PATH_LENGTH_EXCEEDED = 32, 34, 38
INVALID_CA, CERT_SIGNATURE_FAILURE = 79, 7
PEM_RE = re.compile(rb"-----BEGIN ([A-Z ]+)-----\r?\n(.*?)-----END \1-----\r?\n?", re.S)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    p = TestPKI(root / "main")
    p.jane = p.user(JANE)
    p.out = root / "proxies"
    p.out.mkdir()
    return p


def now():
    return int(time.time())


def verify(pki_or_dir, path, **kw):
    ca_dir = getattr(pki_or_dir, "ca_dir", pki_or_dir)
    return native.verify_chain(Path(path).read_bytes(), str(ca_dir), kw.pop("at", now()), **kw)


def blocks(pem: bytes):
    return [(m.group(1).decode(), m.group(0)) for m in PEM_RE.finditer(pem)]


def differential(ca_dir, path, res):
    if res.ok:
        assert openssl_verify(ca_dir, path), "native ok but openssl verify rejects"


def check_rfc_chain(res, pki, dn=JANE, policy=IMPERSONATION):
    assert res.ok, res
    assert (res.error, res.tolerated, res.has_key, res.key_matches) == (0, [], True, True)
    leaf, eec, ca = res.chain
    assert leaf.proxy == "rfc3820" and leaf.proxy_policy == policy
    assert leaf.subject.startswith(dn + "/CN=") and leaf.issuer == dn
    assert eec.subject == dn and eec.proxy == "" and not eec.is_ca
    assert ca.subject == pki.ca_dn and ca.is_ca and ca.issuer == ca.subject
    assert leaf.issuer_der == eec.subject_der and eec.issuer_der == ca.subject_der
    assert ca.subject_hash == pki.hash                  # `openssl x509 -hash`: names <hash>.0
    for c in res.chain:
        assert c.sha256 == hashlib.sha256(c.der).hexdigest() and c.not_before <= now() < c.not_after
        assert c.serial == c.serial.lower() and int(c.serial, 16) >= 0


def test_rfc_proxy(pki):
    path = pki.proxy(pki.jane, pki.out / "rfc.pem")
    res = verify(pki, path)
    check_rfc_chain(res, pki)
    assert res.chain[0].proxy_pathlen == -1
    first = blocks(Path(path).read_bytes())[0][1]
    assert res.chain[0].der == base64.b64decode(b"".join(first.splitlines()[1:-1]))
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-enddate", "-in", str(path)],
                         capture_output=True, text=True, check=True).stdout
    serial = [ln.split("=", 1)[1] for ln in out.splitlines() if ln.startswith("serial=")][0]
    assert res.chain[0].serial == format(int(serial, 16), "x")
    differential(pki.ca_dir, path, res)


def test_utf8_subject_is_oneline_escaped(pki):
    andre = pki.user(ANDRE)
    path = pki.proxy(andre, pki.out / "andre.pem")
    res = verify(pki, path)
    assert res.ok and res.chain[1].subject == "/C=NL/O=Example Grid/CN=Andr\\xC3\\xA9"
    differential(pki.ca_dir, path, res)


def test_limited_and_pathlen(pki):
    res = verify(pki, pki.proxy(pki.jane, pki.out / "lim.pem", limited=True, path_length=2))
    check_rfc_chain(res, pki, policy=LIMITED)
    assert res.chain[0].proxy_pathlen == 2


def test_proxy_of_proxy_and_path_length_exceeded(pki):
    p1 = pki.proxy(pki.jane, pki.out / "pl1.pem", path_length=1)
    p2 = pki.proxy(UserCred(p1, p1, JANE), pki.out / "pl2.pem")
    res = verify(pki, p2)
    assert res.ok and [c.proxy for c in res.chain] == ["rfc3820", "rfc3820", "", ""]
    assert res.chain[1].proxy_pathlen == 1 and res.chain[0].issuer == res.chain[1].subject
    assert res.key_matches
    differential(pki.ca_dir, p2, res)
    p3 = pki.proxy(UserCred(p2, p2, JANE), pki.out / "pl3.pem")
    res = verify(pki, p3)
    assert not res.ok and res.error == PROXY_PATH_LENGTH_EXCEEDED
    assert not openssl_verify(pki.ca_dir, p3)


def test_legacy_gt2_proxy(pki):
    """What OpenSSL 3.0 reports for a GT2 (-old) proxy: the EEC is taken for an intermediate
    CA -> INVALID_CA (79) and INVALID_PURPOSE (26) at depth 1, UNABLE_TO_GET_CRL at depth 0
    (no CRL from the EEC), then KEYUSAGE_NO_CERTSIGN (32) at depth 1. The EEC is not a CA and
    the leaf is shaped like its GT2 proxy, so all of them are tolerated and recorded (the
    engine judges them in proxychain.interpret)."""
    path = pki.proxy(pki.jane, pki.out / "old.pem", kind="old")
    res = verify(pki, path)
    assert res.ok and res.error == 0
    assert set(res.tolerated) == {(1, INVALID_CA), (1, INVALID_PURPOSE), (0, UNABLE_TO_GET_CRL),
                                  (1, KEYUSAGE_NO_CERTSIGN)}
    assert res.chain[0].proxy == "" and res.chain[0].subject == JANE + "/CN=proxy"
    assert res.has_key and res.key_matches


def test_draft_gt3_proxy(pki):
    """GT3 (-draft): the critical 1.3.6.1.4.1.3536.1.222 extension is tolerated (34 at depth
    0) and classified "gt3"; as for GT2, OpenSSL treats the EEC as a CA (79, 26, 32 at depth
    1), tolerated because the leaf is shaped like its GT3 proxy."""
    path = pki.proxy(pki.jane, pki.out / "draft.pem", kind="draft", path_length=3)
    res = verify(pki, path)
    assert (0, UNHANDLED_CRITICAL_EXTENSION) in res.tolerated
    assert res.chain[0].proxy == "gt3" and res.chain[0].proxy_policy == IMPERSONATION
    assert res.chain[0].proxy_pathlen == 3
    assert res.ok and (1, KEYUSAGE_NO_CERTSIGN) in res.tolerated


def test_expired_proxy(pki):
    path = pki.expired_proxy(pki.jane, pki.out / "expired.pem")
    res = verify(pki, path)
    assert not res.ok and (res.error, res.error_depth) == (CERT_HAS_EXPIRED, 0)
    assert res.chain[0].proxy == "rfc3820" and res.key_matches
    assert not openssl_verify(pki.ca_dir, path)


def test_at_time_is_honoured(pki):
    path = pki.proxy(pki.jane, pki.out / "t.pem", hours=1)
    assert verify(pki, path, at=now() + 7200).error == CERT_HAS_EXPIRED
    # (with CRLs on, the CRL issued "now" is the first thing not yet valid: error 11)
    assert verify(pki, path, at=now() - 86400 * 30, crl_check=False).error == CERT_NOT_YET_VALID


def test_expired_user_cert(pki):
    old = pki.user(JANE + "2", expired=True)
    res = native.verify_chain(old.cert.read_bytes(), str(pki.ca_dir), now())
    assert not res.ok and res.error == CERT_HAS_EXPIRED and not res.has_key


def test_unknown_ca(pki, tmp_path):
    other = TestPKI(tmp_path / "other", ca_dn="/DC=test/DC=glexec-py/CN=Other CA")
    path = other.proxy(other.user(JANE), tmp_path / "foreign.pem")
    assert verify(other, path).ok
    res = verify(pki, path)
    assert not res.ok and res.error == UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    assert not openssl_verify(pki.ca_dir, path)


def _tamper(pem: bytes) -> bytes:
    """Flip a bit in the last byte (the signature) of the first certificate."""
    name, blk = blocks(pem)[0]
    der = bytearray(base64.b64decode(b"".join(blk.splitlines()[1:-1])))
    der[-1] ^= 0x01
    b64 = base64.encodebytes(bytes(der)).replace(b"\n", b"")
    body = b"\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    return pem.replace(blk, b"-----BEGIN CERTIFICATE-----\n" + body + b"\n-----END CERTIFICATE-----\n", 1)


def test_tampered_signature(pki):
    path = pki.proxy(pki.jane, pki.out / "tamper.pem")
    bad = pki.out / "tampered.pem"
    bad.write_bytes(_tamper(path.read_bytes()))
    res = verify(pki, bad)
    assert not res.ok and (res.error, res.error_depth) == (CERT_SIGNATURE_FAILURE, 0)
    assert not openssl_verify(pki.ca_dir, bad)


def test_revoked_user(pki, tmp_path):
    bob = pki.user("/DC=test/DC=glexec-py/OU=Users/CN=Bob Revoked")
    path = pki.proxy(bob, tmp_path / "bob.pem")
    assert verify(pki, path).ok
    pki.revoke(bob)
    res = verify(pki, path)
    assert not res.ok and (res.error, res.error_depth) == (CERT_REVOKED, 1)
    assert verify(pki, path, crl_check=False).ok          # the flag really turns CRLs off
    assert verify(pki, pki.proxy(pki.jane, tmp_path / "jane.pem")).ok   # others unaffected


def test_missing_and_expired_crl(pki, tmp_path):
    path = pki.proxy(pki.jane, tmp_path / "p.pem")
    nocrl = pki.copy_trust_dir(tmp_path / "nocrl")
    for f in nocrl.glob("*.r0"):
        f.unlink()
    res = verify(nocrl, path)
    assert res.ok and res.tolerated and all(c == UNABLE_TO_GET_CRL for _, c in res.tolerated)
    stale = pki.copy_trust_dir(tmp_path / "stale")
    subprocess.run(["openssl", "ca", "-batch", "-config", str(pki.cnf), "-gencrl",
                    "-crl_lastupdate", "20200101000000Z", "-crl_nextupdate", "20200201000000Z",
                    "-out", str(stale / f"{pki.hash}.r0")], check=True, capture_output=True)
    res = verify(stale, path)
    assert not res.ok and res.error == CRL_HAS_EXPIRED


def test_missing_key(pki, tmp_path):
    pem = pki.proxy(pki.jane, tmp_path / "k.pem").read_bytes()
    stripped = b"".join(b for n, b in blocks(pem) if "PRIVATE KEY" not in n)
    res = native.verify_chain(stripped, str(pki.ca_dir), now())
    assert res.ok and not res.has_key and not res.key_matches


def test_key_from_other_proxy(pki, tmp_path):
    a = pki.proxy(pki.jane, tmp_path / "a.pem").read_bytes()
    b = pki.proxy(pki.jane, tmp_path / "b.pem").read_bytes()
    key_b = [blk for n, blk in blocks(b) if "PRIVATE KEY" in n][0]
    mixed = b"".join(key_b if "PRIVATE KEY" in n else blk for n, blk in blocks(a))
    res = native.verify_chain(mixed, str(pki.ca_dir), now())
    assert res.ok and res.has_key and not res.key_matches


def test_untrusted_order_does_not_matter(pki, tmp_path):
    p1 = pki.proxy(pki.jane, tmp_path / "o1.pem")
    p2 = pki.proxy(UserCred(p1, p1, JANE), tmp_path / "o2.pem")
    bl = blocks(p2.read_bytes())
    certs = [b for n, b in bl if n == "CERTIFICATE"]
    keys = [b for n, b in bl if n != "CERTIFICATE"]
    res = native.verify_chain(certs[0] + certs[2] + keys[0] + certs[1], str(pki.ca_dir), now())
    assert res.ok and len(res.chain) == 4 and res.key_matches


@pytest.fixture(scope="module")
def rfc_pem(pki):
    return pki.proxy(pki.jane, pki.out / "base.pem").read_bytes()


def _key_block(pki, tmp_path, *args):
    out = tmp_path / "enc.pem"
    subprocess.run(["openssl", *args, "-in", str(pki.jane.key), "-out", str(out),
                    "-passout", "pass:secret"], check=True, capture_output=True)
    return out.read_bytes()


@pytest.mark.parametrize("how", ["pkcs8", "traditional"])
def test_encrypted_key_is_malformed(pki, tmp_path, rfc_pem, how):
    args = (["pkey", "-aes256"] if how == "pkcs8" else ["rsa", "-aes256", "-traditional"])
    enc = _key_block(pki, tmp_path, *args)
    pem = b"".join(enc if "PRIVATE KEY" in n else blk for n, blk in blocks(rfc_pem))
    res = native.verify_chain(pem, str(pki.ca_dir), now())
    assert (res.ok, res.error, res.error_text, res.chain) == (False, -1, "malformed PEM", [])


def test_key_block_with_encryption_headers_is_malformed(pki, tmp_path, rfc_pem):
    """A key block that says it is encrypted (Proc-Type/DEK-Info) is refused even when its
    body is the plain key: what the headers claim is never guessed at."""
    (key,) = [blk for n, blk in blocks(rfc_pem) if "PRIVATE KEY" in n]
    (tmp_path / "k.pem").write_bytes(key)
    trad = subprocess.run(["openssl", "rsa", "-traditional", "-in", str(tmp_path / "k.pem")],
                          check=True, capture_output=True).stdout
    assert trad.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    swap = lambda k: b"".join(k if "PRIVATE KEY" in n else blk for n, blk in blocks(rfc_pem))
    assert native.verify_chain(swap(trad), str(pki.ca_dir), now()).ok     # the plain block is fine
    headed = trad.replace(b"-----\n", b"-----\nProc-Type: 4,ENCRYPTED\n"
                          b"DEK-Info: AES-256-CBC,00112233445566778899AABBCCDDEEFF\n\n", 1)
    res = native.verify_chain(swap(headed), str(pki.ca_dir), now())
    assert (res.ok, res.error, res.error_text, res.chain) == (False, -1, "malformed PEM", [])


@pytest.mark.parametrize("pem", [
    b"", b"garbage", b"\0" * 100, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    b"-----BEGIN CERTIFICATE-----\nMIIB\n", b"-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n",
])
def test_garbage(pki, pem):
    res = native.verify_chain(pem, str(pki.ca_dir), now())
    assert not res.ok and res.error == -1 and res.chain == [] and not res.has_key


def test_two_keys_unknown_blocks_and_limits(pki, rfc_pem):
    bl = blocks(rfc_pem)
    key = [b for n, b in bl if "PRIVATE KEY" in n][0]
    cert = bl[0][1]
    ca = str(pki.ca_dir)
    assert native.verify_chain(rfc_pem + key, ca, now()).error == -1
    assert native.verify_chain(rfc_pem + b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
                               ca, now()).error == -1
    many = rfc_pem + cert * 14                              # 2 + 14 = 16 certificates: accepted
    assert native.verify_chain(many, ca, now()).ok
    res = native.verify_chain(many + cert, ca, now())       # 17: refused
    assert (res.ok, res.error, res.error_text) == (False, -1, "too many certificates")
    big = rfc_pem + b"#" * (1 << 20)
    assert native.verify_chain(big, ca, now()).error_text == "PEM too large"
    # text around blocks is ignored, as by OpenSSL's PEM reader
    assert native.verify_chain(b"subject=...\n" + rfc_pem + b"\ntrailer\n", ca, now()).ok


def test_bad_ca_dir(pki, rfc_pem, tmp_path):
    for d in (f"{pki.ca_dir}:/etc/ssl/certs", "", f"{pki.ca_dir}\0x"):
        res = native.verify_chain(rfc_pem, d, now())
        assert not res.ok and res.error == -1 and res.error_text == "bad CA directory"
    res = native.verify_chain(rfc_pem, str(tmp_path / "nonexistent"), now())
    assert not res.ok and res.error == UNABLE_TO_GET_ISSUER_CERT_LOCALLY


def test_timing(pki, rfc_pem, capsys):
    ca = str(pki.ca_dir)
    times = []
    for _ in range(200):
        t = time.perf_counter()
        native.verify_chain(rfc_pem, ca, now())
        times.append(time.perf_counter() - t)
    med = statistics.median(times) * 1000
    with capsys.disabled():
        print(f"\nverify_chain median of 200: {med:.3f} ms (min {min(times) * 1000:.3f} ms)")
    assert med < 50


_WARM_PROBE = """
import sys
from glexec_py.effects import native
warm, ca, good, foreign, revoked, at = sys.argv[1] == "1", *sys.argv[2:6], int(sys.argv[6])
if warm:
    native.crypto_warm()
for path in (good, foreign, revoked):
    r = native.verify_chain(open(path, "rb").read(), ca, at)
    print(r.ok, r.error, r.error_depth, r.tolerated, [c.sha256 for c in r.chain])
"""


def test_crypto_warm_changes_no_verdict(pki, tmp_path):
    """The engine service warms libcrypto before it forks (csrc/cryptowarm.c): a fresh
    process that did must judge chains exactly as one that did not — the good one passes,
    a foreign CA's and a revoked user's fail — so the warm-up kept no trust of its own."""
    import sys
    other = TestPKI(tmp_path / "other", ca_dn="/DC=test/DC=glexec-py/CN=Other CA")
    foreign = other.proxy(other.user(JANE), tmp_path / "foreign.pem")
    carl = pki.user("/DC=test/DC=glexec-py/OU=Users/CN=Carl Revoked")
    revoked = pki.proxy(carl, tmp_path / "carl.pem")
    pki.revoke(carl)
    good = pki.proxy(pki.jane, tmp_path / "good.pem")
    root = Path(__file__).resolve().parents[2]
    out = {}
    for warm in ("0", "1"):
        p = subprocess.run([sys.executable, "-c", _WARM_PROBE, warm, str(pki.ca_dir), str(good), str(foreign),
                            str(revoked), str(now())], cwd=root, capture_output=True, text=True, check=True)
        out[warm] = p.stdout.splitlines()
    assert out["1"] == out["0"]
    assert [line.split()[:2] for line in out["1"]] == [
        ["True", "0"], ["False", str(UNABLE_TO_GET_ISSUER_CERT_LOCALLY)], ["False", str(CERT_REVOKED)]]
