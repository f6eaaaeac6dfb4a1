"""WLCG tokens through the installed binary: GLEXEC_CLIENT_TOKEN, verified offline against
a root-owned issuer key, mapped by "iss,sub" or by group, token bans."""
import os
import time
import uuid

import pytest

jwt = pytest.importorskip("jwt")
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

ISSUER = "https://tokens.glexec-py.test"
AUDIENCE = "https://ce.glexec-py.test"


@pytest.fixture(scope="module")
def signing_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def token_site(gx, signing_key):
    keydir = gx.prefix / "etc" / "glexec-py" / "tokens"
    keydir.mkdir(mode=0o755, exist_ok=True)
    pem = signing_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    keyfile = keydir / "issuer.pem"
    keyfile.write_bytes(pem)
    os.chmod(keyfile, 0o644)
    text = (gx.prefix / "etc" / "glexec-py" / "glexec.yaml").read_text()
    text += (f"tokens:\n  issuers:\n    - issuer: {ISSUER}\n      audiences: [{AUDIENCE}]\n"
             f"      keys: {keyfile}\n      algorithms: [ES256]\n")
    from tests.support import install as inst
    inst.write_config_text(gx.prefix, text)
    return gx


def _token(gx, key, *, sub="pilot-user-42", groups=("/glexecvo/prod",), **claims):
    now = int(time.time())
    body = {"iss": ISSUER, "sub": sub, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 3600,
            "jti": str(uuid.uuid4()), "wlcg.ver": "1.0", "wlcg.groups": list(groups)}
    body.update(claims)
    raw = jwt.encode(body, key, algorithm="ES256")
    return gx.file(f"token-{uuid.uuid4().hex[:8]}", raw + "\n", mode=0o600)


def test_token_maps_by_issuer_and_subject(token_site, signing_key):
    gx = token_site
    gx.gridmap([(f"{ISSUER},pilot-user-42", "gxttarget2")])
    r = gx.run(["/usr/bin/id", "-un"], proxy=None, env={"GLEXEC_CLIENT_TOKEN": str(_token(gx, signing_key))})
    gx.assert_granted(r)
    assert r.stdout == b"gxttarget2\n"
    assert r.grants[0]["token"]["subject"] == "pilot-user-42"
    assert r.grants[0]["token"]["issuer"] == ISSUER


def test_token_maps_by_group(token_site, signing_key):
    gx = token_site
    gx.gridmap([("/glexecvo/prod", "gxttarget1")])
    r = gx.run(["/usr/bin/id", "-un"], proxy=None, env={"GLEXEC_CLIENT_TOKEN": str(_token(gx, signing_key))})
    gx.assert_granted(r)
    assert r.stdout == b"gxttarget1\n"


def test_token_signed_by_another_key_is_refused(token_site):
    gx = token_site
    gx.gridmap([(f"{ISSUER},pilot-user-42", "gxttarget2")])
    rogue = ec.generate_private_key(ec.SECP256R1())
    r = gx.run(["/usr/bin/id"], proxy=None, env={"GLEXEC_CLIENT_TOKEN": str(_token(gx, rogue))})
    gx.assert_refused(r, 201, "token_signature")


def test_expired_token_is_refused(token_site, signing_key):
    gx = token_site
    gx.gridmap([(f"{ISSUER},pilot-user-42", "gxttarget2")])
    old = int(time.time()) - 7200
    tok = _token(gx, signing_key, iat=old, nbf=old, exp=old + 600)
    gx.assert_refused(gx.run(["/usr/bin/id"], proxy=None, env={"GLEXEC_CLIENT_TOKEN": str(tok)}),
                      201, "token_expired")


def test_token_and_proxy_together_are_ambiguous(token_site, signing_key):
    gx = token_site
    r = gx.run(["/usr/bin/id"], env={"GLEXEC_CLIENT_TOKEN": str(_token(gx, signing_key))})
    gx.assert_refused(r, 201, "credential_ambiguous")


def test_token_without_token_config_is_refused(gx, signing_key):
    r = gx.run(["/usr/bin/id"], proxy=None, env={"GLEXEC_CLIENT_TOKEN": str(_token(gx, signing_key))})
    gx.assert_refused(r, 201, "token_disabled")


def test_token_file_readable_by_others_is_refused(token_site, signing_key):
    gx = token_site
    tok = _token(gx, signing_key)
    os.chmod(tok, 0o644)
    gx.assert_refused(gx.run(["/usr/bin/id"], proxy=None, env={"GLEXEC_CLIENT_TOKEN": str(tok)}),
                      201, "token_mode")


def test_token_ban_by_issuer_and_subject(token_site, signing_key):
    gx = token_site
    gx.gridmap([(f"{ISSUER},pilot-user-42", "gxttarget2"), (f"{ISSUER},someone-else", "gxttarget2")])
    text = (gx.prefix / "etc" / "glexec-py" / "glexec.yaml").read_text()
    from tests.support import install as inst
    inst.write_config_text(gx.prefix, text + f'bans:\n  token: ["{ISSUER} pilot-user-42"]\n')
    banned = gx.run(["/usr/bin/id"], proxy=None, env={"GLEXEC_CLIENT_TOKEN": str(_token(gx, signing_key))})
    gx.assert_refused(banned, 203, "banned_token")
    other = _token(gx, signing_key, sub="someone-else")
    gx.assert_granted(gx.run(["/usr/bin/id"], proxy=None, env={"GLEXEC_CLIENT_TOKEN": str(other)}))
