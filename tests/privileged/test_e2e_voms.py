"""VOMS proxies (made by voms-proxy-fake) through the installed binary: FQAN mapping,
FQAN bans, and the lcmaps/strict modes for a bad attribute certificate."""
import os
import shutil
import subprocess

import pytest

from tests.privileged.conftest import USER1_DN

VO, HOST = "testvo", "voms.example.org"
VOMS_DN = "/DC=test/DC=glexec-py/CN=voms.example.org"
FQANS = ["/testvo/Role=NULL/Capability=NULL", "/testvo/prod/Role=pilot/Capability=NULL"]


@pytest.fixture(scope="module")
def voms_proxy(pkis, run_dir):
    if not shutil.which("voms-proxy-fake"):
        pytest.skip("voms-proxy-fake (voms-clients) is not installed")
    host = pkis.pki.user(VOMS_DN)
    out = run_dir / "voms-user1.pem"
    cmd = ["voms-proxy-fake", "-q", "-cert", str(pkis.user1.cert), "-key", str(pkis.user1.key),
           "-certdir", str(pkis.pki.ca_dir), "-hostcert", str(host.cert), "-hostkey", str(host.key),
           "-voms", VO, "-uri", f"{HOST}:15000", "-rfc", "-out", str(out)]
    for f in FQANS:
        cmd += ["-fqan", f]
    subprocess.run(cmd, check=True, capture_output=True, env={"PATH": "/usr/bin:/bin", "HOME": str(run_dir)})
    return out


@pytest.fixture
def vomsdir(gx):
    d = gx.prefix / "etc" / "glexec-py" / "vomsdir"
    shutil.rmtree(d, ignore_errors=True)
    (d / VO).mkdir(parents=True, mode=0o755)
    os.chmod(d, 0o755)
    (d / VO / f"{HOST}.lsc").write_text(f"{VOMS_DN}\n{gx.pkis.pki.ca_dn}\n")
    gx.gridmap([("/testvo/prod/Role=pilot/Capability=NULL", "gxttarget2"), (USER1_DN, "gxttarget1")])
    gx.config(credentials={"vomsdir": str(d)})
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _proxy(gx, voms_proxy):
    return gx.file("voms-proxy.pem", voms_proxy.read_bytes(), mode=0o600)


def test_fqan_maps_before_the_dn(gx, vomsdir, voms_proxy):
    r = gx.run(["/usr/bin/id", "-un"], proxy=_proxy(gx, voms_proxy))
    gx.assert_granted(r)
    assert r.stdout == b"gxttarget2\n"
    grant = r.grants[0]
    assert grant["voms"]["fqans"] == FQANS and grant["voms"]["errors"] == []
    assert grant["mapped_by"]["source"] == "voms_local"


def test_fqan_ban_applies(gx, vomsdir, voms_proxy):
    gx.config(credentials={"vomsdir": str(vomsdir)}, bans={"fqan": ["/testvo/prod"]})
    r = gx.run(["/usr/bin/id"], proxy=_proxy(gx, voms_proxy))
    gx.assert_refused(r, 203, "banned_fqan")


def test_bad_ac_drops_fqans_in_lcmaps_mode(gx, vomsdir, voms_proxy):
    (vomsdir / VO / f"{HOST}.lsc").unlink()  # the VOMS server is no longer trusted
    r = gx.run(["/usr/bin/id", "-un"], proxy=_proxy(gx, voms_proxy))
    gx.assert_granted(r)
    assert r.stdout == b"gxttarget1\n"  # DN-only mapping, as LCMAPS does
    assert r.grants[0]["voms"]["fqans"] == [] and r.grants[0]["voms"]["errors"]


def test_bad_ac_refused_in_strict_mode(gx, vomsdir, voms_proxy):
    (vomsdir / VO / f"{HOST}.lsc").unlink()
    gx.config(credentials={"vomsdir": str(vomsdir), "voms_mode": "strict"})
    gx.assert_refused(gx.run(["/usr/bin/id"], proxy=_proxy(gx, voms_proxy)), 201, "voms_invalid")
