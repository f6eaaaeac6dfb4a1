"""A throw-away test PKI built with the real tools (openssl CLI, grid-proxy-init).

Nothing is cached across processes: every TestPKI creates a fresh CA under its root.
Layout under ``root``::

    ca/ca.key ca/ca.pem ca/index.txt ca/serial ca/crlnumber ca/ca.cnf
    certificates/<hash>.0 <hash>.namespaces <hash>.signing_policy <hash>.r0
                                                               (the trust dir: ``ca_dir``)
    users/<n>/{cert.pem,key.pem}                               (UserCred files)
"""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TestPKI", "UserCred", "openssl_verify", "write_ca_policy"]

_CA_CNF = """\
[ req ]
distinguished_name = req_dn
string_mask = utf8only
prompt = no
[ req_dn ]
CN = unused
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = {ca}
database = $dir/index.txt
serial = $dir/serial
crlnumber = $dir/crlnumber
new_certs_dir = $dir/newcerts
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
default_days = 365
default_crl_days = 30
policy = policy_any
preserve = yes
unique_subject = no
copy_extensions = none
email_in_dn = yes
[ policy_any ]
commonName = supplied
[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ v3_user ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment,dataEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
[ v3_proxy ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment,dataEncipherment
proxyCertInfo = critical,language:id-ppl-inheritAll
"""

_serials = itertools.count(0x1000)


def write_ca_policy(ca_dir: Path, ca_hash: str, ca_dn: str, *, permit=(".*",), deny=(),
                    globs=("*",)) -> None:
    """The CA's ``<hash>.namespaces`` (EACL regexes ``permit``/``deny``) and
    ``<hash>.signing_policy`` (Globus globs), laid out as the IGTF distribution writes
    them; ``permit=None`` / ``globs=None`` leaves that file out (and removes an old one)."""
    ns, sp = Path(ca_dir) / f"{ca_hash}.namespaces", Path(ca_dir) / f"{ca_hash}.signing_policy"
    for path in (ns, sp):
        path.unlink(missing_ok=True)
    if permit is not None:
        lines = ["#" * 78, "#NAMESPACES-VERSION: 1.0", "#", f"# @(#){ca_hash}.namespaces",
                 "# CA alias    : glexec-py-test", f"#    subjectDN: {ca_dn}", f"#    hash     : {ca_hash}", "#"]
        for verb, patterns in (("PERMIT", permit), ("DENY", deny)):
            lines += [f'TO Issuer "{ca_dn}" \\\n  {verb} Subject "{p}"' for p in patterns]
        ns.write_text("\n".join(lines) + "\n")
    if globs is not None:
        quoted = " ".join(f'"{g}"' for g in globs)
        sp.write_text(f"# ca-signing-policy.conf for {ca_dn}\n#\n"
                      f"access_id_CA      X509         '{ca_dn}'\n"
                      "pos_rights        globus        CA:sign\n"
                      f"cond_subjects     globus       '{quoted}'\n")


def _run(cmd: list[str], env: dict | None = None, input: bytes | None = None) -> bytes:
    p = subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed ({p.returncode}): {p.stderr.decode(errors='replace')}")
    return p.stdout


@dataclass(frozen=True)
class UserCred:
    cert: Path
    key: Path
    dn: str


class TestPKI:
    """A CA with a hash-named trust dir, user certs, proxies and CRLs (see module doc)."""

    __test__ = False  # not a pytest test class

    def __init__(self, root: Path, ca_dn: str = "/DC=test/DC=glexec-py/CN=glexec-py Test CA", *,
                 parent: "TestPKI | None" = None):
        """``parent``: make an intermediate CA signed by it, in the parent's trust dir.
        The CA may sign any name (namespace ".*"); ``set_namespace`` narrows it."""
        self.root = Path(root)
        self.ca_dn = ca_dn
        self.ca = self.root / "ca"
        self.ca_dir = parent.ca_dir if parent else self.root / "certificates"
        (self.ca / "newcerts").mkdir(parents=True, exist_ok=True)
        self.ca_dir.mkdir(parents=True, exist_ok=True)
        self._users = 0
        self.cnf = self.ca / "ca.cnf"
        self.cnf.write_text(_CA_CNF.format(ca=self.ca))
        (self.ca / "index.txt").write_text("")
        (self.ca / "serial").write_text("1000\n")
        (self.ca / "crlnumber").write_text("1000\n")
        if parent is None:
            _run(["openssl", "req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-utf8",
                  "-keyout", str(self.ca / "ca.key"), "-out", str(self.ca / "ca.pem"),
                  "-days", "3650", "-sha256", "-subj", ca_dn, "-config", str(self.cnf),
                  "-extensions", "v3_ca", "-set_serial", "1"])
        else:
            _run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-utf8",
                  "-keyout", str(self.ca / "ca.key"), "-out", str(self.ca / "ca.csr"),
                  "-subj", ca_dn, "-config", str(self.cnf)])
            _run(["openssl", "ca", "-batch", "-notext", "-utf8", "-preserveDN", "-config", str(parent.cnf),
                  "-extensions", "v3_ca", "-days", "3000", "-in", str(self.ca / "ca.csr"),
                  "-out", str(self.ca / "ca.pem")])
        os.chmod(self.ca / "ca.key", 0o400)
        self.hash = _run(["openssl", "x509", "-in", str(self.ca / "ca.pem"),
                          "-noout", "-hash"]).decode().strip()
        shutil.copyfile(self.ca / "ca.pem", self.ca_dir / f"{self.hash}.0")
        self.set_namespace()
        self._gencrl()

    def set_namespace(self, permit=(".*",), deny=(), globs=("*",)) -> None:
        """Rewrite this CA's policy files (see ``write_ca_policy``)."""
        write_ca_policy(self.ca_dir, self.hash, self.ca_dn, permit=permit, deny=deny, globs=globs)

    def _gencrl(self) -> None:
        _run(["openssl", "ca", "-batch", "-config", str(self.cnf), "-gencrl",
              "-out", str(self.ca_dir / f"{self.hash}.r0")])

    def user(self, dn: str, *, days: int = 365, expired: bool = False) -> UserCred:
        """Issue an end-entity certificate (via `openssl ca`, so it can be revoked)."""
        self._users += 1
        d = self.root / "users" / str(self._users)
        d.mkdir(parents=True)
        cert, key, csr = d / "cert.pem", d / "key.pem", d / "req.csr"
        _run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-utf8",
              "-config", str(self.cnf), "-subj", dn, "-keyout", str(key), "-out", str(csr)])
        dates = (["-startdate", "20200101000000Z", "-enddate", "20200201000000Z"]
                 if expired else ["-days", str(days)])
        _run(["openssl", "ca", "-batch", "-notext", "-utf8", "-preserveDN",
              "-config", str(self.cnf), "-extensions", "v3_user", "-in", str(csr),
              "-out", str(cert), *dates])
        os.chmod(key, 0o400)
        return UserCred(cert=cert, key=key, dn=dn)

    def proxy(self, user: UserCred, out: Path, *, kind: str = "rfc", limited: bool = False,
              hours: int = 12, path_length: int | None = None, bits: int = 2048) -> Path:
        """Make a proxy with grid-proxy-init (kind: "rfc", "old" (GT2) or "draft" (GT3))."""
        flag = {"rfc": "-rfc", "old": "-old", "draft": "-draft"}[kind]
        cmd = ["grid-proxy-init", "-q", "-cert", str(user.cert), "-key", str(user.key),
               "-out", str(out), flag, "-valid", f"{hours}:00", "-bits", str(bits)]
        if limited:
            cmd.append("-limited")
        if path_length is not None:
            cmd += ["-path-length", str(path_length)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("X509_")}
        env["X509_CERT_DIR"] = str(self.ca_dir)
        _run(cmd, env=env)
        return Path(out)

    def expired_proxy(self, user: UserCred, out: Path) -> Path:
        """An RFC 3820 impersonation proxy of ``user`` valid only in January 2021.

        Signed by `openssl ca` using the user's cert/key as the issuing "CA" so the
        dates can lie in the past (grid-proxy-init cannot backdate)."""
        out = Path(out)
        with tempfile.TemporaryDirectory(dir=self.root) as tmp:
            t = Path(tmp)
            (t / "newcerts").mkdir()
            (t / "index.txt").write_text("")
            (t / "serial").write_text(f"{next(_serials):X}\n")
            cnf = t / "p.cnf"
            cnf.write_text(_CA_CNF.format(ca=t))
            serial = next(_serials)
            _run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-utf8",
                  "-config", str(cnf), "-subj", f"{user.dn}/CN={serial}",
                  "-keyout", str(t / "k.pem"), "-out", str(t / "r.csr")])
            _run(["openssl", "ca", "-batch", "-notext", "-utf8", "-preserveDN",
                  "-config", str(cnf), "-extensions", "v3_proxy", "-policy", "policy_any",
                  "-cert", str(user.cert), "-keyfile", str(user.key),
                  "-startdate", "20210101000000Z", "-enddate", "20210102000000Z",
                  "-in", str(t / "r.csr"), "-out", str(t / "c.pem")])
            blob = ((t / "c.pem").read_bytes() + (t / "k.pem").read_bytes()
                    + _first_cert(user.cert.read_bytes()))
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        return out

    def revoke(self, user: UserCred) -> None:
        """Revoke the user's certificate and regenerate <hash>.r0."""
        _run(["openssl", "ca", "-batch", "-config", str(self.cnf), "-revoke", str(user.cert)])
        self._gencrl()

    def copy_trust_dir(self, dest: Path) -> Path:
        shutil.copytree(self.ca_dir, dest)
        return Path(dest)


def _first_cert(pem: bytes) -> bytes:
    end = b"-----END CERTIFICATE-----"
    start = pem.index(b"-----BEGIN CERTIFICATE-----")
    return pem[start:pem.index(end, start) + len(end)] + b"\n"


def openssl_verify(ca_dir, pem_path) -> bool:
    """`openssl verify -allow_proxy_certs -CApath ca_dir -untrusted pem pem` succeeded."""
    p = subprocess.run(["openssl", "verify", "-allow_proxy_certs", "-CApath", str(ca_dir),
                        "-untrusted", str(pem_path), str(pem_path)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p.returncode == 0
