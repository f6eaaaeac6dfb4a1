"""Distinct identities never share a pool account, through the installed binary, with real
certificates from the test CA whose subjects collide under LCMAPS's lease naming (the
lower-cased, URL-encoded OpenSSL oneline DN): one class per way the oneline text or the
lower-casing loses information.  The second holder of each pair gets its own account (and
cannot read the first one's files or proxy); both get their own account back."""
import json
import shutil

import pytest

from glexec_py.core import dn as D
from glexec_py.core.leases import lease_name
from tests.privileged.test_e2e_pool import POOL, pool_accounts  # noqa: F401 (fixture)
from tests.support import accounts as acc

B = "/DC=test/DC=glexec-py"
# openssl -subj syntax: '\/' and '\+' are a literal '/' / '+', '\\' a literal backslash.
CLASSES = {
    "case": (B + "/CN=Collide Case", B + "/CN=collide case"),
    "slash_in_value": (B + "/CN=Collide\\\\/CN=Slash",          # 'Collide\' + RDN CN=Slash
                       B + "/CN=Collide\\/CN=Slash"),           # one value 'Collide/CN=Slash'
    "escape_vs_raw": (B + "/CN=Collide Ren\u00e9",              # UTF-8 é
                      B + "/CN=Collide Ren\\\\xC3\\\\xA9"),      # the text '\xC3\xA9'
    "multi_valued": (B + "/CN=Collide\\\\+CN=Multi123",         # RDN {CN=Collide\, CN=Multi123}
                     B + "/CN=Collide\\+CN=Multi123"),          # one value 'Collide+CN=Multi123'
    "control_char": (B + "/CN=Collide \x01ctl",                 # a real U+0001
                     B + "/CN=Collide \\\\x01ctl"),              # the text '\x01'
}

PAYLOAD = """\
umask 077
id -un
echo "$X509_USER_PROXY"
echo "secret of $1" > "$2/secret-$1"
cat "$3" 2>/dev/null && echo READ-OTHER-PROXY
cat "$2/secret-$4" 2>/dev/null && echo READ-OTHER-FILE
exit 0
"""


@pytest.fixture(scope="module")
def creds(pkis):
    """Two certificates and proxies per class, from the installed test CA."""
    out = {}
    pdir = pkis.pki.root / "lease-identity"
    pdir.mkdir(exist_ok=True)
    for name, subjects in CLASSES.items():
        pair = []
        for i, subj in enumerate(subjects):
            user = pkis.pki.user(subj)
            pair.append(pkis.pki.proxy(user, pdir / f"{name}-{i}.pem"))
        out[name] = pair
    return out


@pytest.fixture
def pool(gx, pool_accounts):  # noqa: F811
    d = gx.prefix / "var" / "lib" / "glexec-py" / "gridmapdir"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(mode=0o755)
    for name in POOL:
        (d / name).touch(mode=0o644)
    gx.gridmap([("*", ".gxtpool")])
    # By default a subject whose one-line text is ambiguous is refused before mapping
    # (docs/namespaces.md); the lease layer must keep the identities apart on its own, as
    # at a site that turns the namespace check off.
    # One pilot takes the whole (two-account) pool on purpose: no per-caller limit.
    gx.config(mapping={"gridmapdir": str(d), "max_leases_per_caller": 0},
              credentials={"namespace_policy": "ignore"})
    yield d
    shutil.rmtree(d, ignore_errors=True)
    for a in pool_accounts:
        acc.kill_uid_processes({a.uid})
        acc._remove_default_proxy(a.uid)


def _run(gx, proxy_src, me, other, other_proxy):
    p = gx.file(f"proxy-{me}.pem", proxy_src.read_bytes(), mode=0o600)
    script = gx.script("payload.sh", PAYLOAD)
    r = gx.run(["/bin/sh", str(script), me, str(gx.out), other_proxy or "/nonexistent", other],
               proxy=p)
    gx.assert_granted(r)
    account, proxy = r.stdout.decode().splitlines()[:2]
    return r, account, proxy


@pytest.mark.parametrize("cls", sorted(CLASSES))
def test_colliding_subjects_get_distinct_accounts(gx, pool, creds, cls):
    first, second = creds[cls]
    ra, acc_a, proxy_a = _run(gx, first, "a", "b", None)
    rb, acc_b, proxy_b = _run(gx, second, "b", "a", proxy_a)
    # the two really are distinct identities whose LCMAPS lease names collide
    ida, idb = ra.grants[0]["identity"], rb.grants[0]["identity"]
    assert ida["key"][0] == idb["key"][0] == "x509" and ida["key"] != idb["key"]
    assert ida["key"][1] == D.canonical(D.parse_canonical(ida["key"][1]))
    assert lease_name(ida["subject"].encode("latin-1")) == lease_name(idb["subject"].encode("latin-1"))
    # ... and never share an account, its files or its proxy
    assert acc_a != acc_b and {acc_a, acc_b} == set(POOL)
    assert b"READ-OTHER" not in rb.stdout, rb
    la, lb = ra.grants[0]["lease"], rb.grants[0]["lease"]
    assert la["name"] == lease_name(ida["subject"].encode("latin-1")).decode()   # LCMAPS's name
    assert lb["name"] != la["name"] and "~" in lb["name"]                 # its own lease
    assert la["owner"] == ida["key"] and lb["owner"] == idb["key"]
    for rec in ra.records + rb.records:                                   # grant and end
        assert rec["identity"]["key"] in (ida["key"], idb["key"])
    # each identity gets its own account back, in either order
    _, again_b, _ = _run(gx, second, "b2", "a", proxy_a)
    _, again_a, _ = _run(gx, first, "a2", "b", proxy_b)
    assert (again_a, again_b) == (acc_a, acc_b)
    # the lease metadata names the owners
    meta = {n: json.loads((pool / ".glexec-py" / n).read_text()) for n in POOL}
    assert meta[acc_a]["owner"] == ida["key"] and meta[acc_b]["owner"] == idb["key"]
