"""glexec_py.effects.tokenkeys: keys only from root-owned, not group/other-writable local
files (needs root to create root-owned files; skipped otherwise)."""
import json
import os
import shutil
import uuid

import pytest

from glexec_py.core.tokens import TokenPolicy
from glexec_py.effects import tokenkeys
from glexec_py.errors import SystemFault

from .conftest import AUD, ISS_A, ISS_B, NOW, sign, verify_token, wlcg_claims

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="key files must be root-owned: run as root")

BASE = "/var/lib/glexec-py-tests"


@pytest.fixture
def kdir():
    os.makedirs(BASE, 0o755, exist_ok=True)
    d = f"{BASE}/tokenkeys-{uuid.uuid4().hex[:8]}"
    os.mkdir(d, 0o755)
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d)


def put(d, name, data, mode=0o644, uid=0):
    p = f"{d}/{name}"
    with open(p, "wb") as f:
        f.write(data)
    os.chmod(p, mode)
    os.chown(p, uid, 0)
    return p


def pol(*issuers):
    return TokenPolicy({"issuers": [{"issuer": i, "audiences": [AUD], "keys": k} for i, k in issuers]})


def fault(path):
    with pytest.raises(SystemFault) as ei:
        tokenkeys.read_key_file(path)
    assert ei.value.reason == "token_keys" and ei.value.exit_code == 202
    return ei.value


def test_jwks_and_pem_end_to_end(kdir, rsa_a, rsa_b):
    pa = put(kdir, "a.jwks", rsa_a.jwks())
    pb = put(kdir, "b.pem", rsa_b.pub_pem, mode=0o600)
    p = pol((ISS_A, pa), (ISS_B, [pb]))
    store = tokenkeys.KeyStore(p)
    assert verify_token(sign(wlcg_claims(), rsa_a), p, store, NOW).key == (ISS_A, "user-1")
    assert verify_token(sign(wlcg_claims(ISS_B), rsa_b), p, store, NOW).kid is None
    assert set(tokenkeys.load_all(p)) == {ISS_A, ISS_B}


def test_lazy_store_loads_only_the_tokens_issuer(kdir, rsa_a):
    pa = put(kdir, "a.jwks", rsa_a.jwks())
    p = pol((ISS_A, pa), (ISS_B, f"{kdir}/missing.jwks"))
    store = tokenkeys.KeyStore(p)
    verify_token(sign(wlcg_claims(), rsa_a), p, store, NOW)
    assert list(store._cache) == [ISS_A]
    with pytest.raises(SystemFault):
        store[ISS_B]


def test_refusals(kdir, rsa_a):
    good = put(kdir, "good.jwks", rsa_a.jwks())
    tokenkeys.read_key_file(good)
    fault(put(kdir, "gw.jwks", rsa_a.jwks(), mode=0o664))
    fault(put(kdir, "ow.jwks", rsa_a.jwks(), mode=0o646))
    fault(put(kdir, "user.jwks", rsa_a.jwks(), uid=65534))
    fault(f"{kdir}/missing.jwks")
    fault("relative.jwks")
    os.symlink(good, f"{kdir}/link.jwks")
    fault(f"{kdir}/link.jwks")
    os.mkdir(f"{kdir}/dir.jwks")
    fault(f"{kdir}/dir.jwks")
    os.mkfifo(f"{kdir}/fifo.jwks")
    fault(f"{kdir}/fifo.jwks")
    fault(put(kdir, "huge.jwks", b" " * (tokenkeys.MAX_KEY_FILE + 1)))


def test_insecure_directory(kdir, rsa_a):
    sub = f"{kdir}/open"
    os.mkdir(sub)
    os.chmod(sub, 0o777)
    fault(put(sub, "a.jwks", rsa_a.jwks()))
    sub2 = f"{kdir}/user"
    os.mkdir(sub2, 0o755)
    os.chown(sub2, 65534, 0)
    fault(put(sub2, "a.jwks", rsa_a.jwks()))


def test_private_or_bad_key_is_a_system_fault(kdir, rsa_a):
    for name, data in (("priv.pem", rsa_a.priv_pem), ("junk.jwks", b"{not json"),
                       ("oct.jwks", json.dumps({"keys": [{"kty": "oct", "k": "AAAA"}]}).encode())):
        p = pol((ISS_A, put(kdir, name, data, mode=0o600)))
        with pytest.raises(SystemFault) as ei:
            tokenkeys.KeyStore(p)[ISS_A]
        assert ei.value.reason == "token_keys"


def test_duplicate_kid_across_files(kdir, rsa_a):
    p = pol((ISS_A, [put(kdir, "1.jwks", rsa_a.jwks()), put(kdir, "2.jwks", rsa_a.jwks())]))
    with pytest.raises(SystemFault, match="duplicate kid"):
        tokenkeys.load_all(p)
