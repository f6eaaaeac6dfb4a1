"""atheris target: glexec_py.core.tokens.verify_token (WLCG / SciTokens JWT validator).

Fixed policy (three issuers: RSA JWKS, Ed25519 JWKS, EC P-256 PEM key; leeway 60 s) and
fixed keys kept under /var/lib/glexec-py-tests/fuzz-work/jwt (so the corpus stays valid
across runs; "now" is fixed too).  Seeds: valid tokens of each issuer, tokens signed by an
attacker key with the trusted kid, alg none, HS256 keyed with the public key, expired,
wrong aud.  A custom mutator mutates the decoded header/payload JSON or the signature of
one segment and re-encodes it, so mutations get past base64.

The code under test is the engine's: keys parsed by ``core.tokens.parse_key_file`` and
checked by libcrypto (``effects.native.check_pubkey``), signatures verified by libcrypto
through the native module (``effects.native.verify_jws``, csrc/jws.c).  PyJWT only makes
the seeds.

Oracles (beyond "no crash"):
  * verify_token raises nothing but CallerError (reason token_*, exit code 201);
  * never accepts a token not signed by the trusted key: on acceptance the signature is
    re-checked independently with `cryptography`'s own key objects and padding classes
    (not our native verifier, not PyJWT) over header.payload against the issuer's trusted
    public keys;
  * on acceptance: alg is in the allow-list (never none/HS*), iss is a configured issuer,
    aud contains a configured audience, exp + leeway >= now, nbf/iat - leeway <= now, and
    the identity fields equal the signed claims.
"""
import base64
import json
import os
import random
import sys

import atheris

import _common
from _common import check

with atheris.instrument_imports(include=["glexec_py"]):
    from glexec_py.core import tokens
    from glexec_py.effects import native
    from glexec_py.errors import CallerError

import jwt  # PyJWT: seeds and JWKs only

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

ISS_A, ISS_B, ISS_SCI = "https://wlcg-a.example.org/", "https://wlcg-b.example.org", "https://sci.example.org"
AUD = "https://ce.example.org"
WORK = _common.work_dir("jwt")


def _key(name, make):
    p = os.path.join(WORK, name + ".pem")
    if not os.path.exists(p):
        k = make()
        with open(p, "wb") as f:
            f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    with open(p, "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)


RSA_A = _key("rsa-a", lambda: rsa.generate_private_key(65537, 2048))
ED_B = _key("ed-b", ed25519.Ed25519PrivateKey.generate)
EC_SCI = _key("ec-sci", lambda: ec.generate_private_key(ec.SECP256R1()))
EVIL = _key("evil", lambda: rsa.generate_private_key(65537, 2048))
_now_file = os.path.join(WORK, "now")
if not os.path.exists(_now_file):
    import time
    with open(_now_file, "w") as f:
        f.write(str(int(time.time())))
with open(_now_file) as f:
    NOW = int(f.read())


def _jwk(pub, kid):
    algo = jwt.algorithms.RSAAlgorithm if isinstance(pub, rsa.RSAPublicKey) else jwt.algorithms.OKPAlgorithm
    d = json.loads(algo.to_jwk(pub))
    d.update(kid=kid, use="sig")
    return json.dumps({"keys": [d]}).encode()


def _pem(pub):
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


KEYS = {ISS_A: tokens.parse_key_file(_jwk(RSA_A.public_key(), "rsa-a"), "a.jwks", native.check_pubkey),
        ISS_B: tokens.parse_key_file(_jwk(ED_B.public_key(), "ed-b"), "b.jwks", native.check_pubkey),
        ISS_SCI: tokens.parse_key_file(_pem(EC_SCI.public_key()), "sci.pem", native.check_pubkey)}
TRUSTED = {ISS_A: [RSA_A.public_key()], ISS_B: [ED_B.public_key()], ISS_SCI: [EC_SCI.public_key()]}


def _iss(i, **kw):
    d = {"issuer": i, "audiences": [AUD], "keys": ["/etc/glexec-py/tokens/x"]}
    d.update(kw)
    return d


POLICY = tokens.TokenPolicy({"issuers": [
    _iss(ISS_A), _iss(ISS_B, algorithms=["EdDSA"]),
    _iss(ISS_SCI, profile="scitokens", algorithms=["ES256"])], "leeway": 60}, "fuzz.yaml")

_HASH = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def _b64d(seg):
    return base64.urlsafe_b64decode(seg + b"=" * (-len(seg) % 4))


def _b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def signed_by_trusted_key(tok, alg, iss):
    """Independent check with cryptography: does a trusted key of iss sign header.payload?"""
    h, p, s = tok.split(b".")
    msg, sig = h + b"." + p, _b64d(s)
    for pub in TRUSTED.get(iss, ()):
        try:
            if alg[:2] in ("RS", "PS") and isinstance(pub, rsa.RSAPublicKey):
                pad = (padding.PKCS1v15() if alg[:2] == "RS"
                       else padding.PSS(padding.MGF1(_HASH[alg[2:]]()), padding.PSS.AUTO))
                pub.verify(sig, msg, pad, _HASH[alg[2:]]())
            elif alg[:2] == "ES" and isinstance(pub, ec.EllipticCurvePublicKey):
                n = (pub.curve.key_size + 7) // 8
                if len(sig) != 2 * n:
                    continue
                der = encode_dss_signature(int.from_bytes(sig[:n], "big"), int.from_bytes(sig[n:], "big"))
                pub.verify(der, msg, ec.ECDSA(_HASH[alg[2:]]()))
            elif alg == "EdDSA" and isinstance(pub, ed25519.Ed25519PublicKey):
                pub.verify(sig, msg)
            else:
                continue
            return True
        except (InvalidSignature, ValueError):
            continue
    return False


def TestOneInput(data):
    try:
        ident = tokens.verify_token(data, POLICY, KEYS, NOW, verify=native.verify_jws)
    except CallerError as e:
        check(e.reason.startswith("token_") and e.exit_code == 201, f"odd CallerError {e.reason} {e.exit_code}")
        return
    tok = data.strip(b" \t\r\n")
    header = json.loads(_b64d(tok.split(b".")[0]))
    payload = json.loads(_b64d(tok.split(b".")[1]))
    alg, iss = header.get("alg"), payload.get("iss")
    check(ident.alg == alg and alg in tokens.ALGORITHMS and not alg.upper().startswith("HS"),
          f"accepted alg {alg!r}")
    check(ident.issuer == iss and iss in TRUSTED, f"accepted issuer {iss!r}")
    check(signed_by_trusted_key(tok, alg, iss), f"ACCEPTED A TOKEN NOT SIGNED BY THE TRUSTED KEY: {tok[:300]!r}")
    check(ident.subject == payload.get("sub"), "subject differs from signed sub")
    aud = payload.get("aud")
    check(AUD in ((aud,) if isinstance(aud, str) else tuple(aud)), f"accepted aud {aud!r}")
    check(NOW <= payload["exp"] + POLICY.leeway, "accepted an expired token")
    for c in ("nbf", "iat"):
        if c in payload:
            check(payload[c] - POLICY.leeway <= NOW, f"accepted a token with {c} in the future")


def CustomMutator(data, max_size, seed):
    rnd = random.Random(seed)
    parts = data.split(b".")
    if len(parts) == 3 and rnd.random() < 0.8:
        i = rnd.choice((0, 1, 1, 2))
        try:
            raw = _b64d(parts[i])
        except ValueError:
            raw = parts[i]
        raw = atheris.Mutate(raw, max(len(raw) * 2, 64))
        parts[i] = _b64e(raw)
        out = b".".join(parts)
        return out[:max_size]
    return atheris.Mutate(data, max_size)


def seeds():
    def claims(iss=ISS_A, **kw):
        c = {"iss": iss, "sub": "user-1", "aud": AUD, "exp": NOW + 3600, "iat": NOW - 10, "nbf": NOW - 10,
             "jti": "j-1", "wlcg.ver": "1.0", "scope": "compute.create", "wlcg.groups": ["/cms/pilot", "/cms"]}
        if iss == ISS_SCI:
            del c["wlcg.ver"], c["wlcg.groups"]
            c["ver"] = "scitoken:2.0"
        c.update(kw)
        return c

    def enc(c, key, alg, **h):
        return jwt.encode(c, key, algorithm=alg, headers=h or None).encode()

    def raw(header, payload, sig=b""):
        return _b64e(json.dumps(header).encode()) + b"." + _b64e(json.dumps(payload).encode()) + b"." + sig

    pem_a = _pem(RSA_A.public_key())
    hs = jwt.api_jws.PyJWS()
    return [
        enc(claims(), RSA_A, "RS256", kid="rsa-a", typ="JWT"),
        enc(claims(), RSA_A, "PS384", kid="rsa-a"),
        enc(claims(ISS_B), ED_B, "EdDSA", kid="ed-b"),
        enc(claims(ISS_SCI), EC_SCI, "ES256"),
        enc(claims(), EVIL, "RS256", kid="rsa-a"),                      # attacker key, trusted kid
        enc(claims(exp=NOW - 3600, iat=NOW - 7200, nbf=NOW - 7200), RSA_A, "RS256", kid="rsa-a"),
        enc(claims(aud="https://other.example.org"), RSA_A, "RS256", kid="rsa-a"),
        raw({"alg": "none", "typ": "JWT"}, claims()),
        raw({"alg": "RS256", "kid": "rsa-a", "jwk": {"kty": "RSA"}}, claims(), b"AAAA"),
        _b64e(json.dumps({"alg": "HS256", "kid": "rsa-a"}).encode()) + b"." + _b64e(json.dumps(claims()).encode())
        + b"." + _b64e(__import__("hmac").new(pem_a, _b64e(json.dumps({"alg": "HS256", "kid": "rsa-a"}).encode())
                                              + b"." + _b64e(json.dumps(claims()).encode()), "sha256").digest()),
    ]


if __name__ == "__main__":
    _common.seed(sys.argv, seeds)
    atheris.Setup(sys.argv, TestOneInput, custom_mutator=CustomMutator)
    atheris.Fuzz()
