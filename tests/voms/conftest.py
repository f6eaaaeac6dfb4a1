"""Fixtures for the VOMS tests: a TestPKI with a VOMS host certificate, users Alice and Bob,
real VOMS proxies made with Debian's voms-proxy-fake, a root-owned vomsdir under
/var/lib/glexec-py-tests/voms-<random> (removed afterwards), and helpers that forge proxies
and ACs with `cryptography` (tests only)."""
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.support.pki import TestPKI  # noqa: E402

BASE = "/var/lib/glexec-py-tests"
VO = "testvo"
VOMS_HOST = "voms.example.org"
VOMS_DN = "/DC=test/DC=glexec-py/CN=voms.example.org"
CA_DN = "/DC=test/DC=glexec-py/CN=glexec-py Test CA"
FQANS = ["/testvo/Role=NULL/Capability=NULL", "/testvo/prod/Role=pilot/Capability=NULL"]


def voms_fake(pki, user, out, *, host=None, vo=VO, uri=f"{VOMS_HOST}:15000", fqans=FQANS,
              extra=()):
    host = host or pki.voms_host
    cmd = ["voms-proxy-fake", "-q", "-cert", str(user.cert), "-key", str(user.key),
           "-certdir", str(pki.ca_dir), "-hostcert", str(host.cert), "-hostkey", str(host.key),
           "-voms", vo, "-uri", uri, "-rfc", "-out", str(out), *extra]
    for f in fqans:
        cmd += ["-fqan", f]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(pki.root), "RANDFILE": str(pki.root / ".rnd")}
    p = subprocess.run(cmd, capture_output=True, env=env)
    if p.returncode != 0 or not Path(out).exists():
        raise RuntimeError(f"voms-proxy-fake failed: {p.stderr.decode(errors='replace')}")
    return Path(out)


class VomsEnv:
    """pki, alice, bob, voms_host (cert signed by the test CA), vomsdir (root-owned),
    tmp (scratch for proxies)."""

    def __init__(self, pki, tmp, vomsdir):
        self.pki, self.tmp, self.vomsdir = pki, Path(tmp), vomsdir
        self.alice = pki.user("/DC=test/DC=glexec-py/CN=Alice")
        self.bob = pki.user("/DC=test/DC=glexec-py/CN=Bob")
        pki.voms_host = pki.user(VOMS_DN)
        self.n = 0

    def path(self, name):
        self.n += 1
        return self.tmp / f"{self.n}-{name}.pem"

    def write_lsc(self, vo, host, text, mode=0o644):
        d = os.path.join(self.vomsdir, vo)
        os.makedirs(d, mode=0o755, exist_ok=True)
        os.chmod(d, 0o755)
        p = os.path.join(d, f"{host}.lsc")
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        return p

    def remove(self, vo, name):
        try:
            os.unlink(os.path.join(self.vomsdir, vo, name))
        except FileNotFoundError:
            pass


@pytest.fixture(scope="session")
def venv(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("VOMS tests need root (root-owned vomsdir)")
    if not shutil.which("voms-proxy-fake"):
        pytest.skip("voms-proxy-fake (voms-clients) is not installed")
    os.makedirs(BASE, mode=0o755, exist_ok=True)
    top = tempfile.mkdtemp(prefix="voms-", dir=BASE)
    os.chmod(top, 0o755)
    vomsdir = os.path.join(top, "vomsdir")
    os.mkdir(vomsdir, 0o755)
    try:
        env = VomsEnv(TestPKI(tmp_path_factory.mktemp("vomspki")),
                      tmp_path_factory.mktemp("vomsproxies"), vomsdir)
        env.write_lsc(VO, VOMS_HOST, f"{VOMS_DN}\n{CA_DN}\n")
        yield env
    finally:
        shutil.rmtree(top, ignore_errors=True)


def run_check(venv, proxy_path, *, mode="lcmaps", at_time=None, **kw):
    """verify_chain (now) + interpret + check_voms (at at_time, default now), as the engine
    will call them."""
    from glexec_py.core import proxychain
    from glexec_py.effects import native, vomsdir
    now = int(time.time())
    t = now if at_time is None else at_time
    r = native.verify_chain(Path(proxy_path).read_bytes(), str(venv.pki.ca_dir), now)
    ident = proxychain.interpret(r)
    return vomsdir.check_voms([c.der for c in r.chain], ident.depth, str(venv.pki.ca_dir),
                              venv.vomsdir, t, mode=mode, **kw)


# --- forging with cryptography (tests only) -----------------------------------------

def _tlv(tag, content):
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(b)]) + b + content


def ac_ext_of(proxy_path):
    """The VOMS extension value of the proxy's first certificate."""
    from cryptography import x509
    c = x509.load_pem_x509_certificate(Path(proxy_path).read_bytes())
    for e in c.extensions:
        if e.oid.dotted_string == "1.3.6.1.4.1.8005.100.100.5":
            return e.value.value
    raise LookupError("no VOMS extension")


def resign_proxy(proxy_path, issuer_cred, out, new_ac_ext):
    """A copy of the proxy whose first certificate carries ``new_ac_ext`` as VOMS extension
    value, re-signed with the key of ``issuer_cred`` (the EEC the proxy was made from), so
    the X.509 chain still verifies and only the AC differs."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    data = Path(proxy_path).read_bytes()
    proxy = x509.load_pem_x509_certificate(data)
    pkey = serialization.load_pem_private_key(_block(data, b"PRIVATE KEY"), None)
    ikey = serialization.load_pem_private_key(Path(issuer_cred.key).read_bytes(), None)
    icert = x509.load_pem_x509_certificate(Path(issuer_cred.cert).read_bytes())
    b = (x509.CertificateBuilder().subject_name(proxy.subject).issuer_name(icert.subject)
         .public_key(pkey.public_key()).serial_number(proxy.serial_number)
         .not_valid_before(proxy.not_valid_before).not_valid_after(proxy.not_valid_after))
    for e in proxy.extensions:
        if e.oid.dotted_string == "1.3.6.1.4.1.8005.100.100.5":
            if new_ac_ext is None:
                continue
            e = x509.Extension(e.oid, e.critical, x509.UnrecognizedExtension(e.oid, new_ac_ext))
        if e.oid == x509.oid.ExtensionOID.AUTHORITY_KEY_IDENTIFIER:
            b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(icert.public_key()), e.critical)
            continue
        b = b.add_extension(e.value, e.critical)
    new = b.sign(ikey, hashes.SHA256())
    blob = (new.public_bytes(serialization.Encoding.PEM)
            + pkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())
            + icert.public_bytes(serialization.Encoding.PEM))
    Path(out).write_bytes(blob)
    os.chmod(out, 0o600)
    return Path(out)


def _block(data, kind):
    start = data.index(b"-----BEGIN " + kind) if (b"-----BEGIN " + kind) in data else None
    if start is None:
        i = data.index(b"PRIVATE KEY-----")
        start = data.rindex(b"-----BEGIN", 0, i)
    end = data.index(b"-----END", start)
    end = data.index(b"-----", end + 8) + 5
    return data[start:end] + b"\n"


def resign_ac(ac_der, host_cred, mutate_tbs):
    """Rebuild one AC: ``mutate_tbs(acinfo_der) -> acinfo_der``, then sign it with the VOMS
    host key (sha256WithRSA, the algorithm voms-proxy-fake used)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from glexec_py.core import voms
    ac = voms.parse_ac(ac_der)
    tbs = mutate_tbs(ac.tbs)
    key = serialization.load_pem_private_key(Path(host_cred.key).read_bytes(), None)
    sig = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    return _tlv(0x30, tbs + ac.sig_alg + _tlv(0x03, b"\x00" + sig))


def wrap_acs(acs):
    return _tlv(0x30, _tlv(0x30, b"".join(acs)))


def tlv(tag, content):
    return _tlv(tag, content)


def utc(dt):
    return int(dt.replace(tzinfo=datetime.timezone.utc).timestamp())
