"""explain --token: verified with the site's issuer keys, mapped by "iss,sub" (or groups) as
the engine maps it, its pool lease named by the escaped token key, token bans applied."""
import io
import json
import os
import time
import uuid
from contextlib import redirect_stdout

import pytest

jwt = pytest.importorskip("jwt")
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from glexec_py.core import leases, mapping  # noqa: E402
from glexec_tools.check import cli  # noqa: E402

ISSUER = "https://tokens.check.test"
AUDIENCE = "https://ce.check.test"


def _site(make_site, gridmapfile, bans=None):
    root = make_site({"gridmapfile": gridmapfile, "bans": bans or {}})
    key = ec.generate_private_key(ec.SECP256R1())
    pem = root / "issuer.pem"
    pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    os.chmod(pem, 0o644)
    cfg = json.loads((root / "glexec.yaml").read_text())
    cfg["tokens"] = {"issuers": [{"issuer": ISSUER, "audiences": [AUDIENCE], "keys": str(pem),
                                  "algorithms": ["ES256"]}]}
    (root / "glexec.yaml").write_text(json.dumps(cfg))
    return root, key


def _token(root, key, sub="Pilot-User", groups=("/glexecvo/prod",), **claims):
    now = int(time.time())
    body = {"iss": ISSUER, "sub": sub, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 3600,
            "jti": str(uuid.uuid4()), "wlcg.ver": "1.0", "wlcg.groups": list(groups), **claims}
    path = root / f"token-{uuid.uuid4().hex[:8]}"
    path.write_text(jwt.encode(body, key, algorithm="ES256") + "\n")
    return path


def explain(root, *args):
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli.main(["explain", "--json", "--config", str(root / "glexec.yaml"), "--passwd",
                         str(root / "passwd"), "--group", str(root / "group"), *args])
    return code, json.loads(out.getvalue())


def test_token_pool_lease_uses_the_escaped_token_key(make_site):
    root, key = _site(make_site, f'"{ISSUER},*" .gxp\n')
    code, exp = explain(root, "--token", str(_token(root, key)))
    assert code == 0, exp
    assert exp["verification"]["result"] == "verified"
    assert exp["identity"]["key"] == ["jwt", ISSUER, "Pilot-User"]
    want = leases.lease_name(mapping.token_lease_key(f"{ISSUER},Pilot-User".encode()))
    assert exp["lease"]["lease"] == want.decode() and exp["lease"]["status"] == "would lease"


def test_token_maps_by_group_and_token_ban_refuses(make_site):
    root, key = _site(make_site, '"/glexecvo/prod" alice\n', bans={"token": [f"{ISSUER} Pilot-User"]})
    code, exp = explain(root, "--token", str(_token(root, key)))
    assert code == 1 and exp["verdict"]["reason"] == "banned_token"
    assert exp["mapping"]["tried"][0] == {"source": "voms_local", "key": "/glexecvo/prod", "result": "matched",
                                          "line": f"{root}/grid-mapfile:1", "account": "alice"}


def test_bad_token_is_a_verification_refusal(make_site):
    root, key = _site(make_site, '"/glexecvo/prod" alice\n')
    other = ec.generate_private_key(ec.SECP256R1())
    code, exp = explain(root, "--token", str(_token(root, other)))
    assert code == 1 and exp["verdict"]["step"] == "verify" and exp["verdict"]["exit"] == 201
