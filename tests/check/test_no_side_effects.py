"""glexec-check takes no lease, writes no audit record and changes no file: every file and
directory of a site (gridmapdir and its metadata sidecar, audit log, state dir, config,
ban files) has the same names, inodes, link counts, modes, sizes, mtimes, ctimes and
bytes after explain (of a real proxy, verified, and of DNs that would lease, reuse a lease,
or be refused) and lint as before."""
import os
import subprocess
from pathlib import Path

from glexec_py.core.leases import lease_name
from tests.support import install as inst
from tests.support.pki import TestPKI

REPO = Path(__file__).resolve().parents[2]
TOOL = str(REPO / "tools" / "bin" / "glexec-check")
BOB = "/DC=org/DC=example/CN=Bob"


def snapshot(root, skip=("pki",)):
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in [*dirs, *files, "."]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = Path(p).read_bytes() if os.path.isfile(p) and not os.path.islink(p) else None
            out[os.path.relpath(p, root)] = (st.st_ino, st.st_nlink, st.st_mode, st.st_uid, st.st_size,
                                             st.st_mtime_ns, st.st_ctime_ns, data)
    return out


def test_explain_and_lint_change_nothing(make_site):
    root = make_site({"pools": {"gxp": 3}, "bans": {"dn": ["/DC=org/CN=Mallory"]},
                      "ban_files": {"dn": '"/DC=org/CN=Eve"\n'},
                      "leases": [{"dn": "/DC=org/DC=example/CN=Carol", "account": "gxp001"}]})
    pki = TestPKI(root / "pki", ca_dn="/DC=org/DC=example/CN=Check CA")
    proxy = pki.proxy(pki.user(BOB), root / "pki" / "bob.pem")
    os.rmdir(root / "ca")
    inst.install_trust_dir(root, pki, root / "ca")
    audit = root / "log" / "audit.jsonl"
    audit.write_bytes(b'{"event": "grant", "earlier": true}\n')
    os.chmod(audit, 0o600)
    (root / "state" / "config.cache").write_bytes(b"x")
    os.chmod(root / "state" / "config.cache", 0o600)
    common = ["--config", str(root / "glexec.yaml"), "--passwd", str(root / "passwd"), "--group", str(root / "group")]
    before = snapshot(root)
    assert any(k.startswith("gridmapdir/.glexec-py/") for k in before)     # the sidecar is compared too

    runs = [["explain", "--json", "--proxy", str(proxy), *common],
            ["explain", "--dn", BOB, *common],
            ["explain", "--dn", "/DC=org/DC=example/CN=Carol", *common],
            ["explain", "--dn", "/DC=org/CN=Mallory", *common],
            ["explain", "--dn", "/DC=org/DC=example/CN=Dave", "--mapcount", "1", *common],
            [*common]]
    outs = [subprocess.run([TOOL, *argv], capture_output=True, text=True, timeout=60) for argv in runs]
    after = snapshot(root)
    assert after == before
    assert [o.returncode for o in outs[:5]] == [0, 0, 0, 1, 0], outs
    assert '"result": "verified"' in outs[0].stdout and "would lease" in outs[0].stdout
    assert "would lease" in outs[1].stdout and "existing lease: gxp001" in outs[2].stdout
    assert "banned" in outs[3].stdout and outs[5].returncode in (0, 1), outs[5]
    # and the lease that explain showed was not taken
    assert not (root / "gridmapdir" / lease_name(BOB.encode()).decode()).exists()
