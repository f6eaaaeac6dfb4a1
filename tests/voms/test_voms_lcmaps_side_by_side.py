"""Side by side with the real LCMAPS (pem mode: verify-proxy plus the VOMS parsing of the
LCMAPS core, reference section 8/10): for each proxy the FQAN list LCMAPS logs at debug
level 5, canonicalised, equals what check_voms returns in lcmaps mode (an empty list = all
dropped).  LCMAPS passes FQANs on as spelled in the AC (``/testvo``); glexec-py returns the
canonical full form (``/testvo/Role=NULL/Capability=NULL``), same meaning.

Deliberate differences (glexec-py stricter; not in the matrix, tested in
test_voms_check.py): FQANs with control characters; group/other-writable vomsdir files;
an expired VOMS server certificate (VOMS tolerates it); extra lines of an .lsc chain are
allowed by both, but a chain shorter than ac_certs is refused by both."""
import os
import re
import shutil
import subprocess

import pytest

from glexec_py.core.bans import canonical_fqan
from tests.support.pki import TestPKI
from tests.voms.conftest import CA_DN, VOMS_DN, ac_ext_of, resign_proxy, run_check, voms_fake

HERE = os.path.dirname(os.path.abspath(__file__))
MODDIR = "/usr/lib/lcmaps"
_FQAN_RE = re.compile(r"\.fqan_unix\[\d+\]\.fqan\s*:\s(.*)$")


def _missing():
    if not os.path.exists("/usr/include/lcmaps/lcmaps.h"):
        return "liblcmaps-dev is not installed"
    for m in ("lcmaps_verify_proxy.mod", "lcmaps_localaccount.mod"):
        if not os.path.exists(os.path.join(MODDIR, m)):
            return f"{m} is not installed"
    if not shutil.which("gcc"):
        return "gcc is not installed"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=f"real LCMAPS unavailable: {_missing()}")


class Lcmaps:
    def __init__(self, d, ca_dir, vomsdir):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        self.harness = os.path.join(d, "harness")
        subprocess.run(["gcc", "-O2", "-o", self.harness, os.path.join(HERE, "lcmaps_pem_harness.c"),
                        "-llcmaps"], check=True)
        with open(os.path.join(d, "grid-mapfile"), "w") as f:
            f.write('"/DC=test/DC=glexec-py/CN=Alice" nobody\n"/DC=test/DC=glexec-py/CN=Bob" nobody\n')
        with open(os.path.join(d, "lcmaps.db"), "w") as f:
            f.write(f"path = {MODDIR}\n"
                    f'verifyproxy = "lcmaps_verify_proxy.mod" "-certdir {ca_dir}"\n'
                    f'localaccount = "lcmaps_localaccount.mod -gridmapfile {d}/grid-mapfile"\n'
                    "voms:\nverifyproxy -> localaccount\n")
        self.log = os.path.join(d, "lcmaps.log")
        self.env = {"PATH": "/usr/bin:/bin", "LCMAPS_DIR": d, "LCMAPS_DB_FILE": "lcmaps.db",
                    "LCMAPS_LOG_FILE": self.log, "LCMAPS_DEBUG_LEVEL": "5",
                    "X509_CERT_DIR": str(ca_dir), "X509_VOMS_DIR": vomsdir}

    def fqans(self, proxy):
        """(mapped?, FQAN list) as LCMAPS saw them."""
        if os.path.exists(self.log):
            os.unlink(self.log)
        p = subprocess.run([self.harness, "pem", str(proxy)], env=self.env, capture_output=True)
        with open(self.log, errors="replace") as f:
            fq = [m.group(1) for m in map(_FQAN_RE.search, f) if m]
        return p.stdout.startswith(b"OK "), fq


@pytest.fixture(scope="module")
def lcmaps(venv):
    return Lcmaps(str(venv.tmp / "lcmaps"), venv.pki.ca_dir, venv.vomsdir)


def _cases(venv):
    good = voms_fake(venv.pki, venv.alice, venv.path("sbs-good"))
    bob = voms_fake(venv.pki, venv.bob, venv.path("sbs-bob"))
    bad = bytearray(ac_ext_of(good))
    bad[-10] ^= 1
    other = TestPKI(venv.tmp / "sbs-other-ca", ca_dn=CA_DN)
    other.voms_host = other.user(VOMS_DN)
    venv.write_lsc("sbsvo", "voms.example.org", "/DC=test/DC=glexec-py/CN=not the server\n" + CA_DN + "\n")
    return {
        "good": good,
        "short-forms": voms_fake(venv.pki, venv.alice, venv.path("sbs-short"),
                                 fqans=["/testvo", "/testvo/prod/Role=pilot", "/testvo/a/b"]),
        "expired": voms_fake(venv.pki, venv.alice, venv.path("sbs-exp"),
                             extra=["-vomslife", "1", "-pastac", "3:00"]),
        "unknown-vo": voms_fake(venv.pki, venv.alice, venv.path("sbs-vo"), vo="nolscvo",
                                fqans=["/nolscvo"]),
        "lsc-other-dn": voms_fake(venv.pki, venv.alice, venv.path("sbs-lsc"), vo="sbsvo",
                                  fqans=["/sbsvo"]),
        "tampered-signature": resign_proxy(good, venv.alice, venv.path("sbs-tamper"), bytes(bad)),
        "holder-mismatch": resign_proxy(bob, venv.bob, venv.path("sbs-holder"), ac_ext_of(good)),
        "untrusted-server": voms_fake(venv.pki, venv.alice, venv.path("sbs-rogue"),
                                      host=other.voms_host),
        "foreign-fqan": voms_fake(venv.pki, venv.alice, venv.path("sbs-foreign"),
                                  fqans=["/testvo", "/othervo/x"]),
    }


def test_same_fqans_as_lcmaps(venv, lcmaps):
    rows = []
    for name, proxy in _cases(venv).items():
        mapped, theirs = lcmaps.fqans(proxy)
        ours = run_check(venv, proxy)
        theirs = [canonical_fqan(q) for q in theirs]       # LCMAPS keeps the AC's spelling
        rows.append((name, mapped, tuple(theirs), ours.fqans, [e["reason"] for e in ours.errors]))
    for name, mapped, theirs, ours, why in rows:
        assert mapped, f"{name}: LCMAPS did not map (DN-only mapping should continue)"
        assert theirs == ours, f"{name}: LCMAPS {theirs} vs glexec-py {ours} ({why})\n{rows}"
    # the matrix is not trivially all-empty or all-full
    assert {bool(r[3]) for r in rows} == {True, False}
