"""Side by side with the real LCMAPS poolaccount plugin (reference section 10): same lease
names, same accounts in the same order on two copies of one gridmapdir, and each reuses the
other's leases.  Needs root, liblcmaps and gcc; creates real accounts gxtpool001.. (uid
47200..), removed afterwards (also on failure)."""
import os
import shutil
import subprocess

import pytest

from glexec_py.core.leases import lease_name
from glexec_py.effects.gridmapdir import GridmapDir
from glexec_py.errors import NotAuthorized
from tests.leases.conftest import make_pool
from tests.support import accounts as A

HERE = os.path.dirname(os.path.abspath(__file__))
MODDIR = "/usr/lib/lcmaps"
NPOOL = 6
UID0 = 47200
GROUP = "gxtpool"


def _lcmaps_missing():
    if not os.path.exists("/usr/include/lcmaps/lcmaps.h"):
        return "liblcmaps-dev (lcmaps/lcmaps.h) is not installed"
    if not os.path.exists(os.path.join(MODDIR, "lcmaps_poolaccount.mod")):
        return "lcmaps-plugins-basic-poolaccount is not installed"
    if not shutil.which("gcc"):
        return "gcc is not installed"
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        out = ""
    if "liblcmaps.so" not in out:
        return "liblcmaps is not installed"
    return None


pytestmark = pytest.mark.skipif(_lcmaps_missing() is not None,
                                reason=f"real LCMAPS unavailable: {_lcmaps_missing()}")


@pytest.fixture(scope="module")
def pool_accounts():
    if os.geteuid() != 0:
        pytest.skip("needs root (creates real pool accounts)")
    A.cleanup_leftovers(UID0, UID0 + 99)
    try:
        A.create_group(GROUP, UID0)
        names = []
        for i in range(1, NPOOL + 1):
            A.create_user(f"gxtpool{i:03d}", UID0 + i, GROUP)
            names.append(f"gxtpool{i:03d}")
        yield names
    finally:
        for i in range(1, NPOOL + 1):
            A.remove_user(f"gxtpool{i:03d}")
        A.remove_group(GROUP)


class Lcmaps:
    def __init__(self, scratch, gmd):
        self.dir = os.path.join(scratch, "lcmaps-" + os.path.basename(gmd))
        os.makedirs(self.dir)
        self.harness = os.path.join(scratch, "harness")
        if not os.path.exists(self.harness):
            subprocess.run(["gcc", "-O2", "-o", self.harness,
                            os.path.join(HERE, "lcmaps_harness.c"), "-llcmaps"], check=True)
        with open(os.path.join(self.dir, "grid-mapfile"), "w") as f:
            f.write('"*" .gxtpool\n')
        with open(os.path.join(self.dir, "lcmaps.db"), "w") as f:
            f.write(f"path = {MODDIR}\n"
                    f'poolaccount = "lcmaps_poolaccount.mod -gridmapfile {self.dir}/grid-mapfile"\n'
                    f'              "-gridmapdir {gmd} -max_mappings_per_credential 5"\n'
                    'good = "lcmaps_dummy_good.mod"\n'
                    "standard:\npoolaccount -> good\n")
        self.env = {"PATH": "/usr/bin:/bin", "LCMAPS_DIR": self.dir,
                    "LCMAPS_DB_FILE": "lcmaps.db", "LCMAPS_DEBUG_LEVEL": "3",
                    "LCMAPS_LOG_FILE": os.path.join(self.dir, "lcmaps.log")}

    def map(self, dn, mapcount=0):
        p = subprocess.run([self.harness, "fqan", dn, "-m", str(mapcount)], env=self.env,
                           capture_output=True)
        line = p.stdout.decode("latin-1").strip()
        if not line.startswith("OK "):
            return None
        f = dict(kv.split("=", 1) for kv in line.split()[1:])
        return f["user"].encode(), f["poolindex"].encode("latin-1")


REQUESTS = [
    (b"/C=NL/O=Example Grid/OU=Users/CN=Jane Doe", 0),
    (b"/C=NL/O=Example Grid/OU=Users/CN=John Smith", 0),
    (b"/C=NL/O=Example Grid/OU=Users/CN=Jane Doe", 0),          # reuse
    (b"/C=NL/O=Example Grid/OU=Users/CN=Ren\\xC3\\xA9", 0),       # OpenSSL oneline escapes
    (b"/C=NL/O=Example Grid/OU=Users/CN=Ren\xc3\xa9", 0),         # raw UTF-8: the quirk
    (b"/C=NL/O=Example Grid/OU=Users/CN=\xc3\xa9a", 0),
    (b"/C=NL/O=Example Grid/OU=Users/CN=Jane Doe", 2),          # mapcount
    (b"/C=NL/O=Example Grid/OU=Users/CN=Ren\xc3\xa9", 0),         # reuse of the quirky lease
    (b"/C=NL/O=Example Grid/OU=Users/CN=jane doe", 0),          # case folded: reuse
    (b"/C=NL/O=Example Grid/OU=Users/CN=Overflow", 0),          # pool exhausted
]


def state(gmd):
    by_ino = {}
    for n in os.listdir(gmd):
        if not n.startswith("."):
            st = os.lstat(os.path.join(gmd, n))
            by_ino.setdefault(st.st_ino, []).append((n, st.st_nlink))
    return sorted(sorted(v) for v in by_ino.values())


def _two_copies(scratch):
    a, b = os.path.join(scratch, "gmd-lcmaps"), os.path.join(scratch, "gmd-glexec")
    for d in (a, b):
        os.mkdir(d, 0o755)
        make_pool(d, "gxtpool", NPOOL)
    assert os.listdir(a) == os.listdir(b), "copies list in different readdir order"
    return a, b


def test_same_leases_same_accounts_same_order(scratch, pool_accounts):
    a, b = _two_copies(scratch)
    lc = Lcmaps(scratch, a)
    steps = []
    with GridmapDir(b) as g:
        for dn, m in REQUESTS:
            want = lc.map(dn, m)
            try:
                acc, lease, _ = g.acquire(dn, b"gxtpool", mapcount=m)
                got = (acc, lease)
            except NotAuthorized:
                got = None
            steps.append((dn, m, want, got))
            assert got == want, (dn, m, want, got)
            assert state(a) == state(b)
    assert steps[-1][2] is None                           # both refused the 7th identity
    assert steps[4][3][1] == steps[7][3][1]
    assert b"%ff%ff" in steps[4][3][1]


def test_each_reuses_the_others_leases(scratch, pool_accounts):
    a, b = _two_copies(scratch)
    la, lb = Lcmaps(scratch, a), Lcmaps(scratch, b)
    first = REQUESTS[:2] + REQUESTS[3:5]
    made_by_lcmaps = [la.map(dn, m) for dn, m in first]
    with GridmapDir(a) as g:
        for (dn, m), want in zip(first, made_by_lcmaps):
            assert g.acquire(dn, b"gxtpool", mapcount=m) == (want[0], want[1], True)
        assert [f.kind for f in g.fsck()] == ["meta_missing"] * 4   # adopted on repair
        g.repair(g.fsck())
        assert g.fsck() == []
    with GridmapDir(b) as g:
        made_by_us = [g.acquire(dn, b"gxtpool", mapcount=m)[:2] for dn, m in first]
    assert [lb.map(dn, m) for dn, m in first] == made_by_us
    # LCMAPS is not confused by our dot-files, and our fsck accepts its touches
    with GridmapDir(b) as g:
        assert g.fsck() == []


def _owner(dn_text):
    """The lease owner the engine records for a certificate printing as ``dn_text``."""
    from glexec_py.core import dn as D
    from glexec_py.core.identity import Identity
    from glexec_py.core.mapping import lease_owner as _lease_owner
    text = dn_text.decode("latin-1")
    ident = Identity("x509", "/CN=CA", text, (), (), 0, 0, "", {},
                     canonical=D.canonical(D.parse_slash(text)))
    return _lease_owner(ident, ident.mapping_name)


def test_owner_mode_keeps_lcmaps_names_for_ordinary_dns(scratch, pool_accounts):
    """With owners recorded (what the engine does), ordinary certificate DNs still get
    LCMAPS's lease names and accounts, in LCMAPS's order; only a case variant of a DN that
    already holds a lease is given an alternate name instead of the other's account."""
    a, b = _two_copies(scratch)
    lc = Lcmaps(scratch, a)
    ordinary = [r for r in REQUESTS if b"\xc3" not in r[0] and b"jane doe" not in r[0]
                and b"Overflow" not in r[0]]
    with GridmapDir(b) as g:
        for dn, m in ordinary:
            want = lc.map(dn, m)
            got = g.acquire(dn, b"gxtpool", mapcount=m, owner=_owner(dn))[:2]
            assert got == want, (dn, m, want, got)
            assert state(a) == state(b)
        assert g.fsck() == []
        folded = b"/C=NL/O=Example Grid/OU=Users/CN=jane doe"
        lcmaps_says = lc.map(folded)
        acc, lease, _ = g.acquire(folded, b"gxtpool", owner=_owner(folded))
        assert lcmaps_says[1] == lease_name(folded)          # LCMAPS: Jane Doe's lease ...
        assert lcmaps_says[0] == g.acquire(ordinary[0][0], b"gxtpool",
                                           owner=_owner(ordinary[0][0]))[0]   # ... and account
        assert acc != lcmaps_says[0] and b"~" in lease         # we: an account of its own
