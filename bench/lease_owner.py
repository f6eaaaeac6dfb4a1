#!/usr/bin/python3.11
"""Cost of lease owners on the pool-mapped hot path, same run, interleaved (as root).

    sudo /usr/bin/python3.11 bench/lease_owner.py [--rounds 2000] [--pool 200]

Two identical gridmapdirs; on each, ``GridmapDir.acquire`` as the engine called it before
(``owner=None``: reuse by LCMAPS name) and as it calls it now (``owner=``: record the owner,
compare it on reuse), alternating call by call so machine noise hits both alike:

    reuse  the identity's existing lease (the common case: the same user again)
    new    a new lease for a new identity (``sync="none"``: no fsync, so the difference is
           not drowned in ~7 ms of disk flushes)

plus the per-call work the engine adds before ``acquire``: the canonical DN from the
certificate's subject DER (core.identity.from_proxy) and the lease owner (core.mapping.lease_owner).
Prints medians in microseconds and the ratio now/before.
"""
import argparse
import os
import shutil
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench import benchsite                              # noqa: E402
from glexec_py.core import dn as D                      # noqa: E402
from glexec_py.core.identity import Identity            # noqa: E402
from glexec_py.effects.gridmapdir import GridmapDir     # noqa: E402
from glexec_py.core.mapping import lease_owner as _lease_owner  # noqa: E402

POOL = b"gxtbench"          # --pool-prefix


def _name_der():
    """/DC=org/DC=example/OU=Users/CN=Jane Doe 12345 as DER."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    return x509.Name([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "org"),
                      x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example"),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Users"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Jane Doe 12345")]).public_bytes()


def make_dir(args, n):
    d = benchsite.scratch_dir(args, "lease-owner-bench")
    for i in range(1, n + 1):
        os.close(os.open(os.path.join(d, f"{POOL.decode()}{i:05d}"), os.O_WRONLY | os.O_CREAT, 0o644))
    return d


def identity(i):
    text = f"/DC=org/DC=example/OU=Users/CN=Jane Doe {i}"
    ident = Identity("x509", "/CN=CA", text, (), (), 0, 0, "", {},
                     canonical=D.canonical(D.parse_slash(text)))
    return ident.mapping_name, ident


def main():
    global POOL
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--pool", type=int, default=200)
    benchsite.add_base_dir(ap)
    benchsite.add_pool_prefix(ap, POOL.decode())
    args = ap.parse_args()
    POOL = args.pool_prefix.encode()
    dirs = [make_dir(args, args.pool), make_dir(args, args.pool)]
    t = {k: [] for k in ("reuse-before", "reuse-now", "new-before", "new-now",
                         "canonical", "owner")}
    try:
        stores = [GridmapDir(d, sync="none") for d in dirs]
        text, ident = identity(0)
        owner = _lease_owner(ident, text)
        stores[0].acquire(text, POOL)
        stores[1].acquire(text, POOL, owner=owner)
        der = _name_der()
        for r in range(args.rounds):
            c0 = time.perf_counter()
            stores[0].acquire(text, POOL)
            c1 = time.perf_counter()
            stores[1].acquire(text, POOL, owner=owner)
            c2 = time.perf_counter()
            t["reuse-before"].append(c1 - c0)
            t["reuse-now"].append(c2 - c1)
            c0 = time.perf_counter()
            D.canonical(D.parse_der_name(der))
            c1 = time.perf_counter()
            _lease_owner(ident, text)
            c2 = time.perf_counter()
            t["canonical"].append(c1 - c0)
            t["owner"].append(c2 - c1)
        for i in range(1, args.pool - 1):
            nt, ni = identity(i)
            no = _lease_owner(ni, nt)
            c0 = time.perf_counter()
            stores[0].acquire(nt, POOL)
            c1 = time.perf_counter()
            stores[1].acquire(nt, POOL, owner=no)
            c2 = time.perf_counter()
            t["new-before"].append(c1 - c0)
            t["new-now"].append(c2 - c1)
        for s in stores:
            s.close()
    finally:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    med = {k: statistics.median(v) * 1e6 for k, v in t.items()}
    for k in ("reuse", "new"):
        print(f"{k:6s} before {med[k + '-before']:8.1f} us   now {med[k + '-now']:8.1f} us   "
              f"ratio {med[k + '-now'] / med[k + '-before']:.2f}")
    print(f"engine adds: canonical DN from DER {med['canonical']:.1f} us, "
          f"lease owner {med['owner']:.1f} us (per pool-mapped call)")


if __name__ == "__main__":
    main()
