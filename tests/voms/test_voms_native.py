"""csrc/sigverify.c through glexec_py.effects.native: signature algorithms, exact-bytes
semantics, garbage input, and the DER chain check used for VOMS server certificates."""
import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings, strategies as st

from glexec_py.effects import native
from tests.voms.conftest import tlv

TBS = tlv(0x30, tlv(0x02, b"\x01") + tlv(0x04, b"attributes to be signed"))
_NULL = b"\x05\x00"


def _alg(oid_hex, params=_NULL):
    return tlv(0x30, tlv(0x06, bytes.fromhex(oid_hex)) + params)


def _selfsigned(key):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sig test")])
    now = datetime.datetime(2025, 1, 1)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(7).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=9000)))
    algo = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return b.sign(key, algo).public_bytes(serialization.Encoding.DER)


def _bits(sig):
    return tlv(0x03, b"\x00" + sig)


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize("h,oid", [(hashes.SHA1(), "2a864886f70d010105"), (hashes.SHA256(), "2a864886f70d01010b"),
                                   (hashes.SHA384(), "2a864886f70d01010c"), (hashes.SHA512(), "2a864886f70d01010d")])
def test_rsa_pkcs1(rsa_key, h, oid):
    cert = _selfsigned(rsa_key)
    sig = rsa_key.sign(TBS, padding.PKCS1v15(), h)
    assert native.verify_signature(cert, _alg(oid), TBS, _bits(sig))
    assert not native.verify_signature(cert, _alg(oid), TBS[:-1] + b"!", _bits(sig))
    bad = bytearray(sig)
    bad[5] ^= 1
    assert not native.verify_signature(cert, _alg(oid), TBS, _bits(bytes(bad)))
    # an algorithm that does not fit the key
    assert not native.verify_signature(cert, _alg("2a8648ce3d040302", b""), TBS, _bits(sig))


def test_rsa_pss(rsa_key):
    cert = _selfsigned(rsa_key)
    sig = rsa_key.sign(TBS, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    sha256 = tlv(0x30, tlv(0x06, bytes.fromhex("608648016503040201")) + _NULL)
    params = tlv(0x30, tlv(0xA0, sha256) + tlv(0xA1, tlv(0x30, tlv(0x06, bytes.fromhex("2a864886f70d010108")) + sha256))
                 + tlv(0xA2, tlv(0x02, b"\x20")))
    assert native.verify_signature(cert, _alg("2a864886f70d01010a", params), TBS, _bits(sig))


def test_ecdsa_and_ed25519():
    k = ec.generate_private_key(ec.SECP256R1())
    sig = k.sign(TBS, ec.ECDSA(hashes.SHA256()))
    assert native.verify_signature(_selfsigned(k), _alg("2a8648ce3d040302", b""), TBS, _bits(sig))
    e = ed25519.Ed25519PrivateKey.generate()
    assert native.verify_signature(_selfsigned(e), _alg("2b6570", b""), TBS, _bits(e.sign(TBS)))


def test_tbs_must_be_one_complete_sequence(rsa_key):
    cert = _selfsigned(rsa_key)
    sig = _bits(rsa_key.sign(TBS, padding.PKCS1v15(), hashes.SHA256()))
    alg = _alg("2a864886f70d01010b")
    assert native.verify_signature(cert, alg, TBS, sig)
    assert not native.verify_signature(cert, alg, TBS + b"\x00", sig)
    assert not native.verify_signature(cert, alg + b"\x00", TBS, sig)
    assert sig[4] == 0
    assert not native.verify_signature(cert, alg, TBS, sig[:4] + b"\x01" + sig[5:])  # unused bits


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=300), st.binary(max_size=40), st.binary(max_size=64), st.binary(max_size=64))
def test_garbage_never_verifies(cert, alg, tbs, sig):
    assert native.verify_signature(cert, alg, tbs, sig) is False


def test_der_chain(venv):
    import time
    now = int(time.time())
    host = ssl.PEM_cert_to_DER_cert(venv.pki.voms_host.cert.read_text())
    assert native.verify_der_chain([host], str(venv.pki.ca_dir), now) == (True, 0, 0)
    ok, err, depth = native.verify_der_chain([host], str(venv.pki.ca_dir), now + 10 * 365 * 86400)
    assert not ok and err in (10, 12)        # certificate (or CRL) expired
    ok, err, _ = native.verify_der_chain([_selfsigned(ec.generate_private_key(ec.SECP256R1()))],
                                         str(venv.pki.ca_dir), now)
    assert not ok and err == 18              # self-signed, not trusted
    assert native.verify_der_chain([b"junk"], str(venv.pki.ca_dir), now) == (False, -1, 0)
    assert native.verify_der_chain([], str(venv.pki.ca_dir), now)[0] is False
    assert native.verify_der_chain([host], "a:b", now)[0] is False
    # a proxy is never accepted as a VOMS server certificate
    p = venv.pki.proxy(venv.alice, venv.path("chainproxy"))
    pem = p.read_text()
    ders = [ssl.PEM_cert_to_DER_cert(b[b.index("-----BEGIN CERTIFICATE-----"):] + "-----END CERTIFICATE-----\n")
            for b in pem.split("-----END CERTIFICATE-----")[:-1] if "BEGIN CERTIFICATE" in b]
    ok, err, _ = native.verify_der_chain(ders, str(venv.pki.ca_dir), now)
    assert not ok


def _ders(pem):
    return [ssl.PEM_cert_to_DER_cert(b[b.index("-----BEGIN CERTIFICATE-----"):] + "-----END CERTIFICATE-----\n")
            for b in pem.split("-----END CERTIFICATE-----")[:-1] if "BEGIN CERTIFICATE" in b]


def test_a_proxy_never_signs_voms_attributes(venv):
    """A proxy among the certificates handed in refuses the chain (X509_V_ERR_PROXY_-
    CERTIFICATES_NOT_ALLOWED, 40) even where libcrypto's path building leaves it out: the
    signer's own chain verifies, an extra ordinary certificate is harmless, an extra proxy
    is not."""
    import time
    now, ca = int(time.time()), str(venv.pki.ca_dir)
    host = ssl.PEM_cert_to_DER_cert(venv.pki.voms_host.cert.read_text())
    proxy, eec = _ders(venv.pki.proxy(venv.alice, venv.path("signerproxy")).read_text())
    assert native.verify_der_chain([host], ca, now) == (True, 0, 0)
    assert native.verify_der_chain([host, eec], ca, now) == (True, 0, 0)
    assert native.verify_der_chain([proxy, eec], ca, now) == (False, 40, 0)
    assert native.verify_der_chain([host, proxy, eec], ca, now) == (False, 40, 1)
