"""Options every bench shares: where its throw-away files go and which accounts and ids it
uses, so a bench runs on a site's own machine as well as on the test VM.

    --base-dir DIR       root-owned directory for everything a bench creates (prefixes, run
                         dirs, gridmapdirs, PKIs); default /var/lib/glexec-py-tests, or
                         $GLEXEC_BENCH_BASE.  Every ancestor must be root-owned and not
                         group/other-writable (the engine's trust checks; never /tmp).
    --pool-prefix NAME   name of the pool whose entries a lease bench creates in its own
                         gridmapdir (``NAME00001``...): nothing in passwd is needed.

bench/invoke.py and bench/lease_lock.py run real calls and need real accounts; by default
they create the test suite's throw-away ``gxt*`` accounts (ids 47000-47179, under the
machine-wide session lock) and remove them afterwards.  With ``--pilot`` and ``--target``
(and ``--pool`` for pool mapping) they use existing accounts instead and create or remove
none; ``--uid-range MIN:MAX`` is then the mapped accounts' allowed range written to
glexec.yaml (mapping.min_uid/max_uid).
"""
import os
import tempfile
from pathlib import Path

DEFAULT_BASE = "/var/lib/glexec-py-tests"


def add_base_dir(ap):
    ap.add_argument("--base-dir", default=os.environ.get("GLEXEC_BENCH_BASE", DEFAULT_BASE),
                    help="root-owned directory for the bench's files (default %(default)s)")


def add_pool_prefix(ap, default):
    ap.add_argument("--pool-prefix", default=default,
                    help="pool name of the bench's gridmapdir entries (default %(default)s)")


def add_accounts(ap, pool=True):
    g = ap.add_argument_group("accounts (default: create the throw-away gxt* test accounts)")
    g.add_argument("--pilot", help="existing account that calls glexec (the pilot)")
    g.add_argument("--target", help="existing account a DN maps to (local mapping)")
    if pool:
        g.add_argument("--pool", nargs="+", metavar="ACCOUNT",
                       help="existing accounts of one pool (names = prefix + digits) for pool mapping")
    g.add_argument("--uid-range", default="1000:60000", metavar="MIN:MAX",
                   help="mapping.min_uid:max_uid in the bench's glexec.yaml (default %(default)s)")


def uid_range(args):
    low, _, high = args.uid_range.partition(":")
    return int(low), int(high)


def existing_accounts(args):
    """True if the bench uses the site's accounts (--pilot/--target), False to create gxt*."""
    given = [x for x in (args.pilot, args.target) if x]
    if given and len(given) != 2:
        raise SystemExit("bench: --pilot and --target go together")
    return bool(given)


def base_dir(args):
    """``--base-dir``, created root 0755 if missing; SystemExit unless it and its ancestors
    are root-owned and not group/other-writable."""
    base = Path(args.base_dir).resolve()
    base.mkdir(mode=0o755, parents=True, exist_ok=True)
    for d in (base, *base.parents):
        st = d.lstat()
        if st.st_uid != 0 or st.st_mode & 0o022:
            raise SystemExit(f"bench: {d} must be root-owned and not group/other-writable")
    return str(base)


def scratch_dir(args, tag):
    """A fresh root-owned 0755 directory ``<base>/<tag>-<random>``."""
    d = tempfile.mkdtemp(prefix=f"{tag}-", dir=base_dir(args))
    os.chmod(d, 0o755)
    return d
