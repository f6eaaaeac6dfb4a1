"""The pool-mapping hot path stays lean (issue 12 §3a): a fresh interpreter started as the
shim starts the engine (-I -S -B) imports the engine and every module a local- or
pool-mapped call loads, then really does the pool part on a root-owned gridmapdir -- the
engine's mapping decision, a new lease with its owner, the intent record, a reuse, a second
identity's lease and its rollback, the index state, an audit record -- and must not have
imported json, re, enum, threading, hashlib or base64 (json alone costs ~8 ms a call,
threading ~4 ms, hashlib loads OpenSSL)."""
import base64
import hashlib
import json
import marshal
import os
import subprocess

from hypothesis import given, settings, strategies as st

from glexec_py.core import leases
from glexec_py.core.config import config_to_plain, parse_config
from tests.leases.conftest import _ROOT, make_pool

HEAVY = ("json", "re", "enum", "threading", "hashlib", "base64", "functools", "collections", "secrets")

CONFIG = """\
credentials:
  ca_dir: /etc/grid-security/certificates
mapping:
  gridmapfile: /etc/grid-security/grid-mapfile
  gridmapdir: %s
  lock_timeout: 5
audit:
  file: /var/log/glexec-py/audit.jsonl
state_dir: /var/lib/glexec-py
"""

# argv: repo gridmapdir marshalled-config
CHILD = r"""
import marshal, sys
repo, gmd, plain = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
sys.path.insert(0, repo)
from glexec_py import engine                      # what glexec-engine.py imports
sys.path.append("/usr/lib/python3/dist-packages")  # as glexec-engine.py does
# the modules the engine's steps import for a local- or pool-mapped call with a proxy
from glexec_py.core import (audit, authz, config, dn, envplan, gridmap, handoff, identity, mapping,
                            plan, proxychain)
from glexec_py.effects import (accounts, auditlog, configfile, leasestore, native, pam, payload,
                               rootcache, trust, userfiles)
from glexec_py.errors import SystemFault

cfg = config.config_from_plain(marshal.loads(plain))       # as effects.rootcache hands it over
lines = gridmap.parse_gridmap(b'"/DC=test/CN=Alice" .gxtpool\n"/DC=test/CN=Bob" .gxtpool\n', "grid-mapfile")
granted = []
for who, caller in (("Alice", 1000), ("Bob", 1001), ("Alice", 1000)):
    subject = "/DC=test/CN=" + who
    ident = identity.Identity("x509", "/DC=test/CN=CA", subject, (), (), 0, 2**31, "00" * 32, {},
                              canonical=dn.canonical(dn.parse_slash(subject)))
    decision = mapping.decide(lines, cfg.mapping.order, ident.mapping_name, [])
    assert decision.kind == "pool", decision.kind
    key = mapping.lease_key(ident)
    owner = mapping.lease_owner(ident, key)
    assert owner.readable
    with leasestore.open_store(cfg) as store:
        got = store.acquire(key, decision.name, owner=owner, caller=caller,
                            caller_limit=cfg.mapping.max_leases_per_caller,
                            before_link=lambda name: audit.encode({"event": "lease_intent", "lease": name}))
        granted.append((who, got[2]))
        if who == "Bob":
            assert store.rollback(store.created) is True
    record = audit.encode({"event": "grant", "dn": subject, "lease": {"name": got[1], "reused": got[2]}})
    assert record.endswith(b"\n")
try:
    accounts.lookup_target("root", cfg.mapping)          # the account check (refuses uid 0)
except SystemFault:
    pass
assert granted == [("Alice", False), ("Bob", False), ("Alice", True)], granted
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] in %r)))
""" % (HEAVY,)


def test_pool_mapping_path_imports_no_heavy_module(gmd):
    make_pool(gmd, "gxtpool", 3)
    plain = marshal.dumps(config_to_plain(parse_config(CONFIG % gmd, "glexec.yaml")))
    r = subprocess.run(["/usr/bin/python3.11", "-I", "-S", "-B", "-c", CHILD, _ROOT, gmd, plain.hex()],
                       capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == [], f"the hot path imported {r.stdout.split()}"
    # and it did write what the lease store writes (metadata JSON, the index state)
    meta = os.path.join(gmd, ".glexec-py")
    records = [json.loads(open(os.path.join(meta, n), "rb").read()) for n in os.listdir(meta)
               if not n.startswith(".")]
    assert [r["dn"] for r in records] == ["/DC=test/CN=Alice"]


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.tuples(st.just("x509"), st.text()), st.tuples(st.just("jwt"), st.text(), st.text())),
       st.lists(st.binary(max_size=12).map(lambda b: b.decode("latin-1").encode("latin-1")), max_size=3),
       st.integers(0, 9999))
def test_owner_digest_is_the_documented_formula(key, groups, mapcount):
    """base32(sha256(JSON[key, groups, mapcount])[:16]), lower case, unpadded -- as
    computed with json, hashlib and base64 (the names on disk must not change)."""
    blob = json.dumps([list(key), [g.decode("latin-1") for g in groups], mapcount],
                      ensure_ascii=True, separators=(",", ":")).encode()
    want = base64.b32encode(hashlib.sha256(blob).digest()[:16]).decode().rstrip("=").lower().encode()
    assert leases.owner_digest(key, groups, mapcount) == want
