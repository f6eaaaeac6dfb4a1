"""Fixtures for the token tests: keys made with openssl / cryptography, tokens made with
Debian's ``scitokens-create`` (scitokens-cpp) and with PyJWT (WLCG claims with arrays).

PyJWT and ``cryptography`` are test oracles and token factories only: the code under test
parses keys in pure Python and verifies signatures with libcrypto through the native module
(``effects.native.check_pubkey`` / ``verify_jws``), injected here as the engine does."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

jwt = pytest.importorskip("jwt")   # Debian python3-jwt

from cryptography.hazmat.primitives import serialization                      # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa                  # noqa: E402

from glexec_py.core import tokens                                              # noqa: E402
from glexec_py.effects import native                                           # noqa: E402

ISS_A = "https://wlcg-a.example.org/"
ISS_B = "https://wlcg-b.example.org"
ISS_SCI = "https://sci.example.org"
AUD = "https://ce.example.org"
NOW = int(time.time())


class Keys:
    def __init__(self, priv, kid):
        self.priv, self.kid = priv, kid
        self.pub = priv.public_key()
        self.priv_pem = priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
        self.pub_pem = self.pub.public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)

    def jwk(self, **extra):
        alg = "RS256" if isinstance(self.priv, rsa.RSAPrivateKey) else "ES256"
        algo = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
        d = json.loads(algo.to_jwk(self.pub))
        d.update(kid=self.kid, use="sig")
        d.update(extra)
        return d

    def jwks(self, *others):
        return json.dumps({"keys": [self.jwk()] + [o.jwk() for o in others]}).encode()


@pytest.fixture(scope="session")
def rsa_a():
    return Keys(rsa.generate_private_key(65537, 2048), "rsa-a")


@pytest.fixture(scope="session")
def rsa_b():
    return Keys(rsa.generate_private_key(65537, 2048), "rsa-b")


@pytest.fixture(scope="session")
def ec_sci(tmp_path_factory):
    """EC P-256 key made with openssl (as a site would), used with scitokens-create."""
    d = tmp_path_factory.mktemp("ec")
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout",
                    "-out", str(d / "ec.key")], check=True, capture_output=True)
    subprocess.run(["openssl", "ec", "-in", str(d / "ec.key"), "-pubout", "-out", str(d / "ec.pub")],
                   check=True, capture_output=True)
    priv = serialization.load_pem_private_key((d / "ec.key").read_bytes(), None)
    k = Keys(priv, "sci-1")
    k.key_path, k.pub_path = str(d / "ec.key"), str(d / "ec.pub")
    return k


def parse(data, source="test-keys"):
    return tokens.parse_key_file(data, source, native.check_pubkey)


def verify_token(raw, policy, keys_by_issuer, now):
    """core.tokens.verify_token with the engine's verifier (libcrypto, effects.native)."""
    return tokens.verify_token(raw, policy, keys_by_issuer, now, verify=native.verify_jws)


@pytest.fixture(scope="session")
def keys_by_issuer(rsa_a, rsa_b, ec_sci):
    return {ISS_A: parse(rsa_a.jwks()), ISS_B: parse(rsa_b.jwks()),
            ISS_SCI: parse(ec_sci.pub_pem)}


def issuer(iss, **kw):
    d = {"issuer": iss, "audiences": [AUD], "keys": ["/etc/glexec-py/tokens/x.jwks"]}
    d.update(kw)
    return d


def make_policy(*issuers, **top):
    if not issuers:
        issuers = (issuer(ISS_A), issuer(ISS_B), issuer(ISS_SCI, profile="scitokens", algorithms=["ES256"]))
    d = {"issuers": list(issuers)}
    d.update(top)
    return tokens.TokenPolicy(d, "test.yaml")


@pytest.fixture
def policy():
    return make_policy()


def wlcg_claims(iss=ISS_A, sub="user-1", **kw):
    c = {"iss": iss, "sub": sub, "aud": AUD, "exp": NOW + 3600, "iat": NOW - 10, "nbf": NOW - 10,
         "jti": f"jti-{sub}", "wlcg.ver": "1.0", "scope": "compute.create compute.read",
         "wlcg.groups": ["/cms/pilot", "/cms", "/cms/uscms"]}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


def sign(claims, keys, alg=None, headers=None):
    """A token signed with PyJWT (kid = keys.kid unless headers say otherwise)."""
    alg = alg or ("RS256" if isinstance(keys.priv, rsa.RSAPrivateKey) else "ES256")
    h = {"kid": keys.kid, "typ": "JWT"}
    h.update(headers or {})
    h = {k: v for k, v in h.items() if v is not None}
    return jwt.encode(claims, keys.priv, algorithm=alg, headers=h).encode()


def scitokens_create(keys, *claims, issuer=ISS_SCI, profile="scitokens2", kid=None):
    exe = shutil.which("scitokens-create")
    if exe is None:
        pytest.skip("scitokens-create (Debian scitokens-cpp) not installed")
    cmd = [exe, "--cred", keys.pub_path, "--key", keys.key_path, "--keyid", kid or keys.kid,
           "--issuer", issuer, "--profile", profile]
    for c in claims:
        cmd += ["--claim", c]
    out = subprocess.run(cmd, check=True, capture_output=True)
    return out.stdout.strip()
