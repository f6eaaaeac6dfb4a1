#!/usr/bin/python3
"""How long one pool-mapped call holds the gridmapdir lock: this tree against another
(issue 12 §3b: the account lookup moved out of the locked region), same run, as root.

    sudo bench/lease_lock.py --baseline TREE [--runs 40]

TREE is another source tree (e.g. ``git archive <commit> | tar -x -C TREE``).  Each tree's
``glexec_py`` is copied under ``--base-dir`` and byte-compiled as ``make install`` does; every
run is a fresh ``python3.11 -I -S -B`` process (as the shim starts the engine, so the NSS
modules are loaded in that call) that does what engine.lease_pool_account does: the
identity's owner and lease name, ``GridmapDir.acquire`` with ``accounts.lookup_target`` as
the account check.  Cases: ``new`` (a fresh gridmapdir: a new lease) and ``reuse`` (the
identity's lease exists).  Measured in the child: the time from holding the lock to having
released it, summed over the call's locked sections (their number shown), and the whole
acquire.  Round-robin over trees and cases; medians.

Accounts: two pool accounts, created (``gxtbpool01``/``02``, ids 47160-47162) or given
with ``--pool`` (see bench/benchsite.py; ``--uid-range`` is the mapped accounts' range).
"""
import argparse
import marshal
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import benchsite  # noqa: E402
from glexec_py.core.config import config_to_plain, parse_config  # noqa: E402
from tests.support import accounts as acc  # noqa: E402

PY = "/usr/bin/python3.11"
POOL_GROUP, POOL_GID, POOL_FIRST_UID = "gxtbpool", 47160, 47161
CONFIG = """\
credentials:
  ca_dir: /etc/grid-security/certificates
mapping:
  gridmapfile: /etc/grid-security/grid-mapfile
  gridmapdir: %s
  min_uid: %d
  max_uid: %d
audit:
  file: /var/log/glexec-py/audit.jsonl
state_dir: /var/lib/glexec-py
"""

# argv: lib gridmapdir marshalled-config pool
CHILD = r"""
import marshal, sys, time
lib, gmd, plain, pool = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), sys.argv[4]
sys.path.insert(0, lib)
from glexec_py import engine
sys.path.append("/usr/lib/python3/dist-packages")
from glexec_py.core import config, dn, identity, mapping
from glexec_py.effects import accounts, gridmapdir, leasestore
held = []
enter, leave = gridmapdir._Locked.__enter__, gridmapdir._Locked.__exit__
def timed_enter(self):
    r = enter(self)
    self.t0 = time.perf_counter()
    return r
def timed_exit(self, *exc):
    try:
        return leave(self, *exc)
    finally:
        held.append(time.perf_counter() - self.t0)
gridmapdir._Locked.__enter__, gridmapdir._Locked.__exit__ = timed_enter, timed_exit
cfg = config.config_from_plain(marshal.loads(plain))
subject = "/DC=test/DC=glexec-py/CN=Lock Bench"
ident = identity.Identity("x509", "/DC=test/CN=CA", subject, (), (), 0, 2**31, "00" * 32, {},
                          canonical=dn.canonical(dn.parse_slash(subject)))
key = mapping.lease_key(ident)
t0 = time.perf_counter()
with leasestore.open_store(cfg) as store:
    account, lease, reused = store.acquire(key, pool, owner=mapping.lease_owner(ident, key), caller=4242,
                                           account_check=lambda name: accounts.lookup_target(name, cfg.mapping))
t1 = time.perf_counter()
print("%.6f %.6f %d %d" % (sum(held), t1 - t0, len(held), reused))
"""


def lib_copy(tree, dest):
    shutil.copytree(Path(tree) / "glexec_py", dest / "glexec_py", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for so in (REPO / "glexec_py").glob("_native*.so"):
        shutil.copy(so, dest / "glexec_py")
    subprocess.run([PY, "-I", "-S", "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(dest)],
                   check=True)
    return dest


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", required=True, metavar="TREE", help="the other source tree")
    ap.add_argument("--runs", type=int, default=40)
    benchsite.add_base_dir(ap)
    ap.add_argument("--pool", nargs="+", metavar="ACCOUNT", help="existing pool accounts (default: create gxtbpool*)")
    ap.add_argument("--uid-range", default="1000:60000", metavar="MIN:MAX")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    top = Path(benchsite.scratch_dir(args, "lease-lock-bench"))
    made = []
    lock = acc.session_lock() if not args.pool else None
    try:
        if lock:
            lock.__enter__()
            acc.create_group(POOL_GROUP, POOL_GID)
            made = [acc.create_user(f"{POOL_GROUP}{i + 1:02d}", POOL_FIRST_UID + i, POOL_GROUP) for i in range(2)]
        pool = args.pool or [a.name for a in made]
        pool_name = pool[0].rstrip("0123456789")
        low, high = benchsite.uid_range(args)
        trees = {"before": lib_copy(args.baseline, top / "before"), "after": lib_copy(REPO, top / "after")}
        samples = {(t, c): [] for t in trees for c in ("new", "reuse")}
        sections = {}
        for i in range(args.runs + 1):
            for tree, lib in trees.items():
                gmd = top / f"gmd-{tree}"
                shutil.rmtree(gmd, ignore_errors=True)
                gmd.mkdir(mode=0o755)
                for name in pool:
                    (gmd / name).touch(mode=0o644)
                plain = marshal.dumps(config_to_plain(parse_config(CONFIG % (gmd, low, high), "glexec.yaml"))).hex()
                for case in ("new", "reuse"):
                    out = subprocess.run([PY, "-I", "-S", "-B", "-c", CHILD, str(lib), str(gmd), plain, pool_name],
                                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
                    if out.returncode != 0:
                        raise SystemExit(f"bench: {tree} {case} failed:\n{out.stderr[-2000:]}")
                    hold, total, n, reused = out.stdout.split()
                    assert int(reused) == (case == "reuse"), out.stdout
                    if i:   # the first round warms the page cache
                        samples[(tree, case)].append((float(hold), float(total)))
                        sections[(tree, case)] = int(n)
        print(f"gridmapdir lock held per pool-mapped call, {args.runs} fresh processes per tree and case, medians (ms)")
        print(f"  {'tree':7s} {'case':6s} {'lock held':>10s} {'sections':>9s} {'acquire':>9s}")
        for (tree, case), rows in samples.items():
            print(f"  {tree:7s} {case:6s} {statistics.median(r[0] for r in rows) * 1000:10.3f} "
                  f"{sections[(tree, case)]:9d} {statistics.median(r[1] for r in rows) * 1000:9.3f}")
        print(f"load average: {' '.join('%.2f' % x for x in os.getloadavg())}")
    finally:
        for a in made:
            acc.remove_user(a.name)
        if made:
            acc.remove_group(POOL_GROUP)
        if lock:
            lock.release()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
