"""effects/vomsdir.py on real root-owned files: the legacy layout (VOMS server
certificates as files in the vomsdir) is read only from a trusted vomsdir, and an untrusted
one is an error for the AC rather than an empty list (which would read as "no server")."""
import os
import ssl

import pytest

from glexec_py.core import vomscheck
from glexec_py.effects import trust, vomsdir
from tests.support.pki import TestPKI


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    monkeypatch.setattr(trust, "_trusted_dirs", set())


@pytest.fixture
def legacy(root_dir, tmp_path):
    """<root_dir>/vomsdir/testvo/voms.pem holding a real certificate; (vomsdir, DER)."""
    pki = TestPKI(tmp_path / "pki")
    host = pki.user("/DC=test/DC=glexec-py/CN=voms.example.org")
    top = os.path.join(root_dir, "vomsdir")
    os.makedirs(os.path.join(top, "testvo"), 0o755)
    pem = host.cert.read_text()
    with open(os.path.join(top, "testvo", "voms.pem"), "w") as f:
        f.write(pem)
    return top, ssl.PEM_cert_to_DER_cert(pem[pem.index("-----BEGIN CERTIFICATE-----"):])


def refused(top):
    trust.forget()
    with pytest.raises(vomscheck.VomsdirError) as ei:
        vomsdir.legacy_certs(top, "testvo")
    return str(ei.value)


def test_trusted_vomsdir_gives_its_certificates(legacy):
    top, der = legacy
    assert vomsdir.legacy_certs(top, "testvo") == [der]


@pytest.mark.parametrize("mode", [0o775, 0o757])
def test_group_or_other_writable_vomsdir_is_refused(legacy, mode):
    top, der = legacy
    os.chmod(top, mode)
    assert "writable by group or others" in refused(top)
    os.chmod(top, 0o755)
    trust.forget()
    assert vomsdir.legacy_certs(top, "testvo") == [der]


def test_vomsdir_not_owned_by_root_is_refused(legacy):
    top, _ = legacy
    os.chown(top, 65534, 0)
    assert "not owned by root" in refused(top)


def test_symlinked_vomsdir_is_refused(legacy, root_dir):
    top, _ = legacy
    link = os.path.join(root_dir, "link")
    os.symlink(top, link)                       # root-owned link to the trusted vomsdir
    assert "is a symlink" in refused(link)
