"""Signatures by libcrypto (csrc/jws.c through effects.native.verify_jws) and keys as DER
SubjectPublicKeyInfo built/read in pure Python (core.tokens) and checked by libcrypto
(effects.native.check_pubkey).

PyJWT and ``cryptography`` are the oracles here: for tokens PyJWT (and scitokens-create)
made over every algorithm, and for mutated tokens and signatures, our verification accepts
exactly when PyJWT's does.  Then the refusals PyJWT is not asked about: a key of the wrong
type or curve, ES signatures of the wrong length or DER-encoded, PSS with another salt
length or MGF1 hash, alg confusion, keys libcrypto does not accept."""
import base64
import hashlib
import hmac
import json
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from hypothesis import HealthCheck, given, settings, strategies as st

from glexec_py.core import der, tokens
from glexec_py.effects import native
from glexec_py.errors import CallerError, ConfigError

from .conftest import (AUD, ISS_A, ISS_SCI, NOW, issuer, jwt, make_policy, parse, scitokens_create,
                       verify_token, wlcg_claims)

ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
_HASH = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def unb64(s):
    return base64.urlsafe_b64decode(s + b"=" * (-len(s) % 4))


def spki_der(pub):
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def pem(pub):
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def jwk_of(pub, **extra):
    if isinstance(pub, rsa.RSAPublicKey):
        d = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(pub))
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        # RFC 7518 6.2.1.2: full-length coordinates (PyJWT 2.6 drops leading zero octets,
        # which our parser refuses as before, so the JWK is written here)
        size = (pub.curve.key_size + 7) // 8
        nums = pub.public_numbers()
        d = {"kty": "EC", "crv": {256: "P-256", 384: "P-384", 521: "P-521"}[pub.curve.key_size],
             "x": b64(nums.x.to_bytes(size, "big")).decode(), "y": b64(nums.y.to_bytes(size, "big")).decode()}
    else:
        d = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(pub))
    d.update(extra)
    return d


@pytest.fixture(scope="module")
def privs():
    """One private key per algorithm family (RSA 2048 and 3072, the three curves, Ed25519)."""
    return {"rsa": rsa.generate_private_key(65537, 2048), "rsa3072": rsa.generate_private_key(65537, 3072),
            "P-256": ec.generate_private_key(ec.SECP256R1()), "P-384": ec.generate_private_key(ec.SECP384R1()),
            "P-521": ec.generate_private_key(ec.SECP521R1()), "Ed25519": ed25519.Ed25519PrivateKey.generate()}


KEY_FOR = {"RS256": "rsa", "RS384": "rsa3072", "RS512": "rsa", "PS256": "rsa", "PS384": "rsa3072",
           "PS512": "rsa", "ES256": "P-256", "ES384": "P-384", "ES512": "P-521", "EdDSA": "Ed25519"}


def our_key(priv, kid="k"):
    """The TokenKey our parser makes from the key's JWK (as an issuer publishes it)."""
    (k,) = parse(json.dumps({"keys": [jwk_of(priv.public_key(), kid=kid)]}).encode())
    return k


def split(token):
    h, p, s = token.split(b".")
    return h + b"." + p, unb64(s)


def ours(key, alg, token):
    si, sig = split(token)
    return native.verify_jws(key.spki, alg, si, sig) == 1


def pyjwt(pub, alg, token):
    try:
        jwt.PyJWS().decode_complete(token, key=pub, algorithms=[alg])
    except jwt.exceptions.PyJWTError:
        return False
    return True


def with_sig(token, sig):
    si, _ = split(token)
    return si + b"." + b64(sig)


# --- keys: DER SubjectPublicKeyInfo built / read in pure Python ----------------------

@pytest.mark.parametrize("name", ["rsa", "rsa3072", "P-256", "P-384", "P-521", "Ed25519"])
def test_spki_from_jwk_and_pem_equals_cryptography(privs, name):
    """The SPKI we build from a JWK and the one we read from PEM are byte-for-byte what
    cryptography (OpenSSL) writes for the same key."""
    pub = privs[name].public_key()
    k = our_key(privs[name])
    assert k.spki == spki_der(pub)
    (p,) = parse(pem(pub))
    assert p.spki == spki_der(pub) and (p.kty, p.crv) == (k.kty, k.crv)
    assert native.check_pubkey(k.spki)[:2] == (k.kty, k.crv)


def test_oid_constants():
    for oid, enc in tokens._OID_DER.items():
        tag, s, e = der.tl(enc, 0, len(enc), ValueError)
        assert tag == 6 and e == len(enc) and der.oid(enc[s:e], ValueError) == oid
    for crv, (oid, enc, _) in tokens._CURVES.items():
        assert der.oid(enc[2:], ValueError) == oid


def test_der_encode_lengths():
    for n in (0, 1, 127, 128, 255, 256, 65535, 65536):
        b = der.encode(0x04, b"x" * n)
        assert der.tl(b, 0, len(b), ValueError) == (0x04, len(b) - n, len(b))


def _bad_pem(der_bytes):
    return b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(der_bytes) + b"-----END PUBLIC KEY-----\n"


def test_keys_libcrypto_or_our_parser_refuse(privs, tmp_path):
    good = spki_der(privs["P-256"].public_key())
    for other in (ec.generate_private_key(ec.SECP256K1()), ec.generate_private_key(ec.BrainpoolP256R1()),
                  ed448.Ed448PrivateKey.generate(), x25519.X25519PrivateKey.generate()):
        d = spki_der(other.public_key())
        assert native.check_pubkey(d) is None
        with pytest.raises(ConfigError):
            parse(_bad_pem(d))
    for d in (good + b"\0", good[:-1], good[:20], b"", b"\x30\x00"):
        assert native.check_pubkey(d) is None
        with pytest.raises(ConfigError):
            parse(_bad_pem(d))
    # RSA-PSS (id-RSASSA-PSS) and DSA keys, made by openssl
    for args in (["-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048"],
                 ["-paramfile", str(tmp_path / "dsa.param")]):
        if "-paramfile" in args:
            subprocess.run(["openssl", "genpkey", "-genparam", "-algorithm", "DSA", "-pkeyopt",
                            "dsa_paramgen_bits:1024", "-out", str(tmp_path / "dsa.param")], check=True,
                           capture_output=True)
        key = subprocess.run(["openssl", "genpkey", *args], check=True, capture_output=True).stdout
        pub = subprocess.run(["openssl", "pkey", "-pubout", "-outform", "DER"], input=key, check=True,
                             capture_output=True).stdout
        assert native.check_pubkey(pub) is None
        with pytest.raises(ConfigError):
            parse(_bad_pem(pub))
    # explicit curve parameters instead of a named curve
    explicit = subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout",
                               "-param_enc", "explicit"], check=True, capture_output=True).stdout
    pub = subprocess.run(["openssl", "ec", "-pubout", "-outform", "DER", "-param_enc", "explicit"],
                         input=explicit, check=True, capture_output=True).stdout
    with pytest.raises(ConfigError, match="named curve"):
        parse(_bad_pem(pub))


def test_points_off_the_curve_and_bad_coordinates(privs):
    j = jwk_of(privs["P-384"].public_key())
    for x, y in ((j["x"], j["x"]), (b64(b"\0" * 48).decode(), b64(b"\0" * 48).decode()),
                 (j["x"], b64((int.from_bytes(unb64(j["y"].encode()), "big") ^ 1).to_bytes(48, "big")).decode())):
        with pytest.raises(ConfigError, match="not a valid EC"):
            parse(json.dumps({"keys": [dict(j, x=x, y=y)]}).encode())
    with pytest.raises(ConfigError, match="a P-256 coordinate is 1 to 32 bytes"):
        parse(json.dumps({"keys": [dict(j, crv="P-256")]}).encode())
    with pytest.raises(ConfigError, match="not supported"):
        parse(json.dumps({"keys": [dict(j, crv="secp256k1")]}).encode())
    ed = jwk_of(privs["Ed25519"].public_key())
    with pytest.raises(ConfigError, match="32 bytes"):
        parse(json.dumps({"keys": [dict(ed, x=b64(b"\1" * 31).decode())]}).encode())
    with pytest.raises(ConfigError, match="not supported"):
        parse(json.dumps({"keys": [dict(ed, crv="Ed448")]}).encode())


def test_rsa_exponent_and_modulus(privs):
    j = jwk_of(privs["rsa"].public_key())
    n = int.from_bytes(unb64(j["n"].encode()), "big")
    for e in (1, 2, 4, 65536):
        with pytest.raises(ConfigError, match="weak"):
            parse(json.dumps({"keys": [dict(j, e=b64(e.to_bytes(4, "big").lstrip(b"\0")).decode())]}).encode())
    with pytest.raises(ConfigError, match="not a valid RSA"):
        parse(json.dumps({"keys": [dict(j, n=b64((n - 1).to_bytes(256, "big")).decode())]}).encode())
    assert parse(json.dumps({"keys": [dict(j, e="Aw")]}).encode())[0].kty == "RSA"    # e = 3 is allowed


# --- differential: our verification agrees with PyJWT's -----------------------------

@pytest.fixture(scope="module")
def made(privs):
    """alg -> (TokenKey, public key object, token signed by PyJWT)."""
    out = {}
    for alg in ALGS:
        priv = privs[KEY_FOR[alg]]
        out[alg] = (our_key(priv), priv.public_key(),
                    jwt.encode(wlcg_claims(), priv, algorithm=alg, headers={"kid": "k"}).encode())
    return out


def _mutants(token):
    si, sig = split(token)
    h, p = si.split(b".")
    yield token
    for i in (0, len(sig) // 2, len(sig) - 1):
        yield with_sig(token, sig[:i] + bytes([sig[i] ^ 1]) + sig[i + 1:])
    yield with_sig(token, sig[:-1])
    yield with_sig(token, sig + b"\0")
    yield with_sig(token, b"\0" + sig)
    yield with_sig(token, sig[1:])
    yield with_sig(token, b"")
    yield with_sig(token, b"\0" * len(sig))
    yield with_sig(token, sig[len(sig) // 2:] + sig[:len(sig) // 2])        # s||r
    yield h + b"." + b64(json.dumps(wlcg_claims(sub="root")).encode()) + b"." + b64(sig)
    yield h + b"." + p + b"x." + b64(sig)


@pytest.mark.parametrize("alg", ALGS)
def test_differential_pyjwt_every_algorithm(made, alg):
    key, pub, token = made[alg]
    assert ours(key, alg, token) and pyjwt(pub, alg, token)
    for m in _mutants(token):
        assert ours(key, alg, m) == pyjwt(pub, alg, m), (alg, m[-40:])
    # the whole verifier accepts it too
    pol = make_policy(issuer(ISS_A, algorithms=[alg]))
    assert verify_token(token, pol, {ISS_A: (key,)}, NOW).alg == alg


@pytest.mark.parametrize("alg", ALGS)
def test_differential_signatures_of_other_algorithms(made, alg):
    """A signature made for another alg (and so often another key) under this alg's key."""
    key, pub, token = made[alg]
    for other in ALGS:
        _, sig = split(made[other][2])
        m = with_sig(token, sig)
        assert ours(key, alg, m) == pyjwt(pub, alg, m) == (other == alg), (alg, other)


def test_ecdsa_high_s_agrees(made):
    """(r, n - s) is the other valid ECDSA signature: both implementations accept it."""
    n = {"ES256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551}
    key, pub, token = made["ES256"]
    _, sig = split(token)
    r, s = sig[:32], int.from_bytes(sig[32:], "big")
    m = with_sig(token, r + (n["ES256"] - s).to_bytes(32, "big"))
    assert ours(key, "ES256", m) == pyjwt(pub, "ES256", m)


_PROP = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@_PROP
@given(st.data())
def test_differential_random_mutations(made, data):
    alg = data.draw(st.sampled_from(ALGS))
    key, pub, token = made[alg]
    si, sig = split(token)
    sig, si = bytearray(sig), bytearray(si)
    for _ in range(data.draw(st.integers(0, 4))):
        target = data.draw(st.sampled_from(["sig", "sig", "si"]))
        buf = sig if target == "sig" else si
        op = data.draw(st.sampled_from(["flip", "set", "delete", "insert", "truncate"]))
        if not buf:
            break
        i = data.draw(st.integers(0, len(buf) - 1))
        if op == "flip":
            buf[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set":
            buf[i] = data.draw(st.integers(0, 255))
        elif op == "delete":
            del buf[i]
        elif op == "insert":
            buf.insert(i, data.draw(st.integers(0, 255)))
        else:
            del buf[i:]
    mine = native.verify_jws(key.spki, alg, bytes(si), bytes(sig)) == 1
    assert mine == pyjwt(pub, alg, bytes(si) + b"." + b64(bytes(sig)))


def test_differential_scitokens_create(ec_sci):
    """ES256 tokens from Debian's scitokens-create (scitokens-cpp), JWKS and PEM keys."""
    for keyfile in (ec_sci.pub_pem, json.dumps({"keys": [ec_sci.jwk()]}).encode()):
        (key,) = parse(keyfile)
        for profile in ("scitokens2", "wlcg"):
            raw = scitokens_create(ec_sci, f"aud={AUD}", "sub=alice", profile=profile)
            assert ours(key, "ES256", raw) and pyjwt(ec_sci.pub, "ES256", raw)
            for m in _mutants(raw):
                assert ours(key, "ES256", m) == pyjwt(ec_sci.pub, "ES256", m)
    import time
    pol = make_policy(issuer(ISS_SCI, profile="scitokens", algorithms=["ES256"]))
    raw = scitokens_create(ec_sci, f"aud={AUD}", "sub=bob")
    assert verify_token(raw, pol, {ISS_SCI: (key,)}, time.time()).subject == "bob"


# --- refusals that are ours alone ------------------------------------------------------

def test_key_type_or_curve_must_fit_the_alg(made, privs):
    """Every (alg, key) pair whose key type/curve does not fit: 0, even with a signature that
    is valid for that key under the fitting alg."""
    fits = {"RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"), "P-256": ("ES256",),
            "P-384": ("ES384",), "P-521": ("ES512",), "Ed25519": ("EdDSA",)}
    for alg in ALGS:
        _, _, token = made[alg]
        for other_alg in ALGS:
            key = made[other_alg][0]
            kind = key.crv or "RSA"
            if alg not in fits[kind]:
                assert native.verify_jws(key.spki, alg, *split(made[other_alg][2])) == 0, (alg, other_alg)
                assert native.verify_jws(key.spki, alg, *split(token)) == 0, (alg, other_alg)


def test_es256_with_a_secp256k1_key(made):
    """ES256K (secp256k1) has the same 64-byte signatures as ES256: the curve check alone
    refuses a valid secp256k1/SHA-256 signature under ES256."""
    k1 = ec.generate_private_key(ec.SECP256K1())
    si, _ = split(made["ES256"][2])
    r, s = decode_dss_signature(k1.sign(si, ec.ECDSA(hashes.SHA256())))
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    k1.public_key().verify(encode_dss_signature(r, s), si, ec.ECDSA(hashes.SHA256()))   # it is valid
    assert native.verify_jws(spki_der(k1.public_key()), "ES256", si, sig) == 0


@pytest.mark.parametrize("alg,size", [("ES256", 32), ("ES384", 48), ("ES512", 66)])
def test_es_signature_lengths(made, privs, alg, size):
    key, _, token = made[alg]
    si, sig = split(token)
    assert len(sig) == 2 * size and native.verify_jws(key.spki, alg, si, sig) == 1
    for bad in (sig[:-1], sig + b"\0", b"\0" + sig, sig[1:], sig[:size], sig + sig, b"",
                sig[:size] + b"\0" + sig[size:], b"\0" + sig[:size] + b"\0" + sig[size:]):
        assert native.verify_jws(key.spki, alg, si, bad) == 0, len(bad)
    # the DER ECDSA-Sig-Value (what a JWS must not carry) of a valid signature
    priv = privs[KEY_FOR[alg]]
    der_sig = priv.sign(si, ec.ECDSA(_HASH[alg[2:]]()))
    assert native.verify_jws(key.spki, alg, si, der_sig) == 0
    r, s = decode_dss_signature(der_sig)
    assert native.verify_jws(key.spki, alg, si, r.to_bytes(size, "big") + s.to_bytes(size, "big")) == 1
    if size == 66:      # P-521 coordinates written in 65 bytes (a known encoder bug) are refused
        assert native.verify_jws(key.spki, alg, si, r.to_bytes(66, "big")[1:] + s.to_bytes(66, "big")[1:]) == 0


@pytest.mark.parametrize("alg", ["PS256", "PS384", "PS512"])
def test_pss_salt_length_and_mgf(made, privs, alg):
    key, pub, token = made[alg]
    si, _ = split(token)
    h = _HASH[alg[2:]]()
    priv = privs[KEY_FOR[alg]]

    def pss(salt, mgf_hash=None):
        return priv.sign(si, padding.PSS(padding.MGF1(mgf_hash or _HASH[alg[2:]]()), salt), _HASH[alg[2:]]())

    assert native.verify_jws(key.spki, alg, si, pss(h.digest_size)) == 1
    for salt in (0, h.digest_size - 1, h.digest_size + 1, padding.PSS.MAX_LENGTH):
        sig = pss(salt)
        assert native.verify_jws(key.spki, alg, si, sig) == 0, salt
        assert not pyjwt(pub, alg, si + b"." + b64(sig))
    sig = pss(h.digest_size, hashes.SHA1())
    assert native.verify_jws(key.spki, alg, si, sig) == 0
    assert native.verify_jws(key.spki, "RS" + alg[2:], si, pss(h.digest_size)) == 0     # PSS is not v1.5
    v15 = priv.sign(si, padding.PKCS1v15(), _HASH[alg[2:]]())
    assert native.verify_jws(key.spki, alg, si, v15) == 0                              # v1.5 is not PSS
    assert native.verify_jws(key.spki, "RS" + alg[2:], si, v15) == 1


def test_alg_confusion(made, privs):
    key, pub, token = made["RS256"]
    si, sig = split(token)
    ec_key = made["ES256"][0]
    # RS256 token checked against an EC key, and against the issuer's EC key in the verifier
    assert native.verify_jws(ec_key.spki, "RS256", si, sig) == 0
    pol = make_policy(issuer(ISS_A, algorithms=["RS256", "ES256"]))
    with pytest.raises(CallerError) as ei:
        verify_token(token, pol, {ISS_A: (tokens.TokenKey("k", "RSA", None, None, ec_key.spki, "forged"),)}, NOW)
    assert ei.value.reason == "token_signature"
    # HMAC keyed with the public key bytes (PEM, DER, JWK JSON): never an algorithm here
    for secret in (pem(pub), spki_der(pub), json.dumps(jwk_of(pub)).encode()):
        for alg, dg in (("HS256", hashlib.sha256), ("HS384", hashlib.sha384), ("HS512", hashlib.sha512)):
            mac = hmac.new(secret, si, dg).digest()
            assert native.verify_jws(key.spki, alg, si, mac) == -1
            assert native.verify_jws(key.spki, "RS256", si, mac) == 0
    for alg in ("none", "None", "", "rs256", "RS256 ", "ES256K", "Ed25519", "EdDSA\0", None, 7, b"RS256"):
        assert native.verify_jws(key.spki, alg, si, sig) == -1, alg


def test_weak_rsa_key_never_verifies(privs):
    """Keys under 2048 bits are refused at load; the native verifier refuses them as well."""
    weak = rsa.generate_private_key(65537, 1024)
    token = jwt.encode(wlcg_claims(), weak, algorithm="RS256").encode()
    assert pyjwt(weak.public_key(), "RS256", token)          # PyJWT would take it
    assert native.verify_jws(spki_der(weak.public_key()), "RS256", *split(token)) == 0


def test_undecodable_key_cannot_be_checked(made):
    key, _, token = made["RS256"]
    for spki in (b"", key.spki[:-1], key.spki + b"\0", b"\x30\x03\x02\x01\x01"):
        assert native.verify_jws(spki, "RS256", *split(token)) == -1


def test_malformed_verdict_from_the_verifier(made):
    """A verifier answer other than 1/0 refuses the token as token_malformed."""
    key, _, token = made["RS256"]
    pol = make_policy(issuer(ISS_A, algorithms=["RS256"]))
    with pytest.raises(CallerError) as ei:
        tokens.verify_token(token, pol, {ISS_A: (key,)}, NOW, verify=lambda *a: -1)
    assert ei.value.reason == "token_malformed"


# --- the token path imports neither PyJWT nor cryptography ------------------------------

_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from glexec_py import engine                                   # what every call loads
sys.path.append("/usr/lib/python3/dist-packages")             # as the engine does
from glexec_py.core import tokens                              # engine.verify_token's imports
from glexec_py.effects import native, tokenkeys, userfiles     # noqa: F401
spec = json.load(sys.stdin)
out = []
for iss, keyfile, raw, alg in spec["cases"]:
    pol = tokens.TokenPolicy({"issuers": [{"issuer": iss, "audiences": [spec["aud"]], "keys": ["/etc/k"],
                                           "algorithms": [alg]}]})
    keys = {iss: tokens.parse_key_file(keyfile.encode(), "k", native.check_pubkey)}
    out.append(tokens.verify_token(raw.encode(), pol, keys, spec["now"], verify=native.verify_jws).subject)
print(json.dumps({"subjects": out, "modules": sorted(m for m in sys.modules
                  if m.split(".")[0] in ("jwt", "cryptography"))}))
"""


def test_token_path_imports_neither_jwt_nor_cryptography(privs, made):
    cases = []
    for alg in ("RS256", "ES256", "EdDSA", "PS512", "ES512"):
        key, pub, token = made[alg]
        keyfile = (json.dumps({"keys": [jwk_of(pub, kid="k")]}).encode() if alg != "ES256" else pem(pub))
        cases.append((ISS_A, keyfile.decode(), token.decode(), alg))
    spec = {"cases": cases, "aud": AUD, "now": NOW}
    import os
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run(["/usr/bin/python3.11", "-I", "-S", "-B", "-X", "importtime", "-c", _CHILD, repo],
                       input=json.dumps(spec), capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["subjects"] == ["user-1"] * len(cases)
    assert out["modules"] == []
    imported = [line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")]
    assert "glexec_py.core.tokens" in imported and "glexec_py._native" in imported
    assert not [m for m in imported if m.split(".")[0] in ("jwt", "cryptography")]
