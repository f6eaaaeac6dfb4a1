"""Fixtures for the side-by-side matrix with the real LCMAPS (issue 3, item 7).

One test PKI (``tests.support.pki.TestPKI``) with users, a VOMS host certificate and a CRL,
a root-owned vomsdir and gridmapfile under /var/lib/glexec-py-tests/compat-<random>
(removed afterwards), and two deciders over the same CA dir, vomsdir and gridmapfile:

* ``CompatEnv.glexec(proxy)``: what the engine decides -- ``native.verify_chain`` +
  ``proxychain.interpret`` (private key required) + ``vomsdir.check_voms`` (lcmaps mode, the
  default ``voms_skew``), exactly as ``engine.verify_credential``/``establish_identity`` call them,
  then the gridmapfile lookups of ``engine.map_identity`` for the ``local`` (DN) and
  ``voms_local`` (FQAN) sources;
* ``CompatEnv.lcmaps(proxy, policy)``: the real LCMAPS through the colleague's pem harness
  (``tests/voms/lcmaps_pem_harness.c``, compiled from its path), policies ``dn``
  (``verifyproxy -> localaccount``) and ``fqan`` (``verifyproxy -> vomslocalaccount``); the
  FQANs LCMAPS extracted are read from its debug log (level 5).

Proxies are made with the real tools (grid-proxy-init, voms-proxy-fake) wherever they can
make them; ``forge_proxy`` (cryptography, tests only) makes the few they refuse to make
(a proxy of an expired end-entity certificate)."""
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.support.pki import TestPKI, UserCred  # noqa: E402

BASE = "/var/lib/glexec-py-tests"
MODDIR = "/usr/lib/lcmaps"
HARNESS_SRC = os.path.join(ROOT, "tests", "voms", "lcmaps_pem_harness.c")
CA_DN = "/DC=test/DC=glexec-py/CN=glexec-py Test CA"
FOREIGN_CA_DN = "/DC=test/DC=glexec-py/CN=glexec-py Foreign CA"
VOMS_DN = "/DC=test/DC=glexec-py/CN=voms.example.org"
VO = "testvo"
VOMS_HOST = "voms.example.org"
FQANS = ["/testvo/Role=NULL/Capability=NULL", "/testvo/prod/Role=pilot/Capability=NULL"]
USERS = {
    "alice": "/DC=test/DC=glexec-py/CN=Alice",
    "revoked": "/DC=test/DC=glexec-py/CN=Rev Oked",
    "expired": "/DC=test/DC=glexec-py/CN=Old Timer",
    "foreign": "/DC=test/DC=glexec-py/CN=Alice",     # same DN, but from an untrusted CA
}
_FQAN_RE = re.compile(r"\.fqan_unix\[\d+\]\.fqan\s*:\s(.*)$")
_RFC_PCI_OID = "1.3.6.1.5.5.7.1.14"
_IMPERSONATION_PCI = bytes.fromhex("300c300a06082b06010505071501")  # SEQ{SEQ{id-ppl-inheritAll}}


def missing():
    """Why the side-by-side matrix cannot run here, or None."""
    if not os.path.exists("/usr/include/lcmaps/lcmaps.h"):
        return "liblcmaps-dev is not installed"
    for m in ("lcmaps_verify_proxy.mod", "lcmaps_localaccount.mod", "lcmaps_voms_localaccount.mod"):
        if not os.path.exists(os.path.join(MODDIR, m)):
            return f"{m} is not installed"
    for tool in ("gcc", "grid-proxy-init", "voms-proxy-fake", "openssl"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    return None


@dataclass
class Outcome:
    """One decider's answer for one proxy."""
    accepted: bool                 # the credential was accepted (chain, policy, key)
    reason: str = ""               # refusal reason (glexec-py) or harness output (LCMAPS)
    fqans: tuple = ()              # canonical FQANs, AC order
    by_dn: bool = False            # mapped by the gridmapfile DN line (localaccount)
    by_fqan: bool = False          # mapped by an FQAN line (voms_localaccount)
    detail: dict = field(default_factory=dict)


class CompatEnv:
    def __init__(self, top):
        self.top = Path(top)
        self.pki = TestPKI(self.top / "pki", ca_dn=CA_DN)
        self.ca_dir = str(self.pki.ca_dir)
        self.users = {k: self.pki.user(v, expired=(k == "expired"))
                      for k, v in USERS.items() if k != "foreign"}
        self.voms_host = self.pki.user(VOMS_DN)
        self.foreign_pki = TestPKI(self.top / "foreign-pki", ca_dn=FOREIGN_CA_DN)
        self.users["foreign"] = self.foreign_pki.user(USERS["foreign"])
        self.pki.revoke(self.users["revoked"])          # the CRL (<hash>.r0) now lists it
        self.proxies = self.top / "proxies"
        self.proxies.mkdir(mode=0o700)
        self.vomsdir = str(self.top / "vomsdir")
        os.makedirs(os.path.join(self.vomsdir, VO), mode=0o755)
        lsc = os.path.join(self.vomsdir, VO, f"{VOMS_HOST}.lsc")
        with open(lsc, "w") as f:
            f.write(f"{VOMS_DN}\n{CA_DN}\n")
        os.chmod(lsc, 0o644)
        self.gridmapfile = str(self.top / "grid-mapfile")
        with open(self.gridmapfile, "w") as f:
            for dn in sorted(set(USERS.values())):
                f.write(f'"{dn}" nobody\n')
            f.write('"/testvo/*" nobody\n')
        os.chmod(self.gridmapfile, 0o644)
        self._lcmaps_setup()

    # --- the real LCMAPS ----------------------------------------------------------------

    def _lcmaps_setup(self):
        d = self.lcmaps_dir = self.top / "lcmaps"
        d.mkdir(mode=0o755)
        self.harness = str(d / "harness")
        subprocess.run(["gcc", "-O2", "-o", self.harness, HARNESS_SRC, "-llcmaps"], check=True)
        (d / "lcmaps.db").write_text(
            f"path = {MODDIR}\n"
            f'verifyproxy = "lcmaps_verify_proxy.mod" "-certdir {self.ca_dir}"\n'
            f'localaccount = "lcmaps_localaccount.mod -gridmapfile {self.gridmapfile}"\n'
            f'vomslocalaccount = "lcmaps_voms_localaccount.mod -gridmapfile {self.gridmapfile}"\n'
            "dn:\nverifyproxy -> localaccount\n"
            "fqan:\nverifyproxy -> vomslocalaccount\n")
        self.log = str(d / "lcmaps.log")
        self.lcmaps_env = {"PATH": "/usr/bin:/bin", "LCMAPS_DIR": str(d), "LCMAPS_DB_FILE": "lcmaps.db",
                           "LCMAPS_LOG_FILE": self.log, "LCMAPS_DEBUG_LEVEL": "5",
                           "X509_CERT_DIR": self.ca_dir, "X509_VOMS_DIR": self.vomsdir}

    def lcmaps_run(self, proxy, policy):
        """(harness said OK, FQANs the LCMAPS core extracted, harness stdout)."""
        if os.path.exists(self.log):
            os.unlink(self.log)
        p = subprocess.run([self.harness, "pem", str(proxy), "-p", policy], env=self.lcmaps_env,
                           capture_output=True, timeout=60)
        fq = []
        if os.path.exists(self.log):
            with open(self.log, errors="replace") as f:
                fq = [m.group(1).strip() for m in map(_FQAN_RE.search, f) if m]
        return p.stdout.startswith(b"OK "), fq, p.stdout.decode(errors="replace").strip()

    def lcmaps(self, proxy):
        """LCMAPS's answer: policy ``dn`` for acceptance, policy ``fqan`` for FQAN mapping."""
        from glexec_py.core.bans import canonical_fqan
        ok_dn, fq, out = self.lcmaps_run(proxy, "dn")
        ok_fq, fq2, out2 = self.lcmaps_run(proxy, "fqan")
        fqans = tuple(canonical_fqan(q) for q in (fq or fq2))
        return Outcome(accepted=ok_dn, reason=out, fqans=fqans, by_dn=ok_dn, by_fqan=ok_fq,
                       detail={"fqan_policy": out2})

    # --- glexec-py ------------------------------------------------------------------------

    def glexec(self, proxy, *, key_required=True, voms_mode="lcmaps"):
        """The engine's decision for this proxy file (see module doc)."""
        from glexec_py.core.identity import oneline_bytes
        from glexec_py.core import gridmap, proxychain, vomscheck
        from glexec_py.effects import native, vomsdir
        from glexec_py.errors import GlexecError
        pem = Path(proxy).read_bytes()
        now = int(time.time())
        result = native.verify_chain(pem, self.ca_dir, now)
        try:
            ident = proxychain.interpret(result, key_required=key_required)
            voms = vomsdir.check_voms([c.der for c in result.chain], ident.depth, self.ca_dir,
                                      self.vomsdir, now, mode=voms_mode, skew=vomscheck.DEFAULT_SKEW)
        except GlexecError as e:
            return Outcome(accepted=False, reason=e.reason, detail=dict(e.detail))
        with open(self.gridmapfile, "rb") as f:
            lines = gridmap.parse_gridmap(f.read(), self.gridmapfile)
        by_dn = gridmap.local_account(lines, oneline_bytes(ident.subject)) is not None
        by_fqan = any(gridmap.local_account(lines, q.encode(), wildcards=True) is not None
                      for q in voms.fqans)
        return Outcome(accepted=True, reason="", fqans=tuple(voms.fqans), by_dn=by_dn, by_fqan=by_fqan,
                       detail={"kinds": ident.kinds, "limited": ident.limited, "depth": ident.depth,
                               "voms_errors": [e["reason"] for e in voms.errors]})

    # --- credentials ----------------------------------------------------------------------

    def path(self, name):
        return self.proxies / f"{name}.pem"

    def proxy(self, name, user="alice", **kw):
        cred = self.users[user] if isinstance(user, str) else user
        pki = self.foreign_pki if user == "foreign" else self.pki
        return pki.proxy(cred, self.path(name), **kw)

    def proxy_of(self, name, parent, **kw):
        """A proxy signed by the proxy file ``parent`` (grid-proxy-init -cert/-key = parent)."""
        parent = Path(parent)
        return self.pki.proxy(UserCred(cert=parent, key=parent, dn=""), self.path(name), **kw)

    def grid_proxy_init(self, name, *args, user="alice"):
        cred = self.users[user]
        env = {"PATH": "/usr/bin:/bin", "X509_CERT_DIR": self.ca_dir, "HOME": str(self.top)}
        out = self.path(name)
        subprocess.run(["grid-proxy-init", "-q", "-cert", str(cred.cert), "-key", str(cred.key),
                        "-out", str(out), *args], check=True, capture_output=True, env=env)
        return out

    def voms_fake(self, name, *, vo=VO, fqans=FQANS, extra=()):
        cred, out = self.users["alice"], self.path(name)
        cmd = ["voms-proxy-fake", "-q", "-cert", str(cred.cert), "-key", str(cred.key),
               "-certdir", self.ca_dir, "-hostcert", str(self.voms_host.cert),
               "-hostkey", str(self.voms_host.key), "-voms", vo, "-uri", f"{VOMS_HOST}:15000",
               "-rfc", "-out", str(out), *extra]
        for q in fqans:
            cmd += ["-fqan", q]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.top), "RANDFILE": str(self.top / ".rnd")}
        p = subprocess.run(cmd, capture_output=True, env=env)
        if p.returncode != 0 or not out.exists():
            raise RuntimeError(f"voms-proxy-fake failed: {p.stderr.decode(errors='replace')}")
        return out

    def strip_key(self, name, src):
        """The same chain without its PRIVATE KEY block."""
        text = Path(src).read_text()
        stripped = re.sub(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----\n?",
                          "", text, flags=re.S)
        assert "PRIVATE KEY" not in stripped and stripped.count("BEGIN CERTIFICATE") >= 2
        out = self.path(name)
        out.write_text(stripped)
        os.chmod(out, 0o600)
        return out

    def forge_proxy(self, name, issuer, *, not_before=None, not_after=None):
        """An RFC 3820 impersonation (full) proxy signed by ``issuer`` -- a user name (its
        certificate and key) or a proxy file (its first certificate, its key, its chain) --
        with arbitrary validity (default: now - 5 min .. now + 12 h).  Made with
        cryptography, for what grid-proxy-init refuses to make: a proxy of an expired
        certificate, a full proxy below a limited one."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
        if isinstance(issuer, str) and issuer in self.users:
            cred = self.users[issuer]
            chain = [x509.load_pem_x509_certificate(Path(cred.cert).read_bytes())]
            key_pem = Path(cred.key).read_bytes()
        else:
            data = Path(issuer).read_bytes()
            chain = [x509.load_pem_x509_certificate(b) for b in re.findall(
                rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", data, re.S)]
            m = re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", data, re.S)
            key_pem = m.group(0)
        ikey = serialization.load_pem_private_key(key_pem, None)
        icert = chain[0]
        not_before = not_before or utcnow() - datetime.timedelta(minutes=5)
        not_after = not_after or utcnow() + datetime.timedelta(hours=12)
        key = rsa.generate_private_key(65537, 2048)
        serial = int.from_bytes(os.urandom(4), "big") | 1
        subject = x509.Name(list(icert.subject.rdns) + [x509.RelativeDistinguishedName(
            [x509.NameAttribute(NameOID.COMMON_NAME, str(serial))])])
        oid = x509.ObjectIdentifier(_RFC_PCI_OID)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(icert.subject)
                .public_key(key.public_key()).serial_number(serial)
                .not_valid_before(not_before).not_valid_after(not_after)
                .add_extension(x509.KeyUsage(True, False, True, False, True, False, False, False, False),
                               critical=True)
                .add_extension(x509.UnrecognizedExtension(oid, _IMPERSONATION_PCI), critical=True)
                .sign(ikey, hashes.SHA256()))
        out = self.path(name)
        out.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                        + key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.TraditionalOpenSSL,
                                            serialization.NoEncryption())
                        + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
        os.chmod(out, 0o600)
        return out


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


@pytest.fixture(scope="session")
def compat():
    why = missing()
    if why:
        pytest.skip(f"real LCMAPS side by side unavailable: {why}")
    if os.geteuid() != 0:
        pytest.skip("the side-by-side matrix needs root (root-owned vomsdir, LCMAPS modules)")
    os.makedirs(BASE, mode=0o755, exist_ok=True)
    top = tempfile.mkdtemp(prefix="compat-", dir=BASE)
    os.chmod(top, 0o755)
    try:
        yield CompatEnv(top)
    finally:
        shutil.rmtree(top, ignore_errors=True)
